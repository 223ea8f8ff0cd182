//! Who may see and act on a session: one rule for the REST API and the live
//! hub. Students see their own session, proctors the ones they watch by name
//! or by group, administrators, the manager and API keys all of their host.

use super::sessions::Session;
use crate::auth::{Principal, Role, users};
use crate::store::Store;

/// What the caller may do with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The student taking it.
    Student,
    /// A proctor watching it, an administrator, the manager or a host key.
    Staff,
}

/// The caller's standing toward `s`, or `None` when they may not see it.
/// `groups` are the caller's groups (see [`groups`]).
pub fn standing(s: &Session, principal: &Principal, groups: &[String]) -> Option<Standing> {
    match principal {
        Principal::User {
            host_id,
            username,
            role,
        } => {
            if *host_id != s.host_id {
                return None;
            }
            match role {
                Role::Student => (*username == s.student).then_some(Standing::Student),
                Role::Proctor => (s.proctors.contains(username)
                    || s.proctor_group.as_ref().is_some_and(|g| groups.contains(g)))
                .then_some(Standing::Staff),
                Role::Administrator | Role::Manager => Some(Standing::Staff),
            }
        }
        Principal::ApiKey {
            host_id: Some(h), ..
        } => (*h == s.host_id).then_some(Standing::Staff),
        // The manager and instance keys oversee every host.
        Principal::Manager { .. } | Principal::ApiKey { host_id: None, .. } => {
            Some(Standing::Staff)
        }
    }
}

/// The groups that matter for [`standing`]: a proctor's groups, nothing for
/// anyone else (their standing does not depend on groups).
pub fn groups(store: &dyn Store, principal: &Principal) -> Vec<String> {
    match principal {
        Principal::User {
            host_id,
            username,
            role: Role::Proctor,
        } => users::get(store, host_id, username)
            .map(|u| u.groups)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hosts::{self, HostInput};
    use crate::proctoring::sessions::{NewSession, create};
    use crate::proctoring::templates::{self, TemplateInput};
    use crate::store::MemoryStore;

    /// A session of ann's on a host whose id the test renames to `h1`.
    fn session() -> Session {
        let store = MemoryStore::new();
        let m = Principal::Manager {
            username: "m".into(),
        };
        let input = HostInput {
            domains: Some(vec!["a.test".into()]),
            ..HostInput::default()
        };
        let host = hosts::create(&store, &m, &input, "").unwrap();
        let t: TemplateInput =
            serde_json::from_value(serde_json::json!({ "id": "t", "name": "T" })).unwrap();
        templates::save(&store, &host.id, "adm", &t).unwrap();
        let new = NewSession {
            student: "ann".into(),
            template: "t".into(),
            proctors: vec!["p1".into()],
            proctor_group: Some("room-7".into()),
            ..NewSession::default()
        };
        let mut s = create(&store, &host.id, "adm", &new, 1000).unwrap();
        s.host_id = "h1".into();
        s
    }

    fn user(host: &str, name: &str, role: Role) -> Principal {
        Principal::User {
            host_id: host.into(),
            username: name.into(),
            role,
        }
    }

    #[test]
    fn one_rule_for_every_kind_of_caller() {
        let s = session();
        let none: &[String] = &[];
        let group = ["room-7".to_string()];
        let cases = [
            (
                user("h1", "ann", Role::Student),
                none,
                Some(Standing::Student),
            ),
            (user("h1", "bob", Role::Student), none, None),
            (user("h2", "ann", Role::Student), none, None),
            (user("h1", "p1", Role::Proctor), none, Some(Standing::Staff)),
            (
                user("h1", "p2", Role::Proctor),
                &group[..],
                Some(Standing::Staff),
            ),
            (user("h1", "p3", Role::Proctor), none, None),
            (
                user("h1", "adm", Role::Administrator),
                none,
                Some(Standing::Staff),
            ),
            (user("h2", "adm", Role::Administrator), none, None),
        ];
        for (who, groups, expected) in cases {
            assert_eq!(standing(&s, &who, groups), expected, "{who:?}");
        }
        let key = |h: Option<&str>| Principal::ApiKey {
            host_id: h.map(str::to_string),
            key_id: "k".into(),
            write: true,
        };
        assert_eq!(standing(&s, &key(Some("h1")), none), Some(Standing::Staff));
        assert_eq!(standing(&s, &key(Some("h2")), none), None);
        assert_eq!(standing(&s, &key(None), none), Some(Standing::Staff));
    }
}
