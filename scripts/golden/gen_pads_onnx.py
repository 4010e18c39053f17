#!/usr/bin/env python3
"""Generates golden cases for per-side (asymmetric) convolution padding,
Kiln's `pads` extension, with ONNX as the reference: each case is one ONNX
`Conv` or `ConvTranspose` node with explicit `pads` (and `output_padding`),
computed by a direct float64 implementation of the ONNX definitions
(`direct` below) and cross-checked against onnxruntime (which refuses
`output_padding >= max(stride, dilation)`, though the ONNX definition does
not), `onnx.reference` (whose grouped ConvTranspose is wrong and which
fails on `output_padding >= stride`) where they run, and PyTorch with the
padding applied by hand; each case lists what it was checked against.

    /work/venv/bin/python scripts/golden/gen_pads_onnx.py tests/golden/pads

Writes `cases.json` and `tensors.safetensors` in the golden format of
`scripts/golden/gen_ops.py` (`kind = "model"` cases in Kiln's model format;
`<id>/input.x`, `<id>/<node>.weight`, `<id>/<node>.bias`, `<id>/output`), so
`tests/golden.rs` runs them on every backend. PyTorch cannot express most
of these configurations, which is why ONNX is the reference here. Keep the
cases small: CI runs every case on every backend on two cores.
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from safetensors.numpy import save_file

SEED = 4242

# (id, class, in shape, out_channels, kernel, stride, dilation, groups,
#  pads [top, left, bottom, right], output_padding, bias).
CASES = [
    # Transposed convolutions.
    ("ct_same_upper_s2", "ConvTranspose2d", [1, 3, 5, 6], 4, [3, 3], [2, 2], [1, 1], 1, [0, 0, 1, 1], [0, 0], True),
    ("ct_same_lower_s2", "ConvTranspose2d", [2, 3, 5, 4], 2, [3, 3], [2, 2], [1, 1], 1, [1, 1, 0, 0], [0, 0], True),
    ("ct_mixed_axes", "ConvTranspose2d", [1, 4, 4, 5], 6, [4, 3], [2, 3], [1, 1], 2, [2, 0, 1, 3], [1, 2], True),
    ("ct_big_output_padding", "ConvTranspose2d", [1, 2, 3, 3], 3, [3, 3], [2, 2], [1, 1], 1, [1, 0, 0, 1], [3, 4], True),
    ("ct_end_only_dilated", "ConvTranspose2d", [1, 2, 4, 4], 2, [3, 2], [1, 2], [2, 3], 1, [0, 0, 3, 2], [0, 1], False),
    ("ct_depthwise_k4_s2", "ConvTranspose2d", [1, 4, 6, 5], 4, [4, 4], [2, 2], [1, 1], 4, [2, 1, 1, 2], [0, 0], True),
    ("ct_crop_past_kernel", "ConvTranspose2d", [1, 3, 6, 6], 5, [2, 2], [3, 3], [1, 1], 1, [4, 0, 0, 5], [0, 0], True),
    ("ct_op_past_crop", "ConvTranspose2d", [1, 2, 3, 4], 2, [2, 2], [1, 1], [1, 1], 1, [0, 1, 0, 0], [2, 3], True),
    # Convolutions.
    ("conv_k2_same_upper", "Conv2d", [1, 3, 6, 5], 4, [2, 2], [1, 1], [1, 1], 1, [0, 0, 1, 1], None, True),
    ("conv_s2_asym", "Conv2d", [2, 4, 7, 8], 6, [3, 3], [2, 2], [1, 1], 2, [1, 0, 2, 3], None, True),
    ("conv_end_only_dilated", "Conv2d", [1, 2, 5, 6], 3, [3, 2], [1, 2], [2, 1], 1, [0, 0, 4, 1], None, False),
    ("conv_pad_past_kernel", "Conv2d", [1, 2, 4, 4], 2, [2, 3], [1, 1], [1, 1], 1, [3, 0, 0, 4], None, True),
    ("conv_depthwise_begin", "Conv2d", [1, 3, 5, 5], 3, [3, 3], [1, 2], [1, 1], 3, [2, 2, 0, 1], None, True),
    # PyTorch's padding='same' with odd totals (extra row/column at the end),
    # which Kiln reads as per-side pads; also checked against PyTorch itself.
    ("conv_same_even_kernel", "Conv2d", [1, 2, 5, 6], 3, [2, 4], [1, 1], [1, 1], 1, "same", None, True),
    ("conv_same_dilated", "Conv2d", [1, 2, 5, 6], 2, [3, 2], [1, 1], [2, 3], 2, "same", None, False),
]


def same_pads(k, d):
    """PyTorch's 'same': total d·(k−1) per axis, the odd extra at the end."""
    total = [d[i] * (k[i] - 1) for i in range(2)]
    return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]


