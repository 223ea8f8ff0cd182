//! Hosts: one per institution domain, each with its own users, secrets and
//! limits (a term and a volume of sessions). Requests find theirs by Host header.

use super::audit::{self, Event};
use super::{AuthError, Principal, now_secs, random_token};
use crate::store::{Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};

/// One HS256 secret for JWT links; two are kept during a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSecret {
    pub id: String,
    pub secret: String,
    pub created_at: u64,
}

/// A host record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: String,
    /// Host header values (lower case; with the port when it is not 443).
    pub domains: Vec<String>,
    pub title: String,
    /// Unix seconds after which new sessions are refused.
    pub valid_until: Option<u64>,
    /// Sessions allowed in total; `None` means unlimited.
    pub volume: Option<u64>,
    pub sessions_used: u64,
    pub retention_days: Option<u32>,
    pub disabled: bool,
    /// Roles a JWT link may give besides `student`.
    pub jwt_roles: Vec<super::Role>,
    pub jwt_secrets: Vec<JwtSecret>,
    pub created_at: u64,
    /// Where session results are POSTed when a session names no callback URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Signs webhooks (`whsec_…`); made when first needed.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Whether webhooks may reach loopback, private and link-local addresses
    /// (an LMS on the school's own network).
    #[serde(default)]
    pub webhook_allow_private: bool,
}

/// Fields an administrator or the manager sets.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostInput {
    pub domains: Option<Vec<String>>,
    pub title: Option<String>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub valid_until: Option<Option<u64>>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub volume: Option<Option<u64>>,
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub retention_days: Option<Option<u32>>,
    pub disabled: Option<bool>,
    pub jwt_roles: Option<Vec<super::Role>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub webhook_url: Option<Option<String>>,
    pub webhook_allow_private: Option<bool>,
}

/// What a host's own administrators may change; term, volume, retention,
/// domains, suspension and the webhook address policy stay the manager's.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub title: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::nullable::field")]
    pub webhook_url: Option<Option<String>>,
}

/// An administrator's change to their own host, recorded in the host's
/// audit log.
pub fn update_settings(
    store: &dyn Store,
    by: &Principal,
    id: &str,
    input: &SettingsInput,
    client: &str,
) -> Result<Host, AuthError> {
    let input = HostInput {
        title: input.title.clone(),
        webhook_url: input.webhook_url.clone(),
        ..HostInput::default()
    };
    store.write(|tx| {
        let mut host = load(tx, id)?.ok_or_else(|| AuthError::NotFound(format!("host {id}")))?;
        apply(&mut host, &input)?;
        tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
        let mut event = Event::new(by.actor(), "settings_changed", id).client(client);
        if input.webhook_url.is_some() {
            event = event.with("webhook_url", "changed");
        }
        audit::append(tx, id, event)?;
        Ok(host)
    })
}

/// Normalises a Host header value: lower case, default port 443 dropped.
pub fn normalize_domain(raw: &str) -> Result<String, AuthError> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let d = d.strip_suffix(":443").unwrap_or(&d).to_string();
    let valid = !d.is_empty()
        && d.len() <= 260
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if valid {
        Ok(d)
    } else {
        Err(AuthError::invalid(
            "domains",
            format!("{raw:?} is not a host name"),
        ))
    }
}

/// Reads one host inside a transaction.
pub fn load(tx: &dyn crate::store::ReadTx, id: &str) -> Result<Option<Host>, StoreError> {
    tx.get_json(catalog::HOSTS, id.as_bytes())
}

/// Reads one host.
pub fn get(store: &dyn Store, id: &str) -> Result<Host, AuthError> {
    store
        .read(|tx| load(tx, id))?
        .ok_or_else(|| AuthError::NotFound(format!("host {id}")))
}

