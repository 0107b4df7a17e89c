//! `webfarm sql`: an SQL shell on a db node's SQL API, like `sqlite3` and the rqlite shell.
//!
//! Statements end with `;` (a trigger body's `;` do not end it); statements that read go to
//! `/db/query` at the shell's consistency level, the others to `/db/execute` (a statement
//! taken for a read that turns out to write is sent again to `/db/execute`: the read-only
//! query connection refuses it without running it). Rows are printed as an aligned table.
//! Dot commands (`.help` lists them) inspect the schema and the cluster, save and restore
//! the database. Interactive sessions have line editing and a history in
//! `~/.webfarm_history`; `-c "SQL"` and a standard input that is not a terminal run as a
//! script: errors go to stderr, and the exit code is 1 if any statement failed.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};
use webfarm_config::Role;
use webfarm_node::http::HttpClient;

use crate::args::FarmArgs;
use crate::farm_file;

/// How long one statement or command may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The read consistency levels the SQL API knows.
const LEVELS: [&str; 5] = ["none", "weak", "linearizable", "strong", "auto"];
/// The errors the query endpoint gives a statement that writes (it runs none).
const WRITE_VIA_QUERY: [&str; 2] = [
    "attempt to change database via query operation",
    "attempt to write a readonly database",
];

/// `webfarm sql` arguments.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The db node to talk to: a URL (`http://127.0.1.31:4001`) or `host:port`. Default: the
    /// first db node of the farm that answers (`--node` picks one by name).
    #[arg(value_name = "URL", conflicts_with = "node")]
    pub url: Option<String>,
    /// The db node of the farm file to talk to.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Run these statements (and dot commands, one per line) and exit; exit code 1 if any
    /// failed.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: Option<String>,
    /// Topology file (TOML). Default: the built-in farm, or the one `webfarm up` runs.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (to find the file `webfarm up` runs).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the shell: `-c`, a script on standard input, or an interactive session.
///
/// # Errors
///
/// An invalid farm file, an unknown node, or no db node answering. Failed statements are
/// not errors: they are printed, and make the exit code 1 in `-c` and script mode.
pub async fn run(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let http = HttpClient::new();
    let base = target(args, &http).await?;
    let mut shell = Shell {
        http,
        base,
        level: "weak".into(),
        timer: false,
        failed: false,
        quit: false,
    };
    if let Some(text) = &args.command {
        shell.script(text).await;
    } else if std::io::stdin().is_terminal() {
        shell.interactive().await?;
        return Ok(ExitCode::SUCCESS);
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the statements from standard input")?;
        shell.script(&text).await;
    }
    Ok(if shell.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The base URL (`http://ip:port`) of the node to talk to.
async fn target(args: &SqlArgs, http: &HttpClient) -> anyhow::Result<String> {
    if let Some(url) = &args.url {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        if rest.contains("://") {
            bail!("{url}: only http:// URLs are supported");
        }
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            bail!("{url}: expected http://HOST:PORT or HOST:PORT");
        }
        return Ok(format!("http://{host}"));
    }
    let farm_args = FarmArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
    };
    let farm = farm_file::resolve(&farm_args)?.farm;
    if let Some(name) = &args.node {
        return match farm.node(name) {
            Some(n) if n.role == Role::Db => Ok(format!("http://{}", n.main_addr())),
            Some(n) => bail!("{name} is a {} node, not a db node", n.role.as_str()),
            None => bail!("no node named {name:?} in the farm file"),
        };
    }
    let mut tried = Vec::new();
    for n in farm.nodes_with_role(Role::Db) {
        let url = format!("http://{}/status", n.main_addr());
        match http.get(&url, Duration::from_secs(2)).await {
            Ok(r) if r.status.is_success() => return Ok(format!("http://{}", n.main_addr())),
            Ok(r) => tried.push(format!("{}: HTTP {}", n.name, r.status)),
            Err(e) => tried.push(format!("{}: {e}", n.name)),
        }
    }
    bail!(
        "no db node of the farm answers ({}); start the farm (`webfarm up`) or give a URL",
        tried.join("; ")
    )
}

