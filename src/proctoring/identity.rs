//! The student's identity check before the exam: a face photo whose face
//! becomes the session's reference face (compared with the profile photo
//! when there is one), an ID document whose face must match it, and an
//! active liveness challenge (random head turns) by the same face.
//!
//! The reference face feeds two server-side metrics: c4 on every snapshot
//! (not the reference face's person) and c5 at the face check (the same face
//! checked in to another student's session of the host, see [`search`]).
//!
//! Records live in the `identity` tree: `r/` the checks of a session, `e/`
//! its reference embedding (compact, so a host's faces load in one scan),
//! `c/` the pending liveness challenge. Photos are objects under the
//! session's prefix, so export and retention find them with the rest.

pub mod analyze;
pub mod search;

use super::ProctoringError;
use super::metrics::{self, Metric};
use super::protocol::{self, Kind};
use super::sessions::{self, Session, Status};
use super::templates::{self, Addons};
use crate::recognize::liveness::Turn;
use crate::recognize::{DIM, Embedding, Verification};
use crate::store::{ReadTx, Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use search::{FaceIndex, Match};

/// How long a liveness challenge may be answered.
pub const CHALLENGE_SECS: u64 = 120;
/// Turns in a liveness challenge.
pub const CHALLENGE_TURNS: usize = 2;

/// A comparison of two faces in the vendor's shape, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    pub verified: bool,
    pub distance: f32,
    pub threshold: f32,
    pub confidence: f32,
    pub similar: f32,
}

impl From<Verification> for Comparison {
    fn from(v: Verification) -> Self {
        Comparison {
            verified: v.verified,
            distance: v.distance,
            threshold: v.threshold,
            confidence: v.confidence,
            similar: v.similar,
        }
    }
}

/// The accepted face photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaceCheck {
    pub at: u64,
    /// Object key of the photo.
    pub photo: String,
    pub content_type: String,
    /// The face's box in the photo: x, y, width, height in pixels.
    pub face_box: [f32; 4],
    /// Against the student's profile photo, when the account has one.
    pub profile: Option<Comparison>,
    /// Why the profile photo could not be compared, when it could not.
    pub profile_problem: Option<String>,
    /// The same face in other students' sessions of the host (c5).
    pub elsewhere: Vec<Match>,
}

/// The accepted ID document photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DocumentCheck {
    pub at: u64,
    pub photo: String,
    pub content_type: String,
    /// The face on the document against the reference face.
    pub comparison: Comparison,
    /// The document's text fields (name, number, MRZ) once the document
    /// reader fills them; absent until then.
    #[serde(default)]
    pub fields: Option<serde_json::Value>,
}

/// The liveness challenge's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LivenessCheck {
    pub at: u64,
    pub live: bool,
    /// The asked turns, `left` or `right` (the student's own side).
    pub turns: Vec<String>,
    pub completed: usize,
    pub frames: usize,
    /// Frames in which a face was found.
    pub faces: usize,
    pub reason: Option<String>,
    pub yaw: Vec<f32>,
}

/// What has been checked for a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Checks {
    pub face: Option<FaceCheck>,
    pub document: Option<DocumentCheck>,
    pub liveness: Option<LivenessCheck>,
}

/// Which checks a template asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Required {
    pub face: bool,
    pub document: bool,
    pub liveness: bool,
}

impl Required {
    pub fn of(addons: &Addons) -> Self {
        Required {
            face: addons.face_check,
            document: addons.id_document,
            liveness: addons.liveness,
        }
    }
}

/// The checks with what the template requires and whether all are done:
/// the face photo and the document accepted (a face found), the liveness
/// challenge passed. A face unlike the profile photo or the document does
/// not hold the student up (a proctor decides, and c4 counts it); a photo
/// without a usable face or a failed challenge has to be taken again.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct State {
    pub required: Required,
    #[serde(flatten)]
    pub checks: Checks,
    pub complete: bool,
}

