//! Correctness under failure (issue 4, item 7; issue 10, item 5): a Jepsen-style test of
//! the db tier.
//!
//! Three real `webfarm run --node db-N` processes form a cluster, each in a network
//! namespace of its own (`wfc-db-N` at `10.78.1.3N`, on bridge `wfc-br0`; root needed).
//! Five clients send writes, compare-and-sets and `linearizable` reads of single-key
//! registers, appends and `linearizable` reads of append-only lists, each to a random node,
//! and record every operation's invocation and completion time and outcome. Meanwhile a
//! nemesis kills (SIGKILL), restarts, pauses (SIGSTOP) and resumes (SIGCONT) nodes at random,
//! and cuts the network between them as Jepsen does — isolate the leader, random halves, a
//! majorities ring, one-way loss — healing each cut after a few seconds. Then every node and
//! link is healed, each key is read once more, and the test checks that:
//!
//! 1. every acknowledged append is in its list, and no read shows a value twice, a value
//!    never written, or a value whose write was reported as certainly not applied;
//! 2. the history of each key is linearizable (a Wing–Gong/Lowe search with memoization,
//!    see `checker.rs`; operations with unknown outcomes may take effect at any later time
//!    or never);
//! 3. once quiet, the three replicas hold the same rows;
//! 4. no node exited on its own.
//!
//! `WEBFARM_CHAOS_SECS` sets how long faults are injected (default 40, for CI; 600 gives
//! well over 100 faults), `WEBFARM_CHAOS_SEED` replays a run's random choices,
//! `WEBFARM_CHAOS_KEEP=1` keeps the history, fault timeline and node logs of a passing run,
//! `WEBFARM_CHAOS_NET=N` moves the cluster to `10.78.N.0/24` (namespaces `wfcN-*`),
//! `WEBFARM_CHAOS_NETNS=0` runs it on loopback (`127.0.84.3N`, or `127.0.N.x`) without root
//! and without network faults, and `WEBFARM_CHAOS_READ_LEVEL=none` makes the clients read
//! each node's own copy, which must make the test fail (stale reads). Run with
//! `cargo test -p webfarm --test chaos -- --nocapture` to see the summary, which counts the
//! faults of each kind. The checker's own tests (`cargo test -p webfarm --test chaos
//! checker`) show it rejects non-linearizable histories.

mod checker;
mod cluster;
mod history;
mod model;
mod nemesis;
mod partition;
mod rng;
mod workload;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webfarm_testkit::eventually;

use checker::{Model, Operation, Verdict};
use cluster::{api, Cluster, NODES};
use history::{KeyHistory, Op, Record, Res, Target};
use model::{ListModel, RegisterModel};
use rng::Rng;
use workload::{Plan, Shared};

/// How long the setup, and each final read, may take to find a node that serves it.
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the replicas may take to settle on one applied index after healing.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(90);

/// Search steps allowed per key before the checker gives up (and the test fails).
const MAX_STEPS_PER_KEY: u64 = 5_000_000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
    )
}

/// Creates the tables and the registers (all 0), retrying until a node accepts.
async fn setup(plan: &Plan) {
    let http = cluster::client();
    let regs: Vec<String> = plan
        .registers()
        .iter()
        .map(|k| format!("({k}, 0)"))
        .collect();
    let body = json!([
        "CREATE TABLE IF NOT EXISTS regs (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS list (id INTEGER PRIMARY KEY, l INTEGER NOT NULL, v INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS list_l ON list (l, id)",
        format!("INSERT OR IGNORE INTO regs (k, v) VALUES {}", regs.join(", ")),
    ]);
    let mut attempt = 0;
    let answer = eventually(SETUP_DEADLINE, "a node to take the setup", || {
        let node = 1 + attempt % NODES;
        attempt += 1;
        let url = format!("{}/db/execute?transaction", api(node));
        let (http, body) = (&http, &body);
        async move {
            let sent = http
                .post(
                    &url,
                    "application/json",
                    body.to_string().into(),
                    workload::REQUEST_TIMEOUT,
                )
                .await;
            match sent {
                Ok(r) if r.status == 200 => Some(r.body),
                Ok(r) => {
                    eprintln!("setup: {} {}", r.status, String::from_utf8_lossy(&r.body));
                    None
                }
                Err(e) => {
                    eprintln!("setup: {e}");
                    None
                }
            }
        }
    })
    .await;
    let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let errors: Vec<&Value> = v["results"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.get("error")).collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "setup failed: {v}");
}

