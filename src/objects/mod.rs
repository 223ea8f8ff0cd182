//! Evidence storage: exam recordings and snapshots, as objects under `/`-separated keys.
//!
//! [`Objects`] is the one handle the rest of invigil uses, over either a directory on
//! local disk (the default, `DATA_DIR/objects`) or an S3-compatible bucket (`MINIO_URI`).
//! `object_store` does the backend work; none of its types leak out of this module.
//!
//! Guarantees, on both backends:
//! - a `put` or a finished [`Upload`] is atomic (readers see the old object or the
//!   new one, never a part) and durable when it returns;
//! - an aborted or dropped upload leaves no visible object;
//! - `delete` is idempotent;
//! - keys are checked by [`validate_key`] before anything is touched.

mod error;
mod key;
mod local;
mod s3;
pub mod suite;
mod tiered;
mod uri;

#[cfg(test)]
mod crash_tests;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};

pub use error::ObjectsError;
pub use key::{MAX_KEY_LEN, MAX_SEGMENT_LEN, validate_key};
pub use tiered::{Copied, Pace, Where};
pub use uri::{DEFAULT_REGION, S3Location, parse_minio_uri};

use key::{store_path, validate_prefix};

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// Changes whenever the content changes; opaque, compare for equality only.
    pub e_tag: Option<String>,
}

impl ObjectInfo {
    fn from_meta(meta: ObjectMeta) -> Self {
        ObjectInfo {
            key: meta.location.to_string(),
            size: meta.size,
            last_modified: meta.last_modified.into(),
            e_tag: meta.e_tag,
        }
    }
}

/// Handle to the object store; cheap to clone, shareable across tasks.
///
/// It may hold two tiers: every write goes to the hot one, and reads find an
/// object in either (see `tiered.rs`, the one place that resolves a key to its tier).
#[derive(Clone)]
pub struct Objects {
    hot: Arc<Tier>,
    cold: Option<Arc<Tier>>,
}

/// One backend: a directory or a bucket.
struct Tier {
    /// Reads, heads and listings on either backend.
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

enum Backend {
    /// Writes and deletes bypass `store` to make them durable (see `local.rs`).
    Local(Arc<local::LocalDisk>),
    S3(S3Location),
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Local(disk) => write!(f, "local {}", disk.root().display()),
            Backend::S3(loc) => write!(f, "s3 {loc}"),
        }
    }
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.describe())
    }
}

impl Objects {
    /// Where the objects live, for status pages (no credentials).
    pub fn describe(&self) -> String {
        match &self.cold {
            None => self.hot.to_string(),
            Some(cold) => format!("{}, cold {cold}", self.hot),
        }
    }

    fn single(tier: Tier) -> Objects {
        Objects {
            hot: Arc::new(tier),
            cold: None,
        }
    }

    /// Objects stored as files under `root`, which is created if missing.
    pub fn local(root: impl AsRef<Path>) -> Result<Objects, ObjectsError> {
        let (disk, fs) = local::LocalDisk::open(root.as_ref())?;
        Ok(Objects::single(Tier {
            store: fs,
            backend: Backend::Local(Arc::new(disk)),
        }))
    }

    /// Objects stored in an S3-compatible bucket. No request is made until first use.
    pub fn s3(location: &S3Location) -> Result<Objects, ObjectsError> {
        Ok(Objects::single(Tier {
            store: s3::build(location)?,
            backend: Backend::S3(location.clone()),
        }))
    }

    /// [`Objects::s3`] from a `MINIO_URI` value.
    pub fn from_minio_uri(uri: &str) -> Result<Objects, ObjectsError> {
        Objects::s3(&parse_minio_uri(uri)?)
    }

    /// Stores `data` under `key` in the hot tier, replacing any previous object.
    /// Atomic, and durable when it returns.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<ObjectInfo, ObjectsError> {
        self.hot.put(key, data).await
    }

    /// Starts a streaming upload to `key` in the hot tier: write chunks as they
    /// arrive, then [`Upload::finish`]. Nothing is visible under `key` until then.
    pub async fn upload(&self, key: &str) -> Result<Upload, ObjectsError> {
        self.hot.upload(key).await
    }

    /// Stores a body of any size from a stream of chunks, without holding it in memory.
    /// If the stream fails, nothing is stored and the error is [`ObjectsError::Body`].
    pub async fn put_stream<S, E>(&self, key: &str, body: S) -> Result<ObjectInfo, ObjectsError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut upload = self.upload(key).await?;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let step = match chunk {
                Ok(chunk) => upload.write(chunk).await,
                Err(e) => Err(ObjectsError::Body {
                    key: key.to_string(),
                    source: e.into(),
                }),
            };
            if let Err(e) = step {
                // The caller's error is the one to report; the upload is discarded either way.
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await
    }
}