impl State {
    pub fn new(required: Required, checks: Checks) -> Self {
        let face_ok = checks.face.is_some();
        let document_ok = checks.document.is_some();
        let liveness_ok = checks.liveness.as_ref().is_some_and(|l| l.live);
        let complete = (!required.face || face_ok)
            && (!required.document || document_ok)
            && (!required.liveness || liveness_ok);
        State {
            required,
            checks,
            complete,
        }
    }
}

/// A pending liveness challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Challenge {
    pub id: String,
    pub turns: Vec<String>,
    pub expires_at: u64,
}

fn key(kind: &str, host_id: &str, session: &str) -> Vec<u8> {
    format!("{kind}/{host_id}\0{session}").into_bytes()
}

/// Identity checks happen before and during the exam, not after it.
pub fn open_for_checks(s: &Session) -> Result<(), ProctoringError> {
    if matches!(s.status, Status::Stopped | Status::Concluded) {
        return Err(ProctoringError::IllegalMove {
            from: s.status.as_str(),
            action: "check the identity of",
            allowed: sessions::allowed(s.status),
        });
    }
    Ok(())
}

/// The object key for a new identity photo of `s`.
pub fn photo_key(s: &Session, what: &str, at: u64) -> String {
    format!(
        "{}identity/{what}-{at}-{}",
        s.object_prefix(),
        crate::auth::random_token(6)
    )
}

/// Removes a session's identity records (checks, reference face, pending
/// challenge), for its erasure.
pub fn remove_session_in(
    tx: &mut dyn crate::store::WriteTx,
    host_id: &str,
    session: &str,
) -> Result<(), StoreError> {
    for kind in ["r", "e", "c"] {
        tx.delete(catalog::IDENTITY, &key(kind, host_id, session))?;
    }
    Ok(())
}

pub fn checks_in(tx: &dyn ReadTx, host_id: &str, session: &str) -> Result<Checks, StoreError> {
    Ok(tx
        .get_json(catalog::IDENTITY, &key("r", host_id, session))?
        .unwrap_or_default())
}

/// The checks of a session with what its template requires.
pub fn state(store: &dyn Store, s: &Session) -> Result<State, ProctoringError> {
    let (checks, template) = store.read(|tx| {
        Ok::<_, StoreError>((
            checks_in(tx, &s.host_id, &s.id)?,
            templates::version(tx, &s.host_id, &s.template_id, s.template_version)?,
        ))
    })?;
    let required = template.map_or_else(Required::default, |t| Required::of(&t.addons));
    Ok(State::new(required, checks))
}

/// The reference face of a session (from its accepted face photo).
pub fn reference(
    store: &dyn Store,
    host_id: &str,
    session: &str,
) -> Result<Option<Embedding>, StoreError> {
    let raw = store.read(|tx| tx.get(catalog::IDENTITY, &key("e", host_id, session)))?;
    Ok(raw.and_then(|r| decode_reference(&r)).map(|(_, e)| e))
}

