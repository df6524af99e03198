#!/usr/bin/env python3
"""Response-time distributions of cfgstore and nginx, side by side.

    python3 bench/latency.py                       # 20 KB file, 1/4/16/64 connections, 3 rounds of 5 s
    python3 bench/latency.py --file app.json --rounds 5
    python3 bench/latency.py --binary /tmp/cfgstore-other

run.py reports one p99 per run; this prints the whole distribution
(p50 ... p99.9, mean, max) of both servers for the same file, alternating
server every run, and the medians over the rounds. Setup as in run.py:
the 200-file project, server on CPU 0, wrk (1 thread) on CPU 1, and the
busy share of wrk's CPU, since a client near 100 % adds its own queueing
to every figure it reports.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the suite's helpers: tools, processes, nginx)

PERCENTILES = (50, 75, 90, 99, 99.9)

DONE = """
done = function(summary, latency, requests)
  local parts = {string.format("%%.0f", summary.requests / (summary.duration / 1e6))}
  for _, p in ipairs({%s}) do parts[#parts + 1] = tostring(latency:percentile(p)) end
  parts[#parts + 1] = string.format("%%.0f", latency.mean)
  parts[#parts + 1] = tostring(latency.max)
  io.write("RESULT " .. table.concat(parts, " ") .. "\\n")
end
""" % ", ".join(str(p) for p in PERCENTILES)


def measure(url, conns, duration, token, script):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", script,
           "-H", f"PRIVATE-TOKEN: {token}", url]
    before = run.cpu_busy(1)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = run.cpu_busy(1)
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    values = [float(v) for v in line.split()[1:]]
    busy = (after[0] - before[0]) / max(1, after[1] - before[1])
    return values + [busy * 100]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default="big.json", help="file of the 200-file project (default big.json, 20 KB)")
    ap.add_argument("--conns", default="1,4,16,64", help="connection counts (default 1,4,16,64)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per server and count; medians reported (default 3)")
    ap.add_argument("--binary", help="cfgstore binary (default: build target/release/cfgstore)")
    args = ap.parse_args()
    run.ensure_tools()
    binary = args.binary
    if not binary:
        run.sh("cargo", "build", "--release", "--quiet", cwd=run.ROOT)
        binary = os.path.join(run.ROOT, "target", "release", "cfgstore")
    work = tempfile.mkdtemp(prefix="cfgstore-latency-")
    try:
        compare(args, binary, work)
    finally:
        for p in run.PROCS:
            run.stop(p)
        shutil.rmtree(work, ignore_errors=True)


def compare(args, binary, work):
    files, data = os.path.join(work, "files"), os.path.join(work, "store")
    subprocess.run([sys.executable, os.path.join(run.HERE, "dataset.py"), files], check=True, stdout=subprocess.DEVNULL)

    def cli(*a):
        return subprocess.run([binary, "--data", data, *a], check=True, capture_output=True, text=True).stdout

    cli("init")
    cli("project", "create", "bench", "small", "--type", "cfg")
    cli("import", "bench/small.cfg", "main", os.path.join(files, "small"))
    token = json.loads(cli("token", "create", "--owner", "bench", "--name", "latency", "--json"))["token"]
    port, nport = run.free_port(), run.free_port()
    run.start(["taskset", "-c", "0", binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"],
              env=dict(os.environ, CFGSTORE_LOG="warn"), stderr=subprocess.DEVNULL)
    run.wait_http(port, f"{run.READ}/health")
    run.start_nginx(work, files, nport, token)
    script = os.path.join(work, "done.lua")
    with open(script, "w") as f:
        f.write(DONE)
    urls = {
        "cfgstore": f"http://127.0.0.1:{port}{run.READ}/projects/bench%2Fsmall.cfg/repository/files/{args.file}/raw?ref=main",
        "nginx": f"http://127.0.0.1:{nport}/small/{args.file}",
    }
    for url in urls.values():
        measure(url, 16, 1, token, script)  # warm up
    heads = ["req/s"] + [f"p{p}" for p in PERCENTILES] + ["mean", "max", "wrk CPU %"]
    print(f"{args.file}, {args.rounds} rounds of {args.duration} s, medians; latencies in µs\n")
    print("| connections | server | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 2) + "|")
    for conns in [int(c) for c in args.conns.split(",")]:
        results = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(measure(url, conns, args.duration, token, script))
        for name, runs in results.items():
            medians = [statistics.median(column) for column in zip(*runs)]
            cells = [f"{medians[0]:,.0f}"] + [f"{v:,.0f}" for v in medians[1:]]
            print(f"| {conns} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
