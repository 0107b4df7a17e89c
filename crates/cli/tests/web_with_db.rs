//! The web tier against a real db cluster, both started in this process (webfarm-web's
//! `WebNode`, webfarm-db's `DbNode`, real sockets on loopback addresses of their own): the
//! message store's SQL on a real db node, a replica that lags behind the creation of the
//! table, and a forged read-your-writes cookie.
//!
//! They live here, with the binary that joins the tiers, so that webfarm-web's own tests
//! need neither the db tier nor SQLite.

mod common;

use common::in_process::{farm, header, json, text, Dbs, Web};
use common::{cookie, site_dir, TempDir, DEADLINE};
use http::{Method, StatusCode};
use webfarm_db_client::DbClient;
use webfarm_web::{MessageStore, NewMessage};

/// The message board's store (webfarm-web's `MessageStore` on the db tier's client) on a
/// real db node: creating the table is idempotent (every web node does it at start), the
/// latest messages come newest first, and a message is found by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_store_runs_on_a_db_node_and_lists_newest_first() {
    let tmp = TempDir::new("store");
    let farm = farm(&tmp, &site_dir(), "10s", 1);
    let mut dbs = Dbs::start_all(&farm).await;
    dbs.leader().await;
    let store = DbClient::new(dbs.addrs(), 0, DEADLINE);

    store.create_schema().await.unwrap();
    store.create_schema().await.unwrap();
    let mut stored = Vec::new();
    for (author, text) in [("ann", "first"), ("bob", "second"), ("cy", "third")] {
        let m = NewMessage {
            author: author.into(),
            text: text.into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            served_by: "web-1".into(),
        };
        stored.push(store.insert(&m).await.unwrap());
    }
    let ids: Vec<i64> = stored.iter().map(|s| s.message.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let written = stored.last().unwrap().raft_index;

    let latest = store.latest(2, Some(written)).await.unwrap();
    assert!(!latest.index_reset);
    let got: Vec<(i64, &str)> = latest
        .value
        .iter()
        .map(|m| (m.id, m.text.as_str()))
        .collect();
    assert_eq!(got, [(3, "third"), (2, "second")]);
    let one = store.get(1, Some(written)).await.unwrap().value.unwrap();
    assert_eq!(one.author, "ann");
    assert_eq!(one.served_by, "web-1");
    assert_eq!(one, stored[0].message);
    let none = store.get(9, Some(written)).await.unwrap();
    assert!(none.value.is_none(), "{none:?}");

    dbs.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_behind_the_tables_creation_does_not_answer_no_such_table() {
    let tmp = TempDir::new("lagging");
    let farm = farm(&tmp, &site_dir(), "10s", 3);
    let mut dbs = Dbs::start_all(&farm).await;
    dbs.leader().await;

    // web-1 reads from db-1 first: db-1 misses the table's creation and a message.
    dbs.stop(0).await;
    dbs.leader().await;
    let web = Web::start(&farm, "web-1").await;
    web.until_ready().await;
    let posted = web
        .post_json(
            "/api/messages",
            r#"{"author": "ann", "text": "while db-1 was down"}"#,
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let wf_index = cookie(&posted);
    assert!(wf_index.starts_with("wf_index="), "{wf_index}");

    // Back, db-1 is behind until the leader's next replication round: reads wait for it.
    dbs.start(0).await;
    let r = web.get("/api/messages", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert!(json(&r).is_array(), "{}", text(&r));
    let r = web.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let r = web.get("/api/messages", &[("cookie", &wf_index)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(json(&r)[0]["text"], "while db-1 was down", "{}", text(&r));

    web.stop().await;
    dbs.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_cookie_is_dropped_and_the_page_still_answers() {
    let tmp = TempDir::new("forged");
    // Shorter than a replica's wait for an index it never reaches, times the three nodes.
    let farm = farm(&tmp, &site_dir(), "3s", 3);
    let mut dbs = Dbs::start_all(&farm).await;
    dbs.leader().await;
    let web = Web::start(&farm, "web-1").await;
    web.until_ready().await;
    let posted = web
        .post_json("/api/messages", r#"{"author": "bo", "text": "hi"}"#)
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let id = json(&posted)["id"].as_i64().unwrap();
    let wf_index = cookie(&posted);
    assert!(wf_index.starts_with("wf_index="), "{wf_index}");

    let forged = [("cookie", "wf_index=18446744073709551615")];
    for path in ["/api/messages", &format!("/api/messages/{id}"), "/"] {
        let r = web.send(Method::GET, path, &forged, "").await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", text(&r));
        let set = header(&r, "set-cookie");
        assert!(
            set.starts_with("wf_index=;") && set.contains("Max-Age=0"),
            "{path}: {set}"
        );
        assert!(text(&r).contains("hi"), "{path}: {}", text(&r));
    }
    // A real cookie is kept.
    let r = web.get("/api/messages", &[("cookie", &wf_index)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key("set-cookie"), "{r:?}");

    web.stop().await;
    dbs.stop_all().await;
}
