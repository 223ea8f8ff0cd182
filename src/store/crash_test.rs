//! Crash test: a child process commits transactions in a loop and is killed
//! with SIGKILL at a random moment; every write it acknowledged must be on
//! disk afterwards, and every transaction must be all there or not at all.
//! Writer threads commit beside the main loop, so commits grouped under one
//! fsync are part of the test.
//!
//! The child is this same test binary, running the ignored `crash_child`
//! test, so no extra binary has to be built.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::catalog::{AUDIT, HOSTS, META, USERS};
use super::{RedbStore, Scan, Store, StoreError};

/// Carries the database path to the child; the child does nothing without it.
const DB_ENV: &str = "INVIGIL_STORE_CRASH_DB";
const ITERATIONS: usize = 100;
const COUNTER_KEY: &[u8] = b"crash_counter";
const PREFIX: &[u8] = b"crash/";
/// AUDIT keeps only the newest this-many counters, so deletes (and page
/// reuse) are part of every transaction.
const WINDOW: u64 = 20;
/// Marks acknowledgement lines; searched anywhere in a line because the test
/// harness prints the test name without a newline before the test runs.
const ACK: &str = "crash-ack ";
/// Writer threads beside the main loop, each with its own numbered keys.
const GROUP_THREADS: u64 = 3;
const GROUP_ACK: &str = "crash-group ";
const GROUP_PREFIX: &[u8] = b"group/";

fn group_key(thread: u64, n: u64) -> Vec<u8> {
    [GROUP_PREFIX, &thread.to_be_bytes(), &n.to_be_bytes()].concat()
}

/// The numbers thread `t` has committed, in key order.
fn group_numbers(store: &dyn Store, thread: u64) -> Vec<u64> {
    let prefix = [GROUP_PREFIX, &thread.to_be_bytes()].concat();
    store
        .scan(HOSTS, &Scan::prefix(&prefix))
        .expect("scan group keys")
        .iter()
        .map(|(k, _)| u64::from_be_bytes(k[prefix.len()..].try_into().expect("8-byte number")))
        .collect()
}

fn key(n: u64) -> Vec<u8> {
    [PREFIX, &n.to_be_bytes()].concat()
}

/// A value whose content and length both depend on `n` and the tree, so a
/// stale or torn value cannot pass for the right one.
fn value(n: u64, salt: u8) -> Vec<u8> {
    let len = 8 + (n % 13) as usize * 97 + salt as usize;
    let mut v: Vec<u8> = n.to_le_bytes().iter().cycle().take(len).copied().collect();
    v.push(salt);
    v
}

fn counter(store: &dyn Store) -> u64 {
    match store.get(META, COUNTER_KEY).expect("read counter") {
        None => 0,
        Some(b) => u64::from_be_bytes(b.as_slice().try_into().expect("counter is 8 bytes")),
    }
}

#[test]
#[ignore = "child process of crash_test_acknowledged_writes_survive_kill"]
fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = std::sync::Arc::new(RedbStore::open(&path).expect("child: open store"));
    for thread in 0..GROUP_THREADS {
        let store = store.clone();
        std::thread::spawn(move || {
            let store: &dyn Store = store.as_ref();
            let mut n = group_numbers(store, thread).last().copied().unwrap_or(0);
            loop {
                n += 1;
                store
                    .write(|tx| tx.put(HOSTS, &group_key(thread, n), &value(n, 4)))
                    .expect("child: group commit");
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{GROUP_ACK}{thread} {n}").expect("child: write ack");
                stdout.flush().expect("child: flush ack");
            }
        });
    }
    let store: &dyn Store = store.as_ref();
    let mut n = counter(store);
    loop {
        n += 1;
        store
            .write(|tx| {
                tx.put(USERS, &key(n), &value(n, 1))?;
                tx.put(HOSTS, &key(n), &value(n, 2))?;
                tx.put(AUDIT, &key(n), &value(n, 3))?;
                if n > WINDOW {
                    tx.delete(AUDIT, &key(n - WINDOW))?;
                }
                tx.put(META, COUNTER_KEY, &n.to_be_bytes())?;
                Ok::<_, StoreError>(())
            })
            .expect("child: commit");
        // Only after commit returned: this line is the acknowledgement.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ACK}{n}").expect("child: write ack");
        stdout.flush().expect("child: flush ack");
    }
}

