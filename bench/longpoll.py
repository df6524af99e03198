#!/usr/bin/env python3
"""Long-poll: how fast a parked poll hears of a change, and what parked
polls cost.

    python3 bench/longpoll.py                 # 50 rounds per writer, 1,000 parked polls
    python3 bench/longpoll.py --crowd 10000   # 10,000 parked (max_connections raised to fit)
    python3 bench/longpoll.py --smoke         # 5 rounds, 100 parked: checks the script works

Measured against a `cfgstore serve` on 127.0.0.1 (the release binary,
built if needed) over a copy of the example store:

- wake latency: one poll parked on a raw file (`If-None-Match`,
  `?wait=30`); the file is changed through the admin API (a durable PUT)
  or by the CLI (another process). Reported: time from the start of the
  write to the poll's answer, and from the writer's own answer (the PUT's
  response, the CLI's exit) to the poll's.
- a crowd: N polls parked on one branch, one PUT; time until the last is
  answered.
- memory: the daemon's RSS growth for N open connections that sent
  nothing, and, in a fresh daemon, for N parked polls.
"""
import argparse
import http.client
import json
import os
import resource
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import Admin, free_port, percentile, rss_mb, wait_http  # noqa: E402

READ = "/site-builder/api/erp-config/projects/b2b-cnc.erp-config/repository"
RAW = READ + "/files/operations.config.json/raw?ref=main"
PUT = "/projects/b2b-cnc.erp-config/branches/main/files/operations.config.json"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Daemon:
    # Room for the crowd of parked polls (each holds a connection).
    max_connections = 1024

    def __init__(self, binary, data):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--data", data, "serve", "--listen", f"127.0.0.1:{self.port}"],
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, CFGSTORE_LOG="warn", CFGSTORE_MAX_CONNECTIONS=str(Daemon.max_connections)),
        )
        wait_http(self.port, "/health")

    def gauge(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        return int(re.search(r"^cfgstore_long_polls_parked (\d+)$", text, re.M).group(1))

    def wait_parked(self, n):
        deadline = time.time() + 30
        while self.gauge() < n:
            if time.time() > deadline:
                raise RuntimeError(f"only {self.gauge()} of {n} polls parked")
            time.sleep(0.005)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def request_bytes(token, etag=None, wait=None, site="plant-1"):
    """A poll from one site of a fleet sharing one token (one client may
    park at most 32 polls; sites differ by `X-Instance-Id`)."""
    path = RAW + (f"&wait={wait}" if wait else "")
    head = (f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
            f"PRIVATE-TOKEN: {token}\r\nX-Instance-Id: {site}\r\n")
    if etag:
        head += f"If-None-Match: {etag}\r\n"
    return (head + "\r\n").encode()


def current_etag(port, token):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", RAW, headers={"PRIVATE-TOKEN": token})
    r = c.getresponse()
    r.read()
    return r.getheader("ETag")


def read_all(sock):
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def wake_rounds(daemon, token, rounds, write):
    """Parks one poll, runs `write` (which returns when the writer is
    done), and times the poll's answer."""
    from_start, from_writer = [], []
    for i in range(rounds):
        etag = current_etag(daemon.port, token)
        s = socket.create_connection(("127.0.0.1", daemon.port))
        s.sendall(request_bytes(token, etag, wait=30))
        daemon.wait_parked(1)
        answered = {}

        def reader():
            s.recv(1)  # the first byte of the answer
            answered["at"] = time.perf_counter()

        t = threading.Thread(target=reader)
        t.start()
        started = time.perf_counter()
        write(i)
        writer_done = time.perf_counter()
        t.join(30)
        rest = read_all(s)
        s.close()
        if "at" not in answered or b" 200 " not in b"H" + rest[:20]:
            raise RuntimeError(f"round {i}: the poll was not answered 200: {rest[:80]!r}")
        from_start.append((answered["at"] - started) * 1000)
        from_writer.append((answered["at"] - writer_done) * 1000)
    return from_start, from_writer


def crowd(daemon, token, n, admin):
    """N polls parked on one file; one PUT; ms until the last answer."""
    etag = current_etag(daemon.port, token)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", daemon.port))
        s.sendall(request_bytes(token, etag, wait=60, site=f"site-{i}"))
        socks.append(s)
    daemon.wait_parked(n)
    started = time.perf_counter()
    admin.send("PUT", PUT, json.dumps({"maxParallelJobs": 1000 + n}).encode())
    # epoll, not select(): thousands of sockets are past select's limit.
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    pending = len(socks)
    answers = {}
    while pending:
        ready = sel.select(30)
        if not ready:
            raise RuntimeError(f"{pending} polls unanswered after 30 s")
        for key, _ in ready:
            s = key.fileobj
            b = s.recv(65536)
            answers.setdefault(s.fileno(), bytearray()).extend(b)
            if not b:
                sel.unregister(s)
                pending -= 1
    sel.close()
    last = (time.perf_counter() - started) * 1000
    ok = sum(1 for a in answers.values() if a.startswith(b"HTTP/1.1 200"))
    for s in socks:
        s.close()
    if ok != n:
        raise RuntimeError(f"{n - ok} of {n} polls not answered 200")
    return last


def memory(binary, data, token, n, parked):
    """RSS growth (KiB per connection) of a fresh daemon holding N
    connections: parked polls, or connections that sent nothing."""
    d = Daemon(binary, data)
    try:
        etag = current_etag(d.port, token)
        time.sleep(0.3)
        before = rss_mb(d.proc.pid)
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", d.port))
            if parked:
                s.sendall(request_bytes(token, etag, wait=60, site=f"site-{i}"))
            socks.append(s)
        if parked:
            d.wait_parked(n)
        else:
            time.sleep(1)
        after = rss_mb(d.proc.pid)
        for s in socks:
            s.close()
        return (after - before) * 1024 / n
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50, help="wake measurements per writer (default 50)")
    ap.add_argument("--crowd", type=int, default=1000, help="polls parked at once (default 1000)")
    ap.add_argument("--smoke", action="store_true", help="5 rounds, 100 parked polls")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.crowd = 5, 100
    Daemon.max_connections = max(1024, args.crowd + 100)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.crowd * 2 + 100)), hard))
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "cfgstore")
    with tempfile.TemporaryDirectory(prefix="cfgstore-longpoll-") as work:
        data = os.path.join(work, "store")

        def cli(*a, input=None):
            return subprocess.run([binary, "--data", data, *a], check=True, capture_output=True, input=input).stdout

        cli("init", "--example")
        token = json.loads(cli("token", "create", "--owner", "demo", "--name", "bench", "--json"))["token"]
        cli("user", "add", "demo", "--password-stdin", input=b"demo-password\n")
        daemon = Daemon(binary, data)
        try:
            admin = Admin(daemon.port, "demo", "demo-password")
            api = wake_rounds(daemon, token, args.rounds, lambda i: admin.send(
                "PUT", PUT, json.dumps({"maxParallelJobs": i}).encode()))
            log(f"admin API: {statistics.median(api[0]):.2f} ms")
            cmd = wake_rounds(daemon, token, args.rounds, lambda i: cli(
                "file", "put", "demo/b2b-cnc.erp-config", "main", "operations.config.json",
                input=json.dumps({"maxParallelJobs": 500 + i}).encode()))
            log(f"CLI: {statistics.median(cmd[0]):.2f} ms")
            last = crowd(daemon, token, args.crowd, admin)
            log(f"crowd: {last:.1f} ms")
        finally:
            daemon.stop()
        idle = memory(binary, data, token, args.crowd, parked=False)
        parked = memory(binary, data, token, args.crowd, parked=True)

    row = lambda name, v: f"| {name} | {statistics.median(v):.2f} | {percentile(v, 99):.2f} |"
    print(f"""## Long-poll

{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `python3 bench/longpoll.py --rounds {args.rounds} --crowd {args.crowd}`.

Wake latency, one poll parked on a raw file, {args.rounds} rounds per writer (ms):

| measured | median | p99 |
|---|---|---|
{row("admin API PUT: write start → poll answered", api[0])}
{row("admin API PUT: PUT answered → poll answered", api[1])}
{row("CLI `file put`: command start → poll answered", cmd[0])}
{row("CLI `file put`: command exited → poll answered", cmd[1])}

{args.crowd:,} polls parked on one file, one admin API PUT: the last answered {last:.1f} ms after the PUT was sent.

Daemon memory (RSS growth of a fresh daemon, per connection): {args.crowd:,} open connections that sent nothing
{idle:.1f} KiB each; {args.crowd:,} parked polls {parked:.1f} KiB each.
""")


if __name__ == "__main__":
    main()
