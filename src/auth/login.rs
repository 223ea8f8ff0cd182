//! Signing in, out, and changing passwords: lock-out after PASSWORD_ATTEMPTS
//! failures, rate limits, identical answers for unknown users and wrong
//! passwords (a dummy hash is checked so that timing matches too), and a new
//! session id at every sign-in.

use super::audit::{self, Event};
use super::hosts::Host;
use super::manager::{self, ManagerRecord};
use super::users::{self, User};
use super::{Accounts, AuthError, Principal, Role, password, ratelimit, sessions};
use crate::store::{StoreError, WriteTx, catalog};
use std::sync::OnceLock;

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub principal: Principal,
    pub must_change_password: bool,
}

/// The account being signed into: the manager or a host's user.
enum Account {
    Manager(ManagerRecord),
    User(User),
}

impl Account {
    fn hash(&self) -> Option<&str> {
        match self {
            Account::Manager(m) => Some(&m.password_hash),
            Account::User(u) if !u.disabled => u.password_hash.as_deref(),
            Account::User(_) => None,
        }
    }

    fn lock_state(&mut self) -> (&mut u32, &mut u64) {
        match self {
            Account::Manager(m) => (&mut m.failed_attempts, &mut m.locked_until),
            Account::User(u) => (&mut u.failed_attempts, &mut u.locked_until),
        }
    }

    fn save(&self, tx: &mut dyn WriteTx) -> Result<(), StoreError> {
        match self {
            Account::Manager(m) => tx.put_json(catalog::USERS, manager::KEY, m),
            Account::User(u) => {
                tx.put_json(catalog::USERS, &users::key(&u.host_id, &u.username), u)
            }
        }
    }
}

/// A hash of a password nobody has, checked when the account does not exist
/// so that the answer takes as long as a real check.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash("invigil dummy password").unwrap_or_default())
}

impl Accounts {
    /// Whether a Host header names MANAGER_HOST (port included).
    pub fn is_manager_host_header(&self, host_header: &str) -> bool {
        super::hosts::normalize_domain(host_header).ok().as_deref()
            == super::hosts::normalize_domain(&self.policy.manager_host)
                .ok()
                .as_deref()
    }

    fn load_account(
        &self,
        tx: &dyn crate::store::ReadTx,
        host: &Host,
        host_header: &str,
        username: &str,
    ) -> Result<Option<Account>, AuthError> {
        // The manager exists only on MANAGER_HOST; elsewhere the name is an
        // ordinary (probably unknown) username.
        if username == self.policy.manager_username.to_lowercase()
            && self.is_manager_host_header(host_header)
        {
            let m: Option<ManagerRecord> = tx.get_json(catalog::USERS, manager::KEY)?;
            return Ok(m.map(Account::Manager));
        }
        Ok(users::load(tx, &host.id, username)?.map(Account::User))
    }

    /// Checks a username and password on `host`; opens a session on success.
    pub fn login(
        &self,
        host: &Host,
        host_header: &str,
        username: &str,
        given: &str,
        client: &str,
        now: u64,
    ) -> Result<SignedIn, AuthError> {
        let username =
            users::normalize_username(username).map_err(|_| AuthError::InvalidCredentials)?;
        if given.len() > 1024 {
            return Err(AuthError::InvalidCredentials);
        }
        self.limiter
            .hit(&format!("client/{client}"), ratelimit::PER_CLIENT, now)
            .and_then(|()| {
                self.limiter.hit(
                    &format!("account/{}/{username}", host.id),
                    ratelimit::PER_ACCOUNT,
                    now,
                )
            })
            .map_err(|retry_after_secs| AuthError::RateLimited { retry_after_secs })?;

        let scope_of = |a: &Account| match a {
            Account::Manager(_) => audit::INSTANCE.to_string(),
            Account::User(u) => u.host_id.clone(),
        };
        let account = self
            .store
            .read(|tx| self.load_account(tx, host, host_header, &username))?;
        let Some(mut account) = account else {
            password::verify(given, dummy_hash());
            audit::record(
                self.store.as_ref(),
                &host.id,
                Event::new(&username, "sign_in_failed", &username)
                    .client(client)
                    .with("reason", "unknown user"),
            )?;
            return Err(AuthError::InvalidCredentials);
        };
        let (_, locked_until) = account.lock_state();
        if *locked_until > now {
            return Err(AuthError::Locked {
                retry_after_secs: *locked_until - now,
            });
        }
        let ok = match account.hash() {
            Some(h) => password::verify(given, h),
            None => {
                password::verify(given, dummy_hash());
                false
            }
        };
        let scope = scope_of(&account);
        if !ok {
            let (attempts, holdoff) = (self.policy.attempts, self.policy.holdoff.as_secs());
            self.store.write(|tx| {
                let (failed, locked_until) = account.lock_state();
                *failed += 1;
                let locked = *failed >= attempts;
                if locked {
                    *failed = 0;
                    *locked_until = now + holdoff;
                }
                account.save(tx)?;
                audit::append(
                    tx,
                    &scope,
                    Event::new(&username, "sign_in_failed", &username).client(client),
                )?;
                if locked {
                    audit::append(
                        tx,
                        &scope,
                        Event::new(&username, "locked_out", &username)
                            .client(client)
                            .with("minutes", (holdoff / 60).to_string()),
                    )?;
                }
                Ok::<_, AuthError>(())
            })?;
            return Err(AuthError::InvalidCredentials);
        }
        self.store.write(|tx| {
            let (failed, locked_until) = account.lock_state();
            *failed = 0;
            *locked_until = 0;
            account.save(tx)?;
            let (principal, must_change, manager_flag, role) = match &account {
                Account::Manager(m) => (
                    Principal::Manager {
                        username: m.username.clone(),
                    },
                    m.must_change_password,
                    true,
                    Role::Manager,
                ),
                Account::User(u) => (
                    Principal::User {
                        host_id: u.host_id.clone(),
                        username: u.username.clone(),
                        role: u.role,
                    },
                    u.must_change_password,
                    false,
                    u.role,
                ),
            };
            let token = self.open_session(tx, &host.id, &username, manager_flag, role, now)?;
            audit::append(
                tx,
                &scope,
                Event::new(principal.actor(), "sign_in", &username).client(client),
            )?;
            Ok(SignedIn {
                token,
                principal,
                must_change_password: must_change,
            })
        })
    }

