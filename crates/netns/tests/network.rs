//! A real network: two hosts on a bridge, reached from the root namespace, then removed.
//! Needs root and iproute2 (it fails saying so otherwise); uses `wfn-*` and 10.78.2.0/24.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use webfarm_netns::{check_privileges, identify, remains, Block, Host, Network, Spec};
use webfarm_testkit::{eventually_blocking, DEADLINE};

#[test]
fn hosts_are_reachable_apart_and_everything_is_removed() {
    check_privileges().unwrap_or_else(|e| panic!("this test needs root: {e}"));
    let spec = Spec::new("wfn", "10.78.2.0/24".parse::<Block>().unwrap()).unwrap();
    let hosts = vec![
        Host::new("a", spec.block.addr(2)),
        Host::new("b", spec.block.addr(3)),
    ];
    let net = Network::create(spec.clone(), hosts).unwrap();
    assert_eq!(remains(&spec).len(), 5, "{:?}", remains(&spec));

    let lo = net.run("a", &["ip", "-br", "link", "show", "lo"]).unwrap();
    assert!(lo.contains("UP") || lo.contains("UNKNOWN"), "{lo}");
    let mut server = net
        .command("a", "python3")
        .args(["-c", SERVER])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // `ip netns exec` enters the namespace after the spawn returned: wait for it.
    let pid = server.id();
    eventually_blocking(DEADLINE, "the server in wfn-a", || {
        (identify(pid).as_deref() == Some("wfn-a")).then_some(())
    });
    assert_eq!(identify(std::process::id()), None);
    let got = poll_get("10.78.2.2:8000");
    assert!(got.contains("hello"), "{got}");
    // From host b, over the bridge.
    let from_b = net
        .run("b", &["python3", "-c", CLIENT, "10.78.2.2"])
        .unwrap();
    assert!(from_b.contains("hello"), "{from_b}");
    // Nothing of the block is routed outside the bridge: host b has no default route.
    let routes = net.run("b", &["ip", "route"]).unwrap();
    assert!(!routes.contains("default"), "{routes}");

    let _ = server.kill();
    let _ = server.wait();
    net.remove().unwrap();
    assert!(remains(&spec).is_empty(), "{:?}", remains(&spec));
}

#[test]
fn a_host_outside_the_block_is_refused_before_anything_is_made() {
    let spec = Spec::new("wfn2", "10.78.3.0/24".parse::<Block>().unwrap()).unwrap();
    let e = Network::create(
        spec.clone(),
        vec![Host::new("a", "10.78.4.2".parse().unwrap())],
    )
    .unwrap_err();
    assert!(e.to_string().contains("not in 10.78.3.0/24"), "{e}");
    assert!(Spec::new("much-too-long", spec.block).is_err());
    assert!(remains(&spec).is_empty());
}

const SERVER: &str = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.78.2.2',8000))\ns.listen()\nwhile True:\n  c,_=s.accept()\n  c.sendall(b'hello')\n  c.close()\n";
const CLIENT: &str = "import socket,sys,time\nfor _ in range(100):\n  try:\n    s=socket.create_connection((sys.argv[1],8000),timeout=1)\n    print(s.recv(100).decode())\n    break\n  except OSError:\n    time.sleep(0.1)\n";

fn poll_get(addr: &str) -> String {
    eventually_blocking(DEADLINE, &format!("{addr} answering"), || {
        let mut s =
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).ok()?;
        let _ = s.write_all(b"");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Some(out)
    })
}
