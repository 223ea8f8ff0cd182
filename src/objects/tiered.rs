//! Hot and cold tiers: the one place that resolves a key to the tier holding it.
//!
//! New objects are written to the hot tier. The tier mover copies old ones to the
//! cold tier ([`Objects::copy_to_cold`]), records the move, then deletes the hot
//! copy ([`Objects::drop_hot`]). At every step of that order at least one tier
//! holds the complete object, so a read that misses the hot tier looks in the
//! cold one and always finds it — whole, by range or by listing.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{ObjectInfo, Objects, ObjectsError, Tier};

/// Bytes read or written per request while moving an object, so memory stays
/// bounded and the rate limit acts in small steps.
const PIECE: u64 = 1 << 20;

/// Which tier holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Hot,
    Cold,
}

/// What a verified copy to the cold tier found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub size: u64,
    /// SHA-256 of the bytes read from the hot tier, equal to that of the cold copy.
    pub sha256: String,
}

/// Spreads moves over time: at most `bytes_per_sec` on average since the start,
/// so moving old evidence never takes the disk or network from live exams.
#[derive(Debug)]
pub struct Pace {
    bytes_per_sec: u64,
    started: Instant,
    done: u64,
}

impl Pace {
    pub fn new(bytes_per_sec: u64) -> Pace {
        Pace {
            bytes_per_sec: bytes_per_sec.max(1),
            started: Instant::now(),
            done: 0,
        }
    }

