//! The behaviour every backend must have, as one suite of checks over [`Objects`].
//!
//! It is run against the local backend by the unit tests and against a real
//! S3-compatible server by the integration tests, so both backends are held to the
//! same contract. Test support only: the checks panic with a message on failure.
//! Everything is written under `prefix` and removed at the end, so the suite can share
//! a bucket or directory with other data.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream;

use super::{Objects, ObjectsError};

const MIB: usize = 1024 * 1024;

/// Runs every check under `prefix`, then removes what it wrote.
pub async fn run(objects: &Objects, prefix: &str) {
    put_get_overwrite(objects, prefix).await;
    head_sizes_and_tags(objects, prefix).await;
    missing_objects(objects, prefix).await;
    ranged_gets(objects, prefix).await;
    list_with_prefixes(objects, prefix).await;
    delete_is_idempotent(objects, prefix).await;
    multipart_upload(objects, prefix).await;
    small_and_empty_uploads(objects, prefix).await;
    abandoned_uploads_leave_nothing(objects, prefix).await;
    invalid_keys_rejected(objects, prefix).await;
    concurrent_puts(objects, prefix).await;
    clean_up(objects, prefix).await;
}

/// Deterministic bytes that do not repeat at part boundaries.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and any misplaced byte shows up as a mismatch.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn must<T>(result: Result<T, ObjectsError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn assert_same(actual: &Bytes, expected: &Bytes, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    assert!(actual == expected, "{what}: content differs");
}

pub async fn put_get_overwrite(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/basic/snapshot.jpg");
    let first = pattern(1000, 1);
    let info = must(objects.put(&key, first.clone()).await, "put");
    assert_eq!(info.key, key);
    assert_eq!(info.size, 1000);
    assert_same(
        &must(objects.get(&key).await, "get"),
        &first,
        "get after put",
    );

    let second = pattern(10, 2);
    let info = must(objects.put(&key, second.clone()).await, "overwrite");
    assert_eq!(info.size, 10);
    assert_same(
        &must(objects.get(&key).await, "get"),
        &second,
        "get after overwrite",
    );
    assert!(must(objects.exists(&key).await, "exists"));
}

pub async fn head_sizes_and_tags(objects: &Objects, prefix: &str) {
    for (name, len) in [("empty", 0), ("one", 1), ("some", 4097)] {
        let key = format!("{prefix}/head/{name}");
        let put = must(objects.put(&key, pattern(len, 3)).await, "put");
        let head = must(objects.head(&key).await, "head");
        assert_eq!(head.key, key);
        assert_eq!(head.size, len as u64, "{key}: size");
        assert!(head.e_tag.is_some(), "{key}: e-tag");
        assert_eq!(put.e_tag, head.e_tag, "{key}: put and head e-tags");
        let age = SystemTime::now()
            .duration_since(head.last_modified)
            .unwrap_or_else(|e| e.duration());
        assert!(
            age < Duration::from_secs(3600),
            "{key}: last_modified {age:?} away"
        );
    }
    let key = format!("{prefix}/head/some");
    let before = must(objects.head(&key).await, "head");
    must(objects.put(&key, pattern(4097, 4)).await, "overwrite");
    let after = must(objects.head(&key).await, "head");
    assert_ne!(
        before.e_tag, after.e_tag,
        "e-tag must change with the content"
    );
}

pub async fn missing_objects(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/missing/nothing-here");
    for err in [
        objects.get(&key).await.err(),
        objects.head(&key).await.err(),
        objects.get_range(&key, 0..1).await.err(),
        objects.get_range(&key, 0..0).await.err(),
    ] {
        match err {
            Some(ObjectsError::NotFound { key: k }) => assert_eq!(k, key),
            other => panic!("expected NotFound for {key}, got {other:?}"),
        }
    }
    let message = ObjectsError::NotFound { key: key.clone() }.to_string();
    assert!(message.contains(&key), "{message}");
    assert!(!must(objects.exists(&key).await, "exists"));
}

pub async fn ranged_gets(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/range/clip.webm");
    let data = pattern(10_000, 5);
    must(objects.put(&key, data.clone()).await, "put");
    let n = data.len() as u64;
    for range in [0..100, 4000..6500, n - 100..n, 0..n, n - 1..n, 0..1] {
        let got = must(objects.get_range(&key, range.clone()).await, "get_range");
        let expected = data.slice(range.start as usize..range.end as usize);
        assert_same(&got, &expected, &format!("range {range:?}"));
    }
    for empty in [0..0, 500..500, n..n] {
        let got = must(objects.get_range(&key, empty.clone()).await, "empty range");
        assert!(got.is_empty(), "range {empty:?} should be empty");
    }
    #[allow(clippy::reversed_empty_ranges)]
    let bad = [n - 5..n + 1, n..n + 1, n + 10..n + 20, n + 1..n + 1, 20..10];
    for range in bad {
        match objects.get_range(&key, range.clone()).await {
            Err(ObjectsError::RangeNotSatisfiable {
                key: k,
                start,
                end,
                size,
            }) => {
                assert_eq!(
                    (k.as_str(), start, end, size),
                    (key.as_str(), range.start, range.end, n)
                );
            }
            other => {
                panic!("range {range:?} of {n} bytes: expected RangeNotSatisfiable, got {other:?}")
            }
        }
    }
}

