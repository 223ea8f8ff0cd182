//! Sign-in sessions: a random token in the `__Host-invigil` cookie, stored only
//! as an HMAC under the session key, bound to the host it was made on, with a
//! sliding expiry.

use super::{Accounts, AuthError, Principal, Role, random_token};
use crate::store::{Scan, StoreError, WriteTx, catalog};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The cookie's name; the `__Host-` prefix makes browsers insist on Secure,
/// Path=/ and no Domain, so no sibling domain can set or read it.
pub const COOKIE: &str = "__Host-invigil";

/// Sliding expiry is written back at most this often, so that reads do not
/// turn every request into a database write.
const TOUCH_EVERY: u64 = 60;

/// A stored sign-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The host the session belongs to (the manager's sessions too).
    pub host_id: String,
    pub username: String,
    pub manager: bool,
    pub role: Role,
    pub created_at: u64,
    pub last_seen: u64,
    pub expires_at: u64,
}

impl Session {
    pub fn principal(&self) -> Principal {
        if self.manager {
            Principal::Manager {
                username: self.username.clone(),
            }
        } else {
            Principal::User {
                host_id: self.host_id.clone(),
                username: self.username.clone(),
                role: self.role,
            }
        }
    }
}

fn session_key(id: &str) -> Vec<u8> {
    format!("s/{id}").into_bytes()
}

fn owner_prefix(host_id: &str, username: &str) -> Vec<u8> {
    format!("u/{host_id}\0{username}\0").into_bytes()
}

impl Accounts {
    /// The storage id of a token: HMAC-SHA256 under the session key.
    fn token_id(&self, token: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.session_key)
            .expect("HMAC takes keys of any length");
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Creates a session and returns its token (for the cookie).
    pub fn open_session(
        &self,
        tx: &mut dyn WriteTx,
        host_id: &str,
        username: &str,
        manager: bool,
        role: Role,
        now: u64,
    ) -> Result<String, StoreError> {
        let token = random_token(32);
        let id = self.token_id(&token);
        let session = Session {
            host_id: host_id.to_string(),
            username: username.to_string(),
            manager,
            role,
            created_at: now,
            last_seen: now,
            expires_at: now + self.policy.session_expires.as_secs(),
        };
        tx.put_json(catalog::AUTH_SESSIONS, &session_key(&id), &session)?;
        let mut index = owner_prefix(host_id, username);
        index.extend_from_slice(id.as_bytes());
        tx.put(catalog::AUTH_SESSIONS, &index, b"")?;
        Ok(token)
    }

