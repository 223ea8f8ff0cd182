//! Every tree the store holds, by name.
//!
//! Code names trees only through these constants, so a misspelt tree is a
//! compile error rather than a silently empty table. Backends create every
//! tree in [`ALL`] when they open, so a read never meets a missing tree.

use std::fmt;

/// A named tree (table) of the store; values exist only as the constants below.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tree(&'static str);

impl Tree {
    /// The tree's name as stored on disk.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tree({})", self.0)
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Schema version and instance metadata.
pub const META: Tree = Tree("meta");
/// User accounts.
pub const USERS: Tree = Tree("users");
/// Hosts: one per institution domain (the vendor's "host configuration").
pub const HOSTS: Tree = Tree("hosts");
/// Domain name (as in the Host header) → host id.
pub const HOST_DOMAINS: Tree = Tree("host_domains");
/// API keys by key id (only a hash of each secret is kept).
pub const API_KEYS: Tree = Tree("api_keys");
/// Login sessions of users.
pub const AUTH_SESSIONS: Tree = Tree("auth_sessions");
/// Template versions: host, template id, version.
pub const TEMPLATES: Tree = Tree("templates");
/// Sessions by host and id; `i/` keys map LMS identifiers to ids.
pub const SESSIONS: Tree = Tree("sessions");
/// Running sessions by the time they must stop: the durable timer.
pub const SESSION_TIMERS: Tree = Tree("session_timers");
/// Session protocols (hash chains, one per session).
pub const PROTOCOL: Tree = Tree("protocol");
/// Append-only audit log.
pub const AUDIT: Tree = Tree("audit");
/// Chat attachments of sessions (the bytes are in the object store).
pub const ATTACHMENTS: Tree = Tree("attachments");
/// Webhook outbox: `o/` pending messages, `d/` given up.
pub const WEBHOOKS: Tree = Tree("webhooks");
/// Resumable evidence uploads: `u/` records and `c/` chunks keyed by host,
/// session and upload (a session's uploads are one prefix scan), `x/` the
/// expiry index of incomplete ones.
pub const UPLOADS: Tree = Tree("uploads");
/// Identity checks of sessions: `r/` the checks' record, `e/` the reference
/// face's embedding (one prefix scan per host for the c5 search), `c/` the
/// pending liveness challenge; all keyed by host and session.
pub const IDENTITY: Tree = Tree("identity");
/// Objects moved to the cold tier: `c/<object key>` → size, hash and time of the move.
pub const OBJECT_TIERS: Tree = Tree("object_tiers");

/// Every tree, in the order backends create them. Add new trees here too.
pub const ALL: &[Tree] = &[
    META,
    USERS,
    HOSTS,
    HOST_DOMAINS,
    API_KEYS,
    AUTH_SESSIONS,
    TEMPLATES,
    SESSIONS,
    SESSION_TIMERS,
    PROTOCOL,
    AUDIT,
    ATTACHMENTS,
    WEBHOOKS,
    UPLOADS,
    IDENTITY,
    OBJECT_TIERS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_names_are_unique_and_plain() {
        let mut names: Vec<&str> = ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate tree name in catalog");
        for name in names {
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "tree name {name:?} must be lowercase ascii, digits or '_'"
            );
        }
    }
}
