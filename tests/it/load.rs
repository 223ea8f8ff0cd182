//! `invigil bench load` and `invigil bench crash` at sizes that run in
//! seconds, through the built binary: every acknowledgement is checked
//! against the server, and under SIGKILL every evidence chain must verify.
//! The full sizes (1,000 students; 100 kills) are in the README.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_invigil");

fn bench(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .expect("invigil bench runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{text}\n{err}");
    (out.status.success(), text)
}

/// Every operation row: its name, how many were timed, how many failed.
fn rows(report: &str) -> Vec<(String, u64, u64)> {
    let table = report
        .lines()
        .skip_while(|l| !l.starts_with("operation"))
        .skip(1)
        .take(8);
    table
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = l.get(..26).unwrap_or(l).trim().to_string();
            let timed = cols[cols.len() - 5].parse().expect("timed column");
            let errors = cols[cols.len() - 4].parse().expect("errors column");
            (name, timed, errors)
        })
        .collect()
}

#[test]
fn an_exam_day_loses_nothing_acknowledged() {
    let (_, report) = bench(&[
        "load",
        "--students",
        "30",
        "--ramp-secs",
        "3",
        "--secs",
        "8",
        "--period",
        "1",
        "--snapshot-every",
        "2",
        "--chunk-every",
        "1",
        "--chat-every",
        "2",
        "--wall",
        "10",
    ]);
    assert!(
        report.contains(
            "0 recording bytes (0 offsets found behind an acknowledgement), 0 snapshots, \
             0 samples, 0 chat messages; 0 frames never answered"
        ),
        "{report}"
    );
    let rows = rows(&report);
    assert_eq!(rows.len(), 8, "{report}");
    assert!(rows.iter().all(|(_, _, e)| *e == 0), "{rows:?}");
    // Every operation happened, proctors' fan-out included.
    assert!(rows.iter().all(|(_, timed, _)| *timed > 0), "{rows:?}");
    // Every kind of evidence was acknowledged, and proctors saw the room.
    let acked = report
        .lines()
        .find(|l| l.starts_with("acknowledged:"))
        .expect("acknowledged line");
    assert!(
        !acked.contains(" 0 snapshots") && !acked.contains(" 0 samples"),
        "{acked}"
    );
    assert!(
        !report.contains("fan-out to proctor                0"),
        "{report}"
    );
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged_and_every_chain_verifies() {
    let rounds = std::env::var("INVIGIL_LOAD_CRASH_ROUNDS").unwrap_or_else(|_| "10".into());
    let (ok, report) = bench(&[
        "crash",
        "--students",
        "20",
        "--rounds",
        &rounds,
        "--between-ms",
        "300,1200",
        "--period",
        "1",
        "--snapshot-every",
        "1",
        "--chunk-every",
        "1",
        "--chat-every",
        "2",
    ]);
    assert!(ok, "{report}");
    assert!(
        report.contains("result: nothing acknowledged was lost, every chain verifies"),
        "{report}"
    );
    assert!(report.contains("evidence bundles: 20 verified"), "{report}");
}
