//! The properties webfarm's fuzz targets check, on stable Rust.
//!
//! Each module takes the raw bytes of one fuzz input, runs them through the same entry point
//! the node uses for input from the network or a file, and panics when a property does not
//! hold (a panic is what libFuzzer reports as a crash). The cargo-fuzz targets in `fuzz/`
//! (nightly, libFuzzer) are one-line wrappers around these functions, and
//! `tests/corpus.rs` replays every committed corpus file (`fuzz/corpus/<target>/`) through
//! them on the stable toolchain, so `cargo test --workspace` keeps the corpus as regression
//! tests without cargo-fuzz.
//!
//! | target | module | input |
//! |---|---|---|
//! | `topology` | [`topology`] | a topology file (TOML text) |
//! | `dns` | [`dns`] | a DNS message, as a UDP datagram or a TCP message carries it |
//! | `lb_head` | [`lb_head`] | the bytes a client sends on one connection to an HTTP frontend |
//! | `acl` | [`acl`] | a frontend's access rules and a client's requests, one directive per line |
//! | `rqlite_body` | [`rqlite`] | an rqlite request body (and the same bytes as URL flags) |
//! | `sql` | [`sql`] | SQL statements (an rqlite body, or one SQL text) applied on two replicas |

pub mod acl;
pub mod dns;
pub mod lb_head;
pub mod rqlite;
pub mod sql;
pub mod topology;

/// The function that checks one input of a target (panics when a property fails).
pub type Check = fn(&[u8]);

/// The fuzz targets, by the name of their `fuzz/fuzz_targets/<name>.rs` and corpus folder,
/// with the function that checks one input.
pub const TARGETS: &[(&str, Check)] = &[
    ("topology", topology::check),
    ("lb_head", lb_head::check),
    ("acl", acl::check),
    ("dns", dns::check),
    ("rqlite_body", rqlite::check),
    ("sql", sql::check),
];
