//! Webcam snapshots: checked from their header before anything is decoded (a
//! pixel bomb is refused, not decoded), then handed to recognition through a
//! bounded queue. A full queue never holds up an upload: the snapshot is
//! stored and acknowledged, its analysis is skipped and counted.

use super::ProctoringError;
use super::metrics::Metric;
use super::{identity, sessions};
use crate::recognize::{self, DecodeLimits, Embedding, Remote, RemoteError, Service};
use crate::store::Store;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Largest snapshot upload, in bytes: a webcam JPEG is a few hundred KiB.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// What a snapshot may declare: a webcam frame, with room for a 4K camera.
/// The decoded size is what bounds memory: a 4K JPEG (RGB, 24 MB) fits, a
/// 4K PNG with an alpha channel (33 MB) does not.
pub const LIMITS: DecodeLimits = DecodeLimits {
    max_side: 4096,
    max_pixels: 4096 * 2304,
    max_alloc: 24 * 1024 * 1024,
};

/// Decoded bytes that snapshot decodes may hold at once in the whole process
/// (upload checks and analysis alike): a few dozen KiB of PNG decode to tens
/// of MB, so concurrent uploads must not multiply that. An ordinary webcam
/// frame takes about 2 MB of it, so frames decode side by side on every
/// core; a frame near [`LIMITS`] takes all of it and decodes alone.
const DECODE_BUDGET: u64 = 32 * 1024 * 1024;

static BUDGET: Budget = Budget::new(DECODE_BUDGET);

fn decode(bytes: &[u8]) -> Result<image::RgbImage, recognize::RecognizeError> {
    let _held = BUDGET.take(decode_cost(bytes));
    recognize::decode(bytes, &LIMITS)
}

/// What decoding may hold, from the header alone: RGBA pixels and their RGB
/// copy. An unreadable header costs the whole budget (its decode fails fast).
fn decode_cost(bytes: &[u8]) -> u64 {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or(DECODE_BUDGET, |(w, h)| {
            (u64::from(w) * u64::from(h) * 7).min(DECODE_BUDGET)
        })
}

/// A counting semaphore over bytes, first come first served, so a large
/// frame is not overtaken forever by small ones.
struct Budget {
    state: std::sync::Mutex<BudgetState>,
    changed: std::sync::Condvar,
}

struct BudgetState {
    left: u64,
    next_ticket: u64,
    serving: u64,
}

struct Held {
    budget: &'static Budget,
    bytes: u64,
}

impl Budget {
    const fn new(bytes: u64) -> Budget {
        Budget {
            state: std::sync::Mutex::new(BudgetState {
                left: bytes,
                next_ticket: 0,
                serving: 0,
            }),
            changed: std::sync::Condvar::new(),
        }
    }

    fn take(&'static self, bytes: u64) -> Held {
        let lock = |s: &'static Budget| s.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = lock(self);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket || state.left < bytes {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.serving += 1;
        state.left -= bytes;
        drop(state);
        self.changed.notify_all();
        Held {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        state.left += self.bytes;
        drop(state);
        self.budget.changed.notify_all();
    }
}

/// Checks that `bytes` is an image within [`LIMITS`] that decodes completely;
/// returns its width and height. The size is checked from the header first,
/// so a small file declaring a huge canvas costs nothing.
pub fn inspect(bytes: &[u8]) -> Result<(u32, u32), ProctoringError> {
    let image =
        decode(bytes).map_err(|e| ProctoringError::invalid("snapshot", format!("refused: {e}")))?;
    Ok(image.dimensions())
}

/// One stored snapshot waiting for analysis.
#[derive(Debug, Clone)]
pub struct Job {
    pub host_id: String,
    pub session_id: String,
    pub upload_id: String,
    pub bytes: Bytes,
}

/// Counts faces in a snapshot; the recognizer in production, anything that
/// counts faces in tests of the queue.
pub trait SnapshotAnalyzer: Send + Sync + 'static {
    fn faces(&self, image: &[u8]) -> Result<usize, String>;

    /// The faces and, given the session's reference face, whether the main
    /// face is its person (c4); an analyzer that cannot embed says `None`.
    fn analyze(&self, image: &[u8], reference: Option<&Embedding>) -> Result<Analysis, String> {
        let _ = reference;
        Ok(Analysis {
            faces: self.faces(image)?,
            c4: None,
        })
    }
}

