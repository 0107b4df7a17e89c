//! The access log: one line per request (HTTP mode) or connection (TCP mode), at info
//! level with tracing target `access`, in HAProxy's log formats or as JSON.
//!
//! HTTP: `client frontend backend/server Tq/Tw/Tc/Tr/Ta status bytes termination "request"
//! id`, for example
//! `127.0.0.1:51234 www web/web-2 0/0/1/3/4 200 1524 -- "GET / HTTP/1.1" 9f2c...`; on a
//! TLS frontend followed by `sslv/sslc/Th/resumed` (HAProxy's `%sslv`, `%sslc`, `%Th` and
//! `ssl_fc_is_resumed`), e.g. `TLSv1.3/TLS_AES_128_GCM_SHA256/2/0`.
//!
//! TCP: `client frontend backend/server Tw/Tc/Tt bytes_up/bytes_down termination`, `Tt`
//! being the session's whole time and `backend` the one chosen (by `sni_routes`, or the
//! default). A connection closed before a backend was chosen (`sni_routes` and no
//! ClientHello) names the frontend as its backend and `<NOSRV>`, as HAProxy does: `cR` after
//! `inspect_delay`, `CR` when the client left, `PR` when its bytes were not TLS.
//!
//! Timers in milliseconds, `-1` for a phase never reached (HAProxy's convention):
//! `Tq` first byte of the request to its head parsed, `Tw` time in the queue, `Tc` TCP
//! connect to the server (0 on a reused connection), `Tr` request sent to response head,
//! `Ta` first byte of the request to the last byte of the response. The two-letter
//! termination state is HAProxy's: `--` normal; first letter who ended it (`C` client, `S`
//! server, `P` proxy, `s` server timeout, `c` client timeout, `R` resource limit, `L` local
//! answer), second the phase (`R` request, `Q` queue, `C` connect, `H` response head, `D`
//! data).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Version};
use serde_json::json;
use webfarm_config::AccessLog;

use crate::http::TlsInfo;
use crate::termination::Termination;

/// One request's log line, filled in as the request goes.
#[derive(Debug, Clone)]
pub(crate) struct LogRecord {
    /// Text or JSON (never `Off`: no record is made then).
    pub format: AccessLog,
    /// The client's address.
    pub client: SocketAddr,
    /// The client connection's TLS session, on a TLS frontend.
    pub tls: Option<TlsInfo>,
    /// The frontend's name.
    pub frontend: String,
    /// The backend's name.
    pub backend: String,
    /// The server that answered, if any.
    pub server: Option<String>,
    /// When the request head was handed to the proxy.
    pub start: Instant,
    /// First byte to head parsed.
    pub tq: Duration,
    /// Time in the queue.
    pub tw: Option<Duration>,
    /// Connect time of the last attempt.
    pub tc: Option<Duration>,
    /// Request sent to response head.
    pub tr: Option<Duration>,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// HAProxy's termination state.
    pub termination: Termination,
    /// Method.
    pub method: Method,
    /// Request target as received.
    pub uri: String,
    /// HTTP version.
    pub version: Version,
    /// `X-Request-Id`.
    pub request_id: HeaderValue,
}

/// A JSON line: who (`client`, `frontend`, `backend`, `server`), then the fields of `rest`
/// (an object).
fn json_line(
    (client, frontend, backend, server): (SocketAddr, &str, &str, &str),
    rest: serde_json::Value,
) -> String {
    let mut line = json!({
        "client": client.to_string(),
        "frontend": frontend,
        "backend": backend,
        "server": server,
    });
    if let (Some(fields), serde_json::Value::Object(rest)) = (line.as_object_mut(), rest) {
        fields.extend(rest);
    }
    line.to_string()
}

fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl LogRecord {
    /// `Ta`: the request's first byte to now.
    fn ta(&self) -> Duration {
        self.tq + self.start.elapsed()
    }

    /// The line in `format`.
    pub fn line(&self) -> String {
        let server = self.server.as_deref().unwrap_or("<NOSRV>");
        let id = self.request_id.to_str().unwrap_or("-");
        let ta = self.ta();
        match self.format {
            AccessLog::Json => json_line(
                (self.client, &self.frontend, &self.backend, server),
                json!({
                    "tq": ms(Some(self.tq)),
                    "tw": ms(self.tw),
                    "tc": ms(self.tc),
                    "tr": ms(self.tr),
                    "ta": ms(Some(ta)),
                    "status": self.status,
                    "bytes": self.bytes,
                    "termination": self.termination.to_string(),
                    "method": self.method.as_str(),
                    "uri": self.uri,
                    "version": format!("{:?}", self.version),
                    "request_id": id,
                    "sslv": self.tls.map(|t| t.version),
                    "sslc": self.tls.map(|t| t.cipher),
                    "th": self.tls.map(|t| ms(Some(t.handshake))),
                    "ssl_resumed": self.tls.map(|t| t.resumed),
                }),
            ),
            _ => format!(
                "{} {} {}/{} {}/{}/{}/{}/{} {} {} {} \"{} {} {:?}\" {id}{}",
                self.client,
                self.frontend,
                self.backend,
                server,
                ms(Some(self.tq)),
                ms(self.tw),
                ms(self.tc),
                ms(self.tr),
                ms(Some(ta)),
                self.status,
                self.bytes,
                self.termination,
                self.method,
                self.uri,
                self.version,
                self.tls.map_or_else(String::new, |t| format!(
                    " {}/{}/{}/{}",
                    t.version,
                    t.cipher,
                    ms(Some(t.handshake)),
                    u8::from(t.resumed)
                )),
            ),
        }
    }

    /// Writes the line at info level, target `access`.
    pub fn emit(&self) {
        tracing::info!(target: "access", "{}", self.line());
    }
}

