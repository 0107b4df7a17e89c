//! Probes from inside a network namespace: each probe is one thread that enters the source's
//! namespace (`setns`, nix's safe wrapper) and tries the destination once, so a whole matrix
//! runs in parallel and costs about one timeout.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The connection was made (TCP), or the DNS server answered (UDP).
    Open,
    /// Refused: the packet passed the firewall and no one listens (TCP RST, ICMP port
    /// unreachable).
    Closed,
    /// No answer within the timeout: dropped.
    Dropped,
    /// Anything else (no route...).
    Error(String),
}

impl Seen {
    /// The matrix's cell: `open`, `rst`, `.` (dropped) or `err`.
    pub fn cell(&self) -> &'static str {
        match self {
            Seen::Open => "open",
            Seen::Closed => "rst",
            Seen::Dropped => ".",
            Seen::Error(_) => "err",
        }
    }
}

/// One probe: from namespace `netns` (`None`: the test's own, the operator's host) to
/// `to`, over UDP (a DNS query for `www.foobar.com`) or TCP (a connect).
#[derive(Debug, Clone)]
pub struct Probe {
    /// `ip netns` name of the source, or `None`.
    pub netns: Option<String>,
    /// The destination.
    pub to: SocketAddr,
    /// UDP with a DNS query, else a TCP connect.
    pub udp: bool,
}

impl Probe {
    /// Runs the probe on a thread of its own; `timeout` bounds the wait.
    pub fn spawn(&self, timeout: Duration) -> std::thread::JoinHandle<Seen> {
        let probe = self.clone();
        std::thread::spawn(move || {
            if let Some(ns) = &probe.netns {
                let f = File::open(format!("/run/netns/{ns}"))
                    .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {ns}: {e}"));
            }
            if probe.udp {
                dns_query(probe.to, timeout)
            } else {
                connect(probe.to, timeout)
            }
        })
    }
}

/// Runs every probe at once; the results in the same order.
pub fn run_all(probes: &[Probe], timeout: Duration) -> Vec<Seen> {
    let handles: Vec<_> = probes.iter().map(|p| p.spawn(timeout)).collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a probe thread panicked"))
        .collect()
}

fn from_error(e: &std::io::Error) -> Seen {
    match e.kind() {
        ErrorKind::ConnectionRefused => Seen::Closed,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Seen::Dropped,
        _ => Seen::Error(e.to_string()),
    }
}

fn connect(to: SocketAddr, timeout: Duration) -> Seen {
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(_) => Seen::Open,
        Err(e) => from_error(&e),
    }
}

/// A real DNS query (A of the site); open only if a DNS answer with the query's id comes back.
fn dns_query(to: SocketAddr, timeout: Duration) -> Seen {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    sock.connect(to).expect("connect the UDP socket");
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut m = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("www.foobar.com.").unwrap(),
        RecordType::A,
    ));
    if let Err(e) = sock.send(&m.to_vec().unwrap()) {
        return from_error(&e);
    }
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => match Message::from_vec(&buf[..n]) {
            Ok(answer) if answer.metadata.id == 0x5eed => Seen::Open,
            other => Seen::Error(format!("not our DNS answer: {other:?}")),
        },
        Err(e) => from_error(&e),
    }
}
