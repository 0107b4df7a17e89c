//! Build script: the git commit the binary is built from, for `webfarm_build_info`.
//!
//! `WEBFARM_GIT_COMMIT` wins when set (a packager's build); else `git rev-parse` in the
//! source tree; else `unknown` (a clean checkout without `.git`, or no git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WEBFARM_GIT_COMMIT");
    let commit = std::env::var("WEBFARM_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Build again when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    // Only files that exist: cargo runs the script on every build for a missing one.
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .chain(
            git(&["symbolic-ref", "-q", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        )
        .filter(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=WEBFARM_GIT_COMMIT={commit}");
}
