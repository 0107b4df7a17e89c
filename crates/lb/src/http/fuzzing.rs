//! The lb's request-head checks without a listener, for the fuzz targets (`fuzz/`,
//! `crates/fuzzing`). Not part of the lb's API: hidden from its documentation.
//!
//! [`serve_bytes`] feeds raw client bytes to the same hyper server the frontend runs (the
//! same builder: `max_header_size`, keep-alive, upgrades, HTTP/2 by preface) over an
//! in-memory stream, and runs each request hyper hands over through the phases that decide
//! whether it is acceptable and what the server would receive: phase 1
//! (`request::check`: `Host`, declared body size), the head's rewrite for the server
//! (`request::prepare_head`: hop-by-hop headers out, `Host`, origin-form target,
//! `X-Forwarded-*`), and the body as the proxy streams it (`max_body_size`). No backend is
//! contacted: an accepted request is answered `200` with an empty body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use webfarm_config::Frontend;

use super::body::RequestBody;
use super::request::{check, prepare_head, take_upgrade};
use super::respond::empty;
use super::serve::{builder, ClientConn, ConnSettings};
use crate::backend::pool::ProxyBody;

/// A request as the server would receive it, after the lb's checks and rewrite.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// Its method.
    pub method: Method,
    /// Its target, as sent to the server (origin form unless `*` or authority form).
    pub uri: Uri,
    /// Always HTTP/1.1 towards servers.
    pub version: Version,
    /// Its headers, rewritten.
    pub headers: HeaderMap,
    /// Its body as the proxy streams it: the bytes, or why it failed (too large, aborted).
    pub body: Result<Bytes, String>,
}

/// What one client connection's bytes led to.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The requests that passed the checks, in order.
    pub forwarded: Vec<Forwarded>,
    /// The statuses the proxy answered itself in phase 1 (400, 413...), in order.
    pub refused: Vec<StatusCode>,
    /// Every byte the client received: the answers, hyper's own (400, 431...) included.
    pub answer: Vec<u8>,
}

/// The client at the other end of the in-memory connection.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50000);

/// Serves one client connection whose bytes are `input` (then end-of-file) on frontend
/// `fe` of a farm whose site is `site`, on the current tokio runtime. Timers run on
/// tokio's clock: under a runtime with paused time, `timeout client` passes at once when
/// nothing else can progress.
pub async fn serve_bytes(input: &[u8], fe: &Frontend, site: &HeaderValue) -> Exchange {
    let seen = Arc::new(Mutex::new(Exchange::default()));
    let room = input.len().max(1 << 16) * 2;
    let (mut client, server) = tokio::io::duplex(room);
    let service = {
        let (seen, fe, site) = (seen.clone(), fe.clone(), site.clone());
        service_fn(move |req| {
            let (seen, fe, site) = (seen.clone(), fe.clone(), site.clone());
            async move { Ok::<_, Infallible>(one_request(req, &fe, &site, &seen).await) }
        })
    };
    let settings = ConnSettings::of(fe);
    let conn = tokio::spawn(async move {
        let _ = builder(settings)
            .serve_connection_with_upgrades(TokioIo::new(server), service)
            .await;
    });
    let _ = client.write_all(input).await;
    let _ = client.shutdown().await;
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer).await;
    let _ = conn.await;
    let mut out = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    out.answer = answer;
    out
}

async fn one_request(
    mut req: Request<Incoming>,
    fe: &Frontend,
    site: &HeaderValue,
    seen: &Mutex<Exchange>,
) -> Response<ProxyBody> {
    let upgrade_to = take_upgrade(&mut req).map(|(proto, _)| proto);
    let (mut parts, body) = req.into_parts();
    if let Err(local) = check(&parts, &body, fe) {
        let status = local.status;
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused
            .push(status);
        return local.into_response();
    }
    prepare_head(
        &mut parts,
        &ClientConn::plain(PEER),
        site,
        upgrade_to.as_ref(),
    );
    let (body, _sent, _state) = RequestBody::new(body, fe.max_body_size, fe.timeout.client);
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| e.to_string());
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .forwarded
        .push(Forwarded {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        });
    Response::new(empty())
}
