use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::replay::Replay;
use super::*;

#[tokio::test]
async fn a_replay_reads_what_was_read_then_the_socket_up_to_its_limit() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"body!next").await.unwrap();
    let mut replay = Replay::lend(axum::body::Bytes::from_static(b"HEAD\r\n"), server, 5);
    assert!(!replay.is_spent());
    let mut seen = Vec::new();
    replay.read_to_end(&mut seen).await.unwrap();
    assert_eq!(seen, b"HEAD\r\nbody!", "end-of-file at the limit");
    assert!(replay.is_spent());
    // What lies past the limit is still on the socket, for the loop.
    // hyper's shutdown of a lent connection only flushes: the socket stays open.
    replay.shutdown().await.unwrap();
    let mut server = replay.into_inner();
    let mut rest = [0u8; 4];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"next");
    server.write_all(b"still open").await.unwrap();
    let mut seen = [0u8; 10];
    client.read_exact(&mut seen).await.unwrap();
    assert_eq!(&seen, b"still open");
}

#[tokio::test]
async fn write_all_sends_head_and_body_through_short_writes() {
    // A pipe of 7 bytes: every write is short.
    let (mut client, mut server) = tokio::io::duplex(7);
    let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    let body: Vec<u8> = (0..100u8).collect();
    let (h, b) = (head.clone(), body.clone());
    let writer = tokio::spawn(async move {
        write_all(&mut server, &h, &b).await.unwrap();
    });
    let mut seen = vec![0u8; head.len() + body.len()];
    client.read_exact(&mut seen).await.unwrap();
    writer.await.unwrap();
    assert_eq!(seen, [head, body].concat());
}
