//! `invigil export` and `invigil verify-bundle`: evidence bundles on the
//! command line. Export works on the data directory with the server
//! stopped (it takes the directory's lock); while the server runs, the API
//! exports (`GET /api/v1/sessions/{id}/export`). Verification needs only
//! the file.

use super::{EXIT_BAD_CONFIG, load};
use crate::app::{datadir, secrets};
use crate::auth::{audit, now_secs};
use crate::proctoring::bundle::{self, Instance};
use crate::proctoring::evidence_key::PublicKey;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn export(
    env_file: Option<PathBuf>,
    session: Option<String>,
    out: Option<PathBuf>,
    show_key: bool,
) -> ExitCode {
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let config = loaded.config;
    if let Err(e) = datadir::prepare(&config.data_dir) {
        eprintln!("invigil: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    if show_key {
        return match secrets::evidence_key(&config.data_dir) {
            Ok(key) => {
                let public = key.public();
                println!("public key:  {}", public.to_base64());
                println!("fingerprint: {}", public.fingerprint());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invigil: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (Some(session), Some(out)) = (session, out) else {
        eprintln!("invigil: export needs a SESSION and --out FILE (or --show-key)");
        return ExitCode::from(EXIT_BAD_CONFIG);
    };
    let _lock = match datadir::lock(&config.data_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "invigil: {e}\n  while the server runs, export through it: GET /api/v1/sessions/{session}/export"
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("invigil: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(write_bundle(&config, &session, &out)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn write_bundle(
    config: &crate::config::Config,
    session: &str,
    out: &Path,
) -> anyhow::Result<String> {
    let db = config.data_dir.join(crate::store::DATABASE_FILE);
    anyhow::ensure!(db.exists(), "no database at {}", db.display());
    let store = crate::store::open(&db, crate::store::MIGRATIONS)?;
    let s = bundle::find_session(store.as_ref(), session)?
        .ok_or_else(|| anyhow::anyhow!("no session {session} in {}", db.display()))?;
    let objects = crate::objects::open(config)?;
    let key = secrets::evidence_key(&config.data_dir).map_err(anyhow::Error::msg)?;
    let collected = bundle::collect(store.as_ref(), &s.host_id, &s.id)?;
    // Written beside the target and renamed, so a failed export leaves no
    // truncated bundle under the chosen name.
    let partial = out.with_extension("partial");
    let file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    let manifest = bundle::write(
        &collected,
        &objects,
        &key,
        Instance::new(&config.manager_host),
        "command line",
        now_secs(),
        file,
    )
    .await;
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, out)?;
    audit::record(
        store.as_ref(),
        &s.host_id,
        audit::Event::new("command line", "evidence_exported", &s.id)
            .with("head", &manifest.chain.head),
    )?;
    Ok(format!(
        "wrote {}: session {} ({}), {} protocol entries, {} files, chain head {}\nsigned by {}",
        out.display(),
        s.id,
        s.student,
        manifest.chain.entries,
        manifest.files.len(),
        manifest.chain.head,
        key.public().fingerprint()
    ))
}

pub fn verify_bundle(file: &Path, key: Option<&str>) -> ExitCode {
    let pinned = match key {
        None => None,
        Some(k) => {
            // A key given as text, or a file holding it.
            let text = std::fs::read_to_string(k).unwrap_or_else(|_| k.to_string());
            match PublicKey::parse(&text) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("invigil: --key: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            }
        }
    };
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("invigil: {}: {e}", file.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match bundle::verify(reader, pinned.as_ref()) {
        Ok(v) => {
            let m = &v.manifest;
            println!(
                "OK: session {} of {} ({}), {} protocol entries, {} files, exported {} by {}",
                m.session.id,
                m.host.title,
                m.session.student,
                m.chain.entries,
                m.files.len(),
                crate::proctoring::reports::rfc3339(Some(m.exported_at)),
                m.exported_by
            );
            if v.pinned {
                println!("signed by {} (the given key)", v.fingerprint);
            } else {
                println!(
                    "signed by {}: the key was taken from the bundle itself, NOT pinned; \
                     compare it with `invigil export --show-key` on the instance, or pass --key",
                    v.fingerprint
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
