//! The local backend: objects are files under a root directory.
//!
//! Reads, ranged reads, heads and listings go through `object_store`'s
//! `LocalFileSystem`; writes and deletes are done here, into exactly the layout it
//! uses (`root/<key>`, staging files named `<name>#<digits>`, which its listing hides).
//!
//! Why writes are our own: `LocalFileSystem::put` writes a staging file and renames it
//! over the destination, which is atomic, but it never calls `fsync` — not on the file
//! before the rename, not on the directory after it, and not on directories it creates.
//! After a power cut, an upload it reported as stored can come back empty, truncated or
//! missing. Its multipart `complete` has the same gap. Evidence that invigil acknowledged
//! must survive, so every write here is: data written and `sync_all`ed in a staging file,
//! renamed into place, then the parent directory `fsync`ed (and, the first time this
//! process writes into a directory, every directory up to the root, because an earlier
//! process may have created them and died before syncing). Deletes fsync the directory
//! too, so a deleted object does not reappear.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use object_store::local::LocalFileSystem;

use super::{ObjectInfo, ObjectsError, key};

/// Past this many remembered directories, forget them all (they are only a cache).
const SYNCED_DIRS_LIMIT: usize = 65_536;

/// Durable writes into a `LocalFileSystem` layout.
#[derive(Debug)]
pub(super) struct LocalDisk {
    root: PathBuf,
    fs: Arc<LocalFileSystem>,
    /// Directories whose whole chain up to the root is known durable in this process.
    synced_dirs: Mutex<HashSet<PathBuf>>,
}

impl LocalDisk {
    /// Opens (creating durably if needed) the store rooted at `root`.
    pub(super) fn open(root: &Path) -> Result<(LocalDisk, Arc<LocalFileSystem>), ObjectsError> {
        create_root(root)?;
        let root = std::fs::canonicalize(root).map_err(|e| {
            ObjectsError::io(format!("resolving object root {}", root.display()), e)
        })?;
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| ObjectsError::Backend(format!("opening {}: {e}", root.display())))?;
        let fs = Arc::new(fs);
        let disk = LocalDisk {
            root,
            fs: Arc::clone(&fs),
            synced_dirs: Mutex::new(HashSet::new()),
        };
        Ok((disk, fs))
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a key, exactly where `LocalFileSystem` looks for it.
    fn file_of(&self, key: &str) -> Result<PathBuf, ObjectsError> {
        let path = key::store_path(key)?;
        self.fs
            .path_to_filesystem(&path)
            .map_err(|e| ObjectsError::InvalidKey {
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    /// Stores `data` under `key`; durable when it returns.
    pub(super) async fn put(
        self: &Arc<Self>,
        key: &str,
        data: Bytes,
    ) -> Result<ObjectInfo, ObjectsError> {
        let dest = self.file_of(key)?;
        let disk = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let mut staged = disk.stage(&key, &dest)?;
            staged
                .file
                .write_all(&data)
                .map_err(|e| ObjectsError::io(format!("writing object `{key}`"), e))?;
            staged.commit(&key)
        })
        .await
    }

    /// Starts a streaming upload: parts go straight into a staging file.
    pub(super) async fn start_upload(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<LocalUpload, ObjectsError> {
        let dest = self.file_of(key)?;
        let disk = Arc::clone(self);
        let key_owned = key.to_string();
        let staged = blocking(move || disk.stage(&key_owned, &dest)).await?;
        Ok(LocalUpload {
            key: key.to_string(),
            staged: Some(staged),
        })
    }

    /// Removes `key` if present and makes the removal durable.
    pub(super) async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        let path = self.file_of(key)?;
        let key = key.to_string();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => match path.parent() {
                Some(dir) => fsync_dir(dir)
                    .map_err(|e| ObjectsError::io(format!("syncing delete of `{key}`"), e)),
                None => Ok(()),
            },
            // Nothing stored under that key (a directory or a file in the way is not an
            // object either): deleting is idempotent.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(ObjectsError::io(format!("deleting object `{key}`"), e)),
        })
        .await
    }

    /// Creates the destination's directories durably and opens a fresh staging file.
    fn stage(&self, key: &str, dest: &Path) -> Result<Staged, ObjectsError> {
        let dir = dest
            .parent()
            .ok_or_else(|| ObjectsError::Backend(format!("object `{key}` has no parent")))?;
        self.ensure_dir(dir)
            .map_err(|e| ObjectsError::io(format!("creating directories for `{key}`"), e))?;
        loop {
            // Same `<name>#<digits>` form as `LocalFileSystem`, so its listing hides it.
            let mut staging = dest.as_os_str().to_owned();
            staging.push(format!("#{}", rand::random::<u32>()));
            let staging = PathBuf::from(staging);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staging)
            {
                Ok(file) => {
                    return Ok(Staged {
                        file,
                        staging,
                        dest: dest.to_path_buf(),
                        committed: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(ObjectsError::io(
                        format!("creating a staging file for `{key}`"),
                        e,
                    ));
                }
            }
        }
    }

    /// Makes `dir` and every directory between it and the root exist durably.
    fn ensure_dir(&self, dir: &Path) -> std::io::Result<()> {
        if self.is_synced(dir) {
            return Ok(());
        }
        let relative = dir
            .strip_prefix(&self.root)
            .map_err(|_| std::io::Error::other("object path escapes the object root"))?;
        let mut current = self.root.clone();
        for part in relative.components() {
            let parent = current.clone();
            current.push(part);
            if let Err(e) = std::fs::create_dir(&current) {
                if e.kind() != ErrorKind::AlreadyExists {
                    return Err(e);
                }
                if !current.is_dir() {
                    // On disk an object cannot also be a "directory" of other objects.
                    return Err(std::io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} is an object, not a directory", current.display()),
                    ));
                }
            }
            // The entry for `current` lives in `parent`: sync it whether we created it or
            // an earlier process did (it may have died before syncing).
            fsync_dir(&parent)?;
        }
        let mut synced = self
            .synced_dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if synced.len() >= SYNCED_DIRS_LIMIT {
            synced.clear();
        }
        synced.insert(dir.to_path_buf());
        Ok(())
    }

    fn is_synced(&self, dir: &Path) -> bool {
        // A directory removed behind our back is simply recreated and synced again.
        self.synced_dirs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(dir)
            && dir.is_dir()
    }
}

