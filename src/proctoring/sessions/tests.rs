use super::*;
use crate::auth::Principal;
use crate::auth::hosts::HostInput;
use crate::proctoring::templates::{Addons, AutoConclusion, TemplateInput};
use crate::store::MemoryStore;

fn setup(volume: Option<u64>, auto: Option<AutoConclusion>) -> (MemoryStore, String) {
    let store = MemoryStore::new();
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec!["a.test".into()]),
        volume: Some(volume),
        ..HostInput::default()
    };
    let host = hosts::create(&store, &m, &input, "").unwrap();
    let t = TemplateInput {
        id: Some("final".into()),
        name: "Final".into(),
        addons: Addons::default(),
        weights: BTreeMap::from([(Metric::B2, 0.5), (Metric::C2, 1.0)]),
        threshold: Some(70.0),
        period_secs: None,
        auto_conclusion: auto,
    };
    templates::save(&store, &host.id, "adm", &t).unwrap();
    (store, host.id)
}

fn new(student: &str) -> NewSession {
    NewSession {
        student: student.into(),
        template: "final".into(),
        duration_limit: Some(60),
        ..NewSession::default()
    }
}

#[test]
fn a_whole_exam_and_illegal_moves() {
    let (store, h) = setup(None, None);
    let s = create(&store, &h, "adm", &new("ann"), 1000).unwrap();
    assert_eq!(s.status, Status::Created);
    let err = act(&store, &h, &s.id, "pro", Action::Pause, 1001, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot pause a created session; allowed: start"
    );
    act(&store, &h, &s.id, "ann", Action::Start, 1002, None).unwrap();
    act(&store, &h, &s.id, "pro", Action::Pause, 1003, None).unwrap();
    act(&store, &h, &s.id, "pro", Action::Resume, 1004, None).unwrap();
    add_period(
        &store,
        &h,
        &s.id,
        "ann",
        &BTreeMap::from([(Metric::B2, 50.0)]),
        1010,
    )
    .unwrap();
    let s2 = add_period(
        &store,
        &h,
        &s.id,
        "ann",
        &BTreeMap::from([(Metric::B2, 0.0), (Metric::C2, 10.0)]),
        1020,
    )
    .unwrap();
    // b2 avg 25 × 0.5 + c2 avg 10 × 1.0 = 22.5
    assert_eq!(s2.score, Some(77.5));
    act(&store, &h, &s.id, "ann", Action::Stop, 1030, None).unwrap();
    let done = act(
        &store,
        &h,
        &s.id,
        "pro",
        Action::Conclude,
        1040,
        Some((false, "phone seen".into())),
    )
    .unwrap();
    assert_eq!(done.status, Status::Concluded);
    assert!(!done.conclusion.unwrap().automatic);
    let err = act(&store, &h, &s.id, "pro", Action::Stop, 1050, None).unwrap_err();
    assert!(err.to_string().ends_with("allowed: nothing"), "{err}");
    // The protocol holds every step and verifies; the score recomputes.
    let scope = s.scope();
    assert_eq!(protocol::verify(&store, &scope), Ok(8));
    let again = protocol::recompute_averages(&store, &scope).unwrap();
    assert_eq!(again, s2.averages);
}

#[test]
fn volume_and_identifier_are_enforced() {
    let (store, h) = setup(Some(1), None);
    let mut first = new("ann");
    first.identifier = Some("lms-1".into());
    create(&store, &h, "adm", &first, 10).unwrap();
    assert!(by_identifier(&store, &h, "lms-1").unwrap().is_some());
    let err = create(&store, &h, "adm", &new("bob"), 10).unwrap_err();
    assert!(
        matches!(
            err,
            ProctoringError::Host(crate::auth::AuthError::VolumeExhausted(1))
        ),
        "{err:?}"
    );
    let bad = NewSession {
        template: "nope".into(),
        ..new("cy")
    };
    assert!(matches!(
        create(&store, &h, "adm", &bad, 10),
        Err(ProctoringError::Invalid { .. })
    ));
}

