//! `webfarm db ...` and `webfarm status` against a db cluster run by `webfarm up` (three
//! voters and a learner on 127.0.72.x): learners shown as learners, promote, step-down,
//! remove, and the procedure for a node whose data directory was wiped.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, db_farm_toml, eventually, TempDir, TestFarm, DEADLINE};
use serde_json::{json, Value};
use webfarm_db_client::Answer;
use webfarm_node::status::RaftState;

const NET: u8 = 72;

fn run(farm: &TestFarm, args: &[&str]) -> (bool, String, String) {
    let o: Output = farm.webfarm(args);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn count(farm: &TestFarm, node: u8) -> Value {
    let r = farm
        .post_json(
            &format!("{}/db/query?level=none", farm.db(node)),
            &json!(["SELECT count(*) FROM t"]),
        )
        .await;
    let values = serde_json::from_slice::<Answer>(&r.body)
        .ok()
        .and_then(|a| a.results.into_iter().next())
        .and_then(|r| r.values);
    serde_json::to_value(values).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_commands_change_the_membership_of_a_running_cluster() {
    let tmp = TempDir::new("db-cmd");
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    std::fs::write(&config, db_farm_toml(NET)).expect("write farm");
    let mut farm = TestFarm::start_in(dir.clone(), config, NET);
    let leader = farm.db_leader().await;

    // The learner of the farm file joined as a learner; `webfarm status` says so, with its
    // lag on the leader's line.
    let line = eventually(DEADLINE, "status shows the learner's lag", || async {
        let (_, out, _) = run(&farm, &["status"]);
        out.lines()
            .find(|l| l.starts_with(&leader) && l.contains("db-4 (learner) lag"))
            .map(|_| out.clone())
    })
    .await;
    let db4 = line
        .lines()
        .find(|l| l.starts_with("db-4"))
        .expect("db-4 line");
    assert!(db4.contains("learner term"), "{line}");
    let (ok, out, err) = run(&farm, &["db", "nodes"]);
    assert!(ok, "{err}");
    let db4 = out
        .lines()
        .find(|l| l.starts_with("db-4"))
        .expect("db-4 row");
    assert!(db4.contains("learner"), "{out}");
    assert!(out.contains(&format!("leader {leader}")), "{out}");

    let r = farm
        .post_json(
            &format!("{}/db/execute", farm.db(1)),
            &json!([
                "CREATE TABLE t (v TEXT)",
                "INSERT INTO t VALUES ('a')",
                "INSERT INTO t VALUES ('b')"
            ]),
        )
        .await;
    assert!(r.status.is_success());

    // Errors name the problem and exit non-zero.
    let (ok, _, err) = run(&farm, &["db", "promote", "db-9"]);
    assert!(!ok && err.contains("db-9 is not a member"), "{err}");
    let (ok, _, err) = run(&farm, &["db", "add", "db-9"]);
    assert!(!ok && err.contains("no db node named \"db-9\""), "{err}");

    // Promote the learner, hand leadership to it, then to whoever is most up to date.
    let (ok, out, err) = run(&farm, &["db", "promote", "db-4"]);
    assert!(ok && out.contains("db-4 promoted to voter"), "{out}\n{err}");
    let (ok, out, err) = run(&farm, &["db", "step-down", "--to", "db-4"]);
    assert!(ok && out.contains(" to db-4 in "), "{out}\n{err}");
    assert_eq!(farm.raft_state("db-4").await, Some(RaftState::Leader));
    let (ok, out, err) = run(&farm, &["db", "step-down"]);
    assert!(ok && out.contains("from db-4 to db-"), "{out}\n{err}");
    let leader = farm.db_leader().await;

    // A wiped voter is refused; remove it, start it empty, add it back.
    let wiped = ["db-1", "db-2", "db-3"]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    let (ok, _, err) = run(&farm, &["stop", wiped]);
    assert!(ok, "{err}");
    std::fs::remove_dir_all(dir.join("data").join(wiped)).expect("wipe");
    let (ok, out, err) = run(&farm, &["start", wiped]);
    assert!(!ok, "a wiped voter must not rejoin: {out}");
    assert!(
        farm.log_text()
            .contains(&format!("webfarm db remove {wiped}")),
        "{err}\n{}",
        farm.log_text()
    );
    let (ok, out, err) = run(&farm, &["db", "remove", wiped]);
    assert!(ok && out.contains("removed"), "{out}\n{err}");
    let (_, out, _) = run(&farm, &["db", "nodes"]);
    assert!(out.contains(&format!("not members: {wiped}")), "{out}");
    let start = Command::new(bin())
        .args(["start", wiped, "--config"])
        .arg(&farm.config)
        .spawn()
        .expect("spawn webfarm start");
    let (ok, out, err) = run(&farm, &["db", "add", wiped]);
    assert!(
        ok && out.contains(&format!("{wiped} added as a voter")),
        "{out}\n{err}"
    );
    let started = start.wait_with_output().expect("webfarm start");
    assert!(started.status.success(), "the node came back and is ready");
    let node: u8 = wiped[3..].parse().expect("index");
    assert_eq!(count(&farm, node).await, json!([[2]]));
    let (_, out, _) = run(&farm, &["db", "nodes"]);
    let row = out.lines().find(|l| l.starts_with(wiped)).expect("row");
    assert!(row.contains("voter"), "{out}");
    eprintln!("{}", farm.log_text());
    // Ctrl-C stops the farm cleanly (the refused start above logged its own exit code 1).
    let pid = farm.child.as_ref().expect("farm running").id();
    Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert_eq!(
        farm.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        farm.log_text()
    );
    assert!(
        !farm.log_text().contains("did not stop within"),
        "{}",
        farm.log_text()
    );
}
