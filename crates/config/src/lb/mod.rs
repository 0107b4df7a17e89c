//! The load balancers' part of the farm, validated: frontends, backends, servers, health
//! checks and the global `[lb]` table, named as in HAProxy's configuration manual.
//!
//! Keys are HAProxy's with `-` written `_` (TOML keys): `balance`, `hash_type`, `retries`,
//! `redispatch`, `retry_on`, `timeout.connect|server|queue`, `cookie`; per server `weight`,
//! `backup`, `maxconn`, `slowstart`, `disabled`; per check `inter`, `fastinter`, `downinter`,
//! `rise`, `fall`, `timeout`, `observe`, `error_limit`, `on_error`; per tcp frontend
//! `inspect_delay` and `sni_routes` (`use_backend` on `req.ssl_sni`). Where webfarm's
//! default differs from HAProxy's, the field's doc says so.

pub mod acl;
mod parse;
mod resolve;
mod sni;
#[cfg(test)]
mod tests;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use acl::resolve::RawStickTable;
pub(crate) use resolve::{resolve_backends, resolve_frontends, resolve_lb};
pub use sni::{SniPattern, SniRoute, DEFAULT_INSPECT_DELAY};

/// HTTP (layer 7) or TCP (layer 4) proxying: HAProxy's `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Requests are parsed, balanced and logged one by one.
    #[default]
    Http,
    /// Connections are balanced and bytes copied both ways, whatever the protocol.
    Tcp,
}

impl Mode {
    /// `http` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
    }
}

/// How a backend picks a server (HAProxy's `balance`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's algorithm): over `sum(weights)` requests each
    /// server gets exactly `weight` of them, interleaved. Weights may change at run time
    /// (slowstart, `set-weight`).
    #[default]
    Roundrobin,
    /// Weighted round robin over a fixed sequence; weight changes at run time are ignored,
    /// as in HAProxy.
    StaticRr,
    /// The server with the fewest requests in flight relative to its weight; ties go round
    /// robin.
    Leastconn,
    /// The first server (in file order) with a free connection slot (`maxconn`).
    First,
    /// A hash of the client's IP address.
    Source,
    /// A hash of the request path (without the query string).
    Uri,
    /// A hash of the value of the named request header; requests without it go round robin.
    Hdr(String),
    /// `random(draws)`: draws that many servers at random (weighted) and takes the one with
    /// the fewest requests in flight; `random` is `random(2)`, the power of two choices.
    Random {
        /// How many servers are drawn, 1..=16.
        draws: u32,
    },
}

impl Balance {
    /// Whether the algorithm hashes something of the request (`source`, `uri`, `hdr`), so
    /// that `hash_type` applies.
    pub fn is_hash(&self) -> bool {
        matches!(self, Balance::Source | Balance::Uri | Balance::Hdr(_))
    }
}

impl std::fmt::Display for Balance {
    /// As written in the file: `roundrobin`, `hdr(X-User)`, `random(2)`...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Balance::Roundrobin => f.write_str("roundrobin"),
            Balance::StaticRr => f.write_str("static-rr"),
            Balance::Leastconn => f.write_str("leastconn"),
            Balance::First => f.write_str("first"),
            Balance::Source => f.write_str("source"),
            Balance::Uri => f.write_str("uri"),
            Balance::Hdr(name) => write!(f, "hdr({name})"),
            Balance::Random { draws } => write!(f, "random({draws})"),
        }
    }
}

/// How a hash picks a server (HAProxy's `hash-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashType {
    /// `hash % total weight of the usable servers`: even, but a server going down or up
    /// remaps most keys.
    #[default]
    MapBased,
    /// A ring of points, weight-proportional per server: a server going down remaps only
    /// its own keys.
    Consistent,
}

