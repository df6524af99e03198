#!/usr/bin/env python3
"""What a one-file put costs as the branch grows, in time and in bytes
added to the store per version, through the CLI and through the daemon.

    python3 bench/put-cost.py                       # 30 puts per size; 200, 2,000, 20,000, 100,000 files
    python3 bench/put-cost.py --puts 20 --sizes 200 20000
    python3 bench/put-cost.py --smoke               # 3 puts, 200 and 2,000 files

Each CLI put is a whole `cfgstore file put` process (start, open, lock,
store the object and the changed folders' trees, write the version, fsync,
switch HEAD): what an operator or a script pays. Each daemon put is an
admin API PUT on a kept-alive connection to `cfgstore serve`. Files are
0.5-2 KB in 100 folders two levels deep (`area{0-9}/group{0-99}`), the put
goes to `area1/group1/changed.json`. The ratio column compares each size
with the first. Builds the release binary; works in a temp dir it removes;
the daemon binds 127.0.0.1 and is stopped at the end.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Admin, free_port, wait_http  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_tree(root, count):
    for i in range(count):
        d = os.path.join(root, f"area{i % 10}", f"group{i % 100}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i}.json"), "w") as f:
            f.write('{"id": %d, "pad": "%s"}\n' % (i, "x" * (500 + (i * 37) % 1500)))


def cpu_of_children():
    """Seconds of CPU (user + system) used by finished child processes."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def du(path):
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            total += os.lstat(os.path.join(dirpath, n)).st_size
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--puts", type=int, default=30, help="puts per size and front end (default 30)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000, 20000, 100000])
    ap.add_argument("--smoke", action="store_true", help="3 puts, 200 and 2,000 files")
    args = ap.parse_args()
    if args.smoke:
        args.puts, args.sizes = 3, [200, 2000]
    log("building the release binary")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "cfgstore")
    with tempfile.TemporaryDirectory(prefix="cfgstore-putcost-") as work:
        data = os.path.join(work, "data")

        def cli(*a, input=None):
            return subprocess.run([binary, "--data", data, *a], check=True, capture_output=True, input=input).stdout

        cli("init")
        cli("user", "add", "bench", "--password-stdin", input=b"bench-password\n")
        rows, imports = [], {}
        # The sizes take turns, put by put, so a noisy moment (or the
        # filesystem's state) weighs on every size alike.
        for n in args.sizes:
            project = f"bench/b{n}.cfg"
            cli("project", "create", "bench", f"b{n}", "--type", "cfg")
            src = os.path.join(work, f"src{n}")
            make_tree(src, n)
            started = time.perf_counter()
            cli("import", project, "main", src)
            imports[n] = (time.perf_counter() - started) * 1000

        def measure(front, put):
            before = {n: du(os.path.join(data, "bench", f"b{n}.cfg")) for n in args.sizes}
            times = {n: [] for n in args.sizes}
            cpu = {n: [] for n in args.sizes}
            for i in range(args.puts):
                for n in args.sizes:
                    used = cpu_of_children()
                    started = time.perf_counter()
                    put(n, i)
                    times[n].append((time.perf_counter() - started) * 1000)
                    cpu[n].append((cpu_of_children() - used) * 1000)
            for n in args.sizes:
                grown = du(os.path.join(data, "bench", f"b{n}.cfg")) - before[n]
                rows.append((front, n, imports[n] if front == "CLI" else None, times[n], grown / args.puts / 1024, cpu[n]))
                log(f"{n:>7} files, {front}: put median {statistics.median(times[n]):.1f} ms")

        measure("CLI", lambda n, i: cli("file", "put", f"bench/b{n}.cfg", "main", "area1/group1/changed.json",
                                         input=json.dumps({"cli": i}).encode()))
        port = free_port()
        daemon = subprocess.Popen([binary, "--data", data, "serve", "--listen", f"127.0.0.1:{port}"],
                                  stderr=subprocess.DEVNULL, env=dict(os.environ, CFGSTORE_LOG="warn"))
        try:
            wait_http(port, "/health")
            admin = Admin(port, "bench", "bench-password")

            def path(n):
                return f"/projects/bench%2Fb{n}.cfg/branches/main/files/area1%2Fgroup1%2Fchanged.json"

            for n in args.sizes:
                admin.send("PUT", path(n), json.dumps({"warm": 1}).encode())  # each live tree loaded once
            measure("daemon", lambda n, i: admin.send("PUT", path(n), json.dumps({"daemon": i}).encode()))
        finally:
            daemon.terminate()
            daemon.wait(20)
        out = subprocess.run([binary, "--data", data, "fsck"], capture_output=True, text=True)
        print(f"| front end | branch size | import of all files | put median | put p90 | bytes per version | put vs {args.sizes[0]:,} files | CPU per put (CLI process) |")
        print("|---|---|---|---|---|---|---|---|")
        for front in ("CLI", "daemon"):
            mine = [r for r in rows if r[0] == front]
            base = statistics.median(mine[0][3])
            cpu_base = statistics.median(mine[0][5])
            for _, n, import_ms, times, per_version, cpu in mine:
                med = statistics.median(times)
                p90 = sorted(times)[max(0, int(len(times) * 0.9) - 1)]
                imported = f"{import_ms:,.0f} ms" if import_ms is not None else ""
                # The daemon's CPU is not a child's: only the CLI's is shown.
                used = f"{statistics.median(cpu):.1f} ms ({statistics.median(cpu) / cpu_base:.2f}x)" if front == "CLI" else ""
                print(f"| {front} | {n:,} files | {imported} | {med:.1f} ms | {p90:.1f} ms | {per_version:,.1f} KiB | {med / base:.2f}x | {used} |")
        print(out.stdout.strip().splitlines()[-1])
        if out.returncode != 0:
            sys.exit("fsck found problems:\n" + out.stdout + out.stderr)


if __name__ == "__main__":
    main()