/// Every host, in id order.
pub fn list(store: &dyn Store) -> Result<Vec<Host>, AuthError> {
    let rows = store.scan(catalog::HOSTS, &Scan::all())?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// The host serving a Host header: the exact value first, then without the
/// port (so `exam.example.org:8443` finds `exam.example.org`).
pub fn resolve(store: &dyn Store, host_header: &str) -> Result<Host, AuthError> {
    let unknown = || AuthError::UnknownHost(host_header.chars().take(100).collect());
    let exact = normalize_domain(host_header).map_err(|_| unknown())?;
    let bare = without_port(&exact);
    store.read(|tx| {
        for name in std::iter::once(&exact).chain(bare.as_ref()) {
            if let Some(id) = tx.get(catalog::HOST_DOMAINS, name.as_bytes())? {
                let id = String::from_utf8_lossy(&id).to_string();
                if let Some(host) = load(tx, &id)? {
                    return Ok(host);
                }
            }
        }
        Err(unknown())
    })
}

/// `name:port` → `name`; `[v6]:port` → `[v6]`; `None` when there is no port.
fn without_port(h: &str) -> Option<String> {
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if h.starts_with('[') {
        let end = h.find(']')?;
        h[end + 1..]
            .strip_prefix(':')
            .filter(|p| digits(p))
            .map(|_| h[..=end].to_string())
    } else {
        let (name, port) = h.rsplit_once(':')?;
        (!name.contains(':') && digits(port)).then(|| name.to_string())
    }
}

fn apply(host: &mut Host, input: &HostInput) -> Result<(), AuthError> {
    if let Some(domains) = &input.domains {
        if domains.is_empty() {
            return Err(AuthError::invalid(
                "domains",
                "at least one domain is needed",
            ));
        }
        let mut normalized = domains
            .iter()
            .map(|d| normalize_domain(d))
            .collect::<Result<Vec<_>, _>>()?;
        normalized.sort();
        normalized.dedup();
        host.domains = normalized;
    }
    if let Some(title) = &input.title {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(AuthError::invalid("title", "must be 1 to 200 characters"));
        }
        host.title = title.to_string();
    }
    if let Some(v) = input.valid_until {
        host.valid_until = v;
    }
    if let Some(v) = input.volume {
        host.volume = v;
    }
    if let Some(v) = input.retention_days {
        host.retention_days = v;
    }
    if let Some(v) = input.disabled {
        host.disabled = v;
    }
    if let Some(roles) = &input.jwt_roles {
        if roles.contains(&super::Role::Manager) {
            return Err(AuthError::invalid(
                "jwt_roles",
                "a link cannot make a manager",
            ));
        }
        host.jwt_roles = roles.clone();
    }
    if let Some(url) = &input.webhook_url {
        if let Some(u) = url {
            crate::proctoring::webhooks::target(u)
                .map_err(|e| AuthError::invalid("webhook_url", e.to_string()))?;
        }
        host.webhook_url = url.clone();
    }
    if let Some(v) = input.webhook_allow_private {
        host.webhook_allow_private = v;
    }
    Ok(())
}

/// Points each domain at `host`, refusing one that belongs to another host.
fn index_domains(tx: &mut dyn WriteTx, host: &Host, old: &[String]) -> Result<(), AuthError> {
    for d in old {
        tx.delete(catalog::HOST_DOMAINS, d.as_bytes())?;
    }
    for d in &host.domains {
        if let Some(owner) = tx.get(catalog::HOST_DOMAINS, d.as_bytes())?
            && owner != host.id.as_bytes()
        {
            return Err(AuthError::Conflict(format!(
                "the domain {d} already belongs to another host"
            )));
        }
        tx.put(catalog::HOST_DOMAINS, d.as_bytes(), host.id.as_bytes())?;
    }
    Ok(())
}

/// Creates a host with a first JWT secret.
pub fn create(
    store: &dyn Store,
    by: &Principal,
    input: &HostInput,
    client: &str,
) -> Result<Host, AuthError> {
    let mut host = Host {
        id: format!(
            "h{}",
            random_token(6)
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        ),
        domains: Vec::new(),
        title: String::new(),
        valid_until: None,
        volume: None,
        sessions_used: 0,
        retention_days: None,
        disabled: false,
        jwt_roles: Vec::new(),
        jwt_secrets: vec![new_secret()],
        created_at: now_secs(),
        webhook_url: None,
        webhook_secret: Some(crate::proctoring::webhooks::new_secret()),
        webhook_allow_private: false,
    };
    if input.domains.is_none() {
        return Err(AuthError::invalid(
            "domains",
            "at least one domain is needed",
        ));
    }
    apply(&mut host, input)?;
    if host.title.is_empty() {
        host.title = host.domains[0].clone();
    }
    store.write(|tx| {
        index_domains(tx, &host, &[])?;
        tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
        audit::append(
            tx,
            audit::INSTANCE,
            Event::new(by.actor(), "host_created", &host.id)
                .client(client)
                .with("domains", host.domains.join(",")),
        )?;
        Ok(host.clone())
    })
}

