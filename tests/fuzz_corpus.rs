//! Every committed fuzz corpus file and every regression input runs through
//! its target's body (`tests/fuzz_harness`), on stable, so CI checks what
//! the coverage-guided fuzzers (`fuzz/`, cargo-fuzz) found and kept without
//! a nightly toolchain. A target without corpus files fails: each one is
//! seeded from the test vectors (`examples/fuzz_seeds.rs`).

mod fuzz_harness;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_and_regression_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, target) in fuzz_harness::TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: run `cargo run --example fuzz_seeds`"
        );
        let regressions = files(&root.join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            // A panic names the file, so a failure can be replayed with
            // `cargo +nightly fuzz run NAME FILE`.
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            total += 1;
        }
    }
    assert!(total >= fuzz_harness::TARGETS.len());
}

/// Every fuzz target has a cargo-fuzz binary of the same name.
#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    for (name, _) in fuzz_harness::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks a [[bin]] for {name}"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(
            text.contains(&format!("harness::{name}(")),
            "{} does not call harness::{name}",
            source.display()
        );
    }
}
