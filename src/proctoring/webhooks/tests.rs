use super::*;
use crate::auth::Principal;
use crate::auth::hosts::HostInput;
use crate::proctoring::metrics::Metric;
use crate::proctoring::sessions::{Action, NewSession};
use crate::proctoring::templates::{Addons, AutoConclusion, TemplateInput};
use crate::store::MemoryStore;
use std::collections::BTreeMap;

#[test]
fn signature_matches_the_standard_webhooks_test_vector() {
    // From the Standard Webhooks specification's reference libraries.
    let sig = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    )
    .unwrap();
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_eq!(sign("whsec_***", "m", 1, b"{}"), Err(WebhookError::Secret));
    let fresh = new_secret();
    assert!(fresh.starts_with("whsec_") && sign(&fresh, "m", 1, b"{}").is_ok());
}

#[test]
fn address_policy_table() {
    use Denied::*;
    type Verdict = Result<(), Denied>;
    let table: &[(&str, Verdict, Verdict)] = &[
        // address, without allowance, with allowance
        ("93.184.216.34", Ok(()), Ok(())),
        ("2606:4700::1111", Ok(()), Ok(())),
        ("127.0.0.1", Err(Loopback), Ok(())),
        ("127.9.9.9", Err(Loopback), Ok(())),
        ("::1", Err(Loopback), Ok(())),
        ("::ffff:127.0.0.1", Err(Loopback), Ok(())),
        ("10.1.2.3", Err(Private), Ok(())),
        ("172.16.0.1", Err(Private), Ok(())),
        ("192.168.1.10", Err(Private), Ok(())),
        ("::ffff:192.168.1.10", Err(Private), Ok(())),
        ("fd12:3456::1", Err(Private), Ok(())),
        ("169.254.10.1", Err(LinkLocal), Ok(())),
        ("fe80::1", Err(LinkLocal), Ok(())),
        ("100.64.0.1", Err(Cgnat), Ok(())),
        ("169.254.169.254", Err(Metadata), Err(Metadata)),
        ("::ffff:169.254.169.254", Err(Metadata), Err(Metadata)),
        ("fd00:ec2::254", Err(Metadata), Err(Metadata)),
        ("0.0.0.0", Err(Unspecified), Err(Unspecified)),
        ("::", Err(Unspecified), Err(Unspecified)),
        ("224.0.0.1", Err(Multicast), Err(Multicast)),
        ("ff02::1", Err(Multicast), Err(Multicast)),
        ("255.255.255.255", Err(Broadcast), Err(Broadcast)),
        ("192.0.2.1", Err(Documentation), Err(Documentation)),
        ("64:ff9b::a00:1", Err(Private), Ok(())),
        ("2002:c0a8:0101::1", Err(Private), Ok(())),
    ];
    for (addr, plain, allowed) in table {
        let ip: IpAddr = addr.parse().unwrap();
        let strip = |r: Result<(), WebhookError>| {
            r.map_err(|e| match e {
                WebhookError::Refused { why, .. } => why,
                other => panic!("{other}"),
            })
        };
        assert_eq!(strip(check_address(ip, false)), *plain, "{addr}");
        assert_eq!(strip(check_address(ip, true)), *allowed, "{addr} allowed");
    }
    let msg = check_address("10.0.0.1".parse().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("10.0.0.1 is refused"), "{msg}");
}

#[test]
fn urls_must_be_http_or_https() {
    let t = target("https://lms.example.org/hooks/invigil?x=1").unwrap();
    assert_eq!(
        (t.https, t.host.as_str(), t.port, t.path.as_str()),
        (true, "lms.example.org", 443, "/hooks/invigil?x=1")
    );
    let t = target("http://[::1]:8080/h").unwrap();
    assert_eq!((t.https, t.host.as_str(), t.port), (false, "::1", 8080));
    for bad in [
        "ftp://x/",
        "file:///etc/passwd",
        "https://user:pw@x/",
        "not a url",
        "gopher://x",
    ] {
        assert!(target(bad).is_err(), "{bad}");
    }
}

#[test]
fn retries_back_off_and_give_up() {
    let first = Duration::from_secs(5);
    assert_eq!(retry_delay(1, first), Some(Duration::from_secs(5)));
    assert_eq!(retry_delay(2, first), Some(Duration::from_secs(20)));
    assert_eq!(retry_delay(3, first), Some(Duration::from_secs(80)));
    assert_eq!(retry_delay(MAX_ATTEMPTS - 1, first), Some(MAX_DELAY));
    assert_eq!(retry_delay(MAX_ATTEMPTS, first), None);
}

