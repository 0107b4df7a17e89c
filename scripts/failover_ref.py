"""The reference for scripts/bench-failover's load-balancer failover: the classic HAProxy +
keepalived pair, on two hosts made of network namespaces.

Two namespaces `wfb-ka` (10.76.0.11) and `wfb-kb` (10.76.0.12), each with a veth on the bridge
`wfb-br0` in the root namespace (10.76.0.1/24: the client's side, as `webfarm up --netns` does
for webfarm's farm), each running HAProxy (TLS on *:443, answering 200 itself) and keepalived
(VRRP version 3, VIP 10.76.0.10, `wfb-ka` priority 150 and master, `wfb-kb` 100). The block
10.76.0.0/24 exists only on that bridge and in those namespaces: no route, no forwarding.
"""

import os
import signal
import subprocess
import time

import benchlib

BRIDGE = "wfb-br0"
HOSTS = {"wfb-ka": ("10.76.0.11", 150), "wfb-kb": ("10.76.0.12", 100)}
VIP = "10.76.0.10"
VRID = 76


def sh(*cmd, check=True):
    """Runs `cmd`; returns its stdout (text)."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def ns_pids(ns):
    """The processes whose network namespace is `ns` (a scan of /proc: `ip netns pids` gives
    up on a process that exits during its scan, and then lists nobody)."""
    try:
        want = os.stat(f"/run/netns/{ns}")
    except FileNotFoundError:
        return []
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = os.stat(f"/proc/{d}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                pids.append(int(d))
    return pids


def remove():
    """Removes the namespaces and the bridge (also what a crashed run left)."""
    for i, ns in enumerate(HOSTS):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", f"wfb-v{i}", check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def create():
    """The bridge, both host namespaces and their veths; returns nothing, raises on failure."""
    remove()
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", "10.76.0.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    for i, (ns, (addr, _)) in enumerate(HOSTS.items()):
        host_end = f"wfb-v{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", host_end, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def certificate(tmp):
    """A self-signed certificate for www.foobar.com (HAProxy's PEM: certificate then key)."""
    pem = os.path.join(tmp, "site.pem")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-days", "2", "-subj", "/CN=www.foobar.com",
       "-addext", "subjectAltName=DNS:www.foobar.com",
       "-keyout", os.path.join(tmp, "site.key"), "-out", os.path.join(tmp, "site.crt"))
    with open(pem, "w") as out:
        for part in ("site.crt", "site.key"):
            with open(os.path.join(tmp, part)) as f:
                out.write(f.read())
    return pem


def haproxy_conf(tmp, ns, pem):
    path = os.path.join(tmp, f"haproxy-{ns}.cfg")
    with open(path, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend www
    bind *:443 ssl crt {pem}
    http-request return status 200 content-type text/plain string "{ns}"
""")
    return path


def keepalived_conf(tmp, ns, advert_int):
    addr, priority = HOSTS[ns]
    path = os.path.join(tmp, f"keepalived-{ns}.conf")
    # keepalived's documented defaults otherwise: preemption on, garp_master_repeat 5.
    with open(path, "w") as f:
        f.write(f"""global_defs {{
    router_id {ns}
    vrrp_version 3
}}
vrrp_instance VI_1 {{
    state {"MASTER" if priority == 150 else "BACKUP"}
    interface eth0
    virtual_router_id {VRID}
    priority {priority}
    advert_int {advert_int}
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
}}
""")
    return path


class Pair:
    """The HAProxy + keepalived pair, started by start(), stopped by stop()."""

    def __init__(self, tmp, advert_int):
        self.tmp = tmp
        self.advert_int = advert_int
        self.pem = certificate(tmp)
        self.procs = {}

    def start_host(self, ns):
        """Starts HAProxy and keepalived in `ns` (both in one process group per program)."""
        run = ["ip", "netns", "exec", ns]
        cfg = haproxy_conf(self.tmp, ns, self.pem)
        haproxy = benchlib.start(run + ["haproxy", "-db", "-f", cfg],
                                 os.path.join(self.tmp, f"haproxy-{ns}.log"))
        conf = keepalived_conf(self.tmp, ns, self.advert_int)
        pid = os.path.join(self.tmp, f"keepalived-{ns}")
        keepalived = benchlib.start(
            run + ["keepalived", "-n", "-l", "-D", "-f", conf, "-p", pid + ".pid",
                   "-r", pid + "-vrrp.pid", "-c", pid + "-checkers.pid"],
            os.path.join(self.tmp, f"keepalived-{ns}.log"))
        self.procs[ns] = [haproxy, keepalived]

    def start(self):
        create()
        for ns in HOSTS:
            self.start_host(ns)
        self.wait_master("wfb-ka")

    def holder(self):
        """The namespaces that hold the VIP now."""
        return [ns for ns in HOSTS
                if f" {VIP}/" in sh("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0",
                                    check=False)]

    def wait_master(self, ns, deadline=30.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.holder() == [ns]:
                return
            time.sleep(0.05)
        raise SystemExit(f"keepalived: {ns} did not become the only master within "
                         f"{deadline}s (holders: {self.holder()})")

    def signal_host(self, ns, sig):
        """Sends `sig` to every process of host `ns` (HAProxy, keepalived and keepalived's VRRP
        child, which runs in a session of its own), found by their network namespace."""
        for pid in ns_pids(ns):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def restart_host(self, ns):
        """After a SIGKILL: what a killed keepalived left behind (its pid files, the VIP on the
        interface) is removed, as a reboot would, then HAProxy and keepalived start again."""
        self.signal_host(ns, signal.SIGKILL)
        for p in self.procs.pop(ns, []):
            benchlib.stop(p, wait=5)
        end = time.monotonic() + 10
        while ns_pids(ns) and time.monotonic() < end:
            time.sleep(0.02)
        for f in os.listdir(self.tmp):
            if f.startswith(f"keepalived-{ns}") and f.endswith(".pid"):
                os.unlink(os.path.join(self.tmp, f))
        sh("ip", "-n", ns, "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)
        self.start_host(ns)

    def stop(self):
        for ns in HOSTS:
            self.signal_host(ns, signal.SIGKILL)
        for procs in self.procs.values():
            for p in procs:
                benchlib.stop(p, wait=5)
        self.procs = {}
        remove()
