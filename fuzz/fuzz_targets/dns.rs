//! The DNS handler: raw DNS message bytes → the answer a dns node would send, or a drop.
//! Properties: `webfarm_fuzzing::dns::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::dns::check(data);
});
