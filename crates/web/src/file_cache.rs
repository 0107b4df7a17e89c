//! An in-memory copy of the code base's small static files, checked against the file on
//! every request.
//!
//! tower-http's `ServeDir` opens, stats and reads the file through tokio's blocking pool on
//! every request: three thread hand-offs and ~150 µs of CPU for a 3 KB file, a fifth of
//! nginx's rate. A web node serves a code base of a few small files over and over, so it
//! keeps each one it served (200 to a `GET` without `Range`, at most [`MAX_FILE_BYTES`]) as
//! its final response: headers (`Content-Type`, `Last-Modified`, `ETag`...) and body.
//!
//! A cached copy is never served stale: each hit first stats the file (one `statx` on a
//! cached inode, about a microsecond, done inline) and is served only while the file's
//! size, modification time (nanoseconds) and inode are those seen when it was read, which
//! is what nginx's `open_file_cache` compares. A deploy that rewrites a file in place or
//! renames a new one over it is served at once; anything else about the request (404s,
//! directories, ranges, `HEAD` before any `GET`, percent-encoded paths) goes to `ServeDir`
//! as before. The cache is bounded: [`MAX_ENTRIES`] files and [`MAX_TOTAL_BYTES`]; past
//! either, new files are simply not cached. A stale copy is dropped on its next request.
//!
//! A body of [`MIN_SENDFILE`] bytes or more also keeps its file open (opened after the read,
//! kept only with the stamp read): the cache is the [`FileBacked`] registry through which
//! the web role's connections send such bodies with `sendfile(2)`
//! ([`webfarm_node::sendfile`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use webfarm_node::sendfile::{FileBacked, FileSlice, MIN_SENDFILE};

use crate::conditional::{not_modified, Conditions, Validator};
use crate::http1::wire;

/// The largest file kept in memory (bytes); larger ones are streamed by `ServeDir`.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The most bytes of file bodies kept in memory by one node.
pub(crate) const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// The most files kept in memory by one node.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// The most files kept open for `sendfile(2)`: past it, large bodies are copied from memory.
/// Well under the usual 1,024 descriptors of a process not started by systemd.
pub(crate) const MAX_OPEN_FILES: usize = 128;

/// What identifies one version of a file on disk: size, modification time, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: SystemTime,
    ino: u64,
}

impl FileStamp {
    /// The stamp of the regular file at `path`; `None` if it is missing or not a file.
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        FileStamp::of_metadata(std::fs::metadata(path).ok()?)
    }

    /// The stamp of the open `file` (one `statx` on its descriptor).
    fn of_file(file: &File) -> Option<FileStamp> {
        FileStamp::of_metadata(file.metadata().ok()?)
    }

    /// The stamp in `m`, if `m` is a regular file's.
    fn of_metadata(m: std::fs::Metadata) -> Option<FileStamp> {
        Some(FileStamp {
            len: m.len(),
            modified: m.modified().ok()?,
            ino: m.ino(),
        })
        .filter(|_| m.is_file())
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// One file's complete `200` answer, as `ServeDir` and the validators made it.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// Every header of the answer (`Content-Length` and `ETag` included).
    headers: HeaderMap,
    /// The whole file.
    body: Bytes,
    /// The file it was read from, and that file's stamp then.
    file: PathBuf,
    stamp: FileStamp,
    validator: Validator,
    /// The file, open, for a body of at least [`MIN_SENDFILE`] bytes: what `sendfile(2)`
    /// sends the body from ([`webfarm_node::sendfile`]).
    open: Option<Arc<File>>,
    /// The heads of its `200` and of its `304`, as bytes ([`crate::http1`]).
    heads: Heads,
}

/// A cached file's response heads, encoded once ([`wire::encode_head`]): status line and
/// header fields, without `Date`.
#[derive(Debug)]
struct Heads {
    ok: Bytes,
    not_modified: Bytes,
}

impl Heads {
    /// The heads of the `200` with `headers` and of the `304` that stands for it.
    fn of(headers: &HeaderMap) -> Heads {
        let not_modified = not_modified(headers);
        Heads {
            ok: wire::encode_head(StatusCode::OK, headers),
            not_modified: wire::encode_head(StatusCode::NOT_MODIFIED, not_modified.headers()),
        }
    }
}

