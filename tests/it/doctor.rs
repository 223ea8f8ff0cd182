//! `invigil doctor` on a healthy running instance and on a broken one.

use crate::harness::Daemon;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn doctor(data_dir: &Path, port: u16, http: u16, turn: u16) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invigil"))
        .arg("doctor")
        .env("DATA_DIR", data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("HTTP_PORT", http.to_string())
        .env("TURN_PORT", turn.to_string())
        .env_remove("MINIO_URI")
        .output()
        .expect("invigil doctor runs")
}

fn lines_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_running_instance_and_names_what_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start_in(&data, &[], axum::Router::new())
        .await
        .unwrap();
    let https = daemon.running.https_addr.port();
    let http = daemon.running.http_addr.unwrap().port();
    let turn = daemon.running.turn.as_ref().unwrap().local_addr().port();
    let d = data.clone();
    let out = tokio::task::spawn_blocking(move || doctor(&d, https, http, turn))
        .await
        .unwrap();
    let report = lines_of(&out);
    assert!(out.status.success(), "{report}");
    for expected in [
        "ok    daemon ",
        "is held by the running invigil",
        "ok    turn ",
        "ok    models ",
        "ok    certificate ",
        "ok    permissions ",
        "warn  backup ",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
    daemon.stop().await;

    // Stopped, a key left readable by others, and PORT taken by someone else.
    std::fs::set_permissions(
        data.join("session.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let d = data.clone();
    let out = tokio::task::spawn_blocking(move || doctor(&d, taken, http, turn))
        .await
        .unwrap();
    let report = lines_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for expected in [
        "warn  daemon ",
        &format!("FAIL  ports          PORT 127.0.0.1:{taken} is used by another program"),
        "session.key has mode 644: chmod 600 it",
        "skip  turn ",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
}
