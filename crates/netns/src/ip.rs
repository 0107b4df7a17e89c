//! Running iproute2's `ip`, and the privilege check.

use std::path::Path;
use std::process::Command;

use crate::NetnsError;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN's bit.
const CAP_SYS_ADMIN: u32 = 21;

/// Checks that this process may create namespaces, links and addresses (root, or
/// `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` effective) and that `ip` is installed.
///
/// # Errors
///
/// [`NetnsError::Privilege`] naming the missing capabilities, or [`NetnsError::NoIp`].
pub fn check_privileges() -> Result<(), NetnsError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| eff & (1 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    if !missing.is_empty() {
        return Err(NetnsError::Privilege {
            missing: missing.join(" and "),
        });
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ip").is_file()));
    if !on_path && !Path::new("/usr/sbin/ip").is_file() && !Path::new("/sbin/ip").is_file() {
        return Err(NetnsError::NoIp);
    }
    Ok(())
}

/// The name of the namespace process `pid` runs in (`ip netns identify`), if it is a named
/// one.
pub fn identify(pid: u32) -> Option<String> {
    let out = ip(&["netns", "identify", &pid.to_string()]).ok()?;
    let name = out.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Runs `ip ARGS`; its stdout.
pub(crate) fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run(Command::new("ip").args(args), args)
}

/// Runs `cmd` (whose arguments after `ip` are `args`, for the error); its stdout.
pub(crate) fn run(cmd: &mut Command, args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetnsError::NoIp,
        _ => NetnsError::Command {
            command: command.clone(),
            stderr: e.to_string(),
        },
    })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of the named namespaces (`ip netns list`).
pub(crate) fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Names of the root namespace's links (`ip -o link show`), without the `@peer` suffix.
pub(crate) fn links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Pids of the processes in namespace `ns`.
pub(crate) fn pids(ns: &str) -> Vec<String> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
