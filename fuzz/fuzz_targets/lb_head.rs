//! The lb's request-head checks: the bytes a client sends on one connection to an HTTP
//! frontend → what the lb refuses and what it would forward. Properties:
//! `webfarm_fuzzing::lb_head::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::lb_head::check(data);
});
