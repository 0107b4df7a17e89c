//! The in-memory copy of small static files answers exactly as `ServeDir` does and is never
//! stale: a file changed on disk (same size included) is served at once, `HEAD` and `Range`
//! keep their meaning once a file is cached, and a large file is streamed.

mod support;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::*;

#[tokio::test]
async fn cached_files_answer_like_the_file_on_disk() {
    let tmp = TempDir::new("cache");
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();

    let first = get(web.addr, "/style.css", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    // Served again (from memory now): the same answer, header for header.
    let again = get(web.addr, "/style.css", &[]).await;
    assert_eq!(again.body, first.body);
    for name in FILE_HEADERS {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    assert_eq!(again.header("x-served-by"), "web-1");
    let not_modified = get(
        web.addr,
        "/style.css",
        &[("if-none-match", first.header("etag"))],
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);

    // HEAD: the headers of the file, no body.
    let head = send(web.addr, Method::HEAD, "/style.css", &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length"),
        first.header("content-length")
    );
    assert!(head.body.is_empty());

    // Range still gets its part.
    let part = get(web.addr, "/style.css", &[("range", "bytes=0-3")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, first.body.slice(0..4));

    // Rewritten in place with the same size: the new bytes at once.
    let same_size = vec![b'x'; first.body.len()];
    std::fs::write(site.join("style.css"), &same_size).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(site.join("style.css"))
        .and_then(|f| f.set_modified(later))
        .unwrap();
    let changed = get(web.addr, "/style.css", &[]).await;
    assert_eq!(changed.body, Bytes::from(same_size));
    assert_ne!(changed.header("etag"), first.header("etag"));

    // Removed: 404, not a copy from memory.
    std::fs::remove_file(site.join("style.css")).unwrap();
    assert_eq!(
        get(web.addr, "/style.css", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_large_file_is_streamed_whole() {
    let tmp = TempDir::new("cache-large");
    let site = make_site(&tmp);
    let big = write_pattern(&site, "big.bin", 3 * 1024 * 1024);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    let mut etag = String::new();
    for _ in 0..2 {
        let r = get(web.addr, "/big.bin", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.len(), big.len());
        assert!(r.body == big, "the large file arrives intact");
        etag = r.header("etag").to_string();
    }
    // Not kept in memory, still validated.
    let r = get(web.addr, "/big.bin", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}

/// Writes `bytes` over `file` in place, keeping its size, inode and modification time: a
/// change its stamp cannot see (a known limit, nginx's too: crates/web/DESIGN.md), used here
/// because what is served then tells where the body came from.
fn overwrite_unseen(file: &std::path::Path, bytes: &[u8]) {
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut f = std::fs::File::options().write(true).open(file).unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f.set_modified(modified).unwrap();
}

#[tokio::test]
async fn a_large_cached_file_is_sent_from_the_file_itself() {
    let tmp = TempDir::new("cache-sendfile");
    let site = make_site(&tmp);
    // Above webfarm_node::sendfile::MIN_SENDFILE (16 KiB), below the cache's 1 MiB.
    let (big, small) = (site.join("big.html"), site.join("small.txt"));
    std::fs::write(&big, vec![b'a'; 100 * 1024]).unwrap();
    std::fs::write(&small, vec![b'a'; 1024]).unwrap();
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    for path in ["/big.html", "/small.txt"] {
        for _ in 0..2 {
            let r = get(web.addr, path, &[]).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(r.body.iter().all(|&b| b == b'a'), "{path}");
        }
    }
    overwrite_unseen(&big, &vec![b'b'; 100 * 1024]);
    overwrite_unseen(&small, &vec![b'b'; 1024]);
    // The large file's body leaves with sendfile(2) from the open file; the small one's is
    // written from the copy in memory.
    let r = get(web.addr, "/big.html", &[]).await;
    assert_eq!(r.body.len(), 100 * 1024);
    assert!(
        r.body.iter().all(|&b| b == b'b'),
        "the large file from disk"
    );
    let r = get(web.addr, "/small.txt", &[]).await;
    assert!(
        r.body.iter().all(|&b| b == b'a'),
        "the small file from memory"
    );

    // A new version renamed over it is seen (new inode) and served whole.
    let next = site.join("big.next");
    std::fs::write(&next, vec![b'c'; 50 * 1024]).unwrap();
    std::fs::rename(&next, &big).unwrap();
    for _ in 0..3 {
        let r = get(web.addr, "/big.html", &[]).await;
        assert_eq!(r.body.len(), 50 * 1024);
        assert!(r.body.iter().all(|&b| b == b'c'));
    }
}
