//! Sessions opened by an LMS link: the link's `identifier` names the session,
//! so the first link creates it from the link's `template`, `subject`,
//! `timeout` and `tags`, and every later link with the same identifier
//! resumes the same session.

use super::ProctoringError;
use super::sessions::{self, NewSession, Session};
use crate::auth::jwt::LinkClaims;
use crate::store::Store;

/// The session a student's link names: created on the first use, the same
/// one afterwards. `None` when the link names no template and no identifier
/// (a plain sign-in link).
pub fn open(
    store: &dyn Store,
    host_id: &str,
    student: &str,
    claims: &LinkClaims,
    now: u64,
) -> Result<Option<Session>, ProctoringError> {
    if let Some(ident) = &claims.identifier
        && let Some(existing) = sessions::by_identifier(store, host_id, ident)?
    {
        return owned(existing, student).map(Some);
    }
    let Some(template) = &claims.template else {
        return match &claims.identifier {
            Some(ident) => Err(ProctoringError::invalid(
                "identifier",
                format!("no session {ident} yet, and the link names no template to create it"),
            )),
            None => Ok(None),
        };
    };
    let input = NewSession {
        student: student.to_string(),
        subject: claims.subject.clone(),
        template: template.clone(),
        duration_limit: claims.timeout,
        tags: claims.tags(),
        identifier: claims.identifier.clone(),
        ..NewSession::default()
    };
    match sessions::create(store, host_id, "lms-link", &input, now) {
        Ok(created) => Ok(Some(created)),
        // Two links with the same identifier at once: the other one created
        // it; resume that.
        Err(ProctoringError::Conflict(_)) if claims.identifier.is_some() => {
            let ident = claims.identifier.as_deref().unwrap_or_default();
            match sessions::by_identifier(store, host_id, ident)? {
                Some(existing) => owned(existing, student).map(Some),
                None => Err(ProctoringError::Conflict(format!(
                    "session {ident} could not be created"
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

/// A link resumes a session only for the student it belongs to.
fn owned(session: Session, student: &str) -> Result<Session, ProctoringError> {
    if session.student == student {
        Ok(session)
    } else {
        Err(ProctoringError::Conflict(format!(
            "the link's identifier names another student's session ({})",
            session.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proctoring::templates::{self, TemplateInput};
    use crate::store::MemoryStore;

    fn setup() -> (MemoryStore, String) {
        let store = MemoryStore::new();
        let manager = crate::auth::Principal::Manager {
            username: "m".into(),
        };
        let input = crate::auth::hosts::HostInput {
            domains: Some(vec!["school.test".into()]),
            ..Default::default()
        };
        let host = crate::auth::hosts::create(&store, &manager, &input, "").unwrap();
        let template: TemplateInput =
            serde_json::from_value(serde_json::json!({ "id": "final", "name": "Final" })).unwrap();
        templates::save(&store, &host.id, "admin", &template).unwrap();
        (store, host.id)
    }

    fn claims(v: serde_json::Value) -> LinkClaims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn second_link_with_the_same_identifier_resumes_the_session() {
        let (store, host) = setup();
        let link = claims(serde_json::json!({
            "identifier": "exam-1", "template": "final", "subject": "Maths",
            "timeout": 90, "tags": "a, b"
        }));
        let first = open(&store, &host, "ann", &link, 10).unwrap().unwrap();
        assert_eq!(first.subject, "Maths");
        assert_eq!(first.duration_limit_secs, Some(90 * 60));
        assert_eq!(first.tags, ["a", "b"]);
        let again = open(&store, &host, "ann", &link, 20).unwrap().unwrap();
        assert_eq!(again.id, first.id);
        // Resuming needs no template.
        let bare = claims(serde_json::json!({ "identifier": "exam-1" }));
        assert_eq!(
            open(&store, &host, "ann", &bare, 30).unwrap().unwrap().id,
            first.id
        );
    }

    #[test]
    fn another_students_identifier_and_unknown_template_are_refused() {
        let (store, host) = setup();
        let link = claims(serde_json::json!({ "identifier": "exam-2", "template": "final" }));
        open(&store, &host, "ann", &link, 10).unwrap().unwrap();
        let err = open(&store, &host, "bob", &link, 11).unwrap_err();
        assert!(matches!(err, ProctoringError::Conflict(_)), "{err}");
        let unknown = claims(serde_json::json!({ "template": "nope" }));
        let err = open(&store, &host, "ann", &unknown, 12).unwrap_err();
        assert!(err.to_string().contains("no template nope"), "{err}");
        let missing = claims(serde_json::json!({ "identifier": "exam-9" }));
        assert!(open(&store, &host, "ann", &missing, 13).is_err());
        assert!(
            open(&store, &host, "ann", &claims(serde_json::json!({})), 14)
                .unwrap()
                .is_none()
        );
    }
}