def onnx_node(cls, k, s, d, g, pads, op, bias):
    inputs = ["x", "w"] + (["b"] if bias else [])
    attrs = dict(kernel_shape=k, strides=s, dilations=d, group=g, pads=pads)
    if cls == "ConvTranspose2d":
        attrs["output_padding"] = op
        return helper.make_node("ConvTranspose", inputs, ["y"], **attrs)
    return helper.make_node("Conv", inputs, ["y"], **attrs)


def run(cls, x, w, b, k, s, d, g, pads, op, same=False):
    node = onnx_node(cls, k, s, d, g, pads, op, b is not None)
    inits = [onnx.numpy_helper.from_array(w, "w")] + ([onnx.numpy_helper.from_array(b, "b")] if b is not None else [])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None, None])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    # The direct float64 implementation is always one reference; at least
    # one of the two runtimes must agree with it on every case.
    naive = direct(cls, x, w, b, s, d, g, pads, op)
    checks = []
    try:
        quiet = ort.SessionOptions()
        quiet.log_severity_level = 4
        session = ort.InferenceSession(model.SerializeToString(), quiet, providers=["CPUExecutionProvider"])
        rt = session.run(None, {"x": x})
        checks.append(("onnxruntime", rt[0]))
    except ort.capi.onnxruntime_pybind11_state.InvalidArgument as e:
        # onnxruntime refuses output_padding >= max(stride, dilation), which
        # the ONNX operator definition does not forbid.
        assert "output_padding" in str(e), e
    big_op = cls == "ConvTranspose2d" and any(op[i] >= max(s[i], d[i]) for i in range(2))
    if g == 1 and not big_op:
        # onnx.reference's grouped ConvTranspose slices the weight by output
        # channels (wrong for groups > 1), and its col2im fails when
        # output_padding reaches the stride, so it checks the other cases.
        checks.append(("onnx.reference", ReferenceEvaluator(model).run(None, {"x": x})[0]))
    checks.append(("torch", via_torch(cls, x, w, b, s, d, g, pads, op)))
    if same:
        import torch
        import torch.nn.functional as F

        bt = torch.from_numpy(b).double() if b is not None else None
        y = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), bt, dilation=d, groups=g,
                     padding="same")
        checks.append(("torch padding='same'", y.float().numpy()))
    assert checks, "no runtime to check against"
    for name, got in checks:
        assert got.shape == naive.shape, (name, got.shape, naive.shape)
        assert np.allclose(got, naive, rtol=1e-4, atol=1e-4), (name, float(np.abs(got - naive).max()))
    return naive, [name for name, _ in checks]

def via_torch(cls, x, w, b, s, d, g, pads, op):
    """PyTorch as the arithmetic engine, with the padding done by hand: the
    unpadded transposed convolution, cropped and extended into a zero output
    (bias everywhere); or an explicit zero pad, then an unpadded convolution."""
    import torch
    import torch.nn.functional as F

    top, left, bottom, right = pads
    xt, wt = torch.from_numpy(x).double(), torch.from_numpy(w).double()
    if cls == "ConvTranspose2d":
        full = F.conv_transpose2d(xt, wt, stride=s, dilation=d, groups=g)
        fh, fw = full.shape[2:]
        oh, ow = fh - top - bottom + op[0], fw - left - right + op[1]
        y = torch.zeros(full.shape[0], full.shape[1], oh, ow, dtype=torch.float64)
        h, wd = min(oh, fh - top), min(ow, fw - left)
        y[:, :, :h, :wd] = full[:, :, top:top + h, left:left + wd]
    else:
        y = F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, stride=s, dilation=d, groups=g)
    if b is not None:
        y = y + torch.from_numpy(b).double()[None, :, None, None]
    return y.float().numpy()


