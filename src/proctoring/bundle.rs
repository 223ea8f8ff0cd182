//! Evidence bundles: one tar archive per session with its protocol, score
//! explanation, session record and every object under the session's prefix,
//! described by a manifest (every file and protocol entry with its SHA-256,
//! the chain head, instance, host, export time) that the instance's Ed25519
//! key signs. [`verify`] needs only the archive and, optionally, a pinned
//! public key: no store, no network.

use super::evidence_key::{EvidenceKey, PublicKey};
use super::metrics::Score;
use super::sessions::{self, Session};
use crate::objects::{Objects, ObjectsError};
use crate::store::chain::{self, ChainError, Follower};
use crate::store::{Store, StoreError, catalog};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};

pub const FORMAT: &str = "invigil-evidence/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const PROTOCOL: &str = "protocol.jsonl";
pub const SCORE: &str = "score.json";
pub const SESSION: &str = "session.json";
/// Objects appear in the archive as `objects/<object key>`.
pub const OBJECTS_DIR: &str = "objects/";

/// The largest manifest, signature or protocol file read into memory.
const MAX_TEXT_FILE: u64 = 256 * 1024 * 1024;

/// Why a bundle cannot be made or does not verify; each names the first
/// file or entry that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a readable tar archive: {0}")]
    Archive(String),
    #[error("{0}: missing from the bundle")]
    Missing(String),
    #[error("{0}: in the bundle but not in the manifest")]
    Unlisted(String),
    #[error("{0}: appears twice in the bundle")]
    Duplicate(String),
    #[error("{0}: not a regular file")]
    NotAFile(String),
    #[error("manifest.json: {0}")]
    Manifest(String),
    #[error("manifest.sig: {0}")]
    Signature(String),
    #[error("protocol.jsonl line {line}: {message}")]
    Entry { line: usize, message: String },
    #[error("{path}: content does not match its SHA-256 in the manifest")]
    Mismatch { path: String },
    #[error("the session's protocol is broken: {0}")]
    Chain(#[from] ChainError),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    #[error("writing the bundle: {0}")]
    Write(String),
}

/// Who exported, from where; part of the signed manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance's public name (`MANAGER_HOST`).
    pub name: String,
    /// The machine it ran on.
    pub machine: String,
    pub version: String,
}

impl Instance {
    /// This build on this machine, under the instance's public name.
    pub fn new(name: &str) -> Self {
        Instance {
            name: name.to_string(),
            machine: gethostname::gethostname().to_string_lossy().to_string(),
            version: crate::VERSION.to_string(),
        }
    }
}

/// The instance's key with the identity it signs under.
#[derive(Debug)]
pub struct Signer {
    pub key: EvidenceKey,
    pub instance: Instance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub student: String,
    pub subject: String,
    pub status: String,
    pub identifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainHead {
    pub scope: String,
    pub entries: u64,
    pub head: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryHash {
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub instance: Instance,
    pub host: HostInfo,
    pub session: SessionInfo,
    pub exported_at: u64,
    pub exported_by: String,
    /// Base64 Ed25519 public key of the signer.
    pub public_key: String,
    pub chain: ChainHead,
    pub entries: Vec<EntryHash>,
    pub files: Vec<FileHash>,
}

/// What a bundle is made from, read from the store in one snapshot.
pub struct Collected {
    pub session: Session,
    pub host: HostInfo,
    pub entries: Vec<Map<String, Value>>,
    pub score: Score,
}

/// The session with this id on any host (ids are random and unique), for
/// the command line, which has no Host header.
pub fn find_session(store: &dyn Store, id: &str) -> Result<Option<Session>, StoreError> {
    let suffix = format!("\0{id}");
    Ok(store
        .scan(catalog::SESSIONS, &crate::store::Scan::all())?
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"i/") && k.ends_with(suffix.as_bytes()))
        .find_map(|(_, v)| serde_json::from_slice::<Session>(&v).ok())
        .filter(|s| s.id == id))
}

