use super::*;
use crate::auth::Principal;
use crate::auth::hosts::{self, HostInput};
use crate::proctoring::sessions::{Action, NewSession, create};
use crate::proctoring::templates::TemplateInput;
use crate::store::MemoryStore;

fn host(store: &dyn Store, domain: &str) -> String {
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec![domain.into()]),
        ..HostInput::default()
    };
    let h = hosts::create(store, &m, &input, "").unwrap();
    let t: TemplateInput = serde_json::from_value(serde_json::json!({
        "id": "t", "name": "T",
        "addons": { "face_check": true, "liveness": true },
        "weights": { "c5": 0.5 }
    }))
    .unwrap();
    templates::save(store, &h.id, "adm", &t).unwrap();
    h.id
}

fn session(store: &dyn Store, host_id: &str, student: &str) -> Session {
    let new = NewSession {
        student: student.into(),
        template: "t".into(),
        ..NewSession::default()
    };
    create(store, host_id, "adm", &new, 1000).unwrap()
}

fn unit(which: usize) -> Embedding {
    let mut v = vec![0.0; DIM];
    v[which] = 1.0;
    Embedding(v)
}

fn face_check(s: &Session, at: u64) -> FaceCheck {
    FaceCheck {
        at,
        photo: photo_key(s, "face", at),
        content_type: "image/jpeg".into(),
        face_box: [1.0, 2.0, 30.0, 40.0],
        profile: None,
        profile_problem: None,
        elsewhere: Vec::new(),
    }
}

#[test]
fn the_face_check_keeps_the_reference_face_and_records_c5() {
    let store = MemoryStore::new();
    let store: &dyn Store = &store;
    let h = host(store, "a.test");
    let ann = session(store, &h, "ann");
    let bob = session(store, &h, "bob");
    let index = FaceIndex::default();
    assert!(reference(store, &h, &ann.id).unwrap().is_none());

    let first = record_face(store, &ann, "ann", &face_check(&ann, 2000), &unit(3)).unwrap();
    index.put(&h, &ann.id, "ann", &unit(3));
    assert_eq!(first.averages.get(Metric::C5), 0.0);
    assert_eq!(reference(store, &h, &ann.id).unwrap(), Some(unit(3)));
    // Bob's face is Ann's: c5 on Bob's session, naming Ann's.
    let found = index
        .search(
            store,
            &h,
            &bob.id,
            "bob",
            &unit(3),
            crate::recognize::THRESHOLD,
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].session.as_str(), found[0].distance),
        (ann.id.as_str(), 0.0)
    );
    let mut check = face_check(&bob, 2100);
    check.elsewhere = found;
    let bob_now = record_face(store, &bob, "bob", &check, &unit(3)).unwrap();
    assert_eq!(bob_now.averages.get(Metric::C5), 100.0);
    assert_eq!(bob_now.score, Some(50.0));
    // A fresh index reads the same faces back from the store.
    let fresh = FaceIndex::default();
    assert_eq!(
        fresh
            .search(store, &h, "other", "eve", &unit(3), 0.5)
            .unwrap()
            .len(),
        2
    );
    assert!(
        fresh
            .search(store, &h, "other", "eve", &unit(4), 0.5)
            .unwrap()
            .is_empty()
    );
    // Another host sees none of them.
    let h2 = host(store, "b.test");
    assert!(
        fresh
            .search(store, &h2, "x", "eve", &unit(3), 0.5)
            .unwrap()
            .is_empty()
    );

    // The protocol holds the check with its photo.
    let entries = protocol::list(store, &bob.scope(), Some(Kind::FaceCheck), None, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attachments, vec![check.photo.clone()]);
    assert_eq!(entries[0].data["same_face_elsewhere"], 1);
    assert!(
        !entries[0].data.to_string().contains("ann"),
        "{}",
        entries[0].data
    );
}

#[test]
fn state_says_what_is_still_required() {
    let store = MemoryStore::new();
    let store: &dyn Store = &store;
    let h = host(store, "a.test");
    let s = session(store, &h, "ann");
    let st = state(store, &s).unwrap();
    assert_eq!(
        st.required,
        Required {
            face: true,
            document: false,
            liveness: true
        }
    );
    assert!(!st.complete);
    let mut check = face_check(&s, 2000);
    check.profile = Some(Verification::from_distance(1.2, 0.9).into());
    record_face(store, &s, "ann", &check, &unit(1)).unwrap();
    let live = LivenessCheck {
        at: 2001,
        live: true,
        turns: vec!["left".into(), "right".into()],
        completed: 2,
        frames: 9,
        faces: 9,
        reason: None,
        yaw: vec![],
    };
    // Not live yet: incomplete.
    let mut failed = live.clone();
    failed.live = false;
    record_liveness(store, &s, "ann", &failed).unwrap();
    assert!(!state(store, &s).unwrap().complete);
    // A face unlike the profile photo's does not hold the student up: it
    // counts as c4 for the proctor to see.
    record_liveness(store, &s, "ann", &live).unwrap();
    let st = state(store, &s).unwrap();
    assert!(st.complete, "{st:?}");
    assert!(st.checks.liveness.unwrap().live);
    let now = sessions::get(store, &h, &s.id).unwrap();
    assert_eq!(now.averages.get(Metric::C4), 100.0);
}

#[test]
fn a_challenge_is_single_use_and_expires() {
    let store = MemoryStore::new();
    let store: &dyn Store = &store;
    let h = host(store, "a.test");
    let s = session(store, &h, "ann");
    let c = new_challenge(store, &s, 5000).unwrap();
    assert_eq!(c.turns.len(), CHALLENGE_TURNS);
    assert!(take_challenge(store, &s, "wrong", 5001).is_err());
    let turns = take_challenge(store, &s, &c.id, 5001).unwrap();
    assert_eq!(turns.len(), CHALLENGE_TURNS);
    let again = take_challenge(store, &s, &c.id, 5002)
        .unwrap_err()
        .to_string();
    assert!(again.contains("no such pending challenge"), "{again}");
    let late = new_challenge(store, &s, 6000).unwrap();
    let err = take_challenge(store, &s, &late.id, 6000 + CHALLENGE_SECS + 5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired 5 s ago"), "{err}");
    assert!(
        take_challenge(store, &s, &late.id, 6001).is_err(),
        "gone once expired"
    );
}

#[test]
fn no_checks_after_the_exam() {
    let store = MemoryStore::new();
    let store: &dyn Store = &store;
    let h = host(store, "a.test");
    let s = session(store, &h, "ann");
    sessions::act(store, &h, &s.id, "ann", Action::Start, 1100, None).unwrap();
    let s = sessions::act(store, &h, &s.id, "ann", Action::Stop, 1200, None).unwrap();
    let err = record_face(store, &s, "ann", &face_check(&s, 1300), &unit(1)).unwrap_err();
    assert!(matches!(err, ProctoringError::IllegalMove { .. }), "{err}");
    assert!(new_challenge(store, &s, 1300).is_err());
}

#[test]
fn references_round_trip_and_c4_follows_the_threshold() {
    let e = unit(7);
    let raw = encode_reference("ann", &e);
    assert_eq!(decode_reference(&raw), Some(("ann".to_string(), e.clone())));
    assert_eq!(decode_reference(&raw[..raw.len() - 1]), None);
    assert_eq!(c4_value(&e, &e), 0.0);
    assert_eq!(c4_value(&e, &unit(8)), 100.0);
}
