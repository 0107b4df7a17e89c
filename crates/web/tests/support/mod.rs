//! Shared helpers of the crate tests: a temp site, a farm on free loopback ports, a web node
//! started on it, and a minimal HTTP/1.1 client that can send any header.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use webfarm_config::Farm;
use webfarm_node::{NodeContext, Shutdown, ShutdownTrigger};
pub use webfarm_testkit::{TempDir, DEADLINE};
use webfarm_web::{WebError, WebNode};

/// The headers a cached file's answer repeats from the file's first answer.
pub const FILE_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "cache-control",
];

/// Writes `site/<name>`: `len` bytes of a repeating pattern (byte `i` is `i % 251`, so a
/// shifted or truncated copy never matches), and returns them.
pub fn write_pattern(site: &Path, name: &str, len: u32) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.join(name), &bytes).unwrap();
    bytes
}

/// The repository's `site/` directory.
pub fn repo_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../site")
}

/// A site directory: a copy of the repository's `site/`, plus `docs/index.html`.
pub fn make_site(tmp: &TempDir) -> PathBuf {
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    for entry in std::fs::read_dir(repo_site()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), site.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(
        site.join("docs/index.html"),
        "<!doctype html><title>docs</title>\n",
    )
    .unwrap();
    site
}

/// A farm of one web node `web-1` and one db node `db-1`, each on a loopback address of its
/// own (webfarm-testkit), so nothing listens on the db node's port unless a test starts one.
pub fn farm(tmp: &TempDir, root: &Path, db_timeout: &str) -> Farm {
    let text = webfarm_testkit::web_farm_toml(tmp.path(), root, db_timeout, 1, "");
    Farm::parse(&text, None, tmp.path()).unwrap()
}

/// A started web node and what keeps it running.
pub struct Running {
    pub node: Option<WebNode>,
    pub addr: SocketAddr,
    pub trigger: ShutdownTrigger,
    pub farm: Arc<Farm>,
}

/// Starts node `name` of `farm`.
pub async fn start(farm: Farm, name: &str) -> Result<Running, WebError> {
    let farm = Arc::new(farm);
    let node = farm.node(name).unwrap().clone();
    let data_dir = farm.node_data_dir(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let ctx = NodeContext {
        farm: farm.clone(),
        node,
        data_dir,
        shutdown,
        auth: Default::default(),
    };
    let node = WebNode::start(ctx).await?;
    Ok(Running {
        addr: node.http_addr(),
        node: Some(node),
        trigger,
        farm,
    })
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        match self.headers.get(name) {
            Some(v) => v.to_str().unwrap(),
            None => panic!("no {name} header in {self:?}"),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text()))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        assert!(
            self.header("content-type").starts_with("application/json"),
            "{self:?}"
        );
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text()))
            .to_string()
    }
}

/// Sends one request on a new HTTP/1.1 connection, within 20s.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let call = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(DEADLINE, call)
        .await
        .unwrap_or_else(|_| panic!("no answer within {DEADLINE:?}"))
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(addr, Method::GET, path, headers, Bytes::new()).await
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    send(
        addr,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}
