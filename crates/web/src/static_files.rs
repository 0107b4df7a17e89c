//! The code base's static files: tower-http's `ServeDir` (content types, `Last-Modified`,
//! ranges, directory index), the validators and preconditions of [`crate::conditional`], and
//! the in-memory copies of small files of [`crate::file_cache`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, ETAG, RANGE};
use http::{HeaderValue, Method, StatusCode};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::conditional::{not_modified, Conditions, Validator};
use crate::confine::Root;
use crate::errors;
use crate::file_cache::{Answer, CachedFile, FileCache, FileStamp, Prepared, MAX_FILE_BYTES};
use crate::http1::wire::Plain;

/// The static files of one web node: `ServeDir` on the root (`dir/` serves
/// `dir/index.html`) and the in-memory copies of the small ones.
#[derive(Debug)]
pub(crate) struct StaticFiles {
    dir: ServeDir,
    cache: FileCache,
    /// Keeps what is served inside the root (symbolic links out of it: 404).
    root: Root,
}

impl StaticFiles {
    /// The files under `root`.
    pub(crate) fn new(root: &Path) -> StaticFiles {
        StaticFiles {
            dir: ServeDir::new(root).append_index_html_on_directories(true),
            cache: FileCache::new(root),
            root: Root::new(root),
        }
    }
}

impl webfarm_node::sendfile::FileBacked for StaticFiles {
    /// The slices of cached bodies that `sendfile(2)` can send from their files.
    fn find(&self, ptr: *const u8, len: usize) -> Option<webfarm_node::sendfile::FileSlice> {
        self.cache.find(ptr, len)
    }
}

/// The fast path: the cached answer to `req` (a `GET` or `HEAD` of a whole file that was
/// served before and is unchanged on disk, [`crate::file_cache`]): the file or a 304. `None`
/// for anything else, which [`serve`] answers (a `Range` with `If-Range` among them).
pub(crate) fn cached(files: &StaticFiles, req: &mut Request) -> Option<Response> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return None,
    };
    if req.headers().contains_key(RANGE) {
        return None;
    }
    let hit = files.cache.get(req.uri().path())?;
    Some(hit.answer(&Conditions::take(req.headers_mut()), head))
}

/// [`cached`] for [`crate::http1`]'s loop: the prepared answer to a plain `GET` or `HEAD`
/// of a cached file, unchanged on disk; `None` for anything else.
pub(crate) fn prepared(files: &StaticFiles, req: &Plain<'_>) -> Option<Prepared> {
    let hit = files.cache.get(req.path)?;
    Some(hit.prepared(req.if_none_match, req.if_modified_since, req.head))
}

/// Serves `req` from `files` through `ServeDir`: a file with its validators, a 304, or a
/// 404/405 page; a small file's whole `200` is kept for [`cached`].
pub(crate) async fn serve(files: &StaticFiles, served_by: &str, mut req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let conditions = Conditions::take(req.headers_mut());
    let whole = !req.headers().contains_key(RANGE);
    let path = req.uri().path();
    if errors::is_api(path) {
        return errors::not_found(served_by, path);
    }
    if req.method() != Method::GET && !head {
        let mut resp = errors::method_not_allowed(served_by, req.method().as_str(), path);
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let path = path.to_string();
    // Only files first served here enter the cache, so `cached` needs no such check.
    if files.root.escapes(&path).await {
        tracing::warn!(path, "refused: a symbolic link out of the site's root");
        return errors::not_found(served_by, &path);
    }
    // A file the cache could keep: the whole of it, from a path it can map to a file.
    let cacheable = whole.then(|| files.cache.file_of(&path)).flatten();
    let before = cacheable.as_deref().and_then(FileStamp::of);
    let resp = match files.dir.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return errors::not_found(served_by, &path);
    }
    let mut resp = resp.map(Body::new);
    let validator = if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
        Validator::of(resp.headers())
    } else {
        None
    };
    if let Some(v) = &validator {
        let headers = resp.headers_mut();
        headers.insert(ETAG, v.etag.clone());
        // Caches may store the file but must revalidate (cheap, thanks to the ETag).
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    match (cacheable, before, validator) {
        (Some(file), Some(stamp), Some(v)) if status == StatusCode::OK && !head => {
            match keep(files, &path, served_by, (file, stamp, v.clone()), resp).await {
                Ok(entry) => entry.answer(&conditions, false),
                Err(resp) => preconditions(resp, &conditions, &v),
            }
        }
        (_, _, Some(v)) => preconditions(resp, &conditions, &v),
        _ => resp,
    }
}

/// `resp` (a file's 200 or 206, with validator `v`), or a 304 if the client's copy is
/// current; any other answer as it is.
fn preconditions(resp: Response, conditions: &Conditions, v: &Validator) -> Response {
    if resp.status().is_success() && conditions.not_modified(v) {
        not_modified(resp.headers())
    } else {
        resp
    }
}

/// `headers` with this node's `X-Served-By` (skipped if `served_by` is no header value; node
/// names always are).
fn with_served_by(mut headers: http::HeaderMap, served_by: &str) -> http::HeaderMap {
    if let Ok(v) = HeaderValue::from_str(served_by) {
        headers.insert(crate::app::X_SERVED_BY, v);
    }
    headers
}

/// Reads a small file's whole `200` answer into the cache, if the file was the same
/// (`stamp`) before and after `ServeDir` read it and its length is the answer's.
///
/// # Errors
/// The answer to send instead, uncached: the streamed one (a large file),
/// the one read into memory (the file changed under the read, or no room), or a 500 (the
/// file could not be read to the end: where ServeDir's stream would have cut the connection).
async fn keep(
    files: &StaticFiles,
    path: &str,
    served_by: &str,
    (file, stamp, validator): (PathBuf, FileStamp, Validator),
    resp: Response,
) -> Result<Arc<CachedFile>, Response> {
    let length = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if stamp.len() > MAX_FILE_BYTES || length != Some(stamp.len()) {
        return Err(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(path, error = %e, "static file read failed");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    if FileStamp::of(&file) == Some(stamp) {
        let answer = Answer {
            file,
            stamp,
            validator,
            // With the header every answer gets: a hit is sent as it is kept.
            headers: with_served_by(parts.headers.clone(), served_by),
            body: bytes.clone(),
        };
        if let Some(entry) = files.cache.insert(path, answer) {
            return Ok(entry);
        }
    }
    Err(Response::from_parts(parts, Body::from(bytes)))
}
