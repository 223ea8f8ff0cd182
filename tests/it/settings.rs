//! A host's own settings as its administrator changes them: the title and
//! the webhook address, with the manager's fields out of reach, the webhook
//! address checked, and each change in the host's audit log.

use crate::harness::Daemon;
use crate::rest::Rest;
use reqwest::Method;
use serde_json::json;

const PW: &str = "Manager pass 123";

#[tokio::test]
async fn an_administrator_sets_the_title_and_webhook_of_their_host() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let admin = c.user(&manager, "adm", "administrator", &[]).await;

    let (status, before) = c.call(Method::GET, "/api/v1/settings", &admin, None).await;
    assert_eq!(status, 200, "{before}");
    let change =
        json!({ "title": "North School", "webhook_url": "https://lms.school.example/hook" });
    let (status, after) = c
        .call(Method::PATCH, "/api/v1/settings", &admin, Some(change))
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["title"], "North School");
    assert_eq!(after["webhook_url"], "https://lms.school.example/hook");
    assert_eq!(after["domains"], before["domains"]);

    // The manager's fields are refused by name, not silently ignored.
    for body in [
        json!({ "retention_days": 1 }),
        json!({ "volume": 1 }),
        json!({ "webhook_allow_private": true }),
        json!({ "disabled": true }),
    ] {
        let (status, e) = c
            .call(
                Method::PATCH,
                "/api/v1/settings",
                &admin,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body} -> {e}");
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        assert!(e["message"].as_str().unwrap().contains(&field), "{e}");
    }
    // A webhook address that is not a web address, and an empty title.
    for (body, field) in [
        (
            json!({ "webhook_url": "ftp://lms.example/x" }),
            "webhook_url",
        ),
        (json!({ "title": " " }), "title"),
    ] {
        let (status, e) = c
            .call(Method::PATCH, "/api/v1/settings", &admin, Some(body))
            .await;
        assert_eq!(status, 422, "{e}");
        assert!(e["message"].as_str().unwrap().contains(field), "{e}");
    }
    // Removing the webhook.
    let (_, after) = c
        .call(
            Method::PATCH,
            "/api/v1/settings",
            &admin,
            Some(json!({ "webhook_url": null })),
        )
        .await;
    assert!(after["webhook_url"].is_null(), "{after}");

    // The manager's partial updates remove a field with null too.
    let host = format!("/api/v1/hosts/{}", after["id"].as_str().unwrap());
    for (volume, expected) in [(json!(5), json!(5)), (json!(null), json!(null))] {
        let (status, h) = c
            .call(
                Method::PATCH,
                &host,
                &manager,
                Some(json!({ "volume": volume })),
            )
            .await;
        assert_eq!((status, &h["volume"]), (200, &expected), "{h}");
    }

    let (_, audit) = c
        .call(
            Method::GET,
            "/api/v1/audit?action=settings_changed",
            &admin,
            None,
        )
        .await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert!(entries.iter().all(|e| e["actor"] == "adm"), "{audit}");
    d.stop().await;
}
