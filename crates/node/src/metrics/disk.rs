//! The node's data directory's filesystem: `webfarm_data_dir_size_bytes` and
//! `webfarm_data_dir_available_bytes` (node_exporter's `node_filesystem_size_bytes` and
//! `node_filesystem_avail_bytes`, for the one filesystem that matters to the node), read
//! with `statvfs(3)` at scrape time. The monitor's `DiskSpaceLow` alert divides them.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::Scrape;

static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets this process's node data directory (the binary does, at start; later calls are
/// ignored). Without it, no disk families are written.
pub fn set_data_dir(dir: PathBuf) {
    let _ = DATA_DIR.set(dir);
}

/// Writes the disk families, if the data directory is known and `statvfs` answers.
pub(super) fn write(s: &mut Scrape<'_>) -> fmt::Result {
    let Some(dir) = DATA_DIR.get() else {
        return Ok(());
    };
    let stat = match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => stat,
        Err(e) => {
            tracing::debug!("no disk metrics for {}: {e}", dir.display());
            return Ok(());
        }
    };
    let block = stat.fragment_size();
    let size = stat.blocks().saturating_mul(block);
    // Available to an unprivileged user, as `df` shows it (not counting root's reserve).
    let available = stat.blocks_available().saturating_mul(block);
    s.gauge(
        "webfarm_data_dir_size_bytes",
        "Size of the filesystem holding the node's data directory, bytes.",
        size,
    )?;
    s.gauge(
        "webfarm_data_dir_available_bytes",
        "Space available to the node on its data directory's filesystem, bytes.",
        available,
    )
}
