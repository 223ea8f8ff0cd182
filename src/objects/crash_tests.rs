//! Crash test of the local backend: a child process stores objects and prints an
//! acknowledgement after each store returns; the parent kills it with SIGKILL at a
//! random moment, reopens the store and checks that every acknowledged object is
//! there with exactly the right bytes, that nothing torn or half-written is visible,
//! and that an overwritten object holds one complete version.
//!
//! SIGKILL loses no page cache, so this proves atomicity and acknowledgement order;
//! the fsync calls that make the same hold across power loss are in `local.rs`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::Objects;
use super::suite::pattern;

const CHILD_DIR_ENV: &str = "INVIGIL_OBJECTS_CRASH_DIR";
const CHILD_ROUND_ENV: &str = "INVIGIL_OBJECTS_CRASH_ROUND";
const ROUNDS: u64 = 30;
const LATEST: &str = "crash/latest";
/// Starts every line the child reports; the test harness may print on the same line.
const MARK: &str = "crash-ledger: ";

fn key_of(round: u64, n: u64) -> String {
    format!("crash/r{round:02}/{n:05}")
}

/// The content the child writes for object `n` of `round`, recomputable by the parent.
fn content(round: u64, n: u64) -> Bytes {
    pattern(((n * 7919) % 32768) as usize, (round << 32) | n)
}

/// Parses `crash/rRR/NNNNN` back into (round, n).
fn parse_key(key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix("crash/r")?;
    let (round, n) = rest.split_once('/')?;
    Some((round.parse().ok()?, n.parse().ok()?))
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The child: only does anything when the parent started it with the environment set.
#[test]
#[ignore = "child process of crash_durability, started by it"]
fn crash_child() {
    let (Some(dir), Some(round)) = (
        std::env::var_os(CHILD_DIR_ENV),
        std::env::var(CHILD_ROUND_ENV).ok(),
    ) else {
        return;
    };
    let round: u64 = round.parse().expect("round number");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let objects = Objects::local(dir).expect("open store");
        for n in 0.. {
            let key = key_of(round, n);
            let data = content(round, n);
            println!("{MARK}BEGIN {key}");
            if n % 4 == 3 {
                // Streaming uploads too, in uneven chunks.
                let chunks: Vec<Result<Bytes, std::io::Error>> = data
                    .chunks(5000)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                objects
                    .put_stream(&key, futures::stream::iter(chunks))
                    .await
                    .expect("put_stream");
            } else {
                objects.put(&key, data.clone()).await.expect("put");
            }
            println!("{MARK}ACK {key}");
            println!("{MARK}BEGIN-LATEST {key}");
            objects.put(LATEST, data).await.expect("put latest");
            println!("{MARK}ACK-LATEST {key}");
        }
    });
}

/// What the parent learned from the child's output, across rounds.
#[derive(Default)]
struct Ledger {
    /// Objects whose put started, by key; those in `acked` must be present.
    begun: HashSet<String>,
    acked: HashSet<String>,
    /// Source keys whose content `crash/latest` may hold now.
    latest_allowed: Vec<String>,
    latest_acked: bool,
}

impl Ledger {
    fn record(&mut self, line: &str) {
        let Some((_, entry)) = line.split_once(MARK) else {
            return; // test harness chatter
        };
        match entry.split_once(' ') {
            Some(("BEGIN", key)) => {
                self.begun.insert(key.to_string());
            }
            Some(("ACK", key)) => {
                self.acked.insert(key.to_string());
            }
            Some(("BEGIN-LATEST", key)) => self.latest_allowed.push(key.to_string()),
            Some(("ACK-LATEST", key)) => {
                self.latest_allowed = vec![key.to_string()];
                self.latest_acked = true;
            }
            _ => panic!("malformed ledger line {line:?}"),
        }
    }
}

/// Runs one child for `alive`, then SIGKILLs it; returns its complete output lines.
fn run_child(dir: &std::path::Path, round: u64, alive: Duration) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "objects::crash_tests::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crash child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                // A line cut short by the kill was never acknowledged: drop it.
                Ok(0) | Err(_) => break,
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if tx.send(line.trim_end().to_string()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::sleep(alive);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(
        !status.success(),
        "the child must have been killed, not finished"
    );
    reader.join().expect("reader thread");
    rx.try_iter().collect()
}

async fn verify(dir: &std::path::Path, ledger: &mut Ledger) {
    let objects = Objects::local(dir).expect("reopen store");
    let listed = objects.list("").await.expect("list");
    let mut present = HashMap::new();
    for info in &listed {
        assert!(
            !info.key.contains('#'),
            "staging file {} is visible through list",
            info.key
        );
        present.insert(info.key.clone(), info.size);
    }

    for key in &ledger.acked {
        assert!(present.contains_key(key), "acknowledged {key} is missing");
    }
    for key in present.keys().filter(|k| k.as_str() != LATEST) {
        let (round, n) = parse_key(key).unwrap_or_else(|| panic!("unexpected object {key}"));
        assert!(ledger.begun.contains(key), "{key} was never written");
        // Acknowledged or in flight at the kill: either way it must be whole.
        let got = objects.get(key).await.expect("get");
        assert_eq!(
            sha256(&got),
            sha256(&content(round, n)),
            "{key} has wrong bytes"
        );
    }

    match present.get(LATEST) {
        None => assert!(
            !ledger.latest_acked,
            "{LATEST} was acknowledged but is gone"
        ),
        Some(_) => {
            let got = sha256(&objects.get(LATEST).await.expect("get latest"));
            let source = ledger
                .latest_allowed
                .iter()
                .find(|source| {
                    parse_key(source).is_some_and(|(r, n)| sha256(&content(r, n)) == got)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{LATEST} holds none of the versions {:?} (torn or stale)",
                        ledger.latest_allowed
                    )
                })
                .clone();
            ledger.latest_allowed = vec![source];
        }
    }
}

/// Staging files (`<name>#<digits>`) on disk under `dir`.
fn count_staging_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_staging_files(&path)
            } else {
                usize::from(entry.file_name().to_string_lossy().contains('#'))
            }
        })
        .sum()
}

#[test]
fn crash_durability() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("objects");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut ledger = Ledger::default();
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let alive = Duration::from_millis(rng.random_range(40..300));
        for line in run_child(&root, round, alive) {
            ledger.record(&line);
        }
        runtime.block_on(verify(&root, &mut ledger));
    }
    assert!(
        ledger.acked.len() as u64 >= ROUNDS,
        "only {} acknowledged puts in {ROUNDS} rounds: the child barely ran",
        ledger.acked.len()
    );
    eprintln!(
        "crash_durability: {ROUNDS} kills, {} acknowledged puts verified, {} staging files \
         left on disk by kills mid-put (none listed), in {:?}",
        ledger.acked.len(),
        count_staging_files(&root),
        started.elapsed()
    );
}
