//! `invigil recognizer`: this machine as a recognition node for other
//! invigil daemons (their `RECOGNIZER_URI`). It serves `POST /recognize`
//! (API_KEY required) and `GET /ping` on HOST:PORT and nothing else; no
//! database, no accounts, no live hub.

use super::{EXIT_BAD_CONFIG, Signals, on_runtime};
use crate::app;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(env_file: Option<PathBuf>) -> ExitCode {
    on_runtime(env_file, "invigil-recognizer", serve)
}

async fn serve(config: crate::config::Config) -> ExitCode {
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("invigil: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match app::start_recognizer(config).await {
        Ok(node) => node,
        Err(e) => {
            eprint!("invigil: {e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // One line on stdout that scripts (and the tests) read the address from.
    let scheme = if node.tls_mode == "proxy" {
        "http"
    } else {
        "https"
    };
    println!(
        "invigil recognizer listening on {scheme}://{}/recognize",
        node.addr
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    loop {
        match signals.wait().await {
            // Certificates renew by themselves; nothing to reload by hand.
            "SIGHUP" => continue,
            signal => {
                tracing::info!("{signal} received; shutting down");
                break;
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    node.stop().await;
    ExitCode::SUCCESS
}
