//! The manager's instance status: what it reports on a running daemon,
//! and that nothing secret is in it.

use crate::harness::Daemon;
use crate::rest::Rest;
use reqwest::Method;

const PW: &str = "Manager pass 123";

#[tokio::test]
async fn instance_status_reports_the_running_daemon() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW), ("THREADS", "2")]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let (status, s) = c
        .call(Method::GET, "/api/v1/instance/status", &manager, None)
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["version"], invigil::VERSION);
    assert_eq!(s["tls"]["mode"], "self-signed");
    assert!(s["tls"]["cert_expires_unix"].as_u64().unwrap() > s["started_unix"].as_u64().unwrap());
    let disk = &s["storage"]["disk"];
    assert!(disk["total_bytes"].as_u64().unwrap() >= disk["free_bytes"].as_u64().unwrap());
    assert!(s["storage"]["database_bytes"].as_u64().unwrap() > 0, "{s}");
    let objects = s["storage"]["objects"].as_str().unwrap();
    assert!(
        objects.starts_with("local ") && objects.ends_with("objects"),
        "{objects}"
    );
    assert_eq!(s["turn"]["relay"], "embedded");
    assert_eq!(
        s["turn"]["port"].as_u64().unwrap(),
        u64::from(d.running.turn.as_ref().unwrap().local_addr().port())
    );
    assert_eq!(s["turn"]["allocations"], 0);
    assert!(
        ["tract", "onnxruntime"].contains(&s["recognition"]["engine"].as_str().unwrap()),
        "{s}"
    );
    assert_eq!(s["recognition"]["threads"], 2);
    assert_eq!(s["recognition"]["hosts"], serde_json::json!([]));
    assert_eq!(s["hub"]["connections"], 0);
    let newest = invigil::store::migrate::MIGRATIONS
        .last()
        .map_or(0, |m| m.version);
    assert_eq!(s["schema_version"].as_u64().unwrap(), newest);
    assert!(s["last_backup"].is_null());

    // Nothing secret: no key material or password anywhere in it.
    let text = s.to_string();
    for secret in [PW, "BEGIN", "whsec_"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    d.stop().await;
}
