//! A random small block must execute identically sequentially and with Block-STM.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = parevm_fixtures::fuzzing::differential(data) {
        panic!("{divergence}");
    }
});