/// What one snapshot shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    pub faces: usize,
    /// c4 (see [`identity::c4_value`]); absent without a reference face or
    /// without a face in the snapshot.
    pub c4: Option<f64>,
}

/// The configured recognition: the `RECOGNIZER_URI` hosts when there are
/// any, else (and when none of them can take a snapshot) this process's
/// bounded pool on the configured engine. The models load on the first
/// local snapshot (an instance without webcams should not pay for them).
pub struct FaceCounter {
    service: Arc<Service>,
    remote: Option<Arc<Remote>>,
    /// The runtime that remote calls run on; `faces` is called off it.
    runtime: tokio::runtime::Handle,
}

impl FaceCounter {
    pub fn new(
        service: Arc<Service>,
        remote: Option<Arc<Remote>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        FaceCounter {
            service,
            remote,
            runtime,
        }
    }
}

impl SnapshotAnalyzer for FaceCounter {
    fn faces(&self, image: &[u8]) -> Result<usize, String> {
        if let Some(remote) = &self.remote {
            match self
                .runtime
                .block_on(remote.count_faces(Bytes::copy_from_slice(image)))
            {
                Ok(faces) => return Ok(faces),
                Err(e @ RemoteError::NoHost(_)) => {
                    tracing::info!("counting snapshot faces here: {e}");
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let decoded = decode(image).map_err(|e| e.to_string())?;
        // Through the bounded pool: when it is full the snapshot is counted
        // as not analysed rather than queued behind the live work.
        self.service
            .pool()
            .and_then(|pool| pool.run(|r| r.presence(&decoded)))
            .map(|p| p.faces)
            .map_err(|e| match e {
                recognize::RecognizeError::Busy { .. } => format!("skipped: {e}"),
                e => e.to_string(),
            })
    }

    /// With a reference face the main face's embedding is needed for c4,
    /// so the snapshot is analysed here, on the bounded pool; without one
    /// only the faces are counted, by the remote hosts when there are any.
    fn analyze(&self, image: &[u8], reference: Option<&Embedding>) -> Result<Analysis, String> {
        let Some(reference) = reference else {
            return Ok(Analysis {
                faces: self.faces(image)?,
                c4: None,
            });
        };
        let decoded = decode(image).map_err(|e| e.to_string())?;
        self.service
            .pool()
            .and_then(|pool| {
                pool.run(|r| {
                    let faces = r.detect(&decoded, recognize::Range::Near)?;
                    let c4 = match faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())) {
                        Some(main) => {
                            let crops = r.aligned(&decoded, std::slice::from_ref(main));
                            r.embed_aligned(&crops)?
                                .first()
                                .map(|e| identity::c4_value(reference, e))
                        }
                        None => None,
                    };
                    Ok(Analysis {
                        faces: faces.len(),
                        c4,
                    })
                })
            })
            .map_err(|e| match e {
                recognize::RecognizeError::Busy { .. } => format!("skipped: {e}"),
                e => e.to_string(),
            })
    }
}

/// The sending side of the analysis queue, with its counters.
pub struct Queue {
    tx: mpsc::Sender<Job>,
    stats: Arc<Stats>,
}

/// What happened to snapshots handed to the queue.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicU64,
    /// Not analysed because the queue was full (or the worker gone).
    pub skipped: AtomicU64,
    pub analyzed: AtomicU64,
    pub failed: AtomicU64,
}

/// A queue of `capacity` snapshots and its receiving end for [`run`].
pub fn queue(capacity: usize) -> (Queue, mpsc::Receiver<Job>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        Queue {
            tx,
            stats: Arc::default(),
        },
        rx,
    )
}

impl Queue {
    /// Hands a snapshot over without waiting; returns whether it was queued.
    pub fn offer(&self, job: Job) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                tracing::warn!(
                    session = job.session_id,
                    upload = job.upload_id,
                    "snapshot stored but not analysed: the recognition queue is full"
                );
                false
            }
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

/// The c2/c3 values one snapshot gives: c2 when no face is visible, c3 when
/// several are.
pub fn presence_values(faces: usize) -> BTreeMap<Metric, f64> {
    let flag = |b: bool| if b { 100.0 } else { 0.0 };
    BTreeMap::from([
        (Metric::C2, flag(faces == 0)),
        (Metric::C3, flag(faces > 1)),
    ])
}

