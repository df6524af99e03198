#!/usr/bin/env python3
"""Bulk work against the disk's own speed: `cfgstore import` of the
20,000-file tree against `cp -r` + `sync` of the same tree, and `cfgstore
backup` / `restore` of the resulting store against `cp -r` + `sync` of the
store — side by side, alternating, so a busy disk hurts both.

    python3 bench/bulk.py               # 3 rounds, medians
    python3 bench/bulk.py --smoke       # 1 round of the 200-file tree

Each timed step starts after a `sync`, so no step pays for another's
dirty pages. cfgstore's figures include what it promises: the import is
one durable version (with the files checked for well-formedness), the
backup is verified by fsck before it reports, the restore verifies the
backup first.
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


def timed(*cmd):
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="one round on the 200-file tree")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "cfgstore")
    rounds = 1 if args.smoke else args.rounds
    with tempfile.TemporaryDirectory(prefix="cfgstore-bulk-") as work:
        files = os.path.join(work, "files")
        subprocess.run([sys.executable, os.path.join(HERE, "dataset.py"), files], check=True, stdout=subprocess.DEVNULL)
        tree = os.path.join(files, "small" if args.smoke else "large")
        count = sum(len(f) for _, _, f in os.walk(tree))
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, f in os.walk(tree) for n in f)
        results = {k: [] for k in ("import", "cp tree", "backup", "restore", "cp store")}
        for r in range(rounds):
            data, copy = os.path.join(work, f"data{r}"), os.path.join(work, f"copy{r}")
            backup, restored, store_copy = (os.path.join(work, f"{n}{r}") for n in ("backup", "restored", "storecopy"))
            subprocess.run([binary, "--data", data, "init"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([binary, "--data", data, "project", "create", "bench", "bulk", "--type", "cfg"],
                           check=True, stdout=subprocess.DEVNULL)
            steps = [
                ("import", lambda: timed(binary, "--data", data, "import", "bench/bulk.cfg", "main", tree)),
                ("cp tree", lambda: timed("cp", "-r", tree, copy)),
            ]
            for name, step in steps if r % 2 == 0 else reversed(steps):
                results[name].append(step())
            steps = [
                ("backup", lambda: timed(binary, "--data", data, "backup", backup)),
                ("cp store", lambda: timed("cp", "-r", data, store_copy)),
            ]
            for name, step in steps if r % 2 == 0 else reversed(steps):
                results[name].append(step())
            results["restore"].append(timed(binary, "--data", restored, "restore", backup))
            for d in (copy, store_copy, restored, backup, data):
                shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        ("import", "cp -r + sync of the tree", med["import"], med["cp tree"]),
        ("backup (with its fsck)", "cp -r + sync of the store", med["backup"], med["cp store"]),
        ("restore (verifies the backup first)", "cp -r + sync of the store", med["restore"], med["cp store"]),
    ]
    print(f"""## Bulk work against cp -r

{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `python3 bench/bulk.py{' --smoke' if args.smoke else f' --rounds {rounds}'}`:
{count:,} files, {size / 1e6:.0f} MB; medians of {rounds} round(s), each step after a `sync` and ending with one.

| cfgstore | s | against | s | ratio |
|---|---|---|---|---|""")
    for ours, peer, a, b in rows:
        print(f"| {ours} | {a:.2f} | {peer} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
