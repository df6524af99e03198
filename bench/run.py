#!/usr/bin/env python3
"""cfgstore's benchmark suite: reads against nginx side by side, writes,
resources. Everything binds 127.0.0.1 and everything it starts is stopped
before it exits (also on Ctrl-C).

    python3 bench/run.py                 # 10 s per scenario, median of 3 runs
    python3 bench/run.py --smoke         # 1 s, 1 run: checks the suite works
    python3 bench/run.py --duration 5 --runs 3 --out bench/results/mine.md
    python3 bench/run.py --files --runs 5   # only the reads against nginx

Needs wrk and nginx (installed with apt-get when missing, as root) and a
Rust toolchain (builds target/release/cfgstore and bench/pace.rs, the
fixed-rate client). The server (cfgstore or nginx, one worker each) is
pinned to CPU 0 and the client (wrk or pace) to CPU 1 with taskset.
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
READ = "/site-builder/api/erp-config"
PROCS = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    missing = [t for t in ("wrk", "nginx", "taskset") if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        log(f"installing {' '.join(missing)} from Debian's packages")
        sh("apt-get", "update", "-qq")
        pkgs = {"wrk": "wrk", "nginx": "nginx-light", "taskset": "util-linux"}
        sh("apt-get", "install", "-y", "-qq", *[pkgs[m] for m in missing], stdout=subprocess.DEVNULL)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(port, path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"nothing answered on {port}{path}")


def start(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    PROCS.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_pids(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Peak RSS of a process while a load runs."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.1)


def cpu_busy(cpu):
    """(busy, total) jiffies of one CPU so far, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]  # idle + iowait
                return sum(v[:8]) - idle, sum(v[:8])
    return 0, 1


LOAD_CPU_BUSY = []  # the load generator's CPU, busy share of each wrk run
FIXED_SHARE = 0.5  # the fixed-rate runs' rate, as a share of the slower server's


def wrk(url, conns, duration, token, script=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-H", f"PRIVATE-TOKEN: {token}"]
    if script:
        cmd += ["-s", script]
    before = cpu_busy(1)
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    after = cpu_busy(1)
    LOAD_CPU_BUSY.append((after[0] - before[0]) / max(1, after[1] - before[1]))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: (.*)", out)
    if errors or sock:
        raise RuntimeError(f"{url}: {errors} non-2xx responses, socket errors: {sock.group(1) if sock else 0}\n{out}")
    return rate, p99, total


PACE = os.path.join(ROOT, "target", "release", "examples", "pace")


def pace(url, target, rate, conns, duration, token):
    """Requests at one fixed `rate` from bench/pace.rs (open loop, latency
    from each request's due time), on CPU 1: (p99 ms, the client's own p99
    lateness in ms). The client spins between sends, so its CPU is always
    busy; its lateness is what says whether it kept to the schedule. With
    `rate` None, a closed loop as wrk's (latency from each send): (p99 ms,
    requests/s, the share of the time the client spent sending and
    receiving)."""
    addr = urllib.parse.urlsplit(url).netloc
    cmd = ["taskset", "-c", "1", PACE, "--addr", addr, "--connections", str(conns),
           "--seconds", str(duration), "--header", f"PRIVATE-TOKEN: {token}", "--target", target]
    cmd += ["--closed"] if rate is None else ["--rate", f"{rate:.0f}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {run.stderr.strip()}")
    out = json.loads(run.stdout)
    if out["not_ok"]:
        raise RuntimeError(f"{url}{target}: {out['not_ok']} answers not 2xx/3xx")
    if rate is None:
        return out["p99_us"] / 1000, out["rate"], out["client_busy"]
    return out["p99_us"] / 1000, out["send_lag_p99_us"] / 1000


def start_nginx(work, files, port, token):
    """nginx (1 worker, on CPU 0) serving `files` on 127.0.0.1:`port` with
    cfgstore's token check: a request without `PRIVATE-TOKEN: token` is
    answered 401. Tuned as an operator serving static files would tune it
    (the strongest ordinary configuration is the honest peer): open file
    descriptors and their stat results cached, sendfile, no Nagle delay,
    keep-alive without a request limit, no ETag work. Returns the worker's
    pid."""
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=10000 inactive=60s;
  open_file_cache_valid 60s;
  etag off;
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  server {{
    listen 127.0.0.1:{port};
    root {files};
    location / {{
      if ($http_private_token != "{token}") {{ return 401; }}
      try_files $uri =404;
    }}
  }}
}}
""")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx = start(["taskset", "-c", "0", nginx_bin, "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
    wait_http(port, "/")
    return (children_pids(nginx.pid) or [nginx.pid])[0]


def random_targets(path, list_file, prefix, suffix, encode):
    """Writes to `path` one request target per line of `list_file`: the
    line (percent-encoded as GitLab clients encode a file path, if
    `encode`) between `prefix` and `suffix`. Returns `path`."""
    with open(list_file) as src, open(path, "w") as f:
        for line in src:
            line = line.rstrip("\n")
            f.write(prefix + (urllib.parse.quote(line, safe="-._~") if encode else line) + suffix + "\n")
    return path


def lua_random(path, targets):
    """A wrk script requesting a random target of the file `targets` each time."""
    with open(path, "w") as f:
        f.write(f"""
