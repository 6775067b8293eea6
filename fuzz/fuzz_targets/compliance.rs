//! A random gated-pool block (credentials, issuers, policies changing mid-block) must have
//! the same outcome sequentially and with Block-STM.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = parevm_fixtures::fuzzing::compliance(data) {
        panic!("{divergence}");
    }
});
