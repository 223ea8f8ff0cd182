use super::*;
use crate::auth::Principal;
use crate::auth::hosts::{self, HostInput};
use crate::proctoring::metrics::Metric;
use crate::proctoring::sessions::{Action, NewSession};
use crate::proctoring::templates::{self, Addons, TemplateInput};
use crate::store::MemoryStore;
use bytes::Bytes;

struct Fixture {
    bundle: Vec<u8>,
    key: EvidenceKey,
    _objects_dir: tempfile::TempDir,
}

/// A stopped session with periods, a chat-free protocol of a few entries and
/// two objects under its prefix (and one under another session's prefix,
/// which must not be exported).
async fn fixture() -> Fixture {
    let store = MemoryStore::new();
    let m = Principal::Manager {
        username: "m".into(),
    };
    let input = HostInput {
        domains: Some(vec!["a.test".into()]),
        ..HostInput::default()
    };
    let host = hosts::create(&store, &m, &input, "").unwrap();
    let t = TemplateInput {
        id: Some("final".into()),
        name: "Final".into(),
        addons: Addons::default(),
        weights: BTreeMap::from([(Metric::B2, 0.5)]),
        threshold: Some(70.0),
        period_secs: None,
        auto_conclusion: None,
    };
    templates::save(&store, &host.id, "adm", &t).unwrap();
    let new = NewSession {
        student: "ann".into(),
        template: "final".into(),
        ..NewSession::default()
    };
    let s = sessions::create(&store, &host.id, "adm", &new, 1000).unwrap();
    sessions::act(&store, &host.id, &s.id, "ann", Action::Start, 1001, None).unwrap();
    for (i, v) in [10.0, 40.0, 0.0].into_iter().enumerate() {
        let values = BTreeMap::from([(Metric::B2, v)]);
        sessions::add_period(&store, &host.id, &s.id, "ann", &values, 1010 + i as u64).unwrap();
    }
    sessions::act(&store, &host.id, &s.id, "pro", Action::Stop, 1100, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::local(dir.path()).unwrap();
    let prefix = s.object_prefix();
    objects
        .put(
            &format!("{prefix}recordings/webcam-0001.webm"),
            Bytes::from(vec![1u8; 5000]),
        )
        .await
        .unwrap();
    objects
        .put(
            &format!("{prefix}snapshots/0001.jpg"),
            Bytes::from_static(b"\xff\xd8jpeg"),
        )
        .await
        .unwrap();
    objects
        .put(
            &format!("sessions/{}/other/x.jpg", host.id),
            Bytes::from_static(b"no"),
        )
        .await
        .unwrap();
    let collected = collect(&store, &host.id, &s.id).unwrap();
    let key = EvidenceKey::from_seed(&[3; 32]);
    let instance = Instance {
        name: "exam.test".into(),
        machine: "box".into(),
        version: "test".into(),
    };
    let mut bundle = Vec::new();
    let manifest = write(
        &collected,
        &objects,
        &key,
        instance,
        "adm",
        2000,
        &mut bundle,
    )
    .await
    .unwrap();
    assert_eq!(
        manifest.entries.len(),
        6,
        "created, started, 3 periods, stopped"
    );
    assert_eq!(
        manifest.files.len(),
        5,
        "protocol, score, session, 2 objects"
    );
    Fixture {
        bundle,
        key,
        _objects_dir: dir,
    }
}

fn members(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bundle);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap()
}

fn tampered(bundle: &[u8], change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> String {
    let mut m = members(bundle);
    change(&mut m);
    verify(pack(&m).as_slice(), None).unwrap_err().to_string()
}

fn find<'a>(m: &'a mut [(String, Vec<u8>)], suffix: &str) -> &'a mut Vec<u8> {
    &mut m.iter_mut().find(|(p, _)| p.ends_with(suffix)).unwrap().1
}

#[tokio::test]
async fn an_intact_bundle_verifies_with_and_without_a_pinned_key() {
    let f = fixture().await;
    let v = verify(f.bundle.as_slice(), None).unwrap();
    assert!(!v.pinned);
    assert_eq!(v.fingerprint, f.key.public().fingerprint());
    assert_eq!(v.manifest.session.student, "ann");
    assert_eq!(v.manifest.chain.entries, 6);
    let paths: Vec<&str> = v.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("recordings/webcam-0001.webm"))
    );
    assert!(!paths.iter().any(|p| p.contains("/other/")), "{paths:?}");
    let pinned = verify(f.bundle.as_slice(), Some(&f.key.public())).unwrap();
    assert!(pinned.pinned);
    // Repacking unchanged members keeps it valid: the checks are about content.
    verify(pack(&members(&f.bundle)).as_slice(), None).unwrap();
}

