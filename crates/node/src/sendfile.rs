//! Zero-copy sends of response bodies that are copies of files: nginx's `sendfile on`.
//!
//! hyper writes a response from memory: `writev` copies every byte of the body into the
//! socket's buffer. nginx hands the kernel the file instead (`sendfile(2)`), which sends the
//! page cache's pages without that copy: for a 100 KB file, most of what a request costs.
//! hyper offers no way around its writes, but it writes through the connection's I/O type,
//! and with a body held as one buffer (`Bytes`) the `IoSlice` it passes to `writev` points
//! into that very buffer. [`Stream`] is that I/O type: before a write it asks a
//! [`FileBacked`] registry (the web role's file cache) whether a large slice (or the rest of
//! one it sent that way) lies inside a buffer that is a copy of a file; if so it sends what comes before the slice with
//! `MSG_MORE` and the slice's bytes with `sendfile(2)` from the file, and reports the same
//! byte counts a `writev` would have. Everything else is the plain socket's write.
//!
//! The registry holds its buffers alive, so an address found in it is that buffer's and no
//! other's. It answers only while the file is still the one the copy was read from (same
//! size, modification time and inode, checked on the open file at each write); once it is
//! not, the bytes come from memory, as without this module. A file that shrinks under a
//! send makes `sendfile` stop short, and the rest comes from memory too, as it does when
//! `sendfile` fails on the file's side. What cannot be
//! caught is a rewrite in place during the very `sendfile` call, which nginx's `sendfile`
//! sends mixed as well: deploy by renaming a new file over the old one (the open file keeps
//! the old one's bytes).

use std::fs::File;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, UnixAddr};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The smallest slice sent with `sendfile`: below it, copying costs less than the extra
/// system call (the head goes out in a `sendmsg` of its own).
pub const MIN_SENDFILE: usize = 16 * 1024;

/// Buffers whose bytes are also in a file.
pub trait FileBacked: Send + Sync + 'static {
    /// Where the `len` bytes at `ptr` can be read from: `Some` only if they lie inside one
    /// buffer this registry holds alive, that buffer is a copy of a file, and the file still
    /// holds the bytes it was copied from.
    fn find(&self, ptr: *const u8, len: usize) -> Option<FileSlice>;
}

/// Bytes of a file: `file` from `offset` on.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The open file (its own description: the offset is given to each call).
    pub file: Arc<File>,
    /// Bytes from the file's start, where the slice begins.
    pub offset: u64,
}

/// A TCP connection whose vectored writes send [`FileBacked`] slices with `sendfile(2)`.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    files: Option<Arc<dyn FileBacked>>,
    /// The addresses of the last slice sent from a file: the rest of that body, however
    /// short, is looked up too, so a body that began with `sendfile` ends with it.
    sending: Range<usize>,
}

impl std::fmt::Debug for dyn FileBacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileBacked")
    }
}

impl Stream {
    /// `tcp`, sending the slices `files` knows from their files; `None`: a plain socket.
    #[must_use]
    pub fn new(tcp: TcpStream, files: Option<Arc<dyn FileBacked>>) -> Stream {
        Stream {
            tcp,
            files,
            sending: 0..0,
        }
    }