/// After healing: one more linearizable read of every key, retried until it succeeds; the
/// reads join the history. Returns the final lists.
async fn final_reads(shared: &Shared, records: &mut Vec<Record>) -> BTreeMap<u32, Vec<i64>> {
    let http = cluster::client();
    let client = shared.plan.clients;
    let mut finals = BTreeMap::new();
    let targets: Vec<(Target, Op)> = shared
        .plan
        .registers()
        .into_iter()
        .map(|k| (Target::Reg(k), Op::Read))
        .chain(
            shared
                .plan
                .lists()
                .into_iter()
                .map(|l| (Target::List(l), Op::ReadList)),
        )
        .collect();
    for (i, (target, op)) in targets.into_iter().enumerate() {
        let mut attempt = i;
        let what = format!("a final read of {target:?} to succeed");
        let record = eventually(SETUP_DEADLINE, &what, || {
            let node = 1 + attempt % NODES;
            attempt += 1;
            let http = &http;
            async move {
                let (record, _) = workload::timed(shared, http, (client, node), target, op).await;
                if matches!(record.res, Res::Value(_) | Res::List(_)) {
                    Some(record)
                } else {
                    eprintln!("final read of {target:?} on db-{node}: {:?}", record.res);
                    None
                }
            }
        })
        .await;
        if let (Res::List(vs), Target::List(l)) = (&record.res, target) {
            finals.insert(l, vs.clone());
        }
        records.push(record);
    }
    finals
}

/// Waits until every node has applied the same log index, then compares their rows
/// (read with level `none`, from each node's own copy). Returns a problem, if any.
async fn replicas_converge(cluster: &Cluster) -> Option<String> {
    let http = cluster::client();
    let stmts = json!([
        "SELECT k, v FROM regs ORDER BY k",
        "SELECT id, l, v FROM list ORDER BY id"
    ]);
    let what = "every replica to settle on one applied index";
    let (index, texts) = eventually(CONVERGE_DEADLINE, what, || async {
        let applied = |s: Option<Value>| s.and_then(|s| s["applied_index"].as_u64());
        let mut before = Vec::new();
        let mut dumps = Vec::new();
        let mut after = Vec::new();
        for n in 1..=NODES {
            before.push(applied(cluster.status(n, Duration::from_secs(2)).await));
            let r = workload::query(&http, n, "none", stmts.clone()).await;
            dumps.push(r.ok().filter(|r| r.status == 200).map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (
                    v["results"][0]["values"].clone(),
                    v["results"][1]["values"].clone(),
                )
            }));
            after.push(applied(cluster.status(n, Duration::from_secs(2)).await));
        }
        let stable = before
            .iter()
            .chain(&after)
            .all(|a| a.is_some() && *a == before[0]);
        (stable && dumps.iter().all(Option::is_some)).then(|| {
            let texts: Vec<String> = dumps.iter().map(|d| format!("{d:?}")).collect();
            (before[0], texts)
        })
    })
    .await;
    let differs = (1..NODES).find(|&i| texts[i] != texts[0]);
    differs.map(|i| {
        let at = texts[0]
            .bytes()
            .zip(texts[i].bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let around =
            |t: &str| -> String { t.chars().skip(at.saturating_sub(80)).take(200).collect() };
        format!(
            "replicas differ at applied index {index:?}: db-1 has ...{}... where db-{} has \
             ...{}...",
            around(&texts[0]),
            i + 1,
            around(&texts[i])
        )
    })
}

