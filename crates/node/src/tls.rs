//! Internal TLS for every node's listeners and calls (`[tls] internal`, on by default).
//!
//! [`identity`] loads a node's certificate from the farm CA's files; [`TlsListener`] is the
//! listener [`crate::serve_router`] serves through when it is on: handshakes run in their
//! own tasks (a slow client cannot hold up the others) within [`HANDSHAKE_TIMEOUT`], and a
//! client without a certificate of the farm CA is refused at the handshake. Each request
//! can read who called it from [`Peer`] (axum's `ConnectInfo<Peer>`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use webfarm_config::Farm;
use webfarm_tls::ca::Layout;
use webfarm_tls::cert::CertName;

use crate::sendfile::{FileBacked, Stream};
pub use webfarm_tls::internal::Identity;
pub use webfarm_tls::rustls::ServerConfig;
pub use webfarm_tls::TlsError;

/// How long a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Node `name`'s internal TLS identity, or `None` when `[tls] internal = false`.
///
/// # Errors
///
/// The node's certificate or the farm CA is missing or unusable (the error names the file).
pub fn identity(farm: &Farm, name: &str) -> Result<Option<Identity>, TlsError> {
    if !farm.tls.internal {
        return Ok(None);
    }
    webfarm_tls::internal::node(&Layout::of_data_dir(&farm.data_dir), name).map(Some)
}

/// Who is at the other end of a connection: its address, and with internal TLS the names
/// its client certificate carries (the node's name and address, or `operator`).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The subjectAltNames of its certificate; empty without TLS.
    pub names: Arc<[CertName]>,
}

impl Peer {
    /// Whether the certificate names `name` (a DNS name in it).
    pub fn is(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|n| matches!(n, CertName::Dns(d) if d.eq_ignore_ascii_case(name)))
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A plain TCP listener setting `TCP_NODELAY` on every connection, whose connections send
/// the slices `files` knows with `sendfile(2)` ([`crate::sendfile`]).
pub struct PlainListener {
    /// The bound listener.
    pub listener: TcpListener,
    /// The buffers that are copies of files; `None`: plain writes only.
    pub files: Option<Arc<dyn FileBacked>>,
}

impl Listener for PlainListener {
    type Io = Stream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Stream, Peer) {
        let (stream, addr) = Listener::accept(&mut self.listener).await;
        nodelay(&stream);
        let names: Arc<[CertName]> = Arc::new([]);
        (
            Stream::new(stream, self.files.clone()),
            Peer { addr, names },
        )
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        let addr = self.listener.local_addr()?;
        Ok(Peer {
            addr,
            names: Arc::new([]),
        })
    }
}

fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
    }
}

/// A TLS listener: connections come out of [`Listener::accept`] once their handshake
/// succeeded.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    /// Accepts on `listener` with `config` (which requires client certificates).
    ///
    /// # Errors
    ///
    /// The listener's local address cannot be read.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local,
            ready,
            acceptor,
        })
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    loop {
        let (stream, addr) = Listener::accept(&mut listener).await;
        nodelay(&stream);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let names = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(webfarm_tls::cert::names_of)
                        .unwrap_or_default();
                    let peer = Peer {
                        addr,
                        names: names.into(),
                    };
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("internal TLS handshake from {addr} refused: {e}"),
                Err(_) => tracing::debug!("internal TLS handshake from {addr} timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Peer) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            names: Arc::new([]),
        })
    }
}
