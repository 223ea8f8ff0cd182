//! One connection's outgoing queue. Fan-out pushes here and never waits on a
//! client, so a slow client cannot stall a room. Frames that must arrive
//! (chat, actions, status, signaling, presence, answers) are queued up to a
//! bound; past it the connection is closed as too slow and the client
//! resumes from its last sequence number. Live metrics keep only the latest
//! frame per session.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Why an outbox stopped taking frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// More reliable frames queued than the bound: the client is too slow.
    Overflow,
    /// The connection ended.
    Done,
}

/// The next thing for the writer to do.
#[derive(Debug, PartialEq)]
pub enum Next<F> {
    Frame(F),
    Closed(Closed),
}

struct State<F> {
    queue: VecDeque<F>,
    metrics: BTreeMap<String, F>,
    closed: Option<Closed>,
}

/// A bounded queue with a coalescing lane for live metrics.
pub struct Outbox<F> {
    state: Mutex<State<F>>,
    ready: Notify,
    dead: Notify,
    bound: usize,
}

impl<F> Outbox<F> {
    pub fn new(bound: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                metrics: BTreeMap::new(),
                closed: None,
            }),
            ready: Notify::new(),
            dead: Notify::new(),
            bound,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<F>> {
        // A panic elsewhere while holding the lock leaves the queue usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame that must not be dropped. Returns false when the
    /// outbox is closed, or closes it now because the bound is reached.
    pub fn push(&self, frame: F) -> bool {
        let mut s = self.state();
        if s.closed.is_some() {
            return false;
        }
        if s.queue.len() >= self.bound {
            s.closed = Some(Closed::Overflow);
            s.queue.clear();
            s.metrics.clear();
            drop(s);
            self.ready.notify_one();
            self.dead.notify_one();
            return false;
        }
        s.queue.push_back(frame);
        drop(s);
        self.ready.notify_one();
        true
    }

    /// Sets the latest live-metrics frame of a session, replacing one not yet sent.
    pub fn push_latest(&self, session: &str, frame: F) {
        let mut s = self.state();
        if s.closed.is_some() {
            return;
        }
        s.metrics.insert(session.to_string(), frame);
        drop(s);
        self.ready.notify_one();
    }

    /// Ends the outbox; the writer sees [`Next::Closed`] once the queue is sent.
    pub fn close(&self) {
        let mut s = self.state();
        if s.closed.is_none() {
            s.closed = Some(Closed::Done);
        }
        drop(s);
        self.ready.notify_one();
        self.dead.notify_one();
    }

    fn take(&self) -> Option<Next<F>> {
        let mut s = self.state();
        if s.closed == Some(Closed::Overflow) {
            return Some(Next::Closed(Closed::Overflow));
        }
        if let Some(f) = s.queue.pop_front() {
            return Some(Next::Frame(f));
        }
        if let Some((_, f)) = s.metrics.pop_first() {
            return Some(Next::Frame(f));
        }
        s.closed.map(Next::Closed)
    }

    /// The next frame to send: reliable frames first, then live metrics.
    pub async fn next(&self) -> Next<F> {
        loop {
            if let Some(n) = self.take() {
                return n;
            }
            self.ready.notified().await;
        }
    }

    /// Resolves when the outbox overflowed or was closed, so a connection
    /// whose writer is stuck on a client that does not read can be torn down.
    pub async fn dead(&self) -> Closed {
        loop {
            if let Some(c) = self.state().closed {
                return c;
            }
            self.dead.notified().await;
        }
    }

    /// Reliable frames and metrics frames waiting.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.state();
        (s.queue.len(), s.metrics.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now<F>(o: &Outbox<F>) -> Option<Next<F>> {
        o.take()
    }

    #[test]
    fn reliable_frames_keep_order_and_metrics_coalesce_per_session() {
        let o = Outbox::new(10);
        for m in 1..=5 {
            o.push_latest("s1", format!("m{m}"));
        }
        o.push_latest("s2", "other".to_string());
        assert!(o.push("chat1".to_string()));
        assert!(o.push("chat2".to_string()));
        assert_eq!(o.depth(), (2, 2));
        let sent: Vec<_> = std::iter::from_fn(|| match now(&o) {
            Some(Next::Frame(f)) => Some(f),
            _ => None,
        })
        .collect();
        assert_eq!(sent, ["chat1", "chat2", "m5", "other"]);
    }

    #[test]
    fn overflow_closes_instead_of_dropping() {
        let o = Outbox::new(3);
        for i in 0..3 {
            assert!(o.push(i));
        }
        assert!(!o.push(3), "the fourth reliable frame closes the outbox");
        assert_eq!(now(&o), Some(Next::Closed(Closed::Overflow)));
        assert!(!o.push(4));
        assert_eq!(o.depth(), (0, 0), "nothing is kept for a dead connection");
    }

    #[tokio::test]
    async fn close_drains_then_ends_and_wakes_the_watchers() {
        let o = std::sync::Arc::new(Outbox::new(3));
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { o.dead().await })
        };
        assert!(o.push("last"));
        o.close();
        assert_eq!(o.next().await, Next::Frame("last"));
        assert_eq!(o.next().await, Next::Closed(Closed::Done));
        assert_eq!(waiter.await.unwrap(), Closed::Done);
        let o2 = std::sync::Arc::new(Outbox::<u8>::new(1));
        let writer = {
            let o2 = o2.clone();
            tokio::spawn(async move { o2.next().await })
        };
        tokio::task::yield_now().await;
        o2.push(9);
        assert_eq!(
            writer.await.unwrap(),
            Next::Frame(9),
            "a waiting writer wakes"
        );
    }
}