fn setup(auto: Option<AutoConclusion>) -> (MemoryStore, String) {
    let store = MemoryStore::new();
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec!["a.test".into()]),
        webhook_url: Some(Some("https://lms.example.org/hook".into())),
        ..HostInput::default()
    };
    let host = hosts::create(&store, &m, &input, "").unwrap();
    let t = TemplateInput {
        id: Some("final".into()),
        name: "Final".into(),
        addons: Addons::default(),
        weights: BTreeMap::from([(Metric::B2, 0.5)]),
        threshold: Some(70.0),
        period_secs: None,
        auto_conclusion: auto,
    };
    templates::save(&store, &host.id, "adm", &t).unwrap();
    (store, host.id)
}

#[test]
fn stop_and_conclusion_enqueue_in_the_same_transaction() {
    let (store, h) = setup(None);
    let new = NewSession {
        student: "ann".into(),
        template: "final".into(),
        identifier: Some("lms-42".into()),
        callback_url: Some("https://lms.example.org/session-hook".into()),
        ..NewSession::default()
    };
    let s = sessions::create(&store, &h, "adm", &new, 1000).unwrap();
    sessions::act(&store, &h, &s.id, "ann", Action::Start, 1001, None).unwrap();
    let values = BTreeMap::from([(Metric::B2, 40.0)]);
    sessions::add_period(&store, &h, &s.id, "ann", &values, 1010).unwrap();
    assert!(pending(&store).unwrap().is_empty());
    sessions::act(&store, &h, &s.id, "pro", Action::Stop, 1100, None).unwrap();
    sessions::act(
        &store,
        &h,
        &s.id,
        "pro",
        Action::Conclude,
        1200,
        Some((false, "notes".into())),
    )
    .unwrap();
    let out = pending(&store).unwrap();
    assert_eq!(out.len(), 2);
    let bodies: Vec<serde_json::Value> = out
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    let stopped = bodies
        .iter()
        .find(|b| b["type"] == "session.stopped")
        .unwrap();
    assert_eq!(stopped["data"]["identifier"], "lms-42");
    assert_eq!(stopped["data"]["score"], 80.0);
    assert_eq!(stopped["data"]["terms"][0]["metric"], "b2");
    let concluded = bodies
        .iter()
        .find(|b| b["type"] == "session.concluded")
        .unwrap();
    assert_eq!(concluded["data"]["conclusion"]["positive"], false);
    assert!(
        out.iter()
            .all(|m| m.url == "https://lms.example.org/session-hook")
    );

    // A failed status change leaves nothing behind.
    let err = sessions::act(&store, &h, &s.id, "pro", Action::Stop, 1300, None);
    assert!(err.is_err());
    assert_eq!(pending(&store).unwrap().len(), 2);

    // Failures back off, then the message is given up and kept.
    let id = out[0].id.clone();
    let first = Duration::from_millis(100);
    let (m, retry) = failed(&store, &id, "503", 5_000, first).unwrap().unwrap();
    assert!(retry);
    assert_eq!((m.attempts, m.next_at_ms), (1, 5_100));
    for _ in 1..MAX_ATTEMPTS - 1 {
        assert!(failed(&store, &id, "503", 5_000, first).unwrap().unwrap().1);
    }
    assert!(!failed(&store, &id, "503", 5_000, first).unwrap().unwrap().1);
    assert_eq!(pending(&store).unwrap().len(), 1);
    assert_eq!(dead(&store).unwrap().len(), 1);
    delivered(&store, &out[1].id).unwrap();
    assert!(pending(&store).unwrap().is_empty());
}

#[test]
fn the_host_url_serves_sessions_without_their_own_and_auto_conclusion_counts() {
    let auto = AutoConclusion {
        positive_at_or_above: Some(50.0),
        negative_below: None,
    };
    let (store, h) = setup(Some(auto));
    let new = NewSession {
        student: "bob".into(),
        template: "final".into(),
        ..NewSession::default()
    };
    let s = sessions::create(&store, &h, "adm", &new, 1000).unwrap();
    sessions::act(&store, &h, &s.id, "bob", Action::Start, 1001, None).unwrap();
    sessions::act(&store, &h, &s.id, "bob", Action::Stop, 1002, None).unwrap();
    let out = pending(&store).unwrap();
    let types: Vec<String> = out
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["type"].to_string())
        .collect();
    assert_eq!(out.len(), 2, "{types:?}");
    assert!(out.iter().all(|m| m.url == "https://lms.example.org/hook"));
}
