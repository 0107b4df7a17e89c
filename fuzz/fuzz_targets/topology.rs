//! The topology file: TOML text → a validated `Farm` or a clean error. Properties:
//! `webfarm_fuzzing::topology::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::topology::check(data);
});
