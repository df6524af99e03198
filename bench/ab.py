#!/usr/bin/env python3
"""A/B of two cfgstore builds on one store, side by side.

    cargo build --release && cp target/release/cfgstore /tmp/cfgstore-a
    # ... change something ...
    cargo build --release && cp target/release/cfgstore /tmp/cfgstore-b
    python3 bench/ab.py /tmp/cfgstore-a /tmp/cfgstore-b            # 20 KB file, 16 conns
    python3 bench/ab.py A B --file app.json --conns 64 --rounds 5

The two binaries serve the same store in turn (server on CPU 0, wrk on
CPU 1, as in run.py), alternating for every round, so that drift of the
shared machine hits both alike. Prints each run and the medians and the
ratio B/A. It is how an optimisation's gain is checked before a full
`run.py`; BENCHMARKS.md quotes such A/B figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import shutil
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the suite's helpers: tools, processes, wrk)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="first cfgstore binary")
    ap.add_argument("b", help="second cfgstore binary")
    ap.add_argument("--file", default="big.json", help="file of the 200-file project (default big.json, 20 KB)")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--duration", type=int, default=4, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run.ensure_tools()
    work = tempfile.mkdtemp(prefix="cfgstore-ab-")
    try:
        compare(args, work)
    finally:
        for p in run.PROCS:
            run.stop(p)
        shutil.rmtree(work, ignore_errors=True)


def compare(args, work):
    files = os.path.join(work, "files")
    subprocess.run([sys.executable, os.path.join(run.HERE, "dataset.py"), files], check=True, stdout=subprocess.DEVNULL)

    # Each build makes and serves its own store (same files): a newer
    # build writes a store format an older one refuses.
    stores, tokens = {}, {}
    for binary in (args.a, args.b):
        store = stores[binary] = os.path.join(work, f"store-{len(stores)}")

        def cli(*a):
            return subprocess.run([binary, "--data", store, *a], check=True, capture_output=True, text=True).stdout

        cli("init")
        cli("project", "create", "bench", "small", "--type", "cfg")
        cli("import", "bench/small.cfg", "main", os.path.join(files, "small"))
        tokens[binary] = json.loads(cli("token", "create", "--owner", "bench", "--name", "ab", "--json"))["token"]
    port = run.free_port()
    url = f"http://127.0.0.1:{port}{run.READ}/projects/bench%2Fsmall.cfg/repository/files/{args.file}/raw?ref=main"
    env = dict(os.environ, CFGSTORE_LOG="warn")
    results = {args.a: [], args.b: []}
    for round_ in range(args.rounds):
        for binary in (args.a, args.b):
            server = run.start(
                ["taskset", "-c", "0", binary, "--data", stores[binary], "serve", "--listen", f"127.0.0.1:{port}"],
                env=env, stderr=subprocess.DEVNULL,
            )
            run.wait_http(port, f"{run.READ}/health")
            run.wrk(url, args.conns, 1, tokens[binary])  # warm the cache
            rate, p99, _ = run.wrk(url, args.conns, args.duration, tokens[binary])
            run.stop(server)
            time.sleep(0.2)
            results[binary].append((rate, p99))
            print(f"round {round_ + 1}  {os.path.basename(binary):24} {rate:10,.0f} req/s  p99 {p99:.2f} ms", flush=True)
    ra = statistics.median(r for r, _ in results[args.a])
    rb = statistics.median(r for r, _ in results[args.b])
    pa = statistics.median(p for _, p in results[args.a])
    pb = statistics.median(p for _, p in results[args.b])
    print(f"\nmedian  A {ra:,.0f} req/s (p99 {pa:.2f} ms)   B {rb:,.0f} req/s (p99 {pb:.2f} ms)   B/A {rb / ra:.3f}")


if __name__ == "__main__":
    main()
