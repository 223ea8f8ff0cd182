//! Sessions opened by an LMS's JWT link: the vendor's payload names the
//! template, subject, time limit and tags; a link with an `identifier` that
//! was seen before resumes that session instead of making another.

use super::ProctoringError;
use super::sessions::{self, NewSession, Session};
use crate::auth::jwt::LinkClaims;
use crate::store::Store;

/// Who the session is recorded as created by.
const BY: &str = "jwt-link";

/// The session a student's link opens: `None` when the link names no
/// template (it only signs in).
pub fn open(
    store: &dyn Store,
    host_id: &str,
    student: &str,
    claims: &LinkClaims,
    now: u64,
) -> Result<Option<Session>, ProctoringError> {
    let Some(template) = claims.template.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Some(s) = resume(store, host_id, student, claims)? {
        return Ok(Some(s));
    }
    let new = NewSession {
        student: student.to_string(),
        subject: claims.subject.clone(),
        template: template.to_string(),
        // The vendor's `timeout` is the time limit in minutes.
        duration_limit: claims.timeout,
        tags: claims.tags(),
        identifier: claims.identifier.clone(),
        ..NewSession::default()
    };
    match sessions::create(store, host_id, BY, &new, now) {
        Ok(s) => Ok(Some(s)),
        // The same link opened twice at once: the other one created it.
        Err(ProctoringError::Conflict(_)) if claims.identifier.is_some() => {
            resume(store, host_id, student, claims)?
                .map(Some)
                .ok_or_else(|| {
                    ProctoringError::Conflict("the link's session could not be opened".into())
                })
        }
        Err(e) => Err(e),
    }
}

/// The session an earlier link with the same identifier opened, if it is
/// this student's; another student's is refused.
fn resume(
    store: &dyn Store,
    host_id: &str,
    student: &str,
    claims: &LinkClaims,
) -> Result<Option<Session>, ProctoringError> {
    let Some(identifier) = claims.identifier.as_deref().filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    match sessions::by_identifier(store, host_id, identifier)? {
        Some(s) if s.student == student => Ok(Some(s)),
        Some(_) => Err(ProctoringError::Conflict(format!(
            "identifier {identifier} names another student's session"
        ))),
        None => Ok(None),
    }
}
