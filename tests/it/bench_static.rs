//! `invigil bench static` end to end at a small size: invigil and nginx
//! (which `tests/run` installs) serve the same files and API read, and every
//! row carries figures for both with no error.

use std::process::Command;

#[test]
fn bench_static_prints_a_row_per_target_with_figures_for_both_servers() {
    let out = Command::new(env!("CARGO_BIN_EXE_invigil"))
        .args(["bench", "static", "--secs", "1", "--connections", "4"])
        .output()
        .expect("invigil bench static runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?} (nginx comes from tests/run)\n{stdout}\n{stderr}",
        out.status
    );
    for target in ["/ ", "/js/app.js ", "/style.css ", "/api/v1/sessions/{id} "] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(target))
            .unwrap_or_else(|| panic!("no row for {target}:\n{stdout}"));
        // bytes | invigil: req/s p50 p99 CPU | nginx: req/s p50 p99 CPU | ratio
        let numbers: Vec<f64> = row
            .split('|')
            .skip(1)
            .flat_map(str::split_whitespace)
            .map(|w| w.parse().unwrap_or_else(|_| panic!("{w:?} in {row}")))
            .collect();
        assert_eq!(numbers.len(), 9, "{row}");
        let bytes = row.split('|').next().unwrap().split_whitespace().last();
        assert!(bytes.unwrap().parse::<u64>().unwrap() > 0, "{row}");
        let (ours, theirs, ratio) = (numbers[0], numbers[4], numbers[8]);
        assert!(ours > 0.0 && theirs > 0.0, "{row}");
        // nginx's master idles: its CPU is the workers', found through /proc.
        assert!(numbers[3] > 0.0 && numbers[7] > 0.0, "CPU seconds: {row}");
        assert!(
            numbers[1] <= numbers[2] && numbers[5] <= numbers[6],
            "p50 ≤ p99: {row}"
        );
        assert!((ratio - ours / theirs).abs() < 0.01 + ratio * 0.01, "{row}");
    }
    assert!(stdout.contains("; 0 errors"), "{stdout}");
}