/// A condition that allows a request to be sent again (HAProxy's `retry-on` keywords).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `conn-failure`: the connection could not be made (no byte of the request was sent).
    ConnFailure,
    /// `empty-response`: the server closed the connection without answering.
    EmptyResponse,
    /// `junk-response`: the server's answer was not valid HTTP.
    JunkResponse,
    /// `response-timeout`: no response head within `timeout.server`.
    ResponseTimeout,
    /// A status code (`404`, `408`, `425`, `500`, `501`, `502`, `503`, `504`).
    Status(u16),
}

impl std::fmt::Display for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryOn::ConnFailure => f.write_str("conn-failure"),
            RetryOn::EmptyResponse => f.write_str("empty-response"),
            RetryOn::JunkResponse => f.write_str("junk-response"),
            RetryOn::ResponseTimeout => f.write_str("response-timeout"),
            RetryOn::Status(code) => write!(f, "{code}"),
        }
    }
}

/// A backend's timeouts (HAProxy's `timeout connect|server|queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendTimeouts {
    /// Deadline of a TCP connect to a server. Default 3s.
    pub connect: Duration,
    /// Deadline for a server's response head once the request was sent in full; in TCP
    /// mode, the longest a server may stay silent. Default 30s.
    pub server: Duration,
    /// How long a request waits for a connection slot when every usable server is at its
    /// `maxconn`; then 503. Default: `connect`, as in HAProxy.
    pub queue: Duration,
}

/// Sticky sessions by cookie (HAProxy's `cookie NAME insert indirect nocache`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cookie {
    /// The cookie's name, such as `SERVERID`.
    pub name: String,
    /// Insert `Set-Cookie: NAME=<server name>` when the request had no valid cookie. With
    /// `false` the cookie is only read (a server or application sets it).
    pub insert: bool,
}

/// What kind of active health check (HAProxy's `option httpchk` or plain `check`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckType {
    /// An HTTP request; the status decides.
    #[default]
    Http,
    /// A TCP connect; success passes.
    Tcp,
}

/// What the request path reports to health (HAProxy's `observe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observe {
    /// Nothing is observed.
    Off,
    /// Connection errors (refused, timed out, reset before an answer) count as errors.
    /// Webfarm's default (HAProxy observes nothing by default).
    #[default]
    Layer4,
    /// As `layer4`, plus invalid responses and 5xx statuses other than 501 and 505.
    Layer7,
}

/// What `error_limit` consecutive observed errors do (HAProxy's `on-error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Run the next check now and use `fastinter` while the server is transitioning.
    Fastinter,
    /// Count as one failed check, then as `fastinter` (HAProxy's default).
    #[default]
    FailCheck,
    /// Count as failed checks so that one more failure takes the server down.
    SuddenDeath,
    /// Take the server down at once; it comes back after `rise` passed checks.
    MarkDown,
}

/// Active and passive health checking of a backend's servers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    /// HTTP or TCP. Default HTTP.
    pub kind: CheckType,
    /// HTTP method of the check. Default `GET` (HAProxy's is `OPTIONS`).
    pub method: String,
    /// Path requested. Default `/healthz`.
    pub path: String,
    /// `Host` header of the check; `None`: the farm's site name.
    pub host: Option<String>,
    /// Statuses that pass; empty: any 2xx or 3xx (HAProxy's default).
    pub expect_status: Vec<u16>,
    /// Time between two checks of a server that is UP and passing. Default 2s.
    pub inter: Duration,
    /// Time between checks while a server is transitioning (UP with failures, DOWN with
    /// passes). Default: `inter`.
    pub fastinter: Duration,
    /// Time between checks of a server that is fully DOWN. Default: `inter`.
    pub downinter: Duration,
    /// Consecutive passed checks that bring a DOWN server UP. Default 2.
    pub rise: u32,
    /// Consecutive failed checks that take an UP server DOWN. Default 3.
    pub fall: u32,
    /// How long one check may take. Default: `inter`, at most 2s.
    pub timeout: Duration,
    /// What the request path reports. Default `layer4`.
    pub observe: Observe,
    /// Consecutive observed errors that trigger `on_error`. Default 10.
    pub error_limit: u32,
    /// What the errors do. Default `fail-check`.
    pub on_error: OnError,
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    /// The web node's name, or the `host:port` written in the file; unique in its backend.
    pub name: String,
    /// Where the server listens.
    pub addr: SocketAddr,
    /// Relative share of requests, 0..=256 (HAProxy's range; 0 takes no new balanced
    /// traffic). Default 1.
    pub weight: u32,
    /// A backup server takes traffic only when no active server is usable.
    pub backup: bool,
    /// Most requests in flight on this server; more wait in the backend's queue. 0 means no
    /// limit (the default).
    pub maxconn: u32,
    /// After the server comes UP, its effective weight ramps from ~0 to `weight` over this
    /// time. `None`: no ramp.
    pub slowstart: Option<Duration>,
    /// Starts in maintenance (no traffic, no checks) until set `ready` at run time.
    pub disabled: bool,
    /// The server is one of the farm's web nodes (named, no `address`): with internal TLS
    /// (`[tls] internal`) the lb talks HTTPS to it and verifies its certificate against the
    /// farm CA (HAProxy's `ssl verify required ca-file`).
    pub node: bool,
}

