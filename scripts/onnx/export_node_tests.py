#!/usr/bin/env python3
"""Copies the ONNX backend node tests of the operators Kiln imports into
`tests/data/onnx-node/` for `tests/onnx_node.rs`.

    /work/venv/bin/python scripts/onnx/export_node_tests.py tests/data/onnx-node

The cases come from the installed `onnx` package
(`onnx.backend.test.case.node.collect_testcases()`: model, inputs and
expected outputs, computed by ONNX's own reference implementations). A case
is taken when every node of its model is one of the operators below. Kiln
computes float32 tensors and needs weights, shapes, pads and scales to be
constants, so the first float input stays a graph input (every input for
the elementwise and concatenating operators) and the others become
initializers with their test values: the same model with its parameters
fixed, as a PyTorch export has them. Everything the test needs goes into
`cases.json` (name, the kept input names, and why a case was left out);
tensors are `.npy` files. Cases over 48 KiB are left out, with the reason.
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases

OPS = {
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "GroupNormalization", "Relu",
    "LeakyRelu", "PRelu", "Tanh", "Sigmoid", "Elu", "Selu", "Softplus", "HardSigmoid", "HardSwish", "Gelu", "Mish",
    "Clip", "Add", "Sub", "Mul", "Div", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm", "MatMul",
    "Reshape", "Flatten", "Pad", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Slice", "Identity",
    "Dropout", "Constant", "Transpose", "Squeeze", "Unsqueeze", "Expand",
}
# Operators all of whose inputs are data (Kiln tensors).
ALL_DATA = {"Add", "Sub", "Mul", "Concat"}
MAX_BYTES = 48 * 1024


def main(out):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    manifest = []
    for case in sorted(collect_testcases(), key=lambda c: c.name):
        model = case.model
        ops = {n.op_type for n in model.graph.node}
        if not ops <= OPS or not case.data_sets:
            continue
        entry = {"name": case.name, "ops": sorted(ops)}
        inputs, outputs = case.data_sets[0]
        # Scalar inputs (Clip's bounds, Pad's value) come as numpy scalars.
        inputs = [np.asarray(v) if isinstance(v, np.generic) else v for v in inputs]
        outputs = [np.asarray(v) if isinstance(v, np.generic) else v for v in outputs]
        graph_inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        if any(not isinstance(v, np.ndarray) for v in list(inputs) + list(outputs)):
            entry["skip"] = "inputs or outputs that are not plain tensors (sequences, optionals)"
            manifest.append(entry)
            continue
        keep = []
        for k, (name, value) in enumerate(zip(graph_inputs, inputs)):
            first_float = value.dtype == np.float32 and not keep
            if first_float or (ops <= ALL_DATA | {"Identity"} and value.dtype == np.float32):
                keep.append(name)
            else:
                model.graph.initializer.append(numpy_helper.from_array(value, name))
        if not keep:
            entry["skip"] = "no float32 input"
            manifest.append(entry)
            continue
        outs = [o for o in outputs]
        if any(o.dtype != np.float32 for o in outs):
            entry["skip"] = f"outputs of type {[str(o.dtype) for o in outs]} (Kiln computes float32)"
            manifest.append(entry)
            continue
        data = model.SerializeToString()
        size = len(data) + sum(v.nbytes for v in inputs) + sum(o.nbytes for o in outs)
        if size > MAX_BYTES:
            entry["skip"] = f"{size} bytes, over the {MAX_BYTES} the repository keeps per case"
            manifest.append(entry)
            continue
        with open(os.path.join(out, f"{case.name}.onnx"), "wb") as fh:
            fh.write(data)
        entry["inputs"] = keep
        for k, name in enumerate(keep):
            np.save(os.path.join(out, f"{case.name}.in{k}.npy"), np.ascontiguousarray(inputs[graph_inputs.index(name)]))
        entry["outputs"] = len(outs)
        for k, o in enumerate(outs):
            np.save(os.path.join(out, f"{case.name}.out{k}.npy"), np.ascontiguousarray(o))
        manifest.append(entry)
    with open(os.path.join(out, "cases.json"), "w") as fh:
        json.dump({"onnx": onnx.__version__, "cases": manifest}, fh, indent=1)
    kept = sum(1 for e in manifest if "skip" not in e)
    print(f"{kept} cases written, {len(manifest) - kept} left out")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/onnx-node")
