#!/usr/bin/env python3
"""Times the example decoders in PyTorch eager (the published modules of
`export.py`, eval mode, `inference_mode`) with the peers' protocol, for
comparison with `kiln bench examples/<name>.json` in the same run:

    /tmp/venv/bin/python scripts/examples/bench_torch.py --threads 1 [--batch 8]

Prints one JSON line per model (median and min ms).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from export import MODELS  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name, (cls, inputs) in MODELS.items():
        shape = list(list(inputs.values())[0])
        if a.batch:
            shape[0] = a.batch
        model = cls().eval()
        x = torch.rand(shape) * 2 - 1
        with torch.inference_mode():
            t0, warm = time.perf_counter(), 0
            while warm < 2 or time.perf_counter() - t0 < 0.2:
                model(x)
                warm += 1
            times, start = [], time.perf_counter()
            while len(times) < 20 or (time.perf_counter() - start < 1.0 and len(times) < 2000):
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
        times.sort()
        print(json.dumps({"name": name, "impl": "torch-eager", "threads": a.threads, "batch": shape[0],
                          "median_ms": round(times[len(times) // 2] * 1e3, 4), "min_ms": round(times[0] * 1e3, 4)}))


if __name__ == "__main__":
    main()
