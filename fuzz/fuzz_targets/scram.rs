//! Fuzzes the SCRAM message parsers and the proxy's server side of an exchange. See
//! `doltgres_sidecar::fuzzing::exercise_scram`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = doltgres_sidecar::fuzzing::exercise_scram(data);
});
