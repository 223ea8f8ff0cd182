//! The isolation matrix: every API route × every role × own and other host,
//! against a table of expected access classes kept here, apart from the code.

use crate::accounts::{Api, Auth, MANAGER_PW, OTHER, make_user};
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;

/// The expected access class of every API route. A route missing here fails
/// the matrix, so a new route cannot ship without a decision.
fn expected_class(method: &Method, path: &str) -> Option<&'static str> {
    let table: HashMap<(&str, &str), &str> = [
        (("POST", "/api/v1/auth/login"), "public"),
        (("GET", "/api/v1/client"), "public"),
        (("GET", "/api/v1/openapi.json"), "public"),
        (("GET", "/api/v1/auth/jwt"), "public"),
        (("POST", "/api/v1/auth/jwt"), "public"),
        (("POST", "/api/v1/auth/logout"), "signed"),
        (("POST", "/api/v1/auth/password"), "signed"),
        (("GET", "/api/v1/me"), "signed"),
        (("GET", "/api/v1/me/sessions"), "signed"),
        (("GET", "/api/v1/users"), "admin"),
        (("POST", "/api/v1/users"), "admin"),
        (("POST", "/api/v1/users/import"), "admin"),
        (("GET", "/api/v1/users/{username}"), "admin"),
        (("PATCH", "/api/v1/users/{username}"), "admin"),
        (("DELETE", "/api/v1/users/{username}"), "admin"),
        (("DELETE", "/api/v1/users/{username}/sessions"), "admin"),
        (("GET", "/api/v1/keys"), "admin"),
        (("POST", "/api/v1/keys"), "admin"),
        (("DELETE", "/api/v1/keys/{id}"), "admin"),
        (("GET", "/api/v1/jwt-secrets"), "admin"),
        (("POST", "/api/v1/jwt-secrets"), "admin"),
        (("GET", "/api/v1/audit"), "admin"),
        (("POST", "/api/v1/users/{username}/erase"), "admin"),
        (("DELETE", "/api/v1/sessions/{id}"), "admin"),
        (("GET", "/api/v1/hosts"), "manager"),
        (("POST", "/api/v1/hosts"), "manager"),
        (("GET", "/api/v1/hosts/{id}"), "manager"),
        (("PATCH", "/api/v1/hosts/{id}"), "manager"),
        (("POST", "/api/v1/hosts/{id}/users"), "manager"),
        (("GET", "/api/v1/instance/keys"), "manager"),
        (("POST", "/api/v1/instance/keys"), "manager"),
        (("DELETE", "/api/v1/instance/keys/{id}"), "manager"),
        (("GET", "/api/v1/instance/audit"), "manager"),
        (("GET", "/api/v1/instance/status"), "manager"),
        (("GET", "/api/v1/settings"), "admin"),
        (("PATCH", "/api/v1/settings"), "admin"),
        (("POST", "/api/v1/demo"), "manager"),
        (("GET", "/api/v1/templates"), "staff"),
        (("POST", "/api/v1/templates"), "admin"),
        (("PUT", "/api/v1/templates/{id}"), "admin"),
        (("GET", "/api/v1/sessions"), "staff"),
        (("POST", "/api/v1/sessions"), "admin"),
        (("GET", "/api/v1/sessions/{id}"), "signed"),
        (("GET", "/api/v1/sessions/{id}/template"), "signed"),
        (("POST", "/api/v1/sessions/{id}/periods"), "signed"),
        (("GET", "/api/v1/sessions/{id}/ice"), "signed"),
        (("GET", "/api/v1/sessions/{id}/score"), "staff"),
        (("GET", "/api/v1/sessions/{id}/protocol"), "staff"),
        (("POST", "/api/v1/sessions/{id}/accommodations"), "admin"),
        (("POST", "/api/v1/sessions/{id}/start"), "signed"),
        (("POST", "/api/v1/sessions/{id}/pause"), "signed"),
        (("POST", "/api/v1/sessions/{id}/resume"), "signed"),
        (("POST", "/api/v1/sessions/{id}/stop"), "signed"),
        (("POST", "/api/v1/sessions/{id}/conclude"), "signed"),
        (("GET", "/api/v1/ws"), "signed"),
        (("POST", "/api/v1/sessions/{id}/attachments"), "signed"),
        (("GET", "/api/v1/sessions/{id}/attachments/{aid}"), "signed"),
        (("GET", "/api/v1/sessions/{id}/export"), "staff"),
        (("GET", "/api/v1/sessions/{id}/report"), "staff"),
        (("GET", "/api/v1/reports/sessions.csv"), "staff"),
        (("GET", "/api/v1/webhooks"), "admin"),
        (("POST", "/api/v1/webhooks/secret"), "admin"),
        (("OPTIONS", "/api/v1/sessions/{id}/uploads"), "public"),
        (("POST", "/api/v1/sessions/{id}/uploads"), "signed"),
        (("GET", "/api/v1/sessions/{id}/uploads"), "staff"),
        (("HEAD", "/api/v1/sessions/{id}/uploads/{upload}"), "signed"),
        (
            ("PATCH", "/api/v1/sessions/{id}/uploads/{upload}"),
            "signed",
        ),
        (
            ("DELETE", "/api/v1/sessions/{id}/uploads/{upload}"),
            "signed",
        ),
        (
            ("GET", "/api/v1/sessions/{id}/recordings/{upload}"),
            "staff",
        ),
        (("GET", "/api/v1/sessions/{id}/snapshots/{upload}"), "staff"),
        (("GET", "/api/v1/sessions/{id}/identity"), "signed"),
        (("POST", "/api/v1/sessions/{id}/identity/face"), "signed"),
        (("GET", "/api/v1/sessions/{id}/identity/face"), "signed"),
        (
            ("POST", "/api/v1/sessions/{id}/identity/document"),
            "signed",
        ),
        (("GET", "/api/v1/sessions/{id}/identity/document"), "signed"),
        (
            ("POST", "/api/v1/sessions/{id}/identity/liveness/challenge"),
            "signed",
        ),
        (
            ("POST", "/api/v1/sessions/{id}/identity/liveness"),
            "signed",
        ),
    ]
    .into_iter()
    .collect();
    table.get(&(method.as_str(), path)).copied()
}

