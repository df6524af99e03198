#!/usr/bin/env python3
"""The two backends side by side: the same store in a data directory and in
PostgreSQL, read and written the same way, in one run.

    python3 bench/backends.py              # 5 s reads, 200 writes each
    python3 bench/backends.py --smoke      # 1 s reads, 20 writes: checks the script works

A throwaway PostgreSQL (Debian's postgresql: initdb and pg_ctl in a temp
dir on a loopback port, as the postgres user when run as root; fsync on,
as in production) and a data directory each get the same store: a project
with the 200-file dataset of bench/dataset.py. One `cfgstore serve` per
backend (the release binary, on CPU 0; wrk on CPU 1). Measured:

- reads: wrk, 16 connections, one 0.5 KB raw file and the branches
  listing; req/s and p99;
- writes through the admin API: sequential PUTs of one file (each a new
  version), median and p99 ms;
- writes by the CLI: `cfgstore file put` of one file (a process each),
  median ms;
- long-poll wake: a poll parked on a file (`If-None-Match`, `wait=30`),
  the file changed by an admin PUT; ms from the PUT's start to the poll's
  answer. With PostgreSQL the poll waits on a second node (the change
  reaches it by the database's notification), with files on the same one.

Ratios are PostgreSQL / files: a read under 1.0 is the price of checking
the database's change marker on every request.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import Admin, ensure_tools, free_port, percentile, wait_http, wrk  # noqa: E402

PROJECT = "demo/b2b.cfg"
READ = "/site-builder/api/erp-config/projects/b2b.cfg/repository"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pg_bin():
    for d in sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0, reverse=True):
        b = os.path.join("/usr/lib/postgresql", d, "bin")
        if os.path.exists(os.path.join(b, "initdb")):
            return b
    raise SystemExit("PostgreSQL not installed: apt-get install postgresql")


class Postgres:
    """A throwaway server; stopped by `stop`."""

    def __init__(self, work):
        self.bin, self.dir, self.port = pg_bin(), os.path.join(work, "pg"), free_port()
        os.makedirs(self.dir)
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self.run("initdb", "-D", f"{self.dir}/data", "-U", "cfgstore", "-A", "trust", "--no-sync")
        self.run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}", "start")
        self.url = f"postgres://cfgstore@127.0.0.1:{self.port}/postgres"

    def run(self, tool, *args):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, cwd=self.dir, stdout=subprocess.DEVNULL)

    def stop(self):
        self.run("pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--writes", type=int, default=200, help="writes per backend and kind (default 200)")
    ap.add_argument("--smoke", action="store_true", help="1-second reads, 20 writes")
    args = ap.parse_args()
    if args.smoke:
        args.duration, args.writes = 1, 20
    ensure_tools()
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "cfgstore")
    work = tempfile.mkdtemp(prefix="cfgstore-backends-")
    os.chmod(work, 0o755)
    pg, procs = None, []
    try:
        files = os.path.join(work, "files")
        subprocess.run([sys.executable, os.path.join(HERE, "dataset.py"), files], check=True, stdout=subprocess.DEVNULL)
        pg = Postgres(work)
        stores = {
            "files": ["--data", os.path.join(work, "data")],
            "postgres": ["--store", pg.url, "--server-key-file", os.path.join(work, "server.key")],
        }
        rows = {}
        for name, flags in stores.items():
            rows[name] = measure(binary, flags, files, args, procs)
        print(report(rows, args))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(binary, flags, files, args, procs):
    def cli(*a, input=None):
        return subprocess.run([binary, *flags, *a], check=True, capture_output=True, input=input).stdout

    cli("init")
    cli("project", "create", "demo", "b2b", "--type", "cfg")
    cli("import", PROJECT, "main", os.path.join(files, "small"))
    cli("user", "add", "bench", "--password-stdin", "--role", "ROLE_SITEBUILDER_EDITOR__ROOT", input=b"bench-password-1\n")
    token = cli("token", "create", "--owner", "demo", "--name", "bench", "--json")
    import json
    token = json.loads(token)["token"]
    port = free_port()
    env = dict(os.environ, CFGSTORE_LOG="warn")
    procs.append(subprocess.Popen(["taskset", "-c", "0", binary, *flags, "serve", "--listen", f"127.0.0.1:{port}"],
                                  env=env, stderr=subprocess.DEVNULL))
    wait_http(port, "/site-builder/api/erp-config/health")
    base = f"http://127.0.0.1:{port}{READ}"
    first = "app.json"  # about 0.5 KB (bench/dataset.py)
    out = {}
    for label, url in [("file", f"{base}/files/{first}/raw?ref=main"), ("branches", f"{base}/branches")]:
        wrk(url, 16, 1, token)  # warm
        rate, p99, _ = wrk(url, 16, args.duration, token)
        out[label] = (rate, p99)
    admin = Admin(port, "bench", "bench-password-1")
    times = []
    for i in range(args.writes):
        t = time.perf_counter()
        admin.send("PUT", "/projects/demo%2Fb2b.cfg/branches/main/files/bench.json", f'{{"n": {i}}}'.encode())
        times.append((time.perf_counter() - t) * 1000)
    out["put"] = (statistics.median(times), percentile(times, 99))
    times = []
    for i in range(max(5, args.writes // 10)):
        t = time.perf_counter()
        cli("file", "put", PROJECT, "main", "cli.json", input=f'{{"n": {i}}}'.encode())
        times.append((time.perf_counter() - t) * 1000)
    out["cli"] = (statistics.median(times), percentile(times, 99))
    poll_port = port
    if "--store" in flags:
        poll_port = free_port()
        procs.append(subprocess.Popen([binary, *flags, "serve", "--listen", f"127.0.0.1:{poll_port}"],
                                      env=env, stderr=subprocess.DEVNULL))
        wait_http(poll_port, "/site-builder/api/erp-config/health")
    times = []
    for i in range(max(5, args.writes // 10)):
        times.append(wake_ms(poll_port, admin, token, i))
    out["wake"] = (statistics.median(times), percentile(times, 99))
    return out


def wake_ms(poll_port, admin, token, i):
    """One long poll parked on `poll_port`, answered by a PUT through `admin`."""
    import http.client
    import socket
    path = f"{READ}/files/poll.json/raw?ref=main"
    admin.send("PUT", "/projects/demo%2Fb2b.cfg/branches/main/files/poll.json", f'{{"round": {i}}}'.encode())
    c = http.client.HTTPConnection("127.0.0.1", poll_port)
    c.request("GET", path, headers={"PRIVATE-TOKEN": token})
    r = c.getresponse()
    r.read()
    tag = r.getheader("ETag")
    s = socket.create_connection(("127.0.0.1", poll_port))
    s.sendall(f"GET {path}&wait=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              f"PRIVATE-TOKEN: {token}\r\nIf-None-Match: {tag}\r\n\r\n".encode())
    time.sleep(0.05)  # parked
    t = time.perf_counter()
    admin.send("PUT", "/projects/demo%2Fb2b.cfg/branches/main/files/poll.json", f'{{"round": {i}, "next": 1}}'.encode())
    answer = s.recv(64)
    took = (time.perf_counter() - t) * 1000
    s.close()
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"long poll answered {answer!r}")
    return took


def report(rows, args):
    f, p = rows["files"], rows["postgres"]
    lines = [
        f"# Backends side by side ({args.duration} s reads, {args.writes} admin PUTs, "
        f"{max(5, args.writes // 10)} CLI puts each)",
        "",
        "| what | files | postgres | postgres / files |",
        "|---|---|---|---|",
    ]
    for label, name in [("file", "read: one 0.5 KB file, req/s"), ("branches", "read: branches listing, req/s")]:
        lines.append(f"| {name} | {f[label][0]:.0f} | {p[label][0]:.0f} | {p[label][0] / f[label][0]:.2f}x |")
        lines.append(f"| {name.replace('req/s', 'p99 ms')} | {f[label][1]:.2f} | {p[label][1]:.2f} | {p[label][1] / f[label][1]:.2f}x |")
    for label, name in [("put", "write: admin PUT"), ("cli", "write: cfgstore file put"),
                        ("wake", "long-poll wake after a PUT")]:
        lines.append(f"| {name}, median ms | {f[label][0]:.1f} | {p[label][0]:.1f} | {p[label][0] / f[label][0]:.2f}x |")
        lines.append(f"| {name}, p99 ms | {f[label][1]:.1f} | {p[label][1]:.1f} | {p[label][1] / f[label][1]:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
