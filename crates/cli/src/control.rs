//! The supervisor's control socket: `webfarm stop|start|kill NODE` talk to the running
//! `webfarm up` through `<data_dir>/run/control.sock`.
//!
//! Protocol: one request line `VERB NODE\n` (VERB is `stop`, `start` or `kill`), one answer
//! line `ok MESSAGE\n` or `error MESSAGE\n`. The supervisor owns the node processes, so it
//! keeps forwarding the logs of a node started again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::args::FarmArgs;
use crate::farm_file;
use crate::supervisor::Supervisor;

/// Listens on `path` and carries out each command on `sup`.
///
/// # Errors
///
/// The socket cannot be created.
pub fn serve(sup: Arc<Supervisor>, path: PathBuf) -> anyhow::Result<JoinHandle<()>> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(sup.clone(), stream));
        }
    }))
}

async fn handle(sup: Arc<Supervisor>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let answer = match (words.next(), words.next()) {
        (Some("start"), Some(node)) => sup.start_node(node).await,
        (Some("stop"), Some(node)) => sup.stop_node(node, false).await,
        (Some("kill"), Some(node)) => sup.stop_node(node, true).await,
        _ => Err(anyhow::anyhow!(
            "unknown command {:?}; expected start|stop|kill NODE",
            line.trim()
        )),
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
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{verb} {node}\n").as_bytes())
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