/// Codes with which the access guard refuses.
const DENIALS: &[&str] = &[
    "unauthorized",
    "forbidden",
    "csrf",
    "password_change_required",
];

#[tokio::test]
async fn isolation_matrix_over_every_route_role_and_owner() {
    let api = Api::start(&[]).await;
    let own = api.own.clone();
    let manager = Auth::Cookie(api.cookie(&own, "manager", MANAGER_PW).await);
    assert_eq!(
        api.call(
            Method::POST,
            "/api/v1/hosts",
            &own,
            &manager,
            Some(json!({ "domains": [OTHER] }))
        )
        .await
        .status,
        201
    );
    // Things on the other host that nobody here may see.
    let hosts = api
        .call(Method::GET, "/api/v1/hosts", &own, &manager, None)
        .await;
    let other_id = hosts
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["domains"][0] == OTHER)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let own_id = hosts
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["domains"][0] != OTHER)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = Auth::Cookie(make_user(&api, &manager, &own, "adm", "administrator").await);
    let roles: Vec<(&str, Auth)> = vec![
        ("anonymous", Auth::None),
        (
            "student",
            Auth::Cookie(make_user(&api, &manager, &own, "stu", "student").await),
        ),
        (
            "proctor",
            Auth::Cookie(make_user(&api, &manager, &own, "pro", "proctor").await),
        ),
        ("administrator", admin.clone()),
        (
            "key_read",
            Auth::Bearer(api.key(&own, &admin, "read").await),
        ),
        (
            "key_write",
            Auth::Bearer(api.key(&own, &admin, "write").await),
        ),
        ("manager", manager.clone()),
    ];
    // A user that exists only on the other host, made by the manager.
    let foreign =
        json!({ "username": "foreign", "role": "administrator", "password": "Temporary pass 1" });
    let made = api
        .call(
            Method::POST,
            &format!("/api/v1/hosts/{other_id}/users"),
            &own,
            &manager,
            Some(foreign),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);

    // Zero leaks across hosts: another host's records are "not found" here,
    // for every role that may look at users at all.
    for (role, auth) in &roles[3..] {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let body = (method == Method::PATCH).then(|| json!({ "nickname": "x" }));
            let a = api
                .call(method.clone(), "/api/v1/users/foreign", &own, auth, body)
                .await;
            let allowed = !(*role == "key_read" && method != Method::GET);
            if allowed {
                assert_eq!(
                    (a.status.as_u16(), a.code()),
                    (404, "not_found"),
                    "{method} as {role}"
                );
            }
        }
    }
    let other_admin = api.cookie(OTHER, "foreign", "Temporary pass 1").await;
    let listed = api
        .call(
            Method::GET,
            "/api/v1/users",
            OTHER,
            &Auth::Cookie(other_admin),
            None,
        )
        .await;
    assert_eq!(
        (listed.status.as_u16(), listed.code()),
        (403, "password_change_required")
    );
    // The record that path parameters name; deleting it must not end any
    // session the matrix uses.
    let target = json!({ "username": "target" });
    assert_eq!(
        api.call(Method::POST, "/api/v1/users", &own, &admin, Some(target))
            .await
            .status,
        201
    );
    let mut routes = invigil::web::api::routes();
    // Signing out ends the session the following rows use: it goes last.
    routes.sort_by_key(|r| r.path == "/api/v1/auth/logout");
    let mut checked = 0;
    let mut failures = Vec::new();
    for r in &routes {
        let class = expected_class(&r.method, r.path)
            .unwrap_or_else(|| panic!("no isolation row for {} {}", r.method, r.path));
        for (owner, host) in [("own", own.as_str()), ("other", OTHER)] {
            for (role, auth) in &roles {
                let path = r.path.replace("{username}", "target").replace(
                    "{id}",
                    if r.path.contains("hosts") {
                        &own_id
                    } else {
                        "nokey"
                    },
                );
                let body =
                    (r.method != Method::GET && r.method != Method::DELETE).then(|| json!({}));
                let a = api.call(r.method.clone(), &path, host, auth, body).await;
                // HEAD answers carry no body: judge them by status.
                let denied = DENIALS.contains(&a.code())
                    || (r.method == Method::HEAD && matches!(a.status.as_u16(), 401 | 403));
                let read_only = matches!(r.method, Method::GET | Method::HEAD);
                let should_deny = match (class, owner, *role) {
                    ("public", _, _) => false,
                    (_, _, "anonymous") => true,
                    // Credentials of one host are nothing on another.
                    (_, "other", _) => true,
                    // API keys have no session or password; read-only ones
                    // may not even try to change them.
                    ("signed", _, "key_read") => !read_only,
                    ("signed", _, _) => false,
                    ("admin", _, "student" | "proctor") => true,
                    ("admin", _, "key_read") => !read_only,
                    ("admin", _, _) => false,
                    ("manager", _, "manager") => false,
                    ("manager", _, _) => true,
                    ("staff", _, "student") => true,
                    ("staff", _, "key_read") => !read_only,
                    ("staff", _, _) => false,
                    _ => unreachable!(),
                };
                let expected_status = match (should_deny, owner, *role) {
                    (true, _, "anonymous") | (true, "other", _) => Some(401),
                    (true, _, _) => Some(403),
                    (false, _, _) => None,
                };
                if denied != should_deny || expected_status.is_some_and(|s| s != a.status.as_u16())
                {
                    failures.push(format!(
                        "{} {path} on {owner} host as {role}: {} {}",
                        r.method, a.status, a.body
                    ));
                }
                checked += 1;
            }
        }
    }
    eprintln!(
        "isolation matrix: {} routes x {} roles x 2 owners = {checked} requests",
        routes.len(),
        roles.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    api.d.stop().await;
}
