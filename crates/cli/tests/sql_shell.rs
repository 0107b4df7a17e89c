//! `webfarm sql` against a real db cluster run by `webfarm up` (three voters and a learner
//! on 127.0.71.x): `-c`, scripts on standard input, dot commands, node selection, backup and
//! restore, and the interactive shell's history (through a pseudo-terminal).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bin, db_farm_toml, TempDir, TestFarm, DEADLINE};
use serde_json::json;
use webfarm_testkit::eventually_blocking;

const NET: u8 = 71;

/// Runs `webfarm sql ARGS --config <farm>` with `stdin` as its standard input.
fn sql(farm: &TestFarm, args: &[&str], stdin: &str, home: &Path) -> Output {
    let mut child = Command::new(bin())
        .arg("sql")
        .args(args)
        .arg("--config")
        .arg(&farm.config)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webfarm sql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("webfarm sql runs")
}

/// Runs `cmd` in a pseudo-terminal (util-linux `script`), typing each line once the shell
/// shows its next prompt; everything it printed, or `None` without `script`.
fn interactive(cmd: &str, home: &Path, lines: &[&str]) -> Option<String> {
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let out = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().expect("stdin");
    for (n, line) in lines.iter().enumerate() {
        eventually_blocking(DEADLINE, &format!("prompt {n}"), || {
            (out.lock().expect("lock").matches("> ").count() > n).then_some(())
        });
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("type a line");
    }
    drop(stdin);
    let status = child.wait().expect("script exits");
    reader.join().expect("reader");
    let out = out.lock().expect("lock").clone();
    assert!(status.success(), "the shell failed: {out}");
    Some(out)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_shell_runs_statements_and_dot_commands() {
    let tmp = TempDir::new("sql-shell");
    let dir = tmp.path().to_path_buf();
    let config = dir.join("farm.toml");
    std::fs::write(&config, db_farm_toml(NET)).expect("write farm");
    let mut farm = TestFarm::start_in(dir.clone(), config, NET);
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");

    // -c: statements split at ';', writes to /db/execute, reads printed as a table.
    let o = sql(
        &farm,
        &[
            "-c",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); \
             INSERT INTO t (name) VALUES ('ada'), ('bob; the builder');\n\
             SELECT * FROM t ORDER BY id",
        ],
        "",
        &home,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(
        out,
        "2 rows affected\n\
         +----+------------------+\n\
         | id | name             |\n\
         +----+------------------+\n\
         | 1  | ada              |\n\
         | 2  | bob; the builder |\n\
         +----+------------------+\n"
    );

    // An error is printed clearly, and -c exits non-zero.
    let o = sql(&farm, &["-c", "SELECT * FROM missing"], "", &home);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("Error: no such table: missing"), "{err}");

    // A script on standard input, with dot commands; a write that looks like a read goes
    // through /db/execute.
    let script = ".tables\nCREATE INDEX t_name ON t (name);\n.schema t\n.indexes\n\
                  WITH x AS (SELECT 3 AS v) INSERT INTO t (id, name) SELECT v, 'cy' FROM x;\n\
                  .timer on\nSELECT count(*) AS n\n  FROM t;\n.timer off\n\
                  .consistency none\n.consistency\n.status\n.nodes\n.help\n";
    let o = sql(&farm, &[], script, &home);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for want in [
        "| name |\n+------+\n| t    |",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT);",
        "CREATE INDEX t_name ON t (name);",
        "| t_name | t     |",
        "1 row affected",
        "| n |\n+---+\n| 3 |",
        "Run Time: ",
        "\nnone\n",
        "raft_state: ",
        ".backup FILE",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    let learner_line = out
        .lines()
        .find(|l| l.contains("| db-4"))
        .unwrap_or_else(|| panic!(".nodes lists db-4:\n{out}"));
    assert!(learner_line.contains("learner"), "{learner_line}");
    assert!(
        !out.contains("_webfarm"),
        "internal tables stay hidden:\n{out}"
    );

    // Unknown or malformed commands are errors (exit 1), the rest of the script still runs.
    let o = sql(
        &farm,
        &[],
        ".bogus\n.consistency sometimes\nSELECT 7;\n",
        &home,
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("unknown command .bogus"), "{err}");
    assert!(err.contains("not a level"), "{err}");
    assert!(out.contains("| 7 |"), "{out}");

    // A node by name or by URL; the learner serves reads at level none.
    let o = sql(
        &farm,
        &[
            "--node",
            "db-4",
            "-c",
            ".consistency none\nSELECT count(*) FROM t",
        ],
        "",
        &home,
    );
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("| 3 "), "{out}\n{err}");
    let url = format!("http://127.0.{NET}.32:4001");
    let o = sql(
        &farm,
        &[&url, "-c", "SELECT name FROM t WHERE id = 1"],
        "",
        &home,
    );
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains("| ada  |"),
        "{out}\n{err}"
    );

    // .backup and .restore, when the node serves /db/backup and /db/load.
    let backup = farm
        .http
        .get(&format!("{url}/db/backup"), Duration::from_secs(10))
        .await;
    if backup.is_ok_and(|r| r.status.is_success()) {
        let file = dir.join("backup.sqlite");
        let script = format!(
            ".backup {0}\nDELETE FROM t;\n.restore {0}\nSELECT count(*) FROM t;\n",
            file.display()
        );
        let o = sql(&farm, &[&url], &script, &home);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        let bytes = std::fs::read(&file).expect("backup file");
        assert!(bytes.starts_with(b"SQLite format 3\0"), "not a SQLite file");
        assert!(
            out.contains("database restored") && out.contains("| 3 "),
            "{out}"
        );
    } else {
        eprintln!("this node serves no /db/backup: .backup and .restore not tested");
    }

    // Interactive, through a pseudo-terminal: the history is saved in ~/.webfarm_history.
    let cmd = format!("{} sql --config {} {url}", bin(), farm.config.display());
    match interactive(&cmd, &home, &["SELECT 40 +", " 2 AS answer;", ".quit"]) {
        Some(out) => {
            assert!(out.contains("| 42     |"), "{out}");
            let history =
                std::fs::read_to_string(home.join(".webfarm_history")).expect("the history file");
            assert!(history.contains("SELECT 40 +"), "{history}");
        }
        None => eprintln!("no `script` to make a pseudo-terminal: interactive mode not tested"),
    }

    // Statements still run against the cluster afterwards.
    let r = farm
        .post_json(
            &format!("{url}/db/query?level=weak"),
            &json!(["SELECT count(*) FROM t"]),
        )
        .await;
    assert!(r.status.is_success());
    farm.stop();
}
