//! The lb's access rules: a frontend's `acl`, `tcp-request connection` and `http-request`
//! lines and one client's requests → what the rules decide, with and without a stick table.
//! Input format and properties: `webfarm_fuzzing::acl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webfarm_fuzzing::acl::check(data);
});