/// A cached answer as bytes: what [`crate::http1`] writes.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `200` or `304`.
    pub(crate) status: StatusCode,
    /// Status line and header fields, without `Date` and the blank line.
    pub(crate) head: Bytes,
    /// The file (a `200` to a `GET`).
    pub(crate) body: Option<Bytes>,
}

/// What [`FileCache::insert`] keeps: a file's `200` answer, read while it had `stamp`.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The file on disk.
    pub(crate) file: PathBuf,
    /// Its stamp, the same before and after the read.
    pub(crate) stamp: FileStamp,
    /// The answer's validators.
    pub(crate) validator: Validator,
    /// Every header of the answer.
    pub(crate) headers: HeaderMap,
    /// The whole file.
    pub(crate) body: Bytes,
}

impl CachedFile {
    /// The answer to a request with `conditions`: a 304, or the whole file (an empty body
    /// for `HEAD`; the headers still give the length).
    pub(crate) fn answer(&self, conditions: &Conditions, head: bool) -> Response {
        if conditions.not_modified(&self.validator) {
            return not_modified(&self.headers);
        }
        let body = if head {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        };
        let mut resp = Response::new(body);
        *resp.headers_mut() = self.headers.clone();
        resp
    }

    /// [`CachedFile::answer`] as bytes, to a request whose `If-None-Match` and
    /// `If-Modified-Since` are `if_none_match` and `if_modified_since`.
    pub(crate) fn prepared(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<SystemTime>,
        head: bool,
    ) -> Prepared {
        if self.validator.is_current(if_none_match, if_modified_since) {
            return Prepared {
                status: StatusCode::NOT_MODIFIED,
                head: self.heads.not_modified.clone(),
                body: None,
            };
        }
        Prepared {
            status: StatusCode::OK,
            head: self.heads.ok.clone(),
            body: (!head).then(|| self.body.clone()),
        }
    }
}

/// The cache of one web node, keyed by request path.
#[derive(Debug)]
pub(crate) struct FileCache {
    root: PathBuf,
    entries: RwLock<Entries>,
}

/// The cached answers, and what bounds them.
#[derive(Debug, Default)]
struct Entries {
    files: HashMap<String, Arc<CachedFile>>,
    /// The entries with an open file, by the address of their body's first byte.
    by_addr: BTreeMap<usize, Arc<CachedFile>>,
    bytes: usize,
}

impl Entries {
    /// Keeps `entry` for `path`, in place of what it had, which it returns (to be dropped
    /// once the lock is released).
    fn put(&mut self, path: &str, entry: Arc<CachedFile>) -> Option<Arc<CachedFile>> {
        if entry.open.is_some() {
            self.by_addr
                .insert(entry.body.as_ptr() as usize, entry.clone());
        }
        self.bytes += entry.body.len();
        let old = self.files.insert(path.to_string(), entry)?;
        self.forget(&old);
        Some(old)
    }

    /// Lets go of `old`, no longer in `files`.
    fn forget(&mut self, old: &CachedFile) {
        self.bytes -= old.body.len();
        self.by_addr.remove(&(old.body.as_ptr() as usize));
    }
}

impl FileCache {
    /// An empty cache of the files under `root`.
    pub(crate) fn new(root: &Path) -> FileCache {
        FileCache {
            root: root.to_path_buf(),
            entries: RwLock::new(Entries::default()),
        }
    }

    /// The file `path` names under the root, for paths this cache handles: plain segments
    /// (no `.`, `..`, backslash, NUL or percent-encoding); a trailing `/` names its
    /// `index.html`, as `ServeDir` is configured. `None` sends the request to `ServeDir` alone.
    pub(crate) fn file_of(&self, path: &str) -> Option<PathBuf> {
        let rest = path.strip_prefix('/')?;
        let mut file = self.root.clone();
        let mut segments = rest.split('/').peekable();
        while let Some(segment) = segments.next() {
            let last = segments.peek().is_none();
            if segment.is_empty() && last {
                file.push("index.html");
                break;
            }
            if segment.is_empty()
                || segment == "."
                || segment == ".."
                || segment.contains(['%', '\\', '\0'])
            {
                return None;
            }
            file.push(segment);
        }
        Some(file)
    }

