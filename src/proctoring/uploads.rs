//! Resumable uploads of evidence (webcam and screen recordings, snapshots):
//! upload records, offsets, chunk append, termination and expiry. The tus
//! protocol around it lives in the web layer; this is what it means.
//!
//! A chunk is acknowledged only once it is durable: its object is written
//! (and fsynced) first, then the upload's new offset, the chunk record and a
//! protocol entry `upload` are committed in one transaction. A crash between
//! the two leaves an object nothing refers to, which the next write at that
//! offset replaces.

use super::ProctoringError;
use super::protocol::{self, Kind};
use super::sessions::{self, Session, Status};
use super::snapshots;
use crate::objects::{Objects, ObjectsError};
use crate::store::{ReadTx, Scan, Store, StoreError, WriteTx, catalog};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

mod ledger;
pub use ledger::remove_session_in;
use ledger::{commit_chunk, remove};

/// Largest total length of one upload (a long exam's screen recording fits).
pub const MAX_LENGTH: u64 = 64 * 1024 * 1024 * 1024;

/// What an upload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    Webcam,
    Screen,
    Snapshot,
}

impl UploadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Webcam => "webcam",
            UploadKind::Screen => "screen",
            UploadKind::Snapshot => "snapshot",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [UploadKind::Webcam, UploadKind::Screen, UploadKind::Snapshot]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    fn folder(self) -> &'static str {
        match self {
            UploadKind::Snapshot => "snapshots",
            _ => "recordings",
        }
    }
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub host_id: String,
    pub session_id: String,
    pub kind: UploadKind,
    /// The total length; `None` until the client declares it (deferred length).
    pub length: Option<u64>,
    /// Bytes durably stored so far.
    pub offset: u64,
    pub content_type: String,
    /// The client's metadata (tus `Upload-Metadata`), decoded.
    pub metadata: BTreeMap<String, String>,
    pub created_by: String,
    pub created_at: u64,
    /// When an incomplete upload is removed; moved on with every chunk.
    pub expires_at: u64,
    pub completed_at: Option<u64>,
    pub chunks: u64,
}

impl Upload {
    pub fn is_complete(&self) -> bool {
        self.completed_at.is_some()
    }
}

/// One durably stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub sha256: String,
    pub object: String,
}

/// Why an upload request was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Domain(#[from] ProctoringError),
    #[error("upload offset {given} does not match the upload's offset {current}")]
    OffsetMismatch { given: u64, current: u64 },
    #[error("the chunk's SHA-256 is {actual}, the Upload-Checksum says {declared}")]
    ChecksumMismatch { declared: String, actual: String },
    #[error("the chunk is larger than UPLOAD_LIMIT ({} MiB)", limit / (1024 * 1024))]
    ChunkTooLarge { limit: u64 },
    #[error("{0}")]
    TooLong(String),
    #[error("the upload expired and was removed")]
    Expired,
    #[error("reading the chunk failed: {0}")]
    Body(String),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        UploadError::Domain(e.into())
    }
}

/// How uploads behave: the per-request limit and how long incomplete ones live.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `UPLOAD_LIMIT`: the largest chunk (request body).
    pub max_chunk: u64,
    /// `UPLOAD_EXPIRES`: how long an incomplete upload is kept after its last chunk.
    pub expires: Duration,
}

/// What creates an upload.
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    /// `None`: deferred, declared with a later chunk.
    pub length: Option<u64>,
    pub metadata: BTreeMap<String, String>,
}

/// The outcome of [`Uploads::append`].
#[derive(Debug, Clone)]
pub struct Appended {
    pub upload: Upload,
    /// The chunk repeated one already stored; nothing new was written.
    pub duplicate: bool,
}

/// Uploads over the store and the object store.
pub struct Uploads {
    store: Arc<dyn Store>,
    objects: Objects,
    settings: Settings,
    snapshots: Option<snapshots::Queue>,
    /// Appends to one upload run one at a time (striped by upload id).
    locks: Vec<tokio::sync::Mutex<()>>,
}

fn record_key(host: &str, session: &str, upload: &str) -> Vec<u8> {
    format!("u/{host}\0{session}\0{upload}").into_bytes()
}

fn chunk_prefix(host: &str, session: &str, upload: &str) -> Vec<u8> {
    format!("c/{host}\0{session}\0{upload}\0").into_bytes()
}

