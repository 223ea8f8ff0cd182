use super::*;
use crate::auth::Principal;
use crate::auth::hosts::{self, HostInput};
use crate::proctoring::metrics::Metric;
use crate::proctoring::protocol;
use crate::proctoring::sessions::{self, Action, NewSession};
use crate::proctoring::templates::{self, Addons, TemplateInput};
use crate::store::{MemoryStore, Store};
use std::collections::BTreeMap;

fn exam(store: &MemoryStore, subject: &str, tags: &[&str]) -> Session {
    let host = match hosts::resolve(store, "a.test") {
        Ok(h) => h,
        Err(_) => {
            let m = Principal::Manager {
                username: "m".into(),
            };
            let input = HostInput {
                domains: Some(vec!["a.test".into()]),
                ..HostInput::default()
            };
            let h = hosts::create(store, &m, &input, "").unwrap();
            let t = TemplateInput {
                id: Some("final".into()),
                name: "Final".into(),
                addons: Addons::default(),
                weights: BTreeMap::from([(Metric::B2, 0.5)]),
                threshold: Some(70.0),
                period_secs: None,
                auto_conclusion: None,
            };
            templates::save(store, &h.id, "adm", &t).unwrap();
            h
        }
    };
    let new = NewSession {
        student: "ann".into(),
        subject: Some(subject.into()),
        template: "final".into(),
        proctors: vec!["pro".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..NewSession::default()
    };
    sessions::create(store, &host.id, "adm", &new, 1_700_000_000).unwrap()
}

#[test]
fn html_escapes_everything_and_shows_each_part() {
    let store = MemoryStore::new();
    let s = exam(&store, "<script>alert(1)</script>", &[]);
    let h = s.host_id.clone();
    sessions::act(&store, &h, &s.id, "ann", Action::Start, 1_700_000_100, None).unwrap();
    for (i, v) in [20.0, 60.0].into_iter().enumerate() {
        let values = BTreeMap::from([(Metric::B2, v)]);
        sessions::add_period(
            &store,
            &h,
            &s.id,
            "ann",
            &values,
            1_700_000_110 + i as u64 * 10,
        )
        .unwrap();
    }
    let dyn_store: &dyn Store = &store;
    dyn_store
        .write(|tx| {
            protocol::append(
                tx,
                &s.scope(),
                1_700_000_105,
                "invigil",
                Kind::FaceCheck,
                serde_json::json!({ "verified": true, "note": "\"><img src=x onerror=alert(1)>" }),
            )
        })
        .unwrap();
    sessions::act(&store, &h, &s.id, "pro", Action::Stop, 1_700_000_200, None).unwrap();
    let s = sessions::act(
        &store,
        &h,
        &s.id,
        "pro",
        Action::Conclude,
        1_700_000_300,
        Some((true, "all <b>fine</b>".into())),
    )
    .unwrap();
    let mut entries = protocol::since(&store, &s.scope(), 0, 1000).unwrap();
    entries.sort_by_key(|e| e.seq);
    let score = sessions::score(&store, &s).unwrap();
    let objects = vec![(format!("{}snapshots/0001.jpg", s.object_prefix()), 1234)];
    let page = html(&ReportData {
        session: &s,
        host_title: "A & B school",
        entries: &entries,
        score: &score,
        objects: &objects,
        chain: Ok(entries.len() as u64),
        generated_at: 1_700_000_400,
    });
    assert!(!page.contains("<script>alert"), "subject not escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<img src=x"), "face check data not escaped");
    assert!(!page.contains("<b>fine</b>"));
    assert!(page.contains("A &amp; B school"));
    for part in [
        "Identity checks",
        "Score over time",
        "<polyline",
        "Timeline",
        "snapshots/0001.jpg",
        "Positive",
        "hash chain verifies",
        "w·x",
    ] {
        assert!(page.contains(part), "{part} missing");
    }
    assert!(page.contains("2023-11-14T22:15:00Z"), "times in UTC");
}

#[test]
fn csv_rows_filters_and_formula_cells() {
    let store = MemoryStore::new();
    let a = exam(&store, "=HYPERLINK(\"http://evil\")", &["math", "final"]);
    let b = exam(&store, "Physics, part 2", &["physics"]);
    let h = a.host_id.clone();
    sessions::act(&store, &h, &a.id, "ann", Action::Start, 1_700_086_400, None).unwrap();
    let all = sessions::all(&store, &h).unwrap();
    let text = csv(&all).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_HEADER
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let subjects: Vec<&str> = rows.iter().map(|r| &r[3]).collect();
    assert!(
        subjects.contains(&"'=HYPERLINK(\"http://evil\")"),
        "{subjects:?}"
    );
    assert!(subjects.contains(&"Physics, part 2"));

    let only = |f: Filter| -> Vec<String> {
        all.iter()
            .filter(|s| f.matches(s))
            .map(|s| s.id.clone())
            .collect()
    };
    let tags = Filter {
        tags: vec!["math".into(), "final".into()],
        ..Filter::default()
    };
    assert_eq!(only(tags), [a.id.as_str()]);
    let started = Filter {
        status: Some(Status::Started),
        ..Filter::default()
    };
    assert_eq!(only(started), [a.id.as_str()]);
    // a started on 2023-11-15; b was only created, on 2023-11-14.
    let from = Filter {
        from: parse_date("2023-11-15"),
        ..Filter::default()
    };
    assert_eq!(only(from), [a.id.as_str()]);
    let to = Filter {
        to: parse_date("2023-11-15"),
        ..Filter::default()
    };
    assert_eq!(only(to), [b.id.as_str()]);
    let scored = Filter {
        score_min: Some(0.0),
        ..Filter::default()
    };
    assert!(only(scored).is_empty(), "no session has a score yet");
    let proctor = Filter {
        proctor: Some("pro".into()),
        ..Filter::default()
    };
    assert_eq!(only(proctor).len(), 2);
    assert_eq!(parse_date("1700000000"), Some(1_700_000_000));
    assert_eq!(parse_date("2023-02-30"), None);
    assert_eq!(parse_date("yesterday"), None);
}
