#!/usr/bin/env python3
"""Kiln against the best peer on the wide suite, from one run of ../shared/bench/peers/run.sh.

    python3 scripts/bench/suite_report.py RESULTS_RAW_TSV bench/suite.txt [bench/suite.json] > bench/results-suite.md

Per (layer, threads): Kiln's median, the fastest peer whose output was right (max abs diff within
the harness's tolerance, 1e-4*max(1, max|ref|)) and its median, and ratio = best peer time / Kiln time
(> 1: Kiln faster). Then the distribution of the ratios and the losses (ratio < 1) grouped by class.
"""
import json
import math
import os
import sys
from collections import defaultdict

TOL_REL = 1e-4
KEYS = ["n", "cin", "h", "w", "cout", "k", "s", "p", "op", "d", "g"]

raw_path, shapes_path = sys.argv[1:3]
json_path = sys.argv[3] if len(sys.argv) > 3 else os.path.splitext(shapes_path)[0] + ".json"

shapes = {}
order = []
for line in open(shapes_path):
    f = line.split()
    if not f or f[0].startswith("#"):
        continue
    shapes[f[0]] = dict(zip(KEYS, map(int, f[1:])))
    order.append(f[0])
what = {}
if os.path.exists(json_path):
    for s in json.load(open(json_path))["shapes"]:
        what[s["name"]] = s["what"]
        shapes[s["name"]]["flops"] = s["flops"]

