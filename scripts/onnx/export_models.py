#!/usr/bin/env python3
"""Exports PyTorch decoders to ONNX for `tests/onnx_import.rs`.

    /work/venv/bin/python scripts/onnx/export_models.py tests/data/onnx

(any venv with torch, onnx, onnxruntime, numpy). For each model: the
example decoders of `scripts/examples/export.py`, a DCGAN generator as in
pytorch/examples (small width), and `OpZoo`, which calls the ops of the
"real decoders" issue in the ways exporters spell them (ReflectionPad2d's
`Pad` with computed pads, `x.view(x.size(0), ...)`, crops by slicing,
GroupNorm, SiLU, upsampling, PixelShuffle, pooling, PReLU, ...). It writes

- `<name>.<variant>.onnx`: `static` (the TorchScript exporter, fixed
  shapes), `dynamic` (the same with a symbolic batch axis), and `dynamo`
  (the dynamo exporter, except for the two largest models) where the
  installed torch can;
- `<name>.input.npy` and `<name>.b3.input.npy`: seeded inputs at the
  model's batch and at batch 3 (for the dynamic files);
- `<name>.output.npy`, `<name>.b3.output.npy`: PyTorch's eval-mode outputs.

`hostile_*.onnx` and `unsupported_cos.onnx` are small hand-built models that
must each be refused with one clear error (a cycle, huge dims, an integer
input, a channel mismatch, an attribute of the wrong type, a weight computed
at run time, external data outside the model's directory, an operator Kiln
does not import).

It also runs every exported file in onnxruntime and fails if ORT and PyTorch differ
by more than 1e-4 of the output's scale, so a wrong export is caught here.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from export import MODELS  # noqa: E402


class DCGAN(nn.Module):
    """pytorch/examples dcgan Generator (nz=16, ngf=4, nc=3): 1x1 → 64x64."""

    def __init__(self, nz=16, ngf=4, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class OpZoo(nn.Module):
    """One path through many decoder ops, written as model code writes them."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4 * 6 * 6)
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(4, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.prelu = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Conv2d(12, 3, 1)

    def forward(self, z):
        x = self.fc(z).view(z.size(0), 4, 6, 6)
        x = F.silu(self.gn(self.conv1(self.pad(x))))           # [N, 8, 6, 6]
        x = self.prelu(self.inorm(self.up(x)))                  # [N, 8, 12, 12]
        s = self.shuffle(self.conv2(x))                         # [N, 4, 24, 24]
        y = F.interpolate(self.pool(s), scale_factor=2, mode="nearest")  # [N, 4, 24, 24]
        w = F.interpolate(self.avg(s), size=(24, 24), mode="bilinear", align_corners=False)
        x = torch.cat([F.leaky_relu(y, 0.2), F.elu(self.bn(w)), self.drop(s) * 0.5], dim=1)  # 12 ch
        x = F.pad(x, (1, 1, 2, 2))[:, :, 1:-1, 2:-2]          # pad, then crop back by slicing
        x = F.hardswish(x) + F.gelu(x) - torch.sigmoid(x)
        return torch.tanh(self.head(x))


def build(name):
    torch.manual_seed(0)
    if name == "dcgan":
        return DCGAN(), [1, 16, 1, 1]
    if name == "opzoo":
        return OpZoo(), [2, 8]
    cls, inputs = MODELS[name]
    return cls(), list(list(inputs.values())[0])


def randomize_stats(m):
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
            if mod.affine:
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.5, 0.5)
        if isinstance(mod, (nn.GroupNorm, nn.InstanceNorm2d)) and mod.affine:
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)


def check_ort(path, x, expected):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(got - expected).max()) / scale
    assert err <= 1e-4, f"{path}: onnxruntime differs from PyTorch by {err}"
    return err


def save(model, out, name):
    onnx.save(model, os.path.join(out, name))

def graph_model(nodes, inputs, outputs, inits=(), opset=17):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)])

