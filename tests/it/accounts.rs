//! Accounts through the real HTTPS API: sign-in, lock-out, enumeration, CSRF,
//! session fixation, cookies across hosts, JWT links, API keys, CSV import,
//! the audit chain, and the isolation matrix over every API route.

use crate::harness::Daemon;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const MANAGER_PW: &str = "Manager pass 123";
const USER_PW: &str = "Student pass 123";
pub(crate) const OTHER: &str = "other.test";

/// How a request authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    None,
    Cookie(String),
    Bearer(String),
}

pub(crate) struct Api {
    pub(crate) d: Daemon,
    pub(crate) client: reqwest::Client,
    pub(crate) own: String,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Api {
    pub(crate) async fn start(vars: &[(&str, &str)]) -> Api {
        let mut all = vec![("MANAGER_PASSWORD", MANAGER_PW)];
        all.extend_from_slice(vars);
        Self::on(Daemon::start(&all).await)
    }

    pub(crate) fn on(d: Daemon) -> Api {
        let root =
            reqwest::Certificate::from_pem(&crate::harness::self_signed_pem(&d.data_dir)).unwrap();
        // HTTP/1.1 so that a Host header other than the URL's can be sent.
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .resolve("localhost", d.running.https_addr)
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .build()
            .unwrap();
        let own = format!("localhost:{}", d.running.https_addr.port());
        Api { d, client, own }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        host: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, self.d.url(path))
            .header("host", host);
        match auth {
            Auth::None => {}
            Auth::Cookie(c) => {
                req = req
                    .header("cookie", format!("__Host-invigil={c}"))
                    .header("origin", format!("https://{host}"));
            }
            Auth::Bearer(t) => req = req.bearer_auth(t),
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            headers,
        }
    }

    /// A new API key of `host` made by `by`; returns its bearer token.
    pub(crate) async fn key(&self, host: &str, by: &Auth, scope: &str) -> String {
        let body = json!({ "name": format!("{scope} key"), "scope": scope });
        let made = self
            .call(Method::POST, "/api/v1/keys", host, by, Some(body))
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        made.body["token"].as_str().unwrap().to_string()
    }

    pub(crate) async fn login(&self, host: &str, username: &str, password: &str) -> Answer {
        let body = json!({ "username": username, "password": password });
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            host,
            &Auth::None,
            Some(body),
        )
        .await
    }

    pub(crate) async fn cookie(&self, host: &str, username: &str, password: &str) -> String {
        let a = self.login(host, username, password).await;
        assert_eq!(a.status, 200, "{username}: {}", a.body);
        session_cookie(&a.headers).expect("session cookie")
    }
}

fn session_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-invigil="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty())
}

