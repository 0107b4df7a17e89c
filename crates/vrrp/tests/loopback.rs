//! Two routers of one virtual router in this process, on webfarm's loopback transport (UDP
//! between 127.0.79.x addresses): the election, a failover when the master leaves (priority
//! 0), and preemption when it comes back. What "holding" means is recorded by a VipHolder.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use webfarm_vrrp::{InstanceSpec, NodeSpec, Params, State, VipHolder, Vrrp};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl VipHolder for Recorder {
    fn take(&self, instance: &str, vips: &[IpAddr]) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push(format!("take {instance} {vips:?}"));
        Ok(())
    }
    fn release(&self, instance: &str, vips: &[IpAddr]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("release {instance} {vips:?}"));
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(me: &str, peer: &str, priority: u8) -> NodeSpec {
    NodeSpec {
        address: ip(me),
        interface: None,
        instances: vec![InstanceSpec {
            name: "VI_T".into(),
            vrid: 7,
            vips: vec![ip("127.0.79.200")],
            params: Params {
                priority,
                advert_int: 5,
                preempt: true,
                preempt_delay: None,
                primary: ip(me),
            },
            peers: vec![ip(peer)],
            unicast: false,
        }],
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(v: &Vrrp) -> State {
    v.status()[0].state
}

#[tokio::test]
async fn election_failover_and_preemption() {
    let (a, b) = ("127.0.79.201", "127.0.79.202");
    let (rec_a, rec_b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let high = Vrrp::start(spec(a, b, 200), rec_a.clone()).await.unwrap();
    let low = Vrrp::start(spec(b, a, 100), rec_b.clone()).await.unwrap();
    until("the higher priority is master", || {
        state(&high) == State::Master && state(&low) == State::Backup
    })
    .await;
    until("the backup knows the master", || {
        low.status()[0].master == Some(ip(a))
    })
    .await;
    assert!(high.status()[0].holding && !low.status()[0].holding);

    // The master leaves with priority 0: the backup takes over.
    high.shutdown().await;
    assert_eq!(
        rec_a.0.lock().unwrap().last().unwrap(),
        "release VI_T [127.0.79.200]"
    );
    until("the backup takes over", || state(&low) == State::Master).await;
    assert!(low.status()[0].holding);

    // Back with the higher priority: it preempts, the other releases.
    let high = Vrrp::start(spec(a, b, 200), rec_a.clone()).await.unwrap();
    until("preemption", || {
        state(&high) == State::Master && state(&low) == State::Backup
    })
    .await;
    until("released", || !low.status()[0].holding).await;
    assert_eq!(
        *rec_b.0.lock().unwrap(),
        ["take VI_T [127.0.79.200]", "release VI_T [127.0.79.200]"]
    );
    assert_eq!(
        low.status()[0].transitions,
        [0, 2, 1],
        "backup twice, master once"
    );
    high.shutdown().await;
    low.shutdown().await;
}