    /// The cached answer for request path `path` if the file on disk is still the one it
    /// was read from. A stale copy is dropped (its memory and open file with it).
    pub(crate) fn get(&self, path: &str) -> Option<Arc<CachedFile>> {
        let entry = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .files
            .get(path)
            .cloned()?;
        if FileStamp::of(&entry.file) == Some(entry.stamp) {
            return Some(entry);
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries
            .files
            .get(path)
            .is_some_and(|e| Arc::ptr_eq(e, &entry))
        {
            entries.files.remove(path);
            entries.forget(&entry);
        }
        None
    }

    /// Keeps `answer` for request path `path` (the caller checked the file's stamp before
    /// and after reading it). Returns the entry, or `None` when the bounds leave no room (the
    /// answer is then served once, uncached).
    pub(crate) fn insert(&self, path: &str, answer: Answer) -> Option<Arc<CachedFile>> {
        let opened = open_same(&answer);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let old = entries.files.get(path);
        let bytes = entries.bytes - old.map_or(0, |e| e.body.len()) + answer.body.len();
        let count = entries.files.len() + usize::from(old.is_none());
        if bytes > MAX_TOTAL_BYTES || count > MAX_ENTRIES {
            return None;
        }
        let open_elsewhere =
            entries.by_addr.len() - usize::from(old.is_some_and(|e| e.open.is_some()));
        let entry = Arc::new(CachedFile {
            heads: Heads::of(&answer.headers),
            headers: answer.headers,
            body: answer.body,
            file: answer.file,
            stamp: answer.stamp,
            validator: answer.validator,
            open: opened
                .filter(|_| open_elsewhere < MAX_OPEN_FILES)
                .map(Arc::new),
        });
        let replaced = entries.put(path, entry.clone());
        drop(entries);
        drop(replaced);
        Some(entry)
    }
}

/// The file `answer` was read from, opened again, for a body `sendfile(2)` sends: `None` for
/// a smaller one, or if the path no longer holds the version read (same stamp). Opened
/// without blocking: should the path have just become a FIFO, the open must not wait for a
/// writer.
fn open_same(answer: &Answer) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if answer.body.len() < MIN_SENDFILE {
        return None;
    }
    let file = File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&answer.file)
        .ok()?;
    (FileStamp::of_file(&file) == Some(answer.stamp)).then_some(file)
}

