#!/usr/bin/env python3
"""Writes the ONNX fixtures of `crates/onnx/tests/` and the values the tests
compare against.

    python3 -m venv /work/venv && /work/venv/bin/pip install torch onnx numpy
    /work/venv/bin/python scripts/onnx/export_fixtures.py crates/onnx/tests/fixtures

Fixtures (each well under 20 KB):

- `conv_static.onnx`, `conv_dynamic.onnx`: a tiny Conv2d -> BatchNorm2d -> ReLU
  -> ConvTranspose2d module exported by torch's TorchScript exporter
  (`dynamo=False`), once with static shapes and once with a dynamic batch axis
  (so inputs and outputs carry a `dim_param`). Constant folding is off so the
  BatchNormalization node and its four initializers stay in the graph.
- `dtypes.onnx`: built with `onnx.helper`, initializers of many element types,
  each stored both in `raw_data` and in its typed field (`int32_data` for
  float16/int8/bool/..., `uint64_data` for uint32/uint64, `double_data`,
  `int64_data`), with the float16 corner cases (subnormals, infinities, NaN,
  -0); a Constant node with a tensor attribute and a Cast node with an INT one.
- `subgraph.onnx`: an If node whose branches are subgraphs.
- `external/model.onnx` + `external/weights.bin`: saved with
  `save_as_external_data=True, all_tensors_to_one_file=True,
  location='weights.bin', size_threshold=0`.

`expected.json` holds, for every fixture, what `onnx` itself reads from the
written file (reloaded from disk): opsets, producer, input/output names, element
types and shapes, op types, and for every initializer its dims, data type and
values as computed by `onnx.numpy_helper.to_array`: floats as the bit patterns of
their float32 conversion (`f32_bits`, so NaN and -0 compare exactly), float64 as
bit patterns (`f64_bits`), integers and bools as int64 (`i64`). Large tensors
store only the first values (`head`) and the float64 sum. The Rust tests never
derive expectations from the Rust reader itself.
"""

import json
import os
import shutil
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

SEED = 2026
HEAD = 16  # values kept per tensor; tensors up to this size are stored whole


def float_bits(a):
    return [int(b) for b in np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


def describe_tensor(t):
    arr = numpy_helper.to_array(t)
    out = {"dims": [int(d) for d in t.dims], "data_type": int(t.data_type), "count": int(arr.size)}
    flat = arr.reshape(-1)
    if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
        if arr.dtype == np.float64:
            out["f64_bits"] = [int(b) for b in flat[:HEAD].view(np.uint64)]
        with np.errstate(all="ignore"):  # float64 1e300 rounds to inf, as in Rust
            out["f32_bits"] = float_bits(flat[:HEAD].astype(np.float32))
        with np.errstate(all="ignore"):
            s = float(np.asarray(arr, dtype=np.float64).sum())
        out["sum"] = s if np.isfinite(s) else None  # JSON has no NaN or inf
    elif arr.dtype.kind in "iub":
        out["i64"] = [int(x) for x in flat[:HEAD].astype(np.int64)]
        out["sum"] = int(flat.astype(np.int64).sum())  # wrapping int64 sum
    out["raw"] = t.HasField("raw_data") or t.data_location == TensorProto.EXTERNAL
    return out


def describe_value(v):
    tt = v.type.tensor_type
    shape = None
    if tt.HasField("shape"):
        shape = []
        for d in tt.shape.dim:
            which = d.WhichOneof("value")
            shape.append(int(d.dim_value) if which == "dim_value" else d.dim_param if which == "dim_param" else None)
    return {"name": v.name, "elem_type": int(tt.elem_type), "shape": shape}


def describe_model(path):
    m = onnx.load(path)  # loads external data from beside the file
    onnx.checker.check_model(m)
    g = m.graph
    return {
        "ir_version": int(m.ir_version),
        "producer_name": m.producer_name,
        "opsets": {o.domain: int(o.version) for o in m.opset_import},
        "inputs": [describe_value(v) for v in g.input],
        "outputs": [describe_value(v) for v in g.output],
        "op_types": [n.op_type for n in g.node],
        "initializers": {t.name: describe_tensor(t) for t in g.initializer},
    }


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.up = nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)

    def forward(self, x):
        return self.up(self.relu(self.bn(self.conv(x))))


def export_torch(out_dir):
    torch.manual_seed(SEED)
    m = Tiny().eval()
    with torch.no_grad():
        # Non-trivial running statistics, so the initializers are not 0 and 1.
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.2, 0.2)
    x = torch.randn(1, 3, 8, 8)
    common = dict(input_names=["x"], output_names=["y"], opset_version=17, do_constant_folding=False, dynamo=False)
    torch.onnx.export(m, (x,), os.path.join(out_dir, "conv_static.onnx"), **common)
    torch.onnx.export(
        m,
        (x,),
        os.path.join(out_dir, "conv_dynamic.onnx"),
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        **common,
    )


