#!/usr/bin/env python3
"""Generates PyTorch reference data for models whose graph inputs leave dims
open (`null` in the model format's `inputs`): the lazy modules learn their
`in_channels` / `in_features` from the first input they see.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors numpy
    /tmp/venv/bin/python scripts/golden/gen_dynamic.py tests/data/dynamic

For each model below the script writes, into the output folder:

- `<model>.json`: Kiln's model format, with `null` for the open dims;
- `<model>.safetensors`: the eval-mode `state_dict` of the same `torch.nn`
  modules, named as the nodes (`up1.weight`, `bn1.running_mean`), float32
  only: `num_batches_tracked` (int64, training-only) is dropped as in
  `scripts/examples/export.py` and `scripts/golden/gen_ops.py`;
- `<model>.<case>.<input>.npy` and `<model>.<case>.y.npy`: seeded float32
  inputs and PyTorch's eval-mode output, for several batch sizes
  (`b1`, `b3`, `b16`) or spatial sizes (`case0`, `case1`, ...);
- `decoder.c7.x.npy`: a 7-channel input for the decoder, whose lazy
  modules were materialized for 6 channels: PyTorch refuses it, and so
  should Kiln after its first call;
- `README.md`: the file list, the torch version and PyTorch's message for
  the 7-channel input.

The lazy modules are materialized by a first call with the declared input
channels; then every parameter and buffer is overwritten with seeded random
values (BatchNorm running statistics included, so eval mode is not the
identity), the module goes to `.eval()`, and the cases run. Each model is
then rebuilt from the JSON, loaded from the written safetensors and run
again: the outputs must be bit-identical.
"""

import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file, save_file

SEED = 2024

# ---------------------------------------------------------------- models
# Each: inputs with open dims (None), the node list, the concrete input
# shape that materializes the lazy modules, and the cases (name -> shape).

