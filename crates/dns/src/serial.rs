//! The SOA serial: the Unix time in seconds, or one more than the last serial when that is
//! not higher, kept in `<data_dir>/dns-serial` so a restart never goes back (secondaries
//! ignore a zone whose serial did not increase, RFC 1982 arithmetic).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::DnsError;

/// The serial file of one node.
#[derive(Debug)]
pub(crate) struct SerialFile {
    file: PathBuf,
    last: AtomicU32,
}

impl SerialFile {
    /// The file in `data_dir`; a missing or unreadable one counts as serial 0.
    pub(crate) fn new(data_dir: &Path) -> SerialFile {
        let file = data_dir.join("dns-serial");
        let last = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        SerialFile {
            file,
            last: AtomicU32::new(last),
        }
    }

    /// The next serial, written to the file before it is used.
    pub(crate) fn next(&self) -> Result<u32, DnsError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let next = now.max(self.last.load(Ordering::Relaxed).wrapping_add(1));
        std::fs::write(&self.file, format!("{next}\n")).map_err(|source| DnsError::Serial {
            file: self.file.clone(),
            source,
        })?;
        self.last.store(next, Ordering::Relaxed);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_increase_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("webfarm-dns-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = SerialFile::new(&dir);
        let (a, b) = (s.next().unwrap(), s.next().unwrap());
        assert!(b > a, "{a} {b}");
        let again = SerialFile::new(&dir);
        assert!(again.next().unwrap() > b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
