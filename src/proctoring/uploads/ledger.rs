//! The store side of an upload's life: recording a durable chunk and
//! removing an upload, each inside the caller's transaction with its
//! protocol entry.

use super::*;

/// Records a durable chunk: the upload's offset, the chunk, the expiry index
/// and the protocol entry, all in the caller's transaction.
pub(super) fn commit_chunk(
    tx: &mut dyn WriteTx,
    mut u: Upload,
    chunk: Chunk,
    by: &str,
    completes: bool,
    now: u64,
    expires_secs: u64,
) -> Result<Upload, UploadError> {
    let current = load(tx, &u.host_id, &u.session_id, &u.id)?;
    if current.offset != chunk.offset {
        return Err(UploadError::OffsetMismatch {
            given: chunk.offset,
            current: current.offset,
        });
    }
    let s = sessions::load(tx, &u.host_id, &u.session_id)?
        .ok_or_else(|| ProctoringError::NotFound(format!("session {}", u.session_id)))?;
    check_appendable(&s, &current, now, expires_secs)?;
    tx.delete(
        catalog::UPLOADS,
        &expiry_key(current.expires_at, &u.host_id, &u.session_id, &u.id),
    )?;
    u.offset = chunk.offset + chunk.size;
    u.chunks = current.chunks + 1;
    u.expires_at = now + expires_secs;
    if completes {
        u.completed_at = Some(now);
    } else {
        tx.put(
            catalog::UPLOADS,
            &expiry_key(u.expires_at, &u.host_id, &u.session_id, &u.id),
            b"",
        )?;
    }
    tx.put_json(
        catalog::UPLOADS,
        &chunk_key(&u.host_id, &u.session_id, &u.id, chunk.offset),
        &chunk,
    )?;
    tx.put_json(
        catalog::UPLOADS,
        &record_key(&u.host_id, &u.session_id, &u.id),
        &u,
    )?;
    let data = serde_json::json!({
        "upload": u.id,
        "kind": u.kind.as_str(),
        "object": chunk.object,
        "offset": chunk.offset,
        "size": chunk.size,
        "sha256": chunk.sha256,
        "complete": completes,
    });
    protocol::append_with(
        tx,
        &sessions::scope(&u.host_id, &u.session_id),
        now,
        by,
        Kind::Upload,
        data,
        vec![chunk.object],
    )?;
    Ok(u)
}

/// Deletes an upload's records and notes the removal in the protocol; returns
/// the chunks whose objects the caller removes after the commit.
pub(super) fn remove(
    tx: &mut dyn WriteTx,
    u: &Upload,
    why: &str,
    by: &str,
    now: u64,
) -> Result<Vec<Chunk>, UploadError> {
    let prefix = chunk_prefix(&u.host_id, &u.session_id, &u.id);
    let rows = tx.scan(catalog::UPLOADS, &Scan::prefix(&prefix))?;
    let mut chunks = Vec::new();
    for (k, v) in rows {
        tx.delete(catalog::UPLOADS, &k)?;
        if let Ok(c) = serde_json::from_slice::<Chunk>(&v) {
            chunks.push(c);
        }
    }
    tx.delete(
        catalog::UPLOADS,
        &expiry_key(u.expires_at, &u.host_id, &u.session_id, &u.id),
    )?;
    tx.delete(
        catalog::UPLOADS,
        &record_key(&u.host_id, &u.session_id, &u.id),
    )?;
    let data = serde_json::json!({
        "upload": u.id,
        "kind": u.kind.as_str(),
        "removed": why,
        "offset": u.offset,
        "chunks": chunks.len(),
    });
    protocol::append(
        tx,
        &sessions::scope(&u.host_id, &u.session_id),
        now,
        by,
        Kind::Upload,
        data,
    )?;
    Ok(chunks)
}

/// Deletes every upload record, chunk record and expiry entry of a session
/// (erasure), with no protocol entry: the protocol goes too. Returns how many
/// uploads there were.
pub fn remove_session_in(
    tx: &mut dyn WriteTx,
    host: &str,
    session: &str,
) -> Result<u64, StoreError> {
    let records = tx.scan(
        catalog::UPLOADS,
        &Scan::prefix(format!("u/{host}\0{session}\0")),
    )?;
    for (k, v) in &records {
        if let Ok(u) = serde_json::from_slice::<Upload>(v) {
            tx.delete(
                catalog::UPLOADS,
                &expiry_key(u.expires_at, host, session, &u.id),
            )?;
        }
        tx.delete(catalog::UPLOADS, k)?;
    }
    let chunks = tx.scan(
        catalog::UPLOADS,
        &Scan::prefix(format!("c/{host}\0{session}\0")),
    )?;
    for (k, _) in chunks {
        tx.delete(catalog::UPLOADS, &k)?;
    }
    Ok(records.len() as u64)
}
