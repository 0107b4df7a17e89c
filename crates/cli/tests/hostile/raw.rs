//! Raw sockets for the catalogue: bytes out, bytes back, and whether the peer closed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use webfarm_testkit::DEADLINE;

/// What came back on a connection.
pub struct Reply {
    /// Every byte read.
    pub bytes: Vec<u8>,
    /// The peer closed (EOF or reset) before the deadline.
    pub closed: bool,
}

impl Reply {
    /// The status of the first HTTP response, if the reply starts with one.
    pub fn status(&self) -> Option<u16> {
        let text = self.bytes.strip_prefix(b"HTTP/1.1 ")?;
        std::str::from_utf8(text.get(..3)?).ok()?.parse().ok()
    }

    /// How many HTTP/1.1 responses the reply holds (status lines at a line start).
    pub fn responses(&self) -> usize {
        let text = String::from_utf8_lossy(&self.bytes);
        let at_start = usize::from(text.starts_with("HTTP/1.1 "));
        at_start + text.matches("\nHTTP/1.1 ").count()
    }

    /// The reply as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// `"<status> closed"` or similar, for the catalogue's `got` column.
    pub fn summary(&self) -> String {
        let what = match self.status() {
            Some(s) => s.to_string(),
            None if self.bytes.is_empty() => "nothing".into(),
            None if self.bytes[0] == 0x15 => "TLS alert".into(),
            None => format!("{} bytes", self.bytes.len()),
        };
        let n = self.responses();
        let more = if n > 1 {
            format!(" ({n} answers)")
        } else {
            String::new()
        };
        let closed = if self.closed { ", closed" } else { ", open" };
        format!("{what}{more}{closed}")
    }
}

/// Connects to `addr`, sends `parts` one after another (`pause` between them), shuts the
/// write side down when `half_close`, and reads until the peer closes or `wait` passes.
pub fn exchange(
    addr: SocketAddr,
    parts: &[&[u8]],
    pause: Duration,
    half_close: bool,
    wait: Duration,
) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, DEADLINE)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        // The server may answer and close before it read everything: not an error here.
        if s.write_all(part).is_err() {
            break;
        }
    }
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    read_until_closed(&mut s, wait)
}

/// Sends `bytes` and reads the answer, waiting at most [`DEADLINE`] for the peer to close.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> Reply {
    exchange(addr, &[bytes], Duration::ZERO, false, DEADLINE)
}

fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Reply {
    let end = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Reply {
                bytes,
                closed: false,
            };
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(500))))
            .expect("a read timeout");
        match s.read(&mut buf) {
            Ok(0) => {
                return Reply {
                    bytes,
                    closed: true,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset: closed (with whatever was read).
            Err(_) => {
                return Reply {
                    bytes,
                    closed: true,
                }
            }
        }
    }
}

/// Sends the DNS message `bad` to `server` over UDP, then the valid query `probe` (id
/// `probe_id`) from the same socket; returns `bad`'s answer (any answer with another id) or
/// `None` when the server dropped it, and whether the probe was answered. A late answer to
/// `bad` is waited for one second after the probe's (UDP answers may pass each other).
pub fn dns_pair(
    server: SocketAddr,
    bad: &[u8],
    probe: &[u8],
    probe_id: u16,
) -> (Option<Vec<u8>>, bool) {
    let s = UdpSocket::bind("127.0.86.250:0").expect("a UDP socket on the test's address");
    s.send_to(bad, server).expect("send");
    s.send_to(probe, server).expect("send");
    let (mut answer, mut probed) = (None, false);
    let mut buf = [0u8; 4096];
    let mut end = Instant::now() + DEADLINE;
    while answer.is_none() || !probed {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("a read timeout");
        let Ok(n) = s.recv(&mut buf) else { break };
        let id = buf.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if id == Some(probe_id) && !probed {
            probed = true;
            end = end.min(Instant::now() + Duration::from_secs(1));
        } else {
            answer = Some(buf[..n].to_vec());
        }
    }
    (answer, probed)
}