def both(name, np_array, onnx_type):
    """The same values twice: in raw_data and in the typed field."""
    vals = np_array.reshape(-1).tolist() if onnx_type not in (TensorProto.FLOAT16, TensorProto.BFLOAT16) else np_array
    typed = helper.make_tensor(name + "_typed", onnx_type, np_array.shape, vals, raw=False)
    raw = helper.make_tensor(name + "_raw", onnx_type, np_array.shape, np_array.tobytes(), raw=True)
    return [raw, typed]


def export_dtypes(out_dir):
    f16 = np.array(
        [0.0, -0.0, 1.0, -2.5, 65504.0, 2.0**-24, 2.0**-14, 3 * 2.0**-24, np.inf, -np.inf, np.nan, 1 / 3],
        dtype=np.float16,
    ).reshape(3, 4)
    inits = []
    inits += both("f16", f16, TensorProto.FLOAT16)
    inits += both("f32", np.array([[1.5, -0.25, 3e38], [1e-45, -0.0, 7.0]], dtype=np.float32), TensorProto.FLOAT)
    inits += both("f64", np.array([1e-300, -2.0, np.pi, 1e300], dtype=np.float64), TensorProto.DOUBLE)
    inits += both("i8", np.array([-128, -1, 0, 1, 127], dtype=np.int8), TensorProto.INT8)
    inits += both("u8", np.array([0, 1, 200, 255], dtype=np.uint8), TensorProto.UINT8)
    inits += both("i16", np.array([-32768, -5, 32767], dtype=np.int16), TensorProto.INT16)
    inits += both("u16", np.array([0, 40000, 65535], dtype=np.uint16), TensorProto.UINT16)
    inits += both("i32", np.array([-(2**31), 7, 2**31 - 1], dtype=np.int32), TensorProto.INT32)
    inits += both("u32", np.array([0, 2**32 - 1], dtype=np.uint32), TensorProto.UINT32)
    inits += both("i64", np.array([[-(2**63), -1], [2**40, 2**63 - 1]], dtype=np.int64), TensorProto.INT64)
    inits += both("u64", np.array([0, 2**63 - 1], dtype=np.uint64), TensorProto.UINT64)
    inits += both("bool", np.array([True, False, True, True], dtype=np.bool_), TensorProto.BOOL)
    # A scalar and an empty tensor.
    inits.append(helper.make_tensor("scalar_f32", TensorProto.FLOAT, [], [42.0]))
    inits.append(helper.make_tensor("empty_i64", TensorProto.INT64, [0, 3], []))
    bf16_bits = np.array([0x3F80, 0xC040, 0x7F80, 0x0001], dtype=np.uint16)  # 1, -3, inf, smallest subnormal
    inits.append(helper.make_tensor("bf16_raw", TensorProto.BFLOAT16, [4], bf16_bits.tobytes(), raw=True))

    const = helper.make_node(
        "Constant",
        [],
        ["c"],
        name="const",
        value=helper.make_tensor("", TensorProto.FLOAT, [2], [0.5, -1.5]),
    )
    add = helper.make_node("Add", ["x", "c"], ["s"], name="add")
    cast = helper.make_node("Cast", ["s"], ["y"], name="cast", to=TensorProto.DOUBLE)
    graph = helper.make_graph(
        [const, add, cast],
        "dtypes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="kiln-fixtures", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, os.path.join(out_dir, "dtypes.onnx"))


def export_subgraph(out_dir):
    def branch(name, value):
        c = helper.make_node("Constant", [], [name + "_out"], value=helper.make_tensor("", TensorProto.FLOAT, [1], [value]))
        return helper.make_graph([c], name, [], [helper.make_tensor_value_info(name + "_out", TensorProto.FLOAT, [1])])

    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch("then", 1.0), else_branch=branch("else", 2.0))
    graph = helper.make_graph(
        [node],
        "subgraph",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, producer_name="kiln-fixtures", opset_imports=[helper.make_opsetid("ai.onnx", 17), helper.make_opsetid("com.example", 2)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, os.path.join(out_dir, "subgraph.onnx"))


def export_external(out_dir):
    d = os.path.join(out_dir, "external")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    shape = np.array([1, 8, 6, 6], dtype=np.int64)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["h"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    reshape = helper.make_node("Reshape", ["h", "shape"], ["y"], name="reshape")
    graph = helper.make_graph(
        [conv, reshape],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(shape, "shape")],
    )
    model = helper.make_model(graph, producer_name="kiln-fixtures", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(
        model,
        os.path.join(d, "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "crates/onnx/tests/fixtures"
    os.makedirs(out_dir, exist_ok=True)
    export_torch(out_dir)
    export_dtypes(out_dir)
    export_subgraph(out_dir)
    export_external(out_dir)
    names = ["conv_static.onnx", "conv_dynamic.onnx", "dtypes.onnx", "subgraph.onnx", "external/model.onnx"]
    expected = {n: describe_model(os.path.join(out_dir, n)) for n in names}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")
    total = 0
    for root, _, files in os.walk(out_dir):
        for fn in files:
            size = os.path.getsize(os.path.join(root, fn))
            total += size
            print(f"{os.path.join(root, fn)}: {size} bytes")
            assert size < 20_000, f"{fn} is too large for a fixture"
    assert total < 100_000, f"fixtures total {total} bytes"


if __name__ == "__main__":
    main()
