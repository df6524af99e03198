#!/usr/bin/env python3
"""Deterministic benchmark data: the same bytes on every machine and run.

    python3 bench/dataset.py OUT_DIR

writes OUT_DIR/small/ (200 config files of 0.5-20 KB in nested folders) and
OUT_DIR/large/ (20,000 files), plus OUT_DIR/{small,large}.paths, one
relative path per line, for the load generator's random picks. The two
files the fixed scenarios read are always small/app.json (about 0.5 KB) and
small/big.json (20 KB).
"""
import os
import random
import sys


def config_text(is_json, i, value, size):
    """A well-formed JSON or YAML file of about `size` bytes: distinct keys
    (cfgstore refuses duplicate keys and truncated files on every write)."""
    lines, total, n = [], 4, 0
    while True:
        line = f'  "key{i}-{n}": "{value}"' if is_json else f'key{i}-{n}: "{value}"'
        if total + len(line) + 2 > size and lines:
            break
        lines.append(line)
        total += len(line) + 2
        n += 1
    if is_json:
        return "{\n" + ",\n".join(lines) + "\n}\n"
    return "\n".join(lines) + "\n"


def write_tree(root, count, seed):
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        depth = rng.randint(1, 3)
        folders = [f"{['area', 'team', 'svc'][d]}{rng.randint(0, 9)}" for d in range(depth)]
        rel = "/".join(folders + [f"conf-{i:05d}.{'json' if i % 3 else 'yaml'}"])
        size = rng.randint(512, 20 * 1024)
        value = f"{rng.getrandbits(64):016x}"
        body = config_text(rel.endswith(".json"), i, value, size)
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(body)
        paths.append(rel)
    return paths


def main():
    out = sys.argv[1]
    small = write_tree(os.path.join(out, "small"), 198, seed=200)
    with open(os.path.join(out, "small", "app.json"), "w") as f:
        f.write('{"name": "app", "pad": "' + "x" * 480 + '"}\n')
    with open(os.path.join(out, "small", "big.json"), "w") as f:
        f.write('{"pad": "' + "y" * (20 * 1024 - 13) + '"}\n')
    small += ["app.json", "big.json"]
    large = write_tree(os.path.join(out, "large"), 20000, seed=20000)
    for name, paths in (("small", small), ("large", large)):
        with open(os.path.join(out, f"{name}.paths"), "w") as f:
            f.write("\n".join(sorted(paths)) + "\n")
    print(f"dataset in {out}: {len(small)} + {len(large)} files")


if __name__ == "__main__":
    main()