/// Changes a host.
pub fn update(
    store: &dyn Store,
    by: &Principal,
    id: &str,
    input: &HostInput,
    client: &str,
) -> Result<Host, AuthError> {
    store.write(|tx| {
        let mut host = load(tx, id)?.ok_or_else(|| AuthError::NotFound(format!("host {id}")))?;
        let old = host.domains.clone();
        apply(&mut host, input)?;
        index_domains(tx, &host, &old)?;
        tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
        let mut event = Event::new(by.actor(), "host_changed", id).client(client);
        if input.disabled == Some(true) {
            event = event.with("disabled", "true");
        }
        audit::append(tx, audit::INSTANCE, event)?;
        Ok(host)
    })
}

fn new_secret() -> JwtSecret {
    JwtSecret {
        id: random_token(6),
        secret: random_token(32),
        created_at: now_secs(),
    }
}

/// Adds a new JWT secret, keeping only the newest previous one, and returns it
/// (shown once).
pub fn rotate_jwt_secret(
    store: &dyn Store,
    by: &Principal,
    id: &str,
    client: &str,
) -> Result<JwtSecret, AuthError> {
    store.write(|tx| {
        let mut host = load(tx, id)?.ok_or_else(|| AuthError::NotFound(format!("host {id}")))?;
        let fresh = new_secret();
        host.jwt_secrets.insert(0, fresh.clone());
        host.jwt_secrets.truncate(2);
        tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
        audit::append(
            tx,
            id,
            Event::new(by.actor(), "jwt_secret_rotated", &fresh.id).client(client),
        )?;
        Ok(fresh)
    })
}

/// The host's webhook secret, made now for a host created before webhooks.
pub fn webhook_secret(tx: &mut dyn WriteTx, host: &mut Host) -> Result<String, StoreError> {
    if let Some(secret) = &host.webhook_secret {
        return Ok(secret.clone());
    }
    let fresh = crate::proctoring::webhooks::new_secret();
    host.webhook_secret = Some(fresh.clone());
    tx.put_json(catalog::HOSTS, host.id.as_bytes(), host)?;
    Ok(fresh)
}

/// Replaces the host's webhook secret and returns it (shown once).
pub fn rotate_webhook_secret(
    store: &dyn Store,
    by: &Principal,
    id: &str,
    client: &str,
) -> Result<String, AuthError> {
    store.write(|tx| {
        let mut host = load(tx, id)?.ok_or_else(|| AuthError::NotFound(format!("host {id}")))?;
        let fresh = crate::proctoring::webhooks::new_secret();
        host.webhook_secret = Some(fresh.clone());
        tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
        audit::append(
            tx,
            id,
            Event::new(by.actor(), "webhook_secret_rotated", id).client(client),
        )?;
        Ok(fresh)
    })
}

/// Refuses new sessions on a disabled or expired host or one whose volume is
/// used up; otherwise counts one more session. For the session module.
pub fn consume_session(tx: &mut dyn WriteTx, id: &str, now: u64) -> Result<Host, AuthError> {
    let mut host = load(tx, id)?.ok_or_else(|| AuthError::NotFound(format!("host {id}")))?;
    check_open(&host, now)?;
    if let Some(volume) = host.volume
        && host.sessions_used >= volume
    {
        return Err(AuthError::VolumeExhausted(volume));
    }
    host.sessions_used += 1;
    tx.put_json(catalog::HOSTS, host.id.as_bytes(), &host)?;
    Ok(host)
}

