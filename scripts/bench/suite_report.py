#!/usr/bin/env python3
"""Kiln against the best peer on the wide suite, from one run of ../shared/bench/peers/run.sh.

    python3 scripts/bench/suite_report.py RESULTS_RAW_TSV bench/suite.txt [bench/suite.json] \
        [--repeat RESULTS_RAW_TSV_OF_A_SECOND_RUN] [--note TEXT ...] > bench/results-suite.md

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

argv = sys.argv[1:]
repeat_path = None
if "--repeat" in argv:
    i = argv.index("--repeat")
    repeat_path = argv[i + 1]
    del argv[i:i + 2]
extra_notes = []
while "--note" in argv:
    i = argv.index("--note")
    extra_notes.append(argv[i + 1])
    del argv[i:i + 2]
raw_path, shapes_path = argv[:2]
json_path = argv[2] if len(argv) > 2 else os.path.splitext(shapes_path)[0] + ".json"

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

def read_raw(path):
    res, loads, notes = {}, {}, []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "RESULT":
            res[(f[1], int(f[2]), f[3])] = dict(med=float(f[4]), mn=float(f[5]), diff=float(f[7]), ref=float(f[8]))
        elif f[0] == "LOAD":
            loads[(f[1], int(f[2]))] = int(f[3])
        elif f[0] in ("NOTE", "SKIP"):
            notes.append("\t".join(f[1:]))
    return res, loads, notes


res, loads, notes = read_raw(raw_path)

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
    return out or ["dense, none of the above (k3/k4 s2, 8-256 channels)"]


def primary_class(n):
    """The one class a loss is grouped under: the first that applies, most specific first."""
    c = shapes[n]
    cpg_in, cpg_out = c["cin"] // c["g"], c["cout"] // c["g"]
    if c["k"] < c["s"]:
        return "kernel < stride (output holes)"
    if c["g"] > 1 and cpg_in == 1 and cpg_out == 1:
        return "depthwise (groups = channels)"
    if c["g"] > 1:
        return "grouped (1 < groups < channels)"
    if cpg_out <= 4:
        return "few output channels (C_out <= 4), any kernel"
    if c["d"] > 1:
        return "dilated"
    if c["k"] == c["s"]:
        return "kernel == stride (U-Net k2 s2, no overlap)"
    if c["n"] == 1 and c["cin"] >= 512:
        return "batch 1, large channels (C_in >= 512)"
    if c["h"] * c["w"] <= 16:
        return "tiny spatial (H*W <= 16)"
    if c["s"] == 1:
        return "stride 1, dense"
    if c["k"] >= 6:
        return "large kernel (k >= 6), dense"
    if c["h"] % 2 or c["w"] % 2:
        return "odd spatial, dense"
    return "dense k3/k4 s2, 64-256 channels"


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
for x in extra_notes:
    P(x)
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
P("Every layer with ratio < 1.0 on 1 or 2 threads, each under one class: the first of the list below "
  "that applies (most specific first). `(t1 0.83, t2 0.95)` = ratio on 1 and 2 threads. "
  "Per class: how many of the suite's layers in it lose on 1 / on 2 threads.")
P("")
loss_names = []
for r in rows:
    if r[5] < 1 and r[0] not in loss_names:
        loss_names.append(r[0])
ratio_of = {(r[0], r[1]): r[5] for r in rows}
by_class = defaultdict(list)
for n in loss_names:
    by_class[primary_class(n)].append(n)
members = defaultdict(list)
for n in order:
    if any((n, t) in ratio_of for t in threads):
        members[primary_class(n)].append(n)
for c, ns in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
    cnt = ", ".join(f"{sum(ratio_of.get((n, t), 9) < 1 for n in members[c])}/{len(members[c])} lose on {t} thread{'s' if t > 1 else ''}"
                    for t in threads)
    rr = [ratio_of[(n, t)] for n in members[c] for t in threads if (n, t) in ratio_of]
    gm = math.exp(sum(map(math.log, rr)) / len(rr)) if rr else float("nan")
    P(f"### {c} ({cnt}; class geometric mean {gm:.2f})")
    P("")
    for n in sorted(ns, key=lambda n: min(ratio_of.get((n, t), 9) for t in threads)):
        rs = ", ".join(f"t{t} {ratio_of[(n, t)]:.2f}" for t in threads if (n, t) in ratio_of)
        P(f"- `{n}` ({rs}): {params(n)}" + (f" — {what[n]}" if n in what and not n.startswith("rand") else ""))
    wins = [n for n in members[c] if n not in ns]
    if wins:
        P(f"- wins in this class: " + ", ".join(f"`{n}`" for n in wins))
    P("")

P("### The same losses by feature (a layer counts under every feature it has)")
P("")
P("| feature | layers measured | lose on 1 thread | lose on 2 threads |")
P("|---|---:|---:|---:|")
feat = defaultdict(list)
for n in order:
    if not any((n, t) in ratio_of for t in threads):
        continue
    for c in classes(n):
        feat[c].append(n)
for c, ns in sorted(feat.items(), key=lambda kv: -sum(ratio_of.get((n, 1), 9) < 1 for n in kv[1])):
    P(f"| {c} | {len(ns)} | " + " | ".join(str(sum(ratio_of.get((n, t), 9) < 1 for n in ns)) for t in threads) + " |")
P("")

if repeat_path:
    res2, loads2, _ = read_raw(repeat_path)
    P("## Repeat run (noise)")
    P("")
    P(f"A second run of the harness right after, {', '.join(sorted({k[0] for k in res2}))} only, threads "
      f"{', '.join(map(str, sorted({k[1] for k in res2})))} (load before each step: "
      + ", ".join(f"{i} t{t} {b}%" for (i, t), b in sorted(loads2.items())) + "). "
      "Per implementation, the spread of the median between the two runs, and the ratio (best peer / "
      "Kiln) recomputed with the repeat's times where it has them (the other peers' from the first run).")
    P("")
    for imp in sorted({k[0] for k in res2}):
        sp = [res2[k]["med"] / res[k]["med"] for k in res2 if k[0] == imp and k in res]
        if sp:
            sp.sort()
            gm = math.exp(sum(map(math.log, sp)) / len(sp))
            P(f"- {imp}: repeat/first median time, geometric mean {gm:.2f}, middle 80 % "
              f"{sp[len(sp) // 10]:.2f}..{sp[(9 * len(sp)) // 10]:.2f}, extremes {sp[0]:.2f}..{sp[-1]:.2f}")
    P("")
    flip = []
    for t in sorted({k[1] for k in res2}):
        agree = n_rows = 0
        r2s = {}
        for n in order:
            k2 = res2.get(("kiln", t, n))
            if k2 is None or ("kiln", t, n) not in res:
                continue
            cand = [((res2 if (p, t, n) in res2 else res)[(p, t, n)]["med"], p) for p in peers
                    if ((p, t, n) in res2 and ok(res2[(p, t, n)])) or ((p, t, n) not in res2 and (p, t, n) in res and ok(res[(p, t, n)]))]
            if not cand:
                continue
            r2 = min(cand)[0] / k2["med"]
            r1 = ratio_of.get((n, t))
            if r1 is None:
                continue
            n_rows += 1
            r2s[n] = r2
            if (r1 < 1) == (r2 < 1):
                agree += 1
            else:
                flip.append((n, t, r1, r2))
        P(f"- threads {t}: win/lose verdict the same in both runs for {agree} of {n_rows} layers"
          + ("; flipped: " + ", ".join(f"`{n}` {a:.2f} -> {b:.2f}" for n, tt, a, b in flip if tt == t) if flip else ""))
        v = list(r2s.values())
        if v:
            gm2 = math.exp(sum(map(math.log, v)) / len(v))
            P(f"- threads {t}, repeat: {sum(x >= 1 for x in v)} with ratio >= 1, {sum(x < 0.9 for x in v)} below 0.9, "
              f"geometric mean {gm2:.2f}")
            robust = sorted((n for n in r2s if ratio_of.get((n, t), 9) < 0.75 and r2s[n] < 0.75),
                            key=lambda n: ratio_of[(n, t)] * r2s[n])
            P(f"- threads {t}: {len(robust)} layers lose by more than 25 % in both runs (first / repeat ratio): "
              + ", ".join(f"`{n}` {ratio_of[(n, t)]:.2f}/{r2s[n]:.2f}" for n in robust))
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