impl FileBacked for FileCache {
    /// A slice of a cached body with an open file, while that file keeps its stamp.
    fn find(&self, ptr: *const u8, len: usize) -> Option<FileSlice> {
        let addr = ptr as usize;
        let entry = {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            let (&start, entry) = entries.by_addr.range(..=addr).next_back()?;
            let within = addr - start + len <= entry.body.len();
            within.then(|| entry.clone())?
        };
        let file = entry.open.clone()?;
        if FileStamp::of_file(&file) != Some(entry.stamp) {
            return None;
        }
        let offset = u64::try_from(addr - entry.body.as_ptr() as usize).ok()?;
        Some(FileSlice { file, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_LENGTH, LAST_MODIFIED};
    use http::HeaderValue;
    use webfarm_testkit::TempDir;

    /// An answer of `body` from `file` with `stamp`.
    fn answer(file: &Path, stamp: FileStamp, body: Bytes) -> Answer {
        let mut headers = HeaderMap::new();
        let date = httpdate::fmt_http_date(stamp.modified);
        headers.insert(LAST_MODIFIED, HeaderValue::from_str(&date).unwrap());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Answer {
            file: file.to_path_buf(),
            stamp,
            validator: Validator::of(&headers).unwrap(),
            headers,
            body,
        }
    }

    #[test]
    fn only_plain_paths_map_to_files() {
        let cache = FileCache::new(Path::new("/srv/site"));
        let file = |p| cache.file_of(p);
        assert_eq!(file("/style.css"), Some("/srv/site/style.css".into()));
        assert_eq!(file("/docs/"), Some("/srv/site/docs/index.html".into()));
        assert_eq!(file("/"), Some("/srv/site/index.html".into()));
        for p in [
            "/../etc/passwd",
            "/a/./b",
            "/a//b",
            "/a%20b",
            "/a\\b",
            "style.css",
        ] {
            assert_eq!(file(p), None, "{p}");
        }
    }

    #[test]
    fn a_hit_needs_the_same_file_on_disk() {
        let tmp = TempDir::new("file-cache");
        let path = tmp.path().join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::new(tmp.path());
        let stamp = FileStamp::of(&path).unwrap();
        assert_eq!(stamp.len(), 3);
        cache
            .insert("/a.txt", answer(&path, stamp, Bytes::from("one")))
            .unwrap();
        assert_eq!(cache.get("/a.txt").unwrap().body, "one");
        // Rewritten in place, same size: only the modification time tells, and it does.
        std::fs::write(&path, "two").unwrap();
        let later = stamp.modified + std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .unwrap();
        assert!(cache.get("/a.txt").is_none());
        std::fs::remove_file(&path).unwrap();
        assert!(cache.get("/a.txt").is_none());
        assert!(
            FileStamp::of(tmp.path()).is_none(),
            "a directory has no stamp"
        );
    }

    #[test]
    fn only_large_unchanged_bodies_are_found_for_sendfile() {
        let tmp = TempDir::new("file-cache-find");
        let (big, small) = (tmp.path().join("big"), tmp.path().join("small"));
        std::fs::write(&big, vec![b'a'; MIN_SENDFILE]).unwrap();
        std::fs::write(&small, vec![b'a'; MIN_SENDFILE - 1]).unwrap();
        let cache = FileCache::new(tmp.path());
        let insert = |path: &str, file: &Path| {
            let body = Bytes::from(std::fs::read(file).unwrap());
            let stamp = FileStamp::of(file).unwrap();
            cache.insert(path, answer(file, stamp, body)).unwrap()
        };
        let (b, s) = (insert("/big", &big), insert("/small", &small));
        let at = |entry: &CachedFile, offset: usize| entry.body[offset..].as_ptr();
        let found = cache.find(at(&b, 100), MIN_SENDFILE - 100).unwrap();
        assert_eq!(found.offset, 100);
        assert!(
            cache.find(at(&b, 100), MIN_SENDFILE - 99).is_none(),
            "past its end"
        );
        assert!(
            cache.find(at(&s, 0), MIN_SENDFILE - 1).is_none(),
            "too small to open"
        );
        // Changed on disk: neither found nor served, and dropped (its open file too).
        std::fs::write(&big, vec![b'b'; MIN_SENDFILE + 1]).unwrap();
        assert!(cache.find(at(&b, 0), MIN_SENDFILE).is_none());
        assert!(cache.get("/big").is_none());
        let entries = cache.entries.read().unwrap();
        assert!(entries.by_addr.is_empty() && !entries.files.contains_key("/big"));
        assert_eq!(entries.bytes, MIN_SENDFILE - 1);
    }

    #[test]
    fn at_most_max_open_files_stay_open() {
        let tmp = TempDir::new("file-cache-open");
        let cache = FileCache::new(tmp.path());
        for i in 0..=MAX_OPEN_FILES {
            let file = tmp.path().join(format!("f{i}"));
            std::fs::write(&file, vec![b'a'; MIN_SENDFILE]).unwrap();
            let body = Bytes::from(std::fs::read(&file).unwrap());
            let stamp = FileStamp::of(&file).unwrap();
            let entry = cache.insert(&format!("/f{i}"), answer(&file, stamp, body));
            // Past the bound, the body is still cached, to be copied from memory.
            assert_eq!(
                entry.unwrap().open.is_some(),
                i < MAX_OPEN_FILES,
                "file {i}"
            );
        }
        assert_eq!(cache.entries.read().unwrap().by_addr.len(), MAX_OPEN_FILES);
    }

    #[test]
    fn the_bounds_are_kept() {
        let cache = FileCache::new(Path::new("/srv"));
        let stamp = FileStamp {
            len: 1,
            modified: SystemTime::UNIX_EPOCH,
            ino: 1,
        };
        let big = Bytes::from(vec![0u8; MAX_TOTAL_BYTES / 2 + 1]);
        let file = Path::new("/srv/a");
        assert!(cache
            .insert("/a", answer(file, stamp, big.clone()))
            .is_some());
        // Replacing an entry frees its old size first.
        assert!(cache
            .insert("/a", answer(file, stamp, big.clone()))
            .is_some());
        assert!(cache.insert("/b", answer(file, stamp, big)).is_none());
        let entries = cache.entries.read().unwrap();
        assert_eq!(entries.files.len(), 1);
        assert_eq!(entries.bytes, MAX_TOTAL_BYTES / 2 + 1);
    }
}