    /// Counts `n` bytes and sleeps until the average is back under the rate.
    pub async fn take(&mut self, n: u64) {
        self.done += n;
        let due = Duration::from_secs_f64(self.done as f64 / self.bytes_per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

impl Objects {
    /// These objects with a cold tier behind them.
    pub fn with_cold(self, cold: Objects) -> Objects {
        Objects {
            hot: self.hot,
            cold: Some(cold.hot),
        }
    }

    /// The hot tier alone.
    pub fn hot(&self) -> Objects {
        Objects {
            hot: Arc::clone(&self.hot),
            cold: None,
        }
    }

    /// The cold tier alone, if there is one.
    pub fn cold(&self) -> Option<Objects> {
        self.cold.as_ref().map(|cold| Objects {
            hot: Arc::clone(cold),
            cold: None,
        })
    }

    /// Runs a read on the hot tier, then on the cold one if the hot tier does not
    /// have the key. A move deletes the hot copy only once the cold one is
    /// complete, so a read racing a move still finds the object.
    async fn resolve<'a, T, F, Fut>(&'a self, key: &str, read: F) -> Result<T, ObjectsError>
    where
        F: Fn(&'a Tier) -> Fut,
        Fut: Future<Output = Result<T, ObjectsError>>,
    {
        match (read(&self.hot).await, &self.cold) {
            (Err(ObjectsError::NotFound { .. }), Some(cold)) => match read(cold).await {
                Err(ObjectsError::NotFound { .. }) => Err(ObjectsError::NotFound {
                    key: key.to_string(),
                }),
                other => other,
            },
            (result, _) => result,
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectsError> {
        self.resolve(key, |t| t.get(key)).await
    }

    /// Bytes `range.start..range.end` of the object. The range must lie within the
    /// object (`start <= end <= size`), else [`ObjectsError::RangeNotSatisfiable`];
    /// an empty range within it gives empty bytes.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectsError> {
        self.resolve(key, |t| t.get_range(key, range.clone())).await
    }

    /// Size, time and e-tag of the object.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, ObjectsError> {
        self.resolve(key, |t| t.head(key)).await
    }

    /// Whether an object exists under `key`, in either tier.
    pub async fn exists(&self, key: &str) -> Result<bool, ObjectsError> {
        Ok(self.locate(key).await?.is_some())
    }

    /// Which tier holds the object (the hot one while both do).
    pub async fn locate(&self, key: &str) -> Result<Option<Where>, ObjectsError> {
        let found = |r: Result<ObjectInfo, ObjectsError>| match r {
            Ok(_) => Ok(true),
            Err(ObjectsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        };
        if found(self.hot.head(key).await)? {
            return Ok(Some(Where::Hot));
        }
        match &self.cold {
            Some(cold) if found(cold.head(key).await)? => Ok(Some(Where::Cold)),
            _ => Ok(None),
        }
    }

    /// All objects under `prefix` in either tier, sorted by key, each once. The
    /// prefix matches whole segments: `exam1` lists `exam1/a` but not `exam10/a`,
    /// nor an object named `exam1` itself. An empty prefix lists everything.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        let mut all = self.hot.list(prefix).await?;
        if let Some(cold) = &self.cold {
            let hot: std::collections::HashSet<String> =
                all.iter().map(|o| o.key.clone()).collect();
            all.extend(
                cold.list(prefix)
                    .await?
                    .into_iter()
                    .filter(|o| !hot.contains(&o.key)),
            );
            all.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(all)
    }

    /// Removes the object from both tiers; succeeds if it was already gone.
    /// Durable when it returns.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        self.hot.delete(key).await?;
        match &self.cold {
            Some(cold) => cold.delete(key).await,
            None => Ok(()),
        }
    }

    /// Copies the hot object `key` to the cold tier in pieces at `pace`, then reads
    /// the copy back and compares hashes. A copy that does not match is deleted
    /// and reported; the hot object is never touched here.
    pub async fn copy_to_cold(&self, key: &str, pace: &mut Pace) -> Result<Copied, ObjectsError> {
        let cold = self.cold.as_ref().ok_or_else(|| {
            ObjectsError::Backend(format!("moving `{key}`: no cold tier is configured"))
        })?;
        let size = self.hot.head(key).await?.size;
        let mut upload = cold.upload(key).await?;
        let mut source = Sha256::new();
        let mut at = 0;
        while at < size {
            let end = (at + PIECE).min(size);
            let piece = match self.hot.get_range(key, at..end).await {
                Ok(piece) => piece,
                Err(e) => {
                    let _ = upload.abort().await;
                    return Err(e);
                }
            };
            source.update(&piece);
            pace.take(piece.len() as u64).await;
            upload.write(piece).await?;
            at = end;
        }
        upload.finish().await?;
        let expected = hex::encode(source.finalize());
        let found = hash_of(cold, key, size, pace).await?;
        if found != expected {
            cold.delete(key).await?;
            return Err(ObjectsError::Mismatch {
                key: key.to_string(),
                expected,
                found,
            });
        }
        Ok(Copied {
            size,
            sha256: expected,
        })
    }

    /// SHA-256 of the object as the cold tier holds it.
    pub async fn cold_hash(&self, key: &str, pace: &mut Pace) -> Result<String, ObjectsError> {
        let cold = self.cold.as_ref().ok_or_else(|| ObjectsError::NotFound {
            key: key.to_string(),
        })?;
        let size = cold.head(key).await?.size;
        hash_of(cold, key, size, pace).await
    }

    /// Deletes the hot copy of a moved object. Call only once the cold copy is
    /// verified and recorded.
    pub async fn drop_hot(&self, key: &str) -> Result<(), ObjectsError> {
        self.hot.delete(key).await
    }

    /// Deletes the cold copy of an object (an unrecorded or unwanted copy).
    pub async fn drop_cold(&self, key: &str) -> Result<(), ObjectsError> {
        match &self.cold {
            Some(cold) => cold.delete(key).await,
            None => Ok(()),
        }
    }
}

async fn hash_of(
    tier: &Tier,
    key: &str,
    size: u64,
    pace: &mut Pace,
) -> Result<String, ObjectsError> {
    let mut h = Sha256::new();
    let mut at = 0;
    while at < size {
        let end = (at + PIECE).min(size);
        let piece = tier.get_range(key, at..end).await?;
        pace.take(piece.len() as u64).await;
        h.update(&piece);
        at = end;
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_tiers(dir: &std::path::Path) -> Objects {
        let hot = Objects::local(dir.join("hot")).expect("hot");
        let cold = Objects::local(dir.join("cold")).expect("cold");
        hot.with_cold(cold)
    }

    #[tokio::test]
    async fn reads_find_objects_in_either_tier_and_moves_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = two_tiers(dir.path());
        let body = super::super::suite::pattern(3 * PIECE as usize + 17, 9);
        objects.put("s/a", body.clone()).await.expect("put");
        objects
            .put("s/b", Bytes::from_static(b"stays hot"))
            .await
            .expect("put");
        let mut pace = Pace::new(u64::MAX);
        let copied = objects.copy_to_cold("s/a", &mut pace).await.expect("copy");
        assert_eq!(copied.size, body.len() as u64);
        assert_eq!(copied.sha256, hex::encode(Sha256::digest(&body)));
        // Both tiers hold it now: listed once, found hot.
        assert_eq!(objects.list("s").await.expect("list").len(), 2);
        assert_eq!(
            objects.locate("s/a").await.expect("locate"),
            Some(Where::Hot)
        );
        objects.drop_hot("s/a").await.expect("drop hot");
        assert_eq!(
            objects.locate("s/a").await.expect("locate"),
            Some(Where::Cold)
        );
        assert!(!objects.hot().exists("s/a").await.expect("hot"));
        assert_eq!(objects.get("s/a").await.expect("get"), body);
        let range = PIECE - 3..PIECE + 5;
        assert_eq!(
            objects
                .get_range("s/a", range.clone())
                .await
                .expect("range"),
            body.slice(range.start as usize..range.end as usize)
        );
        let past = objects
            .get_range("s/a", 0..body.len() as u64 + 1)
            .await
            .expect_err("past the end");
        assert!(
            matches!(past, ObjectsError::RangeNotSatisfiable { .. }),
            "{past}"
        );
        assert_eq!(objects.head("s/a").await.expect("head").size, copied.size);
        let keys: Vec<String> = objects
            .list("s")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["s/a", "s/b"]);
        assert_eq!(
            objects.cold_hash("s/a", &mut pace).await.expect("hash"),
            copied.sha256
        );
        // Deleting removes it from both tiers.
        objects.delete("s/a").await.expect("delete");
        assert!(!objects.exists("s/a").await.expect("exists"));
        let missing = objects.get("s/a").await.expect_err("gone");
        assert!(
            matches!(missing, ObjectsError::NotFound { .. }),
            "{missing}"
        );
        assert!(format!("{objects:?}").contains("cold local"));
    }

    /// Two tiers keep every promise of one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_suite_on_two_tiers() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::super::suite::run(&two_tiers(dir.path()), "suite").await;
    }

    #[tokio::test]
    async fn copy_without_a_cold_tier_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = Objects::local(dir.path()).expect("open");
        objects
            .put("k", Bytes::from_static(b"x"))
            .await
            .expect("put");
        let err = objects
            .copy_to_cold("k", &mut Pace::new(1 << 20))
            .await
            .expect_err("no cold tier");
        assert!(err.to_string().contains("no cold tier"), "{err}");
    }

    #[tokio::test]
    async fn pace_keeps_the_average_rate() {
        let mut pace = Pace::new(100_000);
        let start = Instant::now();
        for _ in 0..10 {
            pace.take(5_000).await;
        }
        // 50 kB at 100 kB/s: no sooner than half a second.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(490), "{waited:?}");
        // A rate nobody reaches never waits.
        let mut free = Pace::new(u64::MAX);
        let start = Instant::now();
        free.take(1 << 30).await;
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
