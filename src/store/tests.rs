//! The behaviour every backend must have, run against each backend, plus
//! migration and error tests.

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngCore;

use super::catalog::{AUDIT, HOSTS, META, USERS};
use super::migrate::SCHEMA_VERSION_KEY;
use super::*;

type Case = (&'static str, fn(&dyn Store));

/// Every case of the shared suite; each runs on a fresh, empty store.
const SUITE: &[Case] = &[
    ("get_put_delete", get_put_delete),
    ("overwrite", overwrite),
    ("trees_are_separate", trees_are_separate),
    ("range_bounds", range_bounds),
    ("reverse_and_limit", reverse_and_limit),
    ("prefix_scans", prefix_scans),
    ("atomic_across_trees", atomic_across_trees),
    ("abort_discards_writes", abort_discards_writes),
    ("uncommitted_writes_invisible", uncommitted_writes_invisible),
    ("read_your_writes", read_your_writes),
    ("empty_keys_and_values", empty_keys_and_values),
    ("large_values", large_values),
    ("many_keys", many_keys),
    ("json_values", json_values),
    ("concurrent_writers_serialize", concurrent_writers_serialize),
    ("migrations", migrations),
    (
        "failing_migration_changes_nothing",
        failing_migration_changes_nothing,
    ),
    ("schema_too_new_is_refused", schema_too_new_is_refused),
];

fn run_suite(open: impl Fn() -> Box<dyn Store>) {
    for (name, case) in SUITE {
        // Shown with the failure, since the panic itself does not name the case.
        eprintln!("store suite case: {name}");
        let store = open();
        case(store.as_ref());
    }
}

#[test]
fn memory_backend_suite() {
    run_suite(|| Box::new(MemoryStore::new()));
}

#[test]
fn redb_backend_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    run_suite(|| {
        let path = dir
            .path()
            .join(format!("case-{}.redb", n.fetch_add(1, Ordering::Relaxed)));
        Box::new(RedbStore::open(path).expect("open redb"))
    });
}

// ---- helpers ----

fn put(store: &dyn Store, tree: Tree, key: &[u8], value: &[u8]) {
    store.put(tree, key, value).expect("put");
}

fn keys(pairs: &[Pair]) -> Vec<Vec<u8>> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

fn scan_keys(store: &dyn Store, tree: Tree, scan: Scan) -> Vec<Vec<u8>> {
    keys(&store.scan(tree, &scan).expect("scan"))
}

