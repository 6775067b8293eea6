//! Arbitrary bytes as `block.json` and `prestate.json`: a snapshot or an error, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| parevm_fixtures::fuzzing::snapshot_parse(data));
