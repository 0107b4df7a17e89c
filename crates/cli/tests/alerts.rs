//! The monitor's built-in alerting end to end: a killed web node makes `ServerDown` fire
//! after its `for`, and a webhook receives it in Alertmanager's JSON; started again, the
//! alert is resolved and the webhook told so. The dashboard's view lists the firing alert.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{TempDir, TestFarm};
use serde_json::Value;

const NET: u8 = 75;

/// An HTTP server on `127.0.75.100` that answers 200 to every POST and hands over the
/// bodies, parsed as JSON.
fn webhook_receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind(format!("127.0.{NET}.100:0")).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                // Keep-alive: one request after another on the connection.
                while let Some(body) = read_request(&mut reader) {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    if let Ok(json) = serde_json::from_slice(&body) {
                        let _ = tx.send(json);
                    }
                }
            });
        }
    });
    (url, rx)
}

fn read_request(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// The next payload for `alertname` with `status`, within 30 s.
fn next(rx: &mpsc::Receiver<Value>, alertname: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let json = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {alertname} {status} within 30 s"));
        if json["alerts"][0]["labels"]["alertname"] == alertname && json["status"] == status {
            return json;
        }
    }
}

#[test]
fn server_down_fires_to_the_webhook_and_resolves() {
    let (hook, rx) = webhook_receiver();
    let tmp = TempDir::new("alerts");
    let config = tmp.path().join("farm.toml");
    let text = common::farm_toml(NET)
        + &format!(
            "[[nodes]]\nname = \"mon-1\"\nrole = \"monitor\"\naddress = \"127.0.{NET}.5\"\n\
             [monitor.alerts]\nserver_down = {{ for = \"2s\" }}\nwebhooks = [\"{hook}\"]\n"
        );
    std::fs::write(&config, text).unwrap();
    let farm = TestFarm::start_in(tmp.path().to_path_buf(), config, NET);

    let kill = farm.webfarm(&["kill", "web-2"]);
    assert!(kill.status.success());
    let fired = next(&rx, "ServerDown", "firing");
    assert_eq!(fired["version"], "4");
    let alert = &fired["alerts"][0];
    assert_eq!(alert["labels"]["server"], "web-2", "{fired}");
    assert_eq!(alert["labels"]["backend"], "web");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let view: Value = serde_json::from_str(&String::from_utf8_lossy(
        &std::process::Command::new("curl")
            .args(["-sS", &format!("http://127.0.{NET}.5:3000/api/view")])
            .output()
            .expect("curl")
            .stdout,
    ))
    .unwrap();
    let firing: Vec<&Value> = view["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(
        firing.iter().any(|a| a["labels"]["server"] == "web-2"),
        "{view}"
    );

    let start = farm.webfarm(&["start", "web-2"]);
    assert!(start.status.success());
    let resolved = next(&rx, "ServerDown", "resolved");
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["labels"]["server"], "web-2");
    assert_ne!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        farm.log_text().contains("alert ServerDown firing"),
        "the log says it too"
    );
}
