//! The clients: each sends one request at a time, to a random node (followers forward to the
//! leader), and records when it invoked it, when the answer came back and what it was.
//!
//! Outcomes follow the API's contract (crates/db/DESIGN.md, "What is safe to retry"): a
//! refused connection, a 503, a 4xx or a statement error means certainly not applied; a
//! timeout, a reset connection, a 500 or a 504 means the write may or may not have been
//! applied. Reads that fail are left out of the history (they change nothing). The test thus
//! also checks the contract: a "failed" write that shows up later is reported.
//!
//! Keys rotate: every `epoch` the clients move to fresh registers and lists, so each key's
//! sub-history (and the number of open unknown writes in it) stays small for the checker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use webfarm_node::http::{HttpClient, HttpError, HttpResponse};

use crate::cluster::{api, NODES};
use crate::history::{Op, Record, Res, Target};
use crate::rng::Rng;

/// How long a client waits for one answer: longer than the leader's write timeout (5s) and
/// a follower's forward timeout (7s), so a slow answer arrives rather than a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The read consistency level the clients use: `linearizable`, unless
/// `WEBFARM_CHAOS_READ_LEVEL` names another. Only for showing that the test catches stale
/// reads: with `none` (each node answers from its own copy) the check must fail.
pub fn read_level() -> &'static str {
    static LEVEL: OnceLock<String> = OnceLock::new();
    LEVEL.get_or_init(|| {
        std::env::var("WEBFARM_CHAOS_READ_LEVEL").unwrap_or_else(|_| "linearizable".into())
    })
}

/// The shape of the workload.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent clients.
    pub clients: usize,
    /// How long clients send requests.
    pub duration: Duration,
    /// Upper bound on recorded operations (keeps the check fast).
    pub max_ops: usize,
    /// How long a set of keys is used before the clients move to fresh ones.
    pub epoch: Duration,
    /// Registers per epoch.
    pub regs_per_epoch: u32,
    /// Lists per epoch.
    pub lists_per_epoch: u32,
}

impl Plan {
    /// Number of epochs the run spans (one more than needed, for late clients).
    pub fn epochs(&self) -> u32 {
        (self.duration.as_millis() / self.epoch.as_millis().max(1)) as u32 + 1
    }

    /// Every register key the run may use.
    pub fn registers(&self) -> Vec<u32> {
        (0..self.epochs() * self.regs_per_epoch).collect()
    }

    /// Every list key the run may use.
    pub fn lists(&self) -> Vec<u32> {
        (0..self.epochs() * self.lists_per_epoch).collect()
    }
}

/// What every client shares.
pub struct Shared {
    /// The workload.
    pub plan: Plan,
    /// Time zero of the history.
    pub start: Instant,
    issued: AtomicUsize,
    next_value: AtomicI64,
}

