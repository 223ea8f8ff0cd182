//! Backups taken from a running daemon under upload load, verified, and
//! restored into fresh directories (local and S3 targets).

use crate::harness::Daemon;
use bytes::Bytes;
use invigil::auth::audit;
use invigil::backup::{self, Index, Target};
use invigil::objects::Objects;
use invigil::store::catalog::{AUDIT, PROTOCOL};
use invigil::store::{RedbStore, Store, chain};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn invigil(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invigil"))
        .args(args)
        .env("DATA_DIR", data_dir)
        .env_remove("MINIO_URI")
        .output()
        .expect("invigil runs")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "invigil failed: {text}");
    text
}

/// Uploads objects and appends audit entries until stopped; returns counts.
fn start_load(
    objects: Objects,
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let uploaded = Arc::new(AtomicU64::new(0));
    let count = uploaded.clone();
    let handle = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let body: Vec<u8> = (0..32 * 1024).map(|i| (i as u64 * 31 + n) as u8).collect();
            objects
                .put(
                    &format!("load/s{}/chunk-{n}.webm", n % 3),
                    Bytes::from(body),
                )
                .await
                .expect("upload under load");
            let s = store.clone();
            tokio::task::spawn_blocking(move || {
                audit::record(
                    s.as_ref(),
                    audit::INSTANCE,
                    audit::Event::new("load", "uploaded", format!("chunk-{n}")),
                )
            })
            .await
            .unwrap()
            .expect("audit entry");
            n += 1;
            count.store(n, Ordering::Relaxed);
        }
    });
    (handle, uploaded)
}

