//! Health checks of the site's addresses every `inter`, with `rise`/`fall` as an lb checks
//! its servers ([`webfarm_config::DnsCheck`]): a TCP connect to the first frontend's port, or
//! an HTTP `GET /` on the first plain HTTP frontend where any status below 500 passes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::watch;
use webfarm_config::{DnsCheck, DnsCheckType};
use webfarm_node::http::HttpClient;
use webfarm_node::Shutdown;

/// One address's health: UP or DOWN, and the passes or failures in a row that move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrHealth {
    /// The site address.
    pub addr: IpAddr,
    /// What the checks decided; every address starts UP.
    pub up: bool,
    /// Passed checks in a row.
    pub passes: u32,
    /// Failed checks in a row.
    pub failures: u32,
    /// The last check's outcome, in words.
    pub last: String,
}

impl AddrHealth {
    fn new(addr: IpAddr) -> AddrHealth {
        AddrHealth {
            addr,
            up: true,
            passes: 0,
            failures: 0,
            last: "not checked yet".into(),
        }
    }

    /// Records one check's outcome; true when it turned the address UP or DOWN.
    pub fn record(&mut self, outcome: Result<(), String>, check: &DnsCheck) -> bool {
        let was = self.up;
        match outcome {
            Ok(()) => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                self.last = "passed".into();
                if self.passes >= check.rise {
                    self.up = true;
                }
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                self.passes = 0;
                self.last = why;
                if self.failures >= check.fall {
                    self.up = false;
                }
            }
        }
        was != self.up
    }
}

/// The health of every site address, shared by the checks, the zone and `/status`.
#[derive(Debug, Clone)]
pub struct HealthTable {
    table: Arc<Mutex<Vec<AddrHealth>>>,
    /// Bumped whenever an address turns UP or DOWN.
    changed: watch::Sender<u64>,
}

impl HealthTable {
    /// Every address UP.
    pub fn new(addresses: &[IpAddr]) -> HealthTable {
        HealthTable {
            table: Arc::new(Mutex::new(
                addresses.iter().copied().map(AddrHealth::new).collect(),
            )),
            changed: watch::channel(0).0,
        }
    }

    /// A copy of every address's health, in the farm's order.
    pub fn snapshot(&self) -> Vec<AddrHealth> {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What DNS answers for the site: the UP addresses, or every address when none is UP
    /// (Route 53's rule: with every record unhealthy, all are considered healthy).
    pub fn answering(&self) -> Vec<IpAddr> {
        let all = self.snapshot();
        let up: Vec<IpAddr> = all.iter().filter(|a| a.up).map(|a| a.addr).collect();
        if up.is_empty() {
            all.iter().map(|a| a.addr).collect()
        } else {
            up
        }
    }

    /// A receiver that sees every change of an address's health.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn record(&self, i: usize, outcome: Result<(), String>, check: &DnsCheck) {
        let turned = {
            let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(entry) = table.get_mut(i) else {
                return;
            };
            let turned = entry.record(outcome, check);
            if turned {
                let (addr, up) = (entry.addr, entry.up);
                tracing::info!(%addr, state = if up { "UP" } else { "DOWN" }, "site address");
            }
            turned
        };
        if turned {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

/// What the checks need besides the table: where, how, and the site's name (the `Host` of
/// an HTTP check).
#[derive(Debug, Clone)]
pub struct Checker {
    /// The port checked on every address.
    pub port: u16,
    /// The check's settings.
    pub check: DnsCheck,
    /// The site's name.
    pub site: String,
}

/// Spawns one check loop per address; each ends at shutdown.
pub fn spawn_checks(table: &HealthTable, checker: Checker, shutdown: &Shutdown) {
    let http = HttpClient::new();
    for (i, a) in table.snapshot().into_iter().enumerate() {
        let (table, shutdown) = (table.clone(), shutdown.clone());
        let (checker, http) = (checker.clone(), http.clone());
        let check = checker.check;
        let target = SocketAddr::new(a.addr, checker.port);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(check.inter);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                let outcome = match check.kind {
                    DnsCheckType::Tcp => connect(target, &check).await,
                    DnsCheckType::Http => get(&http, target, &checker).await,
                };
                table.record(i, outcome, &check);
            }
        });
    }
}

/// One layer-4 check: a TCP connect within `check.timeout`.
async fn connect(target: SocketAddr, check: &DnsCheck) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect to {target}: {e}")),
        Err(_) => Err(format!(
            "connect to {target}: timed out after {:?}",
            check.timeout
        )),
    }
}

/// One HTTP check: `GET /` with the site as `Host`; any status below 500 passes.
pub async fn get(http: &HttpClient, target: SocketAddr, checker: &Checker) -> Result<(), String> {
    let request = http::Request::get(format!("http://{target}/"))
        .header(http::header::HOST, checker.site.as_str())
        .header(http::header::USER_AGENT, "webfarm-dns-check")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("GET http://{target}/: {e}"))?;
    let response = http
        .request(request, checker.check.timeout)
        .await
        .map_err(|e| e.to_string())?;
    match response.status.as_u16() {
        code if code < 500 => Ok(()),
        code => Err(format!("GET http://{target}/: status {code}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const CHECK: DnsCheck = DnsCheck {
        kind: DnsCheckType::Tcp,
        inter: Duration::from_secs(1),
        rise: 2,
        fall: 3,
        timeout: Duration::from_secs(1),
    };

    #[test]
    fn fall_failures_take_an_address_down_and_rise_passes_bring_it_back() {
        let mut h = AddrHealth::new("127.0.0.1".parse().unwrap());
        assert!(!h.record(Err("refused".into()), &CHECK));
        assert!(!h.record(Err("refused".into()), &CHECK));
        assert!(h.record(Err("refused".into()), &CHECK));
        assert!(!h.up);
        assert!(!h.record(Ok(()), &CHECK));
        assert!(h.record(Ok(()), &CHECK));
        assert!(h.up);
    }

    #[test]
    fn with_every_address_down_all_are_answered() {
        let addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
        let t = HealthTable::new(&addrs);
        for _ in 0..3 {
            t.record(0, Err("refused".into()), &CHECK);
        }
        assert_eq!(t.answering(), vec![addrs[1]]);
        for _ in 0..3 {
            t.record(1, Err("refused".into()), &CHECK);
        }
        assert_eq!(t.answering(), addrs);
        assert_eq!(*t.subscribe().borrow(), 2);
    }

    /// An HTTP server on 127.0.0.1 that answers every request with `status`.
    async fn answering(status: u16) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_http_check_passes_below_500_and_fails_on_5xx_or_refusal() {
        let http = HttpClient::new();
        let checker = |port| Checker {
            port,
            check: DnsCheck {
                kind: DnsCheckType::Http,
                ..CHECK
            },
            site: "www.foobar.com".into(),
        };
        for (status, passes) in [(200, true), (308, true), (404, true), (503, false)] {
            let addr = answering(status).await;
            let outcome = get(&http, addr, &checker(addr.port())).await;
            assert_eq!(outcome.is_ok(), passes, "{status}: {outcome:?}");
        }
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let outcome = get(&http, closed, &checker(closed.port())).await;
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(connect(closed, &CHECK).await.is_err());
    }
}
