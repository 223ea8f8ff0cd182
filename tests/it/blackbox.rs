//! The built `invigil` binary as a black box: exit codes, console output,
//! signals, and what an operator sees.

use crate::harness::client_for;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_invigil");

/// A command with a clean environment, so the machine's variables cannot leak in.
pub(crate) fn invigil(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1");
    cmd
}

#[test]
fn check_config_reports_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = invigil(dir.path())
        .args(["check-config"])
        .env("PORT", "99999")
        .env("SESSION_KEY", "secret")
        .env("PASSWORD_RULE", "(unclosed")
        .env("TURN_MIN_PORT", "x")
        .env("MANAGER_PASSWORD", "hunter2-do-not-print")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in ["PORT", "SESSION_KEY", "PASSWORD_RULE", "TURN_MIN_PORT"] {
        assert!(
            stderr.contains(&format!("  {var}: ")),
            "{var} missing in:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 configuration errors"), "{stderr}");
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn check_config_reads_a_vendor_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(
        &env_file,
        "DISTRIB_URL=https://files.example/dist.zip\nDISTRIB_KEY=abc\n\
         MONGO_URI=mongodb://admin:mongopass@127.0.0.1:27017/proctoring?authSource=admin\n\
         SESSION_EXPIRES=120\nMANAGER_PASSWORD=\"Correct horse 9 battery\"\nUPLAOD_LIMIT=5\n",
    )
    .unwrap();
    let out = invigil(&dir.path().join("data"))
        .args(["--env-file", env_file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("SESSION_EXPIRES") && stdout.contains("120"),
        "{stdout}"
    );
    assert!(stdout.contains("MANAGER_PASSWORD") && stdout.contains("*** (set)"));
    for unused in ["MONGO_URI: set but unused", "DISTRIB_URL: set but unused"] {
        assert!(stderr.contains(unused), "{unused} missing:\n{stderr}");
    }
    assert!(stderr.contains("did you mean UPLOAD_LIMIT?"), "{stderr}");
    for secret in ["mongopass", "Correct horse"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    assert!(
        !dir.path().join("data").exists(),
        "check-config creates nothing"
    );
}

#[test]
fn version_and_usage_exit_codes() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("invigil {}", invigil::VERSION)
    );
    let out = Command::new(BIN).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

pub(crate) struct Server {
    pub child: Child,
    pub banner: Vec<String>,
    pub https: SocketAddr,
}

/// Starts `invigil serve` and waits for its banner.
pub(crate) fn serve(data_dir: &Path, extra: &[(&str, &str)]) -> Server {
    let mut cmd = invigil(data_dir);
    // Port 0: the kernel picks free ports and the banner says which.
    cmd.env("PORT", "0")
        .env("HTTP_PORT", "0")
        .env("TURN_PORT", "0")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data_dir.with_extension("log")).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let end = line.trim_start().starts_with("data");
        banner.push(line);
        if end {
            break;
        }
    }
    assert!(banner.iter().any(|l| l.contains("is ready")), "{banner:?}");
    eprintln!("start to ready: {:?}", started.elapsed());
    let https = banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("listening"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .expect("banner names the listening address");
    Server {
        child,
        banner,
        https,
    }
}

pub(crate) fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child process has no memory effects.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("did not exit within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_the_manager_login_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[]);
    let password_line = server
        .banner
        .iter()
        .find(|l| l.trim_start().starts_with("password"))
        .expect("generated password shown on first start")
        .clone();
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("sign in as \"manager\""))
    );
    let client = client_for(dir.path(), server.https);
    let ping = client
        .get(format!("https://localhost:{}/ping", server.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    // An idle keep-alive connection stays open across the signal: it must not
    // delay the exit.
    let started = Instant::now();
    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(5)),
        Some(0)
    );
    eprintln!("SIGTERM to exit: {:?}", started.elapsed());

    let mut again = serve(dir.path(), &[]);
    assert!(
        !again
            .banner
            .iter()
            .any(|l| l.trim_start().starts_with("password")),
        "the password is shown only on first start"
    );
    let generated = password_line.split_whitespace().nth(1).unwrap();
    assert!(!again.banner.join("\n").contains(generated));
    sigterm(&again.child);
    assert_eq!(wait_exit(&mut again.child, Duration::from_secs(5)), Some(0));
}

#[test]
fn json_logs_and_second_instance_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("LOG_FORMAT", "json")]);
    let mut second = invigil(dir.path())
        .env("PORT", "0")
        .env("HTTP_PORT", "off")
        .env("TURN_PORT", "0")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut second, Duration::from_secs(10));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("DATA_DIR") && stderr.contains("already using"),
        "{stderr}"
    );
    let json_lines = stderr
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(json_lines >= 1, "JSON log lines expected:\n{stderr}");
    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(5)),
        Some(0)
    );
    let _ = std::io::stderr().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_then_names_an_altered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[("MANAGER_PASSWORD", "Manager pass 123")]);
    let client = client_for(dir.path(), server.https);
    let base = format!("https://localhost:{}", server.https.port());
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "manager", "password": "Manager pass 123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let wrong = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "manager", "password": "not the password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(5)),
        Some(0)
    );

    let verify = || {
        invigil(dir.path())
            .args(["audit", "verify"])
            .output()
            .unwrap()
    };
    let ok = verify();
    let stdout = String::from_utf8_lossy(&ok.stdout).to_string();
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("instance: ") && stdout.contains("chain intact"),
        "{stdout}"
    );

    // One byte of one entry changed on disk: the failed sign-in's action.
    let db = dir.path().join("invigil.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = b"sign_in_failed";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry is on disk");
    bytes[at + 3] = b'X';
    std::fs::write(&db, bytes).unwrap();
    let bad = verify();
    let stdout = String::from_utf8_lossy(&bad.stdout).to_string();
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("instance: BROKEN") && stdout.contains("altered"),
        "{stdout}"
    );
}
