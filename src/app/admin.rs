//! The admin socket: `DATA_DIR/admin.sock` (mode 0600), through which the
//! command line asks the running daemon for what only the holder of the
//! database can do (a consistent snapshot, recording a backup, status).
//!
//! One JSON request per line, one JSON answer per line. Only the daemon's
//! user (and root) can connect, so no further authentication is needed.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name inside the data directory.
pub const SOCKET: &str = "admin.sock";

/// What the command line asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Write a snapshot of the database into `DATA_DIR/backups/` and name it.
    Snapshot,
    /// Record a finished backup as the last one.
    Recorded {
        target: String,
        manifest: Box<crate::backup::Manifest>,
    },
    /// The schema version and the last backup.
    Status,
}

/// What the daemon answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<PathBuf>,
    #[serde(default)]
    pub schema_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<crate::backup::LastBackup>,
    #[serde(default)]
    pub version: String,
}

/// Binds the socket, replacing a stale one left by a killed process (the
/// data-directory lock proves no other daemon is using it).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until shutdown, one connection at a time (snapshots are
/// rare and each is already one long read transaction).
pub async fn serve(
    listener: UnixListener,
    store: Arc<dyn Store>,
    data_dir: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("admin socket: {e}");
                    continue;
                }
            },
            () = &mut stop => break,
        };
        if let Err(e) = answer(stream, &store, &data_dir).await {
            tracing::warn!("admin socket: {e}");
        }
    }
    let _ = std::fs::remove_file(data_dir.join(SOCKET));
}

async fn answer(
    stream: UnixStream,
    store: &Arc<dyn Store>,
    data_dir: &Path,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(1 << 20))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let store = store.clone();
            let data_dir = data_dir.to_path_buf();
            tokio::task::spawn_blocking(move || handle(request, store.as_ref(), &data_dir))
                .await
                .unwrap_or_else(|e| failed(format!("the request failed: {e}")))
        }
        Err(e) => failed(format!("unreadable request: {e}")),
    };
    let mut bytes = serde_json::to_vec(&reply).expect("reply encodes");
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

fn failed(error: String) -> Reply {
    Reply {
        ok: false,
        error: Some(error),
        snapshot: None,
        schema_version: 0,
        last_backup: None,
        version: crate::VERSION.to_string(),
    }
}

fn handle(request: Request, store: &dyn Store, data_dir: &Path) -> Reply {
    let result = (|| -> Result<Reply, String> {
        let schema_version = crate::store::schema_version(store).map_err(|e| e.to_string())?;
        let mut reply = Reply {
            ok: true,
            error: None,
            snapshot: None,
            schema_version,
            last_backup: None,
            version: crate::VERSION.to_string(),
        };
        match request {
            Request::Snapshot => {
                let name = format!(
                    "snapshot-{}-{}.redb",
                    crate::backup::stamp_of(time::OffsetDateTime::now_utc()),
                    rand::random::<u32>()
                );
                let path = data_dir.join("backups").join(name);
                crate::backup::snapshot_to_file(store, &path).map_err(|e| e.to_string())?;
                reply.snapshot = Some(path);
            }
            Request::Recorded { target, manifest } => {
                crate::backup::record_last(store, &target, &manifest).map_err(|e| e.to_string())?;
            }
            Request::Status => {
                reply.last_backup = crate::backup::last(store).map_err(|e| e.to_string())?;
            }
        }
        Ok(reply)
    })();
    result.unwrap_or_else(failed)
}

/// Sends one request to the daemon running on `data_dir`; `Ok(None)` when no
/// daemon listens there.
pub async fn ask(data_dir: &Path, request: &Request) -> Result<Option<Reply>, String> {
    let path = data_dir.join(SOCKET);
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot connect to {}: {e}", path.display())),
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request).expect("request encodes");
    bytes.push(b'\n');
    write
        .write_all(&bytes)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let reply: Reply = serde_json::from_str(&line)
        .map_err(|e| format!("{}: unreadable answer: {e}", path.display()))?;
    match reply.ok {
        true => Ok(Some(reply)),
        false => Err(reply.error.unwrap_or_else(|| "the daemon refused".into())),
    }
}
