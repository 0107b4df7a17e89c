//! Answers the load balancer makes itself (HAProxy's "local" responses): each a short
//! `text/plain` body with the reason, and the termination state for the access log.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use webfarm_tls::revoke::CRL_PATH;

use crate::acme::challenge::Lookup;
use crate::attempt::BodyFailure;
use crate::backend::pool::ProxyBody;
use crate::termination::{EndedBy, Phase, Termination};

/// A response the proxy makes instead of a server's.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    /// Its status.
    pub status: StatusCode,
    /// The one-line reason (the body, newline added).
    pub text: String,
    /// `Retry-After`, seconds (the condition is likely to pass by then).
    pub retry_after: Option<u64>,
    /// Close the connection after the answer whatever its status (a 4xx always closes):
    /// HAProxy's reply-and-close of `deny` and `tarpit`.
    pub close: bool,
    /// HAProxy's termination state for the access log.
    pub termination: Termination,
    /// The server the request was last sent to, if any.
    pub server: Option<String>,
    /// `Location` of a redirect.
    pub location: Option<HeaderValue>,
    /// The body is `text` as is, no newline added (an ACME key authorization).
    pub exact_body: bool,
    /// A binary body and its content type, instead of `text`.
    pub binary: Option<Box<(Bytes, &'static str)>>,
}

impl Local {
    /// A local answer.
    pub fn new(status: StatusCode, text: String, termination: Termination) -> Local {
        Local {
            status,
            text,
            retry_after: None,
            close: false,
            termination,
            server: None,
            location: None,
            exact_body: false,
            binary: None,
        }
    }

    /// The farm CA's CRL (RFC 5280 §5, DER) for `GET /.well-known/webfarm/ca.crl`: `200
    /// application/pkix-crl` (RFC 2585 §4.2), or `404` when this farm has none.
    pub fn crl(der: Option<Bytes>) -> Local {
        let done = Termination::new(EndedBy::Local, Phase::Request);
        match der {
            Some(der) => {
                let mut local = Local::new(StatusCode::OK, String::new(), done);
                local.binary = Some(Box::new((der, "application/pkix-crl")));
                local
            }
            None => Local::new(
                StatusCode::NOT_FOUND,
                "404 Not Found: this farm's CA has published no CRL".into(),
                done,
            ),
        }
    }

    /// The answer to an ACME http-01 challenge request (RFC 8555 §8.3): `200` with the key
    /// authorization as the whole body, or `404` for a token no order of this node awaits.
    pub fn acme_challenge(found: Lookup) -> Local {
        let done = Termination::new(EndedBy::Local, Phase::Request);
        match found {
            Lookup::Known(key_authorization) => {
                let mut local = Local::new(StatusCode::OK, key_authorization, done);
                local.exact_body = true;
                local
            }
            Lookup::Unknown => Local::new(
                StatusCode::NOT_FOUND,
                "404 Not Found: no ACME challenge with this token is pending on this load \
                 balancer"
                    .into(),
                done,
            ),
        }
    }

    /// `308 Permanent Redirect` to the same URL over HTTPS on `port` (HAProxy's `http-request
    /// redirect scheme https code 308`), except for ACME http-01 challenges, which must be
    /// answered over HTTP (RFC 8555 §8.3), and the CRL, which certificates point to with an
    /// `http` URL (RFC 5280 §4.2.1.13): `None` for those. The host is the request's
    /// (its port dropped), else `site`.
    pub fn redirect_https(
        parts: &http::request::Parts,
        port: u16,
        site: &HeaderValue,
    ) -> Option<Local> {
        let path = parts.uri.path();
        if path.starts_with("/.well-known/acme-challenge/") || path == CRL_PATH {
            return None;
        }
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .or_else(|| site.to_str().ok())
            .map_or("", without_port);
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let location = if port == 443 {
            format!("https://{host}{target}")
        } else {
            format!("https://{host}:{port}{target}")
        };
        let mut local = Local::new(
            StatusCode::PERMANENT_REDIRECT,
            format!("308 Permanent Redirect: {location}"),
            Termination::new(EndedBy::Local, Phase::Request),
        );
        local.location = HeaderValue::from_str(&location).ok();
        Some(local)
    }

    /// With `Retry-After: 1`.
    pub fn retry_after(mut self) -> Local {
        self.retry_after = Some(1);
        self
    }

