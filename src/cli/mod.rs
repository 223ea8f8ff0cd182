//! Command line: subcommands, logging set-up, signals and exit codes
//! (0 ok, 1 failure while running, 2 bad configuration or usage).

mod backup;
mod banner;
mod bench;
mod bench_all;
mod bench_append;
mod bench_crash;
pub mod bench_hostile;
mod bench_load;
mod bench_recognize;
mod bench_static;
mod ca;
mod doctor;
mod evidence;
mod generate;
mod hub_bench;
mod ingest;
mod recognize;
mod recognizer;

use crate::config::{Config, Loaded, LogFormat};
use crate::{VERSION, app};
use bench::Bench;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "invigil", version = VERSION, about = "Self-hosted online exam proctoring")]
struct Cli {
    /// Read variables from this file (the vendor's `.env` format) before the
    /// process environment, which wins.
    #[arg(long, global = true, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Serve only `POST /recognize` (API_KEY required) and `/ping` on
    /// HOST:PORT, as a recognition node for daemons' RECOGNIZER_URI.
    Recognizer,
    /// Print the effective configuration and its warnings; exit 2 on any error.
    CheckConfig,
    /// Print the version.
    Version,
    /// Allocate twice on a TURN server, relay between the allocations, print
    /// candidates and round-trip time (default: this instance's relay).
    TurnCheck {
        /// `turn://user:pass@host:port` (default: TURN_URI, else the embedded
        /// relay on TURN_PORT with TURN_USER or a minted credential).
        uri: Option<String>,
    },
    /// Benchmarks against a peer implementation.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List the faces in one image, or compare the main faces of two, or
    /// read an ID document.
    Recognize {
        /// One image (list faces) or two (same person?).
        #[arg(required_unless_present = "document", num_args = 1..=2, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print JSON (`{"faces":[…]}`, the verification or the document answer).
        #[arg(long)]
        json: bool,
        /// Read an ID document photo: its face, text lines and
        /// machine-readable zone (check digits verified).
        #[arg(long, value_name = "IMG", conflicts_with = "files")]
        document: Option<PathBuf>,
        /// With --document: match the document's face with this photo.
        #[arg(long, value_name = "FACE", requires = "document")]
        face: Option<PathBuf>,
    },
    /// The exam centre's own certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Back up the database, keys and objects into a directory or an S3
    /// bucket, also while invigil runs; `backup verify` rechecks backups.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        /// A directory, or an S3 URI in MINIO_URI's form (default: BACKUP_TO).
        #[arg(long, value_name = "DIR|URI")]
        to: Option<String>,
        #[command(subcommand)]
        command: Option<BackupCommand>,
    },
    /// Check the installation: configuration, data directory, ports, disk,
    /// clock, certificates, TURN, models, backups, permissions; exit 1 on a FAIL.
    Doctor,
    /// Files for the package (man pages, completions, the environment file).
    #[command(hide = true, subcommand)]
    Generate(generate::Generate),
    /// Restore a backup into an empty data directory.
    Restore {
        /// The directory or S3 URI the backups were written to.
        #[arg(long, value_name = "DIR|URI")]
        from: String,
        /// Which backup (its name, e.g. 20261204T190600Z); default: the newest.
        #[arg(long)]
        stamp: Option<String>,
        /// The new data directory (must be empty or missing).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Write a session's signed evidence bundle from DATA_DIR (server
    /// stopped), or print the signing key with --show-key.
    Export {
        /// The session's id (ids may begin with `-`).
        #[arg(required_unless_present = "show_key", allow_hyphen_values = true)]
        session: Option<String>,
        /// The bundle file (a tar archive).
        #[arg(long, value_name = "FILE", required_unless_present = "show_key")]
        out: Option<PathBuf>,
        /// Print the instance's public key and its fingerprint.
        #[arg(long)]
        show_key: bool,
    },
    /// Check an evidence bundle offline; exits 1 naming the first file or
    /// entry that does not match.
    VerifyBundle {
        file: PathBuf,
        /// The instance's public key (base64 or hex, or a file holding it).
        #[arg(long, value_name = "PUB")]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Recheck every hash of every backup (or one) and every chain in them;
    /// exits 1 naming the first fault.
    Verify {
        /// The directory or S3 URI the backups were written to.
        #[arg(long, value_name = "DIR|URI")]
        from: String,
        /// Only this backup.
        #[arg(long)]
        stamp: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit chains offline from DATA_DIR (the server must be
    /// stopped); exits 1 naming the first bad entry.
    Verify {
        /// Only this host's chain (its id), or `instance`.
        #[arg(long)]
        host: Option<String>,
    },
}

pub(super) const EXIT_BAD_CONFIG: u8 = 2;

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Entry point of the `invigil` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help and usage errors itself and picks 0 or 2.
        Err(e) => e.exit(),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Version => {
            println!("invigil {VERSION}");
            ExitCode::SUCCESS
        }
        Command::CheckConfig => check_config(cli.env_file),
        Command::Serve => serve(cli.env_file),
        Command::Recognizer => recognizer::run(cli.env_file),
        Command::TurnCheck { uri } => turn_check(cli.env_file, uri),
        Command::Bench { what } => bench::run(what),
        Command::Audit {
            command: AuditCommand::Verify { host },
        } => audit_verify(cli.env_file, host),
        Command::Recognize {
            json,
            document: Some(document),
            face,
            ..
        } => recognize::run_document(&document, face.as_deref(), json),
        Command::Recognize { files, json, .. } => recognize::run(&files, json),
        Command::Ca(command) => ca::ca(cli.env_file, command),
        Command::Backup {
            command: Some(BackupCommand::Verify { from, stamp }),
            ..
        } => backup::verify(&from, stamp.as_deref()),
        Command::Backup { to, command: None } => match load(cli.env_file) {
            Ok(l) => {
                let to = to.or_else(|| l.config.backup_to.as_ref().map(|s| s.expose().to_string()));
                match to {
                    Some(to) => backup::take(l.config, &to),
                    None => {
                        eprintln!(
                            "invigil: say where to write the backup: --to DIR|URI, or BACKUP_TO"
                        );
                        ExitCode::from(EXIT_BAD_CONFIG)
                    }
                }
            }
            Err(code) => code,
        },
        Command::Generate(what) => generate::run(what),
        Command::Doctor => match load(cli.env_file) {
            Ok(l) => doctor::run(l.config, l.warnings.len()),
            Err(code) => code,
        },
        Command::Restore {
            from,
            stamp,
            data_dir,
        } => match load(cli.env_file) {
            Ok(l) => backup::restore(l.config, &from, stamp.as_deref(), &data_dir),
            Err(code) => code,
        },
        Command::Export {
            session,
            out,
            show_key,
        } => evidence::export(cli.env_file, session, out, show_key),
        Command::VerifyBundle { file, key } => evidence::verify_bundle(&file, key.as_deref()),
    }
}

/// A multi-threaded runtime for a command, or the exit code after saying why
/// there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("invigil: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs a command's future on a fresh runtime; errors go to stderr, exit 1.
fn block_on(f: impl std::future::Future<Output = Result<(), crate::turn::TurnError>>) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e}");
            ExitCode::FAILURE
        }
    }
}

