//! Replays every input the fuzzers kept (`fuzz/corpus/TARGET/`), every input that once
//! crashed a target (`fuzz/regressions/TARGET/`, named by what it found) and every seed
//! through its target, on every test run: what a fuzzer found and was fixed stays
//! fixed. Fails if a corpus is missing or small, so it cannot pass on nothing.

use std::path::{Path, PathBuf};

/// The files in `fuzz/FOLDER/TARGET`, sorted; none if the folder does not exist.
fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .map(|entry| entry.expect("a folder entry").path())
        .collect();
    paths.sort();
    paths
}

fn replay(target: &str, run: fn(&[u8]), seeds: Vec<Vec<u8>>) {
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= 10,
        "the {target} corpus holds {} inputs; run scripts/fuzz {target}",
        corpus.len()
    );
    let regressions = inputs("regressions", target);
    for path in corpus.iter().chain(&regressions) {
        run(&std::fs::read(path).expect("read an input"));
    }
    for seed in &seeds {
        run(seed);
    }
    eprintln!(
        "{target}: {} corpus inputs, {} regressions and {} seeds replayed",
        corpus.len(),
        regressions.len(),
        seeds.len()
    );
}

#[test]
fn envelope_corpus() {
    replay(
        "envelope",
        linli_fuzz::envelope::run,
        linli_fuzz::seeds::envelope(),
    );
}

#[test]
fn rules_corpus() {
    replay("rules", linli_fuzz::rules::run, Vec::new());
}

#[test]
fn roster_corpus() {
    replay(
        "roster",
        linli_fuzz::roster::run,
        linli_fuzz::seeds::roster(),
    );
}
