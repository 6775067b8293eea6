//! Replays the committed fuzz corpus (`fuzz/corpus`) and a deterministic sweep of random
//! inputs through the fuzz targets' logic, so that CI checks them without the fuzzer.

use std::fs;
use std::path::Path;

use parevm_fixtures::fuzzing::{compliance, decode_gated_block, differential, snapshot_parse};
use rand::{Rng, SeedableRng};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "{} is empty", dir.display());
    entries.iter().map(|p| fs::read(p).unwrap()).collect()
}

#[test]
fn differential_corpus_agrees() {
    for (i, input) in corpus("differential").iter().enumerate() {
        differential(input).unwrap_or_else(|e| panic!("corpus entry {i}: {e}"));
    }
}

#[test]
fn differential_random_sweep_agrees() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for i in 0..400 {
        let len = rng.random_range(0..3000);
        let input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        differential(&input).unwrap_or_else(|e| panic!("random input {i}: {e}"));
    }
}

#[test]
fn snapshot_parse_corpus_never_panics() {
    for input in corpus("snapshot_parse") {
        snapshot_parse(&input);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let entries = corpus("snapshot_parse");
    let sample = entries.iter().max_by_key(|e| e.len()).expect("non-empty corpus");
    for _ in 0..300 {
        // Mutations of a valid snapshot: flipped bytes and truncations.
        let mut input = sample.clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..input.len());
            input[at] = rng.random();
        }
        input.truncate(rng.random_range(0..=input.len()));
        snapshot_parse(&input);
    }
}

#[test]
fn compliance_corpus_and_random_sweep_agree() {
    for (i, input) in corpus("compliance").iter().enumerate() {
        compliance(input).unwrap_or_else(|e| panic!("corpus entry {i}: {e}"));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let (mut excluded, mut failed_blocks, mut included, mut rejected) = (0, 0, 0, 0);
    for i in 0..300 {
        let len = rng.random_range(0..600);
        let input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        compliance(&input).unwrap_or_else(|e| panic!("random input {i}: {e}"));
        let mut u = arbitrary::Unstructured::new(&input);
        if let Ok((storage, block, hook, _)) = decode_gated_block(&mut u) {
            let config = parevm::Config::default().with_compliance(Some(hook));
            match parevm::Executor::new(config).and_then(|e| e.execute(&storage, &block)) {
                Ok(run) => {
                    excluded += run.output.excluded.len();
                    rejected += run.output.rejected.len();
                    included += run.output.transactions.len();
                }
                Err(_) => failed_blocks += 1,
            }
        }
    }
    // The decoder reaches every outcome.
    assert!(
        excluded > 50 && included > 50 && failed_blocks > 5 && rejected > 5,
        "{excluded} {included} {failed_blocks} {rejected}"
    );
}
