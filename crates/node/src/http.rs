//! A small pooled HTTP/1.1 client for node-to-node calls (db client, raft, status).
//!
//! Built on hyper-util's pooled client; every call has a deadline. `https://` URLs go over
//! TLS (hyper-rustls) with the client configuration given to [`HttpClient::with_tls`]: with
//! internal TLS, the farm CA as the only root and the caller's certificate; the server is
//! verified under the host of the URL (a node's address is in its certificate). Not used
//! on the load balancer's proxy path, which manages its own connections.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A cloneable pooled HTTP client. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https` for a client made with [`HttpClient::with_tls`], else `http`.
    scheme: &'static str,
    /// The `Authorization` sent with every request that has none of its own.
    authorization: Option<http::HeaderValue>,
    /// When set, [`HttpClient::authorization`] is sent only to these addresses (a URL's
    /// `host:port`, compared exactly), never to any other a caller may name.
    authorized_addrs: Option<std::sync::Arc<[String]>>,
}

/// A whole response: status, headers and the collected body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why a call failed. [`HttpError::is_connect`] tells whether no byte of the request can
/// have been processed (the connection was refused), so any request may be sent again.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL or request could not be built.
    #[error("bad request to {url}: {message}")]
    Build {
        /// The URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The TCP connection could not be made (refused, unreachable).
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// No complete answer within the deadline.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The connection failed after the request was sent.
    #[error("request to {url} failed: {message}")]
    Io {
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
}

impl HttpError {
    /// True when the server cannot have seen the request (connection refused): safe to send
    /// any request again, elsewhere or later.
    pub fn is_connect(&self) -> bool {
        matches!(self, HttpError::Connect { .. })
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with a keep-alive pool (idle connections closed after 30s) for `http://`
    /// URLs; an `https://` URL fails (it trusts no authority).
    pub fn new() -> Self {
        let none = webfarm_tls::rustls::ClientConfig::builder_with_provider(
            webfarm_tls::server::provider(),
        )
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(webfarm_tls::rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        match none {
            Ok(config) => Self::build(config),
            // The provider supports TLS 1.2 and 1.3: unreachable.
            Err(e) => unreachable!("rustls refused its safe defaults: {e}"),
        }
    }

    /// As [`HttpClient::new`], for `https://` URLs too, with `config` (the farm CA and the
    /// caller's certificate, [`crate::tls::identity`]).
    pub fn with_tls(config: &webfarm_tls::rustls::ClientConfig) -> Self {
        HttpClient {
            scheme: "https",
            ..Self::build(config.clone())
        }
    }

    /// This client sending `authorization` (an `Authorization` header value: HTTP Basic for
    /// the db API, the admin token) with every request that carries none of its own.
    #[must_use]
    pub fn with_authorization(mut self, authorization: Option<http::HeaderValue>) -> Self {
        self.authorization = authorization;
        self
    }

    /// This client sending its `authorization` only to `addrs` (the farm's nodes): a URL of
    /// any other host or port gets no credentials.
    #[must_use]
    pub fn authorization_only_to(
        mut self,
        addrs: impl IntoIterator<Item = std::net::SocketAddr>,
    ) -> Self {
        self.authorized_addrs = Some(addrs.into_iter().map(|a| a.to_string()).collect());
        self
    }

    /// `<scheme>://<addr><path>`: the URL of `path` on a node at `addr`, `https` for a
    /// client with TLS.
    pub fn url(&self, addr: impl std::fmt::Display, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// An HTTP or HTTPS client for `tls` when given, else a plain one.
    pub fn for_identity(tls: Option<&webfarm_tls::internal::Identity>) -> Self {
        tls.map_or_else(Self::new, |id| Self::with_tls(&id.client))
    }

    fn build(config: webfarm_tls::rustls::ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // hyper-rustls sets ALPN itself.
        let mut config = config;
        config.alpn_protocols.clear();
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        HttpClient {
            inner,
            scheme: "http",
            authorization: None,
            authorized_addrs: None,
        }
    }

    /// `GET url`.
    ///
    /// # Errors
    ///
    /// See [`HttpError`]; a non-2xx status is not an error.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<HttpResponse, HttpError> {
        self.send(Method::GET, url, None, Bytes::new(), timeout)
            .await
    }

    /// `POST url` with `body` of `content_type`.
    ///
    /// # Errors
    ///
    /// See [`HttpError`]; a non-2xx status is not an error.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        self.send(Method::POST, url, Some(content_type), body, timeout)
            .await
    }

    /// Sends one request and collects the whole response within `timeout`.
    ///
    /// # Errors
    ///
    /// See [`HttpError`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| HttpError::Build {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        self.request(req, timeout).await
    }

    /// Sends a prepared request (any method and headers) and collects the whole response
    /// within `timeout`.
    ///
    /// # Errors
    ///
    /// See [`HttpError`].
    pub async fn request(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        let allowed = self.authorized_addrs.as_ref().is_none_or(|addrs| {
            req.uri()
                .authority()
                .is_some_and(|a| addrs.iter().any(|x| x == a.as_str()))
        });
        if let Some(auth) = self.authorization.as_ref().filter(|_| allowed) {
            if !req.headers().contains_key(http::header::AUTHORIZATION) {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, auth.clone());
            }
        }
        let url = req.uri().to_string();
        let url = url.as_str();
        let call = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                let message = error_chain(&e);
                if e.is_connect() {
                    HttpError::Connect {
                        url: url.to_string(),
                        message,
                    }
                } else {
                    HttpError::Io {
                        url: url.to_string(),
                        message,
                    }
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpError::Io {
                    url: url.to_string(),
                    message: error_chain(&e),
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::Timeout {
                    url: url.to_string(),
                    timeout,
                })
            })
    }
}

/// `error: cause: cause...` for an error and its sources.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_str = s.to_string();
        if !out.contains(&s_str) {
            out.push_str(": ");
            out.push_str(&s_str);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Answers one request on `listener` with 200 and returns its head, lowercased.
    async fn one_request(listener: tokio::net::TcpListener) -> String {
        let (mut conn, _) = listener.accept().await.unwrap();
        let head = webfarm_testkit::read_request_head(&mut conn).await;
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        head
    }

    #[tokio::test]
    async fn credentials_go_only_to_the_listed_addresses() {
        let farm = tokio::net::TcpListener::bind(webfarm_testkit::free_addr())
            .await
            .unwrap();
        let other = tokio::net::TcpListener::bind(webfarm_testkit::free_addr())
            .await
            .unwrap();
        let (farm_addr, other_addr) = (farm.local_addr().unwrap(), other.local_addr().unwrap());
        let client = HttpClient::new()
            .with_authorization(Some(http::HeaderValue::from_static("Bearer s3cret")))
            .authorization_only_to([farm_addr]);
        let t = Duration::from_secs(10);
        for (listener, addr, sent) in [(farm, farm_addr, true), (other, other_addr, false)] {
            let server = tokio::spawn(one_request(listener));
            // The listed address in the query string does not make another host listed.
            let url = format!("http://{addr}/x?{farm_addr}");
            assert_eq!(client.get(&url, t).await.unwrap().status, 200);
            let head = server.await.unwrap();
            assert_eq!(
                head.contains("authorization: bearer s3cret"),
                sent,
                "{head}"
            );
        }
    }
}