#[tokio::test]
async fn a_changed_byte_in_an_object_names_the_object() {
    let f = fixture().await;
    let err = tampered(&f.bundle, |m| find(m, "webcam-0001.webm")[100] ^= 1);
    assert!(
        err.contains("recordings/webcam-0001.webm: content does not match"),
        "{err}"
    );
}

#[tokio::test]
async fn a_changed_protocol_entry_names_the_entry() {
    let f = fixture().await;
    let err = tampered(&f.bundle, |m| {
        let p = find(m, PROTOCOL);
        let text = String::from_utf8(p.clone())
            .unwrap()
            .replacen("40.0", "4.0", 1);
        *p = text.into_bytes();
    });
    assert!(err.contains("protocol.jsonl line 4: entry #4"), "{err}");
    assert!(err.contains("altered"), "{err}");
}

#[tokio::test]
async fn a_reordered_or_removed_entry_is_named() {
    let f = fixture().await;
    let swap = tampered(&f.bundle, |m| {
        let p = find(m, PROTOCOL);
        let mut lines: Vec<&[u8]> = p.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        lines.swap(2, 3);
        *p = lines.join(&b'\n');
    });
    assert!(
        swap.contains("line 3: entry #4 where the manifest lists #3"),
        "{swap}"
    );
    let dropped = tampered(&f.bundle, |m| {
        let p = find(m, PROTOCOL);
        let text = String::from_utf8(p.clone()).unwrap();
        let kept: Vec<&str> = text.lines().take(5).collect();
        *p = kept.join("\n").into_bytes();
    });
    assert!(
        dropped.contains("entry #6 of the manifest is missing"),
        "{dropped}"
    );
}

#[tokio::test]
async fn a_missing_or_extra_file_is_named() {
    let f = fixture().await;
    let missing = tampered(&f.bundle, |m| m.retain(|(p, _)| !p.ends_with("0001.jpg")));
    assert!(
        missing.ends_with("snapshots/0001.jpg: missing from the bundle"),
        "{missing}"
    );
    let extra = tampered(&f.bundle, |m| {
        m.push(("objects/planted.jpg".into(), b"x".to_vec()))
    });
    assert_eq!(
        extra,
        "objects/planted.jpg: in the bundle but not in the manifest"
    );
    let no_sig = tampered(&f.bundle, |m| m.retain(|(p, _)| p != SIGNATURE));
    assert_eq!(no_sig, "manifest.sig: missing from the bundle");
    let twice = tampered(&f.bundle, |m| {
        let copy = m[0].clone();
        m.push(copy);
    });
    assert!(twice.contains("appears twice"), "{twice}");
}

#[tokio::test]
async fn a_wrong_key_or_an_altered_manifest_fails_the_signature() {
    let f = fixture().await;
    let stranger = EvidenceKey::from_seed(&[9; 32]).public();
    let err = verify(f.bundle.as_slice(), Some(&stranger))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("manifest.sig: not signed by the given key"),
        "{err}"
    );
    let altered = tampered(&f.bundle, |m| {
        let man = find(m, MANIFEST);
        let text = String::from_utf8(man.clone())
            .unwrap()
            .replace("\"adm\"", "\"eve\"");
        *man = text.into_bytes();
    });
    assert!(altered.contains("the manifest was altered"), "{altered}");
    // Re-signing a forged manifest with another key passes only unpinned,
    // and then names a fingerprint that is not the instance's.
    let mut m = members(&f.bundle);
    let forger = EvidenceKey::from_seed(&[9; 32]);
    let mut manifest: Manifest = serde_json::from_slice(find(&mut m, MANIFEST)).unwrap();
    manifest.exported_by = "eve".into();
    manifest.public_key = forger.public().to_base64();
    let bytes = pretty(&manifest);
    let sig = base64::engine::general_purpose::STANDARD.encode(forger.sign(&bytes));
    *find(&mut m, MANIFEST) = bytes;
    *find(&mut m, SIGNATURE) = sig.into_bytes();
    let forged = pack(&m);
    let unpinned = verify(forged.as_slice(), None).unwrap();
    assert_ne!(unpinned.fingerprint, f.key.public().fingerprint());
    assert!(verify(forged.as_slice(), Some(&f.key.public())).is_err());
}

#[test]
fn garbage_is_not_an_archive() {
    let err = verify(&b"definitely not a tar archive"[..], None).unwrap_err();
    assert!(
        matches!(err, BundleError::Archive(_) | BundleError::Missing(_)),
        "{err}"
    );
}
