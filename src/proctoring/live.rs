//! What the live hub records besides metric periods and status changes: chat
//! messages, proctors' warnings and screen locks. Each is a protocol entry written in the
//! same transaction that checks the session, so an acknowledged message is
//! on disk (every commit is fsynced).

use super::ProctoringError;
use super::attachments;
use super::metrics::Metric;
use super::protocol::{self, Entry, Kind};
use super::sessions::{self, Status};
use super::templates;
use crate::store::{ReadTx, Store, StoreError};
use serde_json::json;
use std::collections::BTreeMap;

/// Longest chat message, in characters.
pub const CHAT_MAX: usize = 4000;
/// Longest warning comment, in characters.
pub const COMMENT_MAX: usize = 2000;

/// Trims and checks free text: not empty (unless allowed), not too long, no
/// control characters other than line breaks and tabs.
fn clean(field: &str, text: &str, max: usize, empty_ok: bool) -> Result<String, ProctoringError> {
    let t = text.trim();
    if t.is_empty() && !empty_ok {
        return Err(ProctoringError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ProctoringError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ProctoringError::invalid(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(t.to_string())
}

/// Records a chat message. Chat is open from creation until the session is
/// concluded (a student may ask before starting, a proctor may answer after
/// stopping).
pub fn chat(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    text: &str,
    at: u64,
) -> Result<Entry, ProctoringError> {
    chat_with(store, host_id, id, by, text, &[], at)
}

/// A chat message with attachments (ids of uploads to this session); the
/// entry lists their object keys. The text may be empty when there are some.
pub fn chat_with(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    text: &str,
    attachment_ids: &[String],
    at: u64,
) -> Result<Entry, ProctoringError> {
    let text = clean("text", text, CHAT_MAX, !attachment_ids.is_empty())?;
    store.write(|tx| {
        let s = sessions::load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if s.status == Status::Concluded {
            return Err(ProctoringError::Conflict(
                "the session is concluded; its chat is closed".into(),
            ));
        }
        let keys = attachments::keys_for(tx, host_id, id, attachment_ids)?;
        let mut data = json!({ "text": text });
        if !attachment_ids.is_empty() {
            data["attachments"] = json!(attachment_ids);
        }
        Ok(protocol::append_with(
            tx,
            &s.scope(),
            at,
            by,
            Kind::Chat,
            data,
            keys,
        )?)
    })
}

/// What a proctor does to a running exam that is not a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// A warning shown to the student.
    Warn,
    /// The student's screen is covered until a proctor unlocks it.
    Lock,
    Unlock,
}

impl Live {
    pub fn as_str(self) -> &'static str {
        match self {
            Live::Warn => "warn",
            Live::Lock => "lock",
            Live::Unlock => "unlock",
        }
    }
}

/// Records a proctor's warning to the student, while the exam runs.
pub fn warn(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    comment: &str,
    at: u64,
) -> Result<Entry, ProctoringError> {
    act(store, host_id, id, by, Live::Warn, comment, at)
}

/// Records a live action (warn, lock, unlock) while the exam runs; a lock
/// and an unlock also set the session's `locked` flag in the same
/// transaction, so a reconnecting student is still locked.
pub fn act(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    action: Live,
    comment: &str,
    at: u64,
) -> Result<Entry, ProctoringError> {
    let comment = clean("comment", comment, COMMENT_MAX, true)?;
    store.write(|tx| {
        let mut s = sessions::load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if !matches!(s.status, Status::Started | Status::Paused) {
            return Err(ProctoringError::IllegalMove {
                from: s.status.as_str(),
                action: action.as_str(),
                allowed: sessions::allowed(s.status),
            });
        }
        let locked = match action {
            Live::Warn => s.locked,
            Live::Lock => true,
            Live::Unlock => false,
        };
        if locked != s.locked {
            s.locked = locked;
            sessions::save_in(tx, &s)?;
        }
        Ok(protocol::append(
            tx,
            &s.scope(),
            at,
            by,
            Kind::Action,
            json!({ "action": action.as_str(), "comment": comment, "locked": locked }),
        )?)
    })
}

/// The template's lock-on-violation rule: when the addon is on and a period
/// shows a violation (a value above 0) of one of its `lock_on` codes (every
/// browser code when the list is empty), the screen is locked, recorded as
/// an automatic action by invigil. Nothing happens when the session is not
/// running or is already locked.
pub fn lock_on_violation(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    values: &BTreeMap<Metric, f64>,
    at: u64,
) -> Result<Option<Entry>, ProctoringError> {
    // Most periods lock nothing: find out with a read, so they cost no commit.
    if store
        .read(|tx| violation(tx, host_id, id, values))?
        .is_none()
    {
        return Ok(None);
    }
    store.write(|tx| {
        let Some((mut s, codes)) = violation(tx, host_id, id, values)? else {
            return Ok(None);
        };
        s.locked = true;
        sessions::save_in(tx, &s)?;
        Ok(Some(protocol::append(
            tx,
            &s.scope(),
            at,
            "invigil",
            Kind::Action,
            json!({ "action": "lock", "automatic": true, "codes": codes, "locked": true }),
        )?))
    })
}

/// The running, unlocked session and the codes of `values` that lock it
/// under its template's rule; `None` when nothing locks.
fn violation(
    tx: &dyn ReadTx,
    host_id: &str,
    id: &str,
    values: &BTreeMap<Metric, f64>,
) -> Result<Option<(sessions::Session, Vec<&'static str>)>, StoreError> {
    let Some(s) = sessions::load(tx, host_id, id)? else {
        return Ok(None);
    };
    if s.locked || s.status != Status::Started {
        return Ok(None);
    }
    let Some(t) = templates::version(tx, host_id, &s.template_id, s.template_version)? else {
        return Ok(None);
    };
    if !t.addons.lock_on_violation {
        return Ok(None);
    }
    let codes: Vec<&'static str> = values
        .iter()
        .filter(|(m, v)| {
            **v > 0.0
                && !m.server_side()
                && (t.addons.lock_on.is_empty() || t.addons.lock_on.contains(m))
        })
        .map(|(m, _)| m.code())
        .collect();
    Ok((!codes.is_empty()).then_some((s, codes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::auth::hosts::{self, HostInput};
    use crate::proctoring::sessions::{Action, NewSession, act, create};
    use crate::proctoring::templates::{self, TemplateInput};
    use crate::store::MemoryStore;

    fn setup() -> (MemoryStore, String, String) {
        setup_with(Default::default())
    }

    fn setup_with(addons: templates::Addons) -> (MemoryStore, String, String) {
        let store = MemoryStore::new();
        let m = Principal::Manager {
            username: "m".into(),
        };
        let input = HostInput {
            domains: Some(vec!["a.test".into()]),
            ..HostInput::default()
        };
        let host = hosts::create(&store, &m, &input, "").unwrap();
        let t = TemplateInput {
            id: Some("t".into()),
            name: "T".into(),
            addons,
            weights: Default::default(),
            threshold: None,
            period_secs: None,
            auto_conclusion: None,
        };
        templates::save(&store, &host.id, "adm", &t).unwrap();
        let new = NewSession {
            student: "ann".into(),
            template: "t".into(),
            ..NewSession::default()
        };
        let s = create(&store, &host.id, "adm", &new, 1000).unwrap();
        (store, host.id, s.id)
    }

    #[test]
    fn chat_is_an_entry_and_bad_text_is_refused() {
        let (store, h, id) = setup();
        let e = chat(&store, &h, &id, "ann", "  hello\nthere ", 1001).unwrap();
        assert_eq!(
            (e.kind, e.data["text"].as_str()),
            (Kind::Chat, Some("hello\nthere"))
        );
        for bad in ["   ", "a\u{7}b", &"x".repeat(CHAT_MAX + 1)] {
            let err = chat(&store, &h, &id, "ann", bad, 1002).unwrap_err();
            assert!(err.to_string().starts_with("text: "), "{err}");
        }
        assert!(matches!(
            chat(&store, &h, "nope", "ann", "hi", 1003),
            Err(ProctoringError::NotFound(_))
        ));
    }

    #[test]
    fn warnings_only_while_the_exam_runs_and_chat_closes_at_conclusion() {
        let (store, h, id) = setup();
        let err = warn(&store, &h, &id, "p1", "eyes on screen", 1001).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot warn a created session; allowed: start"
        );
        act(&store, &h, &id, "ann", Action::Start, 1002, None).unwrap();
        let e = warn(&store, &h, &id, "p1", "eyes on screen", 1003).unwrap();
        assert_eq!(
            (e.kind, e.data["action"].as_str()),
            (Kind::Action, Some("warn"))
        );
        act(&store, &h, &id, "p1", Action::Stop, 1004, None).unwrap();
        chat(&store, &h, &id, "p1", "thanks", 1005).unwrap();
        act(
            &store,
            &h,
            &id,
            "p1",
            Action::Conclude,
            1006,
            Some((true, String::new())),
        )
        .unwrap();
        assert!(matches!(
            chat(&store, &h, &id, "ann", "hi", 1007),
            Err(ProctoringError::Conflict(_))
        ));
    }

    #[test]
    fn lock_and_unlock_set_the_flag_and_are_entries() {
        let (store, h, id) = setup();
        act(&store, &h, &id, "ann", Action::Start, 1001, None).unwrap();
        let e = super::act(&store, &h, &id, "p1", Live::Lock, "", 1002).unwrap();
        assert_eq!(
            (e.kind, e.data["action"].as_str()),
            (Kind::Action, Some("lock"))
        );
        assert!(sessions::get(&store, &h, &id).unwrap().locked);
        super::act(&store, &h, &id, "p1", Live::Unlock, "", 1003).unwrap();
        assert!(!sessions::get(&store, &h, &id).unwrap().locked);
    }

    #[test]
    fn a_violation_of_a_listed_code_locks_once() {
        let addons = templates::Addons {
            lock_on_violation: true,
            lock_on: vec![Metric::B2],
            ..Default::default()
        };
        let (store, h, id) = setup_with(addons);
        let period = |m: Metric, v: f64| BTreeMap::from([(m, v), (Metric::N1, 0.0)]);
        act(&store, &h, &id, "ann", Action::Start, 1001, None).unwrap();
        assert!(
            lock_on_violation(&store, &h, &id, &period(Metric::B3, 100.0), 1002)
                .unwrap()
                .is_none()
        );
        assert!(
            lock_on_violation(&store, &h, &id, &period(Metric::B2, 0.0), 1003)
                .unwrap()
                .is_none()
        );
        let e = lock_on_violation(&store, &h, &id, &period(Metric::B2, 30.0), 1004)
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.author.as_str(), e.data["automatic"].as_bool()),
            ("invigil", Some(true))
        );
        assert_eq!(e.data["codes"], json!(["b2"]));
        assert!(sessions::get(&store, &h, &id).unwrap().locked);
        assert!(
            lock_on_violation(&store, &h, &id, &period(Metric::B2, 30.0), 1005)
                .unwrap()
                .is_none(),
            "already locked"
        );
    }

    #[test]
    fn without_the_addon_nothing_locks() {
        let (store, h, id) = setup();
        act(&store, &h, &id, "ann", Action::Start, 1001, None).unwrap();
        let values = BTreeMap::from([(Metric::B2, 100.0)]);
        assert!(
            lock_on_violation(&store, &h, &id, &values, 1002)
                .unwrap()
                .is_none()
        );
    }
}
