//! Accounts and credentials: the manager, hosts, users and roles, passwords,
//! sign-in sessions, API keys, JWT links, and the audit chain.
//!
//! No HTTP types here: the web layer turns requests into calls on [`Accounts`]
//! and [`AuthError`]s into JSON answers through its one error table.

pub mod apikeys;
pub mod audit;
pub mod csv_import;
pub mod hosts;
pub mod jwt;
pub mod login;
pub mod manager;
pub mod nullable;
pub mod password;
pub mod ratelimit;
pub mod sessions;
pub mod users;

use crate::config::{Config, PasswordRule};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Roles within a host, plus the instance-wide manager (DESIGN §3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Student,
    Proctor,
    Administrator,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Proctor => "proctor",
            Role::Administrator => "administrator",
            Role::Manager => "manager",
        }
    }

    /// Parses a host role; `manager` is not a role a host can give.
    pub fn parse_host_role(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "student" => Some(Role::Student),
            "proctor" => Some(Role::Proctor),
            "administrator" | "admin" => Some(Role::Administrator),
            _ => None,
        }
    }
}

/// Who is making a request, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Manager {
        username: String,
    },
    User {
        host_id: String,
        username: String,
        role: Role,
    },
    /// An API key of a host (`host_id: Some`) or of the instance (`None`).
    ApiKey {
        host_id: Option<String>,
        key_id: String,
        write: bool,
    },
}

impl Principal {
    /// The role this principal acts with.
    pub fn role(&self) -> Role {
        match self {
            Principal::Manager { .. } | Principal::ApiKey { host_id: None, .. } => Role::Manager,
            Principal::User { role, .. } => *role,
            Principal::ApiKey { .. } => Role::Administrator,
        }
    }

    /// A short name for the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::Manager { username } => format!("manager:{username}"),
            Principal::User { username, .. } => username.clone(),
            Principal::ApiKey { key_id, .. } => format!("key:{key_id}"),
        }
    }
}

/// Errors of the account layer. Each has a stable code in the web error table.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error(
        "the account is locked for {retry_after_secs} more seconds after too many failed sign-ins"
    )]
    Locked { retry_after_secs: u64 },
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("sign in first")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("the password must be changed before anything else")]
    PasswordChangeRequired,
    #[error("{0}")]
    PasswordRejected(String),
    #[error("cross-site request refused: {0}")]
    Csrf(String),
    #[error("no host is configured for {0:?}")]
    UnknownHost(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("this host's term ended on {0}; new sessions are refused")]
    HostExpired(String),
    #[error("this host has used all {0} sessions of its volume")]
    VolumeExhausted(u64),
    #[error("the host is disabled")]
    HostDisabled,
    #[error("JWT refused: {0}")]
    Token(String),
}

impl AuthError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AuthError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Settings of the account layer, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub manager_username: String,
    pub manager_host: String,
    pub rule: PasswordRule,
    pub attempts: u32,
    pub holdoff: Duration,
    pub history: u32,
    pub session_expires: Duration,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            manager_username: config.manager_username.clone(),
            manager_host: config.manager_host.clone(),
            rule: config.password_rule.clone(),
            attempts: config.password_attempts,
            holdoff: config.password_holdoff,
            history: config.password_history,
            session_expires: config.session_expires,
        }
    }
}

/// The account service: one per instance, shared by the web handlers.
pub struct Accounts {
    pub store: Arc<dyn Store>,
    pub policy: Policy,
    /// Keys the lookup of sign-in tokens, so a copy of the database alone does
    /// not let anyone use the sessions in it.
    session_key: Vec<u8>,
    pub limiter: ratelimit::Limiter,
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, policy: Policy, session_key: Vec<u8>) -> Self {
        Self {
            store,
            policy,
            session_key,
            limiter: ratelimit::Limiter::default(),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Random bytes as URL-safe base64 without padding, for tokens and ids.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