/// Checks every key's history with `model`; returns (keys, search steps, problems).
fn check_keys<M: Model>(
    model: &M,
    what: &str,
    keys: &BTreeMap<u32, KeyHistory<M::Input, M::Output>>,
    records: &[Record],
) -> (usize, u64, Vec<String>) {
    let mut problems = Vec::new();
    let mut steps = 0;
    for (k, h) in keys {
        match checker::check(model, &h.ops, MAX_STEPS_PER_KEY) {
            Verdict::Linearizable { steps: s } => steps += s,
            Verdict::GaveUp { steps: s } => problems.push(format!(
                "{what} {k}: the checker gave up after {s} steps ({} operations)",
                h.ops.len()
            )),
            Verdict::NotLinearizable { longest } => {
                problems.push(explain(what, *k, h, &longest, records))
            }
        }
    }
    (keys.len(), steps, problems)
}

/// A violation, readably: the end of the longest partial linearization, then the
/// operations that could come next and none of which fits.
fn explain<I: Debug, O: Debug>(
    what: &str,
    key: u32,
    h: &KeyHistory<I, O>,
    longest: &[usize],
    records: &[Record],
) -> String {
    let mut s = format!(
        "{what} {key} is NOT linearizable: the longest linearizable prefix holds {} of {} \
         operations.\n  last linearized:\n",
        longest.len(),
        h.ops.len()
    );
    for &i in &longest[longest.len().saturating_sub(8)..] {
        s += &format!("    {}\n", records[h.records[i]]);
    }
    let done: std::collections::HashSet<usize> = longest.iter().copied().collect();
    let rest: Vec<usize> = (0..h.ops.len()).filter(|i| !done.contains(i)).collect();
    let horizon = rest
        .iter()
        .filter_map(|&i| h.ops[i].ret)
        .min()
        .unwrap_or(u64::MAX);
    s += "  candidates for the next step (none fits):\n";
    for &i in rest.iter().filter(|&&i| h.ops[i].call <= horizon).take(20) {
        let o: &Operation<I, O> = &h.ops[i];
        s += &format!(
            "    {}{}\n",
            records[h.records[i]],
            if o.output.is_none() {
                "  [outcome unknown]"
            } else {
                ""
            }
        );
    }
    s
}

