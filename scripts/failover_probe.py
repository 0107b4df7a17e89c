"""Clients for scripts/bench-failover: they keep asking, and record when each answer came.

`Probe` sends HTTPS GETs on a new connection each (connect, TLS handshake, request, status
line), from several threads so that an attempt starts every few milliseconds; every attempt is
bounded by `timeout` seconds. `first_success_after(t)` is the failover time's end: the first
attempt that *started* after `t` and got its answer.
"""

import socket
import ssl
import threading
import time


class Probe:
    def __init__(self, attempt, threads=4, pause=0.01):
        """`attempt()` returns True when it succeeded; it is called from `threads` threads,
        each pausing `pause` seconds between attempts."""
        self.attempt = attempt
        self.pause = pause
        self.results = []  # (started, ended, ok), monotonic seconds
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self.loop, args=(i * pause / threads,),
                                         daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def loop(self, offset):
        time.sleep(offset)
        while self.running:
            started = time.monotonic()
            try:
                ok = self.attempt()
            except Exception:
                ok = False
            with self.lock:
                self.results.append((started, time.monotonic(), ok))
            time.sleep(self.pause)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join()

    def first_success_after(self, t):
        """Seconds from `t` to the end of the first successful attempt started after `t`, or
        None."""
        with self.lock:
            ends = [e for (s, e, ok) in self.results if ok and s >= t]
        return min(ends) - t if ends else None

    def failures_between(self, a, b):
        with self.lock:
            return sum(1 for (s, _, ok) in self.results if a <= s <= b and not ok)

    def healthy(self, window, deadline):
        """Waits until every attempt that started in the last `window` seconds succeeded
        (there were some); False after `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            now = time.monotonic()
            with self.lock:
                recent = [ok for (s, e, ok) in self.results if s >= now - window and e <= now]
            if len(recent) >= 3 and all(recent):
                return True
            time.sleep(0.05)
        return False

    def wait_success_after(self, t, deadline):
        """Polls until an attempt started after `t` succeeded; returns first_success_after(t),
        or None after `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            got = self.first_success_after(t)
            if got is not None:
                return got
            time.sleep(0.02)
        return None


def https_get(host, port, name, cafile=None, timeout=0.1):
    """An attempt function: GET / over a new TLS connection to host:port with SNI `name`;
    success is any HTTP status below 500."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    if not cafile:
        ctx.check_hostname = False

    def attempt():
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                            .encode())
                head = tls.recv(64)
        parts = head.split(b" ", 2)
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and int(parts[1]) < 500
    return attempt
