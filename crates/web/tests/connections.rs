//! A web node's connections as a client's raw bytes see them: the loop's cached answers and
//! hyper's answers to everything else share one connection, in order, pipelined or not, and
//! what ends a connection (HTTP/1.0, `Connection: close`) still ends it.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webfarm_testkit::metrics::sample;

/// One answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n == name);
        let value = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "two {name} headers: {self:?}");
        value
    }
}

/// A client connection that reads answers one by one.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Reads 4 KiB at a time, a millisecond apart: a client slower than the server.
    slow: bool,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            slow: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next answer (to a `HEAD` if `head`: no body), within the deadline.
    async fn answer(&mut self, head: bool) -> Answer {
        tokio::time::timeout(DEADLINE, self.read_answer(head))
            .await
            .unwrap_or_else(|_| panic!("no answer within {DEADLINE:?}"))
    }

    async fn read_answer(&mut self, head: bool) -> Answer {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = resp.parse(&self.buf).unwrap() {
                let status = StatusCode::from_u16(resp.code.unwrap()).unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8(h.value.to_vec()).unwrap();
                        (h.name.to_ascii_lowercase(), value)
                    })
                    .collect();
                let length = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                let length = if head { 0 } else { length };
                while self.buf.len() < len + length {
                    self.fill().await;
                }
                let body = self.buf[len..len + length].to_vec();
                self.buf.drain(..len + length);
                return Answer {
                    status,
                    headers,
                    body,
                };
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let chunk = if self.slow {
            // The pace of the reader is what is tested, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(1)).await;
            &mut chunk[..4096]
        } else {
            &mut chunk[..]
        };
        let n = self.stream.read(chunk).await.unwrap();
        assert!(n > 0, "closed with {} bytes unread", self.buf.len());
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends `GET path` with `extra` header lines and asserts a `200`.
    async fn get_ok(&mut self, path: &str, extra: &str) {
        self.send(get(path, extra).as_bytes()).await;
        let answer = self.answer(false).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{path} {extra:?}: {answer:?}"
        );
    }

    /// Asserts that the server closes the connection, with nothing more sent.
    async fn closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "still open after {DEADLINE:?}");
        assert!(
            self.buf.is_empty() && rest.is_empty(),
            "bytes after the last answer: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// A web node serving a copy of `site/` in a temp dir named after `tag`, with its site's
/// path (the dir lives as long as the returned `TempDir`).
async fn node(tag: &str) -> (TempDir, std::path::PathBuf, Running) {
    let tmp = TempDir::new(tag);
    let site = make_site(&tmp);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    (tmp, site, web)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\n{extra}\r\n")
}

#[tokio::test]
async fn pipelined_requests_of_both_paths_are_answered_in_order() {
    let (_tmp, site, web) = node("conn-pipeline").await;
    let css = std::fs::read(site.join("style.css")).unwrap();
    let mut conn = Conn::open(web.addr).await;
    // The first GET goes through ServeDir (and fills the cache); the loop answers the rest.
    conn.send(get("/style.css", "").as_bytes()).await;
    let first = conn.answer(false).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, css);
    let etag = first.header("etag").unwrap().to_string();
    let json = r#"{"author":"ann","text":"hello"}"#;
    let batch = [
        get("/style.css", ""),
        get("/healthz", ""),
        "HEAD /style.css HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
        get("/style.css?v=2", &format!("If-None-Match: {etag}\r\n")),
        format!(
            "POST /api/messages HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            json.len()
        ),
        get("/nothing-here.css", ""),
        get("/style.css", ""),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;

    let hit = conn.answer(false).await;
    assert_eq!((hit.status, &hit.body), (StatusCode::OK, &css));
    for name in FILE_HEADERS {
        assert_eq!(hit.header(name), first.header(name), "{name}");
    }
    assert_eq!(hit.header("x-served-by"), Some("web-1"));
    assert!(hit
        .header("date")
        .is_some_and(|d| httpdate::parse_http_date(d).is_ok()));
    let health = conn.answer(false).await;
    assert_eq!(
        (health.status, &health.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );
    let head = conn.answer(true).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some(&*css.len().to_string()));
    let not_modified = conn.answer(false).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("etag"), Some(&*etag));
    assert_eq!(not_modified.header("x-served-by"), Some("web-1"));
    // No db node: the app's own answer, after which the connection goes on.
    let posted = conn.answer(false).await;
    assert_eq!(posted.status, StatusCode::SERVICE_UNAVAILABLE, "{posted:?}");
    let missing = conn.answer(false).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let last = conn.answer(false).await;
    assert_eq!((last.status, &last.body), (StatusCode::OK, &css));

    // The loop wrote the four answers of the cached file; hyper the first and the others.
    let text = webfarm_node::metrics::text(web.node.as_ref().unwrap().health()).unwrap();
    let prepared = sample(&text, "webfarm_web_static_prepared_total", &[]);
    assert_eq!(prepared, Some(4.0), "{text}");
    let statics = [("route", "static"), ("code", "2xx")];
    let served = sample(&text, "webfarm_web_http_requests_total", &statics);
    assert_eq!(
        served,
        Some(4.0),
        "the first GET and three hits; the 304 is a 3xx"
    );
}

