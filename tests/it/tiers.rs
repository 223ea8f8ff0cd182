//! Hot and cold tiers: `kill -9` of a process moving objects, again and again,
//! with the cold tier as a directory and on a real S3 server (moto) on loopback.
//! After every kill each object reads back whole from one tier or the other;
//! after a sweep none is left in both tiers and every cold one is recorded; and
//! an object recorded as cold but gone is reported, not passed over.
//! `INVIGIL_TIER_CRASH_ROUNDS` sets the number of kills (default 10).

use crate::objects::{create_bucket, start_moto};
use invigil::auth::Principal;
use invigil::auth::hosts::{self, HostInput};
use invigil::objects::Objects;
use invigil::proctoring::sessions::{self, Action, NewSession};
use invigil::proctoring::templates::{self, TemplateInput};
use invigil::proctoring::tiering::{self, Settings};
use invigil::store::Store;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const DIR_ENV: &str = "INVIGIL_TIER_CRASH_DIR";
const COLD_ENV: &str = "INVIGIL_TIER_CRASH_COLD";
/// Moves at this pace in the child, so that kills land in every step.
const CHILD_RATE: u64 = 2 << 20;

fn rounds() -> usize {
    std::env::var("INVIGIL_TIER_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `dir` laid out as a data directory; the cold tier: a directory path, or an S3 URI.
fn open(dir: &Path, cold: &str) -> (Arc<dyn Store>, Objects) {
    std::fs::create_dir_all(dir).expect("data directory");
    let store = invigil::store::open(dir.join("invigil.redb"), invigil::store::MIGRATIONS)
        .expect("open store");
    let hot = Objects::local(dir.join("objects")).expect("hot tier");
    let cold = if cold.starts_with("http") {
        Objects::from_minio_uri(cold).expect("cold bucket")
    } else {
        Objects::local(cold).expect("cold directory")
    };
    (store, hot.with_cold(cold))
}

/// Stopped sessions with objects of many sizes (some several pieces long), and
/// one running session whose objects must stay hot; returns every key's hash.
async fn fixture(store: &dyn Store, objects: &Objects) -> BTreeMap<String, String> {
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec!["tiers.test".into()]),
        ..HostInput::default()
    };
    let host = hosts::create(store, &m, &input, "").expect("host");
    let t: TemplateInput =
        serde_json::from_value(serde_json::json!({ "id": "t", "name": "T" })).expect("template");
    templates::save(store, &host.id, "adm", &t).expect("template saved");
    let mut hashes = BTreeMap::new();
    for n in 0..4 {
        add_session(store, objects, &host.id, n < 3, 8, &mut hashes).await;
    }
    hashes
}

/// One more session with `count` objects (the second one two pieces long),
/// stopped or still running.
async fn add_session(
    store: &dyn Store,
    objects: &Objects,
    host_id: &str,
    stopped: bool,
    count: usize,
    hashes: &mut BTreeMap<String, String>,
) {
    let mut rng = rand::rng();
    let new = NewSession {
        student: format!("s{}", hashes.len()),
        template: "t".into(),
        ..NewSession::default()
    };
    let s = sessions::create(store, host_id, "adm", &new, 1000).expect("session");
    let start = Action::Start;
    sessions::act(store, host_id, &s.id, &s.student, start, 1001, None).expect("start");
    if stopped {
        sessions::act(store, host_id, &s.id, "adm", Action::Stop, 1002, None).expect("stop");
    }
    for k in 0..count {
        let size = match k {
            0 => 0,
            1 => (1 << 20) + 333,
            _ => rng.random_range(1..100_000),
        };
        let data: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        let key = format!("{}rec/{k:04}", s.object_prefix());
        objects
            .put(&key, data.clone().into())
            .await
            .expect("put hot");
        hashes.insert(key, sha256(&data));
    }
}

