//! The standard `process_*` metrics (the names of Prometheus's client libraries), read from
//! `/proc/self` at scrape time.

use std::fmt;
use std::io;

use super::Scrape;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors (`None`: unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

fn sysconf(var: nix::unistd::SysconfVar, default: i64) -> f64 {
    nix::unistd::sysconf(var).ok().flatten().unwrap_or(default) as f64
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/self/limits` and `/proc/stat`.
    ///
    /// # Errors
    /// A file that cannot be read or parsed (not Linux, or no `/proc`).
    pub fn read() -> io::Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        // The fields after the command name, which is in parentheses and may hold spaces;
        // `fields[0]` is field 3 (`state`) of proc(5).
        let rest = stat
            .rsplit_once(')')
            .ok_or_else(|| invalid("/proc/self/stat"))?
            .1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> io::Result<u64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| invalid("/proc/self/stat"))
        };
        let tick = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100);
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
        Ok(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) as f64 / tick,
            virtual_bytes: field(23)?,
            resident_bytes: (field(24)? as f64 * page) as u64,
            open_fds: std::fs::read_dir("/proc/self/fd")?.count() as u64,
            max_fds: max_open_files(&std::fs::read_to_string("/proc/self/limits")?)?,
            start_time_seconds: boot_time()? + field(22)? as f64 / tick,
        })
    }

    /// Writes the `process_*` families.
    ///
    /// # Errors
    /// The writer's.
    pub fn write(&self, s: &mut Scrape<'_>) -> fmt::Result {
        s.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        )?;
        s.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_bytes,
        )?;
        s.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            self.virtual_bytes,
        )?;
        s.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            self.open_fds,
        )?;
        if let Some(max) = self.max_fds {
            s.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        s.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        )
    }
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> io::Result<Option<u64>> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| invalid("/proc/self/limits"))?;
    match line.split_whitespace().next() {
        Some("unlimited") => Ok(None),
        Some(n) => n
            .parse()
            .map(Some)
            .map_err(|_| invalid("/proc/self/limits")),
        None => Err(invalid("/proc/self/limits")),
    }
}

/// The system's boot time, seconds since the Unix epoch (`btime` in `/proc/stat`).
fn boot_time() -> io::Result<f64> {
    std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
        .ok_or_else(|| invalid("/proc/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 3600.0,
            "{s:?}"
        );
    }

    #[test]
    fn parses_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits).unwrap(), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited).unwrap(), None);
        assert!(max_open_files("nothing").is_err());
    }
}