/// Checks the store against the invariant the child maintains; returns the
/// counter of the last committed transaction.
fn verify(path: &Path, max_ack: u64, previous: u64, group_acks: &[u64]) -> u64 {
    let mut redb = RedbStore::open(path).expect("reopen after kill");
    let store: &dyn Store = &redb;
    for (thread, &acked) in group_acks.iter().enumerate() {
        let numbers = group_numbers(store, thread as u64);
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "thread {thread}: a gap in its commits");
        assert!(
            numbers.len() as u64 >= acked,
            "thread {thread}: acknowledged commit {acked} lost ({} on disk)",
            numbers.len()
        );
    }
    let n = counter(store);
    assert!(
        n >= max_ack,
        "acknowledged transaction {max_ack} lost: counter is {n}"
    );
    assert!(n >= previous, "counter went back from {previous} to {n}");
    for (tree, salt) in [(USERS, 1), (HOSTS, 2)] {
        let pairs = store.scan(tree, &Scan::prefix(PREFIX)).expect("scan");
        assert_eq!(
            pairs.len() as u64,
            n,
            "tree {tree}: {} entries for counter {n}",
            pairs.len()
        );
        for (i, (k, v)) in pairs.iter().enumerate() {
            let want = i as u64 + 1;
            assert_eq!(k, &key(want), "tree {tree}: key {i} out of place");
            assert_eq!(v, &value(want, salt), "tree {tree}: value {want} wrong");
        }
    }
    let audit = store.scan(AUDIT, &Scan::prefix(PREFIX)).expect("scan");
    let first = n.saturating_sub(WINDOW) + 1;
    let want: Vec<Vec<u8>> = (first..=n).map(key).collect();
    let got: Vec<Vec<u8>> = audit.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, want, "tree audit: window wrong for counter {n}");
    assert!(
        audit.iter().all(|(k, v)| {
            let c = u64::from_be_bytes(k[PREFIX.len()..].try_into().unwrap_or_default());
            v == &value(c, 3)
        }),
        "tree audit: a value is wrong"
    );
    assert!(
        redb.check_integrity().expect("integrity check"),
        "file needed repair after reopen"
    );
    n
}

#[test]
fn crash_test_acknowledged_writes_survive_kill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("own test binary");
    // Test names are module paths without the crate name.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let child_test = format!("{module}::crash_child");
    let mut rng = rand::rng();
    let (mut committed, mut total_acks, mut killed_before_ack) = (0u64, 0u64, 0usize);
    let mut group_acked = vec![0u64; GROUP_THREADS as usize];

    for iteration in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args(["--exact", &child_test, "--ignored", "--nocapture"])
            .arg("--test-threads=1")
            .env(DB_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<u64>();
        let (group_tx, group_rx) = mpsc::channel::<(usize, u64)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(GROUP_ACK) {
                    let mut parts = line[at + GROUP_ACK.len()..].split_whitespace();
                    if let (Some(Ok(t)), Some(Ok(n))) =
                        (parts.next().map(str::parse), parts.next().map(str::parse))
                    {
                        let _ = group_tx.send((t, n));
                    }
                    continue;
                }
                let ack = line.find(ACK).map(|at| &line[at + ACK.len()..]);
                if let Some(n) = ack.and_then(|n| n.trim().parse().ok()) {
                    // The receiver lives until after join; a failed send
                    // only means the parent already panicked.
                    let _ = tx.send(n);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(20..=150));
        let mut acks: Vec<u64> = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(n) => acks.push(n),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        child.kill().expect("kill child");
        let status = child.wait().expect("wait child");
        reader.join().expect("reader thread");
        // Lines already in the pipe were acknowledged before the kill.
        acks.extend(rx.try_iter());
        assert_eq!(
            status.signal(),
            Some(9),
            "iteration {iteration}: child ended by itself ({status}) instead of being killed"
        );

        for pair in acks.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "acks out of sequence");
        }
        if let Some(&first) = acks.first() {
            assert_eq!(first, committed + 1, "child did not continue the counter");
        } else {
            killed_before_ack += 1;
        }
        let max_ack = acks.last().copied().unwrap_or(committed);
        total_acks += acks.len() as u64;
        for (thread, n) in group_rx.try_iter() {
            group_acked[thread] = group_acked[thread].max(n);
        }
        committed = verify(&path, max_ack, committed, &group_acked);
    }

    eprintln!(
        "crash test: {ITERATIONS} kills, {total_acks} acknowledged transactions, \
         {committed} committed, {killed_before_ack} kills before the first ack, \
         {} acknowledged by {GROUP_THREADS} writer threads beside them, {:?}",
        group_acked.iter().sum::<u64>(),
        started.elapsed()
    );
    // Guard against a vacuous pass where the child never got to commit.
    assert!(
        ITERATIONS - killed_before_ack >= ITERATIONS / 4,
        "only {} of {ITERATIONS} children committed anything",
        ITERATIONS - killed_before_ack
    );
}
