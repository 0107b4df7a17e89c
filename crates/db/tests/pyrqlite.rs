//! pyrqlite, rqlite's Python DB-API client, works unchanged against a webfarm db cluster.
//!
//! The test creates a virtual environment in a temp dir with `python3` from PATH,
//! `pip install`s pyrqlite from PyPI, starts a real 3-node cluster and runs a Python script
//! through the DB-API against a follower (which forwards to the leader): `connect`,
//! `cursor.execute` with `?` and named parameters, `fetchall`, `lastrowid`, `rowcount`,
//! `executemany` (sent as one transaction), a failing transaction that leaves nothing
//! behind, a consistency level, a `DATETIME` value in rqlite's RFC 3339 form, and a
//! tear-down that drops every table `sqlite_master` lists. The test checks the script's exit
//! code and output. It runs twice: over plain HTTP, and with internal TLS on, where pyrqlite
//! connects over HTTPS with an `ssl_context` holding the farm CA and a client certificate
//! (crates/cli/tests/https.rs shows a client without one is refused). Without `python3`, venv support or
//! pip it fails and says what is missing (CI installs python3, python3-venv and
//! python3-pip: see `.ci/run`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Cluster;

/// The pyrqlite release the test installs.
const PYRQLITE: &str = "pyrqlite==2.2.3";

const SCRIPT: &str = r#"
import datetime
import sys
import pyrqlite.dbapi2 as dbapi2

host, port = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3:
    # Mutual TLS: the farm CA, and a client certificate of it (rqlite's -http-ca-cert,
    # -http-verify-client).
    import ssl
    ca, cert, key = sys.argv[3:6]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    conn = dbapi2.connect(scheme="https", host=host, port=port, ssl_context=context)
else:
    conn = dbapi2.connect(host=host, port=port)
cur = conn.cursor()

cur.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)")
cur.execute("INSERT INTO people (name, age) VALUES (?, ?)", ("ada", 36))
assert cur.lastrowid == 1, ("lastrowid", cur.lastrowid)
cur.execute("INSERT INTO people (name, age) VALUES (?, ?)", ("it's bob", 20))
assert cur.lastrowid == 2, ("lastrowid", cur.lastrowid)

cur.executemany("INSERT INTO people (name, age) VALUES (?, ?)", [("cy", 41), ("dee", 19)])
assert cur.rowcount == 2, ("executemany rowcount", cur.rowcount)

cur.execute("UPDATE people SET age = age + 1 WHERE age > ?", (30,))
assert cur.rowcount == 2, ("update rowcount", cur.rowcount)

cur.execute("SELECT name, age FROM people WHERE age > ? ORDER BY id", (20,))
rows = [tuple(r) for r in cur.fetchall()]
assert rows == [("ada", 37), ("cy", 42)], rows
assert cur.rowcount == 2, ("select rowcount", cur.rowcount)
assert [d[0] for d in cur.description] == ["name", "age"], cur.description

cur.execute("SELECT age FROM people WHERE name = :name", {"name": "it's bob"})
row = cur.fetchone()
assert row["age"] == 20 and row[0] == 20, row

# A transaction whose second statement fails leaves nothing behind.
cur.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(10, "eve"), (1, "dup")])
cur.execute("SELECT count(*) FROM people WHERE id = 10")
assert cur.fetchone()[0] == 0, "the failed transaction was rolled back"

# A statement error is raised.
try:
    cur.execute("INSERT INTO people (name) VALUES (NULL)")
except dbapi2.Error as e:
    assert "NOT NULL constraint failed" in str(e), e
else:
    raise AssertionError("a NOT NULL violation was not raised")

cur.execute("SELECT count(*) AS n FROM people", consistency="strong")
assert cur.fetchall()[0]["n"] == 4

