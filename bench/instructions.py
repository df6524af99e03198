#!/usr/bin/env python3
"""User-space instructions per read request of two cfgstore builds, counted
by valgrind's callgrind: deterministic, so a change of a few per cent shows
where wrk's throughput on this shared machine swings by ten.

    cargo build --release && cp target/release/cfgstore /tmp/cfgstore-a
    # ... change something ...
    cargo build --release && cp target/release/cfgstore /tmp/cfgstore-b
    python3 bench/instructions.py /tmp/cfgstore-a /tmp/cfgstore-b            # 0.5 KB file
    python3 bench/instructions.py A B --file big.json

Each build serves the same store under callgrind twice, answering 500 and
2,500 keep-alive GETs of one file; the difference over 2,000 requests is
the cost of a request without the start-up. Kernel time (the socket
writes, about half a request's CPU) is not counted. Needs valgrind
(`apt-get install valgrind`).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the suite's helpers)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="first cfgstore binary")
    ap.add_argument("b", help="second cfgstore binary")
    ap.add_argument("--file", default="app.json", help="file of the 200-file project (default app.json, 0.5 KB)")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed: apt-get install valgrind")
    work = tempfile.mkdtemp(prefix="cfgstore-instr-")
    try:
        files, data = os.path.join(work, "files"), os.path.join(work, "store")
        subprocess.run([sys.executable, os.path.join(run.HERE, "dataset.py"), files], check=True, stdout=subprocess.DEVNULL)

        def cli(*a):
            return subprocess.run([args.a, "--data", data, *a], check=True, capture_output=True, text=True).stdout

        cli("init")
        cli("project", "create", "bench", "small", "--type", "cfg")
        cli("import", "bench/small.cfg", "main", os.path.join(files, "small"))
        token = json.loads(cli("token", "create", "--owner", "bench", "--name", "instr", "--json"))["token"]
        path = f"{run.READ}/projects/bench%2Fsmall.cfg/repository/files/{args.file}/raw?ref=main"
        counts = {}
        for binary in (args.a, args.b):
            # A newer build upgrades an older store on open: done here, so
            # neither count includes it (it would shrink the difference).
            subprocess.run([binary, "--data", data, "branch", "list", "bench/small.cfg"], check=True, capture_output=True)
            low, high = (count(binary, data, work, path, token, n) for n in (500, 2500))
            counts[binary] = (high - low) / 2000
            print(f"{os.path.basename(binary):24} {counts[binary]:10,.0f} instructions/request", flush=True)
        a, b = counts[args.a], counts[args.b]
        print(f"\nB/A {b / a:.3f}  ({b - a:+,.0f} instructions/request)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def count(binary, data, work, path, token, requests):
    """Total instructions of a daemon that answered `requests` GETs."""
    port = run.free_port()
    out = os.path.join(work, "callgrind.out")
    env = dict(os.environ, CFGSTORE_LOG="warn")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        run.wait_http(port, f"{run.READ}/health", timeout=120)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(requests):
            conn.request("GET", path, headers={"PRIVATE-TOKEN": token})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()
    finally:
        server.terminate()
        stderr = server.communicate(timeout=60)[1]
    return int(re.search(r"Collected : (\d+)", stderr).group(1))


if __name__ == "__main__":
    main()
