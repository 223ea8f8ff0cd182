//! Chat attachments: files a participant uploads to a session and then
//! references from a chat message. The bytes live in the object store under
//! the session's prefix; the record here (type, size, who, when) is written
//! after the bytes are durable, so a listed attachment always has its bytes.

use super::ProctoringError;
use super::sessions::{self, Session, Status};
use crate::store::{ReadTx, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};

/// Attachments one chat message may carry.
pub const PER_MESSAGE: usize = 10;
/// Longest Content-Type kept.
const TYPE_MAX: usize = 127;

/// An uploaded attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub session: String,
    /// The object-store key of the bytes.
    pub key: String,
    pub content_type: String,
    pub size: u64,
    pub by: String,
    pub at: u64,
}

fn record_key(host_id: &str, session: &str, id: &str) -> Vec<u8> {
    format!("{host_id}\0{session}\0{id}").into_bytes()
}

/// Deletes the attachment records of a session (erasure); returns how many.
pub fn remove_session_in(
    tx: &mut dyn crate::store::WriteTx,
    host_id: &str,
    session: &str,
) -> Result<u64, crate::store::StoreError> {
    let prefix = format!("{host_id}\0{session}\0").into_bytes();
    let rows = tx.scan(catalog::ATTACHMENTS, &crate::store::Scan::prefix(&prefix))?;
    for (k, _) in &rows {
        tx.delete(catalog::ATTACHMENTS, k)?;
    }
    Ok(rows.len() as u64)
}

/// Where an attachment's bytes go.
pub fn object_key(s: &Session, id: &str) -> String {
    format!("{}attachments/{id}", s.object_prefix())
}

/// A fresh attachment id.
pub fn new_id() -> String {
    crate::auth::random_token(12)
}

/// Checks a Content-Type: `type/subtype` with optional parameters, printable
/// ASCII, short. Anything else is refused rather than guessed.
pub fn content_type(raw: Option<&str>) -> Result<String, ProctoringError> {
    let bad = |m: &str| ProctoringError::invalid("Content-Type", m);
    let t = raw.map(str::trim).unwrap_or_default();
    if t.is_empty() {
        return Err(bad("an attachment needs a Content-Type"));
    }
    if t.len() > TYPE_MAX || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad("at most 127 printable ASCII characters"));
    }
    let essence = t.split(';').next().unwrap_or_default().trim();
    let valid = essence.split_once('/').is_some_and(|(a, b)| {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
        };
        token(a) && token(b)
    });
    if !valid {
        return Err(bad("expected type/subtype, such as image/png"));
    }
    Ok(t.to_string())
}

/// Checks that a session takes attachments now (as its chat does: until it
/// is concluded).
pub fn open(s: &Session) -> Result<(), ProctoringError> {
    if s.status == Status::Concluded {
        return Err(ProctoringError::Conflict(
            "the session is concluded; its chat is closed".into(),
        ));
    }
    Ok(())
}

/// Records an attachment whose bytes are stored.
pub fn record(store: &dyn Store, host_id: &str, a: &Attachment) -> Result<(), ProctoringError> {
    store.write(|tx| {
        let s = sessions::load(tx, host_id, &a.session)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {}", a.session)))?;
        open(&s)?;
        tx.put_json(
            catalog::ATTACHMENTS,
            &record_key(host_id, &a.session, &a.id),
            a,
        )?;
        Ok(())
    })
}

/// One attachment of a session.
pub fn get(
    tx: &dyn ReadTx,
    host_id: &str,
    session: &str,
    id: &str,
) -> Result<Option<Attachment>, StoreError> {
    tx.get_json(catalog::ATTACHMENTS, &record_key(host_id, session, id))
}

/// The object keys of the attachments a chat message names, inside the
/// transaction that records the message: each must belong to the session.
pub fn keys_for(
    tx: &mut dyn WriteTx,
    host_id: &str,
    session: &str,
    ids: &[String],
) -> Result<Vec<String>, ProctoringError> {
    if ids.len() > PER_MESSAGE {
        return Err(ProctoringError::invalid(
            "attachments",
            format!("at most {PER_MESSAGE} per message"),
        ));
    }
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        let a: Attachment = tx
            .get_json(catalog::ATTACHMENTS, &record_key(host_id, session, id))?
            .ok_or_else(|| {
                ProctoringError::invalid(
                    "attachments",
                    format!("{id:?} is not an attachment of this session"),
                )
            })?;
        keys.push(a.key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_checked() {
        for ok in ["image/png", "application/pdf", "text/plain; charset=utf-8"] {
            assert_eq!(content_type(Some(ok)).unwrap(), ok);
        }
        for bad in [
            None,
            Some(""),
            Some("png"),
            Some("image/"),
            Some("a b/c"),
            Some("text/plain\u{7f}"),
        ] {
            assert!(content_type(bad).is_err(), "{bad:?}");
        }
    }
}