impl Shared {
    /// Shared state for a run that starts now.
    pub fn new(plan: Plan, start: Instant) -> Arc<Shared> {
        Arc::new(Shared {
            plan,
            start,
            issued: AtomicUsize::new(0),
            next_value: AtomicI64::new(1),
        })
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn fresh_value(&self) -> i64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// `POST /db/execute` of one parameterized statement.
async fn execute(http: &HttpClient, node: usize, stmt: Value) -> Result<HttpResponse, HttpError> {
    let body = Bytes::from(json!([stmt]).to_string());
    http.post(
        &format!("{}/db/execute", api(node)),
        "application/json",
        body,
        REQUEST_TIMEOUT,
    )
    .await
}

/// `POST /db/query?level=...` of one parameterized statement.
pub async fn query(
    http: &HttpClient,
    node: usize,
    level: &str,
    stmts: Value,
) -> Result<HttpResponse, HttpError> {
    http.post(
        &format!("{}/db/query?level={level}", api(node)),
        "application/json",
        Bytes::from(stmts.to_string()),
        REQUEST_TIMEOUT,
    )
    .await
}

fn body_text(r: &HttpResponse) -> String {
    let s = String::from_utf8_lossy(&r.body);
    s.chars().take(200).collect()
}

/// The first statement's result object of a 200 answer, or the outcome it stands for.
fn first_result(sent: Result<HttpResponse, HttpError>, write: bool) -> Result<Value, Res> {
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Res::Failed(e.to_string())),
        Err(e) if write => return Err(Res::Unknown(e.to_string())),
        Err(e) => return Err(Res::Failed(e.to_string())),
    };
    let status = resp.status.as_u16();
    match status {
        200 => {}
        400..=499 | 503 => return Err(Res::Failed(format!("{status} {}", body_text(&resp)))),
        _ if write => return Err(Res::Unknown(format!("{status} {}", body_text(&resp)))),
        _ => return Err(Res::Failed(format!("{status} {}", body_text(&resp)))),
    }
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let first = v["results"][0].clone();
    if let Some(e) = first.get("error") {
        return Err(Res::Failed(format!("statement error: {e}")));
    }
    if first.is_object() {
        Ok(first)
    } else if write {
        Err(Res::Unknown(format!(
            "unreadable 200 answer: {}",
            body_text(&resp)
        )))
    } else {
        Err(Res::Failed(format!(
            "unreadable 200 answer: {}",
            body_text(&resp)
        )))
    }
}

fn rows_affected(v: &Value) -> Option<i64> {
    v["rows_affected"].as_i64()
}

/// The first column of a query result, as integers. Like rqlite, the API leaves `values`
/// out when no row matched.
fn column(v: &Value) -> Option<Vec<i64>> {
    match v.get("values") {
        None if v.get("columns").is_some() => Some(Vec::new()),
        None => None,
        Some(rows) => rows.as_array()?.iter().map(|row| row[0].as_i64()).collect(),
    }
}

/// Performs `op` on `target` through db-`node` for client `client`, timed on the run's
/// clock: its record, and the anomaly the answer showed, if any.
pub async fn timed(
    shared: &Shared,
    http: &HttpClient,
    (client, node): (usize, usize),
    target: Target,
    op: Op,
) -> (Record, Option<String>) {
    let call = shared.now();
    let (res, anomaly) = perform(http, node, target, op).await;
    let ret = shared.now();
    let record = Record {
        client,
        node,
        target,
        op,
        call,
        ret,
        res,
    };
    (record, anomaly)
}

/// Sends `op` on `target` to `node`; the outcome, and an anomaly to report if the answer
/// broke the API's own rules (such as a write that changed no row of an existing key).
pub async fn perform(
    http: &HttpClient,
    node: usize,
    target: Target,
    op: Op,
) -> (Res, Option<String>) {
    let key = match target {
        Target::Reg(k) | Target::List(k) => k,
    };
    match op {
        Op::Write(v) => {
            let sent = execute(
                http,
                node,
                json!(["UPDATE regs SET v = ? WHERE k = ?", v, key]),
            )
            .await;
            match first_result(sent, true) {
                Ok(r) if rows_affected(&r) == Some(1) => (Res::Ok, None),
                Ok(r) => (Res::Ok, Some(format!("write to {target:?} answered {r}"))),
                Err(res) => (res, None),
            }
        }
        Op::Cas { from, to } => {
            let stmt = json!(["UPDATE regs SET v = ? WHERE k = ? AND v = ?", to, key, from]);
            match first_result(execute(http, node, stmt).await, true) {
                Ok(r) => match rows_affected(&r) {
                    Some(1) => (Res::Cas(true), None),
                    Some(0) => (Res::Cas(false), None),
                    _ => (
                        Res::Unknown(format!("odd CAS answer {r}")),
                        Some(format!("CAS on {target:?} answered {r}")),
                    ),
                },
                Err(res) => (res, None),
            }
        }
        Op::Append(v) => {
            let stmt = json!(["INSERT INTO list (l, v) VALUES (?, ?)", key, v]);
            match first_result(execute(http, node, stmt).await, true) {
                Ok(r) if rows_affected(&r) == Some(1) => (Res::Ok, None),
                Ok(r) => (Res::Ok, Some(format!("append to {target:?} answered {r}"))),
                Err(res) => (res, None),
            }
        }
        Op::Read => {
            let stmt = json!([["SELECT v FROM regs WHERE k = ?", key]]);
            match first_result(query(http, node, read_level(), stmt).await, false) {
                Ok(r) => match column(&r).as_deref() {
                    Some([v]) => (Res::Value(*v), None),
                    _ => (
                        Res::Failed(format!("odd read answer {r}")),
                        Some(format!("read of {target:?} answered {r}")),
                    ),
                },
                Err(res) => (res, None),
            }
        }
        Op::ReadList => {
            let stmt = json!([["SELECT v FROM list WHERE l = ? ORDER BY id", key]]);
            match first_result(query(http, node, read_level(), stmt).await, false) {
                Ok(r) => match column(&r) {
                    Some(vs) => (Res::List(vs), None),
                    None => (
                        Res::Failed(format!("odd list answer {r}")),
                        Some(format!("read of {target:?} answered {r}")),
                    ),
                },
                Err(res) => (res, None),
            }
        }
    }
}

