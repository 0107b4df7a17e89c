//! Loading a script and reading the live table through the `nft` binary.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{FirewallError, TABLE};

/// Where nft runs: this process's network namespace, or a named one (`ip netns exec NS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nft {
    /// A namespace of `ip netns` (`/run/netns/NAME`), or `None` for this process's.
    pub netns: Option<String>,
}

impl Nft {
    /// nft in this process's network namespace.
    pub fn here() -> Nft {
        Nft { netns: None }
    }

    /// nft in namespace `name` (through `ip netns exec`).
    pub fn in_netns(name: &str) -> Nft {
        Nft {
            netns: Some(name.to_string()),
        }
    }

    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        }
    }

    /// Loads `script` with `nft -f -`: one transaction, all of it or nothing.
    ///
    /// # Errors
    ///
    /// nft is missing, or refused the script (its message; not root: `Operation not
    /// permitted`).
    pub fn load(&self, script: &str) -> Result<(), FirewallError> {
        self.run(&["-f", "-"], Some(script)).map(drop)
    }

    /// `nft -s list table inet webfarm` (stateless: no counter values), or `None` when the
    /// table does not exist.
    ///
    /// # Errors
    ///
    /// nft is missing or failed for another reason.
    pub fn list_table(&self) -> Result<Option<String>, FirewallError> {
        let tables = self.run(&["list", "tables"], None)?;
        if !tables.lines().any(|l| l.trim() == format!("table {TABLE}")) {
            return Ok(None);
        }
        self.run(&["-s", "list", "table", "inet", "webfarm"], None)
            .map(Some)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("nft {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| FirewallError::NoNft(e.to_string()))?;
        // A failed write (nft exited early) is not returned by itself: nft's exit status and
        // stderr below say why, and the child is always waited for.
        let written = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => pipe.write_all(text.as_bytes()),
            _ => Ok(()),
        };
        let out = child.wait_with_output().map_err(|e| FirewallError::Nft {
            command: shown.clone(),
            stderr: e.to_string(),
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.contains("No such file or directory") && stderr.contains("exec") {
                return Err(FirewallError::NoNft(stderr));
            }
            return Err(FirewallError::Nft {
                command: shown,
                stderr,
            });
        }
        if let Err(e) = written {
            let stderr = format!("writing the script to nft: {e}");
            return Err(FirewallError::Nft {
                command: shown,
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// How nft itself prints `script`'s table: the script loaded into a scratch network
/// namespace of one thread (`unshare(CLONE_NEWNET)`, gone when the thread ends), then
/// listed. Comparing two nft listings makes the comparison blind to how nft re-prints what
/// it was given (`priority filter` or `0`, a one-element set, spacing, order inside sets).
///
/// # Errors
///
/// The namespace cannot be made (needs `CAP_SYS_ADMIN`), or nft failed.
pub fn normalise(script: &str) -> Result<String, FirewallError> {
    let script = script.to_string();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            FirewallError::Scratch(format!(
                "cannot make a scratch network namespace to normalise the expected ruleset \
                 ({e}); --check needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
            ))
        })?;
        let nft = Nft::here();
        nft.load(&script)?;
        nft.list_table()?.ok_or_else(|| {
            FirewallError::Scratch(format!("table {TABLE} missing after loading it"))
        })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(FirewallError::Scratch(
            "the normalising thread panicked".into(),
        ))
    })
}
