#!/usr/bin/env python3
"""Generates Kiln's own PyTorch reference cases for the ops beyond
`../shared/golden` (issue 13), in the golden format of
`../shared/golden/README.md` (`kind = "model"` cases, plus an `error` field
for configurations PyTorch rejects).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors numpy
    /tmp/venv/bin/python scripts/golden/gen_ops.py tests/golden/ops

Each case is a small graph of `torch.nn` modules in Kiln's model format
(`op` = class name, `args` = keyword arguments, `inputs` = names or null for
the previous node). The script builds the same modules, runs them in eval
mode on seeded random inputs, and stores inputs, the materialized
`state_dict` (parameters overwritten with random values, so tests do not
depend on an init) and the float32 output. Keep the cases small: CI runs
every case on every backend on two cores.
"""

import json
import os
import sys

import torch
from torch import nn
from safetensors.torch import save_file

SEED = 1313


ARITH = {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b}


def build(op, args):
    if op in ARITH:
        # Kiln's Add/Sub/Mul: two operands (broadcasting), or one and `other`.
        f = ARITH[op]
        if "other" in args:
            return lambda x: f(x, args["other"])
        return lambda a, b: f(a, b)
    if op == "Concat":
        return None
    if op == "Narrow":
        return lambda x: torch.narrow(x, args["dim"], args["start"], args["length"])
    if op == "Pad":
        pad = tuple(args["pad"])
        return lambda x: torch.nn.functional.pad(x, pad, mode=args.get("mode", "constant"), value=args.get("value", 0.0)) \
            if args.get("mode", "constant") == "constant" else torch.nn.functional.pad(x, pad, mode=args["mode"])
    if op == "Reshape":
        shape = tuple(args["shape"])
        return lambda x: torch.reshape(x, shape)
    # JSON has lists where PyTorch documents tuples (Upsample's
    # `scale_factor` needs a tuple).
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return getattr(nn, op)(**args)


def run_graph(inputs, nodes, tensors):
    """Runs the node list; returns (output, modules)."""
    values = dict(inputs)
    modules = {}
    prev = next(iter(inputs))
    for spec in nodes:
        srcs = spec.get("inputs")
        if srcs is None:
            srcs = [prev]
        args = [values[s] for s in srcs]
        op = spec.get("op")
        if op == "Concat":
            y = torch.cat(args, dim=spec.get("args", {}).get("dim", 1))
        elif "module" in spec:
            # A module called again (`self.conv(x)` twice in `forward`).
            y = modules[spec["module"]](*args)
        else:
            m = modules.get(spec["name"])
            if m is None:
                m = build(op, spec.get("args", {}))
                modules[spec["name"]] = m
            if isinstance(m, nn.Module):
                m.eval()
            y = m(*args)
        values[spec["name"]] = y
        prev = spec["name"]
    return values[prev], modules


def randomize(modules, gen):
    """Overwrites every parameter and buffer with seeded random values (PReLU
    weights in [-0.5, 0.5], so negative slopes occur; running_var positive)."""
    with torch.no_grad():
        for name, m in modules.items():
            for pname, p in list(m.named_parameters()) + list(m.named_buffers()):
                if p.dtype != torch.float32:
                    continue
                if pname == "running_var":
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
                elif isinstance(m, nn.PReLU):
                    p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
                else:
                    p.copy_((torch.rand(p.shape, generator=gen) - 0.5) * 0.5)


