#!/usr/bin/env python3
"""Runs README.md as written: every ```sh block, in order, in one bash
shell (so a block sees what the ones before it set up), and every
```python block with the shell's environment. A block preceded by a
`<!-- readme-check: skip (why) -->` line is only listed, with the reason
(blocks that need root and systemd, or the test suite CI runs anyway).

It also checks that every repository file the README names in backticks
(`bench/run.py`, `src/ops/audit.rs`, ...) exists.

    python3 scripts/readme-check.py          # from the repository root

Python blocks run with target/pyenv/bin/python when it has python-gitlab
(`.ci/run` makes it), else they are reported as skipped. The shell is
stopped, with every job it started in the background, when it ends.
Exit status: 0 when every block ran and exited 0.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# Left behind by the blocks: removed before and after the run.
SCRATCH = ["/tmp/cfgstore-demo", "/tmp/cfgstore-demo-export"]
LEFTOVERS = ["jar", "ops.json"]


def blocks(text):
    """(language, code, first line number, skip reason or None), in order."""
    out, skip, lines, i = [], None, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        marker = re.match(r"<!-- readme-check: skip \((.*)\) -->", line)
        if marker:
            skip = marker.group(1)
        fence = re.match(r"```(sh|python)\s*$", line)
        if fence:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((fence.group(1), "\n".join(body), start + 1, skip))
            skip = None
        i += 1
    return out


def named_files(text):
    """Repository paths the README names in backticks."""
    names = set()
    for ref in re.findall(r"`([A-Za-z0-9_./-]+)`", text):
        if ref.startswith(("/", "-", ".")) and not ref.startswith((".ci/", ".cargo/")):
            continue
        top = ref.split("/")[0]
        if "/" in ref and top in {"bench", "scripts", "src", "tests", "cli", "packaging", "systemd", "fuzz", "data-example", ".ci", ".cargo"}:
            names.add(ref.rstrip("/"))
        elif re.fullmatch(r"[A-Z]+\.md", ref):
            names.add(ref)
    return sorted(names)


def main():
    text = open(README, encoding="utf-8").read()
    missing = [n for n in named_files(text) if not os.path.exists(os.path.join(ROOT, n))]
    for name in missing:
        print(f"README names {name}, which the repository does not have")
    python = os.path.join(ROOT, "target", "pyenv", "bin", "python")
    has_gitlab = os.path.exists(python) and subprocess.run(
        [python, "-c", "import gitlab"], capture_output=True
    ).returncode == 0
    work = tempfile.mkdtemp(prefix="readme-check-")
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    ran, skipped = 0, 0
    for n, (lang, code, line, skip) in enumerate(blocks(text), 1):
        if skip:
            print(f"block {n} (README line {line}): skipped: {skip}")
            skipped += 1
            continue
        script.append(f"echo '== README block {n} (line {line})' >&2")
        if lang == "sh":
            script.append(code)
        elif has_gitlab:
            path = os.path.join(work, f"block{n}.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(code + "\n")
            script.append(f"export TOKEN; {python} {path}")
        else:
            print(f"block {n} (README line {line}): skipped: python-gitlab is not in target/pyenv")
            skipped += 1
            continue
        ran += 1
    script.append("echo '== every block ran' >&2")
    clean()
    try:
        result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, timeout=900)
    finally:
        clean()
        shutil.rmtree(work, ignore_errors=True)
    ok = result.returncode == 0 and not missing
    print(f"README: {ran} blocks ran, {skipped} skipped, {len(missing)} missing files: {'ok' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


def clean():
    for path in SCRATCH:
        shutil.rmtree(path, ignore_errors=True)
    for name in LEFTOVERS:
        try:
            os.remove(os.path.join(ROOT, name))
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