pub async fn list_with_prefixes(objects: &Objects, prefix: &str) {
    let base = format!("{prefix}/list");
    // Written out of order so that sorting is the listing's doing.
    let names = ["b", "ab/4", "a/b/3", "a/2", "a/1", "a/b/c/5"];
    for (i, name) in names.iter().enumerate() {
        must(
            objects
                .put(&format!("{base}/{name}"), pattern(i + 1, 6))
                .await,
            "put",
        );
    }
    let keys = |infos: Vec<super::ObjectInfo>| -> Vec<String> {
        infos.into_iter().map(|i| i.key).collect()
    };
    let full =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("{base}/{n}")).collect() };

    let all = must(objects.list(&base).await, "list all");
    for info in &all {
        let name = info.key.trim_start_matches(&format!("{base}/")).to_string();
        let i = names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("unexpected key {}", info.key));
        assert_eq!(info.size, i as u64 + 1, "{}: size in listing", info.key);
    }
    assert_eq!(
        keys(all),
        full(&["a/1", "a/2", "a/b/3", "a/b/c/5", "ab/4", "b"])
    );
    assert_eq!(
        keys(must(objects.list(&format!("{base}/a")).await, "list a")),
        full(&["a/1", "a/2", "a/b/3", "a/b/c/5"]),
        "a prefix matches whole segments"
    );
    assert_eq!(
        keys(must(
            objects.list(&format!("{base}/a/b/c")).await,
            "list a/b/c"
        )),
        full(&["a/b/c/5"])
    );
    assert!(must(objects.list(&format!("{base}/zzz")).await, "list missing").is_empty());
    assert!(
        must(
            objects.list(&format!("{base}/b")).await,
            "list of an object"
        )
        .is_empty(),
        "an object is not a prefix of itself"
    );
    let everything = keys(must(objects.list("").await, "list everything"));
    assert!(everything.contains(&format!("{base}/a/b/c/5")));
    let mut sorted = everything.clone();
    sorted.sort();
    assert_eq!(everything, sorted, "the full listing is sorted");
}

pub async fn delete_is_idempotent(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/delete/once");
    must(objects.put(&key, pattern(10, 7)).await, "put");
    must(objects.delete(&key).await, "delete");
    assert!(!must(objects.exists(&key).await, "exists after delete"));
    must(objects.delete(&key).await, "second delete");
    must(
        objects.delete(&format!("{prefix}/delete/never-was")).await,
        "delete missing",
    );
    assert!(must(objects.list(&format!("{prefix}/delete")).await, "list").is_empty());
}

pub async fn multipart_upload(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/multipart/recording.webm");
    let data = pattern(12 * MIB + 12_345, 8);
    // Uneven chunks, so chunk and part boundaries never line up.
    let chunk = MIB + 7;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..data.len())
        .step_by(chunk)
        .map(|start| Ok(data.slice(start..(start + chunk).min(data.len()))))
        .collect();
    let info = must(
        objects.put_stream(&key, stream::iter(chunks)).await,
        "put_stream 12 MiB",
    );
    assert_eq!(info.size, data.len() as u64);
    let head = must(objects.head(&key).await, "head");
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(info.e_tag, head.e_tag, "finish and head e-tags");
    assert_same(
        &must(objects.get(&key).await, "get"),
        &data,
        "multipart body",
    );

    let boundary = 5 * MIB as u64;
    let across = boundary - 1000..boundary + 1000;
    let got = must(objects.get_range(&key, across.clone()).await, "range");
    assert_same(
        &got,
        &data.slice(across.start as usize..across.end as usize),
        "range across a part boundary",
    );
}