/// The operations of one tier; [`Objects`] combines them across tiers.
impl Tier {
    /// Stores `data` under `key`, replacing any previous object. Atomic, and durable
    /// when it returns.
    async fn put(&self, key: &str, data: Bytes) -> Result<ObjectInfo, ObjectsError> {
        match &self.backend {
            Backend::Local(disk) => disk.put(key, data).await,
            Backend::S3(_) => {
                let path = store_path(key)?;
                let size = data.len() as u64;
                let put = self
                    .store
                    .put(&path, data.into())
                    .await
                    .map_err(|e| ObjectsError::backend("storing", key, e))?;
                Ok(ObjectInfo {
                    key: key.to_string(),
                    size,
                    // S3 does not return the stored time on PUT; `head` has it.
                    last_modified: SystemTime::now(),
                    e_tag: put.e_tag,
                })
            }
        }
    }

    /// Starts a streaming upload to `key`: write chunks as they arrive, then
    /// [`Upload::finish`]. Nothing is visible under `key` until then.
    async fn upload(&self, key: &str) -> Result<Upload, ObjectsError> {
        let state = match &self.backend {
            Backend::Local(disk) => UploadState::Local(disk.start_upload(key).await?),
            Backend::S3(_) => UploadState::Remote(s3::RemoteUpload::new(
                Arc::clone(&self.store),
                key,
                store_path(key)?,
            )),
        };
        Ok(Upload { state })
    }

    /// The whole object.
    async fn get(&self, key: &str) -> Result<Bytes, ObjectsError> {
        let path = store_path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| ObjectsError::from_store("reading", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| ObjectsError::from_store("reading", key, e))
    }

    /// Bytes `range.start..range.end` of the object. The range must lie within the
    /// object (`start <= end <= size`), else [`ObjectsError::RangeNotSatisfiable`];
    /// an empty range within it gives empty bytes.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectsError> {
        let path = store_path(key)?;
        let unsatisfiable = |size| ObjectsError::RangeNotSatisfiable {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        };
        if range.start >= range.end {
            // Backends reject empty ranges; answer from the size alone.
            let info = self.head(key).await?;
            return if range.start == range.end && range.end <= info.size {
                Ok(Bytes::new())
            } else {
                Err(unsatisfiable(info.size))
            };
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            // Backends clamp a range that runs past the end; we refuse it instead, so a
            // caller never mistakes a short read for the bytes it asked for.
            Ok(result) if result.range != range => Err(unsatisfiable(result.meta.size)),
            Ok(result) => result
                .bytes()
                .await
                .map_err(|e| ObjectsError::from_store("reading", key, e)),
            Err(e) => match ObjectsError::from_store("reading a range of", key, e) {
                ObjectsError::NotFound { key } => Err(ObjectsError::NotFound { key }),
                // A start past the end is an error from the backend; tell it apart from
                // a real failure by the size.
                other => match self.head(key).await {
                    Ok(info) if range.end > info.size => Err(unsatisfiable(info.size)),
                    _ => Err(other),
                },
            },
        }
    }

    /// Size, time and e-tag of the object.
    async fn head(&self, key: &str) -> Result<ObjectInfo, ObjectsError> {
        let path = store_path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| ObjectsError::from_store("inspecting", key, e))?;
        Ok(ObjectInfo::from_meta(meta))
    }

    /// All objects under `prefix`, sorted by key. The prefix matches whole segments:
    /// `exam1` lists `exam1/a` but not `exam10/a`, nor an object named `exam1` itself.
    /// An empty prefix lists everything.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        validate_prefix(prefix)?;
        let path = (!prefix.is_empty())
            .then(|| store_path(prefix))
            .transpose()?;
        let metas: Vec<ObjectMeta> = self
            .store
            .list(path.as_ref())
            .try_collect()
            .await
            .map_err(|e| ObjectsError::Backend(format!("listing `{prefix}` failed: {e}")))?;
        let mut infos: Vec<ObjectInfo> = metas.into_iter().map(ObjectInfo::from_meta).collect();
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(infos)
    }

    /// Removes the object; succeeds if it was already gone. Durable when it returns.
    async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        match &self.backend {
            Backend::Local(disk) => disk.delete(key).await,
            Backend::S3(_) => {
                let path = store_path(key)?;
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(ObjectsError::backend("deleting", key, e)),
                }
            }
        }
    }
}

