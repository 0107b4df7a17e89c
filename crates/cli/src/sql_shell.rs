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
use clap::Args;
use serde_json::Value;
use webfarm_config::{Farm, Replica, Role};
use webfarm_db_client::{AdminClient, AdminError, Consistency, Statement, StatementAnswer, Target};
use webfarm_node::http::HttpClient;

use crate::args::FarmArgs;
use crate::farm_file;

/// How long one statement or command may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The errors the query endpoint gives a statement that writes (it runs none).
const WRITE_VIA_QUERY: [&str; 2] = [
    "attempt to change database via query operation",
    "attempt to write a readonly database",
];

/// `webfarm sql` arguments.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The db node to talk to: a URL (`https://127.0.1.31:4001`, `http://` for a node
    /// without internal TLS) or `host:port`. Default: the
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
    /// Call the db API as this user of its auth file, `USER:PASSWORD` (rqlite's `-u`).
    /// Default: the farm's generated `operator` user.
    #[arg(short = 'u', long, value_name = "USER:PASSWORD")]
    pub user: Option<String>,
}

/// Runs the shell: `-c`, a script on standard input, or an interactive session.
///
/// # Errors
///
/// An invalid farm file, an unknown node, or no db node answering. Failed statements are
/// not errors: they are printed, and make the exit code 1 in `-c` and script mode.
pub async fn run(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let farm_args = FarmArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
    };
    let farm = farm_file::resolve(&farm_args)?.farm;
    let http = match args.url.as_deref() {
        // A node given by a plain URL (an rqlite node, a farm with internal TLS off).
        // The farm's operator credentials go only to the farm's own db nodes.
        Some(url) if !url.starts_with("https://") => {
            let db: Vec<std::net::SocketAddr> = farm
                .nodes_with_role(webfarm_config::Role::Db)
                .map(|n| n.main_addr())
                .collect();
            let ours = names_one_of(url, &db);
            let user = args.user.as_deref();
            let authorization = match (ours, user) {
                (true, _) | (false, Some(_)) => {
                    crate::secrets::operator_authorization(&farm, user)?
                }
                (false, None) => None,
            };
            let client = HttpClient::new().with_authorization(authorization);
            if ours && user.is_none() {
                // The operator's credentials, to the farm's db nodes and nowhere else.
                client.authorization_only_to(db)
            } else {
                client
            }
        }
        _ => farm_file::operator_http_as(&farm, args.user.as_deref())?,
    };
    let host = target(args, &http, &farm).await?;
    let mut shell = Shell {
        admin: AdminClient::with_http(
            vec![Target {
                name: host.clone(),
                addr: host.clone(),
            }],
            http,
        ),
        host,
        level: Consistency::Weak,
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

/// The address (`host:port`) of the node to talk to.
/// Whether `url` (`http://HOST:PORT[/]` or `HOST:PORT`) names exactly one of `addrs`: its
/// host and port parsed and compared, not searched for as text (`http://evil/?ADDR` names
/// `evil`).
fn names_one_of(url: &str, addrs: &[std::net::SocketAddr]) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let host = rest.strip_suffix('/').unwrap_or(rest);
    host.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| addrs.contains(&a) && a.to_string() == host)
}