/// `[student length][student][DIM little-endian f32]`.
fn encode_reference(student: &str, e: &Embedding) -> Vec<u8> {
    let name = student.as_bytes();
    let mut out = Vec::with_capacity(1 + name.len() + 4 * DIM);
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&name[..name.len().min(255)]);
    for x in &e.0 {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn decode_reference(raw: &[u8]) -> Option<(String, Embedding)> {
    let (&len, rest) = raw.split_first()?;
    let (name, floats) = rest.split_at_checked(usize::from(len))?;
    if floats.len() != 4 * DIM {
        return None;
    }
    let v = floats
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((String::from_utf8_lossy(name).into_owned(), Embedding(v)))
}

/// Every reference face of a host: (session, student, embedding).
pub fn host_references(
    store: &dyn Store,
    host_id: &str,
) -> Result<Vec<(String, String, Embedding)>, StoreError> {
    let prefix = format!("e/{host_id}\0").into_bytes();
    Ok(store
        .scan(catalog::IDENTITY, &Scan::prefix(&prefix))?
        .into_iter()
        .filter_map(|(k, v)| {
            let session = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            decode_reference(&v).map(|(student, e)| (session, student, e))
        })
        .collect())
}

/// c4 for one snapshot's main face: 100 when it is not the reference
/// face's person, 0 when it is.
pub fn c4_value(reference: &Embedding, face: &Embedding) -> f64 {
    if reference.distance(face) <= crate::recognize::THRESHOLD {
        0.0
    } else {
        100.0
    }
}

/// The metric values a face check gives: c5 (100 when the same face is in
/// another student's session of the host), and c4 against the profile
/// photo when there is one (100 when it is another person).
pub fn face_values(check: &FaceCheck) -> BTreeMap<Metric, f64> {
    let flag = |b: bool| if b { 100.0 } else { 0.0 };
    let mut values = BTreeMap::from([(Metric::C5, flag(!check.elsewhere.is_empty()))]);
    if let Some(p) = check.profile {
        values.insert(Metric::C4, flag(!p.verified));
    }
    values
}

/// Folds server-measured values into the session's averages and score,
/// whatever its status before the end (identity checks come before the
/// start), with a metric entry in the protocol.
fn add_values(
    tx: &mut dyn WriteTx,
    s: &mut Session,
    values: &BTreeMap<Metric, f64>,
    at: u64,
) -> Result<(), ProctoringError> {
    let t = templates::version(tx, &s.host_id, &s.template_id, s.template_version)?
        .ok_or_else(|| ProctoringError::NotFound(format!("template {}", s.template_id)))?;
    s.averages.add_period(values);
    let score = metrics::score(
        &s.averages,
        &sessions::effective_weights(&t, s),
        t.threshold,
    );
    s.score = Some(score.score);
    s.review = score.review;
    sessions::save_in(tx, s)?;
    protocol::append(
        tx,
        &s.scope(),
        at,
        "invigil",
        Kind::Metrics,
        serde_json::json!({ "values": values, "score": score.score }),
    )?;
    Ok(())
}

/// Loads the session again inside the transaction, still open for checks.
fn reload(tx: &dyn ReadTx, s: &Session) -> Result<Session, ProctoringError> {
    let s = sessions::load(tx, &s.host_id, &s.id)?
        .ok_or_else(|| ProctoringError::NotFound(format!("session {}", s.id)))?;
    open_for_checks(&s)?;
    Ok(s)
}

/// Records an accepted face photo in one transaction: the check, the
/// reference face, the protocol entry with the photo, and its metric values
/// (see [`face_values`]). Returns the session with its new score.
pub fn record_face(
    store: &dyn Store,
    s: &Session,
    by: &str,
    check: &FaceCheck,
    embedding: &Embedding,
) -> Result<Session, ProctoringError> {
    store.write(|tx| {
        let mut s = reload(tx, s)?;
        update_checks(tx, &s, |c| c.face = Some(check.clone()))?;
        tx.put(
            catalog::IDENTITY,
            &key("e", &s.host_id, &s.id),
            &encode_reference(&s.student, embedding),
        )?;
        // Only the count: the protocol is replayed to the student's page,
        // and other students' sessions are for staff (`r/` keeps them).
        let data = serde_json::json!({
            "check": "face",
            "accepted": true,
            "profile": check.profile,
            "profile_problem": check.profile_problem,
            "same_face_elsewhere": check.elsewhere.len(),
        });
        protocol::append_with(
            tx,
            &s.scope(),
            check.at,
            by,
            Kind::FaceCheck,
            data,
            vec![check.photo.clone()],
        )?;
        add_values(tx, &mut s, &face_values(check), check.at)?;
        Ok(s)
    })
}

/// Records a photo that was refused (no face, several faces, …): nothing
/// is kept but the protocol entry, so the proctor sees the attempts.
pub fn record_refused(
    store: &dyn Store,
    s: &Session,
    by: &str,
    check: &str,
    problem: &str,
    at: u64,
) -> Result<(), ProctoringError> {
    store.write(|tx| {
        let s = reload(tx, s)?;
        let data = serde_json::json!({ "check": check, "accepted": false, "problem": problem });
        protocol::append(tx, &s.scope(), at, by, Kind::FaceCheck, data)?;
        Ok(())
    })
}

/// Changes the session's checks record inside `tx`.
fn update_checks(
    tx: &mut dyn crate::store::WriteTx,
    s: &Session,
    change: impl FnOnce(&mut Checks),
) -> Result<(), StoreError> {
    let mut checks = checks_in(tx, &s.host_id, &s.id)?;
    change(&mut checks);
    tx.put_json(catalog::IDENTITY, &key("r", &s.host_id, &s.id), &checks)
}

/// Records the document check with its photo.
pub fn record_document(
    store: &dyn Store,
    s: &Session,
    by: &str,
    check: &DocumentCheck,
) -> Result<(), ProctoringError> {
    store.write(|tx| {
        let s = reload(tx, s)?;
        update_checks(tx, &s, |c| c.document = Some(check.clone()))?;
        let data = serde_json::json!({
            "check": "document",
            "accepted": true,
            "comparison": check.comparison,
            "fields": check.fields,
        });
        protocol::append_with(
            tx,
            &s.scope(),
            check.at,
            by,
            Kind::FaceCheck,
            data,
            vec![check.photo.clone()],
        )?;
        Ok(())
    })
}

/// Records the liveness result.
pub fn record_liveness(
    store: &dyn Store,
    s: &Session,
    by: &str,
    check: &LivenessCheck,
) -> Result<(), ProctoringError> {
    store.write(|tx| {
        let s = reload(tx, s)?;
        update_checks(tx, &s, |c| c.liveness = Some(check.clone()))?;
        let data = serde_json::json!({
            "check": "liveness",
            "live": check.live,
            "turns": check.turns,
            "completed": check.completed,
            "frames": check.frames,
            "reason": check.reason,
        });
        protocol::append(tx, &s.scope(), check.at, by, Kind::FaceCheck, data)?;
        Ok(())
    })
}

fn turn_name(t: Turn) -> &'static str {
    match t {
        Turn::Left => "left",
        Turn::Right => "right",
    }
}

