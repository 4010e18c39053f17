"""Time a Kiln JSON model in PyTorch eager mode with the peers' protocol.

    python scripts/torch_model_bench.py examples/dcgan.json --batch 16 --threads 1

Builds the model from Kiln's JSON model format (each node's `op` is the
torch.nn class it names; `Add` is `+`, `Concat` is `torch.cat(dim=1)`),
materializes lazy modules with one forward pass, switches to eval mode, then
warms up (>= 2 calls and >= 0.2 s) and times >= 20 calls and >= 1 s of work.
Prints one JSON line like `kiln bench --json` so the two can be compared.
"""
import argparse
import json
import time

import torch
import torch.nn as nn


class Graph(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.input_names = list(spec["inputs"])
        self.nodes = []
        self.mods = nn.ModuleDict()
        previous = self.input_names[0]
        for node in spec["nodes"]:
            name, op, args = node["name"], node["op"], node.get("args", {})
            inputs = node.get("inputs") or [previous]
            if op not in ("Add", "Concat"):
                args = {k: v for k, v in args.items() if k != "output_size"}
                self.mods[name] = getattr(nn, op)(**args)
            self.nodes.append((name, op, inputs))
            previous = name
        self.outputs = spec.get("outputs") or [previous]

    def forward(self, *xs):
        env = dict(zip(self.input_names, xs))
        for name, op, inputs in self.nodes:
            args = [env[i] for i in inputs]
            if op == "Add":
                env[name] = args[0] + args[1]
            elif op == "Concat":
                env[name] = torch.cat(args, dim=1)
            else:
                env[name] = self.mods[name](*args)
        return [env[o] for o in self.outputs]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    spec = json.load(open(a.model))
    shapes = [list(s) for s in spec["inputs"].values()]
    if a.batch:
        for s in shapes:
            if len(s) == 4:
                s[0] = a.batch
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(s, generator=g) * 2 - 1 for s in shapes]
    model = Graph(spec)
    with torch.no_grad():
        model(*xs)  # materialize lazy modules
    model.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        warm = 0
        while warm < 2 or time.perf_counter() - t0 < 0.2:
            model(*xs)
            warm += 1
        times = []
        start = time.perf_counter()
        while len(times) < 20 or (time.perf_counter() - start < 1.0 and len(times) < 2000):
            t = time.perf_counter()
            model(*xs)
            times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"name": spec.get("name", "model"), "impl": "torch-eager", "threads": a.threads,
                      "batch": a.batch, "median_ms": times[len(times) // 2] * 1e3, "min_ms": times[0] * 1e3,
                      "runs": len(times), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