async fn target(args: &SqlArgs, http: &HttpClient, farm: &Farm) -> anyhow::Result<String> {
    if let Some(url) = &args.url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        if rest.contains("://") {
            bail!("{url}: only http:// and https:// URLs are supported");
        }
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            bail!("{url}: expected http(s)://HOST:PORT or HOST:PORT");
        }
        return Ok(host.to_string());
    }
    if let Some(name) = &args.node {
        return match farm.node(name) {
            Some(n) if n.role == Role::Db => Ok(n.main_addr().to_string()),
            Some(n) => bail!("{name} is a {} node, not a db node", n.role.as_str()),
            None => bail!("no node named {name:?} in the farm file"),
        };
    }
    let mut tried = Vec::new();
    for n in farm.nodes_with_role(Role::Db) {
        let url = http.url(n.main_addr(), "/status");
        match http.get(&url, Duration::from_secs(2)).await {
            // A 401 answers too: a user without `status` may still run statements, whose
            // own answers say what it may not do.
            Ok(r) if r.status.is_success() || r.status == http::StatusCode::UNAUTHORIZED => {
                return Ok(n.main_addr().to_string())
            }
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
    admin: AdminClient,
    /// The node's `host:port`, for the prompt.
    host: String,
    level: Consistency,
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
        let host = self.host.clone();
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
        let statement = [Statement::new(sql)];
        if is_read(sql) {
            let r = self.query(&statement).await?;
            match &r.error {
                Some(e) if WRITE_VIA_QUERY.iter().any(|w| e.contains(w)) => {}
                Some(e) => return Err(e.clone()),
                None => return Ok(render_result(&r)),
            }
        }
        let answer = self
            .admin
            .execute(&statement, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.reason())?;
        let r = first(answer.results);
        if let Some(e) = r.error {
            return Err(e);
        }
        if r.columns.is_none() && !changes_rows(sql) {
            return Ok(String::new());
        }
        Ok(render_result(&r))
    }

    /// The first result of a query at the shell's level.
    async fn query(&self, statements: &[Statement]) -> Result<StatementAnswer, String> {
        let answer = self
            .admin
            .query(statements, self.level, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.reason())?;
        Ok(first(answer.results))
    }

    /// The rows of a query at the shell's level, or its error.
    async fn rows(&self, statement: Statement) -> Result<StatementAnswer, String> {
        let r = self.query(&[statement]).await?;
        match r.error {
            Some(e) => Err(e),
            None => Ok(r),
        }
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
                    .rows(Statement::new(format!(
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') {USER} \
                         ORDER BY name"
                    )))
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
                for row in r.values.iter().flatten() {
                    println!("{};", row.first().and_then(Value::as_str).unwrap_or(""));
                }
            }
            (".status", None) => self.print_status().await?,
            (".nodes", None) => self.print_nodes().await?,
            (".timer", None) => println!("timer is {}", if self.timer { "on" } else { "off" }),
            (".timer", Some("on")) => self.timer = true,
            (".timer", Some("off")) => self.timer = false,
            (".timer", Some(other)) => {
                return Err(format!(".timer: {other:?}: expected on or off"))
            }
            (".consistency", None) => println!("{}", self.level),
            (".consistency", Some(level)) => {
                self.level = level.parse().map_err(|e| format!(".consistency: {e}"))?;
            }
            (".backup", Some(file)) => {
                let body = self
                    .admin
                    .backup(REQUEST_TIMEOUT)
                    .await
                    .map_err(|e| format!("backup failed: {}", reason(&e)))?;
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

    /// `.status`: every field of the node's `/status`, sorted by name.
    async fn print_status(&self) -> Result<(), String> {
        let status = self
            .admin
            .status(REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.reason())?;
        // Every field, sorted by name.
        let v = serde_json::to_value(status).map_err(|e| e.to_string())?;
        for (k, val) in v.as_object().into_iter().flatten() {
            println!("{k}: {}", cell(val));
        }
        Ok(())
    }

    /// `.nodes`: the cluster's members as the leader sees them.
    async fn print_nodes(&self) -> Result<(), String> {
        let view = self
            .admin
            .cluster_nodes(REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.reason())?;
        let rows: Vec<Vec<Value>> = view
            .nodes
            .into_iter()
            .map(|n| {
                vec![
                    Value::from(n.name),
                    Value::from(n.replica.map_or("none", Replica::as_str)),
                    Value::from(n.leader),
                    Value::from(n.reachable),
                    Value::from(n.raft_state.map(|s| s.as_str())),
                    Value::from(n.applied_index),
                    Value::from(n.lag.flatten()),
                    Value::from(n.api_addr),
                ]
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
        Ok(())
    }

    /// `.restore FILE`: a SQLite database file or an SQL dump, loaded with `/db/load`.
    async fn restore(&self, file: &str) -> Result<(), String> {
        let data = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let answer = self
            .admin
            .load(data.into(), REQUEST_TIMEOUT)
            .await
            .map_err(|e| format!("restore failed: {}", e.reason()))?;
        let errors: Vec<&str> = answer
            .results
            .iter()
            .filter_map(|r| r.error.as_deref())
            .collect();
        if !errors.is_empty() {
            return Err(format!("restore failed: {}", errors.join("; ")));
        }
        println!("database restored from {file}");
        Ok(())
    }
}

/// A refusal in the node's words; with its HTTP status when the node gave no JSON error.
fn reason(e: &AdminError) -> String {
    match e {
        AdminError::Refused {
            status, message, ..
        } if !status.is_success() && !message.is_empty() => format!("HTTP {status}: {message}"),
        other => other.reason(),
    }
}

/// The first result of an answer (an empty one when there is none).
fn first(results: Vec<StatementAnswer>) -> StatementAnswer {
    results.into_iter().next().unwrap_or_default()
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

fn with_param(sql: String, param: Option<&str>) -> Statement {
    Statement::with_params(sql, param.map(|p| vec![Value::from(p)]).unwrap_or_default())
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
fn render_result(r: &StatementAnswer) -> String {
    if let Some(cols) = &r.columns {
        return render_rows(cols, r.values.as_deref().unwrap_or_default());
    }
    match r.rows_affected {
        Some(1) => "1 row affected\n".into(),
        Some(n) => format!("{n} rows affected\n"),
        None => String::new(),
    }
}

/// Rows as a table with a header, every column as wide as its widest cell.
fn render_rows(cols: &[String], rows: &[Vec<Value>]) -> String {
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
    use serde_json::json;

    #[test]
    fn only_a_url_of_a_farm_db_node_is_one() {
        let addrs = ["127.0.88.31:4001".parse().unwrap()];
        for url in [
            "http://127.0.88.31:4001",
            "http://127.0.88.31:4001/",
            "127.0.88.31:4001",
        ] {
            assert!(names_one_of(url, &addrs), "{url}");
        }
        for url in [
            "http://evil/?127.0.88.31:4001",
            "http://evil?127.0.88.31:4001",
            "http://127.0.88.31:4001@evil",
            "http://evil/127.0.88.31:4001",
            "http://127.0.88.31:40011",
            "http://127.0.88.31:4001.evil",
            "http://127.0.88.31:4001/x",
            "http://127.0.88.31",
            "http://127.0.88.3:4001",
        ] {
            assert!(!names_one_of(url, &addrs), "{url}");
        }
    }

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
        let r: StatementAnswer = serde_json::from_value(
            json!({"columns": ["id", "name"], "values": [[1, "ada"], [22, null]]}),
        )
        .unwrap();
        assert_eq!(
            render_result(&r),
            "+----+------+\n| id | name |\n+----+------+\n| 1  | ada  |\n| 22 | NULL |\n+----+------+\n"
        );
        let write: StatementAnswer = serde_json::from_value(json!({"rows_affected": 2})).unwrap();
        assert_eq!(render_result(&write), "2 rows affected\n");
    }
}