/// What one client recorded.
#[derive(Default)]
pub struct ClientLog {
    /// Its operations, in invocation order.
    pub records: Vec<Record>,
    /// Answers that broke the API's rules.
    pub anomalies: Vec<String>,
}

/// Runs client `id` until `end` or until the run has issued `max_ops` operations, pacing it
/// so the budget spreads over the whole run.
pub async fn client(id: usize, shared: Arc<Shared>, mut rng: Rng, end: Instant) -> ClientLog {
    let plan = shared.plan.clone();
    let http = HttpClient::new();
    let mut log = ClientLog::default();
    // The last value this client saw in each register: what its compare-and-sets expect.
    let mut last_seen: HashMap<u32, i64> = HashMap::new();
    let interval = plan
        .duration
        .mul_f64(plan.clients as f64 / plan.max_ops as f64);
    let mut next_at = Instant::now() + interval.mul_f64(rng.below(1000) as f64 / 1000.0);
    loop {
        tokio::time::sleep_until(next_at.into()).await;
        if Instant::now() >= end {
            break;
        }
        if shared.issued.fetch_add(1, Ordering::Relaxed) >= plan.max_ops {
            break;
        }
        let epoch = (shared.start.elapsed().as_millis() / plan.epoch.as_millis().max(1)) as u32;
        let epoch = epoch.min(plan.epochs() - 1);
        let reg = epoch * plan.regs_per_epoch + rng.below(u64::from(plan.regs_per_epoch)) as u32;
        let list = epoch * plan.lists_per_epoch + rng.below(u64::from(plan.lists_per_epoch)) as u32;
        let (target, op) = match rng.below(100) {
            0..=24 => (Target::Reg(reg), Op::Write(shared.fresh_value())),
            25..=34 => (
                Target::Reg(reg),
                Op::Cas {
                    from: last_seen.get(&reg).copied().unwrap_or(0),
                    to: shared.fresh_value(),
                },
            ),
            35..=59 => (Target::Reg(reg), Op::Read),
            60..=81 => (Target::List(list), Op::Append(shared.fresh_value())),
            _ => (Target::List(list), Op::ReadList),
        };
        let node = 1 + rng.below(NODES as u64) as usize;
        let (record, anomaly) = timed(&shared, &http, (id, node), target, op).await;
        match (&record.res, op) {
            (Res::Value(v), _) => {
                last_seen.insert(reg, *v);
            }
            (Res::Ok, Op::Write(v)) | (Res::Cas(true), Op::Cas { to: v, .. }) => {
                last_seen.insert(reg, v);
            }
            _ => {}
        }
        log.anomalies.extend(anomaly);
        log.records.push(record);
        next_at = (next_at + interval).max(Instant::now());
    }
    log
}