# Times come back as rqlite gives them (RFC 3339, also for unix times), which pyrqlite's
# converters for DATETIME (a text) and TIMESTAMP (a datetime) read.
cur.execute("CREATE TABLE events (at DATETIME, seen TIMESTAMP)")
cur.execute("INSERT INTO events VALUES (?, ?)", ("2004-02-14 07:15:00", 1076742900))
cur.execute("SELECT at, seen FROM events")
row = tuple(cur.fetchone())
assert row == ("2004-02-14 07:15:00", datetime.datetime(2004, 2, 14, 7, 15)), row

# A test suite's tear-down: drop every table the database lists.
cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
tables = [r[0] for r in cur.fetchall()]
assert sorted(tables) == ["events", "people"], tables
for t in tables:
    cur.execute("DROP TABLE " + t)
cur.execute("SELECT count(*) FROM sqlite_master")
assert cur.fetchone()[0] == 0, "the database is empty"
cur.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)")
cur.executemany("INSERT INTO people (name, age) VALUES (?, ?)",
                [("ada", 37), ("it's bob", 20), ("cy", 42), ("dee", 19)])
conn.close()
print("pyrqlite ok: 4 rows")
"#;

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Creates a venv in `dir` with pyrqlite installed; returns its python.
fn venv_with_pyrqlite(dir: &Path) -> std::path::PathBuf {
    let venv = dir.join("venv");
    let made = run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    assert!(
        made.status.success(),
        "python3 is present but cannot create a virtual environment (on Debian, install \
         python3-venv):\n{}",
        show(&made)
    );
    assert!(
        venv.join("bin").join("pip").exists(),
        "the virtual environment has no pip (on Debian, install python3-pip and python3-venv)"
    );
    let pip = run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PYRQLITE,
    ]));
    assert!(
        pip.status.success(),
        "pip could not install {PYRQLITE} from PyPI; this test needs network access to PyPI \
         (CI: .ci/run installs python3, python3-venv and python3-pip):\n{}",
        show(&pip)
    );
    venv.join("bin").join("python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyrqlite_works_unchanged() {
    pyrqlite_against(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyrqlite_works_over_mutual_tls() {
    pyrqlite_against(true).await;
}

/// The script against a 3-node cluster (internal TLS on or off), through a follower.
async fn pyrqlite_against(tls: bool) {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 on PATH, with venv and pip (on Debian: apt-get install \
         python3 python3-venv python3-pip; CI: .ci/run installs them): {}",
        match &python {
            Ok(o) => show(o),
            Err(e) => e.to_string(),
        }
    );
    let mut c = Cluster::with_internal_tls(3, 1000, tls);
    for i in 0..3 {
        c.start(i).await;
    }
    let dir = c.dir().to_path_buf();
    let python = tokio::task::spawn_blocking(move || venv_with_pyrqlite(&dir))
        .await
        .expect("venv task");
    let leader = c.leader().await;
    let follower = c.other_than(leader);
    let addr = c.api(follower);
    let script = c.dir().join("pyrqlite_check.py");
    std::fs::write(&script, SCRIPT).expect("write the script");
    let ca = webfarm_tls::ca::Layout::of_data_dir(&c.farm.data_dir);
    let tls_args: Vec<std::path::PathBuf> = if tls {
        let op = ca.operator();
        vec![ca.ca().cert, op.cert, op.key]
    } else {
        Vec::new()
    };
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(python)
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(tls_args))
    })
    .await
    .expect("python task");
    assert!(
        out.status.success(),
        "the pyrqlite script failed:\n{}",
        show(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pyrqlite ok: 4 rows",
        "{}",
        show(&out)
    );

    // What the script wrote is on every node.
    let rows = c
        .rows(
            leader,
            "level=strong",
            "SELECT name FROM people ORDER BY id",
        )
        .await;
    assert_eq!(
        rows["values"],
        serde_json::json!([["ada"], ["it's bob"], ["cy"], ["dee"]])
    );
    c.stop_all().await;
}