/// Every object the index names has the restored content with its hash, and
/// every chain in the restored database verifies.
async fn check_restored(restored: &Path, index: &Index) -> usize {
    let objects = Objects::local(restored.join("objects")).unwrap();
    for (key, entry) in &index.objects {
        let bytes = objects.get(key).await.expect("restored object");
        assert_eq!(backup::sha256(&bytes), entry.entry.sha256, "{key}");
    }
    for (rel, entry) in &index.files {
        let bytes = std::fs::read(restored.join(rel)).unwrap();
        assert_eq!(backup::sha256(&bytes), entry.sha256, "{rel}");
    }
    let store = RedbStore::open(restored.join("invigil.redb")).unwrap();
    let store: &dyn Store = &store;
    let tx = store.begin_read().unwrap();
    let mut chains = 0;
    for tree in [AUDIT, PROTOCOL] {
        for scope in chain::scopes(&*tx, tree).unwrap() {
            chain::verify(&*tx, tree, &scope).expect("chain verifies after restore");
            chains += 1;
        }
    }
    chains
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_identical_objects_and_chains() {
    let daemon = Daemon::start(&[]).await;
    let data_dir = daemon.data_dir.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (load, uploaded) = start_load(
        daemon.running.objects.clone(),
        daemon.running.store.clone(),
        stop.clone(),
    );
    while uploaded.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("backups");
    let to = target.to_str().unwrap().to_string();
    // Two backups while uploads go on: the second copies only new objects.
    let dd = data_dir.clone();
    let first = tokio::task::spawn_blocking({
        let to = to.clone();
        move || ok(&invigil(&dd, &["backup", "--to", &to]))
    })
    .await
    .unwrap();
    assert!(first.contains("written to"), "{first}");
    let blobs_after_first = std::fs::read_dir(target.join("blobs")).unwrap().count();
    let dd = data_dir.clone();
    tokio::task::spawn_blocking({
        let to = to.clone();
        move || ok(&invigil(&dd, &["backup", "--to", &to]))
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        !data_dir.join("backups").read_dir().unwrap().any(|_| true),
        "the daemon's snapshot files are removed after the copy"
    );

    let t = Target::open_existing(&to).unwrap();
    let stamps = backup::list(&t).await.unwrap();
    assert_eq!(stamps.len(), 2, "{stamps:?}");
    let last = backup::manifest(&t, &stamps[1]).await.unwrap();
    let index: Index = serde_json::from_slice(
        &t.objects
            .get(&format!("{}/index.json", last.stamp))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last.object_count as usize, index.objects.len());
    let new_blobs = std::fs::read_dir(target.join("blobs")).unwrap().count() - blobs_after_first;
    assert!(
        new_blobs < index.objects.len(),
        "the second backup stored {new_blobs} blobs for {} objects: not incremental",
        index.objects.len()
    );
    // Objects in the backup are byte-identical to the live ones.
    for (key, o) in &index.objects {
        let live = daemon.running.objects.get(key).await.unwrap();
        assert_eq!(backup::sha256(&live), o.entry.sha256, "{key}");
    }
    // The daemon recorded the last backup.
    let recorded = backup::last(daemon.running.store.as_ref())
        .unwrap()
        .unwrap();
    assert_eq!(recorded.stamp, last.stamp);

    let verified = ok(&invigil(&data_dir, &["backup", "verify", "--from", &to]));
    assert!(verified.contains("2 backups verified"), "{verified}");

    let restored = out_dir.path().join("restored");
    ok(&invigil(
        &data_dir,
        &[
            "restore",
            "--from",
            &to,
            "--data-dir",
            restored.to_str().unwrap(),
        ],
    ));
    assert!(check_restored(&restored, &index).await >= 1);
    // The restored directory verifies with the audit command too.
    ok(&invigil(&restored, &["audit", "verify"]));

    // Restoring over data is refused; nothing is touched.
    let again = invigil(
        &data_dir,
        &[
            "restore",
            "--from",
            &to,
            "--data-dir",
            restored.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    // A damaged blob is found and named.
    let (_, victim) = index.objects.iter().next().unwrap();
    let blob = target.join("blobs").join(&victim.entry.sha256);
    std::fs::write(&blob, b"tampered").unwrap();
    let bad = invigil(&data_dir, &["backup", "verify", "--from", &to]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&victim.entry.sha256), "{err}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_backup_to_s3_and_restore() {
    let keep = tempfile::tempdir().unwrap();
    let copy = keep.path().join("data");
    let daemon = Daemon::start_in(&copy, &[], axum::Router::new())
        .await
        .unwrap();
    daemon
        .running
        .objects
        .put("rec/one.webm", Bytes::from_static(b"one"))
        .await
        .unwrap();
    // The daemon is stopped: the command opens the database itself.
    daemon.stop().await;

    let server = crate::objects::start_moto().await;
    crate::objects::create_bucket(&server, "backups").await;
    let uri = format!("http://testing:testing@127.0.0.1:{}/backups", server.port);
    let dd = copy.clone();
    let u = uri.clone();
    let out = tokio::task::spawn_blocking(move || ok(&invigil(&dd, &["backup", "--to", &u])))
        .await
        .unwrap();
    assert!(!out.contains("testing:testing"), "credentials leak: {out}");
    let dd = copy.clone();
    let u = uri.clone();
    tokio::task::spawn_blocking(move || ok(&invigil(&dd, &["backup", "verify", "--from", &u])))
        .await
        .unwrap();
    let restored = keep.path().join("restored");
    let r = restored.clone();
    let u = uri.clone();
    tokio::task::spawn_blocking(move || {
        ok(&invigil(
            &r,
            &["restore", "--from", &u, "--data-dir", r.to_str().unwrap()],
        ))
    })
    .await
    .unwrap();
    let objects = Objects::local(restored.join("objects")).unwrap();
    assert_eq!(&objects.get("rec/one.webm").await.unwrap()[..], b"one");
    let store = RedbStore::open(restored.join("invigil.redb")).unwrap();
    assert!(
        backup::last(&store).unwrap().is_none(),
        "the copy predates its record"
    );
    let original = RedbStore::open(copy.join("invigil.redb")).unwrap();
    assert!(
        backup::last(&original).unwrap().is_some(),
        "the offline backup is recorded"
    );
}