def direct(cls, x, w, b, s, d, g, pads, op):
    """The ONNX definitions, written out loop by loop in float64: a
    transposed convolution scatters into the full output, crops `pads`
    begin/end and extends by `output_padding`; a convolution zero-pads the
    input by `pads`, then correlates."""
    n, cin, ih, iw = x.shape
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    kh, kw = w.shape[2:]
    top, left, bottom, right = pads
    if cls == "ConvTranspose2d":
        cog = w.shape[1]
        cout, cig = cog * g, cin // g
        full = [s[0] * (ih - 1) + d[0] * (kh - 1) + 1, s[1] * (iw - 1) + d[1] * (kw - 1) + 1]
        oh, ow = full[0] - top - bottom + op[0], full[1] - left - right + op[1]
        y = np.zeros((n, cout, oh, ow))
        for ci in range(cin):
            grp = ci // cig
            for oc in range(cog):
                co = grp * cog + oc
                for a in range(kh):
                    for c in range(kw):
                        for i in range(ih):
                            for j in range(iw):
                                r, q = i * s[0] + a * d[0] - top, j * s[1] + c * d[1] - left
                                if 0 <= r < oh and 0 <= q < ow:
                                    y[:, co, r, q] += x64[:, ci, i, j] * w64[ci, oc, a, c]
    else:
        cout, cig = w.shape[0], w.shape[1]
        cog = cout // g
        xp = np.zeros((n, cin, ih + top + bottom, iw + left + right))
        xp[:, :, top:top + ih, left:left + iw] = x64
        oh = (xp.shape[2] - d[0] * (kh - 1) - 1) // s[0] + 1
        ow = (xp.shape[3] - d[1] * (kw - 1) - 1) // s[1] + 1
        y = np.zeros((n, cout, oh, ow))
        for co in range(cout):
            grp = co // cog
            for cg in range(cig):
                for a in range(kh):
                    for c in range(kw):
                        patch = xp[:, grp * cig + cg, a * d[0]:a * d[0] + s[0] * (oh - 1) + 1:s[0],
                                   c * d[1]:c * d[1] + s[1] * (ow - 1) + 1:s[1]]
                        y[:, co] += patch * w64[co, cg, a, c]
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y.astype(np.float32)

def main(out_dir):
    rng = np.random.default_rng(SEED)
    cases, tensors = [], {}
    for cid, cls, shape, cout, k, s, d, g, pads, op, bias in CASES:
        cin = shape[1]
        x = rng.standard_normal(shape).astype(np.float32)
        if cls == "ConvTranspose2d":
            w = rng.standard_normal([cin, cout // g] + k).astype(np.float32)
        else:
            w = rng.standard_normal([cout, cin // g] + k).astype(np.float32)
        b = rng.standard_normal([cout]).astype(np.float32) if bias else None
        same = pads == "same"
        if same:
            pads = same_pads(k, d)
        y, checked = run(cls, x, w, b, k, s, d, g, pads, op, same)
        args = {"out_channels": cout, "kernel_size": k, "stride": s, "dilation": d, "groups": g, "bias": bias}
        if same:
            args["padding"] = "same"
        else:
            args["pads"] = pads
        if op is not None:
            args["output_padding"] = op
        nodes = [{"name": "conv", "op": "Lazy" + cls, "args": args, "inputs": None}]
        cases.append({"id": cid, "kind": "model", "model": cid, "inputs": {"x": shape}, "nodes": nodes,
                      "output_shape": list(y.shape), "checked_against": ["direct"] + checked})
        tensors[f"{cid}/input.x"] = x
        tensors[f"{cid}/conv.weight"] = w
        if b is not None:
            tensors[f"{cid}/conv.bias"] = b
        tensors[f"{cid}/output"] = np.ascontiguousarray(y)
    os.makedirs(out_dir, exist_ok=True)
    doc = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "seed": SEED, "cases": cases}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    save_file(tensors, os.path.join(out_dir, "tensors.safetensors"))
    print(f"{len(cases)} cases written to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/golden/pads")
