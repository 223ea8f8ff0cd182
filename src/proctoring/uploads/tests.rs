use super::*;
use crate::auth::Principal;
use crate::auth::hosts::{self, HostInput};
use crate::proctoring::sessions::{Action, NewSession};
use crate::proctoring::templates::{self, TemplateInput};
use crate::store::MemoryStore;

struct Fixture {
    uploads: Uploads,
    store: Arc<dyn Store>,
    session: Session,
    _dir: tempfile::TempDir,
}

fn fixture(max_chunk: u64) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec!["a.test".into()]),
        ..HostInput::default()
    };
    let host = hosts::create(store.as_ref(), &m, &input, "").unwrap();
    let t: TemplateInput =
        serde_json::from_value(serde_json::json!({ "id": "t", "name": "T" })).unwrap();
    templates::save(store.as_ref(), &host.id, "adm", &t).unwrap();
    let new = NewSession {
        student: "ann".into(),
        template: "t".into(),
        ..NewSession::default()
    };
    let s = sessions::create(store.as_ref(), &host.id, "adm", &new, 1000).unwrap();
    let session = sessions::act(
        store.as_ref(),
        &host.id,
        &s.id,
        "ann",
        Action::Start,
        1001,
        None,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::local(dir.path()).unwrap();
    let settings = Settings {
        max_chunk,
        expires: Duration::from_secs(600),
    };
    Fixture {
        uploads: Uploads::new(store.clone(), objects, settings, None),
        store,
        session,
        _dir: dir,
    }
}

fn meta(kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("kind".to_string(), kind.to_string())])
}

fn body(data: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::iter(data.chunks(3).map(|c| Ok(Bytes::from_static(c))))
}

impl Fixture {
    async fn create(&self, length: Option<u64>, kind: &str) -> Upload {
        let new = NewUpload {
            length,
            metadata: meta(kind),
        };
        self.uploads
            .create(&self.session, "ann", new, 2000)
            .await
            .unwrap()
    }

    async fn patch(
        &self,
        u: &Upload,
        offset: u64,
        data: &'static [u8],
        sha: Option<[u8; 32]>,
    ) -> Result<Appended, UploadError> {
        self.patch_at(u, offset, data, sha, 2001).await
    }

    async fn patch_at(
        &self,
        u: &Upload,
        offset: u64,
        data: &'static [u8],
        sha: Option<[u8; 32]>,
        now: u64,
    ) -> Result<Appended, UploadError> {
        let s = &self.session;
        self.uploads
            .append(
                &s.host_id,
                &s.id,
                &u.id,
                "ann",
                offset,
                None,
                sha,
                body(data),
                now,
            )
            .await
    }
}

#[tokio::test]
async fn chunks_append_in_order_and_join_the_chain() {
    let f = fixture(1024);
    let u = f.create(Some(10), "webcam").await;
    assert_eq!(
        f.patch(&u, 0, b"01234", None).await.unwrap().upload.offset,
        5
    );
    // The same chunk again is acknowledged without storing anything new.
    let again = f.patch(&u, 0, b"01234", None).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.upload.offset, 5);
    // Different bytes at a stored offset, or a gap, are conflicts naming the offset.
    for (at, data) in [(0, b"xxxxx".as_slice()), (7, b"89".as_slice())] {
        match f.patch(&u, at, data, None).await {
            Err(UploadError::OffsetMismatch { current: 5, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    let sha: [u8; 32] = Sha256::digest(b"56789").into();
    let done = f.patch(&u, 5, b"56789", Some(sha)).await.unwrap().upload;
    assert!(done.is_complete());
    assert_eq!(done.chunks, 2);
    let chunks = f.uploads.chunks(&done).await.unwrap();
    let mut joined = Vec::new();
    for c in &chunks {
        let bytes = f.uploads.objects().get(&c.object).await.unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), c.sha256);
        joined.extend_from_slice(&bytes);
    }
    assert_eq!(joined, b"0123456789");
    assert!(chunks[0].object.starts_with(&f.session.object_prefix()));
    let scope = f.session.scope();
    let entries = protocol::list(f.store.as_ref(), &scope, Some(Kind::Upload), None, 10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].attachments, vec![chunks[1].object.clone()]);
    assert_eq!(entries[0].data["sha256"], chunks[1].sha256);
    protocol::verify(f.store.as_ref(), &scope).unwrap();
}

