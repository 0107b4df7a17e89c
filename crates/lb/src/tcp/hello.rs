//! The client's TLS ClientHello, read without decrypting, for a tcp frontend's
//! `sni_routes` (HAProxy's `tcp-request inspect-delay` with `req.ssl_hello_type 1` and
//! `req.ssl_sni`).
//!
//! Every byte read is kept, to be sent to the chosen server first: the lb takes no part in
//! the handshake. The bytes are parsed by rustls's [`Acceptor`], fed as they arrive, so a
//! ClientHello split over TCP segments or TLS records is put together by the same code that
//! parses the handshakes of the lb's HTTPS frontends. The wait is bounded twice: the whole
//! ClientHello within `inspect_delay`, and at most [`HELLO_LIMIT`] bytes.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use webfarm_tls::rustls::server::Acceptor;

use crate::termination::{EndedBy, Phase, Termination};

/// The most bytes read while waiting for a ClientHello: 16 KiB of handshake (a TLS record's
/// largest plaintext, RFC 8446 §5.1; browsers' ClientHellos, post-quantum key shares
/// included, take under 2 KiB) and 256 bytes for the 5-byte headers of the records it may
/// be split into.
pub(crate) const HELLO_LIMIT: usize = 16 * 1024 + 256;

/// A ClientHello as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Every byte read from the client (the ClientHello, and whatever came after it in the
    /// same reads), to be sent to the server before anything else.
    pub bytes: Vec<u8>,
    /// The server name it asks for, in lower case; `None` when it names none.
    pub sni: Option<String>,
}

/// Why no ClientHello came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoHello {
    /// Nothing complete within `inspect_delay`.
    Timeout,
    /// The client closed (or reset) the connection first.
    Closed,
    /// The bytes are not a TLS ClientHello (rustls's reason).
    NotTls(String),
    /// More than [`HELLO_LIMIT`] bytes without a whole ClientHello.
    TooLarge,
}

impl NoHello {
    /// The access log's termination state: `cR` for the timeout, `CR` for a client that
    /// left, `PR` for a connection the proxy refused (HAProxy's `tcp-request content
    /// reject`).
    pub fn termination(&self) -> Termination {
        let by = match self {
            NoHello::Timeout => EndedBy::ClientTimeout,
            NoHello::Closed => EndedBy::Client,
            NoHello::NotTls(_) | NoHello::TooLarge => EndedBy::Proxy,
        };
        Termination::new(by, Phase::Request)
    }
}

impl std::fmt::Display for NoHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoHello::Timeout => f.write_str("no whole ClientHello within inspect_delay"),
            NoHello::Closed => f.write_str("the client closed before its ClientHello ended"),
            NoHello::NotTls(why) => write!(f, "not a TLS ClientHello: {why}"),
            NoHello::TooLarge => write!(f, "no ClientHello in the first {HELLO_LIMIT} bytes"),
        }
    }
}

/// Reads from `client` until its bytes hold a whole ClientHello, for at most `delay`.
///
/// # Errors
///
/// [`NoHello`]: the bytes are not TLS, or are too many, or the client left or stayed
/// silent; the connection is to be closed.
///
/// # Cancel safety
///
/// Not cancel safe: bytes read before the cancellation are lost.
pub(crate) async fn read<R>(client: &mut R, delay: Duration) -> Result<Hello, NoHello>
where
    R: AsyncRead + Unpin,
{
    let deadline = Instant::now() + delay;
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 4096];
    loop {
        let room = (HELLO_LIMIT + 1 - bytes.len()).min(chunk.len());
        let n = match tokio::time::timeout_at(deadline, client.read(&mut chunk[..room])).await {
            Err(_) => return Err(NoHello::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(NoHello::Closed),
            Ok(Ok(n)) => n,
        };
        bytes.extend_from_slice(&chunk[..n]);
        feed(&mut acceptor, &chunk[..n]).map_err(|e| NoHello::NotTls(e.to_string()))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(Hello { bytes, sni });
            }
            Ok(None) if bytes.len() > HELLO_LIMIT => return Err(NoHello::TooLarge),
            Ok(None) => {}
            Err((e, _alert)) => return Err(NoHello::NotTls(e.to_string())),
        }
    }
}

