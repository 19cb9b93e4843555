//! Fuzzes framing, startup packets, backend peeks and the transaction tracker with one input
//! stream cut into arbitrary reads. See `doltgres_sidecar::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    doltgres_sidecar::fuzzing::exercise(data);
});
