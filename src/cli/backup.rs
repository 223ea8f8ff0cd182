//! `invigil backup`, `invigil backup verify` and `invigil restore`.

use crate::app::{admin, datadir};
use crate::backup::{self, Options, Source, Target};
use crate::config::Config;
use crate::objects::Objects;
use crate::store::{RedbStore, Store};
use anyhow::{Context, anyhow};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs `f` on a fresh runtime; errors go to stderr with exit 1.
fn run(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(f));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The instance's objects, or `None` for a local directory not created yet.
/// Objects in the cold tier are included: the backup lists and reads both tiers.
fn objects_of(config: &Config) -> anyhow::Result<Option<Objects>> {
    if config.minio_uri.is_none() && !config.data_dir.join("objects").is_dir() {
        // Creating it here would leave it owned by whoever runs the backup.
        return Ok(None);
    }
    Ok(Some(crate::objects::open(config)?))
}

fn instance_of(config: &Config) -> String {
    format!(
        "{} ({})",
        gethostname::gethostname().to_string_lossy(),
        config.manager_host
    )
}

/// `invigil backup --to TARGET`: from the running daemon if there is one,
/// else from the data directory directly.
pub fn take(config: Config, to: &str) -> ExitCode {
    run(async move {
        let target = Target::open(to)?;
        let data_dir = config.data_dir.clone();
        let options = Options {
            data_dir: data_dir.clone(),
            objects: objects_of(&config)?,
            store_only: false,
            instance: instance_of(&config),
            stamp: None,
        };
        let manifest = match admin::ask(&data_dir, &admin::Request::Snapshot)
            .await
            .map_err(|e| anyhow!("the running invigil: {e}"))?
        {
            Some(reply) => {
                let file = reply
                    .snapshot
                    .ok_or_else(|| anyhow!("the running invigil sent no snapshot"))?;
                let source = Source {
                    store_file: file.clone(),
                    schema_version: reply.schema_version,
                };
                let taken = backup::take(&source, &options, &target).await;
                let _ = std::fs::remove_file(&file);
                let manifest = taken?;
                admin::ask(
                    &data_dir,
                    &admin::Request::Recorded {
                        target: target.name.clone(),
                        manifest: Box::new(manifest.clone()),
                    },
                )
                .await
                .map_err(|e| anyhow!("the backup is complete but was not recorded: {e}"))?;
                manifest
            }
            None => offline(&data_dir, &options, &target).await?,
        };
        println!(
            "backup {} written to {}: schema version {}, {} objects ({} bytes), database {} bytes",
            manifest.stamp,
            target.name,
            manifest.schema_version,
            manifest.object_count,
            manifest.object_bytes,
            manifest.store.size
        );
        Ok(())
    })
}

/// Backs up a data directory no daemon is running on, holding its lock so
/// none starts meanwhile.
async fn offline(
    data_dir: &Path,
    options: &Options,
    target: &Target,
) -> anyhow::Result<backup::Manifest> {
    let db = data_dir.join(crate::store::DATABASE_FILE);
    if !db.exists() {
        return Err(anyhow!("no database at {}", db.display()));
    }
    let _lock = datadir::lock(data_dir).map_err(|e| anyhow!(e))?;
    let store = RedbStore::open(&db)?;
    let store: &dyn Store = &store;
    let scratch = tempfile_path();
    backup::snapshot_to_file(store, &scratch)?;
    let source = Source {
        store_file: scratch.clone(),
        schema_version: crate::store::schema_version(store)?,
    };
    let taken = backup::take(&source, options, target).await;
    let _ = std::fs::remove_dir_all(scratch.parent().unwrap_or(Path::new("/nonexistent")));
    let manifest = taken?;
    backup::record_last(store, &target.name, &manifest)?;
    Ok(manifest)
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir()
        .join(format!(
            "invigil-backup-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
        .join("store.redb")
}

/// `invigil backup verify --from TARGET [--stamp S]`.
pub fn verify(from: &str, stamp: Option<&str>) -> ExitCode {
    run(async move {
        let target = Target::open_existing(from)?;
        let report = backup::verify(&target, stamp).await?;
        for s in &report.backups {
            println!("{s}: intact");
        }
        println!(
            "{} backups verified: {} blobs ({} bytes) match their hashes, {} chains intact",
            report.backups.len(),
            report.blobs,
            report.bytes,
            report.chains
        );
        Ok(())
    })
}

/// `invigil restore --from TARGET [--stamp S] --data-dir DIR`.
pub fn restore(config: Config, from: &str, stamp: Option<&str>, data_dir: &Path) -> ExitCode {
    run(async move {
        let target = Target::open_existing(from)?;
        let objects = match &config.minio_uri {
            Some(uri) => Some(Objects::from_minio_uri(uri.expose())?),
            None => None,
        };
        let manifest = backup::restore(&target, stamp, data_dir, objects).await?;
        println!(
            "backup {} of {} (taken {}) restored into {}: {} objects{}",
            manifest.stamp,
            manifest.instance,
            manifest.created,
            data_dir.display(),
            manifest.object_count,
            if manifest.store_only {
                " (a database-only backup: objects stay where they are)"
            } else {
                ""
            }
        );
        Ok(())
    })
}