/// Hands `new` bytes to the acceptor (which keeps what it has not parsed yet).
fn feed(acceptor: &mut Acceptor, mut new: &[u8]) -> io::Result<()> {
    while !new.is_empty() {
        acceptor.read_tls(&mut new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;
    use webfarm_tls::rustls::pki_types::ServerName;
    use webfarm_tls::rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;

    /// The first flight of a rustls client asking for `sni` (none: SNI off), in records of
    /// at most `fragment` bytes.
    fn client_hello(sni: Option<&str>, fragment: Option<usize>) -> Vec<u8> {
        let mut config = ClientConfig::builder_with_provider(webfarm_tls::server::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.enable_sni = sni.is_some();
        config.max_fragment_size = fragment;
        let name = ServerName::try_from(sni.unwrap_or("unused.test").to_string()).unwrap();
        let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    async fn read_all(bytes: &[u8]) -> Result<Hello, NoHello> {
        let mut r = bytes;
        read(&mut r, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn finds_the_server_name_and_keeps_every_byte() {
        let hello = client_hello(Some("DB.foobar.com"), None);
        let got = read_all(&hello).await.unwrap();
        assert_eq!(got.sni.as_deref(), Some("db.foobar.com"));
        assert_eq!(got.bytes, hello);
        let none = read_all(&client_hello(None, None)).await.unwrap();
        assert_eq!(none.sni, None);
    }

    #[tokio::test]
    async fn a_hello_in_many_records_and_single_bytes_is_put_together() {
        let hello = client_hello(Some("db.foobar.com"), Some(64));
        let whole = client_hello(Some("db.foobar.com"), None).len();
        assert!(
            hello.len() >= whole + 3 * 5,
            "split into at least 4 records (a 5-byte header each): {} vs {whole} bytes",
            hello.len()
        );
        let (mut client, mut lb) = tokio::io::duplex(1);
        let writer = tokio::spawn({
            let hello = hello.clone();
            async move {
                for b in hello {
                    client.write_all(&[b]).await.unwrap();
                }
                client
            }
        });
        let got = read(&mut lb, Duration::from_secs(30)).await.unwrap();
        assert_eq!(got.sni.as_deref(), Some("db.foobar.com"));
        assert_eq!(got.bytes, hello);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn other_protocols_are_refused_at_once() {
        // An HTTP client waiting for its answer: refused without waiting for more bytes.
        let (mut client, mut lb) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let e = read(&mut lb, Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(e, NoHello::NotTls(_)), "{e:?}");
        assert_eq!(e.termination().to_string(), "PR");
        // A TLS record that is not a handshake.
        let e = read_all(&[21, 3, 3, 0, 2, 2, 40]).await.unwrap_err();
        assert!(matches!(e, NoHello::NotTls(_)), "{e:?}");
    }

    #[tokio::test]
    async fn silence_times_out_and_a_half_hello_then_close_is_the_clients() {
        let (_client, mut lb) = tokio::io::duplex(1024);
        let e = read(&mut lb, Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(
            (e.termination().to_string(), e),
            ("cR".into(), NoHello::Timeout)
        );
        let hello = client_hello(Some("db.foobar.com"), None);
        let e = read_all(&hello[..hello.len() / 2]).await.unwrap_err();
        assert_eq!(
            (e.termination().to_string(), e),
            ("CR".into(), NoHello::Closed)
        );
    }

    #[tokio::test]
    async fn an_endless_hello_stops_at_the_limit() {
        // A handshake message announcing 64 KiB, sent in full-size records.
        let mut endless = Vec::new();
        for i in 0..3 {
            endless.extend_from_slice(&[22, 3, 1, 0x40, 0x00]);
            let mut payload = vec![0u8; 16 * 1024];
            if i == 0 {
                payload[..4].copy_from_slice(&[1, 0x00, 0xff, 0xff]);
            }
            endless.extend_from_slice(&payload);
        }
        let e = read_all(&endless).await.unwrap_err();
        assert_eq!(e, NoHello::TooLarge);
        assert_eq!(e.termination().to_string(), "PR");
    }
}
