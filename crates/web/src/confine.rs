//! Keeps a web node's static files inside its root. `ServeDir` refuses `..` and other
//! non-normal path components, but it follows symbolic links: a link under `site/` that
//! points outside it (`site/etc -> /etc`) would serve any file the process can read. Here a
//! request path is resolved as `ServeDir` resolves it (percent-decoded, normal components
//! only), links followed (`canonicalize`), and must stay under the root's own real path;
//! links that stay inside the root keep working. nginx offers the same choice as
//! `disable_symlinks`; the answer here is the 404 any missing file gets, so that a probe
//! learns nothing about what lies outside.
//!
//! A link swapped between this check and `ServeDir`'s open is not caught (nginx's
//! `disable_symlinks` has the same limit without `O_PATH`); writing links into the site's
//! root needs write access to it, which a client does not have.

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

/// The root of a node's static files.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// The root as configured: where `ServeDir` joins request paths.
    dir: PathBuf,
    /// Its real path, links resolved (the configured path when it cannot be resolved).
    real: PathBuf,
}

impl Root {
    /// The root `dir`.
    pub(crate) fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            real: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    /// Whether request path `path` resolves, links followed, to a file or directory (or a
    /// directory's `index.html`) outside the root. A path `ServeDir` refuses by itself, or
    /// that names nothing, does not escape: it gets `ServeDir`'s 404.
    pub(crate) async fn escapes(&self, path: &str) -> bool {
        let Some(file) = self.file_of(path) else {
            return false;
        };
        let Ok(real) = tokio::fs::canonicalize(&file).await else {
            return false;
        };
        if !real.starts_with(&self.real) {
            return true;
        }
        if tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_dir()) {
            if let Ok(index) = tokio::fs::canonicalize(real.join("index.html")).await {
                return !index.starts_with(&self.real);
            }
        }
        false
    }

    /// The file `ServeDir` would open for request path `path`, or `None` when it refuses
    /// the path (not UTF-8 once decoded, a `..`, `.` or root component).
    fn file_of(&self, path: &str) -> Option<PathBuf> {
        let decoded = percent_decode_str(path.trim_start_matches('/'))
            .decode_utf8()
            .ok()?;
        let mut file = self.dir.clone();
        for component in Path::new(&*decoded).components() {
            match component {
                Component::Normal(c) => file.push(c),
                _ => return None,
            }
        }
        Some(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use webfarm_testkit::TempDir;

    #[tokio::test]
    async fn links_out_of_the_root_escape_and_links_inside_do_not() {
        let tmp = TempDir::new("confine");
        let outside = tmp.path().join("outside");
        let site = tmp.path().join("site");
        std::fs::create_dir_all(site.join("css")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "secret").unwrap();
        std::fs::write(outside.join("index.html"), "secret").unwrap();
        std::fs::write(site.join("css/site.css"), "body{}").unwrap();
        symlink(&outside, site.join("out")).unwrap();
        symlink(outside.join("secret.txt"), site.join("secret.txt")).unwrap();
        symlink("css/site.css", site.join("style.css")).unwrap();
        std::fs::create_dir_all(site.join("docs")).unwrap();
        symlink(outside.join("index.html"), site.join("docs/index.html")).unwrap();
        let root = Root::new(&site);
        for bad in [
            "/out/secret.txt",
            "/secret.txt",
            "/out/",
            "/out",
            "/%6fut/secret.txt",
            "/docs/",
        ] {
            assert!(root.escapes(bad).await, "{bad} escapes the root");
        }
        for good in [
            "/css/site.css",
            "/style.css",
            "/css/",
            "/missing.txt",
            "/../x",
            "/%2e%2e/x",
        ] {
            assert!(
                !root.escapes(good).await,
                "{good} stays inside (or is refused anyway)"
            );
        }
    }
}