/// The most common reasons for failed and unknown outcomes, with counts (addresses and
/// numbers blurred so that alike reasons group).
fn reasons(records: &[Record]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        let (kind, why) = match &r.res {
            Res::Failed(w) => ("failed", w),
            Res::Unknown(w) => ("unknown", w),
            _ => continue,
        };
        let blurred: String = why
            .chars()
            .take(70)
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        *counts.entry(format!("{kind}: {blurred}")).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v.truncate(8);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_and_durable_under_kills_pauses_and_partitions() {
    let secs = env_u64("WEBFARM_CHAOS_SECS").unwrap_or(40).max(1);
    let seed = env_u64("WEBFARM_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "chaos: {secs}s of faults, seed {seed} (WEBFARM_CHAOS_SEED={seed} replays it), reads at \
         level {}",
        workload::read_level()
    );
    let mut rng = Rng::new(seed);
    let mut plan = Plan {
        clients: 5,
        duration: Duration::from_secs(secs),
        max_ops: 0,
        epoch: Duration::from_secs(10),
        regs_per_epoch: 2,
        lists_per_epoch: 1,
    };
    // At most 3000 operations in all, the final reads included: the check stays in seconds.
    plan.max_ops = 3000usize
        .saturating_sub(plan.registers().len() + plan.lists().len())
        .max(100);

    let mut cluster = Cluster::start();
    println!(
        "chaos: nodes' data and logs in {}",
        cluster.path().display()
    );
    cluster.wait_ready(Duration::from_secs(120)).await;
    setup(&plan).await;

    let start = Instant::now();
    let end = start + plan.duration;
    let shared = Shared::new(plan.clone(), start);
    let clients: Vec<_> = (0..plan.clients)
        .map(|id| tokio::spawn(workload::client(id, shared.clone(), rng.fork(), end)))
        .collect();
    let faults = nemesis::run(&mut cluster, rng.fork(), start, end).await;
    cluster.heal_all();
    let mut records = Vec::new();
    let mut anomalies = Vec::new();
    for c in clients {
        let log = c.await.expect("a client panicked");
        records.extend(log.records);
        anomalies.extend(log.anomalies);
    }
    let run_time = start.elapsed();
    cluster.wait_ready(Duration::from_secs(120)).await;
    let finals = final_reads(&shared, &mut records).await;
    let mut problems: Vec<String> = anomalies;
    problems.extend(replicas_converge(&cluster).await);
    cluster.reap_crashes();
    for (n, status) in &cluster.crashes {
        problems.push(format!("db-{n} exited on its own ({status})"));
    }

    // Check.
    let checking = Instant::now();
    problems.extend(history::provenance_problems(&records, &finals));
    let (reg_keys, reg_rw) = history::registers(&records);
    let (list_keys, list_rw) = history::lists(&records);
    let (nr, sr, pr) = check_keys(&RegisterModel { init: 0 }, "register", &reg_keys, &records);
    let (nl, sl, pl) = check_keys(&ListModel, "list", &list_keys, &records);
    problems.extend(pr);
    problems.extend(pl);
    let check_time = checking.elapsed();

    // Summary.
    let count = |f: &dyn Fn(&Record) -> bool| records.iter().filter(|r| f(r)).count();
    let writes = |r: &Record| matches!(r.op, Op::Write(_) | Op::Cas { .. } | Op::Append(_));
    println!(
        "chaos: {} operations in {:.1}s ({} writes, {} reads): {} ok, {} failed, {} unknown",
        records.len(),
        run_time.as_secs_f64(),
        count(&writes),
        count(&|r| !writes(r)),
        count(&|r| !matches!(r.res, Res::Failed(_) | Res::Unknown(_))),
        count(&|r| matches!(r.res, Res::Failed(_))),
        count(&|r| matches!(r.res, Res::Unknown(_))),
    );
    for (why, n) in reasons(&records) {
        println!("chaos:   {n:>5} x {why}");
    }
    println!(
        "chaos: faults: {} injected in {secs}s ({}; {} aimed at the leader, {} times two nodes \
         down), {} restarts, {} SIGCONT, {} network heals",
        faults.injected(),
        faults.by_kind(),
        faults.leader_faults,
        faults.majority_lost,
        faults.restarts,
        faults.resumes,
        faults.network_heals
    );
    println!(
        "chaos: unknown writes: {} pinned by a read that saw them, {} dropped (nobody could \
         have seen them), {} left open",
        reg_rw.tightened + list_rw.tightened,
        reg_rw.dropped + list_rw.dropped,
        reg_rw.open + list_rw.open
    );
    println!(
        "chaos: checked {nr} registers and {nl} lists in {:.2}s ({} search steps); {} problems",
        check_time.as_secs_f64(),
        sr + sl,
        problems.len()
    );

    if problems.is_empty() && std::env::var_os("WEBFARM_CHAOS_KEEP").is_none() {
        assert!(
            faults.injected() > 0 || secs < 3,
            "the nemesis injected no fault"
        );
        // At least one fault per 6 s (100 in 600 s): the rate the nemesis is built for.
        assert!(
            secs < 60 || faults.injected() * 6 >= secs as usize,
            "only {} faults in {secs}s",
            faults.injected()
        );
        cluster.destroy();
        return;
    }
    let history: String = records.iter().map(|r| format!("{r}\n")).collect();
    let hpath = cluster.save("history.txt", &history);
    let fpath = cluster.save("faults.txt", &faults.timeline.join("\n"));
    if problems.is_empty() {
        println!(
            "chaos: kept {} (WEBFARM_CHAOS_KEEP)",
            cluster.path().display()
        );
        return;
    }
    panic!(
        "chaos: {} problems (seed {seed}; history in {}, faults in {}, node logs beside \
         them):\n{}\n{}",
        problems.len(),
        hpath.display(),
        fpath.display(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        cluster.log_tails(30)
    );
}