/// Reads a session's record, protocol (checked against its chain) and score.
pub fn collect(store: &dyn Store, host_id: &str, id: &str) -> Result<Collected, BundleError> {
    let session = sessions::get(store, host_id, id)
        .map_err(|_| BundleError::NotFound(format!("session {id}")))?;
    let host = crate::auth::hosts::get(store, host_id)
        .map_err(|_| BundleError::NotFound(format!("host {host_id}")))?;
    let scope = session.scope();
    let entries = store.read(|tx| {
        let (head, _) = chain::head(tx, catalog::PROTOCOL, &scope)?;
        let mut all = Vec::new();
        while (all.len() as u64) < head {
            let from = all.len() as u64 + 1;
            let page = chain::range(tx, catalog::PROTOCOL, &scope, from, head, 1000)?;
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        Ok::<_, StoreError>(all)
    })?;
    // The evidence must be intact before it is signed.
    let mut follower = Follower::new(&scope);
    for e in &entries {
        follower.next(e.get("seq").and_then(Value::as_u64).unwrap_or(0), e)?;
    }
    let score =
        sessions::score(store, &session).map_err(|e| BundleError::NotFound(e.to_string()))?;
    Ok(Collected {
        session,
        host: HostInfo {
            id: host.id,
            title: host.title,
        },
        entries,
        score,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

struct Archive<W: Write> {
    tar: tar::Builder<W>,
    mtime: u64,
    files: Vec<FileHash>,
}

impl<W: Write> Archive<W> {
    fn add(&mut self, path: &str, data: &[u8], listed: bool) -> Result<(), BundleError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, path, data)
            .map_err(|e| BundleError::Write(e.to_string()))?;
        if listed {
            self.files.push(FileHash {
                path: path.to_string(),
                size: data.len() as u64,
                sha256: sha256_hex(data),
            });
        }
        Ok(())
    }
}

/// Writes the bundle of `collected` to `out`: the protocol, score, session,
/// every object under the session's prefix (fetched one at a time), then the
/// manifest and its signature. Returns the manifest.
pub async fn write<W: Write>(
    collected: &Collected,
    objects: &Objects,
    key: &EvidenceKey,
    instance: Instance,
    exported_by: &str,
    exported_at: u64,
    out: W,
) -> Result<Manifest, BundleError> {
    let mut archive = Archive {
        tar: tar::Builder::new(out),
        mtime: exported_at,
        files: Vec::new(),
    };
    let mut protocol = Vec::new();
    let mut entries = Vec::new();
    for e in &collected.entries {
        serde_json::to_writer(&mut protocol, e).map_err(|e| BundleError::Write(e.to_string()))?;
        protocol.push(b'\n');
        entries.push(EntryHash {
            seq: e.get("seq").and_then(Value::as_u64).unwrap_or(0),
            hash: e
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    archive.add(PROTOCOL, &protocol, true)?;
    archive.add(SCORE, &pretty(&collected.score), true)?;
    archive.add(SESSION, &pretty(&collected.session), true)?;
    // `Objects::list` matches whole segments and takes the prefix without
    // its trailing `/`.
    let prefix = collected.session.object_prefix();
    let mut listed = objects.list(prefix.trim_end_matches('/')).await?;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    for info in listed {
        let data = objects.get(&info.key).await?;
        archive.add(&format!("{OBJECTS_DIR}{}", info.key), &data, true)?;
    }
    let s = &collected.session;
    let manifest = Manifest {
        format: FORMAT.to_string(),
        instance,
        host: collected.host.clone(),
        session: SessionInfo {
            id: s.id.clone(),
            student: s.student.clone(),
            subject: s.subject.clone(),
            status: s.status.as_str().to_string(),
            identifier: s.identifier.clone(),
        },
        exported_at,
        exported_by: exported_by.to_string(),
        public_key: key.public().to_base64(),
        chain: ChainHead {
            scope: s.scope(),
            entries: entries.len() as u64,
            head: entries
                .last()
                .map_or(chain::GENESIS.to_string(), |e| e.hash.clone()),
        },
        entries,
        files: std::mem::take(&mut archive.files),
    };
    let bytes = pretty(&manifest);
    archive.add(MANIFEST, &bytes, false)?;
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&bytes));
    archive.add(SIGNATURE, format!("{signature}\n").as_bytes(), false)?;
    archive
        .tar
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| BundleError::Write(e.to_string()))?;
    Ok(manifest)
}

/// Pretty JSON with a final newline.
fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).unwrap_or_default();
    v.push(b'\n');
    v
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub manifest: Manifest,
    /// The signer's fingerprint.
    pub fingerprint: String,
    /// Whether the signature was checked against a key the caller gave,
    /// rather than the one the bundle itself carries.
    pub pinned: bool,
}

/// A file read from the archive: its digest and size, and its bytes when
/// verification needs them.
struct Read_ {
    sha256: String,
    size: u64,
    bytes: Option<Vec<u8>>,
}

