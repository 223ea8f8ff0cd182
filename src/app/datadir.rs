//! The data directory: created on first start, checked writable, locked
//! against a second process, and the home of small secret files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Holds the exclusive lock on `DATA_DIR/invigil.lock` for the process lifetime.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

/// Creates `dir` (mode 0700) if needed and proves it writable.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok"))
        .map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks without creating anything: an existing directory must be writable,
/// a missing one must be creatable in its nearest existing parent.
pub fn check(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return prepare(dir);
    }
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|p| p.as_os_str().is_empty() || p.exists())
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("/"));
    prepare(parent).map_err(|e| format!("{} cannot be created: {e}", dir.display()))
}

/// Takes the lock; a second invigil on the same directory gets a clear refusal
/// naming the process that holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, String> {
    let path = dir.join("invigil.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another invigil process".to_string()
        } else {
            format!("another invigil process (pid {holder})")
        };
        return Err(format!(
            "{who} is already using {}; stop it or choose another DATA_DIR",
            dir.display()
        ));
    }
    file.set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(DataDirLock { _file: file, path })
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file created
/// with that mode (never readable by others, not even briefly), fsynced, renamed
/// into place, and the directory fsynced so the name survives a crash.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("secret".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Reads a secret file, tightening its mode to 0600 if someone loosened it.
pub fn read_secret_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode != 0o600 {
                tracing::warn!(
                    "{} had mode {mode:o}; set to 600 so only invigil's user can read it",
                    path.display()
                );
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock(dir.path()).expect("free again after the holder is gone");
    }

    #[test]
    fn secret_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_secret_file(&path, b"abc").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().unwrap(), b"abc");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            read_secret_file(&dir.path().join("none"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn unwritable_directory_is_named() {
        let err = prepare(Path::new("/proc/invigil-cannot-exist")).unwrap_err();
        assert!(err.contains("/proc/invigil-cannot-exist"), "{err}");
    }
}
