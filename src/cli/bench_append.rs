//! `invigil bench append`: protocol entries appended durably per second,
//! invigil's store against PostgreSQL. Each side commits every entry in its
//! own transaction and waits for it to be on disk: invigil through
//! `protocol::append` on redb (fsync per commit), PostgreSQL through one
//! autocommitted INSERT per entry with `synchronous_commit=on`, fed by
//! `psql`. Both write the same entries into the same temporary directory.

use crate::proctoring::protocol::{self, Entry, Kind};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// A temporary directory with a PostgreSQL cluster in it, stopped and
/// removed on drop.
struct Bench {
    dir: PathBuf,
    pg_bin: Option<PathBuf>,
    as_postgres: bool,
    started: bool,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.started
            && let Some(bin) = &self.pg_bin
        {
            let data = self.dir.join("pg");
            let _ = self
                .command(&bin.join("pg_ctl"))
                .args([
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bench {
    /// `program` run as the `postgres` user when we are root (initdb refuses root).
    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn find_postgres() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn run_checked(mut c: Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

pub fn run(entries: usize) -> ExitCode {
    match bench(entries.max(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(n: usize) -> Result<(), String> {
    // Short: PostgreSQL's socket path must stay under ~100 bytes.
    let dir = PathBuf::from(format!("/tmp/invigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut bench = Bench {
        dir: dir.clone(),
        pg_bin: find_postgres(),
        // SAFETY: geteuid has no preconditions and cannot fail.
        as_postgres: unsafe { libc::geteuid() } == 0,
        started: false,
    };
    println!("durable appends: {n} protocol entries, each its own committed transaction");

    let (ours, written) = invigil_side(&dir, n)?;
    println!("invigil   (redb, protocol::append, fsync per commit)      {ours:>9.0} entries/s");

    let Some(bin) = bench.pg_bin.clone() else {
        return Err(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             apt-get install postgresql, then run again"
                .into(),
        );
    };
    let theirs = postgres_side(&mut bench, &bin, &written)?;
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "PostgreSQL {version:<3}(psql, one INSERT each, synchronous_commit=on) {theirs:>9.0} entries/s"
    );
    println!("ratio invigil / PostgreSQL: {:.2}", ours / theirs);
    Ok(())
}

/// Appends `n` entries one transaction at a time; returns entries/s and the
/// entries (PostgreSQL gets the same ones).
fn invigil_side(dir: &Path, n: usize) -> Result<(f64, Vec<Entry>), String> {
    let store = crate::store::open(dir.join("bench.redb"), crate::store::MIGRATIONS)
        .map_err(|e| e.to_string())?;
    let mut written = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let data =
            serde_json::json!({ "values": { "b2": (i % 100) as f64, "n1": 0.0 }, "score": 95.5 });
        let entry = store
            .write(|tx| {
                protocol::append(
                    tx,
                    "hbench/s1",
                    1_700_000_000 + i as u64,
                    "ann",
                    Kind::Metrics,
                    data,
                )
            })
            .map_err(|e| e.to_string())?;
        written.push(entry);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    Ok((rate, written))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn postgres_side(bench: &mut Bench, bin: &Path, entries: &[Entry]) -> Result<f64, String> {
    let dir = bench.dir.clone();
    let data = dir.join("pg");
    let socket = dir.to_string_lossy().into_owned();
    if bench.as_postgres {
        run_checked(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:"]).arg(&dir);
                c
            },
            "chown",
        )?;
    }
    let mut initdb = bench.command(&bin.join("initdb"));
    initdb
        .args([
            "-D",
            &data.to_string_lossy(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ])
        .args(["--no-sync"]);
    run_checked(initdb, "initdb")?;
    let mut start = bench.command(&bin.join("pg_ctl"));
    start
        .args([
            "-D",
            &data.to_string_lossy(),
            "-l",
            &dir.join("pg.log").to_string_lossy(),
            "-w",
        ])
        .args([
            "-o",
            &format!("-c listen_addresses='' -k {socket} -c synchronous_commit=on -c fsync=on"),
        ])
        .arg("start");
    run_checked(start, "pg_ctl start")?;
    bench.started = true;
    let psql = |args: &[&str]| {
        let mut c = bench.command(&bin.join("psql"));
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("host={socket} user=postgres dbname=postgres"))
            .args(args);
        c
    };
    run_checked(
        psql(&[
            "-c",
            "create table protocol (scope text, seq bigint, time bigint, author text, kind text, \
             data jsonb, attachments jsonb, prev text, hash text, primary key (scope, seq))",
        ]),
        "create table",
    )?;
    let mut script = String::new();
    for e in entries {
        script.push_str(&format!(
            "insert into protocol values ({}, {}, {}, {}, {}, {}, {}, {}, {});\n",
            quote(&e.scope),
            e.seq,
            e.time,
            quote(&e.author),
            quote(e.kind.as_str()),
            quote(&e.data.to_string()),
            quote(&serde_json::Value::from(e.attachments.clone()).to_string()),
            quote(&e.prev),
            quote(&e.hash)
        ));
    }
    let file = dir.join("inserts.sql");
    std::fs::write(&file, script).map_err(|e| e.to_string())?;
    if bench.as_postgres {
        let mut c = Command::new("chown");
        c.arg("postgres:").arg(&file);
        run_checked(c, "chown")?;
    }
    // psql's own start-up and connection are timed too; measured alone
    // they are a few milliseconds, subtracted below.
    let t = Instant::now();
    run_checked(psql(&["-c", "select 1"]), "psql")?;
    let overhead = t.elapsed();
    let t = Instant::now();
    run_checked(psql(&["-f", &file.to_string_lossy()]), "psql inserts")?;
    let elapsed = t.elapsed().saturating_sub(overhead);
    let count = run_checked(
        psql(&["-t", "-c", "select count(*) from protocol"]),
        "count",
    )?;
    if count.trim() != entries.len().to_string() {
        return Err(format!(
            "PostgreSQL holds {} rows, not {}",
            count.trim(),
            entries.len()
        ));
    }
    Ok(entries.len() as f64 / elapsed.as_secs_f64())
}