/// Verifies a bundle from its bytes alone: the signature (against `pinned`
/// when given, else the key in the manifest), every listed file's presence
/// and SHA-256, no unlisted file, and every protocol entry against the
/// manifest and the hash chain. The error names the first mismatch.
pub fn verify(reader: impl Read, pinned: Option<&PublicKey>) -> Result<Verified, BundleError> {
    let files = read_archive(reader)?;
    let text = |name: &str| -> Result<&[u8], BundleError> {
        files
            .get(name)
            .and_then(|f| f.bytes.as_deref())
            .ok_or_else(|| BundleError::Missing(name.to_string()))
    };
    let manifest_bytes = text(MANIFEST)?;
    let signature = text(SIGNATURE)?;
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| BundleError::Manifest(format!("not a valid manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest(format!(
            "format {:?} is not {FORMAT}",
            manifest.format
        )));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim_ascii())
        .map_err(|_| BundleError::Signature("not base64".into()))?;
    let embedded = PublicKey::parse(&manifest.public_key)
        .map_err(|e| BundleError::Manifest(format!("public_key: {e}")))?;
    let key = pinned.unwrap_or(&embedded);
    if !key.verifies(manifest_bytes, &signature) {
        return Err(BundleError::Signature(match pinned {
            Some(k) if *k != embedded => format!(
                "not signed by the given key {} (the bundle names {})",
                k.fingerprint(),
                embedded.fingerprint()
            ),
            _ => format!(
                "does not match manifest.json under key {} (the manifest was altered)",
                key.fingerprint()
            ),
        }));
    }
    for listed in &manifest.files {
        if !files.contains_key(&listed.path) {
            return Err(BundleError::Missing(listed.path.clone()));
        }
    }
    let listed: BTreeMap<&str, &FileHash> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for path in files.keys() {
        if path != MANIFEST && path != SIGNATURE && !listed.contains_key(path.as_str()) {
            return Err(BundleError::Unlisted(path.clone()));
        }
    }
    check_protocol(&manifest, text(PROTOCOL)?)?;
    for f in &manifest.files {
        let found = &files[&f.path];
        if found.sha256 != f.sha256 || found.size != f.size {
            return Err(BundleError::Mismatch {
                path: f.path.clone(),
            });
        }
    }
    Ok(Verified {
        fingerprint: key.fingerprint(),
        pinned: pinned.is_some(),
        manifest,
    })
}

/// Every protocol line against the manifest's entry list, in order, and
/// against the chain rules (the same [`Follower`] the store uses).
fn check_protocol(manifest: &Manifest, protocol: &[u8]) -> Result<(), BundleError> {
    let mut follower = Follower::new(&manifest.chain.scope);
    let lines: Vec<&[u8]> = protocol
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        let bad = |message: String| BundleError::Entry { line, message };
        let entry: Map<String, Value> =
            serde_json::from_slice(raw).map_err(|e| bad(format!("not a JSON entry: {e}")))?;
        let seq = entry.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let hash = entry
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(expected) = manifest.entries.get(i) else {
            return Err(bad(format!("entry #{seq} is not in the manifest")));
        };
        if expected.seq != seq {
            return Err(bad(format!(
                "entry #{seq} where the manifest lists #{} (entries reordered or removed)",
                expected.seq
            )));
        }
        if expected.hash != hash {
            return Err(bad(format!(
                "entry #{seq}: its hash differs from the manifest's"
            )));
        }
        follower
            .next(seq, &entry)
            .map_err(|e| bad(format!("entry #{seq}: {e}")))?;
    }
    if let Some(missing) = manifest.entries.get(lines.len()) {
        return Err(BundleError::Entry {
            line: lines.len() + 1,
            message: format!("entry #{} of the manifest is missing", missing.seq),
        });
    }
    let (count, head) = follower.head();
    if count != manifest.chain.entries || (count > 0 && head != manifest.chain.head) {
        return Err(BundleError::Manifest(format!(
            "the chain head #{} {} is not the protocol's #{count} {head}",
            manifest.chain.entries, manifest.chain.head
        )));
    }
    Ok(())
}

/// Reads every archive member: hashes all, keeps the bytes of the manifest,
/// signature and protocol.
fn read_archive(reader: impl Read) -> Result<BTreeMap<String, Read_>, BundleError> {
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| BundleError::Archive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| BundleError::Archive(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| BundleError::Archive(e.to_string()))?
            .to_string_lossy()
            .to_string();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::NotAFile(path));
        }
        let keep = matches!(path.as_str(), MANIFEST | SIGNATURE | PROTOCOL);
        if keep && entry.size() > MAX_TEXT_FILE {
            return Err(BundleError::Archive(format!("{path} is too large")));
        }
        let mut hasher = Sha256::new();
        let mut bytes = keep.then(Vec::new);
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| BundleError::Archive(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if let Some(b) = bytes.as_mut() {
                b.extend_from_slice(&buf[..n]);
            }
        }
        let read = Read_ {
            sha256: hex::encode(hasher.finalize()),
            size,
            bytes,
        };
        if files.insert(path.clone(), read).is_some() {
            return Err(BundleError::Duplicate(path));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