#[tokio::test]
async fn bad_chunks_are_refused_and_leave_nothing() {
    let f = fixture(8);
    let u = f.create(Some(20), "screen").await;
    match f.patch(&u, 0, b"abc", Some([0; 32])).await {
        Err(UploadError::ChecksumMismatch { .. }) => {}
        other => panic!("{other:?}"),
    }
    match f.patch(&u, 0, b"0123456789", None).await {
        Err(e @ UploadError::ChunkTooLarge { .. }) => {
            assert!(e.to_string().contains("UPLOAD_LIMIT"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"ab")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let s = &f.session;
    let cut = f
        .uploads
        .append(
            &s.host_id, &s.id, &u.id, "ann", 0, None, None, failing, 2001,
        )
        .await;
    assert!(matches!(cut, Err(UploadError::Body(_))), "{cut:?}");
    let small = f.create(Some(4), "screen").await;
    assert!(matches!(
        f.patch(&small, 0, b"abcdef", None).await,
        Err(UploadError::TooLong(_))
    ));
    assert_eq!(
        f.uploads
            .get(&s.host_id, &s.id, &u.id)
            .await
            .unwrap()
            .offset,
        0
    );
    assert!(
        f.uploads
            .objects()
            .list(s.object_prefix().trim_end_matches('/'))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn deferred_length_is_declared_later() {
    let f = fixture(1024);
    let u = f.create(None, "webcam").await;
    f.patch(&u, 0, b"abc", None).await.unwrap();
    let s = &f.session;
    let done = f
        .uploads
        .append(
            &s.host_id,
            &s.id,
            &u.id,
            "ann",
            3,
            Some(6),
            None,
            body(b"def"),
            2002,
        )
        .await
        .unwrap()
        .upload;
    assert_eq!((done.length, done.offset), (Some(6), 6));
    assert!(done.is_complete());
}

#[tokio::test]
async fn stopped_sessions_take_no_uploads() {
    let f = fixture(1024);
    let u = f.create(Some(10), "webcam").await;
    let s = &f.session;
    sessions::act(
        f.store.as_ref(),
        &s.host_id,
        &s.id,
        "ann",
        Action::Stop,
        2000,
        None,
    )
    .unwrap();
    // What the browser recorded before the stop is still taken for a while
    // (it may have been offline when the proctor stopped) ...
    f.patch(&u, 0, b"abc", None).await.unwrap();
    // ... but not once UPLOAD_EXPIRES has passed since the stop.
    let late = 2000 + f.uploads.settings.expires.as_secs() + 1;
    let err = f.patch_at(&u, 3, b"def", None, late).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot upload to a stopped session") || text.contains("expired"),
        "{err}"
    );
    let new = NewUpload {
        length: Some(3),
        metadata: meta("webcam"),
    };
    assert!(f.uploads.create(s, "ann", new, 2001).await.is_err());
}

#[tokio::test]
async fn a_snapshot_pixel_bomb_is_refused_before_it_is_stored() {
    let f = fixture(1024);
    let png = snapshots::pixel_bomb();
    let png: &'static [u8] = Box::leak(png.into_boxed_slice());
    let u = f.create(Some(png.len() as u64), "snapshot").await;
    let err = f.patch(&u, 0, png, None).await.unwrap_err().to_string();
    assert!(err.contains("50000×50000"), "{err}");
    let s = &f.session;
    assert_eq!(
        f.uploads
            .get(&s.host_id, &s.id, &u.id)
            .await
            .unwrap()
            .offset,
        0
    );
    let too_big = NewUpload {
        length: Some(snapshots::MAX_BYTES + 1),
        metadata: meta("snapshot"),
    };
    assert!(matches!(
        f.uploads.create(s, "ann", too_big, 2000).await,
        Err(UploadError::TooLong(_))
    ));
}

#[tokio::test]
async fn incomplete_uploads_expire_and_complete_ones_stay() {
    let f = fixture(1024);
    let open = f.create(Some(10), "webcam").await;
    f.patch(&open, 0, b"abc", None).await.unwrap();
    let done = f.create(Some(3), "webcam").await;
    f.patch(&done, 0, b"xyz", None).await.unwrap();
    assert_eq!(f.uploads.expire(2100).await.unwrap(), 0, "not yet");
    assert_eq!(f.uploads.expire(2001 + 600).await.unwrap(), 1);
    let s = &f.session;
    let left = f.uploads.list(&s.host_id, &s.id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, done.id);
    let gone = f.patch(&open, 3, b"def", None).await.unwrap_err();
    assert!(gone.to_string().contains("not found"), "{gone}");
    assert!(
        f.uploads
            .terminate(&s.host_id, &s.id, &done.id, "ann", 3000)
            .await
            .is_err(),
        "complete uploads are evidence"
    );
    protocol::verify(f.store.as_ref(), &s.scope()).unwrap();
}

#[test]
fn a_deferred_length_is_set_once_between_the_offset_and_the_maximum() {
    assert_eq!(settle_length(None, 10, None).unwrap(), None);
    assert_eq!(settle_length(None, 10, Some(10)).unwrap(), Some(10));
    assert_eq!(settle_length(Some(20), 10, Some(20)).unwrap(), Some(20));
    assert_eq!(settle_length(Some(20), 10, None).unwrap(), Some(20));
    assert!(matches!(
        settle_length(Some(20), 10, Some(21)),
        Err(UploadError::Domain(_))
    ));
    assert!(matches!(
        settle_length(None, 10, Some(9)),
        Err(UploadError::TooLong(_))
    ));
    assert!(matches!(
        settle_length(None, 0, Some(MAX_LENGTH + 1)),
        Err(UploadError::TooLong(_))
    ));
}

#[test]
fn a_chunk_stops_at_the_chunk_limit_and_at_the_upload_length() {
    assert!(check_chunk_size(100, 100, 100, Some(100), 0).is_ok());
    assert!(matches!(
        check_chunk_size(101, 100, u64::MAX, None, 0),
        Err(UploadError::ChunkTooLarge { limit: 100 })
    ));
    let e = check_chunk_size(6, 100, 5, Some(15), 10).unwrap_err();
    assert!(
        e.to_string().contains("length 15 (offset 10, 6 bytes"),
        "{e}"
    );
}