fn chunk_key(host: &str, session: &str, upload: &str, offset: u64) -> Vec<u8> {
    let mut k = chunk_prefix(host, session, upload);
    k.extend_from_slice(format!("{offset:020}").as_bytes());
    k
}

fn expiry_key(at: u64, host: &str, session: &str, upload: &str) -> Vec<u8> {
    let mut k = b"x/".to_vec();
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(format!("{host}\0{session}\0{upload}").as_bytes());
    k
}

/// The object key of the chunk at `offset`.
pub fn object_key(u: &Upload, offset: u64) -> String {
    format!(
        "{}{}/{}/{offset:020}",
        sessions::object_prefix(&u.host_id, &u.session_id),
        u.kind.folder(),
        u.id
    )
}

fn load(tx: &dyn ReadTx, host: &str, session: &str, id: &str) -> Result<Upload, UploadError> {
    tx.get_json(catalog::UPLOADS, &record_key(host, session, id))?
        .ok_or_else(|| ProctoringError::NotFound(format!("upload {id}")).into())
}

fn chunk_at(tx: &dyn ReadTx, u: &Upload, offset: u64) -> Result<Option<Chunk>, StoreError> {
    tx.get_json(
        catalog::UPLOADS,
        &chunk_key(&u.host_id, &u.session_id, &u.id, offset),
    )
}

/// Uploads are taken while the session runs (started, or paused by a proctor:
/// the browser still flushes what it recorded before the pause).
/// The upload's length once a chunk request declaring `declared` is taken
/// into account: a deferred length may be set once, between the current
/// `offset` and [`MAX_LENGTH`]; a set length may only be repeated.
pub fn settle_length(
    length: Option<u64>,
    offset: u64,
    declared: Option<u64>,
) -> Result<Option<u64>, UploadError> {
    match (length, declared) {
        (Some(a), Some(b)) if a != b => Err(ProctoringError::invalid(
            "Upload-Length",
            format!("the upload's length is {a}, not {b}"),
        )
        .into()),
        (None, Some(n)) if n < offset || n > MAX_LENGTH => Err(UploadError::TooLong(format!(
            "Upload-Length {n} must lie between the offset {offset} and {MAX_LENGTH}"
        ))),
        (None, Some(n)) => Ok(Some(n)),
        _ => Ok(length),
    }
}

/// Whether a chunk at `offset` that has brought `size` bytes so far may go
/// on: at most `max_chunk` bytes, and not past the upload's length (`room`
/// bytes left after the offset).
pub fn check_chunk_size(
    size: u64,
    max_chunk: u64,
    room: u64,
    length: Option<u64>,
    offset: u64,
) -> Result<(), UploadError> {
    if size > max_chunk {
        return Err(UploadError::ChunkTooLarge { limit: max_chunk });
    }
    if size > room {
        return Err(UploadError::TooLong(format!(
            "the chunk runs past the upload's length {} (offset {offset}, {size} bytes or more)",
            length.unwrap_or_default()
        )));
    }
    Ok(())
}

fn check_open(s: &Session, action: &'static str) -> Result<(), ProctoringError> {
    if matches!(s.status, Status::Started | Status::Paused) {
        Ok(())
    } else {
        Err(ProctoringError::IllegalMove {
            from: s.status.as_str(),
            action,
            allowed: sessions::allowed(s.status),
        })
    }
}

