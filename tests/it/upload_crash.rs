//! `kill -9` during parallel uploads, again and again: after every crash each
//! acknowledged chunk is still there with its hash, uploads resume from the
//! offset the server reports, and every protocol chain verifies.
//! `INVIGIL_CRASH_ROUNDS` sets the number of kills (default 10; 100 for the
//! full campaign).

use crate::blackbox::{serve, sigterm, wait_exit};
use crate::rest::Rest;
use invigil::objects::Objects;
use invigil::proctoring::protocol;
use invigil::proctoring::uploads::{Settings, Uploads};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PW: &str = "Manager pass 123";
const LENGTH: u64 = 1 << 20;
const PARALLEL: usize = 4;

/// The byte at `pos` of upload number `n`: any chunk can be sent again from
/// any offset without the client keeping the data.
fn data(n: usize, from: u64, len: u64) -> Vec<u8> {
    (from..from + len)
        .map(|p| (p.wrapping_mul(31) ^ (n as u64 * 7919)) as u8)
        .collect()
}

#[derive(Clone, Debug)]
struct Acked {
    upload: String,
    offset: u64,
    size: u64,
    sha256: String,
}

/// One upload in progress: its path and the number its bytes derive from.
#[derive(Clone)]
struct Open {
    n: usize,
    path: String,
}

/// Sends chunks until a request fails (the server was killed); returns the
/// upload in progress so that the next round resumes it.
async fn upload_until_killed(
    c: Arc<Rest>,
    cookie: String,
    session: String,
    mut open: Option<Open>,
    n: usize,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> Option<Open> {
    while one_chunk(&c, &cookie, &session, &mut open, n, &acked)
        .await
        .is_some()
    {}
    open
}

async fn one_chunk(
    c: &Rest,
    cookie: &str,
    session: &str,
    open: &mut Option<Open>,
    n: usize,
    acked: &Mutex<Vec<Acked>>,
) -> Option<()> {
    let current = match open.clone() {
        Some(o) => o,
        None => {
            let r = c
                .http
                .post(format!("{}/api/v1/sessions/{session}/uploads", c.base))
                .header("origin", &c.base)
                .header("cookie", format!("__Host-invigil={cookie}"))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", LENGTH)
                .header("upload-metadata", "kind d2ViY2Ft")
                .send()
                .await
                .ok()?;
            let path = r.headers().get("location")?.to_str().ok()?.to_string();
            let o = Open { n, path };
            *open = Some(o.clone());
            o
        }
    };
    let id = current
        .path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let url = format!("{}{}", c.base, current.path);
    let head = c
        .http
        .head(&url)
        .header("cookie", format!("__Host-invigil={cookie}"))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .ok()?;
    let offset: u64 = head
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let acked_end = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.upload == id)
        .map(|a| a.offset + a.size)
        .max()
        .unwrap_or(0);
    assert!(
        offset >= acked_end,
        "upload {id} is at {offset}, but {acked_end} was acknowledged"
    );
    if offset == LENGTH {
        *open = None;
        return Some(());
    }
    let len = rand::rng().random_range(8_000..64_000).min(LENGTH - offset);
    let chunk = data(current.n, offset, len);
    let sha256 = hex::encode(Sha256::digest(&chunk));
    let r = c
        .http
        .patch(&url)
        .header("origin", &c.base)
        .header("cookie", format!("__Host-invigil={cookie}"))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset)
        .body(chunk)
        .send()
        .await
        .ok()?;
    assert_eq!(r.status(), 204, "PATCH of {id} at {offset}");
    acked.lock().unwrap().push(Acked {
        upload: id,
        offset,
        size: len,
        sha256,
    });
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_chunks_survive_kill_9_during_parallel_uploads() {
    let rounds: usize = std::env::var("INVIGIL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut server = serve(&data_dir, &[("MANAGER_PASSWORD", PW)]);
    let c = Rest::at(&data_dir, server.https);
    let manager = c.login("manager", PW).await;
    let admin = c.user(&manager, "adm", "administrator", &[]).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    c.template(&admin, "t", 10).await;
    let (host_id, session) = c.session(&admin, "ann", "t", &[]).await;
    c.start(&ann, &session).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut open: Vec<Option<Open>> = vec![None; PARALLEL];
    let mut next_n = 0;
    for round in 0..rounds {
        let c = Arc::new(Rest::at(&data_dir, server.https));
        let mut tasks = Vec::new();
        for slot in open.iter_mut() {
            let n = slot.as_ref().map_or_else(
                || {
                    next_n += 1;
                    next_n
                },
                |o| o.n,
            );
            tasks.push(tokio::spawn(upload_until_killed(
                c.clone(),
                ann.clone(),
                session.clone(),
                slot.take(),
                n,
                acked.clone(),
            )));
        }
        let wait = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for (slot, task) in open.iter_mut().zip(tasks) {
            // A task ends on its first failed request; it remembers its upload.
            *slot = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("client gives up after the kill")
                .unwrap_or(None);
        }
        server = serve(&data_dir, &[]);
        eprintln!(
            "round {round}: {} chunks acknowledged",
            acked.lock().unwrap().len()
        );
    }
    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(10)),
        Some(0)
    );

    // Offline: every acknowledged chunk is stored with its hash, every chain verifies.
    let store =
        invigil::store::open(data_dir.join("invigil.redb"), invigil::store::MIGRATIONS).unwrap();
    let objects = Objects::local(data_dir.join("objects")).unwrap();
    let settings = Settings {
        max_chunk: 1 << 30,
        expires: Duration::from_secs(3600),
    };
    let uploads = Uploads::new(store.clone(), objects.clone(), settings, None);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= rounds,
        "too few chunks to mean anything: {}",
        acked.len()
    );
    for a in &acked {
        let u = uploads.get(&host_id, &session, &a.upload).await.unwrap();
        let chunks = uploads.chunks(&u).await.unwrap();
        let c = chunks
            .iter()
            .find(|c| c.offset == a.offset)
            .unwrap_or_else(|| panic!("acknowledged chunk {a:?} is missing"));
        assert_eq!(c.sha256, a.sha256, "{a:?}");
        let bytes = objects.get(&c.object).await.unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), a.sha256, "{a:?}");
    }
    let scope = format!("{host_id}/{session}");
    let entries = protocol::verify(store.as_ref(), &scope).unwrap();
    assert!(entries as usize >= acked.len());
    let listed = uploads.list(&host_id, &session).await.unwrap();
    for u in &listed {
        // Chunks are contiguous from 0 to the offset.
        let mut at = 0;
        for c in uploads.chunks(u).await.unwrap() {
            assert_eq!(c.offset, at, "upload {}", u.id);
            at += c.size;
        }
        assert_eq!(at, u.offset);
    }
    eprintln!(
        "{rounds} kills, {} acknowledged chunks in {} uploads, chain of {entries} entries verified",
        acked.len(),
        listed.len()
    );
}
