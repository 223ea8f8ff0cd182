//! REST calls for the integration tests: a reqwest client trusting the
//! daemon's certificate, sending our Origin, with the sign-in helpers.

use crate::harness::{Daemon, self_signed_pem};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;

/// REST calls as a browser on the daemon's own origin makes them.
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
}

impl Rest {
    pub fn new(d: &Daemon) -> Rest {
        Rest::at(&d.data_dir, d.running.https_addr)
    }

    /// For a daemon on `addr` with its data directory at `data_dir`.
    pub fn at(data_dir: &Path, addr: SocketAddr) -> Rest {
        let root = reqwest::Certificate::from_pem(&self_signed_pem(data_dir)).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .resolve("localhost", addr)
            .http1_only()
            .build()
            .unwrap();
        Rest {
            http,
            base: format!("https://localhost:{}", addr.port()),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base);
        if !cookie.is_empty() {
            req = req.header("cookie", format!("__Host-invigil={cookie}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A request as the browser sends it (our Origin, the session cookie),
    /// for bodies and headers `call` does not cover.
    pub fn request(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("cookie", format!("__Host-invigil={cookie}"))
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{username}");
        r.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("__Host-invigil="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .unwrap()
    }

    /// A user made by the manager, first password already changed.
    pub async fn user(&self, manager: &str, username: &str, role: &str, groups: &[&str]) -> String {
        let body = json!({ "username": username, "role": role, "password": "Temporary pass 1", "groups": groups });
        assert_eq!(
            self.call(Method::POST, "/api/v1/users", manager, Some(body))
                .await
                .0,
            201
        );
        let first = self.login(username, "Temporary pass 1").await;
        let change = json!({ "old": "Temporary pass 1", "new": "Chosen pass 123" });
        let (s, _) = self
            .call(Method::POST, "/api/v1/auth/password", &first, Some(change))
            .await;
        assert_eq!(s, 200);
        self.login(username, "Chosen pass 123").await
    }

    pub async fn template(&self, cookie: &str, id: &str, period_secs: u32) {
        let t = json!({ "id": id, "name": id, "weights": { "b2": 0.5, "n1": 1.0 }, "threshold": 50, "period_secs": period_secs });
        assert_eq!(
            self.call(Method::POST, "/api/v1/templates", cookie, Some(t))
                .await
                .0,
            201
        );
    }

    /// Creates a session and returns (host_id, id).
    pub async fn session(
        &self,
        cookie: &str,
        student: &str,
        template: &str,
        proctors: &[&str],
    ) -> (String, String) {
        let new = json!({ "student": student, "template": template, "proctors": proctors, "proctor_group": "room-7" });
        let (s, body) = self
            .call(Method::POST, "/api/v1/sessions", cookie, Some(new))
            .await;
        assert_eq!(s, 201, "{body}");
        (
            body["host_id"].as_str().unwrap().into(),
            body["id"].as_str().unwrap().into(),
        )
    }

    pub async fn start(&self, student: &str, id: &str) {
        let (s, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{id}/start"),
                student,
                None,
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
}