    /// The first slice of `bufs` that a file holds, its index and where in the file.
    fn file_backed(&self, bufs: &[IoSlice<'_>]) -> Option<(usize, FileSlice)> {
        let files = self.files.as_ref()?;
        bufs.iter().enumerate().find_map(|(i, b)| {
            let addr = b.as_ptr() as usize;
            (b.len() >= MIN_SENDFILE || (self.sending.contains(&addr) && !b.is_empty()))
                .then(|| files.find(b.as_ptr(), b.len()))
                .flatten()
                .map(|slice| (i, slice))
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some((k, slice)) = this.file_backed(bufs) else {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        };
        let start = bufs[k].as_ptr() as usize;
        this.sending = start..start + bufs[k].len();
        loop {
            ready!(this.tcp.poll_write_ready(cx))?;
            let sock = this.tcp.as_fd();
            match this.tcp.try_io(Interest::WRITABLE, || {
                send(sock, &bufs[..k], &bufs[k], &slice)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Sends `before` (with `MSG_MORE`: it leaves with the file's first bytes), then `body`'s
/// bytes from `slice`'s file, and returns how many bytes of `before` + `body` left, as
/// `writev` would. `WouldBlock` only when nothing left.
fn send(
    sock: BorrowedFd<'_>,
    before: &[IoSlice<'_>],
    body: &IoSlice<'_>,
    slice: &FileSlice,
) -> io::Result<usize> {
    let mut sent = 0;
    if !before.is_empty() {
        // nix names no MSG_MORE (Linux's "more data follows": the head leaves with the body).
        let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
        sent = nix::sys::socket::sendmsg::<UnixAddr>(sock.as_raw_fd(), before, &[], flags, None)?;
        if sent < before.iter().map(|b| b.len()).sum() {
            return Ok(sent);
        }
    }
    let Ok(mut offset) = i64::try_from(slice.offset) else {
        return or_sent(sent, plain(sock, body));
    };
    let file = &*slice.file;
    let from_file = match nix::sys::sendfile::sendfile(sock, file, Some(&mut offset), body.len()) {
        Ok(n) if n > 0 => Ok(n),
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        // The file ends before the slice does (it shrank since the check), or the file could
        // not be read this way (EIO, a file system without splice): memory has the bytes, and
        // a socket that failed fails this write too, with its own error.
        Ok(_) | Err(_) => plain(sock, body),
    };
    or_sent(sent, from_file)
}

/// `body` written from memory.
fn plain(sock: BorrowedFd<'_>, body: &[u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::send(
        sock.as_raw_fd(),
        body,
        MsgFlags::MSG_NOSIGNAL,
    )?)
}

/// `sent` bytes already left, plus what `then` sent: an error after some bytes left is
/// reported by the next write, as `writev` reports it.
fn or_sent(sent: usize, then: io::Result<usize>) -> io::Result<usize> {
    match then {
        Ok(n) => Ok(sent + n),
        Err(_) if sent > 0 => Ok(sent),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use bytes::Bytes;
    use nix::sys::socket::{setsockopt, sockopt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use webfarm_testkit::TempDir;

    use super::*;

    /// A registry of one buffer, `copy`, said to be a copy of `file` (the tests make them
    /// differ, so the bytes received tell where they came from).
    struct One {
        copy: Bytes,
        file: Arc<File>,
    }

    impl FileBacked for One {
        fn find(&self, ptr: *const u8, len: usize) -> Option<FileSlice> {
            let (start, at) = (self.copy.as_ptr() as usize, ptr as usize);
            let inside = at >= start && at + len <= start + self.copy.len();
            inside.then(|| FileSlice {
                file: self.file.clone(),
                offset: (at - start) as u64,
            })
        }
    }

    /// What arrives when `bufs` are written through a [`Stream`] with `files` (every byte,
    /// however the writes split them), and how many writes that took. With `small`, both
    /// ends' socket buffers are 16 KiB, so writes come back short and would block.
    async fn through(
        files: Option<Arc<dyn FileBacked>>,
        bufs: &[&[u8]],
        small: bool,
    ) -> (Vec<u8>, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (client, accepted) = (client.unwrap(), accepted.unwrap().0);
        if small {
            setsockopt(&accepted, sockopt::SndBuf, &16384).unwrap();
            setsockopt(&client, sockopt::RcvBuf, &16384).unwrap();
        }
        let mut stream = Stream::new(accepted, files);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut client = client;
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut left = &mut slices[..];
        let (mut written, mut writes) = (0, 0);
        while written < total {
            let n = stream.write_vectored(left).await.unwrap();
            assert!(n > 0, "a write made no progress");
            (written, writes) = (written + n, writes + 1);
            IoSlice::advance_slices(&mut left, n);
        }
        stream.shutdown().await.unwrap();
        (reader.await.unwrap(), writes)
    }

    fn registry(tmp: &TempDir, copy: &Bytes, on_disk: &[u8]) -> Arc<dyn FileBacked> {
        let path = tmp.path().join("file");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(on_disk))
            .unwrap();
        Arc::new(One {
            copy: copy.clone(),
            file: Arc::new(File::open(&path).unwrap()),
        })
    }

    #[tokio::test]
    async fn a_file_backed_slice_leaves_from_the_file_after_what_precedes_it() {
        let tmp = TempDir::new("sendfile");
        let copy = Bytes::from(vec![b'm'; 100 * 1024]);
        let files = registry(&tmp, &copy, &vec![b'f'; 100 * 1024]);
        let got = through(Some(files), &[b"HTTP/1.1 200 OK\r\n\r\n", &copy], false)
            .await
            .0;
        assert_eq!(&got[..19], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(got.len(), 19 + copy.len());
        assert!(got[19..].iter().all(|&b| b == b'f'), "sent from the file");
    }

    #[tokio::test]
    async fn small_slices_and_unknown_buffers_leave_from_memory() {
        let tmp = TempDir::new("sendfile-memory");
        let small = Bytes::from(vec![b'm'; MIN_SENDFILE - 1]);
        let files = registry(&tmp, &small, &vec![b'f'; MIN_SENDFILE - 1]);
        let got = through(Some(files.clone()), &[b"head", &small], false)
            .await
            .0;
        assert!(got[4..].iter().all(|&b| b == b'm'), "below the threshold");
        let other = vec![b'o'; 100 * 1024];
        let got = through(Some(files), &[b"head", &other], false).await.0;
        assert!(got[4..].iter().all(|&b| b == b'o'), "not in the registry");
        let got = through(None, &[b"head", &other], false).await.0;
        assert_eq!(got.len(), 4 + other.len());
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_copy_leaves_the_rest_to_memory() {
        let tmp = TempDir::new("sendfile-short");
        let copy = Bytes::from(vec![b'm'; 64 * 1024]);
        let files = registry(&tmp, &copy, &vec![b'f'; 20 * 1024]);
        let got = through(Some(files), &[b"head", &copy], false).await.0;
        assert_eq!(got.len(), 4 + copy.len(), "every byte arrives");
        assert!(got[4..4 + 20 * 1024].iter().all(|&b| b == b'f'));
        assert!(got[4 + 20 * 1024..].iter().all(|&b| b == b'm'));
    }

    #[tokio::test]
    async fn a_slow_reader_gets_the_file_over_many_short_writes() {
        let tmp = TempDir::new("sendfile-slow");
        let copy = Bytes::from(vec![b'm'; 512 * 1024]);
        let files = registry(&tmp, &copy, &vec![b'f'; 512 * 1024]);
        let (got, writes) = through(Some(files), &[b"head", &copy], true).await;
        assert_eq!(got.len(), 4 + copy.len());
        // Each write after the first resumed sendfile where the last one stopped, the last
        // (shorter than MIN_SENDFILE) included.
        assert!(writes > 1, "one write of 512 KiB into a 16 KiB buffer");
        assert!(
            got[4..].iter().all(|&b| b == b'f'),
            "every byte from the file"
        );
    }

    #[tokio::test]
    async fn a_file_sendfile_cannot_read_leaves_from_memory() {
        let tmp = TempDir::new("sendfile-unreadable");
        let copy = Bytes::from(vec![b'm'; 64 * 1024]);
        let path = tmp.path().join("write-only");
        std::fs::write(&path, vec![b'f'; 64 * 1024]).unwrap();
        // Open for writing only: sendfile(2) fails on this side (EBADF).
        let file = Arc::new(File::options().write(true).open(&path).unwrap());
        let files: Arc<dyn FileBacked> = Arc::new(One {
            copy: copy.clone(),
            file,
        });
        let (got, _) = through(Some(files), &[b"head", &copy], false).await;
        assert_eq!(got.len(), 4 + copy.len());
        assert!(got[4..].iter().all(|&b| b == b'm'));
    }
}