-- Whole requests made once: wrk's own CPU is the bottleneck at these
-- rates, and escaping or formatting per request would spend it (more for
-- cfgstore's longer paths than for nginx's) instead of measuring servers.
-- (`init` runs once per thread, after wrk has set its headers.)
local targets = {{}}
for line in io.lines("{targets}") do targets[#targets + 1] = line end
local requests = {{}}
init = function(args)
  for i, target in ipairs(targets) do requests[i] = wrk.format("GET", target) end
end
math.randomseed(42)
request = function()
  return requests[math.random(#requests)]
end
""")
    return path


def lua_pages(path, prefix, pages):
    with open(path, "w") as f:
        f.write(f"""
local requests = {{}}
init = function(args)
  for page = 1, {pages} do requests[page] = wrk.format("GET", "{prefix}" .. page) end
end
math.randomseed(7)
request = function()
  return requests[math.random({pages})]
end
""")
    return path


class Admin:
    """A logged-in admin API session (for the write scenarios)."""

    def __init__(self, port, user, password):
        self.port = port
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/site-builder/api/user/login", json.dumps({"username": user, "password": password}), {"Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        self.cookie = r.getheader("Set-Cookie").split(";")[0]
        self.csrf = body["csrf_token"]
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def send(self, method, path, body=b""):
        self.conn.request(method, "/site-builder/api" + path, body, {"Cookie": self.cookie, "X-CSRF-Token": self.csrf})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
        return json.loads(data) if data else None


def in_pairs(n, ours, theirs):
    """`n` pairs of runs, one of each server per pair, the first of each
    pair taking turns (cfgstore first, then nginx first, ...), so that the
    machine's slow swings fall on both servers alike: (our results, their
    results), in order."""
    mine, yours = [], []
    for i in range(n):
        if i % 2 == 0:
            mine.append(ours())
        yours.append(theirs())
        if i % 2 == 1:
            mine.append(ours())
    return mine, yours


def sign_test(k, n):
    """Two-sided exact sign test: the chance of a split at least as uneven
    as `k` of `n` pairs if each pair were a coin toss (the two servers'
    p99 alike). Small (below 0.05): the split is unlikely to be chance."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs per scenario; the median is reported (default 3)")
    ap.add_argument("--smoke", action="store_true", help="1-second runs, one each: proves the suite works")
    ap.add_argument("--files", action="store_true",
                    help="of the read scenarios, only the file reads (those measured against nginx)")
    ap.add_argument("--only", metavar="TEXT", help="only the read scenarios whose name contains TEXT (e.g. branches)")
    ap.add_argument("--pace-seconds", type=float, default=4,
                    help="seconds per fixed-rate run (bench/pace.rs; default 4)")
    ap.add_argument("--pace-runs", type=int, default=7,
                    help="fixed-rate runs per server and scenario; the median is reported (default 7)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"))
    args = ap.parse_args()
    if args.smoke:
        args.duration, args.runs, args.pace_seconds, args.pace_runs = 1, 1, 1, 1
    ensure_tools()
    log("building the release binary")
    sh("cargo", "build", "--release", "--quiet", "--bin", "cfgstore", "--example", "pace", cwd=ROOT)
    binary = os.path.join(ROOT, "target", "release", "cfgstore")
    work = tempfile.mkdtemp(prefix="cfgstore-bench-")
    try:
        report = run_suite(args, binary, work)
    finally:
        for p in PROCS:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(report)
    log(f"written to {args.out}")