    /// Changes the signed-in account's password: the old one must be right,
    /// the new one must satisfy PASSWORD_RULE and differ from the last
    /// PASSWORD_HISTORY ones. Every session of the account is ended and a new
    /// one opened; its token is returned.
    pub fn change_password(
        &self,
        session: &sessions::Session,
        old: &str,
        new: &str,
        client: &str,
        now: u64,
    ) -> Result<String, AuthError> {
        if new.len() > 1024 {
            return Err(AuthError::PasswordRejected(
                "the password is too long".into(),
            ));
        }
        let account = self.store.read(|tx| {
            Ok::<_, AuthError>(if session.manager {
                tx.get_json::<ManagerRecord>(catalog::USERS, manager::KEY)?
                    .map(Account::Manager)
            } else {
                users::load(tx, &session.host_id, &session.username)?.map(Account::User)
            })
        })?;
        let mut account = account.ok_or(AuthError::Unauthenticated)?;
        if !account.hash().is_some_and(|h| password::verify(old, h)) {
            return Err(AuthError::InvalidCredentials);
        }
        if !self.policy.rule.is_satisfied_by(new) {
            return Err(AuthError::PasswordRejected(format!(
                "the new password does not satisfy the rule {}",
                self.policy.rule.source()
            )));
        }
        let keep = self.policy.history as usize;
        let (current, history) = match &account {
            Account::Manager(m) => (m.password_hash.clone(), m.password_history.clone()),
            Account::User(u) => (
                u.password_hash.clone().unwrap_or_default(),
                u.password_history.clone(),
            ),
        };
        let recent = std::iter::once(&current).chain(history.iter().take(keep.saturating_sub(1)));
        if old == new || (keep > 0 && recent.into_iter().any(|h| password::verify(new, h))) {
            return Err(AuthError::PasswordRejected(format!(
                "the new password must differ from the last {} passwords",
                keep.max(1)
            )));
        }
        let hashed = password::hash(new)?;
        let mut new_history = vec![current];
        new_history.extend(history);
        new_history.truncate(keep);
        match &mut account {
            Account::Manager(m) => {
                m.password_hash = hashed;
                m.password_history = new_history;
                m.must_change_password = false;
            }
            Account::User(u) => {
                u.password_hash = Some(hashed);
                u.password_history = new_history;
                u.must_change_password = false;
                u.updated_at = now;
            }
        }
        let scope = if session.manager {
            audit::INSTANCE.to_string()
        } else {
            session.host_id.clone()
        };
        self.store.write(|tx| {
            account.save(tx)?;
            sessions::revoke_user_in(tx, &session.host_id, &session.username)?;
            let token = self.open_session(
                tx,
                &session.host_id,
                &session.username,
                session.manager,
                session.role,
                now,
            )?;
            audit::append(
                tx,
                &scope,
                Event::new(
                    session.principal().actor(),
                    "password_changed",
                    &session.username,
                )
                .client(client),
            )?;
            Ok(token)
        })
    }

    /// Whether the account behind a session still has to change its password.
    pub fn must_change_password(&self, session: &sessions::Session) -> Result<bool, AuthError> {
        self.store.read(|tx| {
            Ok(if session.manager {
                tx.get_json::<ManagerRecord>(catalog::USERS, manager::KEY)?
                    .is_some_and(|m| m.must_change_password)
            } else {
                users::load(tx, &session.host_id, &session.username)?
                    .is_some_and(|u| u.must_change_password)
            })
        })
    }
}

#[cfg(test)]
mod tests;
