//! `webfarm metrics [NODE]`: a node's `/metrics` (Prometheus text), or every node's.

use std::process::ExitCode;
use std::time::Duration;

use webfarm_config::Node;
use webfarm_node::http::HttpClient;

use crate::args::FarmArgs;
use crate::farm_file;

/// Prints node `only`'s `/metrics` as it answered (one exposition, fit for `promtool check
/// metrics`), or, without a name, every node's in turn, each after a `# node NAME ADDR`
/// comment line (for reading: the same families repeat from node to node). Uses the
/// operator's certificate when internal TLS is on. Exit code 1 when a node did not answer.
///
/// # Errors
///
/// An invalid topology file, an unknown node, or internal TLS on without the operator's
/// certificate.
pub async fn run(args: &FarmArgs, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let farm = farm_file::resolve(args)?.farm;
    let http = farm_file::operator_http(&farm)?;
    let nodes: Vec<&Node> = match only {
        Some(name) => vec![farm_file::node(&farm, name)?],
        None => farm.nodes.iter().collect(),
    };
    let mut all_answered = true;
    for node in nodes {
        if only.is_none() {
            println!("# node {} {}", node.name, node.admin_addr());
        }
        match scrape(&http, node).await {
            Ok(text) => print!("{text}"),
            Err(why) => {
                all_answered = false;
                eprintln!("webfarm: {} did not answer: {why}", node.name);
            }
        }
    }
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `GET /metrics` on `node`'s admin address.
async fn scrape(http: &HttpClient, node: &Node) -> Result<String, String> {
    let url = http.url(node.admin_addr(), "/metrics");
    match http.get(&url, Duration::from_secs(5)).await {
        Ok(r) if r.status.is_success() => Ok(String::from_utf8_lossy(&r.body).into_owned()),
        Ok(r) => Err(format!("HTTP {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}
