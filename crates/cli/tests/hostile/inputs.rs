//! The hostile inputs, as bytes: HTTP request heads and bodies, TLS records, DNS messages.

/// A request head to the site (`Connection: close`, so the answer ends with the connection).
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The request smuggling forms and malformed framings: (name, bytes, expected statuses; an
/// empty list means "one answer at most, then the connection closes").
pub fn smuggling() -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let post = "POST /api/messages HTTP/1.1\r\nHost: www.foobar.com\r\n\
                Content-Type: application/json\r\n";
    let smuggled = "GET /smuggled.html HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n";
    vec![
        (
            "CL + TE (CL first), a request smuggled after the chunked end",
            format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")
                .into_bytes(),
            &[],
        ),
        (
            "TE + CL (TE first), a request smuggled inside the CL body",
            format!(
                "{post}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{smuggled}"
            )
            .into_bytes(),
            &[],
        ),
        (
            "two different Content-Lengths",
            format!("{post}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}}}").into_bytes(),
            &[400],
        ),
        (
            "Transfer-Encoding: xchunked",
            format!("{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "Transfer-Encoding : chunked (space before the colon)",
            format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "Transfer-Encoding: chunked, then Transfer-Encoding: identity",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "Transfer-Encoding on an HTTP/1.0 request",
            "POST /api/messages HTTP/1.0\r\nHost: www.foobar.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .as_bytes()
                .to_vec(),
            &[400],
        ),
        (
            "chunk size overflowing 64 bits",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n")
                .into_bytes(),
            &[400],
        ),
        (
            "chunk size 0x5 (hex prefix)",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "chunk size -1",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "bare CR inside a header line",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\rb\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "bare CR as the line end",
            b"GET / HTTP/1.1\rHost: www.foobar.com\r\r".to_vec(),
            &[400],
        ),
        (
            "obsolete line folding (obs-fold)",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
            &[400],
        ),
    ]
}

/// Requests with invalid bytes: (name, bytes, expected statuses).
pub fn bad_bytes() -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let tail = b" HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n";
    let with = |line: &[u8], rest: &[u8]| [line, rest].concat();
    vec![
        (
            "invalid UTF-8 in the target",
            with(b"GET /\xff\xfe", tail),
            &[400],
        ),
        (
            "a control byte in the target",
            with(b"GET /a\x01b", tail),
            &[400],
        ),
        ("a space in the target", with(b"GET /a b", tail), &[400]),
        (
            "NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: a\x00b\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a control byte in a header name",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX\x01A: b\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a space in a header name",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX A: b\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a method with a control byte",
            with(b"G\x01T /", tail),
            &[400],
        ),
        (
            "HTTP/1.1 without Host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "two Host headers",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nHost: evil.example\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a Host with a space",
            b"GET / HTTP/1.1\r\nHost: www foobar.com\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "an unknown HTTP version",
            b"GET / HTTP/9.9\r\nHost: www.foobar.com\r\n\r\n".to_vec(),
            &[400, 505],
        ),
        (
            "invalid UTF-8 in a header value (obs-text: opaque bytes, RFC 9110 §5.5)",
            b"GET / HTTP/1.1\r\nHost: www.foobar.com\r\nX-A: \xff\xfe\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[200],
        ),
        (
            "bare LF line ends (RFC 9112 §2.2 lets a server accept them)",
            b"GET / HTTP/1.1\nHost: www.foobar.com\nConnection: close\n\n".to_vec(),
            &[200, 400],
        ),
    ]
}

/// Request targets that try to leave the site's root; `secret` is the file outside it.
pub fn traversals() -> Vec<String> {
    [
        "/../outside/secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/..%2foutside%2fsecret.txt",
        "/%252e%252e/outside/secret.txt",
        "/%252e%252e%252foutside%252fsecret.txt",
        "/..\\outside\\secret.txt",
        "/%5c..%5coutside%5csecret.txt",
        "/./../outside/secret.txt",
        "//../outside/secret.txt",
        "/%c0%ae%c0%ae/outside/secret.txt",
        "/leak/secret.txt",
        "/leak.txt",
        "/%6ceak/secret.txt",
        "/leakdir/",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// A TLS 1.2 record carrying a ClientHello (TLS 1.3 suite, no extensions).
fn client_hello(declared_len: Option<u32>, cut: Option<usize>) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let len = declared_len.unwrap_or(u32::try_from(body.len()).unwrap_or(0));
    let mut hs = vec![0x01];
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap_or(0).to_be_bytes());
    rec.extend_from_slice(&hs);
    if let Some(n) = cut {
        rec.truncate(n);
    }
    rec
}

/// Malformed ClientHellos: (name, bytes).
pub fn tls_hellos() -> Vec<(&'static str, Vec<u8>)> {
    let mut garbage = Vec::with_capacity(1024);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..1024 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x.to_le_bytes()[0]);
    }
    let mut record_too_long = client_hello(None, None);
    record_too_long[3..5].copy_from_slice(&0x4800u16.to_be_bytes());
    vec![
        ("a ClientHello cut short", client_hello(None, Some(20))),
        (
            "a handshake length past its record",
            client_hello(Some(0x00ff_ffff), None),
        ),
        ("a handshake length of zero", client_hello(Some(0), None)),
        ("a record length over 2^14 + 2048", record_too_long),
        ("an SSLv2-style ClientHello", {
            let mut v2 = vec![
                0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ];
            v2.extend_from_slice(&[0x00, 0x00, 0x04, 0x01, 0x00, 0x80, 0x07, 0x00, 0xc0]);
            v2.extend_from_slice(&[0x00, 0x00, 0x05, 0x00, 0x00, 0x04, 0x00, 0x00, 0x03]);
            v2.extend_from_slice(&[0x11; 16]);
            v2
        }),
        ("1 KiB of random bytes", garbage),
        ("plain HTTP to the TLS port", super::inputs::get("/")),
    ]
}

/// A DNS query for `name` (type `qtype`) with id `id`, no EDNS.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(u8::try_from(label.len()).unwrap_or(63));
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0x00, 0x01]);
    m
}

/// Malformed DNS messages: (name, bytes, the expected answer: `None` dropped, `Some(rcode)`).
pub fn dns_packets() -> Vec<(&'static str, Vec<u8>, Option<u8>)> {
    let mut response = dns_query(0x0b0b, "www.foobar.com", 1);
    response[2] |= 0x80;
    let mut opcode15 = dns_query(0x0c0c, "www.foobar.com", 1);
    opcode15[2] = 0x78;
    vec![
        ("3 bytes (no header)", vec![0x0a, 0x0a, 0x01], None),
        (
            "a question name running past the end",
            vec![0x0d, 0x0d, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a', b'b'],
            Some(1),
        ),
        (
            "a compression pointer to itself",
            vec![
                0x0e, 0x0e, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
            ],
            Some(1),
        ),
        (
            "65535 questions announced, none present",
            vec![0x0f, 0x0f, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
            Some(1),
        ),
        ("a response (QR set): not reflected", response, None),
        ("opcode 15", opcode15, Some(4)),
        (
            "AXFR over UDP",
            dns_query(0x1010, "foobar.com", 252),
            Some(5),
        ),
    ]
}