    /// Finds the live session of `token` on `host_id`, sliding its expiry. A
    /// token from another host is treated as no session at all.
    pub fn session(&self, token: &str, host_id: &str, now: u64) -> Result<Session, AuthError> {
        if token.is_empty() || token.len() > 200 {
            return Err(AuthError::Unauthenticated);
        }
        let id = self.token_id(token);
        let key = session_key(&id);
        let found: Option<Session> = self
            .store
            .read(|tx| tx.get_json(catalog::AUTH_SESSIONS, &key))?;
        let Some(mut session) = found else {
            return Err(AuthError::Unauthenticated);
        };
        if session.host_id != host_id || session.expires_at <= now {
            return Err(AuthError::Unauthenticated);
        }
        if now >= session.last_seen + TOUCH_EVERY {
            session.last_seen = now;
            session.expires_at = now + self.policy.session_expires.as_secs();
            let s = session.clone();
            self.store.write(|tx| {
                // Only if it was not revoked meanwhile.
                if tx.get(catalog::AUTH_SESSIONS, &key)?.is_some() {
                    tx.put_json(catalog::AUTH_SESSIONS, &key, &s)?;
                }
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(session)
    }

    /// Ends one session (logout).
    pub fn close_session(&self, token: &str) -> Result<(), AuthError> {
        let id = self.token_id(token);
        self.store.write(|tx| {
            if let Some(s) = tx.get_json::<Session>(catalog::AUTH_SESSIONS, &session_key(&id))? {
                tx.delete(catalog::AUTH_SESSIONS, &session_key(&id))?;
                let mut index = owner_prefix(&s.host_id, &s.username);
                index.extend_from_slice(id.as_bytes());
                tx.delete(catalog::AUTH_SESSIONS, &index)?;
            }
            Ok::<_, AuthError>(())
        })
    }
}

/// Ends every session of one account inside a transaction; returns how many.
pub fn revoke_user_in(
    tx: &mut dyn WriteTx,
    host_id: &str,
    username: &str,
) -> Result<usize, StoreError> {
    let prefix = owner_prefix(host_id, username);
    let index = tx.scan(catalog::AUTH_SESSIONS, &Scan::prefix(&prefix))?;
    for (k, _) in &index {
        let id = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
        tx.delete(catalog::AUTH_SESSIONS, &session_key(&id))?;
        tx.delete(catalog::AUTH_SESSIONS, k)?;
    }
    Ok(index.len())
}

/// Removes expired sessions (a periodic sweep); returns how many.
pub fn sweep(store: &dyn crate::store::Store, now: u64) -> Result<usize, StoreError> {
    let rows = store.scan(catalog::AUTH_SESSIONS, &Scan::prefix(b"s/"))?;
    let expired: Vec<(Vec<u8>, Session)> = rows
        .into_iter()
        .filter_map(|(k, v)| serde_json::from_slice::<Session>(&v).ok().map(|s| (k, s)))
        .filter(|(_, s)| s.expires_at <= now)
        .collect();
    store.write(|tx| {
        for (k, s) in &expired {
            tx.delete(catalog::AUTH_SESSIONS, k)?;
            let mut index = owner_prefix(&s.host_id, &s.username);
            index.extend_from_slice(&k[2..]);
            tx.delete(catalog::AUTH_SESSIONS, &index)?;
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(expired.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Policy;
    use crate::store::{MemoryStore, Store};
    use std::sync::Arc;
    use std::time::Duration;

    pub(crate) fn accounts() -> Accounts {
        let config = crate::config::Config::load(None, Vec::new())
            .unwrap()
            .config;
        let mut policy = Policy::from_config(&config);
        policy.session_expires = Duration::from_secs(600);
        Accounts::new(Arc::new(MemoryStore::new()), policy, b"k".repeat(32))
    }

    #[test]
    fn sessions_slide_expire_and_stay_on_their_host() {
        let a = accounts();
        let store: &dyn Store = a.store.as_ref();
        let token = store
            .write(|tx| a.open_session(tx, "h1", "ann", false, Role::Student, 1000))
            .unwrap();
        assert_eq!(a.session(&token, "h1", 1000).unwrap().username, "ann");
        assert!(matches!(
            a.session(&token, "h2", 1000),
            Err(AuthError::Unauthenticated)
        ));
        // Used at 1500: now valid until 2100, although created at 1000.
        a.session(&token, "h1", 1500).unwrap();
        assert!(a.session(&token, "h1", 2100).is_err());
        assert!(a.session("forged", "h1", 1000).is_err());
        // Nothing stored reveals the token.
        let rows = store.scan(catalog::AUTH_SESSIONS, &Scan::all()).unwrap();
        assert!(rows.iter().all(|(k, v)| {
            !String::from_utf8_lossy(k).contains(&token)
                && !String::from_utf8_lossy(v).contains(&token)
        }));
    }

    #[test]
    fn logout_and_revocation() {
        let a = accounts();
        let store: &dyn Store = a.store.as_ref();
        let t1 = store
            .write(|tx| a.open_session(tx, "h1", "ann", false, Role::Student, 10))
            .unwrap();
        let t2 = store
            .write(|tx| a.open_session(tx, "h1", "ann", false, Role::Student, 10))
            .unwrap();
        let other = store
            .write(|tx| a.open_session(tx, "h1", "bob", false, Role::Student, 10))
            .unwrap();
        a.close_session(&t1).unwrap();
        assert!(a.session(&t1, "h1", 10).is_err());
        assert_eq!(
            store.write(|tx| revoke_user_in(tx, "h1", "ann")).unwrap(),
            1
        );
        assert!(a.session(&t2, "h1", 10).is_err());
        assert!(a.session(&other, "h1", 10).is_ok());
        assert_eq!(sweep(store, 10_000).unwrap(), 1);
        assert!(
            store
                .scan(catalog::AUTH_SESSIONS, &Scan::all())
                .unwrap()
                .is_empty()
        );
    }
}
