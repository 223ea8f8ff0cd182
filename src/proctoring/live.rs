//! What the live hub records besides metric periods and status changes: chat
//! messages and proctors' warnings. Each is a protocol entry written in the
//! same transaction that checks the session, so an acknowledged message is
//! on disk (every commit is fsynced).

use super::ProctoringError;
use super::protocol::{self, Entry, Kind};
use super::sessions::{self, Status};
use crate::store::Store;
use serde_json::json;

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
    let text = clean("text", text, CHAT_MAX, false)?;
    store.write(|tx| {
        let s = sessions::load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if s.status == Status::Concluded {
            return Err(ProctoringError::Conflict(
                "the session is concluded; its chat is closed".into(),
            ));
        }
        Ok(protocol::append(
            tx,
            &s.scope(),
            at,
            by,
            Kind::Chat,
            json!({ "text": text }),
        )?)
    })
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
    let comment = clean("comment", comment, COMMENT_MAX, true)?;
    store.write(|tx| {
        let s = sessions::load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if !matches!(s.status, Status::Started | Status::Paused) {
            return Err(ProctoringError::IllegalMove {
                from: s.status.as_str(),
                action: "warn",
                allowed: sessions::allowed(s.status),
            });
        }
        Ok(protocol::append(
            tx,
            &s.scope(),
            at,
            by,
            Kind::Action,
            json!({ "action": "warn", "comment": comment }),
        )?)
    })
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
            addons: Default::default(),
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
}