/// The child: sweeps and moves like the daemon's task, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the tier crash tests, started by them"]
async fn crash_child() {
    let (Some(dir), Ok(cold)) = (std::env::var_os(DIR_ENV), std::env::var(COLD_ENV)) else {
        return;
    };
    let (store, objects) = open(Path::new(&dir), &cold);
    let settings = Settings {
        after: Duration::ZERO,
        bytes_per_sec: CHILD_RATE,
    };
    println!("tier-child: started");
    loop {
        tiering::sweep(&store, &objects).await.expect("sweep");
        tiering::move_due(&store, &objects, settings, invigil::auth::now_secs())
            .await
            .expect("move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_child(dir: &Path, cold: &str, alive: Duration) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "tiers::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(COLD_ENV, cold)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the mover");
    std::thread::sleep(alive);
    child.kill().expect("SIGKILL the mover");
    let status = child.wait().expect("reap the mover");
    assert!(!status.success(), "the mover was killed, not finished");
}

/// Every object reads back whole, from whichever tier holds it.
async fn nothing_lost(objects: &Objects, hashes: &BTreeMap<String, String>, round: usize) {
    for (key, hash) in hashes {
        let got = objects
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {key} lost: {e}"));
        assert_eq!(&sha256(&got), hash, "round {round}: {key} changed");
    }
    let listed = objects.list("").await.expect("list");
    assert_eq!(
        listed.len(),
        hashes.len(),
        "round {round}: listed once each"
    );
}

/// After a sweep: no object in both tiers, every cold object recorded with
/// its hash, no record without its cold object.
async fn nothing_orphaned(
    store: &dyn Store,
    objects: &Objects,
    hashes: &BTreeMap<String, String>,
    round: usize,
) -> usize {
    let hot: Vec<String> = objects
        .hot()
        .list("")
        .await
        .expect("hot")
        .into_iter()
        .map(|o| o.key)
        .collect();
    let cold: Vec<String> = objects
        .cold()
        .expect("cold tier")
        .list("")
        .await
        .expect("cold")
        .into_iter()
        .map(|o| o.key)
        .collect();
    for key in &cold {
        assert!(!hot.contains(key), "round {round}: {key} in both tiers");
    }
    let records = tiering::records(store).expect("records");
    let recorded: Vec<&String> = records.keys().collect();
    assert_eq!(
        recorded,
        cold.iter().collect::<Vec<_>>(),
        "round {round}: records and cold tier differ"
    );
    for (key, r) in &records {
        assert_eq!(&r.sha256, &hashes[key], "round {round}: record of {key}");
    }
    cold.len()
}

async fn crash_campaign(dir: &Path, cold: &str) {
    let mut hashes = {
        let (store, objects) = open(dir, cold);
        fixture(store.as_ref(), &objects).await
    };
    let running_prefix = {
        let (store, _) = open(dir, cold);
        let s = sessions::all(store.as_ref(), &hosts::list(store.as_ref()).unwrap()[0].id)
            .unwrap()
            .into_iter()
            .find(|s| s.stopped_at.is_none())
            .expect("a running session");
        s.object_prefix()
    };
    let mut rng = rand::rng();
    let mut last_cold = 0;
    for round in 0..rounds() {
        let alive = Duration::from_millis(rng.random_range(200..1500));
        let (d, c) = (dir.to_path_buf(), cold.to_string());
        tokio::task::spawn_blocking(move || run_child(&d, &c, alive))
            .await
            .expect("child round");
        let (store, objects) = open(dir, cold);
        nothing_lost(&objects, &hashes, round).await;
        let cold_now = tiering::records(store.as_ref()).expect("records").len();
        eprintln!("tier crash: round {round}, {cold_now} objects recorded cold");
        if round % 3 == 2 {
            tiering::sweep(&store, &objects).await.expect("sweep");
            last_cold = nothing_orphaned(store.as_ref(), &objects, &hashes, round).await;
        }
        // New evidence keeps the mover busy however many rounds there are.
        let host = hosts::list(store.as_ref()).expect("hosts")[0].id.clone();
        add_session(store.as_ref(), &objects, &host, true, 4, &mut hashes).await;
    }
    eprintln!(
        "tier crash: {} kills, {last_cold} of {} objects cold at the last check",
        rounds(),
        hashes.len()
    );
    // Finish: every due object cold, the running session's hot, hashes intact.
    let (store, objects) = open(dir, cold);
    let swept = tiering::sweep(&store, &objects).await.expect("sweep");
    assert!(swept.missing.is_empty(), "{swept:?}");
    let settings = Settings {
        after: Duration::ZERO,
        bytes_per_sec: u64::MAX,
    };
    let moved = tiering::move_due(&store, &objects, settings, invigil::auth::now_secs())
        .await
        .expect("move");
    assert!(moved.failed.is_empty(), "{moved:?}");
    nothing_lost(&objects, &hashes, usize::MAX).await;
    let cold_count = nothing_orphaned(store.as_ref(), &objects, &hashes, usize::MAX).await;
    let hot = objects.hot().list("").await.expect("hot");
    assert_eq!(cold_count + hot.len(), hashes.len());
    assert!(
        hot.iter().all(|o| o.key.starts_with(&running_prefix)),
        "only the running session's objects stay hot"
    );
    assert_eq!(hot.len(), 8);

    // Evidence removed behind invigil's back is reported, loudly.
    let victim = tiering::records(store.as_ref())
        .expect("records")
        .into_keys()
        .next()
        .expect("a cold object");
    objects
        .cold()
        .expect("cold")
        .delete(&victim)
        .await
        .expect("delete behind the mover's back");
    let swept = tiering::sweep(&store, &objects).await.expect("sweep");
    assert_eq!(swept.missing, [victim]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_survive_kill_9_with_the_cold_tier_on_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cold = dir.path().join("cold");
    crash_campaign(dir.path(), cold.to_str().expect("utf-8")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_survive_kill_9_with_the_cold_tier_on_s3() {
    let server = start_moto().await;
    create_bucket(&server, "cold").await;
    let uri = format!("http://testing:testing@127.0.0.1:{}/cold", server.port);
    let dir = tempfile::tempdir().expect("tempdir");
    crash_campaign(dir.path(), &uri).await;
}

fn cli(args: &[&str], data_dir: &Path, cold: Option<&Path>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_invigil"));
    cmd.args(args)
        .env("DATA_DIR", data_dir)
        .env_remove("MINIO_URI")
        .env_remove("COLD_URI")
        .env_remove("COLD_DIR");
    if let Some(cold) = cold {
        cmd.env("COLD_DIR", cold);
    }
    let out = cmd.output().expect("invigil runs");
    assert!(
        out.status.success(),
        "invigil {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_takes_cold_objects_and_restore_brings_them_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, cold) = (dir.path().join("data"), dir.path().join("cold"));
    let hashes = {
        let (store, objects) = open(&data, cold.to_str().expect("utf-8"));
        let hashes = fixture(store.as_ref(), &objects).await;
        let settings = Settings {
            after: Duration::ZERO,
            bytes_per_sec: u64::MAX,
        };
        let moved = tiering::move_due(&store, &objects, settings, invigil::auth::now_secs())
            .await
            .expect("move");
        assert_eq!(moved.objects, 24, "{moved:?}");
        hashes
    };
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    let (d, c, b, r) = (data.clone(), cold.clone(), backup.clone(), restored.clone());
    tokio::task::spawn_blocking(move || {
        cli(&["backup", "--to", b.to_str().unwrap()], &d, Some(&c));
        cli(
            &[
                "restore",
                "--from",
                b.to_str().unwrap(),
                "--data-dir",
                r.to_str().unwrap(),
            ],
            &d,
            None,
        );
    })
    .await
    .expect("backup and restore");
    // Everything comes back on the hot tier, byte for byte.
    let objects = Objects::local(restored.join("objects")).expect("restored objects");
    nothing_lost(&objects, &hashes, 0).await;
}

#[test]
fn doctor_reports_the_cold_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cold = dir.path().join("cold");
    std::fs::create_dir(&cold).expect("cold dir");
    let doctor = |cold: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_invigil"))
            .arg("doctor")
            .env("DATA_DIR", dir.path().join("data"))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("HTTP_PORT", "0")
            .env("TURN_PORT", "0")
            .env_remove("MINIO_URI")
            .env_remove("COLD_URI")
            .env("COLD_DIR", cold)
            .output()
            .expect("invigil doctor runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = doctor(&cold);
    let line = report
        .lines()
        .find(|l| l.contains("cold tier"))
        .unwrap_or_else(|| panic!("no cold tier line:\n{report}"));
    assert!(
        line.contains("GiB free") && line.contains(cold.to_str().expect("utf-8")),
        "{line}"
    );
    assert!(!line.starts_with("FAIL"), "{line}");
    let missing = dir.path().join("unmounted");
    let report = doctor(&missing);
    assert!(
        report.contains(&format!(
            "FAIL  cold tier      COLD_DIR {} is not a directory",
            missing.display()
        )),
        "{report}"
    );
}

#[test]
fn a_malformed_cold_uri_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_invigil"))
        .arg("check-config")
        .env("DATA_DIR", dir.path())
        .env_remove("MINIO_URI")
        .env_remove("COLD_DIR")
        .env("COLD_URI", "ftp://key:hunter2@127.0.0.1/cold")
        .output()
        .expect("invigil check-config runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("COLD_URI"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
