#!/usr/bin/env python3
"""Pools the fixed-rate p99 pairs of several bench/run.py reports.

One run's fixed-rate table has a few pairs per scenario (7 by default): on
a shared machine whose stalls set most of a short run's p99, that many
pairs tell a clear difference from chance only when the difference is
large. The same scenario over several runs of the same build, pooled,
tells more. For each scenario and connection count found in every report:
the pairs, how many of them had cfgstore's p99 below nginx's and how many
above, the two-sided sign test's chance of a split at least that uneven
if the two servers' p99 were alike, and the median p99 of each server
over all pairs. Pairs whose two figures are equal (as printed, to the
hundredth of a millisecond) are counted apart and left out of the test.

A chance below 0.05 speaks for one scenario taken on its own; over a
dozen scenarios, one or two that low can come from noise alone. The Holm
column allows for that: each chance adjusted for all the scenarios tested
with it.

    python3 bench/pool.py bench/results/2026-12-07-run-*.md

Reports of different builds, rates or run lengths should not be pooled:
the script pools what it is given and says how many pairs each report gave.
"""

import argparse
import statistics
import sys

from run import sign_test

SECTION = "## Reads at one fixed rate"


def fixed_rate_pairs(path):
    """{(scenario, connections): [(cfgstore p99, nginx p99), ...]} from the
    fixed-rate table of one report, pair by pair (the i-th run of each
    server made the i-th pair)."""
    text = open(path, encoding="utf-8").read()
    at = text.find(SECTION)
    if at < 0:
        raise SystemExit(f"{path}: no fixed-rate table ({SECTION!r})")
    header, pairs = None, {}
    for line in text[at:].splitlines()[1:]:
        if not line.startswith("|"):
            if header:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            ours, theirs = header.index("cfgstore runs"), header.index("nginx runs")
            continue
        if set(line) <= set("|-: "):
            continue
        mine = [float(v) for v in cells[ours].split(" / ")]
        yours = [float(v) for v in cells[theirs].split(" / ")]
        if len(mine) != len(yours):
            raise SystemExit(f"{path}: {cells[0]}, {cells[1]}: {len(mine)} runs against {len(yours)}")
        pairs[(cells[0], cells[1])] = list(zip(mine, yours))
    if not pairs:
        raise SystemExit(f"{path}: the fixed-rate table has no rows")
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="reports written by bench/run.py (--out)")
    args = ap.parse_args()
    tables = [(path, fixed_rate_pairs(path)) for path in args.reports]
    rows = [key for key in tables[0][1] if all(key in t for _, t in tables)]
    for path, table in tables:
        counts = sorted({len(p) for p in table.values()})
        print(f"{path}: {', '.join(map(str, counts))} pairs per scenario", file=sys.stderr)
        for key in table:
            if key not in rows:
                print(f"{path}: {key[0]}, {key[1]} connections: not in every report, left out", file=sys.stderr)
    results = []
    for key in rows:
        pairs = [pair for _, table in tables for pair in table[key]]
        lower = sum(1 for mine, yours in pairs if mine < yours)
        higher = sum(1 for mine, yours in pairs if mine > yours)
        results.append((key, pairs, lower, higher, sign_test(lower, lower + higher)))
    holm = holm_adjusted([chance for *_, chance in results])
    print("| scenario | connections | pairs | cfgstore lower | nginx lower | equal | chance | chance, Holm "
          "| cfgstore p99 | nginx p99 | cfgstore/nginx |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (key, pairs, lower, higher, chance), adjusted in zip(results, holm):
        mine = statistics.median(m for m, _ in pairs)
        yours = statistics.median(y for _, y in pairs)
        print(f"| {key[0]} | {key[1]} | {len(pairs)} | {lower} | {higher} | {len(pairs) - lower - higher} "
              f"| {chance:.3f} | {adjusted:.3f} | {mine:.2f} | {yours:.2f} | {mine / max(yours, 0.001):.2f} |")


def holm_adjusted(chances):
    """Holm's step-down adjustment of several tests' p-values, in their
    order: each scenario's chance allowing for the others tested with it."""
    order = sorted(range(len(chances)), key=lambda i: chances[i])
    adjusted, running = [0.0] * len(chances), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(chances) - rank) * chances[i]))
        adjusted[i] = running
    return adjusted


if __name__ == "__main__":
    main()