DECODER = {
    "name": "decoder",
    "inputs": {"x": [None, None, 4, 5]},
    "nodes": [
        {"name": "up1", "op": "LazyConvTranspose2d",
         "args": {"out_channels": 16, "kernel_size": 4, "stride": 2, "padding": 1, "bias": False}, "inputs": None},
        {"name": "bn1", "op": "LazyBatchNorm2d", "args": {}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "up2", "op": "LazyConvTranspose2d",
         "args": {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, "inputs": None},
        # Per-sample normalization: LazyInstanceNorm2d defaults to
        # track_running_stats=True, which in eval mode normalizes by the
        # running statistics; false makes it use each sample's own.
        {"name": "norm2", "op": "LazyInstanceNorm2d", "args": {"affine": True, "track_running_stats": False},
         "inputs": None},
        {"name": "act2", "op": "LeakyReLU", "args": {"negative_slope": 0.2}, "inputs": None},
        {"name": "conv3", "op": "LazyConv2d", "args": {"out_channels": 3, "kernel_size": 3, "padding": 1},
         "inputs": None},
        {"name": "out", "op": "Tanh", "args": {}, "inputs": None},
    ],
    "outputs": ["out"],
    "materialize": {"x": [1, 6, 4, 5]},
    "cases": {f"b{n}": {"x": [n, 6, 4, 5]} for n in (1, 3, 16)},
}

SPATIAL = {
    "name": "spatial",
    "inputs": {"x": [None, None, None, None]},
    "nodes": [
        # k3 s2 p1 without output_padding: 2H-1, so odd sizes occur.
        {"name": "up1", "op": "LazyConvTranspose2d",
         "args": {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}, "inputs": None},
        # Statistics over H*W: the spatial size enters the arithmetic.
        {"name": "norm1", "op": "GroupNorm", "args": {"num_groups": 2, "num_channels": 8}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "up2", "op": "Upsample", "args": {"scale_factor": 2.0, "mode": "nearest"}, "inputs": None},
        {"name": "conv2", "op": "LazyConv2d", "args": {"out_channels": 3, "kernel_size": 3, "padding": 1},
         "inputs": None},
        {"name": "out", "op": "Sigmoid", "args": {}, "inputs": None},
    ],
    "outputs": ["out"],
    "materialize": {"x": [1, 4, 6, 6]},
    "cases": {f"case{i}": {"x": s} for i, s in enumerate([[2, 4, 5, 7], [1, 4, 8, 8], [3, 4, 11, 3]])},
}

VAE = {
    "name": "vae",
    "inputs": {"z": [None, 16]},
    "nodes": [
        {"name": "fc", "op": "LazyLinear", "args": {"out_features": 32 * 4 * 4}, "inputs": None},
        {"name": "unflatten", "op": "Unflatten", "args": {"dim": 1, "unflattened_size": [32, 4, 4]}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "up1", "op": "LazyConvTranspose2d",
         "args": {"out_channels": 3, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "out", "op": "Sigmoid", "args": {}, "inputs": None},
    ],
    "outputs": ["out"],
    "materialize": {"z": [1, 16]},
    "cases": {f"b{n}": {"z": [n, 16]} for n in (1, 3, 16)},
}

MODELS = [DECODER, SPATIAL, VAE]

# ------------------------------------------------------------- building


def build(op, args):
    """The `torch.nn` module of a node (JSON lists become tuples, as
    PyTorch documents them)."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return getattr(nn, op)(**args)


def chain(spec):
    """The model as an `nn.Sequential` whose children are named as the
    nodes, so `state_dict()` keys are `<node>.<param>`. Every model here is
    a chain (`inputs: null` throughout)."""
    assert all(n["inputs"] is None for n in spec["nodes"])
    return nn.Sequential(OrderedDict((n["name"], build(n["op"], n["args"])) for n in spec["nodes"]))


def randomize(model, gen):
    """Seeded random values for every float parameter and buffer: weights
    and biases in [-0.25, 0.25) (norm scales in [0.5, 1.5)), running means
    in [-0.5, 0.5), running variances in [0.5, 2)."""
    with torch.no_grad():
        for mname, m in model.named_children():
            for pname, p in list(m.named_parameters()) + list(m.named_buffers()):
                if p.dtype != torch.float32:
                    continue
                u = torch.rand(p.shape, generator=gen)
                norm = isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
                if pname == "running_var":
                    p.copy_(u * 1.5 + 0.5)
                elif pname == "running_mean":
                    p.copy_(u - 0.5)
                elif norm and pname == "weight":
                    p.copy_(u + 0.5)
                else:
                    p.copy_((u - 0.5) * 0.5)


def float_state(model):
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items()
                       if v.dtype == torch.float32)


def json_text(spec):
    """One node per line, as in `examples/*.json`; `None` dims become `null`."""
    lines = ["{", f'  "name": {json.dumps(spec["name"])},', f'  "inputs": {json.dumps(spec["inputs"])},',
             '  "nodes": [']
    lines.append(",\n".join("    " + json.dumps(n) for n in spec["nodes"]))
    lines += ["  ],", f'  "outputs": {json.dumps(spec["outputs"])}', "}"]
    return "\n".join(lines) + "\n"


def generate(spec, out_dir, gen, notes):
    name = spec["name"]
    (input_name, _), = spec["inputs"].items()
    model = chain(spec)
    with torch.no_grad():
        model(torch.randn(spec["materialize"][input_name], generator=gen))
    randomize(model, gen)
    model.eval()
    state = float_state(model)
    base = os.path.join(out_dir, name)
    with open(base + ".json", "w") as f:
        f.write(json_text(spec))
    save_file(state, base + ".safetensors")

    outputs = {}
    for cid, shapes in spec["cases"].items():
        x = torch.randn(shapes[input_name], generator=gen)
        with torch.no_grad():
            y = model(x)
        np.save(f"{base}.{cid}.{input_name}.npy", x.numpy())
        np.save(f"{base}.{cid}.y.npy", y.numpy())
        outputs[cid] = (x, y)

    # A fresh module from the JSON, loaded from the written file, must give
    # the same outputs bit for bit.
    with open(base + ".json") as f:
        respec = json.load(f)
    fresh = chain(respec)
    with torch.no_grad():
        fresh(torch.zeros(spec["materialize"][input_name]))
    missing, unexpected = fresh.load_state_dict(load_file(base + ".safetensors"), strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    fresh.eval()
    for cid, (x, y) in outputs.items():
        x2 = torch.from_numpy(np.load(f"{base}.{cid}.{input_name}.npy"))
        with torch.no_grad():
            y2 = fresh(x2)
        assert torch.equal(y, y2), f"{name}.{cid}: reloaded model differs"

    rows = []
    for cid, (x, y) in outputs.items():
        rows.append((f"{name}.{cid}.{input_name}.npy", list(x.shape), float(x.abs().max()),
                     f"{name}.{cid}.y.npy", list(y.shape), float(y.abs().max())))
    notes[name] = {"state": {k: list(v.shape) for k, v in state.items()}, "cases": rows, "model": model}
    n_params = sum(v.numel() for v in state.values())
    print(f"{name}: {len(spec['nodes'])} nodes, {n_params} floats in the state dict")
    for r in rows:
        print(f"  {r[0]} {r[1]} -> {r[3]} {r[4]}, max |y| = {r[5]:.6f}")
    return model


def channel_mismatch(model, out_dir, gen):
    """A 7-channel input for the decoder materialized with 6: PyTorch's error."""
    x = torch.randn([2, 7, 4, 5], generator=gen)
    np.save(os.path.join(out_dir, "decoder.c7.x.npy"), x.numpy())
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as e:
        return type(e).__name__, str(e).split("\n")[0]
    raise SystemExit("gen_dynamic.py: PyTorch accepted the 7-channel input")


README = """# Dynamic-dim golden data

PyTorch reference data for models whose graph inputs leave dims open
(`null`): the lazy modules learn `in_channels` / `in_features` from the
first input. Generated by `scripts/golden/gen_dynamic.py`:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors numpy
    /tmp/venv/bin/python scripts/golden/gen_dynamic.py tests/data/dynamic

torch {torch}, numpy {numpy}, seed {seed}. All tensors are float32;
outputs are PyTorch's in eval mode. The state dicts are the modules'
`state_dict()` with keys `<node>.<param>`, float32 entries only
(`num_batches_tracked` is dropped, as in the other generators). The lazy
modules were materialized by a first call with the channel count of the
cases below; then every parameter and buffer was set to seeded random
values (BatchNorm's running statistics included, so eval mode is not the
identity). The script reloads each state dict into a fresh module built from
the JSON and checks that it reproduces every output bit for bit.

## Models

{models}
## Files

| file | shape | max \\|value\\| |
| --- | --- | --- |
{files}
## The 7-channel input

`decoder.c7.x.npy` ({c7_shape}) has 7 channels; the decoder's lazy modules
were materialized with 6. PyTorch refuses it at the first layer (`up1`):

    {c7_type}: {c7_message}

Kiln should refuse it too, once its first call has fixed the channels.
"""


def describe(spec, note):
    ins = ", ".join(f"`{k}`: `{json.dumps(v)}`" for k, v in spec["inputs"].items())
    chain_text = " → ".join(
        f"{n['name']} = {n['op']}({', '.join(f'{k}={json.dumps(v)}' for k, v in n['args'].items())})"
        for n in spec["nodes"])
    state = ", ".join(f"`{k}` {v}" for k, v in note["state"].items())
    materialized = json.dumps(next(iter(spec["materialize"].values())))
    return (f"### `{spec['name']}.json`\n\nInput {ins}; materialized with {materialized}.\n\n{chain_text}\n\n"
            f"State dict (`{spec['name']}.safetensors`): {state}.\n\n")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    notes = {}
    models = {}
    for spec in MODELS:
        models[spec["name"]] = generate(spec, out_dir, gen, notes)
    c7_type, c7_message = channel_mismatch(models["decoder"], out_dir, gen)
    print(f"decoder.c7.x.npy: {c7_type}: {c7_message}")

    files = []
    for spec in MODELS:
        files.append(f"| `{spec['name']}.json` | | |")
        files.append(f"| `{spec['name']}.safetensors` | | |")
        for xname, xshape, xmax, yname, yshape, ymax in notes[spec["name"]]["cases"]:
            files.append(f"| `{xname}` | {xshape} | {xmax:.6f} |")
            files.append(f"| `{yname}` | {yshape} | {ymax:.6f} |")
    c7 = np.load(os.path.join(out_dir, "decoder.c7.x.npy"))
    files.append(f"| `decoder.c7.x.npy` | {list(c7.shape)} | {float(np.abs(c7).max()):.6f} |")
    text = README.format(torch=torch.__version__, numpy=np.__version__, seed=SEED,
                         models="".join(describe(s, notes[s["name"]]) for s in MODELS).rstrip("\n") + "\n",
                         files="\n".join(files) + "\n", c7_shape="[2, 7, 4, 5]", c7_type=c7_type,
                         c7_message=c7_message)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/dynamic")
