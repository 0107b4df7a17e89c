"""What webfarm's benchmark scripts share: processes in their own groups, readiness, CPU and
memory of a process group, wrk's output, medians, the webfarm binary to measure, and the
plain-HTTP nginx backends that bench-lb and bench-tls put behind the load balancers.

Imported by scripts/bench-web (and meant for every scripts/bench-*): `sys.path` gets the
scripts directory, then `import benchlib`.
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

PROCS = []  # every process group started by start(), stopped by cleanup()
TICK = os.sysconf("SC_CLK_TCK")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def start(cmd, out, env=None, cpus=None):
    """Starts `cmd` in its own process group, output appended to file `out`; `cpus` pins it
    (taskset list such as "0")."""
    if cpus is not None:
        cmd = ["taskset", "-c", cpus] + cmd
    with open(out, "ab") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=10.0):
    """Stops the process group of `p` (started by start()): `sig`, then SIGKILL after
    `wait` seconds."""
    try:
        os.killpg(p.pid, sig if p.poll() is None else signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(wait)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    if p in PROCS:
        PROCS.remove(p)


def cleanup(*signum):
    """Kills every process group still running; exits 130 when called as a signal handler."""
    for p in list(PROCS):
        stop(p, signal.SIGKILL, 5)
    if signum:
        sys.exit(130)


def wait_ready(url, proc, what, deadline=30.0):
    """Polls `url` until it answers 200; exits with the reason if `proc` dies or `deadline`
    (seconds) passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not answer {url} within {deadline}s")


def group_pids(pgid):
    """Pids of the processes in process group `pgid`."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def cpu_ticks(p):
    """utime + stime (clock ticks, see TICK) of every process in `p`'s group, all threads."""
    total = 0
    for pid in group_pids(p.pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def group_kb(p, key):
    """Sum of `key` (VmRSS, VmHWM...; KiB) over the processes of `p`'s group."""
    total = 0
    for pid in group_pids(p.pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f
                               if line.startswith(key + ":")), 0)
        except OSError:
            pass
    return total


def to_ms(s):
    """A wrk duration ("512.00us", "1.20ms", "2.00s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    if not m:
        raise ValueError(f"wrk latency {s!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(out):
    """wrk --latency's output -> {rps, requests, p50, p99 (ms), non2xx, socket_errors}."""
    r = {"non2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        line = line.strip()
        if m := re.match(r"(50|99)(?:\.000)?%\s+(\S+)", line):
            r["p" + m.group(1)] = to_ms(m.group(2))
        elif m := re.match(r"(\d+) requests in", line):
            r["requests"] = int(m.group(1))
        elif line.startswith("Requests/sec:"):
            r["rps"] = float(line.split()[1])
        elif line.startswith("Non-2xx or 3xx responses:"):
            r["non2xx"] = int(line.split()[-1])
        elif line.startswith("Socket errors:"):
            r["socket_errors"] = sum(int(x) for x in re.findall(r"\d+", line))
    if not {"rps", "p50", "p99"} <= r.keys():
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return r


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def find_webfarm():
    """The webfarm binary to measure: $WEBFARM_BIN, else ./target/release/webfarm (built with
    `cargo build --release -p webfarm` when missing)."""
    path = os.environ.get("WEBFARM_BIN", "./target/release/webfarm")
    if not os.path.exists(path):
        log(f"{path} is missing: building it with `cargo build --release -p webfarm`")
        subprocess.run(["cargo", "build", "--release", "-p", "webfarm"], check=True)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{path} is not an executable webfarm binary; set WEBFARM_BIN")
    return os.path.abspath(path)


# ---------------------------------------------------------------- nginx backends

BACKEND_BODY = "hello from backend {n}\n"


def nginx_common(d):
    """The head of an nginx.conf whose files all live in directory `d`."""
    return f"""daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 19000; }}
"""


def nginx_temp(d):
    return "".join(f"{k} {d}/{k};\n" for k in (
        "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path",
        "scgi_temp_path"))


def backend_conf(d, n, host, port):
    """Backend `n`: one worker, keep-alive, `return 200` with a 23-byte body."""
    return nginx_common(d) + f"""worker_processes 1;
http {{
  access_log off;
  {nginx_temp(d)}
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  server {{
    listen {host}:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "{BACKEND_BODY.format(n=n).strip()}\\n"; }}
  }}
}}
"""


def start_backends(tmp, addrs, cpus):
    """One nginx backend per (host, port) of `addrs`, under `tmp`, pinned to `cpus`; returns
    their processes once every one answers."""
    procs = []
    for i, (h, p) in enumerate(addrs):
        d = os.path.join(tmp, f"backend-{i + 1}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(backend_conf(d, i + 1, h, p))
        procs.append(start(["nginx", "-p", d, "-e", f"{d}/error.log", "-c", conf],
                           os.path.join(d, "out.log"), cpus=cpus))
    for (h, p), proc in zip(addrs, procs):
        wait_ready(f"http://{h}:{p}/", proc, f"nginx backend {h}:{p}")
    return procs


def lb_workers(pid):
    """The event-loop threads (`lb-worker-K`) of webfarm's lb process."""
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                if f.read().startswith("lb-worker-"):
                    n += 1
        except OSError:
            pass
    return n


def farm_ca(webfarm, conf, node):
    """The farm CA, `node`'s certificate and the farm's secrets (`webfarm ca issue`) under the
    data directory of farm file `conf`: a node started alone (`webfarm run --node`) refuses to
    start without the CA when `[tls] internal = true` (the default), and without the admin
    token (and a db node without its auth file) when it is false; `webfarm up` makes them
    itself."""
    subprocess.run([webfarm, "ca", "issue", node, "--config", conf], check=True,
                   capture_output=True)
