//! The SQL determinism rewrite: statements applied on two replicas give the same results and
//! database, free of the wall clock. Properties: `webfarm_fuzzing::sql::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::sql::check(data);
});
