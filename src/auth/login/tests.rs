use super::*;
use crate::auth::hosts;
use crate::auth::users::UserInput;
use crate::auth::{Policy, manager};
use crate::config::Secret;
use crate::store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;

const GOOD: &str = "Correct horse 42";

fn setup() -> (Accounts, Host) {
    let config = crate::config::Config::load(None, Vec::new())
        .unwrap()
        .config;
    let mut policy = Policy::from_config(&config);
    policy.attempts = 3;
    policy.holdoff = Duration::from_secs(300);
    policy.history = 2;
    let a = Accounts::new(Arc::new(MemoryStore::new()), policy, b"k".repeat(32));
    let store = a.store.as_ref();
    manager::ensure(store, "manager", Some(&Secret::new(GOOD)), &a.policy.rule).unwrap();
    let host = hosts::ensure_default(store, "localhost:8443")
        .unwrap()
        .unwrap();
    let admin = Principal::Manager {
        username: "manager".into(),
    };
    let input = UserInput {
        username: Some("ann".into()),
        password: Some(GOOD.into()),
        ..UserInput::default()
    };
    users::create(store, &admin, &host.id, &input, &a.policy.rule, "").unwrap();
    (a, host)
}

#[test]
fn manager_signs_in_only_on_manager_host() {
    let (a, host) = setup();
    let ok = a
        .login(&host, "localhost:8443", "Manager", GOOD, "1.1.1.1", 100)
        .unwrap();
    assert_eq!(
        ok.principal,
        Principal::Manager {
            username: "manager".into()
        }
    );
    let elsewhere = a.login(&host, "localhost", "manager", GOOD, "1.1.1.1", 100);
    assert!(matches!(elsewhere, Err(AuthError::InvalidCredentials)));
}

#[test]
fn unknown_user_and_wrong_password_answer_alike_and_lock_out() {
    let (a, host) = setup();
    let unknown = a
        .login(&host, "localhost:8443", "nobody", GOOD, "c", 100)
        .unwrap_err();
    let wrong = a
        .login(&host, "localhost:8443", "ann", "Wrong password 1", "c", 100)
        .unwrap_err();
    assert_eq!(unknown.to_string(), wrong.to_string());
    a.login(&host, "localhost:8443", "ann", "Wrong password 2", "c", 101)
        .unwrap_err();
    // The third failure locks for PASSWORD_HOLDOFF; even the right password waits.
    a.login(&host, "localhost:8443", "ann", "Wrong password 3", "c", 102)
        .unwrap_err();
    match a.login(&host, "localhost:8443", "ann", GOOD, "c", 103) {
        Err(AuthError::Locked { retry_after_secs }) => assert_eq!(retry_after_secs, 299),
        other => panic!("{other:?}"),
    }
    let later = a
        .login(&host, "localhost:8443", "ann", GOOD, "c", 402)
        .unwrap();
    assert!(later.must_change_password, "set by an administrator");
    let actions: Vec<_> = audit::list(
        a.store.as_ref(),
        &host.id,
        &audit::Filter {
            limit: 50,
            ..Default::default()
        },
    )
    .unwrap()
    .into_iter()
    .map(|e| e.action)
    .collect();
    assert!(actions.contains(&"locked_out".to_string()), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "sign_in_failed").count(), 4);
}

#[test]
fn each_sign_in_gets_a_new_session() {
    let (a, host) = setup();
    let one = a
        .login(&host, "localhost:8443", "ann", GOOD, "c", 100)
        .unwrap();
    let two = a
        .login(&host, "localhost:8443", "ann", GOOD, "c", 100)
        .unwrap();
    assert_ne!(one.token, two.token);
}

#[test]
fn password_change_checks_rule_and_history_and_rotates_sessions() {
    let (a, host) = setup();
    let signed = a
        .login(&host, "localhost:8443", "ann", GOOD, "c", 100)
        .unwrap();
    let session = a.session(&signed.token, &host.id, 100).unwrap();
    let rejected = |r: Result<String, AuthError>| matches!(r, Err(AuthError::PasswordRejected(_)));
    assert!(matches!(
        a.change_password(&session, "not it", "New password 77", "c", 100),
        Err(AuthError::InvalidCredentials)
    ));
    assert!(rejected(
        a.change_password(&session, GOOD, "weak", "c", 100)
    ));
    assert!(rejected(a.change_password(&session, GOOD, GOOD, "c", 100)));
    let token = a
        .change_password(&session, GOOD, "New password 77", "c", 100)
        .unwrap();
    assert!(
        a.session(&signed.token, &host.id, 100).is_err(),
        "old session revoked"
    );
    let session = a.session(&token, &host.id, 100).unwrap();
    assert!(!a.must_change_password(&session).unwrap());
    // History of 2: the previous password may not come back yet.
    assert!(rejected(a.change_password(
        &session,
        "New password 77",
        GOOD,
        "c",
        100
    )));
}

#[test]
fn rate_limit_per_account() {
    let (a, host) = setup();
    let mut limited = false;
    for i in 0..(ratelimit::PER_ACCOUNT + 1) {
        let client = format!("10.0.0.{i}");
        if let Err(AuthError::RateLimited { .. }) =
            a.login(&host, "localhost:8443", "bob", "x", &client, 100)
        {
            limited = true;
        }
    }
    assert!(limited);
}
