//! Fuzzes the startup phase: startup packets taken through PostgreSQL's negotiation rules. See
//! `doltgres_sidecar::fuzzing::exercise_startup`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    doltgres_sidecar::fuzzing::exercise_startup(data);
});