def case(cases, tensors, gen, cid, inputs, nodes, scale=4.0):
    """Adds a valid case, or an error case when PyTorch rejects it."""
    xs = {k: torch.randn(v, generator=gen) * scale for k, v in inputs.items()}
    entry = {"id": cid, "kind": "model", "model": cid, "inputs": inputs, "nodes": nodes}
    try:
        # Build and run once (materializes lazy modules), randomize, run again.
        with torch.no_grad():
            _, modules = run_graph(xs, nodes, tensors)
            randomize(modules_only(modules), gen)
            values = dict(xs)
            y, _ = run_graph_with(values, nodes, modules)
    except (ValueError, RuntimeError, AssertionError, TypeError) as e:
        entry["error"] = {"type": type(e).__name__, "message": str(e).split("\n")[0]}
        cases.append(entry)
        return
    for k, v in xs.items():
        tensors[f"{cid}/input.{k}"] = v.contiguous()
    for name, m in modules_only(modules).items():
        for pname, p in m.state_dict().items():
            if p.dtype == torch.float32:
                tensors[f"{cid}/{name}.{pname}"] = p.detach().clone().contiguous()
    tensors[f"{cid}/output"] = y.detach().clone().contiguous()
    entry["output_shape"] = list(y.shape)
    cases.append(entry)


def run_graph_with(values, nodes, modules):
    prev = next(iter(values))
    for spec in nodes:
        srcs = spec.get("inputs") or [prev]
        args = [values[s] for s in srcs]
        op = spec.get("op")
        if op == "Concat":
            y = torch.cat(args, dim=spec.get("args", {}).get("dim", 1))
        else:
            y = modules[spec.get("module", spec["name"])](*args)
        values[spec["name"]] = y
        prev = spec["name"]
    return values[prev], modules


def modules_only(modules):
    return {k: m for k, m in modules.items() if isinstance(m, nn.Module)}


def one(op, args=None):
    return [{"name": "f", "op": op, "args": args or {}, "inputs": None}]