fn strs(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

// ---- the shared suite ----

fn get_put_delete(store: &dyn Store) {
    assert_eq!(store.get(USERS, b"alice").unwrap(), None);
    put(store, USERS, b"alice", b"1");
    assert_eq!(store.get(USERS, b"alice").unwrap(), Some(b"1".to_vec()));
    assert!(store.delete(USERS, b"alice").unwrap());
    assert_eq!(store.get(USERS, b"alice").unwrap(), None);
    assert!(!store.delete(USERS, b"alice").unwrap());
}

fn overwrite(store: &dyn Store) {
    put(store, USERS, b"k", b"first");
    put(store, USERS, b"k", b"second, longer value");
    put(store, USERS, b"k", b"3");
    assert_eq!(store.get(USERS, b"k").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.scan(USERS, &Scan::all()).unwrap().len(), 1);
}

fn trees_are_separate(store: &dyn Store) {
    put(store, USERS, b"k", b"user");
    put(store, HOSTS, b"k", b"host");
    assert_eq!(store.get(USERS, b"k").unwrap(), Some(b"user".to_vec()));
    assert_eq!(store.get(HOSTS, b"k").unwrap(), Some(b"host".to_vec()));
    assert_eq!(store.get(AUDIT, b"k").unwrap(), None);
    store.delete(USERS, b"k").unwrap();
    assert_eq!(store.get(HOSTS, b"k").unwrap(), Some(b"host".to_vec()));
}

fn range_bounds(store: &dyn Store) {
    store
        .write(|tx| {
            for k in ["a", "b", "c", "d", "e"] {
                tx.put(USERS, k.as_bytes(), k.to_uppercase().as_bytes())?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let s = |scan| scan_keys(store, USERS, scan);
    assert_eq!(s(Scan::all()), strs(&["a", "b", "c", "d", "e"]));
    assert_eq!(s(Scan::range(b"b".as_slice()..b"d")), strs(&["b", "c"]));
    assert_eq!(
        s(Scan::range(b"b".as_slice()..=b"d")),
        strs(&["b", "c", "d"])
    );
    assert_eq!(s(Scan::range(b"c".as_slice()..)), strs(&["c", "d", "e"]));
    assert_eq!(s(Scan::range(..b"c".as_slice())), strs(&["a", "b"]));
    assert_eq!(s(Scan::range(..=b"c".as_slice())), strs(&["a", "b", "c"]));
    let excl = (
        Bound::Excluded(b"b".as_slice()),
        Bound::Excluded(b"e".as_slice()),
    );
    assert_eq!(s(Scan::bounds(excl.0, excl.1)), strs(&["c", "d"]));
    let excl_incl = (
        Bound::Excluded(b"b".as_slice()),
        Bound::Included(b"e".as_slice()),
    );
    assert_eq!(
        s(Scan::bounds(excl_incl.0, excl_incl.1)),
        strs(&["c", "d", "e"])
    );
    // Bounds between and beyond stored keys.
    assert_eq!(s(Scan::range(b"bb".as_slice()..b"dd")), strs(&["c", "d"]));
    assert_eq!(s(Scan::range(b"f".as_slice()..)), strs(&[]));
    // Empty and inverted ranges return nothing rather than panicking.
    assert_eq!(s(Scan::range(b"c".as_slice()..b"c")), strs(&[]));
    assert_eq!(s(Scan::range(b"c".as_slice()..=b"c")), strs(&["c"]));
    assert_eq!(s(Scan::range(b"d".as_slice()..b"b")), strs(&[]));
    assert_eq!(s(Scan::range(b"d".as_slice()..=b"b")), strs(&[]));
    let same_excl = (
        Bound::Excluded(b"c".as_slice()),
        Bound::Excluded(b"c".as_slice()),
    );
    assert_eq!(s(Scan::bounds(same_excl.0, same_excl.1)), strs(&[]));
    // Values come with their keys.
    let pairs = store.scan(USERS, &Scan::range(b"d".as_slice()..)).unwrap();
    assert_eq!(
        pairs,
        vec![
            (b"d".to_vec(), b"D".to_vec()),
            (b"e".to_vec(), b"E".to_vec())
        ]
    );
}

fn reverse_and_limit(store: &dyn Store) {
    for k in ["a", "b", "c", "d", "e"] {
        put(store, USERS, k.as_bytes(), b"");
    }
    let s = |scan| scan_keys(store, USERS, scan);
    assert_eq!(s(Scan::all().rev()), strs(&["e", "d", "c", "b", "a"]));
    assert_eq!(s(Scan::all().limit(2)), strs(&["a", "b"]));
    assert_eq!(s(Scan::all().rev().limit(2)), strs(&["e", "d"]));
    assert_eq!(s(Scan::all().limit(0)), strs(&[]));
    assert_eq!(s(Scan::all().limit(99)).len(), 5);
    assert_eq!(
        s(Scan::range(b"b".as_slice()..b"e").rev()),
        strs(&["d", "c", "b"])
    );
    assert_eq!(
        s(Scan::range(b"b".as_slice()..=b"e").rev().limit(1)),
        strs(&["e"])
    );
    assert_eq!(s(Scan::range(b"d".as_slice()..b"b").rev()), strs(&[]));
}

fn prefix_scans(store: &dyn Store) {
    let stored: &[&[u8]] = &[
        b"a",
        b"ab",
        b"ab\x00",
        b"abc",
        b"abd",
        b"ac",
        b"b",
        b"\x01\xff",
        b"\x01\xff\x00",
        b"\x01\xff\xff\x05",
        b"\x02",
        b"\xfe",
        b"\xff",
        b"\xff\xff",
        b"\xff\xff\x01",
    ];
    store
        .write(|tx| {
            for k in stored {
                tx.put(HOSTS, k, b"v")?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let s = |scan| scan_keys(store, HOSTS, scan);
    let b = |list: &[&[u8]]| list.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        s(Scan::prefix(b"ab")),
        b(&[b"ab", b"ab\x00", b"abc", b"abd"])
    );
    assert_eq!(s(Scan::prefix(b"abc")), b(&[b"abc"]));
    assert_eq!(s(Scan::prefix(b"abz")), b(&[]));
    assert_eq!(s(Scan::prefix(b"ab").rev().limit(2)), b(&[b"abd", b"abc"]));
    // A prefix ending in 0xFF must not stop at the byte after it.
    assert_eq!(
        s(Scan::prefix(b"\x01\xff")),
        b(&[b"\x01\xff", b"\x01\xff\x00", b"\x01\xff\xff\x05"])
    );
    assert_eq!(s(Scan::prefix(b"\x01\xff\xff")), b(&[b"\x01\xff\xff\x05"]));
    // All-0xFF prefixes have no upper bound.
    assert_eq!(
        s(Scan::prefix(b"\xff")),
        b(&[b"\xff", b"\xff\xff", b"\xff\xff\x01"])
    );
    assert_eq!(
        s(Scan::prefix(b"\xff\xff")),
        b(&[b"\xff\xff", b"\xff\xff\x01"])
    );
    assert_eq!(s(Scan::prefix(b"")).len(), stored.len());
}

fn atomic_across_trees(store: &dyn Store) {
    store
        .write(|tx| {
            tx.put(USERS, b"u1", b"user")?;
            tx.put(HOSTS, b"h1", b"host")?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(store.get(USERS, b"u1").unwrap(), Some(b"user".to_vec()));
    assert_eq!(store.get(HOSTS, b"h1").unwrap(), Some(b"host".to_vec()));

    // An error after writing to both trees leaves both untouched.
    let result: Result<(), StoreError> = store.write(|tx| {
        tx.put(USERS, b"u2", b"user")?;
        tx.put(HOSTS, b"h1", b"changed")?;
        tx.delete(USERS, b"u1")?;
        Err(StoreError::Backend("stop".into()))
    });
    assert!(matches!(result, Err(StoreError::Backend(m)) if m == "stop"));
    assert_eq!(store.get(USERS, b"u2").unwrap(), None);
    assert_eq!(store.get(USERS, b"u1").unwrap(), Some(b"user".to_vec()));
    assert_eq!(store.get(HOSTS, b"h1").unwrap(), Some(b"host".to_vec()));
}

fn abort_discards_writes(store: &dyn Store) {
    put(store, USERS, b"kept", b"1");
    let mut tx = store.begin_write().unwrap();
    tx.put(USERS, b"new", b"1").unwrap();
    tx.put(AUDIT, b"new", b"1").unwrap();
    tx.delete(USERS, b"kept").unwrap();
    tx.abort().unwrap();
    assert_eq!(store.get(USERS, b"new").unwrap(), None);
    assert_eq!(store.get(AUDIT, b"new").unwrap(), None);
    assert_eq!(store.get(USERS, b"kept").unwrap(), Some(b"1".to_vec()));

    // Dropping without commit is an abort too.
    {
        let mut tx = store.begin_write().unwrap();
        tx.put(USERS, b"dropped", b"1").unwrap();
    }
    assert_eq!(store.get(USERS, b"dropped").unwrap(), None);
    // And the writer lock was released: a new write works.
    put(store, USERS, b"after", b"1");
}

fn uncommitted_writes_invisible(store: &dyn Store) {
    put(store, USERS, b"a", b"old");
    let before = store.begin_read().unwrap();
    let mut tx = store.begin_write().unwrap();
    tx.put(USERS, b"a", b"new").unwrap();
    tx.put(USERS, b"b", b"new").unwrap();
    let during = store.begin_read().unwrap();
    assert_eq!(during.get(USERS, b"a").unwrap(), Some(b"old".to_vec()));
    assert_eq!(during.get(USERS, b"b").unwrap(), None);
    assert_eq!(during.scan(USERS, &Scan::all()).unwrap().len(), 1);
    tx.commit().unwrap();
    // Read transactions keep their snapshot after a commit.
    assert_eq!(before.get(USERS, b"a").unwrap(), Some(b"old".to_vec()));
    assert_eq!(during.get(USERS, b"b").unwrap(), None);
    let after = store.begin_read().unwrap();
    assert_eq!(after.get(USERS, b"a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(after.get(USERS, b"b").unwrap(), Some(b"new".to_vec()));
    // The closure form reads one snapshot too.
    let both = store
        .read(|tx| Ok::<_, StoreError>((tx.get(USERS, b"a")?, tx.get(USERS, b"b")?)))
        .unwrap();
    assert_eq!(both, (Some(b"new".to_vec()), Some(b"new".to_vec())));
}

fn read_your_writes(store: &dyn Store) {
    store
        .write(|tx| {
            for k in ["b", "d", "f", "h"] {
                tx.put(USERS, k.as_bytes(), b"committed")?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let mut tx = store.begin_write().unwrap();
    tx.put(USERS, b"a", b"new").unwrap();
    tx.put(USERS, b"d", b"changed").unwrap();
    tx.put(USERS, b"e", b"new").unwrap();
    assert!(tx.delete(USERS, b"f").unwrap());
    assert!(!tx.delete(USERS, b"zz").unwrap());
    tx.put(USERS, b"i", b"new").unwrap();
    tx.put(USERS, b"tmp", b"x").unwrap();
    assert!(tx.delete(USERS, b"tmp").unwrap());
    assert!(!tx.delete(USERS, b"tmp").unwrap());

    assert_eq!(tx.get(USERS, b"a").unwrap(), Some(b"new".to_vec()));
    assert_eq!(tx.get(USERS, b"d").unwrap(), Some(b"changed".to_vec()));
    assert_eq!(tx.get(USERS, b"f").unwrap(), None);
    assert_eq!(tx.get(USERS, b"b").unwrap(), Some(b"committed".to_vec()));
    let all = tx.scan(USERS, &Scan::all()).unwrap();
    assert_eq!(keys(&all), strs(&["a", "b", "d", "e", "h", "i"]));
    assert_eq!(all[2].1, b"changed".to_vec());
    assert_eq!(
        keys(&tx.scan(USERS, &Scan::all().rev().limit(4)).unwrap()),
        strs(&["i", "h", "e", "d"])
    );
    assert_eq!(
        keys(&tx.scan(USERS, &Scan::range(b"c".as_slice()..b"h")).unwrap()),
        strs(&["d", "e"])
    );
    assert_eq!(
        keys(
            &tx.scan(USERS, &Scan::range(b"b".as_slice()..=b"f").rev())
                .unwrap()
        ),
        strs(&["e", "d", "b"])
    );
    tx.commit().unwrap();
    assert_eq!(
        scan_keys(store, USERS, Scan::all()),
        strs(&["a", "b", "d", "e", "h", "i"])
    );
}

fn empty_keys_and_values(store: &dyn Store) {
    put(store, USERS, b"b", b"");
    put(store, USERS, b"", b"empty key");
    assert_eq!(store.get(USERS, b"").unwrap(), Some(b"empty key".to_vec()));
    assert_eq!(store.get(USERS, b"b").unwrap(), Some(Vec::new()));
    assert_eq!(scan_keys(store, USERS, Scan::all()), strs(&["", "b"]));
    assert_eq!(
        scan_keys(store, USERS, Scan::range(..b"b".as_slice())),
        strs(&[""])
    );
    put(store, USERS, b"", b"");
    assert_eq!(store.get(USERS, b"").unwrap(), Some(Vec::new()));
    assert!(store.delete(USERS, b"").unwrap());
    assert_eq!(store.get(USERS, b"").unwrap(), None);
}

fn large_values(store: &dyn Store) {
    let mut big = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut big);
    put(store, AUDIT, b"big", &big);
    put(store, AUDIT, b"small", b"s");
    assert_eq!(store.get(AUDIT, b"big").unwrap(), Some(big.clone()));
    let pairs = store.scan(AUDIT, &Scan::all()).unwrap();
    assert_eq!(pairs[0].1.len(), big.len());
    // Replace it with a different large value, then a small one.
    big.reverse();
    put(store, AUDIT, b"big", &big);
    assert_eq!(store.get(AUDIT, b"big").unwrap(), Some(big));
    put(store, AUDIT, b"big", b"x");
    assert_eq!(store.get(AUDIT, b"big").unwrap(), Some(b"x".to_vec()));
}

fn many_keys(store: &dyn Store) {
    const N: u32 = 10_000;
    store
        .write(|tx| {
            for i in 0..N {
                tx.put(AUDIT, &i.to_be_bytes(), format!("value {i}").as_bytes())?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let all = store.scan(AUDIT, &Scan::all()).unwrap();
    assert_eq!(all.len(), N as usize);
    for (i, (k, v)) in all.iter().enumerate() {
        assert_eq!(k, &(i as u32).to_be_bytes());
        assert_eq!(v, format!("value {i}").as_bytes());
    }
    let from = 4_000u32.to_be_bytes();
    let to = 4_100u32.to_be_bytes();
    let mid = store
        .scan(
            AUDIT,
            &Scan::range(from.as_slice()..to.as_slice()).rev().limit(10),
        )
        .unwrap();
    assert_eq!(mid.len(), 10);
    assert_eq!(mid[0].0, 4_099u32.to_be_bytes());
    assert_eq!(mid[9].0, 4_090u32.to_be_bytes());
    // Delete the even keys in one transaction.
    store
        .write(|tx| {
            for i in (0..N).step_by(2) {
                assert!(tx.delete(AUDIT, &i.to_be_bytes())?);
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let odd = store.scan(AUDIT, &Scan::all()).unwrap();
    assert_eq!(odd.len(), N as usize / 2);
    assert!(
        odd.iter()
            .all(|(k, _)| u32::from_be_bytes(k.as_slice().try_into().unwrap()) % 2 == 1)
    );
}

fn json_values(store: &dyn Store) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct User {
        name: String,
        admin: bool,
    }
    let alice = User {
        name: "alice".into(),
        admin: true,
    };
    store
        .write(|tx| {
            tx.put_json(USERS, b"alice", &alice)?;
            let back: Option<User> = tx.get_json(USERS, b"alice")?;
            assert_eq!(back.as_ref(), Some(&alice));
            tx.put(USERS, b"broken", b"{not json")
        })
        .unwrap();
    let read = store.begin_read().unwrap();
    assert_eq!(read.get_json::<User>(USERS, b"alice").unwrap(), Some(alice));
    assert_eq!(read.get_json::<User>(USERS, b"nobody").unwrap(), None);
    let err = read.get_json::<User>(USERS, b"broken").unwrap_err();
    assert!(
        matches!(err, StoreError::Codec { tree: "users", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("users"), "{err}");
}

fn concurrent_writers_serialize(store: &dyn Store) {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 25;
    // Read-modify-write from several threads: lost updates would show as a
    // final count below THREADS * ROUNDS.
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                for r in 0..ROUNDS {
                    store
                        .write(|tx| {
                            let n = tx.get(META, b"count")?.map_or(0, |b| b.len());
                            tx.put(META, b"count", &vec![1; n + 1])?;
                            tx.put(AUDIT, format!("{t}/{r}").as_bytes(), b"")
                        })
                        .unwrap();
                }
            });
        }
    });
    let count = store.get(META, b"count").unwrap().unwrap_or_default();
    assert_eq!(count.len() as u64, THREADS * ROUNDS);
    assert_eq!(
        store.scan(AUDIT, &Scan::all()).unwrap().len() as u64,
        THREADS * ROUNDS
    );
}

// ---- migrations ----

fn add_users(tx: &mut dyn WriteTx) -> Result<(), StoreError> {
    tx.put(USERS, b"alice", b"alice")?;
    tx.put(USERS, b"bob", b"bob")
}

/// Rewrites every user value to upper case; applied twice it would append.
fn shout_users(tx: &mut dyn WriteTx) -> Result<(), StoreError> {
    for (k, v) in tx.scan(USERS, &Scan::all())? {
        let mut upper = v.to_ascii_uppercase();
        upper.extend_from_slice(b"!");
        tx.put(USERS, &k, &upper)?;
    }
    Ok(())
}

fn write_then_fail(tx: &mut dyn WriteTx) -> Result<(), StoreError> {
    tx.put(USERS, b"alice", b"clobbered")?;
    tx.put(HOSTS, b"half", b"done")?;
    Err(StoreError::Backend("host table has a duplicate".into()))
}

const V1: Migration = Migration {
    version: 1,
    description: "add users",
    apply: add_users,
};
const V2: Migration = Migration {
    version: 2,
    description: "shout user names",
    apply: shout_users,
};

fn migrations(store: &dyn Store) {
    assert_eq!(schema_version(store).unwrap(), 0);
    assert_eq!(migrate(store, &[]).unwrap(), 0);
    assert_eq!(migrate(store, &[V1]).unwrap(), 1);
    assert_eq!(store.get(USERS, b"bob").unwrap(), Some(b"bob".to_vec()));
    assert_eq!(migrate(store, &[V1, V2]).unwrap(), 2);
    assert_eq!(schema_version(store).unwrap(), 2);
    assert_eq!(
        store.get(USERS, b"alice").unwrap(),
        Some(b"ALICE!".to_vec())
    );
    // Nothing runs twice.
    assert_eq!(migrate(store, &[V1, V2]).unwrap(), 2);
    assert_eq!(store.get(USERS, b"bob").unwrap(), Some(b"BOB!".to_vec()));
    assert_eq!(
        store.get(META, SCHEMA_VERSION_KEY).unwrap(),
        Some(2u64.to_be_bytes().to_vec())
    );
    // A list that is not strictly increasing is a programming error.
    let err = migrate(store, &[V2, V1]).unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { version: 1, .. }),
        "{err}"
    );
    let err = migrate(store, &[V1, V1]).unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
}

fn failing_migration_changes_nothing(store: &dyn Store) {
    let failing = Migration {
        version: 2,
        description: "dedupe hosts",
        apply: write_then_fail,
    };
    let err = migrate(store, &[V1, failing]).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Migration { version: 2, .. }),
        "{text}"
    );
    assert!(
        text.contains("version 2") && text.contains("dedupe hosts"),
        "{text}"
    );
    assert!(text.contains("duplicate"), "{text}");
    // Version 1 committed on its own; version 2 left no trace.
    assert_eq!(schema_version(store).unwrap(), 1);
    assert_eq!(store.get(USERS, b"alice").unwrap(), Some(b"alice".to_vec()));
    assert_eq!(store.get(HOSTS, b"half").unwrap(), None);
    // Fixed, it runs from where it stopped.
    assert_eq!(migrate(store, &[V1, V2]).unwrap(), 2);
    assert_eq!(
        store.get(USERS, b"alice").unwrap(),
        Some(b"ALICE!".to_vec())
    );
}

fn schema_too_new_is_refused(store: &dyn Store) {
    put(store, META, SCHEMA_VERSION_KEY, &7u64.to_be_bytes());
    put(store, USERS, b"alice", b"untouched");
    let err = migrate(store, &[V1, V2]).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 7, known: 2 }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains('7') && text.contains('2'), "{text}");
    assert_eq!(
        store.get(USERS, b"alice").unwrap(),
        Some(b"untouched".to_vec())
    );
    // A damaged version value is reported, not read as some number.
    put(store, META, SCHEMA_VERSION_KEY, b"12");
    let err = migrate(store, &[V1]).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("schema_version"), "{err}");
}

// ---- redb specifics ----

#[test]
fn redb_data_survives_reopen_and_open_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invigil.redb");
    {
        let store = open(&path, &[V1]).unwrap();
        assert_eq!(schema_version(store.as_ref()).unwrap(), 1);
        store.put(HOSTS, b"h", b"1").unwrap();
    }
    let store = open(&path, &[V1, V2]).unwrap();
    assert_eq!(schema_version(store.as_ref()).unwrap(), 2);
    assert_eq!(store.get(HOSTS, b"h").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(USERS, b"bob").unwrap(), Some(b"BOB!".to_vec()));
    assert_eq!(store.location(), path.display().to_string());
    drop(store);
    // An older invigil (knowing only version 1) refuses the file.
    let err = open(&path, &[V1]).err().expect("schema too new");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 2, known: 1 }),
        "{err}"
    );
}

#[test]
fn redb_second_open_reports_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.redb");
    let _first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("locked.redb"), "{err}");
}

#[test]
fn redb_open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("x.redb");
    let err = RedbStore::open(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let err = RedbStore::open(&garbage).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("garbage.redb"), "{err}");
}

#[test]
fn redb_check_integrity_on_clean_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RedbStore::open(dir.path().join("ok.redb")).unwrap();
    (&store as &dyn Store).put(USERS, b"k", b"v").unwrap();
    assert!(store.check_integrity().unwrap());
}
