//! What a person can do from the dashboard: stop, kill or start a node (through the
//! supervisor's control socket, `<data_dir>/run/control.sock`, as `webfarm stop|kill|start`
//! do), and change a server's weight, administrative state or backup flag on every load
//! balancer (`POST /lb/servers/{backend}/{server}/weight|state|backup` on their admin ports,
//! as `webfarm lb` does).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use webfarm_config::{Farm, Role};
use webfarm_node::access::AdminToken;
use webfarm_node::http::HttpClient;

/// Why an action was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request itself is wrong (an unknown node or verb, a bad value): 400.
    BadRequest(String),
    /// The supervisor or a load balancer refused or could not be reached: 502.
    Failed(String),
}

/// How long an action may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A node action: `stop`, `kill` or `start`.
///
/// # Errors
///
/// [`Refused::BadRequest`] for an unknown verb or node; [`Refused::Failed`] without a
/// supervisor (the farm was not started by `webfarm up`) or when it refuses.
pub async fn node(
    farm: &Farm,
    token: Option<&AdminToken>,
    verb: &str,
    node: &str,
) -> Result<String, Refused> {
    if !matches!(verb, "stop" | "kill" | "start") {
        return Err(Refused::BadRequest(format!(
            "unknown action {verb:?}: stop, kill or start"
        )));
    }
    if farm.node(node).is_none() {
        return Err(Refused::BadRequest(format!("no node named {node:?}")));
    }
    let socket = farm.data_dir.join("run/control.sock");
    // The supervisor takes requests that end with the admin token (crates/cli/src/control.rs).
    let token = token.map_or("", AdminToken::expose);
    tokio::time::timeout(TIMEOUT, ask(&socket, &format!("{verb} {node} {token}\n")))
        .await
        .map_err(|_| format!("the supervisor did not answer within {TIMEOUT:?}"))
        .and_then(|answer| answer)
        .map_err(Refused::Failed)
}

async fn ask(socket: &Path, line: &str) -> Result<String, String> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "no supervisor at {} ({e}): nodes can be stopped and started from here only in a \
             farm run by `webfarm up`",
            socket.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    match answer.trim_end().split_once(' ') {
        Some(("ok", msg)) => Ok(msg.to_string()),
        Some(("error", msg)) => Err(msg.to_string()),
        _ => Err(format!("unexpected answer from the supervisor: {answer:?}")),
    }
}

/// Sets a server's `weight` (0..=256), administrative `state` (`ready`, `drain`, `maint`)
/// or `backup` flag (`true`, `false`) on every lb node; `what` names the setting, `value`
/// its new value.
///
/// # Errors
///
/// [`Refused::BadRequest`] for a bad setting or value; [`Refused::Failed`] with the first
/// lb's refusal or failure.
pub async fn server(
    farm: &Farm,
    http: &HttpClient,
    target: (&str, &str),
    what: &str,
    value: &str,
) -> Result<String, Refused> {
    let body = body(what, value).map_err(Refused::BadRequest)?;
    send(farm, http, target, what, &body)
        .await
        .map(|done| format!("{}/{} {what} {value} ({done})", target.0, target.1))
        .map_err(Refused::Failed)
}

/// The lb's request body for setting `what` to `value`.
fn body(what: &str, value: &str) -> Result<serde_json::Value, String> {
    match what {
        "weight" => value
            .parse::<u32>()
            .ok()
            .filter(|w| *w <= 256)
            .map(|w| serde_json::json!({ "weight": w }))
            .ok_or_else(|| format!("weight {value:?}: a number from 0 to 256")),
        "state" if matches!(value, "ready" | "drain" | "maint") => {
            Ok(serde_json::json!({ "state": value }))
        }
        "state" => Err(format!("state {value:?}: ready, drain or maint")),
        "backup" => match value {
            "true" | "false" => Ok(serde_json::json!({ "backup": value == "true" })),
            _ => Err(format!("backup {value:?}: true or false")),
        },
        other => Err(format!(
            "unknown setting {other:?}: weight, state or backup"
        )),
    }
}

/// Posts `body` to every lb; what each said.
async fn send(
    farm: &Farm,
    http: &HttpClient,
    (backend, server): (&str, &str),
    what: &str,
    body: &serde_json::Value,
) -> Result<String, String> {
    let mut done = Vec::new();
    for lb in farm.nodes_with_role(Role::Lb) {
        let path = format!("/lb/servers/{backend}/{server}/{what}");
        let url = http.url(lb.admin_addr(), &path);
        let body = Bytes::from(body.to_string());
        let answer = http.post(&url, "application/json", body, TIMEOUT).await;
        match answer {
            Ok(r) if r.status.is_success() => done.push(format!("{}: ok", lb.name)),
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body);
                return Err(format!("{}: {} {}", lb.name, r.status, text.trim()));
            }
            Err(e) => return Err(format!("{}: {e}", lb.name)),
        }
    }
    if done.is_empty() {
        return Err("the farm has no load balancer".into());
    }
    Ok(done.join(", "))
}