/// The manager creates a user with a password; the user changes it once.
pub(crate) async fn make_user(
    api: &Api,
    admin: &Auth,
    host: &str,
    username: &str,
    role: &str,
) -> String {
    let body = json!({ "username": username, "role": role, "password": "Temporary pass 1" });
    let a = api
        .call(Method::POST, "/api/v1/users", host, admin, Some(body))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let first = api.cookie(host, username, "Temporary pass 1").await;
    let change = json!({ "old": "Temporary pass 1", "new": USER_PW });
    let a = api
        .call(
            Method::POST,
            "/api/v1/auth/password",
            host,
            &Auth::Cookie(first),
            Some(change),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    session_cookie(&a.headers).unwrap()
}

#[tokio::test]
async fn first_sign_in_with_generated_password_must_change_it() {
    let d = Daemon::start(&[]).await;
    let password = d.running.generated_manager_password.clone().unwrap();
    let api = Api::on(d);
    let a = api.login(&api.own, "manager", password.expose()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["must_change_password"], true);
    let set_cookie = a.headers["set-cookie"].to_str().unwrap().to_string();
    for attr in [
        "__Host-invigil=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = Auth::Cookie(session_cookie(&a.headers).unwrap());
    let me = api
        .call(Method::GET, "/api/v1/me", &api.own, &cookie, None)
        .await;
    assert_eq!(
        (me.status.as_u16(), me.body["role"].as_str()),
        (200, Some("manager"))
    );
    let blocked = api
        .call(Method::GET, "/api/v1/hosts", &api.own, &cookie, None)
        .await;
    assert_eq!(
        (blocked.status.as_u16(), blocked.code()),
        (403, "password_change_required")
    );
    let change = json!({ "old": password.expose(), "new": MANAGER_PW });
    let changed = api
        .call(
            Method::POST,
            "/api/v1/auth/password",
            &api.own,
            &cookie,
            Some(change),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let fresh = Auth::Cookie(session_cookie(&changed.headers).unwrap());
    assert_eq!(
        api.call(Method::GET, "/api/v1/hosts", &api.own, &fresh, None)
            .await
            .status,
        200
    );
    assert_eq!(
        api.call(Method::GET, "/api/v1/me", &api.own, &cookie, None)
            .await
            .status,
        401,
        "old session revoked"
    );
    api.d.stop().await;
}

#[tokio::test]
async fn brute_force_enumeration_csrf_fixation_and_wrong_host() {
    let api = Api::start(&[("PASSWORD_ATTEMPTS", "3")]).await;
    let own = api.own.clone();
    let manager = Auth::Cookie(api.cookie(&own, "manager", MANAGER_PW).await);
    make_user(&api, &manager, &own, "ann", "student").await;

    // Unknown user and wrong password: the same status and body.
    let unknown = api.login(&own, "nobody", "Whatever pass 1").await;
    let wrong = api.login(&own, "ann", "Whatever pass 1").await;
    assert_eq!((unknown.status.as_u16(), &unknown.body), (401, &wrong.body));
    // The manager does not exist on other hosts: same answer as unknown.
    let host = json!({ "domains": [OTHER] });
    assert_eq!(
        api.call(Method::POST, "/api/v1/hosts", &own, &manager, Some(host))
            .await
            .status,
        201
    );
    let elsewhere = api.login(OTHER, "manager", MANAGER_PW).await;
    assert_eq!(
        (elsewhere.status.as_u16(), &elsewhere.body),
        (401, &wrong.body)
    );

    // Lock-out after PASSWORD_ATTEMPTS failures, with Retry-After.
    api.login(&own, "ann", "Whatever pass 2").await;
    api.login(&own, "ann", "Whatever pass 3").await;
    let locked = api.login(&own, "ann", USER_PW).await;
    assert_eq!((locked.status.as_u16(), locked.code()), (423, "locked"));
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((250..=300).contains(&retry), "{retry}");

    // CSRF: a cookie-authenticated change without our Origin, or with a
    // foreign one, is refused.
    let Auth::Cookie(manager_cookie) = &manager else {
        unreachable!()
    };
    for origin in [None, Some("https://evil.example")] {
        let mut req = api
            .client
            .post(api.d.url("/api/v1/keys"))
            .header("host", &own)
            .header("cookie", format!("__Host-invigil={manager_cookie}"))
            .json(&json!({ "name": "x", "scope": "read" }));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let refused = req.send().await.unwrap();
        assert_eq!(refused.status(), 403, "{origin:?}");
        let v: Value = refused.json().await.unwrap();
        assert_eq!(v["error"], "csrf", "{origin:?}");
    }

    // Session fixation: signing in with a cookie yields a new one and ends the old.
    let old = manager_cookie;
    let again = api
        .client
        .post(api.d.url("/api/v1/auth/login"))
        .header("host", &own)
        .header("origin", format!("https://{own}"))
        .header("cookie", format!("__Host-invigil={old}"))
        .json(&json!({ "username": "manager", "password": MANAGER_PW }))
        .send()
        .await
        .unwrap();
    let new = session_cookie(again.headers()).unwrap();
    assert_ne!(&new, old);
    assert_eq!(
        api.call(Method::GET, "/api/v1/me", &own, &manager, None)
            .await
            .status,
        401
    );

    // A cookie of one host is no session on another.
    let fresh = Auth::Cookie(new);
    assert_eq!(
        api.call(Method::GET, "/api/v1/me", &own, &fresh, None)
            .await
            .status,
        200
    );
    let cross = api
        .call(Method::GET, "/api/v1/me", OTHER, &fresh, None)
        .await;
    assert_eq!((cross.status.as_u16(), cross.code()), (401, "unauthorized"));
    let unknown_host = api
        .call(Method::GET, "/api/v1/me", "nowhere.test", &fresh, None)
        .await;
    assert_eq!(
        (unknown_host.status.as_u16(), unknown_host.code()),
        (404, "unknown_host")
    );
    api.d.stop().await;
}

fn link(secret: &str, claims: Value, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_links_api_keys_and_csv_import() {
    let api = Api::start(&[]).await;
    let own = api.own.clone();
    let manager = Auth::Cookie(api.cookie(&own, "manager", MANAGER_PW).await);
    let rotated = api
        .call(Method::POST, "/api/v1/jwt-secrets", &own, &manager, None)
        .await;
    assert_eq!(rotated.status, 201);
    let secret = rotated.body["secret"].as_str().unwrap().to_string();
    let template = json!({ "id": "physics", "name": "Physics final" });
    assert_eq!(
        api.call(
            Method::POST,
            "/api/v1/templates",
            &own,
            &manager,
            Some(template)
        )
        .await
        .status,
        201
    );
    let now = invigil::auth::now_secs();
    let claims = json!({ "username": "lms-student", "nickname": "From LMS", "identifier": "exam-42",
                         "subject": "Physics", "template": "physics", "timeout": 90, "exp": now + 300, "iat": now });
    let token = link(&secret, claims.clone(), Algorithm::HS256);
    let r = api
        .call(
            Method::GET,
            &format!("/api/v1/auth/jwt?token={token}"),
            &own,
            &Auth::None,
            None,
        )
        .await;
    assert_eq!(r.status, 303);
    // The link lands in the session it names, created from the link's fields.
    let landing = r.headers["location"].to_str().unwrap().to_string();
    let session_id = landing
        .strip_prefix("/#/session/")
        .expect(&landing)
        .to_string();
    let student = Auth::Cookie(session_cookie(&r.headers).unwrap());
    let session = api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{session_id}"),
            &own,
            &student,
            None,
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.body);
    assert_eq!(session.body["subject"], "Physics");
    assert_eq!(session.body["student"], "lms-student");
    assert_eq!(session.body["duration_limit_secs"], 90 * 60);
    let me = api
        .call(Method::GET, "/api/v1/me", &own, &student, None)
        .await;
    assert_eq!(
        (me.body["username"].as_str(), me.body["role"].as_str()),
        (Some("lms-student"), Some("student"))
    );
    let posted = api
        .call(
            Method::POST,
            "/api/v1/auth/jwt",
            &own,
            &Auth::None,
            Some(json!({ "token": token })),
        )
        .await;
    assert_eq!(posted.body["link"]["identifier"], "exam-42");
    // A second link with the same identifier resumes the same session.
    assert_eq!(posted.body["session"]["id"], session_id.as_str());
    for (bad, why) in [
        (
            link("wrong-secret", claims.clone(), Algorithm::HS256),
            "wrong signature",
        ),
        (
            link(
                &secret,
                json!({ "username": "x", "exp": now - 600 }),
                Algorithm::HS256,
            ),
            "expired",
        ),
        (link(&secret, claims.clone(), Algorithm::HS512), "alg HS512"),
        (
            link(
                &secret,
                json!({ "username": "x", "exp": now + 60, "role": "administrator" }),
                Algorithm::HS256,
            ),
            "role",
        ),
    ] {
        let r = api
            .call(
                Method::POST,
                "/api/v1/auth/jwt",
                &own,
                &Auth::None,
                Some(json!({ "token": bad })),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (401, "invalid_token"),
            "{why}"
        );
        assert!(
            r.body["message"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }

    // API keys: read-only keys read, write keys write, revoked keys nothing.
    let mk = |scope: &str| json!({ "name": format!("{scope} key"), "scope": scope });
    let read = api
        .call(
            Method::POST,
            "/api/v1/keys",
            &own,
            &manager,
            Some(mk("read")),
        )
        .await;
    let write = api
        .call(
            Method::POST,
            "/api/v1/keys",
            &own,
            &manager,
            Some(mk("write")),
        )
        .await;
    let read_key = Auth::Bearer(read.body["token"].as_str().unwrap().to_string());
    let write_key = Auth::Bearer(write.body["token"].as_str().unwrap().to_string());
    assert!(read.body.get("secret_sha256").is_none());
    assert_eq!(
        api.call(Method::GET, "/api/v1/users", &own, &read_key, None)
            .await
            .status,
        200
    );
    let denied = api
        .call(
            Method::POST,
            "/api/v1/users",
            &own,
            &read_key,
            Some(json!({ "username": "k1" })),
        )
        .await;
    assert_eq!(denied.status, 403);
    let made = api
        .call(
            Method::POST,
            "/api/v1/users",
            &own,
            &write_key,
            Some(json!({ "username": "k1" })),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = read.body["id"].as_str().unwrap();
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            &own,
            &manager,
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.call(Method::GET, "/api/v1/users", &own, &read_key, None)
            .await
            .status,
        401
    );

    // CSV: a dry run lists every bad row; a bad file imports nothing; a good one all.
    let bad =
        "username,email,role\nzed,zed@example.org,student\nbad name,,student\ncy,nope,student\n";
    let r = api
        .client
        .post(api.d.url("/api/v1/users/import?dry_run=true"))
        .header("host", &own)
        .bearer_auth(match &write_key {
            Auth::Bearer(t) => t,
            _ => unreachable!(),
        })
        .body(bad)
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4], "{report}");
    let good = "\u{feff}username,nickname\nzed,Zed\nyan,Yan\n";
    let r = api
        .client
        .post(api.d.url("/api/v1/users/import"))
        .header("host", &own)
        .bearer_auth(match &write_key {
            Auth::Bearer(t) => t,
            _ => unreachable!(),
        })
        .body(good)
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["created"], 2, "{report}");
    let audit = api
        .call(
            Method::GET,
            "/api/v1/audit?action=users_imported",
            &own,
            &manager,
            None,
        )
        .await;
    assert_eq!(audit.body.as_array().unwrap().len(), 1);
    api.d.stop().await;
}
