//! Sessions opened by an LMS's JWT link: the payload's template, subject,
//! time limit and tags make the session; the same identifier resumes it.

use super::PW;
use crate::harness::Daemon;
use crate::rest::Rest;
use reqwest::Method;
use serde_json::{Value, json};

fn link(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_link_opens_a_session_and_the_same_identifier_resumes_it() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let (_, secret) = c
        .call(Method::POST, "/api/v1/jwt-secrets", &manager, None)
        .await;
    let secret = secret["secret"].as_str().unwrap().to_string();
    let t = json!({ "id": "maths", "name": "Maths" });
    assert_eq!(
        c.call(Method::POST, "/api/v1/templates", &manager, Some(t))
            .await
            .0,
        201
    );
    let now = invigil::auth::now_secs();
    let claims = |username: &str, identifier: &str, template: &str| {
        json!({ "username": username, "identifier": identifier, "subject": "Algebra",
                "template": template, "timeout": 90, "tags": "june, room-3",
                "exp": now + 300, "iat": now })
    };
    let open = |claims: Value| {
        let c = &c;
        let token = link(&secret, claims);
        async move {
            c.call(
                Method::POST,
                "/api/v1/auth/jwt",
                "",
                Some(json!({ "token": token })),
            )
            .await
        }
    };
    let (s, first) = open(claims("lms-ann", "exam-7", "maths")).await;
    assert_eq!(s, 200, "{first}");
    let session = &first["session"];
    assert_eq!(
        (
            session["student"].as_str(),
            session["subject"].as_str(),
            session["template_id"].as_str(),
            session["duration_limit_secs"].as_u64(),
            session["identifier"].as_str(),
            session["status"].as_str(),
        ),
        (
            Some("lms-ann"),
            Some("Algebra"),
            Some("maths"),
            Some(90 * 60),
            Some("exam-7"),
            Some("created")
        )
    );
    assert_eq!(session["tags"], json!(["june", "room-3"]));
    let (_, again) = open(claims("lms-ann", "exam-7", "maths")).await;
    assert_eq!(
        again["session"]["id"], session["id"],
        "resumed, not made again"
    );
    let (_, other) = open(claims("lms-ann", "exam-8", "maths")).await;
    assert_ne!(other["session"]["id"], session["id"]);

    // Another student's identifier, an unknown template: refused, no cookie.
    let (s, e) = open(claims("lms-bob", "exam-7", "maths")).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
    let (s, e) = open(claims("lms-bob", "exam-9", "nope")).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (422, Some("invalid_field")),
        "{e}"
    );
    // A link without a template only signs in.
    let plain = json!({ "username": "lms-cy", "exp": now + 300 });
    let (s, body) = open(plain).await;
    assert_eq!((s, body["session"].is_null()), (200, true), "{body}");
    let (_, listed) = c
        .call(Method::GET, "/api/v1/sessions", &manager, None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    d.stop().await;
}
