//! The supervisor's control socket: `webfarm stop|start|kill NODE` talk to the running
//! `webfarm up` through `<data_dir>/run/control.sock`.
//!
//! Protocol: one request line `VERB NODE TOKEN\n` (VERB is `stop`, `start` or `kill`; TOKEN
//! the farm's admin token, `<data_dir>/secrets/admin.token`), one answer line `ok MESSAGE\n`
//! or `error MESSAGE\n`. The supervisor owns the node processes, so it keeps forwarding the
//! logs of a node started again.
//!
//! Two checks keep other local users out: the socket is mode 0600 (only the user running
//! `webfarm up`, and root, may connect), and every request must carry the admin token,
//! compared in constant time, so a process that can reach the socket but cannot read the
//! token file (another farm's, a confined service) is refused too. A refusal is answered
//! `error unauthorized ...` and logged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use webfarm_auth::AdminToken;

use crate::args::FarmArgs;
use crate::farm_file;
use crate::supervisor::Supervisor;

/// Listens on `path` and carries out each command on `sup`.
///
/// # Errors
///
/// The socket cannot be created.
pub fn serve(
    sup: Arc<Supervisor>,
    path: PathBuf,
    token: AdminToken,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = bind(&path)?;
    let token = Arc::new(token);
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(sup.clone(), stream, token.clone()));
        }
    }))
}

/// Binds the socket at `path` in a directory made 0700 first: the socket is created with
/// the umask's mode and restricted to 0600 only after, and in between no other user may
/// even reach it.
fn bind(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    Ok(listener)
}

/// The verb of a refused request as logged: a known verb, else `?`. Nothing else of a
/// refused line is logged: in a malformed line (`VERB TOKEN`) any word may be the token.
fn logged_verb(verb: Option<&str>) -> &'static str {
    match verb {
        Some("start") => "start",
        Some("stop") => "stop",
        Some("kill") => "kill",
        _ => "?",
    }
}

async fn handle(sup: Arc<Supervisor>, stream: UnixStream, token: Arc<AdminToken>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let (verb, node, given) = (words.next(), words.next(), words.next());
    let answer = if !given.is_some_and(|t| token.matches(t)) {
        tracing::warn!(
            verb = logged_verb(verb),
            "control socket: refused a request without the admin token"
        );
        Err(anyhow::anyhow!(
            "unauthorized: the request must end with the farm's admin token (VERB NODE TOKEN)"
        ))
    } else {
        match (verb, node) {
            (Some("start"), Some(node)) => sup.start_node(node).await,
            (Some("stop"), Some(node)) => sup.stop_node(node, false).await,
            (Some("kill"), Some(node)) => sup.stop_node(node, true).await,
            _ => Err(anyhow::anyhow!(
                "unknown command {:?}; expected start|stop|kill NODE TOKEN",
                format!("{} {}", verb.unwrap_or(""), node.unwrap_or("")).trim()
            )),
        }
    };
    let reply = match answer {
        Ok(msg) => format!("ok {msg}\n"),
        Err(e) => format!("error {}\n", format!("{e:#}").replace('\n', " / ")),
    };
    let _ = write.write_all(reply.as_bytes()).await;
}

/// Sends `verb node` to the supervisor of the farm `args` names and prints its answer.
///
/// # Errors
///
/// No farm runs from the data directory, or the supervisor refused the command.
pub async fn send(args: &FarmArgs, verb: &str, node: &str) -> anyhow::Result<ExitCode> {
    let resolved = farm_file::resolve(args)?;
    let path = resolved.run_dir().join("control.sock");
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no farm is running from {} (cannot reach {}); start one with `webfarm up`",
            resolved.farm.data_dir.display(),
            path.display()
        )
    })?;
    let token = crate::secrets::admin_token(&resolved.farm).with_context(|| {
        format!(
            "cannot read the farm's admin token in {}",
            webfarm_auth::Secrets::of_data_dir(&resolved.farm.data_dir)
                .token_path()
                .display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{verb} {node} {}\n", token.expose()).as_bytes())
        .await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    match answer.trim_end().split_once(' ') {
        Some(("ok", msg)) => {
            println!("{msg}");
            Ok(ExitCode::SUCCESS)
        }
        Some(("error", msg)) => bail!("{msg}"),
        _ => bail!("the supervisor closed the connection without an answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_bound_in_a_private_directory() {
        let dir = webfarm_testkit::TempDir::new("control-socket");
        let run = dir.path().join("run");
        // A run directory made earlier with a looser mode is restricted too.
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = run.join("control.sock");
        let _listener = bind(&path).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&path), 0o600);
        let fresh = dir.path().join("new-run").join("control.sock");
        let _listener = bind(&fresh).unwrap();
        assert_eq!(mode(fresh.parent().unwrap()), 0o700);
    }

    #[test]
    fn no_word_but_a_known_verb_of_a_refused_line_is_logged() {
        assert_eq!(logged_verb(Some("stop")), "stop");
        assert_eq!(logged_verb(Some("0123abcd")), "?");
        assert_eq!(logged_verb(None), "?");
    }
}
