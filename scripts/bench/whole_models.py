#!/usr/bin/env python3
"""Whole models against the peers on the same model, in one run.

    /work/venv/bin/python scripts/bench/whole_models.py [--threads 1,2] [--kiln target/release/kiln]

For each model (the test models of `scripts/onnx/export_models.py` at their
own batch and at a serving batch of 8, and pytorch/examples' DCGAN generator
at widths ngf = 8, 16, 32, 64 and batch 2), one `torch.onnx.export` file is
timed in Kiln (`kiln bench FILE.onnx --json`) and in ONNX Runtime (all graph
optimizations, `intra_op_num_threads` = threads), and the source module in
PyTorch eager (`inference_mode`). Timing protocol as the peers harness:
warm-up >= 2 calls and >= 0.2 s, then >= 20 timed calls until >= 1 s of
timed work (<= 2000); the median is reported. Prints a markdown table with
each peer's time and Kiln's speed-up over it (peer ms / Kiln ms).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "onnx"))
from export_models import DCGAN, build, randomize_stats  # noqa: E402


def timed(f):
    t0 = time.perf_counter()
    w = 0
    while w < 2 or time.perf_counter() - t0 < 0.2:
        f()
        w += 1
    times = []
    total = 0.0
    while len(times) < 20 or (total < 1.0 and len(times) < 2000):
        t = time.perf_counter()
        f()
        dt = time.perf_counter() - t
        times.append(dt)
        total += dt
    return float(np.median(times)) * 1e3


def export(model, x, path, dynamic):
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                      dynamic_axes=axes)


def cases(tmp):
    names = ["dcgan", "opzoo", "fsrcnn", "vae_decoder", "cyclegan_resnet", "pix2pix_unet"]
    for name in names:
        model, shape = build(name)
        randomize_stats(model)
        model.eval()
        for batch in [shape[0], 8]:
            yield f"{name} b{batch}", model, [batch, *shape[1:]]
    for ngf in [8, 16, 32, 64]:
        torch.manual_seed(0)
        model = DCGAN(nz=100, ngf=ngf)
        randomize_stats(model)
        model.eval()
        yield f"dcgan ngf{ngf} b2", model, [2, 100, 1, 1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", default="1,2")
    p.add_argument("--kiln", default="target/release/kiln")
    a = p.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, shape in cases(tmp):
            x = torch.rand(shape) * 2 - 1
            path = os.path.join(tmp, label.replace(" ", "_") + ".onnx")
            export(model, x, path, dynamic=False)
            for t in threads:
                torch.set_num_threads(t)
                with torch.inference_mode():
                    t_torch = timed(lambda: model(x))
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.intra_op_num_threads = t
                so.inter_op_num_threads = 1
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                feed = {"x": x.numpy()}
                t_ort = timed(lambda: sess.run(None, feed))
                out = subprocess.run([a.kiln, "bench", path, "--threads", str(t), "--json"], capture_output=True,
                                     text=True, check=True)
                k = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((label, t, k["median_ms"], k["compile_ms"], t_ort, t_torch))
                print(f"{label} t{t}: kiln {k['median_ms']:.3f} ms, ort {t_ort:.3f}, torch {t_torch:.3f}",
                      file=sys.stderr, flush=True)
    print("| model | threads | Kiln ms | compile ms | ORT ms | torch ms | vs ORT | vs torch |")
    print("|---|---|---|---|---|---|---|---|")
    for label, t, km, kc, om, tm in rows:
        print(f"| {label} | {t} | {km:.3f} | {kc:.1f} | {om:.3f} | {tm:.3f} | {om / km:.2f}x | {tm / km:.2f}x |")
    ratios = [om / km for _, _, km, _, om, _ in rows]
    print(f"\nvs ORT: geometric mean {float(np.exp(np.mean(np.log(ratios)))):.2f}x, "
          f"min {min(ratios):.2f}x, Kiln ahead on {sum(r >= 1 for r in ratios)}/{len(ratios)}")


if __name__ == "__main__":
    main()