/// Appends to an upload are taken while the session runs and, after a stop,
/// for uploads begun before it until `grace` seconds have passed: a browser
/// that was offline when the proctor stopped still delivers what it recorded
/// while the exam ran. New uploads after a stop are refused (`check_open`).
fn check_appendable(s: &Session, u: &Upload, now: u64, grace: u64) -> Result<(), ProctoringError> {
    match (s.status, s.stopped_at) {
        (Status::Stopped, Some(stopped)) if u.created_at <= stopped && now <= stopped + grace => {
            Ok(())
        }
        _ => check_open(s, "upload to"),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+-.;= ".contains(&b))
}

impl Uploads {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Objects,
        settings: Settings,
        snapshots: Option<snapshots::Queue>,
    ) -> Self {
        Uploads {
            store,
            objects,
            settings,
            snapshots,
            locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn snapshot_stats(&self) -> Option<Arc<snapshots::Stats>> {
        self.snapshots.as_ref().map(snapshots::Queue::stats)
    }

    fn lock_for(&self, id: &str) -> &tokio::sync::Mutex<()> {
        let h = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
        &self.locks[h % self.locks.len()]
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, UploadError> + Send + 'static,
    ) -> Result<T, UploadError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| UploadError::Body(format!("store task failed: {e}")))?
    }

    /// Creates an upload for `s`, by its student `by`.
    pub async fn create(
        &self,
        s: &Session,
        by: &str,
        new: NewUpload,
        now: u64,
    ) -> Result<Upload, UploadError> {
        let kind = match new.metadata.get("kind") {
            Some(k) => UploadKind::parse(k).ok_or_else(|| {
                ProctoringError::invalid(
                    "Upload-Metadata",
                    format!("kind {k:?} is not webcam, screen or snapshot"),
                )
            })?,
            None => {
                return Err(ProctoringError::invalid(
                    "Upload-Metadata",
                    "a `kind` (webcam, screen or snapshot) is required",
                )
                .into());
            }
        };
        let max = if kind == UploadKind::Snapshot {
            snapshots::MAX_BYTES
        } else {
            MAX_LENGTH
        };
        match new.length {
            Some(n) if n > max => {
                return Err(UploadError::TooLong(format!(
                    "Upload-Length {n} is over the limit of {max} bytes for a {}",
                    kind.as_str()
                )));
            }
            None if kind == UploadKind::Snapshot => {
                return Err(ProctoringError::invalid(
                    "Upload-Length",
                    "a snapshot declares its length when it is created",
                )
                .into());
            }
            _ => {}
        }
        let content_type = new
            .metadata
            .get("filetype")
            .filter(|t| is_token(t))
            .cloned()
            .unwrap_or_else(|| {
                if kind == UploadKind::Snapshot {
                    "image/jpeg".into()
                } else {
                    "video/webm".into()
                }
            });
        let upload = Upload {
            id: crate::auth::random_token(12),
            host_id: s.host_id.clone(),
            session_id: s.id.clone(),
            kind,
            length: new.length,
            offset: 0,
            content_type,
            metadata: new.metadata,
            created_by: by.to_string(),
            created_at: now,
            expires_at: now + self.settings.expires.as_secs(),
            completed_at: (new.length == Some(0)).then_some(now),
            chunks: 0,
        };
        let u = upload.clone();
        self.blocking(move |store| {
            store.write(|tx| {
                let s = sessions::load(tx, &u.host_id, &u.session_id)?.ok_or_else(|| {
                    ProctoringError::NotFound(format!("session {}", u.session_id))
                })?;
                check_open(&s, "upload to")?;
                tx.put_json(
                    catalog::UPLOADS,
                    &record_key(&u.host_id, &u.session_id, &u.id),
                    &u,
                )?;
                if !u.is_complete() {
                    tx.put(
                        catalog::UPLOADS,
                        &expiry_key(u.expires_at, &u.host_id, &u.session_id, &u.id),
                        b"",
                    )?;
                }
                Ok::<_, UploadError>(())
            })
        })
        .await?;
        Ok(upload)
    }

    /// One upload of a session.
    pub async fn get(&self, host: &str, session: &str, id: &str) -> Result<Upload, UploadError> {
        let (h, s, i) = (host.to_string(), session.to_string(), id.to_string());
        self.blocking(move |store| store.read(|tx| load(tx, &h, &s, &i)))
            .await
    }

    /// The uploads of a session, oldest first.
    pub async fn list(&self, host: &str, session: &str) -> Result<Vec<Upload>, UploadError> {
        let prefix = format!("u/{host}\0{session}\0").into_bytes();
        let rows = self
            .blocking(move |store| Ok(store.scan(catalog::UPLOADS, &Scan::prefix(&prefix))?))
            .await?;
        let mut all: Vec<Upload> = rows
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The stored chunks of an upload, in order.
    pub async fn chunks(&self, u: &Upload) -> Result<Vec<Chunk>, UploadError> {
        let prefix = chunk_prefix(&u.host_id, &u.session_id, &u.id);
        let rows = self
            .blocking(move |store| Ok(store.scan(catalog::UPLOADS, &Scan::prefix(&prefix))?))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Appends the chunk `body` at `offset`; acknowledged (returns) only once
    /// it is durable. `length` declares a deferred length; `sha256` is the
    /// client's checksum of the chunk.
    #[allow(clippy::too_many_arguments)]
    pub async fn append<S, E>(
        &self,
        host: &str,
        session: &str,
        id: &str,
        by: &str,
        offset: u64,
        length: Option<u64>,
        sha256: Option<[u8; 32]>,
        body: S,
        now: u64,
    ) -> Result<Appended, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let _one_at_a_time = self.lock_for(id).lock().await;
        let (h, s, i) = (host.to_string(), session.to_string(), id.to_string());
        let (mut u, session_rec) = self
            .blocking(move |store| {
                store.read(|tx| {
                    let u = load(tx, &h, &s, &i)?;
                    let session = sessions::load(tx, &h, &s)?
                        .ok_or_else(|| ProctoringError::NotFound(format!("session {s}")))?;
                    Ok::<_, UploadError>((u, session))
                })
            })
            .await?;
        if !u.is_complete() && u.expires_at <= now {
            return Err(UploadError::Expired);
        }
        check_appendable(&session_rec, &u, now, self.settings.expires.as_secs())?;
        u.length = settle_length(u.length, u.offset, length)?;
        if offset != u.offset {
            return self.repeated(&u, offset, body).await;
        }
        let room = u.length.map_or(u64::MAX, |n| n.saturating_sub(u.offset));
        let key = object_key(&u, offset);
        let snapshot_whole = u.kind == UploadKind::Snapshot;
        let mut upload = self.objects.upload(&key).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut kept = BytesMut::new();
        let mut body = std::pin::pin!(body);
        let failure = loop {
            let piece = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(UploadError::Body(e.to_string())),
                Some(Ok(b)) => b,
            };
            size += piece.len() as u64;
            if let Err(e) = check_chunk_size(size, self.settings.max_chunk, room, u.length, offset)
            {
                break Some(e);
            }
            hasher.update(&piece);
            if snapshot_whole {
                kept.extend_from_slice(&piece);
            }
            if let Err(e) = upload.write(piece).await {
                break Some(e.into());
            }
        };
        let digest: [u8; 32] = hasher.finalize().into();
        let failure = failure.or_else(|| {
            sha256
                .filter(|declared| *declared != digest)
                .map(|declared| UploadError::ChecksumMismatch {
                    declared: hex::encode(declared),
                    actual: hex::encode(digest),
                })
        });
        if let Some(e) = failure {
            let _ = upload.abort().await;
            return Err(e);
        }
        if size == 0 {
            // Nothing to store: a PATCH that only declares the length (which
            // may complete the upload), or an empty one.
            let _ = upload.abort().await;
            return self.save_length(u, now).await;
        }
        let completes = u.length == Some(offset + size);
        let mut whole = None;
        if snapshot_whole && completes {
            let mut all = BytesMut::new();
            for c in self.chunks(&u).await? {
                all.extend_from_slice(&self.objects.get(&c.object).await?);
            }
            all.extend_from_slice(&kept);
            let all = all.freeze();
            let check = all.clone();
            let inspected = tokio::task::spawn_blocking(move || snapshots::inspect(&check))
                .await
                .map_err(|e| UploadError::Body(e.to_string()))?;
            if let Err(e) = inspected {
                let _ = upload.abort().await;
                return Err(e.into());
            }
            whole = Some(all);
        }
        upload.finish().await?;
        let chunk = Chunk {
            offset,
            size,
            sha256: hex::encode(digest),
            object: key.clone(),
        };
        let (by, expires) = (by.to_string(), self.settings.expires.as_secs());
        let stored = self
            .blocking(move |store| {
                store.write(|tx| commit_chunk(tx, u, chunk, &by, completes, now, expires))
            })
            .await;
        let stored = match stored {
            Ok(u) => u,
            Err(e) => {
                // Not acknowledged, so the object must not linger as if it were.
                let _ = self.objects.delete(&key).await;
                return Err(e);
            }
        };
        if let (Some(bytes), Some(queue)) = (whole, &self.snapshots) {
            queue.offer(snapshots::Job {
                host_id: stored.host_id.clone(),
                session_id: stored.session_id.clone(),
                upload_id: stored.id.clone(),
                bytes,
            });
        }
        Ok(Appended {
            upload: stored,
            duplicate: false,
        })
    }

    /// A chunk at an offset other than the current one: a repeat of a stored
    /// chunk (same offset, same bytes) is acknowledged again; anything else
    /// is a conflict naming the current offset.
    async fn repeated<S, E>(
        &self,
        u: &Upload,
        offset: u64,
        body: S,
    ) -> Result<Appended, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mismatch = UploadError::OffsetMismatch {
            given: offset,
            current: u.offset,
        };
        if offset > u.offset {
            return Err(mismatch);
        }
        let (copy, at) = (u.clone(), offset);
        let Some(stored) = self
            .blocking(move |store| Ok(store.read(|tx| chunk_at(tx, &copy, at))?))
            .await?
        else {
            return Err(mismatch);
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| UploadError::Body(e.to_string()))?;
            size += piece.len() as u64;
            if size > stored.size {
                return Err(mismatch);
            }
            hasher.update(&piece);
        }
        if size == stored.size && hex::encode(hasher.finalize()) == stored.sha256 {
            Ok(Appended {
                upload: u.clone(),
                duplicate: true,
            })
        } else {
            Err(mismatch)
        }
    }

    async fn save_length(&self, u: Upload, now: u64) -> Result<Appended, UploadError> {
        self.blocking(move |store| {
            store.write(|tx| {
                let mut current = load(tx, &u.host_id, &u.session_id, &u.id)?;
                current.length = u.length;
                if current.length == Some(current.offset) && !current.is_complete() {
                    current.completed_at = Some(now);
                    tx.delete(
                        catalog::UPLOADS,
                        &expiry_key(current.expires_at, &u.host_id, &u.session_id, &u.id),
                    )?;
                }
                tx.put_json(
                    catalog::UPLOADS,
                    &record_key(&u.host_id, &u.session_id, &u.id),
                    &current,
                )?;
                Ok::<_, UploadError>(Appended {
                    upload: current,
                    duplicate: false,
                })
            })
        })
        .await
    }

    /// Removes an incomplete upload and its chunks (tus termination). A
    /// complete upload is evidence and stays.
    pub async fn terminate(
        &self,
        host: &str,
        session: &str,
        id: &str,
        by: &str,
        now: u64,
    ) -> Result<(), UploadError> {
        let _one_at_a_time = self.lock_for(id).lock().await;
        let (h, s, i, by) = (
            host.to_string(),
            session.to_string(),
            id.to_string(),
            by.to_string(),
        );
        let chunks = self
            .blocking(move |store| {
                store.write(|tx| {
                    let u = load(tx, &h, &s, &i)?;
                    if u.is_complete() {
                        return Err(ProctoringError::Conflict(
                            "a complete upload is evidence and cannot be deleted".into(),
                        )
                        .into());
                    }
                    remove(tx, &u, "terminated", &by, now)
                })
            })
            .await?;
        self.delete_objects(&chunks).await;
        Ok(())
    }

    /// Removes incomplete uploads whose time ran out; returns how many.
    pub async fn expire(&self, now: u64) -> Result<usize, UploadError> {
        let mut end = b"x/".to_vec();
        end.extend_from_slice(&now.to_be_bytes());
        end.push(0xff);
        let due = self
            .blocking(move |store| {
                Ok(store.scan(
                    catalog::UPLOADS,
                    &Scan::bounds(
                        Bound::Included(b"x/".as_slice()),
                        Bound::Included(end.as_slice()),
                    )
                    .limit(500),
                )?)
            })
            .await?;
        let mut removed = 0;
        for (k, _) in due {
            let rest = String::from_utf8_lossy(k.get(10..).unwrap_or_default()).to_string();
            let mut parts = rest.splitn(3, '\0');
            let (Some(h), Some(s), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let _one_at_a_time = self.lock_for(i).lock().await;
            let (h, s, i, key) = (h.to_string(), s.to_string(), i.to_string(), k.clone());
            let chunks = self
                .blocking(move |store| {
                    store.write(|tx| {
                        tx.delete(catalog::UPLOADS, &key)?;
                        match tx.get_json::<Upload>(catalog::UPLOADS, &record_key(&h, &s, &i))? {
                            Some(u) if !u.is_complete() && u.expires_at <= now => {
                                remove(tx, &u, "expired", "invigil", now)
                            }
                            _ => Ok(Vec::new()),
                        }
                    })
                })
                .await?;
            if !chunks.is_empty() {
                removed += 1;
            }
            self.delete_objects(&chunks).await;
        }
        Ok(removed)
    }

    async fn delete_objects(&self, chunks: &[Chunk]) {
        for c in chunks {
            if let Err(e) = self.objects.delete(&c.object).await {
                tracing::warn!(object = c.object, "removing an upload's chunk failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