def write_hostile(out):
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    # A cycle: `a` reads `b`, which is computed from `a`.
    save(graph_model([helper.make_node("Relu", ["b"], ["a"], name="first"),
                      helper.make_node("Relu", ["a"], ["b"], name="second")],
                     [f("x", [1, 2, 3, 3])], [f("b", [1, 2, 3, 3])]), out, "hostile_cycle.onnx")
    # Huge dims: 2^31 x 2^31 planes.
    save(graph_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     [f("x", [1, 3, 2**31, 2**31])], [f("y", [1, 3, 2**31, 2**31])]), out, "hostile_huge.onnx")
    # An integer graph input.
    save(graph_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                     [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 2, 3, 3])],
                     [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 2, 3, 3])]), out, "hostile_int_input.onnx")
    # A Conv whose weight has the wrong channel count for its input.
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    save(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                     [f("x", [1, 2, 8, 8])], [f("y", [1, 4, 6, 6])], [w]), out, "hostile_channels.onnx")
    # An attribute of the wrong type (strides as a float).
    w2 = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    node.attribute.append(helper.make_attribute("strides", 2.0))
    save(graph_model([node], [f("x", [1, 2, 8, 8])], [f("y", [1, 4, 3, 3])], [w2]), out, "hostile_attr_type.onnx")
    # A weight computed at run time (Conv's W is a graph input).
    save(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                     [f("x", [1, 2, 8, 8]), f("w", [4, 2, 3, 3])], [f("y", [1, 4, 6, 6])]), out, "hostile_runtime_weight.onnx")
    # External data that points outside the model's directory.
    t = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "../../etc/passwd"), ("offset", "0"), ("length", "288")]:
        e = t.external_data.add(); e.key = k; e.value = v
    save(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                     [f("x", [1, 2, 8, 8])], [f("y", [1, 4, 6, 6])], [t]), out, "hostile_external_escape.onnx")


def write_unsupported(out):
    """A model with an operator Kiln does not import, for the error test."""
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first"), helper.make_node("Cos", ["r"], ["y"], name="my_cos")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "unsupported_cos.onnx"))


def main(out):
    os.makedirs(out, exist_ok=True)
    write_unsupported(out)
    write_hostile(out)
    names = ["dcgan", "opzoo", *MODELS.keys()]
    for name in names:
        model, shape = build(name)
        randomize_stats(model)
        model.eval()
        g = torch.Generator().manual_seed(1)
        x = torch.rand(shape, generator=g) * 2 - 1
        x3 = torch.rand([3, *shape[1:]], generator=g) * 2 - 1
        with torch.no_grad():
            y, y3 = model(x), model(x3)
        np.save(os.path.join(out, f"{name}.input.npy"), x.numpy())
        np.save(os.path.join(out, f"{name}.output.npy"), y.numpy())
        np.save(os.path.join(out, f"{name}.b3.input.npy"), x3.numpy())
        np.save(os.path.join(out, f"{name}.b3.output.npy"), y3.numpy())
        # The dynamo files of the two largest models would double their
        # share of the repository for little more coverage.
        variants = ["static", "dynamic"] + ([] if name in ("cyclegan_resnet", "pix2pix_unet") else ["dynamo"])
        for variant in variants:
            path = os.path.join(out, f"{name}.{variant}.onnx")
            try:
                if variant == "dynamo":
                    prog = torch.onnx.export(model, (x,), dynamo=True, optimize=True, verbose=False)
                    prog.save(path)
                else:
                    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if variant == "dynamic" else None
                    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                                      input_names=["x"], output_names=["y"], dynamic_axes=axes)
            except Exception as e:  # the dynamo exporter needs onnxscript
                print(f"{name}.{variant}: not exported ({type(e).__name__}: {str(e)[:120]})")
                if os.path.exists(path):
                    os.remove(path)
                continue
            err = check_ort(path, x.numpy(), y.numpy())
            if variant == "dynamic":
                err = max(err, check_ort(path, x3.numpy(), y3.numpy()))
            print(f"{name}.{variant}: {os.path.getsize(path)} bytes, onnxruntime vs torch {err:.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/onnx")
