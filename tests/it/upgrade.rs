//! Schema upgrades on a database written by an older invigil (the committed
//! fixture `tests/data/store/v0.redb`, schema version 0): the automatic backup
//! first, then the migration, and refusal of a database newer than the binary.

use invigil::backup::{self, Target};
use invigil::store::catalog::{ALL, USERS};
use invigil::store::{
    Migration, RedbStore, Scan, Store, StoreError, WriteTx, migrate, schema_version,
};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/store/v0.redb")
}

/// Marks every user record: a migration in the shape real ones take (read the
/// old format, write the new one, in the migration's transaction).
fn mark_users(tx: &mut dyn WriteTx) -> Result<(), StoreError> {
    for (key, value) in tx.scan(USERS, &Scan::all())? {
        let mut user: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&value).map_err(|e| StoreError::Migration {
                version: 1,
                message: e.to_string(),
            })?;
        user.insert("migrated".into(), serde_json::Value::Bool(true));
        tx.put(USERS, &key, &serde_json::to_vec(&user).unwrap())?;
    }
    Ok(())
}

const TEST_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "mark every user",
    apply: mark_users,
}];

fn dump(store: &dyn Store) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    ALL.iter()
        .map(|&t| store.scan(t, &Scan::all()).unwrap())
        .collect()
}

#[tokio::test]
async fn upgrade_backs_up_then_migrates_the_old_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("invigil.redb");
    std::fs::copy(fixture(), &db).unwrap();
    let before = {
        let s = RedbStore::open(&db).unwrap();
        assert_eq!(
            schema_version(&s).unwrap(),
            0,
            "the fixture is at version 0"
        );
        dump(&s)
    };
    assert!(!before[ALL.iter().position(|&t| t == USERS).unwrap()].is_empty());

    let backup_dir = backup::before_upgrade(&db, &data, TEST_MIGRATIONS)
        .await
        .unwrap()
        .expect("a backup is taken before upgrading a store with data");
    let name = backup_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(name.starts_with("pre-upgrade-0-1-"), "{name}");

    let store = invigil::store::open(&db, TEST_MIGRATIONS).unwrap();
    assert_eq!(schema_version(store.as_ref()).unwrap(), 1);
    for (_, value) in store.scan(USERS, &Scan::all()).unwrap() {
        let user: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(user["migrated"], true, "{user}");
    }
    drop(store);
    // Once current, no further backup.
    assert!(
        backup::before_upgrade(&db, &data, TEST_MIGRATIONS)
            .await
            .unwrap()
            .is_none()
    );

    // The backup holds the old format exactly and restores.
    let target = Target::open_existing(backup_dir.to_str().unwrap()).unwrap();
    let report = backup::verify(&target, None).await.unwrap();
    assert_eq!(report.backups.len(), 1);
    let restored = dir.path().join("restored");
    let manifest = backup::restore(&target, None, &restored, None)
        .await
        .unwrap();
    assert!(manifest.store_only);
    assert_eq!(manifest.schema_version, 0);
    let old = RedbStore::open(restored.join("invigil.redb")).unwrap();
    assert_eq!(schema_version(&old).unwrap(), 0);
    assert_eq!(dump(&old), before);
}

#[tokio::test]
async fn a_new_store_needs_no_backup_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("invigil.redb");
    assert!(
        backup::before_upgrade(&db, dir.path(), TEST_MIGRATIONS)
            .await
            .unwrap()
            .is_none()
    );
    drop(invigil::store::open(&db, TEST_MIGRATIONS).unwrap());
    // Creating a new store took no backup.
    assert!(!dir.path().join("backups").exists());

    // This binary knows no migration: version 1 is from the future.
    let err = match invigil::store::open(&db, invigil::store::MIGRATIONS) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a newer database must be refused"),
    };
    assert!(
        err.contains("schema version 1 is newer than this invigil knows"),
        "{err}"
    );
    let store = RedbStore::open(&db).unwrap();
    assert!(matches!(
        migrate(&store, &[]),
        Err(StoreError::SchemaTooNew { found: 1, known: 0 })
    ));
}

#[test]
fn the_shipped_migrations_are_tested_here() {
    // Each shipped migration gets a test above on a fixture of the version
    // before it; this fails when one is added without raising this count.
    assert_eq!(invigil::store::MIGRATIONS.len(), 0);
}

#[test]
fn the_daemon_refuses_a_newer_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("invigil.redb");
    drop(invigil::store::open(&db, TEST_MIGRATIONS).unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_invigil"))
        .env("DATA_DIR", dir.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("HTTP_PORT", "0")
        .env("TURN_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is newer than this invigil knows") && err.contains("upgrade invigil"),
        "{err}"
    );
}
