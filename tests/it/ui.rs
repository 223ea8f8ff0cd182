//! The web interface in a real headless Chromium (fake camera and microphone),
//! driven by Playwright scripts under `tests/ui/`: an exam day from preparing
//! users to the conclusion, with axe-core on every page and no console error
//! or CSP violation allowed. `tests/run` installs Chromium and the scripts'
//! npm packages; without them the test fails and says what to install.

use crate::harness::Daemon;
use std::path::PathBuf;
use std::process::Command;

const PW: &str = "Manager pass 123";

/// Where `tests/run` installed playwright-core and axe-core.
fn ui_modules() -> PathBuf {
    let dir = std::env::var_os("INVIGIL_UI_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui"));
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {} (tests/run installs it)",
        dir.display()
    );
    dir
}

fn run_script(script: &str, base: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(script);
    let out = Command::new("node")
        .arg(&path)
        .env("BASE", base)
        .env("MANAGER_PASSWORD", PW)
        .env("INVIGIL_UI_MODULES", ui_modules())
        .output()
        .expect("node runs (tests/run installs nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exam_day_in_chromium() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let base = format!("https://localhost:{}", d.running.https_addr.port());
    let out = tokio::task::spawn_blocking(move || run_script("exam-day.mjs", &base))
        .await
        .unwrap();
    assert!(out.contains("\"ok\":true"), "{out}");
    d.stop().await;
}
