//! JWT links from an LMS: HS256 with the host's secrets (two during a rotation),
//! the vendor's payload fields, refused with a named reason otherwise.

use super::audit::{self, Event};
use super::hosts::Host;
use super::login::SignedIn;
use super::users::{self, User};
use super::{Accounts, AuthError, Principal, Role};
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
const LEEWAY: u64 = 60;
/// Longest accepted link token.
const MAX_TOKEN: usize = 8 * 1024;

/// Tags come as a list or as one comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Tags {
    List(Vec<String>),
    Text(String),
}

/// The vendor's payload; other fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LinkClaims {
    pub username: Option<String>,
    pub nickname: Option<String>,
    pub identifier: Option<String>,
    pub subject: Option<String>,
    /// Minutes the session may last.
    pub timeout: Option<u64>,
    pub template: Option<String>,
    pub tags: Option<Tags>,
    pub role: Option<String>,
    pub exp: Option<u64>,
    pub iat: Option<u64>,
}

impl LinkClaims {
    pub fn tags(&self) -> Vec<String> {
        match &self.tags {
            None => Vec::new(),
            Some(Tags::List(l)) => l.clone(),
            Some(Tags::Text(t)) => t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

fn refused(reason: impl Into<String>) -> AuthError {
    AuthError::Token(reason.into())
}

/// The `alg` of a token's header, read before anything else so that `none`
/// and every other algorithm are refused by name.
fn header_alg(token: &str) -> Result<String, AuthError> {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| refused("not a JWT (the header is not base64url)"))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| refused("not a JWT (the header is not JSON)"))?;
    value
        .get("alg")
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| refused("the header has no alg"))
}

