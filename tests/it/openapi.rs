//! The OpenAPI document against the live server: every documented operation
//! is served, and schemathesis (a property-based API tester) finds no server
//! error and no answer that contradicts the document.

use crate::harness::Daemon;
use serde_json::{Value, json};
use std::process::Command;

const PW: &str = "Manager pass 123";

/// The manager's write key: it may call every operation on the manager's host.
async fn manager_key(d: &Daemon) -> String {
    let base = d.url("");
    let login = d
        .client
        .post(d.url("/api/v1/auth/login"))
        .json(&json!({ "username": "manager", "password": PW }))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let key: Value = d
        .client
        .post(d.url("/api/v1/instance/keys"))
        .header("cookie", cookie)
        .header("origin", base)
        .json(&json!({ "name": "api test", "scope": "write" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    key["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let key = manager_key(&d).await;
    let doc: Value = d
        .client
        .get(d.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut count = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace('{', "x").replace('}', "");
            let method =
                reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let r = d
                .client
                .request(method.clone(), d.url(&concrete))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let fallback = body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no API endpoint"));
            assert!(
                status != 405 && !fallback,
                "{method} {path} is documented but not served: {status} {body}"
            );
            count += 1;
        }
    }
    assert!(count >= 40, "{count} operations");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_contradiction() {
    let venv = std::env::var("INVIGIL_TEST_VENV")
        .unwrap_or_else(|_| format!("{}/target/venv", env!("CARGO_MANIFEST_DIR")));
    let bin = format!("{venv}/bin/schemathesis");
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: run tests/run, which installs schemathesis"
    );
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let key = manager_key(&d).await;
    let url = d.url("/api/v1/openapi.json");
    let workdir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .current_dir(workdir.path())
            .args(["run", &url, "--tls-verify", "false", "-n", "10", "--request-timeout", "10"])
            .args(["-c", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["--generation-deterministic"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: String = report.lines().rev().take(12).collect::<Vec<_>>().join("\n");
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("passed") && !report.contains("failed"),
        "{report}"
    );
    d.stop().await;
}
