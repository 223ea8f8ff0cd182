//! The Debian package, built and checked the way an administrator meets it:
//! its contents, `lintian`, the unit's `systemd-analyze security` exposure,
//! then `dpkg -i`, the installed binary serving with the packaged environment
//! file as the packaged user, `dpkg -r` (data kept) and `dpkg -P` (nothing left).
//!
//! Needs root (dpkg), cargo-deb and lintian, which `tests/run` installs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNITS: &[&str] = &[
    "usr/lib/systemd/system/invigil.service",
    "usr/lib/systemd/system/invigil-backup.service",
    "usr/lib/systemd/system/invigil-backup.timer",
];
const LEFTOVERS: &[&str] = &["/var/lib/invigil", "/etc/invigil", "/var/backups/invigil"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "invigil"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false)
}

fn user_exists() -> bool {
    Command::new("getent")
        .args(["passwd", "invigil"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Kills the started server if an assertion fails half-way.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
        if systemd_runs() {
            let _ = Command::new("systemctl")
                .args(["stop", "invigil-package-test"])
                .status();
        }
    }
}

/// Starts `/usr/bin/invigil` as user invigil with the packaged env file, on
/// test ports given in the environment (which wins over the file).
fn start_installed(https: u16, http: u16, turn: u16) -> Server {
    let vars = [
        ("DATA_DIR", "/var/lib/invigil".to_string()),
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", https.to_string()),
        ("HTTP_PORT", http.to_string()),
        ("TURN_PORT", turn.to_string()),
    ];
    let args = ["--env-file", "/etc/invigil/invigil.env", "serve"];
    if systemd_runs() {
        let mut cmd = Command::new("systemd-run");
        cmd.args([
            "--unit=invigil-package-test",
            "--uid=invigil",
            "--gid=invigil",
            "-p",
            "UMask=0077",
        ]);
        for (k, v) in &vars {
            cmd.arg(format!("--setenv={k}={v}"));
        }
        cmd.arg("/usr/bin/invigil").args(args);
        run(&mut cmd);
        Server(None)
    } else {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=invigil",
            "--regid=invigil",
            "--init-groups",
            "--inh-caps=-all",
            "/usr/bin/invigil",
        ])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        Server(Some(cmd.spawn().expect("setpriv starts invigil")))
    }
}

fn stop(mut server: Server) {
    if let Some(mut child) = server.0.take() {
        // SIGTERM: a clean stop exits 0.
        // SAFETY: signals a child this test started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "invigil stopped with {status}");
    } else {
        run(Command::new("systemctl").args(["stop", "invigil-package-test"]));
    }
}

async fn ping(port: u16) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .get(format!("https://127.0.0.1:{port}/ping"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap(),
            other if Instant::now() > deadline => {
                panic!("the installed invigil does not answer /ping: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn mode_owner(path: &str) -> String {
    text(&run(Command::new("stat").args(["-c", "%a %U %G", path])))
        .trim()
        .to_string()
}

#[tokio::test]
async fn debian_package_builds_installs_runs_and_purges_cleanly() {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the package test installs with dpkg and must run as root"
    );
    if installed() {
        run(Command::new("dpkg").args(["-P", "invigil"]));
    }
    let out = run(Command::new(root().join("packaging/build-deb"))
        .args(["--bin", env!("CARGO_BIN_EXE_invigil")])
        .current_dir(root()));
    let deb = root().join(text(&out).lines().last().unwrap().trim());
    let deb = deb.to_str().unwrap().to_string();

    // Contents.
    let listing = text(&run(Command::new("dpkg-deb").args(["-c", &deb])));
    let expected = [
        "usr/bin/invigil",
        "usr/lib/invigil/libonnxruntime.so",
        "etc/invigil/invigil.env",
        "usr/share/man/man1/invigil.1.gz",
        "usr/share/man/man1/invigil-backup.1.gz",
        "usr/share/bash-completion/completions/invigil",
        "usr/share/zsh/vendor-completions/_invigil",
        "usr/share/fish/vendor_completions.d/invigil.fish",
        "usr/share/doc/invigil/copyright",
    ];
    for path in expected.iter().chain(UNITS) {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} not in the package:\n{listing}"
        );
    }
    let conffiles = text(&run(Command::new("dpkg-deb").args([
        "-I",
        &deb,
        "conffiles",
    ])));
    assert!(
        conffiles.contains("/etc/invigil/invigil.env"),
        "the env file is not a conffile: {conffiles}"
    );

    // The shipped unit's exposure.
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").args(["-x", &deb, unpacked.path().to_str().unwrap()]));
    let unit = unpacked.path().join(UNITS[0]);
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit));
    let report = text(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for invigil.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.5, "exposure {exposure} > 2.5:\n{report}");

    // lintian: no errors, no warnings.
    let lintian = Command::new("lintian").arg(&deb).output().unwrap();
    let findings = String::from_utf8_lossy(&lintian.stdout);
    let bad: Vec<&str> = findings
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian:\n{findings}");

    // Install.
    run(Command::new("dpkg")
        .args(["-i", &deb])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(user_exists(), "the package creates user invigil");
    assert_eq!(mode_owner("/var/lib/invigil"), "700 invigil invigil");
    assert_eq!(mode_owner("/etc/invigil/invigil.env"), "640 root invigil");
    if systemd_runs() {
        // The packaged service itself holds 443/80; stop it for the test ports.
        let _ = Command::new("systemctl").args(["stop", "invigil"]).status();
    }

    // The packaged ONNX Runtime is found without configuration.
    let doctor = Command::new("/usr/bin/invigil")
        .args(["--env-file", "/etc/invigil/invigil.env", "doctor"])
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("face models load and run (onnxruntime)"),
        "the installed binary does not use the packaged ONNX Runtime:\n{report}"
    );

    let (https, http, turn) = (free_port(), free_port(), free_port());
    let server = start_installed(https, http, turn);
    let answer = ping(https).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    stop(server);
    assert!(
        Path::new("/var/lib/invigil/invigil.redb").exists(),
        "the database is in the state directory"
    );
    assert_eq!(
        mode_owner("/var/lib/invigil/session.key"),
        "600 invigil invigil"
    );

    // Remove keeps data and configuration.
    run(Command::new("dpkg").args(["-r", "invigil"]));
    assert!(!Path::new("/usr/bin/invigil").exists());
    assert!(
        Path::new("/var/lib/invigil/invigil.redb").exists(),
        "remove keeps data"
    );
    assert!(
        Path::new("/etc/invigil/invigil.env").exists(),
        "remove keeps settings"
    );

    // Purge leaves nothing behind.
    run(Command::new("dpkg").args(["-P", "invigil"]));
    for path in LEFTOVERS {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    for unit in UNITS {
        assert!(!Path::new("/").join(unit).exists(), "{unit} is left");
    }
    assert!(!user_exists(), "user invigil is left after purge");
    assert!(!installed());
}
