//! Queued writes (`/db/execute?queue`): the request is accepted at once with a sequence
//! number, and written in the background.
//!
//! Each node keeps its own queue and its own sequence numbers (nanoseconds since the Unix
//! epoch at the node's start, plus one per request: increasing, and unlikely to repeat after a
//! restart). A flushing task takes what is queued, up to [`QUEUE_FLUSH_MAX`] requests or after
//! [`QUEUE_DELAY`], and writes it through the normal write path **in sequence order** (rqlite
//! applies queued writes in the order they were queued): consecutive requests without
//! `transaction` are merged into one write (their statements are independent, each keeps its
//! own error), and a request with `transaction` is written alone, so a failing one does not
//! take the others with it. A request that
//! certainly was not applied (no leader, not leader) is retried until it is; one whose fate
//! is unknown (no answer in time) is logged and counted as done, as is one whose statements
//! failed (as in rqlite, the 200 only meant "queued"). Then the flush's last sequence number
//! is recorded as flushed, and `?wait` requests waiting for it return. At shutdown the queue
//! refuses new requests and the node waits for the queued ones before Raft stops; only what
//! no leader takes by then is dropped (logged).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::command::SqlRequest;

/// Requests written together, at most.
pub(crate) const QUEUE_FLUSH_MAX: usize = 128;
/// Longest a queued request waits for others before the queue is flushed.
pub(crate) const QUEUE_DELAY: Duration = Duration::from_millis(50);
/// First pause before a request that could not be written is tried again; doubles up to 1s.
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// How one attempt to write a queued request ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Applied (its statements may have failed: their errors are logged).
    Done,
    /// Certainly not applied: try again.
    Retry(String),
    /// May or may not have been applied: do not repeat it.
    Unknown(String),
}

/// What writes a queued request (the API's write path).
pub(crate) trait QueueWriter: Send + Sync + 'static {
    /// Writes one request through the leader.
    fn write_queued(
        &self,
        request: SqlRequest,
    ) -> impl std::future::Future<Output = Attempt> + Send;
}

struct Queued {
    seq: u64,
    request: SqlRequest,
}

/// Why a write was not queued (503: it was not taken, so it can be sent again).
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub(crate) enum NotQueued {
    /// The node is shutting down.
    #[error("the node is shutting down; the write was not queued")]
    ShuttingDown,
    /// The flushing task is gone.
    #[error("the write queue stopped; the write was not queued")]
    Stopped,
}

/// One node's queue of writes.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    tx: mpsc::UnboundedSender<Queued>,
    next: AtomicU64,
    flushed: watch::Receiver<u64>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").field("seq", &self.seq).finish()
    }
}

impl WriteQueue {
    /// Starts the flushing task; it writes through `writer` while the writer lives.
    pub(crate) fn spawn<W: QueueWriter>(writer: Weak<W>) -> WriteQueue {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (flushed_tx, flushed) = watch::channel(start);
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(flush_loop(writer, rx, flushed_tx, Arc::clone(&closed)));
        WriteQueue {
            tx,
            next: AtomicU64::new(start + 1),
            flushed,
            closed,
        }
    }

    /// Queues `request`; returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`NotQueued`] when the node is shutting down or the queue stopped.
    pub(crate) fn push(&self, request: SqlRequest) -> Result<u64, NotQueued> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(NotQueued::ShuttingDown);
        }
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(Queued { seq, request })
            .map_err(|_| NotQueued::Stopped)?;
        Ok(seq)
    }

    /// The last sequence number written (all before it were too).
    pub(crate) fn flushed(&self) -> u64 {
        *self.flushed.borrow()
    }

    /// Requests queued and not written yet.
    pub(crate) fn pending(&self) -> u64 {
        self.next
            .load(Ordering::SeqCst)
            .saturating_sub(self.flushed() + 1)
    }

    /// Waits until request `seq` was written; `false` after `timeout`.
    pub(crate) async fn wait_flushed(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.flushed.clone();
        tokio::time::timeout(timeout, rx.wait_for(|&f| f >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Refuses new requests and waits, at most `timeout`, until the queued ones are written
    /// (graceful shutdown). Returns whether everything was written.
    pub(crate) async fn close(&self, timeout: Duration) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        let last = self.next.load(Ordering::SeqCst).saturating_sub(1);
        self.wait_flushed(last, timeout).await
    }
}

async fn flush_loop<W: QueueWriter>(
    writer: Weak<W>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    flushed: watch::Sender<u64>,
    closed: Arc<AtomicBool>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + QUEUE_DELAY;
        let mut flush = vec![first];
        while flush.len() < QUEUE_FLUSH_MAX {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(q)) => flush.push(q),
                Ok(None) | Err(_) => break,
            }
        }
        let last = flush.iter().map(|q| q.seq).max().unwrap_or(0);
        let Some(w) = writer.upgrade() else { return };
        for q in merge_in_order(flush) {
            write_one(w.as_ref(), q, &closed).await;
        }
        flushed.send_replace(last);
    }
}

/// Keeps the queue's order and merges each run of consecutive requests that share every flag
/// and have no `transaction` into one request.
fn merge_in_order(flush: Vec<Queued>) -> Vec<Queued> {
    let mut out: Vec<Queued> = Vec::with_capacity(flush.len());
    for q in flush {
        if let Some(prev) = out.last_mut() {
            let (a, b) = (&prev.request, &q.request);
            if !a.transaction
                && !b.transaction
                && a.want_rows == b.want_rows
                && a.read_only == b.read_only
                && a.blob_array == b.blob_array
            {
                prev.request.statements.extend(q.request.statements);
                prev.seq = q.seq;
                continue;
            }
        }
        out.push(q);
    }
    out
}

async fn write_one<W: QueueWriter>(w: &W, q: Queued, closed: &AtomicBool) {
    let mut pause = RETRY_FIRST;
    loop {
        match w.write_queued(q.request.clone()).await {
            Attempt::Done => return,
            Attempt::Unknown(why) => {
                tracing::warn!(seq = q.seq, error = %why, "queued write: no answer; it may or may not have been applied");
                return;
            }
            Attempt::Retry(why) if closed.load(Ordering::SeqCst) => {
                tracing::warn!(seq = q.seq, error = %why, "queued write dropped: the node is shutting down and no leader takes it");
                return;
            }
            Attempt::Retry(why) => {
                tracing::debug!(seq = q.seq, error = %why, "queued write not applied; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SqlStatement;

    fn queued(seq: u64, sql: &str, transaction: bool) -> Queued {
        Queued {
            seq,
            request: SqlRequest {
                statements: vec![SqlStatement {
                    sql: sql.into(),
                    params: Default::default(),
                }],
                transaction,
                want_rows: false,
                read_only: false,
                blob_array: false,
            },
        }
    }

    #[test]
    fn merging_keeps_queue_order_and_isolates_transactions() {
        let out = merge_in_order(vec![
            queued(1, "a", false),
            queued(2, "b", false),
            queued(3, "t", true),
            queued(4, "c", false),
            queued(5, "d", false),
        ]);
        let shape: Vec<(u64, Vec<&str>, bool)> = out
            .iter()
            .map(|q| {
                let sqls = q
                    .request
                    .statements
                    .iter()
                    .map(|s| s.sql.as_str())
                    .collect();
                (q.seq, sqls, q.request.transaction)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (2, vec!["a", "b"], false),
                (3, vec!["t"], true),
                (5, vec!["c", "d"], false),
            ]
        );
    }
}