fn turn_check(env_file: Option<PathBuf>, uri: Option<String>) -> ExitCode {
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // The secret only matters when no user:password is given; reading it
    // never fails the check by itself.
    let secret = app::secrets::turn_secret(&loaded.config).ok();
    let target = match crate::turn::check::Target::resolve(
        &loaded.config,
        uri.as_deref(),
        secret.as_deref(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("invigil: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    block_on(async move {
        crate::turn::check::run(&target, &mut std::io::stdout())
            .await
            .map(|_| ())
    })
}

fn load(env_file: Option<PathBuf>) -> Result<Loaded, ExitCode> {
    Config::load(env_file.as_deref(), std::env::vars()).map_err(|errors| {
        eprint!("invigil: {errors}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn check_config(env_file: Option<PathBuf>) -> ExitCode {
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let width = loaded
        .effective
        .iter()
        .map(|e| e.0.len())
        .max()
        .unwrap_or(0);
    for (name, value, origin) in &loaded.effective {
        println!("{name:width$} = {value}    ({origin})");
    }
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let problems = app::check(&loaded.config);
    if problems.is_empty() {
        println!("configuration OK");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

fn audit_verify(env_file: Option<PathBuf>, only: Option<String>) -> ExitCode {
    use crate::auth::audit;
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let path = loaded.config.data_dir.join(crate::store::DATABASE_FILE);
    if !path.exists() {
        eprintln!("invigil: no database at {}", path.display());
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let store = match crate::store::open(&path, crate::store::MIGRATIONS) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invigil: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let scopes = match (only, audit::scopes(store.as_ref())) {
        (Some(h), _) => vec![h],
        (None, Ok(all)) => all,
        (None, Err(e)) => {
            eprintln!("invigil: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut bad = false;
    for scope in scopes {
        match audit::verify(store.as_ref(), &scope) {
            Ok(n) => println!("{scope}: {n} entries, chain intact"),
            Err(e) => {
                println!("{scope}: BROKEN: {e}");
                bad = true;
            }
        }
    }
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

fn serve(env_file: Option<PathBuf>) -> ExitCode {
    on_runtime(env_file, "invigil", run)
}

/// Loads the configuration, starts logging and a runtime of THREADS workers
/// named `name`, and runs `body` on it: how the long-running modes start.
pub(super) fn on_runtime<F, Fut>(env_file: Option<PathBuf>, name: &str, body: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_logging(loaded.config.log_format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loaded.config.threads)
        .thread_name(name)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("invigil: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(body(loaded.config))
}

async fn run(config: Config) -> ExitCode {
    // Handlers go in before anything is announced, so a SIGTERM that arrives
    // right after READY still shuts down cleanly instead of killing the process.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invigil: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = config.data_dir.clone();
    let manager_host = config.manager_host.clone();
    let username = config.manager_username.clone();
    let url = config.public_url();
    let mut running = match app::start(config, axum::Router::new()).await {
        Ok(r) => r,
        Err(e) => {
            eprint!("invigil: {e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    banner::print(&banner::Banner {
        url: &url,
        https_addr: running.https_addr,
        manager_host: &manager_host,
        username: &username,
        generated_password: running.generated_manager_password.as_ref(),
        data_dir: &data_dir,
        tls_mode: running.tls_mode,
    });
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    running.start_watchdog();
    let signal = loop {
        match signals.wait().await {
            "SIGHUP" => {
                tracing::info!("SIGHUP received; reloading the certificate");
                running.reload_certificates();
            }
            stop => break stop,
        }
    };
    tracing::info!("{signal} received; shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    running.stop().await;
    ExitCode::SUCCESS
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
