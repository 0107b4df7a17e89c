//! The tracing subscriber every node installs.

use tracing_subscriber::EnvFilter;

/// Installs a compact `tracing` subscriber on stderr.
///
/// The level comes from `RUST_LOG` (default `info`; `openraft` at `error`, because it logs
/// ordinary election races at `warn`; its `engine_impl` target off, because it logs "Can not
/// initialize" at `error` when a node of a forming cluster already voted, which the db role
/// expects and treats as success; `hyper` at `warn`; hickory's crates at `warn`, because
/// hickory-server logs every DNS query at `info`, which the dns node counts in `/metrics`
/// instead). No timestamps when `supervised` is
/// true: the supervisor (`webfarm up`) prefixes each line with the node name.
pub fn init(supervised: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,openraft=error,openraft::engine::engine_impl=off,hyper=warn,h2=warn,\
             hickory_server=warn,hickory_net=warn,hickory_proto=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = if supervised {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
