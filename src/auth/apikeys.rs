//! API keys for integrations: `Authorization: Bearer ivk_<id>_<secret>`.
//! Shown once at creation; only a SHA-256 of the secret is kept. A host's keys
//! act as its administrator (read-only or read-write); the manager's instance
//! keys act as the manager and also open `/metrics` from off-loopback.

use super::audit::{self, Event};
use super::{AuthError, Principal, now_secs, random_token};
use crate::store::{Scan, Store, catalog};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "ivk";
/// `last_used` is written back at most this often.
const TOUCH_EVERY: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    /// `None` for the manager's instance keys.
    pub host_id: Option<String>,
    pub name: String,
    /// Read-only keys may only use safe methods (GET, HEAD).
    pub write: bool,
    #[serde(skip_serializing)]
    pub secret_sha256: String,
    pub created_by: String,
    pub created_at: u64,
    pub last_used: Option<u64>,
    pub revoked: bool,
}

/// Stored form; the public [`ApiKey`] hides the hash from JSON answers.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    host_id: Option<String>,
    name: String,
    write: bool,
    secret_sha256: String,
    created_by: String,
    created_at: u64,
    last_used: Option<u64>,
    revoked: bool,
}

impl From<Stored> for ApiKey {
    fn from(s: Stored) -> Self {
        ApiKey {
            id: s.id,
            host_id: s.host_id,
            name: s.name,
            write: s.write,
            secret_sha256: s.secret_sha256,
            created_by: s.created_by,
            created_at: s.created_at,
            last_used: s.last_used,
            revoked: s.revoked,
        }
    }
}

impl From<&ApiKey> for Stored {
    fn from(k: &ApiKey) -> Self {
        Stored {
            id: k.id.clone(),
            host_id: k.host_id.clone(),
            name: k.name.clone(),
            write: k.write,
            secret_sha256: k.secret_sha256.clone(),
            created_by: k.created_by.clone(),
            created_at: k.created_at,
            last_used: k.last_used,
            revoked: k.revoked,
        }
    }
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn scope(host_id: &Option<String>) -> &str {
    host_id.as_deref().unwrap_or(audit::INSTANCE)
}

/// Creates a key and returns it with its token, which is never shown again.
pub fn create(
    store: &dyn Store,
    by: &Principal,
    host_id: Option<&str>,
    name: &str,
    write: bool,
    client: &str,
) -> Result<(ApiKey, String), AuthError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AuthError::invalid("name", "must be 1 to 100 characters"));
    }
    let id = hex::encode(random_token(6).as_bytes())[..12].to_string();
    let secret = random_token(32);
    let key = ApiKey {
        id: id.clone(),
        host_id: host_id.map(str::to_string),
        name: name.to_string(),
        write,
        secret_sha256: digest(&secret),
        created_by: by.actor(),
        created_at: now_secs(),
        last_used: None,
        revoked: false,
    };
    store.write(|tx| {
        tx.put_json(catalog::API_KEYS, id.as_bytes(), &Stored::from(&key))?;
        audit::append(
            tx,
            scope(&key.host_id),
            Event::new(by.actor(), "api_key_created", &id)
                .client(client)
                .with("name", name)
                .with("write", write.to_string()),
        )?;
        Ok::<_, AuthError>(())
    })?;
    Ok((key, format!("{PREFIX}_{id}_{secret}")))
}

/// The keys of a host (or the instance keys for `None`).
pub fn list(store: &dyn Store, host_id: Option<&str>) -> Result<Vec<ApiKey>, AuthError> {
    Ok(store
        .scan(catalog::API_KEYS, &Scan::all())?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Stored>(&v).ok())
        .map(ApiKey::from)
        .filter(|k| k.host_id.as_deref() == host_id)
        .collect())
}

/// Revokes a key of `host_id`; a key of another host is "not found".
pub fn revoke(
    store: &dyn Store,
    by: &Principal,
    host_id: Option<&str>,
    id: &str,
    client: &str,
) -> Result<(), AuthError> {
    store.write(|tx| {
        let found: Option<Stored> = tx.get_json(catalog::API_KEYS, id.as_bytes())?;
        let mut key = found
            .map(ApiKey::from)
            .filter(|k| k.host_id.as_deref() == host_id)
            .ok_or_else(|| AuthError::NotFound(format!("API key {id}")))?;
        key.revoked = true;
        tx.put_json(catalog::API_KEYS, id.as_bytes(), &Stored::from(&key))?;
        audit::append(
            tx,
            scope(&key.host_id),
            Event::new(by.actor(), "api_key_revoked", id).client(client),
        )?;
        Ok(())
    })
}

/// Checks a bearer token; the answer for every kind of wrong token is the same.
pub fn authenticate(store: &dyn Store, token: &str, now: u64) -> Result<ApiKey, AuthError> {
    let mut parts = token.splitn(3, '_');
    let (Some(PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Unauthenticated);
    };
    if id.len() > 32 || secret.len() > 100 {
        return Err(AuthError::Unauthenticated);
    }
    let found: Option<Stored> = store.read(|tx| tx.get_json(catalog::API_KEYS, id.as_bytes()))?;
    let Some(mut key) = found.map(ApiKey::from) else {
        return Err(AuthError::Unauthenticated);
    };
    let matches: bool = digest(secret)
        .as_bytes()
        .ct_eq(key.secret_sha256.as_bytes())
        .into();
    if !matches || key.revoked {
        return Err(AuthError::Unauthenticated);
    }
    if key.last_used.is_none_or(|t| now >= t + TOUCH_EVERY) {
        key.last_used = Some(now);
        store.write(|tx| tx.put_json(catalog::API_KEYS, id.as_bytes(), &Stored::from(&key)))?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn keys_authenticate_until_revoked_and_stay_on_their_host() {
        let store = MemoryStore::new();
        let by = Principal::Manager {
            username: "m".into(),
        };
        let (key, token) = create(&store, &by, Some("h1"), "LMS", false, "").unwrap();
        assert!(token.starts_with("ivk_"));
        let found = authenticate(&store, &token, 10).unwrap();
        assert_eq!((found.id.as_str(), found.write), (key.id.as_str(), false));
        assert_eq!(found.last_used, Some(10));
        assert!(authenticate(&store, &format!("{token}x"), 10).is_err());
        assert!(authenticate(&store, "ivk_nope_nope", 10).is_err());
        assert!(authenticate(&store, "garbage", 10).is_err());
        assert!(matches!(
            revoke(&store, &by, Some("h2"), &key.id, ""),
            Err(AuthError::NotFound(_))
        ));
        revoke(&store, &by, Some("h1"), &key.id, "").unwrap();
        assert!(authenticate(&store, &token, 10).is_err());
        assert_eq!(list(&store, Some("h1")).unwrap().len(), 1);
        assert!(list(&store, None).unwrap().is_empty());
        let json = serde_json::to_string(&list(&store, Some("h1")).unwrap()).unwrap();
        assert!(
            !json.contains(&key.secret_sha256),
            "hash never leaves the store"
        );
    }
}