/// One session's state.
struct Shell {
    http: HttpClient,
    base: String,
    level: String,
    timer: bool,
    failed: bool,
    quit: bool,
}

impl Shell {
    /// Runs a whole script (from `-c` or standard input).
    async fn script(&mut self, text: &str) {
        let mut split = Splitter::default();
        for line in text.lines() {
            if self.quit {
                return;
            }
            self.line(&mut split, line).await;
        }
        if let Some(rest) = split.finish() {
            self.statement(&rest).await;
        }
    }

    /// One input line: a dot command, or part of statements.
    async fn line(&mut self, split: &mut Splitter, line: &str) {
        if split.is_empty() && line.trim_start().starts_with('.') {
            let cmd = line.trim().to_string();
            if let Err(e) = self.dot(&cmd).await {
                self.report(&e);
            }
            return;
        }
        for sql in split.push(line) {
            self.statement(&sql).await;
        }
    }

    async fn interactive(&mut self) -> anyhow::Result<()> {
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".webfarm_history"));
        let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
        if let Some(h) = &history {
            // A missing history file is the normal first run.
            let _ = editor.load_history(h);
        }
        let host = self.base.trim_start_matches("http://").to_string();
        println!("webfarm sql shell on {host}; .help for help, .quit to leave");
        let mut split = Splitter::default();
        while !self.quit {
            let prompt = if split.is_empty() {
                format!("{host}> ")
            } else {
                format!("{}> ", " ".repeat(host.len().saturating_sub(3)) + "...")
            };
            let read = tokio::task::block_in_place(|| editor.readline(&prompt));
            match read {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    self.line(&mut split, &line).await;
                }
                Err(rustyline::error::ReadlineError::Interrupted) => split = Splitter::default(),
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => return Err(e).context("cannot read a line"),
            }
        }
        if let Some(h) = &history {
            if let Err(e) = editor.save_history(h) {
                eprintln!("warning: cannot save the history to {}: {e}", h.display());
            }
        }
        Ok(())
    }

    fn report(&mut self, message: &str) {
        self.failed = true;
        eprintln!("Error: {message}");
    }

    /// Runs one SQL statement and prints its result.
    async fn statement(&mut self, sql: &str) {
        let started = Instant::now();
        let outcome = self.run_sql(sql).await;
        match outcome {
            Ok(out) => print!("{out}"),
            Err(e) => self.report(&e),
        }
        if self.timer {
            println!("Run Time: {:.6} seconds", started.elapsed().as_secs_f64());
        }
    }

    async fn run_sql(&self, sql: &str) -> Result<String, String> {
        if is_read(sql) {
            let r = self.query(&json!([sql])).await?;
            match r["error"].as_str() {
                Some(e) if WRITE_VIA_QUERY.iter().any(|w| e.contains(w)) => {}
                Some(e) => return Err(e.to_string()),
                None => return Ok(render_result(&r)),
            }
        }
        let r = self.post("/db/execute", &json!([sql])).await?;
        let r = &r["results"][0];
        if let Some(e) = r["error"].as_str() {
            return Err(e.to_string());
        }
        if r["columns"].is_null() && !changes_rows(sql) {
            return Ok(String::new());
        }
        Ok(render_result(r))
    }

    /// POSTs `body` to `path`; the JSON answer, or the error it carries.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .post(
                &url,
                "application/json",
                Bytes::from(body.to_string()),
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|_| format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)))?;
        match v["error"].as_str() {
            Some(e) => Err(e.to_string()),
            None if !r.status.is_success() => Err(format!("HTTP {}: {v}", r.status)),
            None => Ok(v),
        }
    }

    /// The first result of a query at the shell's level.
    async fn query(&self, body: &Value) -> Result<Value, String> {
        let v = self
            .post(&format!("/db/query?level={}", self.level), body)
            .await?;
        Ok(v["results"][0].clone())
    }

    /// The rows of a query at the shell's level, or its error.
    async fn rows(&self, body: Value) -> Result<Value, String> {
        let r = self.query(&body).await?;
        match r["error"].as_str() {
            Some(e) => Err(e.to_string()),
            None => Ok(r),
        }
    }

    async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .get(&url, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        Ok((r.status.as_u16(), r.body))
    }

    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.get(path).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?;
        if status != 200 {
            return Err(v["error"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}: {v}"), String::from));
        }
        Ok(v)
    }

    /// A dot command.
    async fn dot(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        if words.next().is_some() {
            return Err(format!("{cmd}: too many arguments; .help shows its usage"));
        }
        match (cmd, arg) {
            (".help", _) => print!("{HELP}"),
            (".quit" | ".exit", _) => self.quit = true,
            (".tables", None) => {
                let r = self
                    .rows(json!([format!(
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') {USER} \
                         ORDER BY name"
                    )]))
                    .await?;
                print!("{}", render_result(&r));
            }
            (".indexes", table) => {
                let sql =
                    format!(
                    "SELECT name, tbl_name AS \"table\" FROM sqlite_master WHERE type = 'index' \
                     {USER} {} ORDER BY tbl_name, name",
                    if table.is_some() { "AND tbl_name = ?" } else { "" }
                );
                let r = self.rows(with_param(sql, table)).await?;
                print!("{}", render_result(&r));
            }
            (".schema", table) => {
                let sql = format!(
                    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL {USER} {} \
                     ORDER BY tbl_name, type DESC, name",
                    if table.is_some() {
                        "AND tbl_name = ?"
                    } else {
                        ""
                    }
                );
                let r = self.rows(with_param(sql, table)).await?;
                for row in r["values"].as_array().into_iter().flatten() {
                    println!("{};", row[0].as_str().unwrap_or(""));
                }
            }
            (".status", None) => {
                let v = self.get_json("/status").await?;
                for (k, val) in v.as_object().into_iter().flatten() {
                    println!("{k}: {}", cell(val));
                }
            }
            (".nodes", None) => {
                let v = self.get_json("/cluster/nodes").await?;
                let rows: Vec<Value> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| {
                        json!([
                            n["name"],
                            n["replica"],
                            n["leader"],
                            n["reachable"],
                            n["raft_state"],
                            n["applied_index"],
                            n["lag"],
                            n["api_addr"]
                        ])
                    })
                    .collect();
                let cols = [
                    "name",
                    "replica",
                    "leader",
                    "reachable",
                    "state",
                    "applied",
                    "lag",
                    "api",
                ];
                print!("{}", render_rows(&cols.map(String::from), &rows));
            }
            (".timer", None) => println!("timer is {}", if self.timer { "on" } else { "off" }),
            (".timer", Some("on")) => self.timer = true,
            (".timer", Some("off")) => self.timer = false,
            (".timer", Some(other)) => {
                return Err(format!(".timer: {other:?}: expected on or off"))
            }
            (".consistency", None) => println!("{}", self.level),
            (".consistency", Some(level)) if LEVELS.contains(&level) => {
                self.level = level.to_string();
            }
            (".consistency", Some(other)) => {
                return Err(format!(
                    ".consistency: {other:?} is not a level; expected one of {}",
                    LEVELS.join(", ")
                ))
            }
            (".backup", Some(file)) => {
                let (status, body) = self.get("/db/backup").await?;
                if status != 200 {
                    return Err(format!(
                        "backup failed: HTTP {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ));
                }
                std::fs::write(file, &body).map_err(|e| format!("cannot write {file}: {e}"))?;
                println!("backup of {} bytes written to {file}", body.len());
            }
            (".restore", Some(file)) => self.restore(file).await?,
            (".backup" | ".restore", None) => return Err(format!("{cmd}: name the FILE")),
            (".tables" | ".status" | ".nodes", Some(_)) => {
                return Err(format!("{cmd} takes no argument"))
            }
            _ => return Err(format!("unknown command {cmd}; .help lists the commands")),
        }
        Ok(())
    }

    /// `.restore FILE`: a SQLite database file or an SQL dump, loaded with `/db/load`.
    async fn restore(&self, file: &str) -> Result<(), String> {
        let data = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let kind = if data.starts_with(b"SQLite format 3\0") {
            "application/octet-stream"
        } else {
            "text/plain"
        };
        let url = format!("{}/db/load", self.base);
        let r = self
            .http
            .post(&url, kind, Bytes::from(data), REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&r.body);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(e) = v["error"].as_str() {
            return Err(format!("restore failed: {e}"));
        }
        if !r.status.is_success() {
            return Err(format!(
                "restore failed: HTTP {}: {}",
                r.status,
                text.trim()
            ));
        }
        let errors: Vec<&str> = v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["error"].as_str())
            .collect();
        if !errors.is_empty() {
            return Err(format!("restore failed: {}", errors.join("; ")));
        }
        println!("database restored from {file}");
        Ok(())
    }
}