/// The analysis worker: counts the faces of each queued snapshot and records
/// the result as a server-side metric period of the session (one period per
/// snapshot). Returns when `stop` resolves or the queue closes.
pub async fn run(
    mut rx: mpsc::Receiver<Job>,
    analyzer: Arc<dyn SnapshotAnalyzer>,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let job = tokio::select! {
            job = rx.recv() => match job { Some(j) => j, None => return },
            () = &mut stop => return,
        };
        let (analyzer, store) = (analyzer.clone(), store.clone());
        let session = job.session_id.clone();
        let done = tokio::task::spawn_blocking(move || {
            let reference = identity::reference(store.as_ref(), &job.host_id, &job.session_id)
                .map_err(|e| e.to_string())?;
            let analysis = analyzer.analyze(&job.bytes, reference.as_ref())?;
            let mut values = presence_values(analysis.faces);
            if let Some(c4) = analysis.c4 {
                values.insert(Metric::C4, c4);
            }
            sessions::add_period(
                store.as_ref(),
                &job.host_id,
                &job.session_id,
                "invigil",
                &values,
                crate::auth::now_secs(),
            )
            .map_err(|e| e.to_string())?;
            Ok::<_, String>(analysis.faces)
        })
        .await;
        match done {
            Ok(Ok(faces)) => {
                stats.analyzed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(session, faces, "snapshot analysed");
            }
            Ok(Err(e)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session, "snapshot not analysed: {e}");
            }
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A PNG declaring 50000×50000 pixels in a few dozen bytes (a valid
/// header and CRCs, no pixel data), shared with the integration tests.
#[cfg(test)]
pub(crate) fn pixel_bomb() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/images/pixel-bomb-50000x50000.png"
    ))
    .expect("committed test image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decode_budget_lets_small_frames_share_it_and_a_large_one_wait_its_turn() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10)));
        let a = budget.take(4);
        let b = budget.take(4);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let all = budget.take(10);
            tx.send(()).unwrap();
            drop(all);
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(a);
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(b);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
        // A 640×480 frame costs a few MB; an unreadable header the whole budget.
        let frame = image::RgbImage::new(640, 480);
        let mut jpeg = Vec::new();
        frame
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        assert_eq!(decode_cost(&jpeg), 640 * 480 * 7);
        assert_eq!(decode_cost(b"not an image"), DECODE_BUDGET);
    }

    #[test]
    fn a_pixel_bomb_is_refused_from_its_header() {
        let err = inspect(&pixel_bomb()).unwrap_err().to_string();
        assert!(err.contains("50000×50000"), "{err}");
        assert!(err.starts_with("snapshot: refused"), "{err}");
        let err = inspect(b"not an image").unwrap_err().to_string();
        assert!(err.contains("not a supported image"), "{err}");
    }

    #[test]
    fn a_png_that_decodes_past_the_memory_limit_is_refused_from_its_header() {
        use image::ImageEncoder;
        // 3840×2160 with alpha: 33 MB decoded from a few KiB.
        let (w, h) = (3840, 2160);
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new_with_quality(
            &mut png,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::NoFilter,
        )
        .write_image(
            &vec![0; w * h * 4],
            w as u32,
            h as u32,
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
        let err = inspect(&png).unwrap_err().to_string();
        assert!(
            err.contains("33177600") && err.contains("25165824"),
            "{err}"
        );
    }

    #[test]
    fn a_real_jpeg_passes() {
        let photo = std::fs::read("tests/data/faces/portrait.jpg").unwrap();
        let (w, h) = inspect(&photo).unwrap();
        assert!(w > 16 && h > 16);
    }

    #[test]
    fn presence_maps_to_c2_and_c3() {
        assert_eq!(presence_values(0)[&Metric::C2], 100.0);
        assert_eq!(presence_values(1)[&Metric::C2], 0.0);
        assert_eq!(presence_values(1)[&Metric::C3], 0.0);
        assert_eq!(presence_values(3)[&Metric::C3], 100.0);
    }

    #[test]
    fn a_full_queue_skips_and_counts() {
        let (q, _rx) = queue(1);
        let job = Job {
            host_id: "h".into(),
            session_id: "s".into(),
            upload_id: "u".into(),
            bytes: Bytes::new(),
        };
        assert!(q.offer(job.clone()));
        assert!(!q.offer(job));
        let stats = q.stats();
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
        assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);
    }
}