pub async fn small_and_empty_uploads(objects: &Objects, prefix: &str) {
    let key = format!("{prefix}/upload/small");
    let mut upload = must(objects.upload(&key).await, "upload");
    let mut expected = Vec::new();
    for i in 0..3 {
        let part = pattern(10_000 + i, 9 + i as u64);
        expected.extend_from_slice(&part);
        must(upload.write(part).await, "write");
    }
    let info = must(upload.finish().await, "finish");
    assert_eq!(info.size, expected.len() as u64);
    assert_same(
        &must(objects.get(&key).await, "get"),
        &expected.into(),
        "small upload",
    );

    let key = format!("{prefix}/upload/empty");
    let upload = must(objects.upload(&key).await, "upload");
    assert_eq!(must(upload.finish().await, "finish").size, 0);
    assert_eq!(must(objects.head(&key).await, "head").size, 0);
    assert!(must(objects.get(&key).await, "get").is_empty());
}

pub async fn abandoned_uploads_leave_nothing(objects: &Objects, prefix: &str) {
    let base = format!("{prefix}/abandoned");

    // Aborted after a multipart upload has started.
    let key = format!("{base}/aborted");
    let mut upload = must(objects.upload(&key).await, "upload");
    must(upload.write(pattern(6 * MIB, 10)).await, "write");
    must(upload.abort().await, "abort");
    assert!(!must(objects.exists(&key).await, "exists after abort"));

    // Dropped without finishing.
    let key = format!("{base}/dropped");
    let mut upload = must(objects.upload(&key).await, "upload");
    must(upload.write(pattern(1000, 11)).await, "write");
    drop(upload);
    assert!(!must(objects.exists(&key).await, "exists after drop"));

    // The body fails half-way: the error says so, and the old object is untouched.
    let key = format!("{base}/replaced");
    let old = pattern(100, 12);
    must(objects.put(&key, old.clone()).await, "put");
    let body = stream::iter(vec![
        Ok(pattern(6 * MIB, 13)),
        Err(std::io::Error::other("camera disconnected")),
    ]);
    match objects.put_stream(&key, body).await {
        Err(e @ ObjectsError::Body { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&key) && message.contains("camera disconnected"),
                "{message}"
            );
        }
        other => panic!("expected a Body error, got {other:?}"),
    }
    assert_same(
        &must(objects.get(&key).await, "get"),
        &old,
        "old object after failed upload",
    );

    let listed: Vec<String> = must(objects.list(&base).await, "list")
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(listed, vec![key], "only the untouched object is visible");
}

pub async fn invalid_keys_rejected(objects: &Objects, prefix: &str) {
    let bad = [
        String::new(),
        format!("/{prefix}/abs"),
        format!("{prefix}//double"),
        format!("{prefix}/trailing/"),
        format!("{prefix}/../escape"),
        format!("{prefix}/stage#1"),
        format!("{prefix}/sp ace"),
        format!("{prefix}/{}", "x".repeat(1100)),
    ];
    for key in &bad {
        let results = [
            objects.put(key, Bytes::from_static(b"x")).await.err(),
            objects.get(key).await.err(),
            objects.get_range(key, 0..1).await.err(),
            objects.head(key).await.err(),
            objects.exists(key).await.err(),
            objects.delete(key).await.err(),
            objects.upload(key).await.err(),
            objects
                .put_stream(
                    key,
                    stream::iter(Vec::<Result<Bytes, std::io::Error>>::new()),
                )
                .await
                .err(),
        ];
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Some(ObjectsError::InvalidKey { key: k, reason }) => {
                    assert_eq!(&k, key, "operation {i}");
                    assert!(!reason.is_empty());
                }
                other => panic!("operation {i} on {key:?}: expected InvalidKey, got {other:?}"),
            }
        }
        if !key.is_empty() {
            assert!(
                matches!(
                    objects.list(key).await,
                    Err(ObjectsError::InvalidKey { .. })
                ),
                "list {key:?}"
            );
        }
    }
}

pub async fn concurrent_puts(objects: &Objects, prefix: &str) {
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let objects = objects.clone();
            let key = format!("{prefix}/concurrent/{i:02}");
            tokio::spawn(async move {
                let data = pattern(64 * 1024 + i as usize, 100 + i);
                objects.put(&key, data).await.map(|_| key)
            })
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(result) => {
                must(result, "concurrent put");
            }
            Err(e) => panic!("concurrent put task failed: {e}"),
        }
    }
    let listed = must(objects.list(&format!("{prefix}/concurrent")).await, "list");
    assert_eq!(listed.len(), 16);
    for (i, info) in listed.iter().enumerate() {
        let data = pattern(64 * 1024 + i, 100 + i as u64);
        assert_eq!(info.key, format!("{prefix}/concurrent/{i:02}"));
        assert_same(&must(objects.get(&info.key).await, "get"), &data, &info.key);
    }
}

pub async fn clean_up(objects: &Objects, prefix: &str) {
    for info in must(objects.list(prefix).await, "list") {
        must(objects.delete(&info.key).await, "delete");
    }
    assert!(must(objects.list(prefix).await, "list after clean-up").is_empty());
}