/// Leaves out SQLite's and webfarm's own tables.
const USER: &str = "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                    AND name NOT LIKE '\\_webfarm%' ESCAPE '\\'";

/// The dot commands, as `.help` prints them.
const HELP: &str = "\
.backup FILE          write a copy of the database (a SQLite file) to FILE
.consistency [LEVEL]  show or set the read consistency: none, weak, linearizable, strong, auto
.exit, .quit          leave the shell
.help                 show this message
.indexes [TABLE]      list the indexes (of TABLE)
.nodes                list the cluster's nodes: voter or learner, leader, lag
.restore FILE         replace the database with FILE (a SQLite file or an SQL dump)
.schema [TABLE]       show the CREATE statements (of TABLE)
.status               show the node's status
.tables               list the tables and views
.timer [on|off]       show how long each statement takes
Statements end with ';'. Reads go to /db/query, other statements to /db/execute.
";

fn with_param(sql: String, param: Option<&str>) -> Value {
    match param {
        Some(p) => json!([[sql, p]]),
        None => json!([sql]),
    }
}

/// The first keyword of a statement, in capitals.
fn first_keyword(sql: &str) -> String {
    strip_comments(sql)
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Whether a statement reads only, judged by its first keyword.
fn is_read(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "SELECT" | "WITH" | "EXPLAIN" | "PRAGMA" | "VALUES"
    )
}

