//! The snapshot directory: at most one current snapshot, replaced atomically.
//!
//! A snapshot is a whole SQLite database file (a copy of the user's database that also
//! records what it applied: [`crate::sqlite::applied`]) named `snap-<snapshot id>.db`, and `current.json` = `{"meta": ..,
//! "file": ..}` names the current one. A new snapshot is written to a temporary file, synced,
//! renamed into place, and only then does a new `current.json` (written and renamed the same
//! way) point at it; older files are removed afterwards. A crash at any point leaves either the
//! old or the new snapshot current, never a torn one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use crate::types::NodeInfo;

/// What to do about a damaged snapshot directory. Deleting it is no fix: the log before the
/// snapshot is purged, so the node could not rebuild its database.
const RECOVER: &str = "restore the node's data directory from a backup, or remove the node \
     from the cluster and re-add it";

/// The snapshot metadata of this cluster's types.
pub(crate) type Meta = SnapshotMeta<u64, NodeInfo>;

/// Why the current snapshot cannot be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CurrentError {
    /// `current.json` cannot be read.
    #[error("cannot read {}: {source}", meta_path.display())]
    Read {
        meta_path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `current.json` is not valid.
    #[error("{} is corrupted ({source}); {}", meta_path.display(), RECOVER)]
    Corrupted {
        meta_path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The data file `current.json` names is missing.
    #[error("{} names {}, which is missing; {}", meta_path.display(), data.display(), RECOVER)]
    Missing { meta_path: PathBuf, data: PathBuf },
}

/// `snapshot/` of a node's data directory.
#[derive(Debug)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Current {
    meta: Meta,
    file: String,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh snapshot id for a snapshot whose last log id is `last`: `term-index-millis-seq`.
pub(crate) fn new_snapshot_id(meta_last: Option<&openraft::LogId<u64>>) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    match meta_last {
        Some(id) => format!("{}-{}-{millis}-{seq}", id.leader_id.term, id.index),
        None => format!("0-0-{millis}-{seq}"),
    }
}

impl SnapshotDir {
    /// Opens `dir`, creating it, and removes temporary files a crash may have left.
    ///
    /// # Errors
    ///
    /// The I/O error.
    pub(crate) fn open(dir: &Path) -> io::Result<SnapshotDir> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            // `x.tmp`, and the journal or WAL SQLite may have left beside one (`x.tmp-wal`).
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".tmp") || name.contains(".tmp-") {
                fs::remove_file(&path)?;
            }
        }
        Ok(SnapshotDir {
            dir: dir.to_path_buf(),
        })
    }

    /// A temporary file path in the directory, `<what>.tmp`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{what}.tmp"))
    }

    /// The current snapshot's metadata and data file, if there is one.
    ///
    /// # Errors
    ///
    /// [`CurrentError`] when `current.json` is unreadable or its data file is missing.
    pub(crate) fn current(&self) -> Result<Option<(Meta, PathBuf)>, CurrentError> {
        let meta_path = self.dir.join("current.json");
        let text = match fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CurrentError::Read { meta_path, source }),
        };
        let cur: Current = match serde_json::from_str(&text) {
            Ok(cur) => cur,
            Err(source) => return Err(CurrentError::Corrupted { meta_path, source }),
        };
        let data = self.dir.join(&cur.file);
        if !data.is_file() {
            return Err(CurrentError::Missing { meta_path, data });
        }
        Ok(Some((cur.meta, data)))
    }

    /// Makes the database file `tmp` (in this directory) the current snapshot with `meta`.
    ///
    /// # Errors
    ///
    /// The I/O error; the previous snapshot then stays current.
    pub(crate) fn commit(&self, meta: &Meta, tmp: &Path) -> io::Result<PathBuf> {
        fs::File::open(tmp)?.sync_all()?;
        let name = format!("snap-{}.db", meta.snapshot_id);
        let data = self.dir.join(&name);
        fs::rename(tmp, &data)?;
        let cur = Current {
            meta: meta.clone(),
            file: name.clone(),
        };
        let json = serde_json::to_vec_pretty(&cur).map_err(io::Error::other)?;
        let meta_tmp = self.tmp_path("current-json");
        write_synced(&meta_tmp, &json)?;
        fs::rename(&meta_tmp, self.dir.join("current.json"))?;
        sync_dir(&self.dir)?;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if file_name.starts_with("snap-") && file_name != name {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(data)
    }
}

/// Writes `bytes` to `path` and syncs the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Syncs a directory, so that renames in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