fn parse_turn(name: &str) -> Option<Turn> {
    match name {
        "left" => Some(Turn::Left),
        "right" => Some(Turn::Right),
        _ => None,
    }
}

/// A new random challenge for `s`, replacing any pending one.
pub fn new_challenge(
    store: &dyn Store,
    s: &Session,
    now: u64,
) -> Result<Challenge, ProctoringError> {
    let challenge = Challenge {
        id: crate::auth::random_token(12),
        turns: crate::recognize::liveness::challenge(CHALLENGE_TURNS)
            .into_iter()
            .map(|t| turn_name(t).to_string())
            .collect(),
        expires_at: now + CHALLENGE_SECS,
    };
    store.write(|tx| {
        reload(tx, s)?;
        tx.put_json(catalog::IDENTITY, &key("c", &s.host_id, &s.id), &challenge)?;
        Ok::<_, ProctoringError>(())
    })?;
    Ok(challenge)
}

/// Takes the pending challenge `id` of `s`: it is used up whatever the
/// answer, so a failed attempt cannot be replayed with other frames.
pub fn take_challenge(
    store: &dyn Store,
    s: &Session,
    id: &str,
    now: u64,
) -> Result<Vec<Turn>, ProctoringError> {
    store.write(|tx| {
        reload(tx, s)?;
        let k = key("c", &s.host_id, &s.id);
        let pending: Option<Challenge> = tx.get_json(catalog::IDENTITY, &k)?;
        let Some(c) = pending.filter(|c| c.id == id) else {
            return Err(ProctoringError::invalid(
                "challenge",
                "no such pending challenge; ask for a new one",
            ));
        };
        tx.delete(catalog::IDENTITY, &k)?;
        if c.expires_at < now {
            // The deletion is kept: an expired challenge is gone either way.
            return Ok(Err(ProctoringError::invalid(
                "challenge",
                format!("expired {} s ago; ask for a new one", now - c.expires_at),
            )));
        }
        Ok(Ok(c.turns.iter().filter_map(|t| parse_turn(t)).collect()))
    })?
}

#[cfg(test)]
mod tests;
