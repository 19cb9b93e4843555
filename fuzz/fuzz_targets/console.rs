//! Fuzz target; its body and invariants are `doltgres_sidecar::fuzzing::exercise_console`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    doltgres_sidecar::fuzzing::exercise_console(data);
});