res = {}
loads = {}
notes = []
for line in open(raw_path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "RESULT":
        res[(f[1], int(f[2]), f[3])] = dict(med=float(f[4]), diff=float(f[7]), ref=float(f[8]))
    elif f[0] == "LOAD":
        loads[(f[1], int(f[2]))] = int(f[3])
    elif f[0] in ("NOTE", "SKIP"):
        notes.append("\t".join(f[1:]))

impls = sorted({k[0] for k in res})
peers = [i for i in impls if i not in ("kiln", "naive")]
threads = sorted({k[1] for k in res})


def ok(r):
    return r["diff"] <= TOL_REL * max(1.0, r["ref"])


def params(n):
    c = shapes[n]
    return (f"N{c['n']} {c['cin']}->{c['cout']} {c['h']}x{c['w']} k{c['k']} s{c['s']} p{c['p']}"
            + (f" op{c['op']}" if c["op"] else "") + (f" d{c['d']}" if c["d"] > 1 else "")
            + (f" g{c['g']}" if c["g"] > 1 else ""))


def classes(n):
    """Every class a layer is in (a loss is listed under each)."""
    c = shapes[n]
    out = []
    cpg_in, cpg_out = c["cin"] // c["g"], c["cout"] // c["g"]
    if c["g"] > 1 and cpg_in == 1 and cpg_out == 1:
        out.append("depthwise (groups = channels)")
    elif c["g"] > 1:
        out.append("grouped (1 < groups < channels)")
    if cpg_out <= 4 and c["g"] == 1:
        out.append("few output channels (C_out <= 4)")
    if c["k"] >= 6 and c["s"] >= 2:
        out.append("large kernel with stride >= 2 (k >= 6)")
    if c["s"] >= 8:
        out.append("large stride (>= 8, FCN/CenterNet-style)")
    if c["s"] == 1:
        out.append("stride 1")
    if c["k"] == c["s"]:
        out.append("kernel == stride (no overlap)")
    if c["k"] < c["s"]:
        out.append("kernel < stride (holes)")
    if c["d"] > 1:
        out.append("dilated")
    if c["h"] * c["w"] <= 16:
        out.append("tiny spatial (H*W <= 16)")
    if (c["h"] % 2 or c["w"] % 2) and c["h"] * c["w"] > 1:
        out.append("odd spatial")
    if c["n"] == 1 and c["cin"] >= 512:
        out.append("batch 1, large channels (C_in >= 512)")
    if c["cin"] < 16 or cpg_in < 8 and c["g"] == 1:
        out.append("few input channels")
    if n.startswith("rand"):
        out.append("random sample")
    return out or ["other"]


rows = []  # (name, t, kiln_ms, best, best_ms, ratio)
missing = []
for t in threads:
    for n in order:
        k = res.get(("kiln", t, n))
        cand = [(res[(p, t, n)]["med"], p) for p in peers if (p, t, n) in res and ok(res[(p, t, n)])]
        if k is None or not cand:
            missing.append((n, t, "no kiln result" if k is None else "no correct peer result"))
            continue
        bm, bp = min(cand)
        rows.append((n, t, k["med"], bp, bm, bm / k["med"], k))

P = print
P("# Kiln against the best peer on the wide suite (bench/suite.json)")
P("")
P("One run of `../shared/bench/peers/run.sh` on this machine, Kiln and the peers in the same run "
  f"(peers: {', '.join(peers)}), float32, no bias, median wall time per call, threads "
  f"{' and '.join(map(str, threads))}. ratio = best peer time / Kiln time: > 1 means Kiln is faster. "
  "A peer counts only where its output matched the naive loop (tolerance 1e-4·max(1, max|ref|)); "
  "Kiln's max diff is against its interpreter. Written by `scripts/bench/suite_report.py`.")
P("")
if loads:
    P("Background CPU load seen before each step (%): " + ", ".join(f"{i} t{t}: {b}" for (i, t), b in sorted(loads.items())))
    P("")

P("## Summary")
P("")
P("| threads | layers | ratio >= 1.0 | 0.9 <= ratio < 1.0 | ratio < 0.9 | geometric mean | min | max |")
P("|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in threads + [0]:
    rr = [r[5] for r in rows if t == 0 or r[1] == t]
    if not rr:
        continue
    gm = math.exp(sum(map(math.log, rr)) / len(rr))
    P(f"| {t if t else 'all'} | {len(rr)} | {sum(x >= 1 for x in rr)} | {sum(0.9 <= x < 1 for x in rr)} | "
      f"{sum(x < 0.9 for x in rr)} | {gm:.2f} | {min(rr):.2f} | {max(rr):.2f} |")
P("")
for part, pred in [("model layers", lambda n: not n.startswith("rand")), ("random sample", lambda n: n.startswith("rand"))]:
    for t in threads:
        rr = [r[5] for r in rows if r[1] == t and pred(r[0])]
        if rr:
            gm = math.exp(sum(map(math.log, rr)) / len(rr))
            P(f"- {part}, {t} thread{'s' if t > 1 else ''}: {sum(x >= 1 for x in rr)}/{len(rr)} with ratio >= 1, "
              f"{sum(x < 0.9 for x in rr)} below 0.9, geometric mean {gm:.2f}")
P("")
bestcount = defaultdict(int)
for r in rows:
    bestcount[(r[1], r[3])] += 1
P("Best peer, how often: " + "; ".join(
    f"{t} thread{'s' if t > 1 else ''}: " + ", ".join(f"{p} {bestcount[(t, p)]}" for p in peers if bestcount[(t, p)])
    for t in threads))
P("")

P("## Worst 10")
P("")
P("| layer | threads | params | Kiln ms | best peer | peer ms | ratio |")
P("|---|---:|---|---:|---|---:|---:|")
for r in sorted(rows, key=lambda r: r[5])[:10]:
    P(f"| {r[0]} | {r[1]} | {params(r[0])} | {r[2]:.3g} | {r[3]} | {r[4]:.3g} | {r[5]:.2f} |")
P("")

P("## Losses by class")
P("")
P("Every layer with ratio < 1.0 on either thread count, listed under every class it belongs to "
  "(a layer can be in several). `(t1 0.83, t2 0.95)` = ratio on 1 and 2 threads.")
P("")
loss_names = []
for r in rows:
    if r[5] < 1 and r[0] not in loss_names:
        loss_names.append(r[0])
ratio_of = {(r[0], r[1]): r[5] for r in rows}
by_class = defaultdict(list)
for n in loss_names:
    for c in classes(n):
        by_class[c].append(n)
# classes ordered by how many losses they hold
all_count = defaultdict(int)
for n in order:
    for c in classes(n):
        all_count[c] += 1
for c, ns in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
    P(f"### {c}: {len(ns)} of the {all_count[c]} layers in the class lose")
    P("")
    for n in ns:
        rs = ", ".join(f"t{t} {ratio_of[(n, t)]:.2f}" for t in threads if (n, t) in ratio_of)
        P(f"- `{n}` ({rs}): {params(n)}" + (f" — {what[n]}" if n in what and not n.startswith("rand") else ""))
    P("")

P("## All layers")
P("")
P("| layer | params | " + " | ".join(f"Kiln ms t{t} | best peer t{t} | ratio t{t}" for t in threads) + " | Kiln max diff |")
P("|---|---|" + "---:|---|---:|" * len(threads) + "---:|")
byk = {(r[0], r[1]): r for r in rows}
for n in order:
    cells = []
    md = 0.0
    for t in threads:
        r = byk.get((n, t))
        if r is None:
            cells.append("– | – | –")
            continue
        md = max(md, r[6]["diff"])
        cells.append(f"{r[2]:.3g} | {r[3]} {r[4]:.3g} | {r[5]:.2f}")
    P(f"| {n} | {params(n)} | " + " | ".join(cells) + f" | {md:.1e} |")
P("")
if missing or notes:
    P("## Missing results and notes")
    P("")
    for n, t, why in missing:
        P(f"- {n} threads {t}: {why}")
    wrong = [(i, t, n) for (i, t, n), r in res.items() if not ok(r) and i != "kiln"]
    for i, t, n in sorted(wrong):
        P(f"- {i} threads {t} {n}: output outside tolerance (max diff {res[(i, t, n)]['diff']:.2e}), not counted")
    for x in notes:
        P(f"- {x}")