def run_suite(args, binary, work):
    files = os.path.join(work, "files")
    data = os.path.join(work, "store")
    sh(sys.executable, os.path.join(HERE, "dataset.py"), files, stdout=subprocess.DEVNULL)

    def cli(*a, input=None):
        return subprocess.run([binary, "--data", data, *a], check=True, capture_output=True, input=input).stdout

    cli("init")
    timings = {}
    for name in ("small", "large"):
        cli("project", "create", "bench", name, "--type", "cfg")
        started = time.time()
        cli("import", f"bench/{name}.cfg", "main", os.path.join(files, name))
        timings[f"import {name}"] = time.time() - started
    token = json.loads(cli("token", "create", "--owner", "bench", "--name", "bench", "--json"))["token"]
    cli("user", "add", "bench", "--password-stdin", input=b"bench-password\n")

    # Startup to ready, on the store with the 20,000-file branch.
    port = free_port()
    env = dict(os.environ, CFGSTORE_LOG="warn")
    serve = ["taskset", "-c", "0", binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"]
    startups = []
    for _ in range(3):
        started = time.time()
        p = start(serve, env=env, stderr=subprocess.DEVNULL)
        wait_http(port, f"{READ}/health")
        startups.append((time.time() - started) * 1000)
        stop(p)
    server = start(serve, env=env, stderr=subprocess.DEVNULL)
    wait_http(port, f"{READ}/health")
    time.sleep(0.5)
    idle_rss = rss_mb(server.pid)

    # nginx serving the same files, with an equivalent token check, and
    # each branches listing as the static file of its bytes.
    os.makedirs(os.path.join(files, "branches"), exist_ok=True)
    for name in ("small", "large"):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", f"{READ}/projects/{name}.cfg/repository/branches", headers={"PRIVATE-TOKEN": token})
        with open(os.path.join(files, "branches", f"{name}.json"), "wb") as f:
            f.write(c.getresponse().read())
    nport = free_port()
    nginx_pid = start_nginx(work, files, nport, token)

    base = f"http://127.0.0.1:{port}"
    nbase = f"http://127.0.0.1:{nport}"
    files_url = f"{READ}/projects/{{}}/repository/files/"
    small_list = os.path.join(files, "small.paths")
    large_list = os.path.join(files, "large.paths")
    scripts = os.path.join(work, "lua")
    os.makedirs(scripts)
    tree_entries = sum(1 for _ in open(large_list))
    tree_pages = 300  # folders and files, 100 per page: safely inside the listing
    small_targets = random_targets(f"{scripts}/small.targets", small_list, files_url.format("small.cfg"), "/raw?ref=main", True)
    large_targets = random_targets(f"{scripts}/large.targets", large_list, files_url.format("large.cfg"), "/raw?ref=main", True)
    nsmall_targets = random_targets(f"{scripts}/nsmall.targets", small_list, "/small/", "", False)
    nlarge_targets = random_targets(f"{scripts}/nlarge.targets", large_list, "/large/", "", False)
    # (name, cfgstore's load, nginx's load or None); a load is (base URL,
    # wrk script or None, the target or @file of targets bench/pace.rs sends).
    one = lambda base, target: (f"{base}{target}", None, target)
    some = lambda base, script, targets: (base, lua_random(script, targets), f"@{targets}")
    read_scenarios = [
        ("one small file (0.5 KB)", one(base, f"{files_url.format('small.cfg')}app.json/raw?ref=main"), one(nbase, "/small/app.json")),
        ("one 20 KB file", one(base, f"{files_url.format('small.cfg')}big.json/raw?ref=main"), one(nbase, "/small/big.json")),
        ("random file of 200", some(base, f"{scripts}/s.lua", small_targets), some(nbase, f"{scripts}/ns.lua", nsmall_targets)),
        ("random file of 20,000", some(base, f"{scripts}/l.lua", large_targets), some(nbase, f"{scripts}/nl.lua", nlarge_targets)),
        # nginx serves the very bytes cfgstore answers, as a static file.
        ("branches, 200-file project", one(base, f"{READ}/projects/small.cfg/repository/branches"), one(nbase, "/branches/small.json")),
        ("branches, 20,000-file project", one(base, f"{READ}/projects/large.cfg/repository/branches"), one(nbase, "/branches/large.json")),
        ("recursive tree of 20,000, per_page=100",
         (base, lua_pages(f"{scripts}/t.lua", f"{READ}/projects/large.cfg/repository/tree?recursive=true&per_page=100&page=", tree_pages), None), None),
    ]
    if args.files:
        read_scenarios = [s for s in read_scenarios if s[2]]
    if args.only:
        read_scenarios = [s for s in read_scenarios if args.only in s[0]]
    rows = []
    cpu_rows = []
    run_rows = []
    fixed_rows = []
    closed_rows = []
    cpu_per_request = []
    load_rss = 0.0
    for name, (url, script, target), theirs_load in read_scenarios:
        nurl, nscript, ntarget = theirs_load or (None, None, None)
        # Warm-up (2 s), unmeasured, for both servers: the first pass over the
        # 20,000 files fills cfgstore's read cache and nginx's open-file
        # cache; what is compared is how each serves once warm.
        wrk(url, 16, 2, token, script)
        if nurl:
            wrk(nurl, 16, 2, token, nscript)
        for conns in (16, 64):
            ours, theirs = [], []
            for _ in range(args.runs):
                sampler = Sampler(server.pid)
                sampler.start()
                before = cpu_ticks(server.pid)
                rate, p99, total = wrk(url, conns, args.duration, token, script)
                busy = LOAD_CPU_BUSY[-1]
                ticks = cpu_ticks(server.pid) - before
                sampler.running = False
                load_rss = max(load_rss, sampler.peak)
                cpu_per_request.append(ticks / os.sysconf("SC_CLK_TCK") / max(total, 1) * 1e6)
                ours.append((rate, p99, busy, cpu_per_request[-1]))
                if nurl:
                    nbefore = cpu_ticks(nginx_pid)
                    nrate, np99, ntotal = wrk(nurl, conns, args.duration, token, nscript)
                    ncpu = (cpu_ticks(nginx_pid) - nbefore) / os.sysconf("SC_CLK_TCK") / max(ntotal, 1) * 1e6
                    theirs.append((nrate, np99, LOAD_CPU_BUSY[-1], ncpu))
            each = lambda runs: " / ".join(f"{r:,.0f} ({p:.2f}, {b:.0%})" for r, p, b, _ in runs)
            run_rows.append(f"| {name} | {conns} | {each(ours)} | {each(theirs)} |")
            rate = statistics.median(r for r, _, _, _ in ours)
            p99 = statistics.median(p for _, p, _, _ in ours)
            cpu = statistics.median(c for _, _, _, c in ours)
            if theirs:
                nrate = statistics.median(r for r, _, _, _ in theirs)
                np99 = statistics.median(p for _, p, _, _ in theirs)
                ncpu = statistics.median(c for _, _, _, c in theirs)
                rows.append(f"| {name} | {conns} | {rate:,.0f} | {nrate:,.0f} | {rate / nrate:.2f} | {p99:.2f} | {np99:.2f} |")
                cpu_rows.append(f"| {name} | {conns} | {cpu:.1f} | {ncpu:.1f} | {cpu / max(ncpu, 0.001):.2f} |")
                log(rows[-1])
                # The same closed loop as wrk's from a client that costs
                # less per request (no Lua, no timers): whether a closed-loop
                # tail is the server's or wrk's own queue.
                closed, nclosed = in_pairs(
                    args.runs,
                    lambda: pace(url, target, None, conns, args.pace_seconds, token),
                    lambda: pace(nurl, ntarget, None, conns, args.pace_seconds, token))
                crate = statistics.median(r for _, r, _ in closed)
                ncrate = statistics.median(r for _, r, _ in nclosed)
                cp99 = statistics.median(p for p, _, _ in closed)
                ncp99 = statistics.median(p for p, _, _ in nclosed)
                cbusy = statistics.median(b for _, _, b in closed)
                ncbusy = statistics.median(b for _, _, b in nclosed)
                closed_rows.append(
                    f"| {name} | {conns} | {crate:,.0f} | {ncrate:,.0f} | {crate / ncrate:.2f} "
                    f"| {cp99:.2f} | {ncp99:.2f} | {cp99 / max(ncp99, 0.001):.2f} | {cbusy:.0%} / {ncbusy:.0%} "
                    f"| {' / '.join(f'{p:.2f}' for p, _, _ in closed)} | {' / '.join(f'{p:.2f}' for p, _, _ in nclosed)} |")
                log(closed_rows[-1])
                # The same request mix at one fixed rate for both servers,
                # half the lower of their two rates above: below both
                # maxima, so neither the client nor either server saturates,
                # and each p99 is that server's own at the same load. Many
                # short runs in pairs: their median is what a few stalls of
                # the host cannot move.
                fixed = FIXED_SHARE * min(rate, nrate)
                paced, npaced = in_pairs(
                    args.pace_runs,
                    lambda: pace(url, target, fixed, conns, args.pace_seconds, token),
                    lambda: pace(nurl, ntarget, fixed, conns, args.pace_seconds, token))
                lag = lambda runs: max(l for _, l in runs)
                fp99 = statistics.median(p for p, _ in paced)
                nfp99 = statistics.median(p for p, _ in npaced)
                lower = sum(1 for (p, _), (np, _) in zip(paced, npaced) if p < np)
                higher = sum(1 for (p, _), (np, _) in zip(paced, npaced) if p > np)
                equal = len(paced) - lower - higher
                fixed_rows.append(
                    f"| {name} | {conns} | {fixed:,.0f} | {fp99:.2f} | {nfp99:.2f} | {fp99 / max(nfp99, 0.001):.2f} "
                    f"| {lower} of {len(paced)}{f', {equal} equal' if equal else ''} "
                    f"| {sign_test(lower, lower + higher):.2f} "
                    f"| {' / '.join(f'{p:.2f}' for p, _ in paced)} "
                    f"| {' / '.join(f'{p:.2f}' for p, _ in npaced)} | {lag(paced):.3f} / {lag(npaced):.3f} |")
                log(fixed_rows[-1])
            else:
                rows.append(f"| {name} | {conns} | {rate:,.0f} | | | {p99:.2f} | |")
                cpu_rows.append(f"| {name} | {conns} | {cpu:.1f} | | |")
                log(rows[-1])

    # Writes: durable PUTs and rollbacks through the admin API.
    admin = Admin(port, "bench", "bench-password")
    n_puts = 10 if args.smoke else 200
    write_rows = []
    for name in ("small", "large"):
        puts, rollbacks = [], []
        for i in range(n_puts):
            body = json.dumps({"put": i, "pad": "z" * 2000}).encode()
            started = time.perf_counter()
            outcome = admin.send("PUT", f"/projects/{name}.cfg/branches/main/files/bench%2Fput.json", body)
            puts.append((time.perf_counter() - started) * 1000)
            if i % 5 == 0:
                started = time.perf_counter()
                admin.send("POST", f"/projects/{name}.cfg/branches/main/rollback?to={outcome['snapshot']}")
                rollbacks.append((time.perf_counter() - started) * 1000)
        files_n = 200 if name == "small" else 20000
        write_rows.append(f"| PUT, {files_n:,}-file branch | {len(puts)} | {statistics.median(puts):.2f} | {percentile(puts, 99):.2f} |")
        write_rows.append(f"| rollback, {files_n:,}-file branch | {len(rollbacks)} | {statistics.median(rollbacks):.2f} | {percentile(rollbacks, 99):.2f} |")
        log(write_rows[-2])
        log(write_rows[-1])

    nginx_rss = rss_mb(nginx_pid)
    stop(server)
    cpu = statistics.median(cpu_per_request)
    machine = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    cpus = os.cpu_count()
    return f"""# Benchmark run

{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}; {cpus} CPUs; server on CPU 0, wrk (1 thread) on CPU 1.
`python3 bench/run.py --duration {args.duration} --runs {args.runs}`: each figure is the median of {args.runs} run(s) of {args.duration} s.
Both servers check the same `PRIVATE-TOKEN` header; nginx (1 worker, access log off, tuned: `open_file_cache max=10000 inactive=60s`,
`open_file_cache_valid 60s`, `sendfile`, `tcp_nopush`, `tcp_nodelay`, `keepalive_requests 1000000`, `etag off`) serves the same files
from disk, and each branches listing as a static file holding the bytes cfgstore answers.

## Reads (requests/s, p99 latency in ms)

Closed loop (wrk): each server at its own maximum; each p99 is taken at that server's own rate.

| scenario | connections | cfgstore | nginx | cfgstore/nginx | cfgstore p99 | nginx p99 |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Server CPU per request (µs of user + system time of the serving process, from /proc, over each run; medians):

| scenario | connections | cfgstore | nginx | cfgstore/nginx |
|---|---|---|---|---|
{chr(10).join(cpu_rows)}

## Reads in a closed loop from bench/pace.rs (requests/s, p99 latency in ms)

The closed loop of the first table (each connection sends its next request as soon as its answer is in), from
`pace --closed` instead of wrk: a client that costs less per request than wrk with a Lua script, so less of its p99 is the
client's own queue; but on a machine of two CPUs no client keeps up with either server unloaded. "client busy" is the share
of the time `pace` spent sending and receiving rather than waiting for answers: near 100 %, its own queue is part of every
latency, and more of it the faster the server. Medians of {args.runs} run(s) of {args.pace_seconds:g} s per server, alternating.

| scenario | connections | cfgstore req/s | nginx req/s | cfgstore/nginx | cfgstore p99 | nginx p99 | cfgstore/nginx | client busy, cfgstore / nginx | cfgstore runs | nginx runs |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(closed_rows)}

## Reads at one fixed rate (p99 latency in ms)

The same requests at one fixed rate for both servers, half the lower of their two wrk rates in the first table, from bench/pace.rs
(open loop: each connection's requests are due at even intervals, and a request's latency runs from when it was due,
so a stall that holds up sending counts too). This is where the two servers' p99 is compared: at one load. Closed-loop
wrk runs each server at its own maximum, cfgstore's higher, with wrk itself the bottleneck, so the p99 in the first table
is taken at two different loads and mixes the server's time with wrk's queue; here neither client nor server is saturated.
Medians of {args.pace_runs} run(s) of {args.pace_seconds:g} s per server, in pairs whose first run takes turns (cfgstore first, then nginx
first, ...), so that the machine's swings fall on both alike; "cfgstore lower" counts the pairs in which cfgstore's p99 was
the lower (pairs with both equal are counted apart), and "chance" is the two-sided sign test's p over the unequal pairs:
how likely a split at least as uneven is if the two servers' p99 were alike (below 0.05, taken on its own, the difference
is unlikely to be the machine's noise; near 1, the pairs give no evidence either way). The client spins between sends; its own lateness (p99 of how long after a request was due, or its
connection free, it went out; ms, the worst run, cfgstore / nginx) shows it kept to the schedule.

| scenario | connections | rate | cfgstore p99 | nginx p99 | cfgstore/nginx | cfgstore lower | chance | cfgstore runs | nginx runs | client lateness |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(fixed_rows)}

The recursive tree of the 20,000-file branch ({tree_entries:,} files) is read as clients page it: random pages of 100.

Every run, in the order run (cfgstore and nginx alternate): requests/s (p99 ms, how busy wrk's own CPU was).
wrk's latency includes its own waiting: the closer its CPU is to 100 %, the more of a p99 is the client's.

| scenario | connections | cfgstore runs | nginx runs |
|---|---|---|---|
{chr(10).join(run_rows)}

## Writes (durable: fsync before the answer; ms)

| operation | count | p50 | p99 |
|---|---|---|---|
{chr(10).join(write_rows)}

## Resources

| measure | value |
|---|---|
| startup to ready, store with the 20,000-file branch (median of 3) | {statistics.median(startups):.0f} ms |
| RSS idle | {idle_rss:.1f} MB |
| RSS under load (peak) | {load_rss:.1f} MB |
| nginx worker RSS after the runs | {nginx_rss:.1f} MB |
| CPU per read request (median over scenarios) | {cpu:.1f} µs |
| import of 200 files / 20,000 files (CLI) | {timings['import small'] * 1000:.0f} ms / {timings['import large']:.1f} s |
"""


if __name__ == "__main__":
    main()
