//! The S3 backend: an `AmazonS3` store from a parsed [`S3Location`], and streaming
//! uploads to it.
//!
//! A streaming upload buffers until it has one part's worth of data; a body that ends
//! before that is sent as one plain PUT (one request instead of three). Longer bodies
//! become a multipart upload whose parts are sent as they fill, with a bounded number
//! in flight, so memory stays at a few parts whatever the body's size.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};

use super::{ObjectInfo, ObjectsError, S3Location};

/// Part size of multipart uploads: S3's minimum for every part but the last.
pub(super) const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploaded concurrently per upload; bounds memory to about this many parts.
const PARTS_IN_FLIGHT: usize = 4;

/// Builds the store. Plain http only when the URI said `http://`; path-style requests
/// because MinIO and most self-hosted S3 servers expect them.
pub(super) fn build(loc: &S3Location) -> Result<Arc<dyn ObjectStore>, ObjectsError> {
    let client = ClientOptions::new()
        .with_allow_http(loc.allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        // A 5 MiB part over a slow uplink needs more than the 30 s default.
        .with_timeout(Duration::from_secs(120));
    let retry = RetryConfig {
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(&loc.endpoint)
        .with_bucket_name(&loc.bucket)
        .with_region(&loc.region)
        .with_access_key_id(&loc.access_key_id)
        .with_secret_access_key(&loc.secret_access_key)
        .with_allow_http(loc.allow_http)
        .with_virtual_hosted_style_request(false)
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map_err(|e| ObjectsError::Backend(format!("configuring S3 store {loc}: {e}")))?;
    Ok(Arc::new(store))
}

enum State {
    /// Less than one part so far; nothing sent yet.
    Buffering { chunks: Vec<Bytes>, len: usize },
    /// A multipart upload is under way.
    Streaming(WriteMultipart),
    /// Finished, aborted or failed.
    Done,
}

/// A streaming upload to any `ObjectStore` with S3-style multipart semantics.
pub(super) struct RemoteUpload {
    store: Arc<dyn ObjectStore>,
    key: String,
    path: Path,
    size: u64,
    state: State,
}

impl std::fmt::Debug for RemoteUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteUpload")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl RemoteUpload {
    pub(super) fn new(store: Arc<dyn ObjectStore>, key: &str, path: Path) -> Self {
        RemoteUpload {
            store,
            key: key.to_string(),
            path,
            size: 0,
            state: State::Buffering {
                chunks: Vec::new(),
                len: 0,
            },
        }
    }

    pub(super) async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectsError> {
        self.size += chunk.len() as u64;
        let result = match &mut self.state {
            State::Buffering { chunks, len } => {
                *len += chunk.len();
                chunks.push(chunk);
                if *len >= PART_SIZE {
                    let chunks = std::mem::take(chunks);
                    self.start_multipart(chunks).await
                } else {
                    Ok(())
                }
            }
            State::Streaming(writer) => match writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                Ok(()) => {
                    writer.put(chunk);
                    Ok(())
                }
                Err(e) => Err(self.store_err("uploading a part of", e)),
            },
            State::Done => Err(ObjectsError::Backend(format!(
                "upload of `{}` already ended",
                self.key
            ))),
        };
        if result.is_err() {
            self.abort_in_place().await;
        }
        result
    }

    async fn start_multipart(&mut self, chunks: Vec<Bytes>) -> Result<(), ObjectsError> {
        let upload = self
            .store
            .put_multipart(&self.path)
            .await
            .map_err(|e| self.store_err("starting multipart upload of", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in chunks {
            writer.put(chunk);
        }
        self.state = State::Streaming(writer);
        Ok(())
    }

    pub(super) async fn finish(mut self) -> Result<ObjectInfo, ObjectsError> {
        let result = match std::mem::replace(&mut self.state, State::Done) {
            State::Buffering { chunks, .. } => {
                let payload: PutPayload = chunks.into_iter().collect();
                self.store.put(&self.path, payload).await
            }
            // `finish` aborts the multipart upload itself when completing fails.
            State::Streaming(writer) => writer.finish().await,
            State::Done => {
                return Err(ObjectsError::Backend(format!(
                    "upload of `{}` already ended",
                    self.key
                )));
            }
        };
        let put = result.map_err(|e| self.store_err("completing upload of", e))?;
        Ok(ObjectInfo {
            key: self.key.clone(),
            size: self.size,
            // S3 does not return the stored time on PUT; `head` has the server's value.
            last_modified: SystemTime::now(),
            e_tag: put.e_tag,
        })
    }

    pub(super) async fn abort(mut self) -> Result<(), ObjectsError> {
        if let State::Streaming(writer) = std::mem::replace(&mut self.state, State::Done) {
            writer
                .abort()
                .await
                .map_err(|e| self.store_err("aborting upload of", e))?;
        }
        Ok(())
    }

    async fn abort_in_place(&mut self) {
        if let State::Streaming(writer) = std::mem::replace(&mut self.state, State::Done) {
            // The original error is what matters to the caller; parts left behind by a
            // failed abort are invisible and expire with the bucket's lifecycle rules.
            let _ = writer.abort().await;
        }
    }

    fn store_err(&self, op: &str, e: object_store::Error) -> ObjectsError {
        ObjectsError::backend(op, &self.key, e)
    }
}

impl Drop for RemoteUpload {
    fn drop(&mut self) {
        // Dropped mid-way (caller gave up, request cancelled): release the uploaded parts.
        if let State::Streaming(writer) = std::mem::replace(&mut self.state, State::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}
