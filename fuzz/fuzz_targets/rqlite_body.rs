//! rqlite request bodies: JSON statements (plain, positional and named parameters) → the
//! statements or a 400; the same bytes as URL flags. Properties:
//! `webfarm_fuzzing::rqlite::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::rqlite::check(data);
});