    /// An `http-request deny` answer: `status` (`PR`), with `Retry-After: retry_after`
    /// seconds on a 429 (RFC 6585 §4); the connection is closed after it, as HAProxy's
    /// deny replies and closes.
    pub fn denied(status: u16, retry_after: Option<u64>) -> Local {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let why = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate limit exceeded"
        } else {
            "request denied by the load balancer's access rules"
        };
        let mut local = Local::new(
            status,
            format!("{status}: {why}"),
            Termination::new(EndedBy::Proxy, Phase::Request),
        );
        local.retry_after = retry_after;
        local.close = true;
        local
    }

    /// An `http-request tarpit` answer, sent after `timeout tarpit` (`PT`): the status
    /// alone, so the client cannot tell it was held on purpose (HAProxy's default 500);
    /// the connection is closed after it, as HAProxy's tarpit replies and closes.
    pub fn tarpit(status: u16) -> Local {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut local = Local::new(
            status,
            status.to_string(),
            Termination::new(EndedBy::Proxy, Phase::Tarpit),
        );
        local.close = true;
        local
    }

    /// An `http-request redirect` answer (`LR`): `code` to `location`. A location that
    /// cannot be a header value (built from a request's Host) gets a 400 instead.
    pub fn rule_redirect(code: u16, location: &str) -> Local {
        let done = Termination::new(EndedBy::Local, Phase::Request);
        let (Ok(status), Ok(value)) = (StatusCode::from_u16(code), HeaderValue::from_str(location))
        else {
            return Local::new(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the redirect's location cannot be built from this request".into(),
                Termination::new(EndedBy::Proxy, Phase::Request),
            );
        };
        let mut local = Local::new(status, format!("{status}: {location}"), done);
        local.location = Some(value);
        local
    }

    /// Naming the server that was tried last.
    pub fn at(mut self, server: &str) -> Local {
        self.server = Some(server.to_string());
        self
    }

    /// 503: every server of the backend is down (or in maintenance, or drained).
    pub fn no_server(backend: &str) -> Local {
        tracing::warn!("backend \"{backend}\" has no server up: answering 503");
        Local::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("503 Service Unavailable: no server is up in backend \"{backend}\""),
            Termination::new(EndedBy::Server, Phase::Connect),
        )
        .retry_after()
    }

    /// 503: every usable server stayed at its `maxconn` for `timeout queue`.
    pub fn queue_timeout(backend: &str, waited: std::time::Duration) -> Local {
        tracing::warn!(
            "backend \"{backend}\": request waited {waited:?} in the queue: answering 503"
        );
        Local::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "503 Service Unavailable: every server of backend \"{backend}\" is at its maxconn; \
                 the request waited {waited:?} in the queue (timeout queue)"
            ),
            Termination::new(EndedBy::ServerTimeout, Phase::Queue),
        )
        .retry_after()
    }

    /// The answer when the client's body made the exchange fail (`termination` as the
    /// attempt engine decided: `PR`, `cD` or `CD`).
    pub fn body_failure(f: BodyFailure, termination: Termination) -> Local {
        let (status, text) = match f {
            BodyFailure::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Content Too Large: the request body is larger than max_body_size",
            ),
            BodyFailure::ClientTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the client stopped sending its body (timeout client)",
            ),
            BodyFailure::ClientAbort => (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the client's body failed",
            ),
        };
        Local::new(status, text.into(), termination)
    }

    /// The response. A 4xx closes the connection after it (as HAProxy does): the client
    /// misbehaved, and what it sent after may not be a request.
    pub fn into_response(self) -> Response<ProxyBody> {
        if let Some(binary) = self.binary {
            let (bytes, content_type) = *binary;
            return binary_response(self.status, bytes, content_type);
        }
        let text = if self.exact_body {
            self.text
        } else {
            format!("{}\n", self.text)
        };
        let mut resp = error_response(self.status, text, self.retry_after);
        if self.status.is_client_error() || self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(location) = self.location {
            resp.headers_mut().insert(header::LOCATION, location);
        }
        resp
    }
}

/// `host[:port]` → `host`; `[v6]:port` → `[v6]`.
fn without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// A short `text/plain` error answer.
pub(crate) fn error_response(
    status: StatusCode,
    text: String,
    retry_after: Option<u64>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    resp
}

/// A `200`-style answer with a binary body, cacheable for a minute (a CRL changes when an
/// operator revokes a certificate).
fn binary_response(
    status: StatusCode,
    bytes: Bytes,
    content_type: &'static str,
) -> Response<ProxyBody> {
    let mut resp = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    resp
}

/// An empty streamed body.
pub(crate) fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_and_tarpit_reply_and_close() {
        let cases = [
            ("deny", Local::denied(403, None), Some("close")),
            ("deny 429", Local::denied(429, Some(10)), Some("close")),
            ("deny 200", Local::denied(200, None), Some("close")),
            ("tarpit", Local::tarpit(500), Some("close")),
            ("tarpit 403", Local::tarpit(403), Some("close")),
            ("redirect", Local::rule_redirect(302, "/x"), None),
        ];
        for (name, local, want) in cases {
            let resp = local.into_response();
            let got = resp
                .headers()
                .get(header::CONNECTION)
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, want, "{name}");
        }
    }
}
