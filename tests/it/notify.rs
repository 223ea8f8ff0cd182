//! systemd's notify protocol as the packaged unit uses it (`Type=notify`,
//! `WatchdogSec`): READY once serving, WATCHDOG pings while running,
//! STOPPING on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_reports_ready_pings_the_watchdog_and_reports_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // systemd names the watched process; `exec` keeps the shell's pid.
    let mut child = Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" serve"])
        .arg(env!("CARGO_BIN_EXE_invigil"))
        .env("DATA_DIR", dir.path().join("data"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("HTTP_PORT", "0")
        .env("TURN_PORT", "0")
        .env("NOTIFY_SOCKET", &socket_path)
        // 0.4 s: pings every 0.2 s.
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "messages so far: {seen:?}");
        let n = socket.recv(&mut buf).expect("a notify message");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        seen.first().is_some_and(|m| m.contains("READY=1")),
        "READY comes first: {seen:?}"
    );
    // SAFETY: signals the child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING before exit");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}