/// Whether a statement changes rows (so "N rows affected" means something).
fn changes_rows(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH"
    )
}

/// `sql` without its leading comments.
fn strip_comments(mut sql: &str) -> &str {
    loop {
        let t = sql.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = t.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return t;
        }
    }
}

/// A JSON value as a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One statement's result: a table of rows, or what a write changed.
fn render_result(r: &Value) -> String {
    if let Some(cols) = r["columns"].as_array() {
        let cols: Vec<String> = cols.iter().map(cell).collect();
        let rows = r["values"].as_array().cloned().unwrap_or_default();
        return render_rows(&cols, &rows);
    }
    match r["rows_affected"].as_u64() {
        Some(1) => "1 row affected\n".into(),
        Some(n) => format!("{n} rows affected\n"),
        None => String::new(),
    }
}

/// Rows as a table with a header, every column as wide as its widest cell.
fn render_rows(cols: &[String], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            (0..cols.len())
                .map(|i| cell(row.get(i).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |r: &[String]| {
        let parts: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut out = rule.clone();
    out += &line(cols);
    out += &rule;
    for r in &cells {
        out += &line(r);
    }
    if !cells.is_empty() {
        out += &rule;
    }
    out
}

/// Splits input lines into statements at `;` outside quotes and comments; a `CREATE
/// TRIGGER` statement ends only at the `;` after its `END`.
#[derive(Debug, Default)]
struct Splitter {
    buf: String,
}

impl Splitter {
    fn is_empty(&self) -> bool {
        self.buf.trim().is_empty()
    }

    /// Adds a line; the statements it completes.
    fn push(&mut self, line: &str) -> Vec<String> {
        if !self.buf.is_empty() {
            self.buf.push('\n');
        }
        self.buf.push_str(line);
        let (done, rest) = split_complete(&self.buf);
        self.buf = rest;
        done
    }

    /// What is left at the end of the input (a last statement without `;`).
    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.trim();
        (!strip_comments(rest).is_empty()).then(|| rest.to_string())
    }
}

/// The complete statements at the start of `text`, and the rest.
fn split_complete(text: &str) -> (Vec<String>, String) {
    let chars: Vec<char> = text.chars().collect();
    let mut done = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut word = String::new();
    let (mut words, mut depth, mut trigger) = (0usize, 0i32, false);
    let mut first_words: Vec<String> = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c.to_ascii_uppercase());
            i += 1;
            continue;
        }
        if !word.is_empty() {
            words += 1;
            if words <= 4 {
                first_words.push(word.clone());
                trigger = first_words.first().map(String::as_str) == Some("CREATE")
                    && first_words.iter().any(|w| w == "TRIGGER");
            }
            match word.as_str() {
                "BEGIN" | "CASE" if trigger => depth += 1,
                "END" if trigger => depth -= 1,
                _ => {}
            }
            word.clear();
        }
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            ';' if !trigger || depth <= 0 => {
                let stmt: String = chars[start..i].iter().collect();
                if !strip_comments(&stmt).trim().is_empty() {
                    done.push(stmt.trim().to_string());
                }
                start = i + 1;
                (words, depth, trigger) = (0, 0, false);
                first_words.clear();
            }
            _ => {}
        }
        i += 1;
    }
    let rest: String = chars[start.min(chars.len())..].iter().collect();
    (done, rest.trim_start().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_quotes_comments_and_triggers() {
        let (done, rest) =
            split_complete("SELECT 'a;b'; -- x;\nINSERT INTO \"t;\" VALUES (1); SEL");
        assert_eq!(
            done,
            ["SELECT 'a;b'", "-- x;\nINSERT INTO \"t;\" VALUES (1)"]
        );
        assert_eq!(rest, "SEL");
        let trig =
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET v = CASE WHEN 1 THEN 2 END; \
                    DELETE FROM u; END; SELECT 1;";
        let (done, rest) = split_complete(trig);
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(done[0].ends_with("END"), "{done:?}");
        assert_eq!(rest, "");
        let mut s = Splitter::default();
        assert!(s.push("SELECT").is_empty());
        assert_eq!(s.push("  1;"), ["SELECT\n  1"]);
        assert!(s.push("SELECT 2").is_empty());
        assert_eq!(s.finish().as_deref(), Some("SELECT 2"));
    }

    #[test]
    fn reads_are_told_from_writes_by_their_first_keyword() {
        assert!(is_read("  select 1"));
        assert!(is_read(
            "-- c\n/* d */ WITH x AS (SELECT 1) SELECT * FROM x"
        ));
        assert!(is_read("PRAGMA table_info(t)"));
        assert!(!is_read("INSERT INTO t VALUES (1)"));
        assert!(!is_read("create table t (a)"));
        assert!(changes_rows("delete from t") && !changes_rows("CREATE INDEX i ON t (a)"));
    }

    #[test]
    fn rows_print_as_an_aligned_table() {
        let r = json!({"columns": ["id", "name"], "values": [[1, "ada"], [22, null]]});
        assert_eq!(
            render_result(&r),
            "+----+------+\n| id | name |\n+----+------+\n| 1  | ada  |\n| 22 | NULL |\n+----+------+\n"
        );
        assert_eq!(
            render_result(&json!({"rows_affected": 2})),
            "2 rows affected\n"
        );
    }
}