/// A staging file next to its destination; removed on drop unless committed.
#[derive(Debug)]
struct Staged {
    file: File,
    staging: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Syncs the data, renames it into place and syncs the directory entry.
    fn commit(mut self, key: &str) -> Result<ObjectInfo, ObjectsError> {
        let ctx = |what: &str| format!("{what} object `{key}`");
        self.file
            .sync_all()
            .map_err(|e| ObjectsError::io(ctx("syncing"), e))?;
        let meta = self
            .file
            .metadata()
            .map_err(|e| ObjectsError::io(ctx("reading metadata of"), e))?;
        std::fs::rename(&self.staging, &self.dest)
            .map_err(|e| ObjectsError::io(ctx("renaming into place"), e))?;
        self.committed = true;
        if let Some(dir) = self.dest.parent() {
            fsync_dir(dir).map_err(|e| ObjectsError::io(ctx("syncing the directory of"), e))?;
        }
        Ok(info_from_metadata(key, &meta))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover staging file is invisible to listings and reads.
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

/// A streaming upload into a staging file; invisible until [`LocalUpload::finish`].
#[derive(Debug)]
pub(super) struct LocalUpload {
    key: String,
    /// `None` only while a write runs on the blocking pool, or after it was cancelled.
    staged: Option<Staged>,
}

impl LocalUpload {
    pub(super) async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectsError> {
        let mut staged = self.take()?;
        let key = self.key.clone();
        let (staged, result) = blocking_raw(move || {
            let result = staged.file.write_all(&chunk);
            (staged, result)
        })
        .await?;
        self.staged = Some(staged);
        result.map_err(|e| ObjectsError::io(format!("writing object `{key}`"), e))
    }

    pub(super) async fn finish(mut self) -> Result<ObjectInfo, ObjectsError> {
        let staged = self.take()?;
        let key = self.key.clone();
        blocking(move || staged.commit(&key)).await
    }

    pub(super) async fn abort(mut self) -> Result<(), ObjectsError> {
        if let Some(staged) = self.staged.take() {
            blocking(move || {
                drop(staged);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    fn take(&mut self) -> Result<Staged, ObjectsError> {
        self.staged.take().ok_or_else(|| {
            ObjectsError::Backend(format!(
                "upload of `{}` was interrupted by a cancelled write; start it again",
                self.key
            ))
        })
    }
}

/// The same `ObjectInfo` that `LocalFileSystem::head` reports for this file, including
/// its e-tag scheme (inode, mtime in microseconds, size, in hex).
fn info_from_metadata(key: &str, meta: &std::fs::Metadata) -> ObjectInfo {
    let last_modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime = last_modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let inode = inode(meta);
    let size = meta.len();
    ObjectInfo {
        key: key.to_string(),
        size,
        last_modified,
        e_tag: Some(format!("{inode:x}-{mtime:x}-{size:x}")),
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the root and any missing ancestors, syncing each new entry's parent.
fn create_root(root: &Path) -> Result<(), ObjectsError> {
    let ctx = || format!("creating object root {}", root.display());
    let mut missing = Vec::new();
    let mut probe = Some(root);
    while let Some(dir) = probe {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            break;
        }
        missing.push(dir.to_path_buf());
        probe = dir.parent();
    }
    std::fs::create_dir_all(root).map_err(|e| ObjectsError::io(ctx(), e))?;
    for dir in missing.iter().rev() {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fsync_dir(parent).map_err(|e| ObjectsError::io(ctx(), e))?;
    }
    Ok(())
}

/// Runs blocking filesystem work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ObjectsError> + Send + 'static,
) -> Result<T, ObjectsError> {
    blocking_raw(f).await?
}

async fn blocking_raw<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ObjectsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ObjectsError::Backend(format!("filesystem task failed: {e}")))
}
