//! The recognition pool: a rayon pool of `THREADS` workers in front of one
//! shared [`Recognizer`], with a bounded number of jobs in flight. When the
//! bound is reached a job is refused at once with [`RecognizeError::Busy`]
//! (HTTP 429 later), so callers such as the live hub never wait on it.

use super::Recognizer;
use super::error::{RecognizeError, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Pool {
    pool: rayon::ThreadPool,
    recognizer: Arc<Recognizer>,
    in_flight: Arc<AtomicUsize>,
    limit: usize,
}

/// Releases a job's slot when the job ends, panics included.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// `threads` workers; at most `limit` jobs running or waiting (at least
    /// one per worker).
    pub fn new(recognizer: Arc<Recognizer>, threads: usize, limit: usize) -> Result<Self> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("recognize-{i}"))
            .build()
            .map_err(|e| RecognizeError::Model {
                model: "pool",
                message: format!("cannot start {threads} recognition threads: {e}"),
            })?;
        Ok(Pool {
            pool,
            recognizer,
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit: limit.max(threads),
        })
    }

    /// Jobs running or waiting now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn reserve(&self) -> Result<Slot> {
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current >= self.limit {
                return Err(RecognizeError::Busy {
                    queued: current,
                    limit: self.limit,
                });
            }
            match self.in_flight.compare_exchange(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Slot(Arc::clone(&self.in_flight))),
                Err(now) => current = now,
            }
        }
    }

    /// Queues `job`; its result arrives on the returned channel. Refused with
    /// `Busy` when the pool is full.
    pub fn submit<T, F>(&self, job: F) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Recognizer) -> Result<T> + Send + 'static,
    {
        let slot = self.reserve()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let recognizer = Arc::clone(&self.recognizer);
        self.pool.spawn(move || {
            let result = job(&recognizer);
            // The slot is free before the caller hears back, so a caller
            // that submits again right after its answer is not refused.
            drop(slot);
            // The receiver may have given up; the result is then dropped.
            let _ = tx.send(result);
        });
        Ok(rx)
    }

    /// Runs `job` on the pool and waits for it (for the CLI and benchmarks).
    pub fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(&Recognizer) -> Result<T> + Send,
    {
        let _slot = self.reserve()?;
        self.pool.install(|| job(&self.recognizer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_full_pool_refuses_work_and_recovers() {
        let recognizer = Arc::new(Recognizer::embedded().expect("models"));
        let pool = Pool::new(recognizer, 1, 1).expect("pool");
        let (release, wait) = mpsc::channel::<()>();
        let first = pool
            .submit(move |_| {
                wait.recv().map_err(|e| RecognizeError::Model {
                    model: "test",
                    message: e.to_string(),
                })
            })
            .expect("first job is accepted");
        assert_eq!(pool.in_flight(), 1);
        match pool.submit(|_| Ok(())) {
            Err(RecognizeError::Busy { queued, limit }) => assert_eq!((queued, limit), (1, 1)),
            Err(other) => panic!("expected Busy, got {other}"),
            Ok(_) => panic!("a full pool accepted a job"),
        }
        assert!(matches!(
            pool.run(|_| Ok(())),
            Err(RecognizeError::Busy { .. })
        ));
        release.send(()).expect("release the first job");
        first
            .blocking_recv()
            .expect("result delivered")
            .expect("first job ok");
        // The slot is given back when the job ends.
        while pool.in_flight() > 0 {
            std::thread::yield_now();
        }
        let frame = image::RgbImage::from_pixel(320, 240, image::Rgb([100, 100, 100]));
        let presence = pool
            .run(move |r| r.presence(&frame))
            .expect("pool accepts work again");
        assert!(presence.no_face);
    }
}