/// A pool of servers and how to balance over them (HAProxy's `backend`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Unique name.
    pub name: String,
    /// HTTP or TCP.
    pub mode: Mode,
    /// The balancing algorithm.
    pub balance: Balance,
    /// How hash algorithms map keys to servers.
    pub hash_type: HashType,
    /// How many more times a failed request may be tried (see `retry_on`). Default 3, as in
    /// HAProxy.
    pub retries: u32,
    /// Retries go to another server (HAProxy's `option redispatch`); with `false` they stay
    /// on the same server. Also lets a sticky request leave a server that is down. Default
    /// `true` (HAProxy's is off).
    pub redispatch: bool,
    /// When a request may be sent again. Default `[conn-failure, empty-response]` (HAProxy's
    /// is `conn-failure`). Whatever the list, a request whose bytes reached a server is sent
    /// again only if its method is idempotent and it has no body.
    pub retry_on: Vec<RetryOn>,
    /// When no active server is usable, balance over every usable backup server instead of
    /// sending everything to the first one (HAProxy's `option allbackups`).
    pub allbackups: bool,
    /// Connect, server and queue timeouts.
    pub timeout: BackendTimeouts,
    /// Sticky sessions; `None`: none.
    pub cookie: Option<Cookie>,
    /// Health checking.
    pub check: Check,
    /// The servers, in file order.
    pub servers: Vec<Server>,
}

/// A frontend's client-side timeouts (HAProxy's `timeout client|http-request|http-keep-alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrontendTimeouts {
    /// The longest a client may stay silent while the proxy waits for its bytes (request
    /// body, TCP mode data). Default 30s.
    pub client: Duration,
    /// The longest a client may take to send a whole request head (slowloris defence).
    /// Default 10s.
    pub http_request: Duration,
    /// The longest an idle keep-alive connection waits for the next request. Default 10s.
    pub http_keep_alive: Duration,
    /// How long an `http-request tarpit` rule holds a request before answering (HAProxy's
    /// `timeout tarpit`). Default: the default backend's `timeout.connect`, HAProxy's
    /// fallback.
    pub tarpit: Duration,
}

