//! Group commit on the leader: the requests that arrive together become one log entry, so one
//! fsync (per node) and one SQLite transaction serve them all, while each keeps its own
//! results and errors.
//!
//! Every write (and every `strong` read) is handed to one group-commit task with a oneshot for
//! its answer. The task proposes at once when fewer than [`MAX_IN_FLIGHT`] entries wait for
//! their commit; otherwise it keeps collecting what arrives until one of them is applied, up to
//! [`MAX_GROUP_REQUESTS`] requests or [`MAX_GROUP_BYTES`] of SQL. So a lone writer is never
//! delayed, and under load the group grows with the commit latency instead of a fixed timer.
//! The entry's results come back in request order and are handed out one per request.
//!
//! A request whose caller stopped waiting (timeout) before it was proposed is dropped, never
//! proposed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, ForwardToLeader};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::command::{Command, Request};
use crate::metrics::DbMetrics;
use crate::sqlite::determinism::splitmix64;
use crate::types::{NodeInfo, Outcome, Raft};

/// Entries proposed and not yet applied, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 2;
/// Requests in one entry, at most.
pub(crate) const MAX_GROUP_REQUESTS: usize = 512;
/// SQL text and parameters in one entry, roughly, at most (a single larger request still goes
/// alone).
pub(crate) const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

/// What a request gave once its entry was applied.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// One outcome per statement.
    pub(crate) outcomes: Vec<Outcome>,
    /// The log index of the entry.
    pub(crate) index: u64,
}

/// Why a request got no result.
#[derive(Debug, Clone)]
pub(crate) enum WriteError {
    /// Not proposed: this node is not the leader (any more).
    NotLeader(ForwardToLeader<u64, NodeInfo>),
    /// Not proposed: Raft is stopping, or the group-commit task is gone.
    Stopped(String),
    /// Proposed, but not applied within the timeout: it may still be.
    Timeout(Duration),
    /// Proposed, but Raft stopped before confirming: it may or may not have been applied.
    Lost,
    /// Raft refused the entry for another reason.
    Other(String),
}

struct Pending {
    request: Request,
    size: usize,
    /// How long the caller waits for the commit.
    timeout: Duration,
    reply: oneshot::Sender<Result<Applied, WriteError>>,
}

/// The handle of the group-commit task.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    tx: mpsc::UnboundedSender<Pending>,
    /// Entries proposed so far (for tests and `/status`).
    entries: Arc<AtomicU64>,
}

fn size_of(request: &Request) -> usize {
    match request {
        Request::Sql(r) => r.statements.iter().map(|s| s.sql.len() + 16 * 8).sum(),
        Request::Load(l) => l.sqlite.len(),
    }
}

impl GroupCommit {
    /// Starts the group-commit task of the node whose Raft id is `node_id`.
    /// `sizes` observes how many requests each proposed entry carries.
    pub(crate) fn spawn(raft: Raft, node_id: u64, sizes: Arc<DbMetrics>) -> GroupCommit {
        let (tx, rx) = mpsc::unbounded_channel();
        let entries = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(raft, rx, (node_id, sizes), Arc::clone(&entries)));
        GroupCommit { tx, entries }
    }

    /// Entries proposed so far.
    pub(crate) fn entries_proposed(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Proposes `request` with whatever else is waiting, and waits for its result: at most
    /// `timeout` for the entry's commit once proposed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the request was proposed withdraws it; after that, the
    /// request may still be applied.
    pub(crate) async fn submit(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Applied, WriteError> {
        let (reply, rx) = oneshot::channel();
        let size = size_of(&request);
        self.tx
            .send(Pending {
                request,
                size,
                timeout,
                reply,
            })
            .map_err(|_| WriteError::Stopped("the group commit task stopped".into()))?;
        rx.await.map_err(|_| WriteError::Lost)?
    }
}

/// Moves what is already queued into `group`, within the limits.
fn fill(rx: &mut mpsc::UnboundedReceiver<Pending>, group: &mut Vec<Pending>, bytes: &mut usize) {
    while group.len() < MAX_GROUP_REQUESTS && *bytes < MAX_GROUP_BYTES {
        match rx.try_recv() {
            Ok(p) => {
                *bytes += p.size;
                group.push(p);
            }
            Err(_) => break,
        }
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    (node_id, stats): (u64, Arc<DbMetrics>),
    entries: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut counter = 0u64;
    while let Some(first) = rx.recv().await {
        let mut bytes = first.size;
        let mut group = vec![first];
        fill(&mut rx, &mut group, &mut bytes);
        // Wait for a free slot, collecting what arrives meanwhile.
        let permit = loop {
            let room = group.len() < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES;
            tokio::select! {
                biased;
                p = Arc::clone(&slots).acquire_owned() => break p.ok(),
                more = rx.recv(), if room => match more {
                    Some(p) => {
                        bytes += p.size;
                        group.push(p);
                    }
                    None => break Arc::clone(&slots).acquire_owned().await.ok(),
                },
            }
        };
        fill(&mut rx, &mut group, &mut bytes);
        group.retain(|p| !p.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        counter += 1;
        stats.group_requests.observe_count(group.len() as u64);
        propose(&raft, group, permit, seed(node_id, counter)).await;
        entries.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fresh seed for an entry: the clock, the node and a counter, stirred.
fn seed(node_id: u64, counter: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut s = nanos ^ node_id ^ counter.rotate_left(32);
    splitmix64(&mut s)
}

/// The entry's "now", in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Proposes one entry for `group`, then (in its own task) hands each request its result.
async fn propose(
    raft: &Raft,
    group: Vec<Pending>,
    permit: Option<OwnedSemaphorePermit>,
    seed: u64,
) {
    let timeout = group.iter().map(|p| p.timeout).max().unwrap_or_default();
    let mut replies = Vec::with_capacity(group.len());
    let mut requests = Vec::with_capacity(group.len());
    for p in group {
        requests.push(p.request);
        replies.push(p.reply);
    }
    let cmd = Command {
        time_ms: now_ms(),
        seed,
        requests,
    };
    let answer = match raft.client_write_ff(cmd).await {
        Ok(rx) => rx,
        Err(e) => {
            let e = WriteError::Stopped(format!("raft is stopping: {e}"));
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
            return;
        }
    };
    tokio::spawn(async move {
        let _permit = permit;
        let result = match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(WriteError::Timeout(timeout)),
            Ok(Err(_)) => Err(WriteError::Lost),
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => Err(WriteError::NotLeader(f)),
            Ok(Ok(Err(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(WriteError::Other(e.to_string()))
            }
        };
        match result {
            Ok(resp) => {
                let index = resp.log_id.index;
                let mut results = resp.data.results.into_iter();
                for r in replies {
                    let outcomes = results.next().unwrap_or_default();
                    let _ = r.send(Ok(Applied { outcomes, index }));
                }
            }
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    });
}