/// Writes the line of a connection that never delivered a request head (HAProxy's
/// `<BADREQ>` line): no backend (the frontend's name stands in, as in HAProxy), no server,
/// `Tq` to `Tr` unreached (`-1`), `ta` since the connection was accepted, and `bytes` of the
/// proxy's own answer.
pub(crate) fn emit_bad_request(
    format: AccessLog,
    client: SocketAddr,
    frontend: &str,
    (status, bytes): (u16, usize),
    ta: Duration,
    termination: Termination,
) {
    let ta = ms(Some(ta));
    let line = match format {
        AccessLog::Off => return,
        AccessLog::Json => json_line(
            (client, frontend, frontend, "<NOSRV>"),
            json!({
                "tq": -1, "tw": -1, "tc": -1, "tr": -1, "ta": ta,
                "status": status,
                "bytes": bytes,
                "termination": termination.to_string(),
                "request": "<BADREQ>",
            }),
        ),
        _ => format!(
            "{client} {frontend} {frontend}/<NOSRV> -1/-1/-1/-1/{ta} {status} {bytes} \
             {termination} \"<BADREQ>\" -"
        ),
    };
    tracing::info!(target: "access", "{line}");
}

/// One TCP-mode session's line, written when the session ends.
#[derive(Debug, Clone)]
pub(crate) struct TcpRecord<'a> {
    /// Text or JSON (`Off`: nothing is written).
    pub format: AccessLog,
    /// The client's address.
    pub client: SocketAddr,
    /// The frontend's name.
    pub frontend: &'a str,
    /// The backend's name.
    pub backend: &'a str,
    /// The server of the session (or tried last), if any.
    pub server: Option<&'a str>,
    /// Time in the queue.
    pub tw: Duration,
    /// Connect time, `None` when no connection was made.
    pub tc: Option<Duration>,
    /// The session's whole time.
    pub tt: Duration,
    /// Bytes sent up (client to server) and down.
    pub bytes: (u64, u64),
    /// HAProxy's termination state.
    pub termination: Termination,
}

impl TcpRecord<'_> {
    /// The line in `format`.
    pub fn line(&self) -> String {
        let server = self.server.unwrap_or("<NOSRV>");
        let (tw, tc, tt) = (ms(Some(self.tw)), ms(self.tc), ms(Some(self.tt)));
        let (up, down) = self.bytes;
        match self.format {
            AccessLog::Json => json_line(
                (self.client, self.frontend, self.backend, server),
                json!({
                    "tw": tw, "tc": tc, "tt": tt,
                    "bytes_up": up,
                    "bytes_down": down,
                    "termination": self.termination.to_string(),
                }),
            ),
            _ => format!(
                "{} {} {}/{server} {tw}/{tc}/{tt} {up}/{down} {}",
                self.client, self.frontend, self.backend, self.termination
            ),
        }
    }

    /// Writes the line at info level, target `access` (nothing with `access_log = "off"`).
    pub fn emit(&self) {
        if self.format != AccessLog::Off {
            tracing::info!(target: "access", "{}", self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::termination::{EndedBy, Phase};

    fn record(format: AccessLog) -> LogRecord {
        LogRecord {
            format,
            client: "127.0.0.1:5000".parse().unwrap(),
            tls: None,
            frontend: "www".into(),
            backend: "web".into(),
            server: Some("web-2".into()),
            start: Instant::now(),
            tq: Duration::ZERO,
            tw: Some(Duration::ZERO),
            tc: None,
            tr: None,
            status: 503,
            bytes: 12,
            termination: Termination::new(EndedBy::ServerTimeout, Phase::Queue),
            method: Method::GET,
            uri: "/a?b".into(),
            version: Version::HTTP_11,
            request_id: HeaderValue::from_static("abc"),
        }
    }

    #[test]
    fn text_reads_like_haproxy() {
        let line = record(AccessLog::Text).line();
        let re_ta = line.replace("/-1/-1/0 ", "/-1/-1/x ");
        assert!(
            re_ta.starts_with("127.0.0.1:5000 www web/web-2 0/0/-1/-1/"),
            "{line}"
        );
        assert!(
            line.ends_with(" 503 12 sQ \"GET /a?b HTTP/1.1\" abc"),
            "{line}"
        );
        let mut tls = record(AccessLog::Text);
        tls.tls = Some(TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            handshake: Duration::from_millis(3),
            resumed: true,
        });
        let line = tls.line();
        assert!(
            line.ends_with("\" abc TLSv1.3/TLS_AES_128_GCM_SHA256/3/1"),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field() {
        let v: serde_json::Value = serde_json::from_str(&record(AccessLog::Json).line()).unwrap();
        assert_eq!(v["server"], "web-2");
        assert_eq!(v["tc"], -1);
        assert_eq!(v["termination"], "sQ");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["request_id"], "abc");
    }

    #[test]
    fn tcp_line_reads_like_haproxy() {
        let mut r = TcpRecord {
            format: AccessLog::Text,
            client: "127.0.0.1:5000".parse().unwrap(),
            frontend: "pg",
            backend: "db",
            server: Some("db-1"),
            tw: Duration::from_millis(2),
            tc: None,
            tt: Duration::from_millis(7),
            bytes: (10, 20),
            termination: Termination::new(EndedBy::Server, Phase::Connect),
        };
        assert_eq!(r.line(), "127.0.0.1:5000 pg db/db-1 2/-1/7 10/20 SC");
        r.format = AccessLog::Json;
        let v: serde_json::Value = serde_json::from_str(&r.line()).unwrap();
        assert_eq!(v["tc"], -1);
        assert_eq!(v["bytes_down"], 20);
        assert_eq!(v["termination"], "SC");
    }
}
