//! `invigil bench all`: every benchmark of the README's performance table in
//! one go, each as its own child process of this binary (so one failing
//! peer does not stop the rest), its output shown as it runs, and a summary
//! of each benchmark's headline line at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// One row of the table.
struct Row {
    name: &'static str,
    peer: &'static str,
    args: Vec<String>,
    /// Output lines starting with one of these are the row's headline.
    headline: &'static [&'static str],
    /// Why it cannot run here, if it cannot.
    missing: Option<String>,
}

fn rows(quick: bool) -> Vec<Row> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let faces = Path::new("tests/data/faces");
    let photos_missing = (!faces.join("portrait.jpg").exists()).then(|| {
        "run it from a source checkout: it reads tests/data/faces (the ORL faces and two photos)"
            .to_string()
    });
    let (students, kills, secs) = if quick {
        ("100", "10", "20")
    } else {
        ("1000", "100", "120")
    };
    vec![
        Row {
            name: "TURN relay",
            peer: "coturn",
            args: s(&["turn"]),
            headline: &["udp ", "tcp "],
            missing: None,
        },
        Row {
            name: "recognition",
            peer: "dlib face_recognition",
            args: s(&[
                "recognize",
                "tests/data/faces/portrait.jpg",
                "tests/data/faces/group.jpg",
                "--labelled",
                "tests/data/faces/orl",
                "--frames",
                if quick { "20" } else { "100" },
            ]),
            headline: &["tract vs dlib", "onnxruntime vs dlib"],
            missing: photos_missing,
        },
        Row {
            name: "recording ingest",
            peer: "dd oflag=dsync",
            args: s(&["ingest"]),
            headline: &["      1 |", "      4 |"],
            missing: None,
        },
        Row {
            name: "protocol appends",
            peer: "PostgreSQL",
            args: s(&["append"]),
            headline: &["ratio invigil"],
            missing: None,
        },
        Row {
            name: "static files and API reads",
            peer: "nginx",
            args: s(&["static"]),
            headline: &["/"],
            missing: None,
        },
        Row {
            name: "live hub",
            peer: "(none)",
            args: s(&["hub", "--students", students]),
            headline: &["fan-out latency", "after the drain"],
            missing: None,
        },
        Row {
            name: "students per box",
            peer: "(goal: p99 < 250 ms, 0 lost)",
            args: s(&[
                "load",
                "--students",
                students,
                "--secs",
                secs,
                "--ramp-secs",
                if quick { "10" } else { "60" },
            ]),
            headline: &["missing after", "server:", "goal ("],
            missing: None,
        },
        Row {
            name: "crash campaign",
            peer: "(goal: 0 lost)",
            args: s(&["crash", "--rounds", kills]),
            headline: &["acknowledged:", "evidence bundles:", "result:"],
            missing: None,
        },
        Row {
            name: "hostile clients",
            peer: "(goals)",
            args: s(&["hostile"]),
            headline: &["  legitimate client", "  server RSS", "  other students'"],
            missing: None,
        },
    ]
}

pub(super) fn run(quick: bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("invigil: bench all: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut summary = Vec::new();
    let mut failed = 0;
    for row in rows(quick) {
        println!(
            "\n=== {} vs {}: invigil bench {}",
            row.name,
            row.peer,
            row.args.join(" ")
        );
        if let Some(why) = &row.missing {
            println!("skipped: {why}");
            summary.push((row.name, row.peer, "skipped".to_string(), 0.0, Vec::new()));
            continue;
        }
        let t = Instant::now();
        let (status, headlines) = match run_one(&exe, &row) {
            Ok(r) => r,
            Err(e) => (format!("did not run: {e}"), Vec::new()),
        };
        if status != "ok" {
            failed += 1;
        }
        summary.push((
            row.name,
            row.peer,
            status,
            t.elapsed().as_secs_f64(),
            headlines,
        ));
    }
    println!(
        "\n=== summary ({})",
        crate::proctoring::reports::rfc3339(Some(crate::auth::now_secs()))
    );
    for (name, peer, status, secs, headlines) in summary {
        println!("{name} vs {peer}: {status} in {secs:.0} s");
        for h in headlines {
            println!("    {}", h.trim_end());
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one benchmark, echoing its output; returns its status and headline
/// lines.
fn run_one(exe: &Path, row: &Row) -> std::io::Result<(String, Vec<String>)> {
    let mut child = Command::new(exe)
        .arg("bench")
        .args(&row.args)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut headlines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if row.headline.iter().any(|p| line.starts_with(p)) {
                headlines.push(line);
            }
        }
    }
    let status = child.wait()?;
    let status = if status.success() {
        "ok".to_string()
    } else {
        format!("FAILED ({status})")
    };
    Ok((status, headlines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_row_is_a_command_line_the_bench_command_takes() {
        for quick in [false, true] {
            for row in rows(quick) {
                let args = ["invigil", "bench"]
                    .into_iter()
                    .map(String::from)
                    .chain(row.args.iter().cloned());
                let parsed = crate::cli::Cli::try_parse_from(args);
                assert!(parsed.is_ok(), "{}: {:?}", row.name, parsed.err());
            }
        }
    }
}
