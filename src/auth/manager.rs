//! The manager account: created at first start from `MANAGER_USERNAME` and
//! `MANAGER_PASSWORD`, or with a generated password that is shown once.

use super::{AuthError, password};
use crate::config::{PasswordRule, Secret};
use crate::store::{Store, catalog};
use serde::{Deserialize, Serialize};

/// The manager's key in the users tree (host users' keys contain a NUL).
pub const KEY: &[u8] = b"manager";

/// The stored manager record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManagerRecord {
    pub username: String,
    /// argon2id PHC string; the password itself is never stored.
    pub password_hash: String,
    /// Set for generated or weak first passwords; sign-in then allows nothing
    /// but a password change.
    pub must_change_password: bool,
    pub created_at: u64,
    #[serde(default)]
    pub failed_attempts: u32,
    #[serde(default)]
    pub locked_until: u64,
    /// Hashes of previous passwords, newest first.
    #[serde(default)]
    pub password_history: Vec<String>,
}

/// What the first start did about the manager.
#[derive(Debug)]
pub enum Bootstrap {
    /// The record already existed; nothing changed.
    Existing(ManagerRecord),
    /// Created now; `generated` is the password to show once on the console.
    Created {
        record: ManagerRecord,
        generated: Option<Secret>,
    },
}

/// Reads the manager record.
pub fn load(store: &dyn Store) -> Result<Option<ManagerRecord>, AuthError> {
    Ok(store.read(|tx| tx.get_json(catalog::USERS, KEY))?)
}

/// Creates the manager on first start; later starts leave the record alone so
/// that a password changed through the interface is not reset by the config.
pub fn ensure(
    store: &dyn Store,
    username: &str,
    configured: Option<&Secret>,
    rule: &PasswordRule,
) -> Result<Bootstrap, AuthError> {
    if let Some(existing) = load(store)? {
        return Ok(Bootstrap::Existing(existing));
    }
    let (plain, generated) = match configured {
        Some(p) => (p.expose().to_string(), false),
        None => (password::generate(rule), true),
    };
    // The vendor's `changeme` and anything the rule refuses are accepted once,
    // for the first sign-in only.
    let must_change_password = generated || plain == "changeme" || !rule.is_satisfied_by(&plain);
    let record = ManagerRecord {
        username: username.to_string(),
        password_hash: password::hash(&plain)?,
        must_change_password,
        created_at: now_secs(),
        failed_attempts: 0,
        locked_until: 0,
        password_history: Vec::new(),
    };
    store.write(|tx| {
        // Another writer may have won a race since `load`; keep theirs.
        if let Some(existing) = tx.get_json::<ManagerRecord>(catalog::USERS, KEY)? {
            return Ok::<_, AuthError>(Bootstrap::Existing(existing));
        }
        tx.put_json(catalog::USERS, KEY, &record)?;
        Ok(Bootstrap::Created {
            record: record.clone(),
            generated: generated.then(|| Secret::new(plain.clone())),
        })
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn generated_once_then_kept() {
        let store = MemoryStore::new();
        let rule = PasswordRule::default();
        let Bootstrap::Created { record, generated } =
            ensure(&store, "manager", None, &rule).unwrap()
        else {
            panic!("first start creates the manager");
        };
        let shown = generated.expect("a generated password is shown");
        assert!(record.must_change_password);
        assert!(password::verify(shown.expose(), &record.password_hash));
        let again = ensure(
            &store,
            "manager",
            Some(&Secret::new("Other pass 123")),
            &rule,
        );
        assert!(matches!(again.unwrap(), Bootstrap::Existing(r) if r == record));
    }

    #[test]
    fn configured_passwords_are_used_and_weak_ones_flagged() {
        let rule = PasswordRule::default();
        for (pw, must_change) in [("Strong password 42", false), ("changeme", true)] {
            let store = MemoryStore::new();
            let Bootstrap::Created { record, generated } =
                ensure(&store, "boss", Some(&Secret::new(pw)), &rule).unwrap()
            else {
                panic!("created");
            };
            assert!(generated.is_none());
            assert_eq!(record.username, "boss");
            assert_eq!(record.must_change_password, must_change, "{pw}");
            assert!(password::verify(pw, &record.password_hash));
        }
    }
}