/// Verifies a link token against a host's secrets and returns its claims.
pub fn verify(host: &Host, token: &str, now: u64) -> Result<LinkClaims, AuthError> {
    if token.len() > MAX_TOKEN || token.split('.').count() != 3 {
        return Err(refused("not a JWT (expected three dot-separated parts)"));
    }
    let alg = header_alg(token)?;
    if alg != "HS256" {
        return Err(refused(format!(
            "alg {alg} is not accepted; links must use HS256"
        )));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let mut last = refused("this host has no JWT secret");
    for secret in &host.jwt_secrets {
        let key = DecodingKey::from_secret(secret.secret.as_bytes())
            .map_err(|e| AuthError::Token(e.to_string()))?;
        match jsonwebtoken::decode::<LinkClaims>(token, &key, &validation) {
            Ok(data) => {
                let claims = data.claims;
                if claims.iat.is_some_and(|iat| iat > now + LEEWAY) {
                    return Err(refused("not yet valid (iat is in the future)"));
                }
                if claims
                    .username
                    .as_deref()
                    .is_none_or(|u| u.trim().is_empty())
                {
                    return Err(refused("missing field username"));
                }
                return Ok(claims);
            }
            Err(e) => {
                last = match e.kind() {
                    ErrorKind::InvalidSignature => refused("wrong signature"),
                    ErrorKind::ExpiredSignature => refused("expired"),
                    ErrorKind::ImmatureSignature => refused("not yet valid"),
                    ErrorKind::MissingRequiredClaim(c) => refused(format!("missing field {c}")),
                    ErrorKind::InvalidClaimFormat(c) => {
                        refused(format!("field {c} has the wrong type"))
                    }
                    ErrorKind::Json(e) => refused(format!("the payload is not valid: {e}")),
                    _ => refused(format!("invalid token: {e}")),
                };
                // Only a wrong signature may be fixed by the other secret.
                if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

/// Signs a link with the host's current secret, as an LMS would (used by the
/// demo, whose sign-in links are ordinary JWT links).
pub fn mint(host: &Host, claims: &LinkClaims) -> Result<String, AuthError> {
    let secret = host
        .jwt_secrets
        .first()
        .ok_or_else(|| refused("this host has no JWT secret"))?;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.secret.as_bytes())
        .map_err(|e| AuthError::Token(e.to_string()))?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key)
        .map_err(|e| AuthError::Token(e.to_string()))
}

impl Accounts {
    /// Signs in through a link: the user is created or updated from the
    /// payload (role student unless the payload names a role the host allows).
    pub fn jwt_login(
        &self,
        host: &Host,
        token: &str,
        client: &str,
        now: u64,
    ) -> Result<(SignedIn, LinkClaims), AuthError> {
        let claims = verify(host, token, now)?;
        let username = users::normalize_username(claims.username.as_deref().unwrap_or_default())
            .map_err(|_| refused("field username is not a valid username"))?;
        let role = match claims.role.as_deref() {
            None | Some("") => Role::Student,
            Some(r) => {
                let role =
                    Role::parse_host_role(r).ok_or_else(|| refused(format!("unknown role {r}")))?;
                if role != Role::Student && !host.jwt_roles.contains(&role) {
                    return Err(refused(format!(
                        "this host does not let links give the role {r}"
                    )));
                }
                role
            }
        };
        let nickname = claims
            .nickname
            .as_deref()
            .map(|n| n.trim().chars().take(users::MAX_TEXT).collect::<String>());
        let signed = self.store.write(|tx| {
            let existing = users::load(tx, &host.id, &username)?;
            let user = match existing {
                Some(u) if u.disabled => {
                    return Err(AuthError::Forbidden("this account is disabled".into()));
                }
                Some(mut u) => {
                    if let Some(n) = &nickname {
                        u.nickname = n.clone();
                    }
                    u.role = role;
                    u.updated_at = now;
                    tx.put_json(
                        crate::store::catalog::USERS,
                        &users::key(&host.id, &username),
                        &u,
                    )?;
                    u
                }
                None => {
                    let mut u: User = users::blank(&host.id, &username);
                    u.role = role;
                    if let Some(n) = &nickname {
                        u.nickname = n.clone();
                    }
                    users::insert(tx, &u)?;
                    u
                }
            };
            let token = self.open_session(tx, &host.id, &username, false, user.role, now)?;
            let principal = Principal::User {
                host_id: host.id.clone(),
                username: username.clone(),
                role: user.role,
            };
            audit::append(
                tx,
                &host.id,
                Event::new(principal.actor(), "jwt_sign_in", &username)
                    .client(client)
                    .with("identifier", claims.identifier.clone().unwrap_or_default()),
            )?;
            Ok(SignedIn {
                token,
                principal,
                must_change_password: false,
            })
        })?;
        Ok((signed, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hosts::JwtSecret;
    use jsonwebtoken::{EncodingKey, Header};

    fn host() -> Host {
        Host {
            id: "h1".into(),
            domains: vec!["a.test".into()],
            title: "A".into(),
            valid_until: None,
            volume: None,
            sessions_used: 0,
            retention_days: None,
            disabled: false,
            jwt_roles: vec![],
            webhook_url: None,
            webhook_secret: None,
            webhook_allow_private: false,
            jwt_secrets: vec![
                JwtSecret {
                    id: "new".into(),
                    secret: "new-secret-0123456789".into(),
                    created_at: 0,
                },
                JwtSecret {
                    id: "old".into(),
                    secret: "old-secret-0123456789".into(),
                    created_at: 0,
                },
            ],
            created_at: 0,
        }
    }

    fn sign(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn reason(r: Result<LinkClaims, AuthError>) -> String {
        match r {
            Err(AuthError::Token(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn valid_links_with_either_secret() {
        // Expiry is checked against the real clock.
        let now = crate::auth::now_secs();
        let claims = serde_json::json!({
            "username": "ann", "nickname": "Ann", "identifier": "exam-1", "subject": "Maths",
            "timeout": 90, "template": "default", "tags": "a, b", "exp": now + 600, "iat": now,
            "unknown_field": true
        });
        for secret in ["new-secret-0123456789", "old-secret-0123456789"] {
            let c = verify(
                &host(),
                &sign(claims.clone(), secret, Algorithm::HS256),
                now,
            )
            .unwrap();
            assert_eq!(c.identifier.as_deref(), Some("exam-1"));
            assert_eq!(c.tags(), ["a", "b"]);
        }
    }

    #[test]
    fn refusals_are_named() {
        let now = crate::auth::now_secs();
        let h = host();
        let good = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"username": "ann", "exp": now + 600, "iat": now});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let s = "new-secret-0123456789";
        assert_eq!(
            reason(verify(
                &h,
                &sign(good(serde_json::json!({})), "other", Algorithm::HS256),
                now
            )),
            "wrong signature"
        );
        assert_eq!(
            reason(verify(
                &h,
                &sign(
                    good(serde_json::json!({"exp": now - 100})),
                    s,
                    Algorithm::HS256
                ),
                now
            )),
            "expired"
        );
        assert!(
            reason(verify(
                &h,
                &sign(
                    good(serde_json::json!({"iat": now + 600})),
                    s,
                    Algorithm::HS256
                ),
                now
            ))
            .contains("not yet valid")
        );
        assert_eq!(
            reason(verify(
                &h,
                &sign(
                    good(serde_json::json!({"nbf": now + 600})),
                    s,
                    Algorithm::HS256
                ),
                now
            )),
            "not yet valid"
        );
        assert_eq!(
            reason(verify(
                &h,
                &sign(serde_json::json!({"username": "ann"}), s, Algorithm::HS256),
                now
            )),
            "missing field exp"
        );
        assert_eq!(
            reason(verify(
                &h,
                &sign(serde_json::json!({"exp": now + 600}), s, Algorithm::HS256),
                now
            )),
            "missing field username"
        );
        assert!(
            reason(verify(
                &h,
                &sign(good(serde_json::json!({})), s, Algorithm::HS384),
                now
            ))
            .contains("alg HS384")
        );
        // alg "none": header {"alg":"none"}, no signature.
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"username":"ann","exp":9999999999}"#)
        );
        assert!(reason(verify(&h, &none, now)).contains("alg none"));
        assert!(reason(verify(&h, "a.b", now)).contains("not a JWT"));
        assert!(reason(verify(&h, &"x".repeat(MAX_TOKEN + 1), now)).contains("not a JWT"));
    }
}