def main(out_dir):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    cases, tensors = [], {}

    # Pointwise activations: defaults and non-default arguments, on 4-D,
    # 3-D and 2-D inputs (scale 4: both sides of every breakpoint).
    pointwise = [
        ("ELU", {}), ("ELU", {"alpha": 0.5}), ("SELU", {}), ("SiLU", {}),
        ("GELU", {}), ("GELU", {"approximate": "tanh"}),
        ("Hardtanh", {}), ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}),
        ("ReLU6", {}), ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 5.0}),
        ("Hardsigmoid", {}), ("Hardswish", {}), ("Mish", {}),
    ]
    shapes = [[2, 3, 5, 7], [3, 4, 9], [4, 6]]
    for i, (op, args) in enumerate(pointwise):
        shape = shapes[i % len(shapes)]
        case(cases, tensors, gen, f"{op.lower()}_{i}", {"x": shape}, one(op, args))
    # Large inputs: exp overflow paths of ELU/SELU/Softplus/Mish/SiLU.
    for op in ["SiLU", "Mish", "Softplus", "ELU", "GELU"]:
        case(cases, tensors, gen, f"{op.lower()}_wide", {"x": [2, 1030]}, one(op), scale=40.0)

    # PReLU: one shared weight, one per channel (4-D and 2-D).
    case(cases, tensors, gen, "prelu_shared", {"x": [2, 3, 5, 7]}, one("PReLU"))
    case(cases, tensors, gen, "prelu_channels", {"x": [2, 3, 5, 7]}, one("PReLU", {"num_parameters": 3}))
    case(cases, tensors, gen, "prelu_2d", {"x": [4, 6]}, one("PReLU", {"num_parameters": 6, "init": 0.1}))

    # Identities (eval mode) between real layers, so compiled graphs must
    # route the value through them.
    case(cases, tensors, gen, "dropout_chain", {"x": [2, 4, 6, 6]}, [
        {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 5, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "drop", "op": "Dropout", "args": {"p": 0.3}, "inputs": None},
        {"name": "act", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "drop2", "op": "Dropout2d", "args": {"p": 0.5}, "inputs": None},
        {"name": "id", "op": "Identity", "args": {}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "identity_only", {"x": [1, 2, 3, 3]}, one("Identity"))

    # Small decoders mixing the new ops with convolutions.
    case(cases, tensors, gen, "fsrcnn_prelu", {"x": [1, 1, 12, 10]}, [
        {"name": "feat", "op": "LazyConv2d", "args": {"out_channels": 8, "kernel_size": 5, "padding": 2}, "inputs": None},
        {"name": "feat_act", "op": "PReLU", "args": {"num_parameters": 8}, "inputs": None},
        {"name": "shrink", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 1}, "inputs": None},
        {"name": "shrink_act", "op": "PReLU", "args": {}, "inputs": None},
        {"name": "deconv", "op": "LazyConvTranspose2d", "args": {"out_channels": 1, "kernel_size": 9, "stride": 3, "padding": 4, "output_padding": 2}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "gelu_mish_decoder", {"z": [2, 8, 4, 4]}, [
        {"name": "up1", "op": "LazyConvTranspose2d", "args": {"out_channels": 6, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "bn1", "op": "LazyBatchNorm2d", "args": {}, "inputs": None},
        {"name": "a1", "op": "GELU", "args": {}, "inputs": None},
        {"name": "d1", "op": "Dropout2d", "args": {"p": 0.2}, "inputs": None},
        {"name": "c1", "op": "LazyConv2d", "args": {"out_channels": 6, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "a2", "op": "Mish", "args": {}, "inputs": None},
        {"name": "sum", "op": "Add", "args": {}, "inputs": ["a2", "d1"]},
        {"name": "a3", "op": "SiLU", "args": {}, "inputs": None},
        {"name": "up2", "op": "LazyConvTranspose2d", "args": {"out_channels": 3, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "out", "op": "Hardtanh", "args": {}, "inputs": None},
    ], scale=1.0)

    # Pooling: defaults, strides, padding, dilation, ceil mode, divisors,
    # odd sizes (3-D input too).
    pools = [
        ("MaxPool2d", {"kernel_size": 2}, [2, 3, 8, 8]),
        ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, [1, 4, 9, 11]),
        ("MaxPool2d", {"kernel_size": [3, 2], "stride": [2, 1], "dilation": [2, 1], "ceil_mode": True}, [2, 2, 10, 7]),
        ("MaxPool2d", {"kernel_size": 2, "ceil_mode": True}, [3, 5, 5]),
        ("AvgPool2d", {"kernel_size": 2}, [2, 3, 8, 8]),
        ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, [1, 4, 9, 11]),
        ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, [1, 4, 9, 11]),
        ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, [2, 2, 10, 7]),
        ("AvgPool2d", {"kernel_size": [2, 3], "divisor_override": 5}, [1, 3, 6, 9]),
        ("AdaptiveAvgPool2d", {"output_size": 1}, [2, 5, 7, 6]),
        ("AdaptiveAvgPool2d", {"output_size": [3, 4]}, [1, 3, 10, 9]),
        ("AdaptiveAvgPool2d", {"output_size": [None, 2]}, [1, 2, 5, 7]),
    ]
    for i, (op, args, shape) in enumerate(pools):
        case(cases, tensors, gen, f"{op.lower()}_{i}", {"x": shape}, one(op, args))

    # Padding: every class, int and 4-tuple forms, asymmetric.
    pads = [
        ("ZeroPad2d", {"padding": 2}), ("ZeroPad2d", {"padding": [1, 0, 2, 3]}),
        ("ConstantPad2d", {"padding": [2, 1, 0, 1], "value": -1.5}),
        ("ReflectionPad2d", {"padding": 3}), ("ReflectionPad2d", {"padding": [1, 2, 3, 0]}),
        ("ReplicationPad2d", {"padding": 2}), ("ReplicationPad2d", {"padding": [0, 3, 1, 2]}),
    ]
    for i, (op, args) in enumerate(pads):
        case(cases, tensors, gen, f"{op.lower()}_{i}", {"x": [2, 3, 5, 6] if i % 2 else [3, 4, 7]}, one(op, args))

    # Upsampling: scale and size, nearest and bilinear, align_corners, the
    # named classes, non-integer scales.
    ups = [
        ("Upsample", {"scale_factor": 2}), ("Upsample", {"scale_factor": 2, "mode": "bilinear"}),
        ("Upsample", {"scale_factor": 2, "mode": "bilinear", "align_corners": True}),
        ("Upsample", {"size": [11, 7], "mode": "nearest"}), ("Upsample", {"size": [11, 7], "mode": "bilinear"}),
        ("Upsample", {"scale_factor": [1.5, 3], "mode": "nearest"}),
        ("Upsample", {"scale_factor": 2.5, "mode": "bilinear"}),
        ("UpsamplingNearest2d", {"scale_factor": 3}), ("UpsamplingBilinear2d", {"scale_factor": 2}),
        ("UpsamplingBilinear2d", {"size": [9, 13]}),
    ]
    for i, (op, args) in enumerate(ups):
        case(cases, tensors, gen, f"{op.lower()}_{i}", {"x": [2, 3, 5, 6]}, one(op, args))

    case(cases, tensors, gen, "pixel_shuffle_2", {"x": [2, 12, 4, 5]}, one("PixelShuffle", {"upscale_factor": 2}))
    case(cases, tensors, gen, "pixel_shuffle_3", {"x": [1, 9, 3, 3]}, one("PixelShuffle", {"upscale_factor": 3}))
    case(cases, tensors, gen, "pixel_unshuffle_2", {"x": [2, 3, 6, 4]}, one("PixelUnshuffle", {"downscale_factor": 2}))

    # Decoders built from them (ESPCN-style sub-pixel head, a U-Net step,
    # a reflection-padded CycleGAN block).
    case(cases, tensors, gen, "espcn_head", {"x": [1, 3, 8, 9]}, [
        {"name": "c1", "op": "LazyConv2d", "args": {"out_channels": 16, "kernel_size": 5, "padding": 2}, "inputs": None},
        {"name": "a1", "op": "Tanh", "args": {}, "inputs": None},
        {"name": "c2", "op": "LazyConv2d", "args": {"out_channels": 12, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "ps", "op": "PixelShuffle", "args": {"upscale_factor": 2}, "inputs": None},
        {"name": "out", "op": "Sigmoid", "args": {}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "unet_step", {"x": [2, 4, 12, 12]}, [
        {"name": "enc", "op": "LazyConv2d", "args": {"out_channels": 8, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "enc_act", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "pool", "op": "MaxPool2d", "args": {"kernel_size": 2}, "inputs": None},
        {"name": "mid", "op": "LazyConv2d", "args": {"out_channels": 8, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "up", "op": "Upsample", "args": {"scale_factor": 2, "mode": "bilinear"}, "inputs": None},
        {"name": "cat", "op": "Concat", "args": {"dim": 1}, "inputs": ["up", "enc_act"]},
        {"name": "dec", "op": "LazyConvTranspose2d", "args": {"out_channels": 3, "kernel_size": 3, "padding": 1}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "cyclegan_block", {"x": [1, 4, 9, 10]}, [
        {"name": "pad1", "op": "ReflectionPad2d", "args": {"padding": 1}, "inputs": None},
        {"name": "conv1", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "pad2", "op": "ReplicationPad2d", "args": {"padding": 1}, "inputs": None},
        {"name": "conv2", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}, "inputs": None},
        {"name": "sum", "op": "Add", "args": {}, "inputs": ["conv2", "x"]},
        {"name": "gap", "op": "AdaptiveAvgPool2d", "args": {"output_size": 2}, "inputs": None},
    ], scale=1.0)

    # Dense and shape ops.
    case(cases, tensors, gen, "linear_2d", {"x": [4, 10]}, one("LazyLinear", {"out_features": 7}), scale=1.0)
    case(cases, tensors, gen, "linear_3d", {"x": [2, 3, 10]}, one("Linear", {"in_features": 10, "out_features": 5, "bias": False}), scale=1.0)
    case(cases, tensors, gen, "linear_relu", {"x": [3, 33]}, [
        {"name": "fc", "op": "LazyLinear", "args": {"out_features": 40}, "inputs": None},
        {"name": "act", "op": "ReLU", "args": {}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "bn1d_2d", {"x": [6, 5]}, one("LazyBatchNorm1d"), scale=1.0)
    case(cases, tensors, gen, "bn1d_3d", {"x": [2, 4, 7]}, one("BatchNorm1d", {"num_features": 4}), scale=1.0)
    case(cases, tensors, gen, "flatten_default", {"x": [2, 3, 4, 5]}, one("Flatten"))
    case(cases, tensors, gen, "flatten_0_2", {"x": [2, 3, 4, 5]}, one("Flatten", {"start_dim": 0, "end_dim": 2}))
    case(cases, tensors, gen, "unflatten", {"x": [2, 48]}, one("Unflatten", {"dim": 1, "unflattened_size": [3, 4, 4]}))
    case(cases, tensors, gen, "reshape", {"x": [2, 48]}, one("Reshape", {"shape": [-1, 3, 4, 4]}))
    case(cases, tensors, gen, "vae_decoder", {"z": [2, 16]}, [
        {"name": "fc", "op": "LazyLinear", "args": {"out_features": 128}, "inputs": None},
        {"name": "fc_act", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "unflat", "op": "Unflatten", "args": {"dim": 1, "unflattened_size": [8, 4, 4]}, "inputs": None},
        {"name": "up1", "op": "LazyConvTranspose2d", "args": {"out_channels": 8, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "bn1", "op": "LazyBatchNorm2d", "args": {}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "up2", "op": "LazyConvTranspose2d", "args": {"out_channels": 3, "kernel_size": 4, "stride": 2, "padding": 1}, "inputs": None},
        {"name": "out", "op": "Sigmoid", "args": {}, "inputs": None},
    ], scale=1.0)
    case(cases, tensors, gen, "mlp_generator", {"z": [3, 8]}, [
        {"name": "fc1", "op": "LazyLinear", "args": {"out_features": 32}, "inputs": None},
        {"name": "bn", "op": "LazyBatchNorm1d", "args": {}, "inputs": None},
        {"name": "act", "op": "LeakyReLU", "args": {"negative_slope": 0.2}, "inputs": None},
        {"name": "drop", "op": "Dropout", "args": {"p": 0.4}, "inputs": None},
        {"name": "fc2", "op": "Linear", "args": {"in_features": 32, "out_features": 48}, "inputs": None},
        {"name": "img", "op": "Reshape", "args": {"shape": [-1, 3, 4, 4]}, "inputs": None},
        {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "stride": 2}, "inputs": None},
        {"name": "flat", "op": "Flatten", "args": {}, "inputs": None},
        {"name": "out", "op": "Tanh", "args": {}, "inputs": None},
    ], scale=1.0)

    # Normalization: per-instance statistics (offset inputs, so a one-pass
    # variance would lose digits), running statistics, groups.
    case(cases, tensors, gen, "instnorm_plain", {"x": [2, 3, 6, 7]}, one("LazyInstanceNorm2d"))
    case(cases, tensors, gen, "instnorm_affine", {"x": [2, 3, 6, 7]}, one("InstanceNorm2d", {"num_features": 3, "affine": True}))
    case(cases, tensors, gen, "instnorm_running", {"x": [2, 3, 5, 5]}, one("InstanceNorm2d", {"num_features": 3, "affine": True, "track_running_stats": True}))
    case(cases, tensors, gen, "instnorm_3d", {"x": [4, 5, 6]}, one("InstanceNorm2d", {"num_features": 4}))
    case(cases, tensors, gen, "groupnorm", {"x": [2, 6, 5, 4]}, one("GroupNorm", {"num_groups": 3, "num_channels": 6}))
    case(cases, tensors, gen, "groupnorm_plain_2d", {"x": [3, 8]}, one("GroupNorm", {"num_groups": 2, "num_channels": 8, "affine": False, "eps": 1e-3}))
    case(cases, tensors, gen, "groupnorm_one", {"x": [2, 4, 3, 3]}, one("GroupNorm", {"num_groups": 1, "num_channels": 4}))
    case(cases, tensors, gen, "cyclegan_resblock", {"x": [1, 4, 8, 8]}, [
        {"name": "pad1", "op": "ReflectionPad2d", "args": {"padding": 1}, "inputs": None},
        {"name": "conv1", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}, "inputs": None},
        {"name": "in1", "op": "InstanceNorm2d", "args": {"num_features": 4}, "inputs": None},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "pad2", "op": "ReflectionPad2d", "args": {"padding": 1}, "inputs": None},
        {"name": "conv2", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}, "inputs": None},
        {"name": "in2", "op": "InstanceNorm2d", "args": {"num_features": 4}, "inputs": None},
        {"name": "sum", "op": "Add", "args": {}, "inputs": ["in2", "x"]},
        {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, "inputs": None},
        {"name": "gn", "op": "GroupNorm", "args": {"num_groups": 2, "num_channels": 2}, "inputs": None},
        {"name": "out", "op": "Tanh", "args": {}, "inputs": None},
    ], scale=1.0)
    # A large common offset: the statistics must be computed stably.
    xs_off = {"x": [1, 2, 16, 16]}
    case(cases, tensors, gen, "instnorm_offset", xs_off, [
        {"name": "shift", "op": "ConstantPad2d", "args": {"padding": 0, "value": 0.0}, "inputs": None},
        {"name": "norm", "op": "InstanceNorm2d", "args": {"num_features": 2}, "inputs": None},
    ], scale=1.0)

    # Arithmetic: broadcasting and the scalar form.
    case(cases, tensors, gen, "add_broadcast", {"x": [2, 3, 4, 5], "s": [1, 3, 1, 1]}, [
        {"name": "f", "op": "Add", "args": {}, "inputs": ["x", "s"]}])
    case(cases, tensors, gen, "mul_channel_scale", {"x": [2, 3, 4, 5], "s": [1, 3, 1, 1]}, [
        {"name": "f", "op": "Mul", "args": {}, "inputs": ["s", "x"]}])
    case(cases, tensors, gen, "sub_rows", {"x": [2, 3, 4, 5], "s": [5]}, [
        {"name": "f", "op": "Sub", "args": {}, "inputs": ["x", "s"]}])
    case(cases, tensors, gen, "sub_outer", {"x": [3, 1], "s": [1, 4]}, [
        {"name": "f", "op": "Sub", "args": {}, "inputs": ["x", "s"]}])
    case(cases, tensors, gen, "mul_equal", {"x": [2, 3, 4, 5], "s": [2, 3, 4, 5]}, [
        {"name": "f", "op": "Mul", "args": {}, "inputs": ["x", "s"]}])
    case(cases, tensors, gen, "scalars", {"x": [2, 3, 4, 5]}, [
        {"name": "m", "op": "Mul", "args": {"other": 0.1}, "inputs": None},
        {"name": "a", "op": "Add", "args": {"other": -0.5}, "inputs": None},
        {"name": "s", "op": "Sub", "args": {"other": 2.0}, "inputs": None},
        {"name": "r", "op": "ReLU", "args": {}, "inputs": None}])
    case(cases, tensors, gen, "edsr_residual", {"x": [1, 4, 8, 8]}, [
        {"name": "c1", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "act", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "c2", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "scale", "op": "Mul", "args": {"other": 0.1}, "inputs": None},
        {"name": "res", "op": "Add", "args": {}, "inputs": ["scale", "x"]},
        {"name": "up", "op": "LazyConv2d", "args": {"out_channels": 16, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "ps", "op": "PixelShuffle", "args": {"upscale_factor": 2}, "inputs": None}], scale=1.0)
    case(cases, tensors, gen, "err_broadcast", {"x": [2, 3, 4, 5], "s": [1, 4, 1, 1]}, [
        {"name": "f", "op": "Mul", "args": {}, "inputs": ["x", "s"]}])

    # Concatenation along other dims, crops, functional padding.
    case(cases, tensors, gen, "cat_dim0", {"x": [2, 3, 4], "y": [1, 3, 4]}, [
        {"name": "f", "op": "Concat", "args": {"dim": 0}, "inputs": ["x", "y"]}])
    case(cases, tensors, gen, "cat_dim_last", {"x": [2, 3, 4, 5], "y": [2, 3, 4, 2]}, [
        {"name": "f", "op": "Concat", "args": {"dim": -1}, "inputs": ["x", "y", "x"]}])
    case(cases, tensors, gen, "cat_2d", {"x": [4, 6], "y": [4, 3]}, [
        {"name": "f", "op": "Concat", "args": {"dim": -1}, "inputs": ["x", "y"]}])
    case(cases, tensors, gen, "cat_dim2", {"x": [1, 2, 3, 4], "y": [1, 2, 5, 4]}, [
        {"name": "f", "op": "Concat", "args": {"dim": 2}, "inputs": ["x", "y"]}])
    case(cases, tensors, gen, "narrow_h", {"x": [2, 3, 10, 9]}, one("Narrow", {"dim": 2, "start": 3, "length": 5}))
    case(cases, tensors, gen, "narrow_c", {"x": [2, 6, 4, 4]}, one("Narrow", {"dim": 1, "start": 1, "length": 2}))
    case(cases, tensors, gen, "narrow_last", {"x": [3, 7]}, one("Narrow", {"dim": -1, "start": 0, "length": 4}))
    case(cases, tensors, gen, "fpad_constant", {"x": [2, 3, 4, 5]}, one("Pad", {"pad": [1, 2, 0, 3], "value": 0.5}))
    case(cases, tensors, gen, "fpad_reflect", {"x": [2, 3, 4, 5]}, one("Pad", {"pad": [2, 2, 0, 1], "mode": "reflect"}))
    case(cases, tensors, gen, "err_fpad_reflect_1d_on_4d", {"x": [2, 3, 4, 5]}, one("Pad", {"pad": [2, 2], "mode": "reflect"}))
    case(cases, tensors, gen, "fpad_replicate", {"x": [2, 3, 4, 5]}, one("Pad", {"pad": [1, 0, 2, 1], "mode": "replicate"}))
    case(cases, tensors, gen, "fcn_crop", {"x": [1, 3, 8, 8]}, [
        {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 4, "stride": 2}, "inputs": None},
        {"name": "crop_h", "op": "Narrow", "args": {"dim": 2, "start": 1, "length": 16}, "inputs": None},
        {"name": "crop_w", "op": "Narrow", "args": {"dim": 3, "start": 1, "length": 16}, "inputs": None}], scale=1.0)
    case(cases, tensors, gen, "err_cat_sizes", {"x": [2, 3, 4], "y": [2, 4, 4]}, [
        {"name": "f", "op": "Concat", "args": {"dim": 0}, "inputs": ["x", "y"]}])
    case(cases, tensors, gen, "err_narrow_range", {"x": [2, 3, 4]}, one("Narrow", {"dim": 2, "start": 2, "length": 3}))

    # Module reuse: one module called at several places shares its weights.
    case(cases, tensors, gen, "module_reuse", {"x": [2, 4, 6, 6]}, [
        {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "inputs": None},
        {"name": "act", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "conv_2", "module": "conv", "inputs": ["act"]},
        {"name": "act_2", "op": "ReLU", "args": {}, "inputs": None},
        {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 4, "kernel_size": 2, "stride": 2}, "inputs": None},
        {"name": "up_2", "module": "up", "inputs": ["x"]},
        {"name": "sum", "op": "Add", "args": {}, "inputs": ["up", "up_2"]},
    ], scale=1.0)
    case(cases, tensors, gen, "err_module_reuse_channels", {"x": [1, 3, 5, 5]}, [
        {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}, "inputs": None},
        {"name": "conv_2", "module": "conv", "inputs": None},
    ])

    # Configurations PyTorch rejects.
    case(cases, tensors, gen, "err_hardtanh_bounds", {"x": [1, 2, 3, 3]}, one("Hardtanh", {"min_val": 1.0, "max_val": 1.0}))
    case(cases, tensors, gen, "err_dropout_p", {"x": [1, 2, 3, 3]}, one("Dropout", {"p": 1.5}))
    case(cases, tensors, gen, "err_dropout2d_p", {"x": [1, 2, 3, 3]}, one("Dropout2d", {"p": -0.1}))
    case(cases, tensors, gen, "err_prelu_channels", {"x": [1, 4, 3, 3]}, one("PReLU", {"num_parameters": 3}))
    case(cases, tensors, gen, "err_maxpool_pad", {"x": [1, 2, 8, 8]}, one("MaxPool2d", {"kernel_size": 2, "padding": 2}))
    case(cases, tensors, gen, "err_avgpool_small", {"x": [1, 2, 2, 2]}, one("AvgPool2d", {"kernel_size": 3}))
    case(cases, tensors, gen, "err_avgpool_divisor", {"x": [1, 2, 4, 4]}, one("AvgPool2d", {"kernel_size": 2, "divisor_override": 0}))
    case(cases, tensors, gen, "err_reflect_too_wide", {"x": [1, 2, 3, 3]}, one("ReflectionPad2d", {"padding": 3}))
    case(cases, tensors, gen, "err_shuffle_channels", {"x": [1, 6, 3, 3]}, one("PixelShuffle", {"upscale_factor": 2}))
    case(cases, tensors, gen, "err_unshuffle_size", {"x": [1, 2, 5, 4]}, one("PixelUnshuffle", {"downscale_factor": 2}))
    case(cases, tensors, gen, "err_upsample_both", {"x": [1, 2, 3, 3]}, one("Upsample", {"size": 6, "scale_factor": 2}))
    case(cases, tensors, gen, "err_upsample_align_nearest", {"x": [1, 2, 3, 3]}, one("Upsample", {"scale_factor": 2, "align_corners": True}))
    case(cases, tensors, gen, "err_upsample_3d_bilinear", {"x": [2, 3, 3]}, one("Upsample", {"scale_factor": 2, "mode": "bilinear"}))
    case(cases, tensors, gen, "err_linear_features", {"x": [2, 5]}, one("Linear", {"in_features": 4, "out_features": 3}))
    case(cases, tensors, gen, "err_bn1d_4d", {"x": [2, 3, 4, 4]}, one("BatchNorm1d", {"num_features": 3}))
    case(cases, tensors, gen, "err_unflatten_sizes", {"x": [2, 10]}, one("Unflatten", {"dim": 1, "unflattened_size": [3, 4]}))
    case(cases, tensors, gen, "err_reshape_size", {"x": [2, 6]}, one("Reshape", {"shape": [5, -1]}))
    case(cases, tensors, gen, "err_flatten_dims", {"x": [2, 6]}, one("Flatten", {"start_dim": 1, "end_dim": 0}))
    case(cases, tensors, gen, "err_groupnorm_divisible", {"x": [1, 6, 3, 3]}, one("GroupNorm", {"num_groups": 4, "num_channels": 6}))
    case(cases, tensors, gen, "err_groupnorm_channels", {"x": [1, 4, 3, 3]}, one("GroupNorm", {"num_groups": 2, "num_channels": 6}))
    case(cases, tensors, gen, "err_instnorm_affine_channels", {"x": [1, 4, 3, 3]}, one("InstanceNorm2d", {"num_features": 3, "affine": True}))
    case(cases, tensors, gen, "err_gelu_approximate", {"x": [1, 2, 3, 3]}, one("GELU", {"approximate": "fast"}))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"torch": torch.__version__, "seed": SEED, "cases": cases}, f, indent=1)
        f.write("\n")
    save_file(tensors, os.path.join(out_dir, "tensors.safetensors"))
    errors = sum(1 for c in cases if "error" in c)
    print(f"{len(cases)} cases ({errors} errors), {len(tensors)} tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/ops")