/// A listener of the load balancers (HAProxy's `frontend`), bound on every lb node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frontend {
    /// Name used in logs and status.
    pub name: String,
    /// TCP port, bound on each lb node's address.
    pub port: u16,
    /// Index into [`crate::Farm::backends`] of the backend that takes this frontend's traffic.
    pub default_backend: usize,
    /// HTTP or TCP; must be the backend's.
    pub mode: Mode,
    /// Most client connections open at once on this frontend; past it a new connection gets
    /// a 503 and is closed. 0: only the global `[lb] maxconn` applies (the default).
    pub maxconn: u32,
    /// Client-side timeouts.
    pub timeout: FrontendTimeouts,
    /// Largest request head accepted, in bytes; past it 431. Default 16384, at least 8192.
    pub max_header_size: usize,
    /// Largest request body accepted, in bytes; past it 413. 0: no limit (the default).
    pub max_body_size: u64,
    /// TLS termination (HAProxy's `bind ... ssl crt`); `None`: plain TCP. HTTP mode only.
    pub tls: Option<FrontendTls>,
    /// `redirect_https = true` (HTTP mode, no `tls`): every request but
    /// `/.well-known/acme-challenge/` is answered `308` to `https://<host>:<port>` with this
    /// port, the farm's first HTTPS frontend's (HAProxy's `http-request redirect scheme
    /// https`). `None`: requests are proxied.
    pub redirect_https: Option<u16>,
    /// TCP mode: TLS passed through to a backend chosen by the server name (SNI) of the
    /// client's ClientHello, read without decrypting; the first route that matches wins,
    /// no SNI or no match goes to `default_backend` (HAProxy's `use_backend B if {
    /// req.ssl_sni -i NAME }`). A client whose first bytes are not a ClientHello is closed
    /// (`tcp-request content reject unless { req.ssl_hello_type 1 }`). Empty (the
    /// default): no inspection, every connection goes to `default_backend` at once.
    pub sni_routes: Vec<SniRoute>,
    /// With `sni_routes`: the longest a client may take to send its whole ClientHello
    /// before it is closed (HAProxy's `tcp-request inspect-delay`). Default 5s.
    pub inspect_delay: Duration,
    /// Access control: ACLs, `tcp-request connection` and `http-request` rules, the stick
    /// table ([`acl`]). Empty by default.
    pub rules: acl::AccessRules,
}

impl Frontend {
    /// The backend (index into [`crate::Farm::backends`]) of a connection whose ClientHello
    /// named `sni`: the first of `sni_routes` that matches it, else `default_backend` (also
    /// when there was no server name).
    pub fn backend_for_sni(&self, sni: Option<&str>) -> usize {
        sni.and_then(|name| self.sni_routes.iter().find(|r| r.sni.matches(name)))
            .map_or(self.default_backend, |r| r.backend)
    }
}

/// A frontend's TLS settings: `tls = { certs = [...], hsts = "1y" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrontendTls {
    /// Certificate/key pairs chosen by SNI; the first is the default (no SNI, or a name no
    /// certificate covers). Empty (`certs` left out): the farm's own site certificate,
    /// `<data_dir>/ca/site.crt`, issued by the farm CA on first start.
    pub certs: Vec<CertFiles>,
    /// `Strict-Transport-Security: max-age=<seconds>` on every HTTPS answer (RFC 6797);
    /// `None` (`hsts = "off"`): no header. Default one year.
    pub hsts: Option<Duration>,
}

/// A certificate chain file and its private key file (the same path for a combined PEM).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertFiles {
    /// PEM chain: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The access log's format (one line per request, at info level, tracing target `access`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLog {
    /// HAProxy's HTTP log format.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// No access log.
    Off,
}

/// The global `[lb]` table: settings of every lb node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LbSettings {
    /// Most client connections open at once over all frontends of one node; past it a new
    /// connection gets a 503 and is closed. Default 10000.
    pub maxconn: u32,
    /// Access log format. Default `text`.
    pub access_log: AccessLog,
    /// Event-loop threads serving the frontends of one node (HAProxy's `nbthread`): each
    /// accepts and serves its own connections, with its own pool of upstream connections.
    /// 0 (the default): one per CPU the process may run on. At most [`MAX_LB_THREADS`].
    pub threads: u16,
}

/// Largest `[lb] threads` (HAProxy's limit of threads per thread group).
pub const MAX_LB_THREADS: u16 = 64;

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            maxconn: 10_000,
            access_log: AccessLog::Text,
            threads: 0,
        }
    }
}
