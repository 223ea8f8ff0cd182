//! Replays every fuzz target's seed corpus and every minimised crash found by
//! `cargo fuzz` (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through
//! the same entry points as the fuzzers, so a fixed crash stays fixed.

use std::path::PathBuf;

#[test]
fn fuzz_corpora_replay_without_panics() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, entry) in invigil::fuzzing::TARGETS {
        let seeds = root.join("corpus").join(name);
        assert!(seeds.is_dir(), "no seed corpus for fuzz target {name}");
        for dir in [seeds, root.join("regressions").join(name)] {
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| entry(&data));
                assert!(outcome.is_ok(), "{name} panics on {}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 15, "only {replayed} inputs replayed");
}