/// A host that is disabled or past its term takes no new sessions.
pub fn check_open(host: &Host, now: u64) -> Result<(), AuthError> {
    if host.disabled {
        return Err(AuthError::HostDisabled);
    }
    if let Some(until) = host.valid_until
        && now > until
    {
        let when =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(until));
        return Err(AuthError::HostExpired(when));
    }
    Ok(())
}

/// Makes sure MANAGER_HOST's name leads to a host: on the first start (and
/// after MANAGER_HOST changed to a name no host has) one is created, so that a
/// one-domain install works at once and the manager can always sign in.
pub fn ensure_default(store: &dyn Store, manager_host: &str) -> Result<Option<Host>, AuthError> {
    if resolve(store, manager_host).is_ok() {
        return Ok(None);
    }
    let system = Principal::Manager {
        username: "(first start)".into(),
    };
    let mut domains = vec![manager_host.to_string()];
    // Reaching the server by name without the port (behind a proxy) or by the
    // loopback address should find the same host.
    if let Some(name) = without_port(manager_host)
        && resolve(store, &name).is_err()
    {
        domains.push(name);
    }
    let input = HostInput {
        domains: Some(domains),
        title: Some(manager_host.to_string()),
        ..HostInput::default()
    };
    create(store, &system, &input, "").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn manager() -> Principal {
        Principal::Manager {
            username: "m".into(),
        }
    }

    fn input(domains: &[&str]) -> HostInput {
        HostInput {
            domains: Some(domains.iter().map(|d| d.to_string()).collect()),
            ..HostInput::default()
        }
    }

    #[test]
    fn resolve_by_exact_header_then_without_port() {
        let store = MemoryStore::new();
        let a = create(&store, &manager(), &input(&["Exam.Example.org"]), "").unwrap();
        let b = create(&store, &manager(), &input(&["localhost:8443"]), "").unwrap();
        assert_eq!(resolve(&store, "exam.example.org").unwrap().id, a.id);
        assert_eq!(resolve(&store, "EXAM.example.org:443").unwrap().id, a.id);
        assert_eq!(resolve(&store, "exam.example.org:8443").unwrap().id, a.id);
        assert_eq!(resolve(&store, "localhost:8443").unwrap().id, b.id);
        assert!(matches!(
            resolve(&store, "localhost:9999"),
            Err(AuthError::UnknownHost(_))
        ));
        assert!(matches!(
            resolve(&store, "a b"),
            Err(AuthError::UnknownHost(_))
        ));
    }

    #[test]
    fn a_domain_belongs_to_one_host_and_moves_on_update() {
        let store = MemoryStore::new();
        let a = create(&store, &manager(), &input(&["a.test"]), "").unwrap();
        let err = create(&store, &manager(), &input(&["a.test"]), "").unwrap_err();
        assert!(matches!(err, AuthError::Conflict(_)));
        update(&store, &manager(), &a.id, &input(&["b.test"]), "").unwrap();
        assert!(resolve(&store, "a.test").is_err());
        assert_eq!(resolve(&store, "b.test").unwrap().id, a.id);
        assert_eq!(audit::verify(&store, audit::INSTANCE), Ok(2));
    }

    #[test]
    fn term_and_volume_are_enforced() {
        let store = MemoryStore::new();
        let mut i = input(&["t.test"]);
        i.volume = Some(Some(1));
        i.valid_until = Some(Some(1_000));
        let h = create(&store, &manager(), &i, "").unwrap();
        let store: &dyn Store = &store;
        store.write(|tx| consume_session(tx, &h.id, 999)).unwrap();
        let again = store.write(|tx| consume_session(tx, &h.id, 999));
        assert!(matches!(again, Err(AuthError::VolumeExhausted(1))));
        let late = store.write(|tx| consume_session(tx, &h.id, 1_001));
        assert!(matches!(late, Err(AuthError::HostExpired(_))));
    }

    #[test]
    fn default_host_is_made_once_for_the_manager_host() {
        let store = MemoryStore::new();
        let h = ensure_default(&store, "localhost:8443").unwrap().unwrap();
        assert_eq!(h.domains, ["localhost", "localhost:8443"]);
        assert!(ensure_default(&store, "localhost:8443").unwrap().is_none());
    }
}