#[tokio::test]
async fn a_head_sent_in_pieces_is_answered() {
    let (_tmp, _, web) = node("conn-pieces").await;
    let mut conn = Conn::open(web.addr).await;
    for _ in 0..2 {
        // Once through ServeDir, once from the cache.
        for byte in get("/style.css", "Accept: text/css\r\n").as_bytes() {
            conn.send(std::slice::from_ref(byte)).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(conn.answer(false).await.status, StatusCode::OK);
    }
    // A head longer than the loop reads goes to hyper, which answers it too.
    let long = format!("X-Long: {}\r\n", "a".repeat(20 * 1024));
    conn.get_ok("/style.css", &long).await;
    conn.get_ok("/style.css", "").await;
}

#[tokio::test]
async fn what_closes_a_connection_still_closes_it() {
    let (_tmp, _, web) = node("conn-close").await;
    let mut warm = Conn::open(web.addr).await;
    warm.send(get("/style.css", "").as_bytes()).await;
    assert_eq!(warm.answer(false).await.status, StatusCode::OK);

    for request in [
        "GET /style.css HTTP/1.0\r\n\r\n".to_string(),
        get("/style.css", "Connection: close\r\n"),
        get("/healthz", "Connection: close\r\n"),
    ] {
        let mut conn = Conn::open(web.addr).await;
        conn.send(request.as_bytes()).await;
        let answer = conn.answer(false).await;
        assert_eq!(answer.status, StatusCode::OK, "{request:?}");
        conn.closed().await;
    }
    // A target hyper refuses after the loop lent it the request: its 400, then the close.
    let mut conn = Conn::open(web.addr).await;
    conn.send(b"GET /style.css?q=\"x\" HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert_eq!(conn.answer(false).await.status, StatusCode::BAD_REQUEST);
    conn.closed().await;
    // A body the app answers without reading: the connection is not reused blind.
    let post = "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
    for body in ["hello", ""] {
        let mut conn = Conn::open(web.addr).await;
        conn.send(format!("{post}{body}").as_bytes()).await;
        let answer = conn.answer(false).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        if body.is_empty() {
            // The body still on its way when the app answered: hyper leaves it unread,
            // and where the next request would start is unknown, so the connection closes.
            conn.closed().await;
        } else {
            // hyper drained the body that came with the head: the connection goes on.
            conn.get_ok("/style.css", "").await;
        }
    }
}

#[tokio::test]
async fn http2_with_prior_knowledge_and_long_heads_are_hyper_s() {
    let (_tmp, _, web) = node("conn-h2").await;
    let stream = TcpStream::connect(web.addr).await.unwrap();
    let (mut sender, h2) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 preface is answered as HTTP/2");
    tokio::spawn(h2);
    for _ in 0..2 {
        let req = http::Request::get(format!("http://{}/style.css", web.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("an answer within the deadline")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
    }
    // More header fields than the loop reads (64): hyper reads them (up to its 100).
    let mut conn = Conn::open(web.addr).await;
    let many: String = (0..80).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    conn.get_ok("/style.css", &many).await;
    conn.get_ok("/style.css", "").await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections() {
    let (_tmp, _, mut web) = node("conn-shutdown").await;
    let mut idle = Conn::open(web.addr).await;
    idle.send(get("/style.css", "").as_bytes()).await;
    assert_eq!(idle.answer(false).await.status, StatusCode::OK);
    let mut handed = Conn::open(web.addr).await;
    handed
        .send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(handed.answer(false).await.status, StatusCode::OK);
    web.trigger.trigger();
    idle.closed().await;
    handed.closed().await;
    let node = web.node.take().unwrap();
    tokio::time::timeout(DEADLINE + Duration::from_secs(5), node.wait())
        .await
        .expect("the node stops once its connections closed")
        .unwrap();
}

#[tokio::test]
async fn a_large_answer_to_a_slow_reader_arrives_whole_before_the_next() {
    let tmp = TempDir::new("conn-slow");
    let site = make_site(&tmp);
    // Over the cache's 1 MiB, ServeDir streams it through hyper; over the 4 MiB a socket's
    // send buffer grows to, the server waits for the reader.
    let big = write_pattern(&site, "big.bin", 12 * 1024 * 1024);
    let web = start(farm(&tmp, &site, "300ms"), "web-1").await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window: the server's writes stall until the client reads.
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(web.addr).await.unwrap();
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        slow: true,
    };
    // A body hyper drains (it came with the head) and a pipelined request for the loop.
    let batch = [
        "GET /big.bin HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx".to_string(),
        get("/style.css", ""),
        get("/style.css", ""),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;
    let answer = conn.answer(false).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body == big, "the 12 MiB body arrived whole");
    for _ in 0..2 {
        let css = conn.answer(false).await;
        assert_eq!(css.status, StatusCode::OK);
        assert_eq!(css.body, std::fs::read(site.join("style.css")).unwrap());
    }
}

#[tokio::test]
async fn the_loop_answers_as_hyper_would_header_for_header() {
    let (_tmp, _, web) = node("conn-same").await;
    let mut conn = Conn::open(web.addr).await;
    conn.send(get("/style.css", "").as_bytes()).await;
    let etag = conn.answer(false).await.header("etag").unwrap().to_string();
    let if_none_match = format!("If-None-Match: {etag}\r\n");
    // The loop answers origin-form targets; hyper (through `WebService`'s own cache
    // lookup) the absolute form of the same request.
    let absolute = format!("http://{}/style.css", web.addr);
    for (method, extra) in [("GET", ""), ("HEAD", ""), ("GET", if_none_match.as_str())] {
        let mut answers = Vec::new();
        for target in ["/style.css", absolute.as_str()] {
            let request = format!("{method} {target} HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
            conn.send(request.as_bytes()).await;
            let mut answer = conn.answer(method == "HEAD").await;
            answer.headers.retain(|(name, _)| name != "date");
            answers.push(answer);
        }
        let (looped, hyper) = (&answers[0], &answers[1]);
        assert_eq!(looped.status, hyper.status, "{method} {extra}");
        assert_eq!(
            looped.headers, hyper.headers,
            "{method} {extra}: same fields, same order"
        );
        assert_eq!(looped.body, hyper.body, "{method} {extra}");
    }
    let text = webfarm_node::metrics::text(web.node.as_ref().unwrap().health()).unwrap();
    let prepared = sample(&text, "webfarm_web_static_prepared_total", &[]);
    assert_eq!(
        prepared,
        Some(3.0),
        "the loop answered the origin-form three"
    );
}