#[test]
fn deadlines_stop_sessions_stamped_with_the_deadline() {
    let (store, h) = setup(None, None);
    let s = create(&store, &h, "adm", &new("ann"), 1000).unwrap();
    act(&store, &h, &s.id, "ann", Action::Start, 1000, None).unwrap();
    assert_eq!(next_due(&store).unwrap(), Some(1000 + 3600));
    assert!(stop_due(&store, 2000).unwrap().is_empty());
    // Checked long after the end (as after a restart): stopped at the end time.
    let stopped = stop_due(&store, 9999).unwrap();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].stopped_at, Some(4600));
    assert_eq!(next_due(&store).unwrap(), None);
}

#[test]
fn accommodations_change_weights_and_time_with_who_granted_them() {
    let (store, h) = setup(None, None);
    let s = create(&store, &h, "adm", &new("ann"), 1000).unwrap();
    act(&store, &h, &s.id, "ann", Action::Start, 1000, None).unwrap();
    add_period(
        &store,
        &h,
        &s.id,
        "ann",
        &BTreeMap::from([(Metric::B2, 40.0), (Metric::C2, 10.0)]),
        1010,
    )
    .unwrap();
    let off = accommodate(
        &store,
        &h,
        &s.id,
        "adm",
        Grant::MetricOff { metric: Metric::C2 },
        "no webcam light",
        1011,
    )
    .unwrap();
    // Only b2 counts now: 40 × 0.5 = 20.
    assert_eq!(off.score, Some(80.0));
    let longer = accommodate(
        &store,
        &h,
        &s.id,
        "adm",
        Grant::ExtraTime { minutes: 30 },
        "dyslexia",
        1012,
    )
    .unwrap();
    assert_eq!(longer.ends_at(), Some(1000 + 3600 + 1800));
    assert_eq!(next_due(&store).unwrap(), Some(1000 + 3600 + 1800));
    assert_eq!(longer.accommodations[1].granted_by, "adm");
    let bad = accommodate(
        &store,
        &h,
        &s.id,
        "adm",
        Grant::Weight {
            metric: Metric::B2,
            weight: -1.0,
        },
        "",
        1013,
    );
    assert!(matches!(bad, Err(ProctoringError::Invalid { .. })));
    assert_eq!(protocol::verify(&store, &s.scope()), Ok(5));
}

#[test]
fn window_and_auto_conclusion() {
    let auto = AutoConclusion {
        positive_at_or_above: Some(90.0),
        negative_below: Some(50.0),
    };
    let (store, h) = setup(None, Some(auto));
    let early = NewSession {
        open_from: Some(500),
        ..new("ann")
    };
    let s = create(&store, &h, "adm", &early, 100).unwrap();
    assert!(matches!(
        act(&store, &h, &s.id, "ann", Action::Start, 400, None),
        Err(ProctoringError::NotOpen(_))
    ));
    act(&store, &h, &s.id, "ann", Action::Start, 600, None).unwrap();
    let stopped = act(&store, &h, &s.id, "ann", Action::Stop, 700, None).unwrap();
    assert_eq!(stopped.status, Status::Concluded);
    let c = stopped.conclusion.unwrap();
    assert!(c.automatic && c.positive);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    fn period() -> impl Strategy<Value = BTreeMap<Metric, f64>> {
        let metric = prop::sample::select(
            Metric::ALL
                .iter()
                .copied()
                .filter(|m| !m.server_side())
                .collect::<Vec<_>>(),
        );
        prop::collection::btree_map(metric, 0.0f64..=100.0, 0..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the stream of periods, the averages rebuilt from the
        /// protocol equal the live ones, and so does the score.
        #[test]
        fn recompute_equals_live(periods in prop::collection::vec(period(), 0..20)) {
            let (store, h) = setup(None, None);
            let s = create(&store, &h, "adm", &new("ann"), 10).unwrap();
            act(&store, &h, &s.id, "ann", Action::Start, 10, None).unwrap();
            let mut live = get(&store, &h, &s.id).unwrap();
            for (i, values) in periods.iter().enumerate() {
                live = add_period(&store, &h, &s.id, "ann", values, 20 + i as u64).unwrap();
            }
            let again = protocol::recompute_averages(&store, &s.scope()).unwrap();
            prop_assert_eq!(&again, &live.averages);
            let store_ref: &dyn Store = &store;
            let t = store_ref.read(|tx| templates::version(tx, &h, "final", 1)).unwrap().unwrap();
            let rescored = metrics::score(&again, &t.weights, t.threshold).score;
            prop_assert_eq!(Some(rescored), live.score.or(Some(100.0)));
        }
    }
}