/// The object storage a configuration names: `MINIO_URI` or `DATA_DIR/objects`,
/// with the cold tier (`COLD_DIR` or `COLD_URI`) behind it when one is set.
pub fn open(config: &crate::config::Config) -> Result<Objects, ObjectsError> {
    let hot = match &config.minio_uri {
        Some(uri) => Objects::from_minio_uri(uri.expose())?,
        None => Objects::local(config.data_dir.join("objects"))?,
    };
    Ok(match &config.cold {
        None => hot,
        Some(crate::config::ColdTier::Dir(dir)) => hot.with_cold(Objects::local(dir)?),
        Some(crate::config::ColdTier::Uri(uri)) => {
            hot.with_cold(Objects::from_minio_uri(uri.expose())?)
        }
    })
}

/// A streaming upload started by [`Objects::upload`].
///
/// Dropping it without [`Upload::finish`] discards what was written.
#[derive(Debug)]
pub struct Upload {
    state: UploadState,
}

#[derive(Debug)]
enum UploadState {
    Local(local::LocalUpload),
    Remote(s3::RemoteUpload),
}

impl Upload {
    /// Appends a chunk. Large bodies are sent in parts as they fill, so memory use stays
    /// bounded whatever the total size.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectsError> {
        match &mut self.state {
            UploadState::Local(upload) => upload.write(chunk).await,
            UploadState::Remote(upload) => upload.write(chunk).await,
        }
    }

    /// Makes the object visible under its key, atomically and durably.
    pub async fn finish(self) -> Result<ObjectInfo, ObjectsError> {
        match self.state {
            UploadState::Local(upload) => upload.finish().await,
            UploadState::Remote(upload) => upload.finish().await,
        }
    }

    /// Discards the upload; nothing becomes visible.
    pub async fn abort(self) -> Result<(), ObjectsError> {
        match self.state {
            UploadState::Local(upload) => upload.abort().await,
            UploadState::Remote(upload) => upload.abort().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn handle_is_send_sync_clone() {
        assert_send_sync_clone::<Objects>();
        fn assert_send<T: Send>() {}
        assert_send::<Upload>();
    }

    /// Web handlers need `Send` futures; this only has to compile.
    #[test]
    fn futures_are_send() {
        fn assert_send<F: std::future::Future + Send>(_: F) {}
        let Ok(objects) = Objects::from_minio_uri("http://k:s@127.0.0.1:9/bucket") else {
            panic!("configured");
        };
        let body = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        assert_send(objects.put_stream("k", body));
        assert_send(objects.put("k", Bytes::new()));
        assert_send(objects.get("k"));
        assert_send(objects.get_range("k", 0..1));
        assert_send(objects.list(""));
        assert_send(objects.delete("k"));
        assert_send(objects.upload("k"));
        assert_send(async {
            if let Ok(mut upload) = objects.upload("k").await {
                let _ = upload.write(Bytes::new()).await;
                let _ = upload.finish().await;
            }
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = Objects::local(dir.path().join("objects")).expect("open local store");
        suite::run(&objects, "suite").await;
    }

    #[tokio::test]
    async fn local_store_survives_reopen_and_creates_nested_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a/b/objects");
        let objects = Objects::local(&root).expect("open");
        objects
            .put("x/y", Bytes::from_static(b"hello"))
            .await
            .expect("put");
        drop(objects);
        let objects = Objects::local(&root).expect("reopen");
        assert_eq!(objects.get("x/y").await.expect("get"), "hello");
        assert!(format!("{objects:?}").starts_with("Objects(local "));
    }

    #[tokio::test]
    async fn local_object_cannot_be_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = Objects::local(dir.path()).expect("open");
        objects
            .put("a", Bytes::from_static(b"1"))
            .await
            .expect("put a");
        let err = objects
            .put("a/b", Bytes::from_static(b"2"))
            .await
            .expect_err("a is a file");
        assert!(err.to_string().contains("`a/b`"), "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");
        // Not an object, so deleting it is a no-op.
        objects.delete("a/b").await.expect("idempotent delete");
        assert_eq!(objects.get("a").await.expect("a is intact"), "1");
    }

    #[test]
    fn s3_handle_from_uri_does_no_io() {
        let objects =
            Objects::from_minio_uri("http://k:secret@127.0.0.1:9/bucket").expect("configured");
        let shown = format!("{objects:?}");
        assert!(shown.contains("127.0.0.1:9/bucket"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
