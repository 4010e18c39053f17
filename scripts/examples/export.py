#!/usr/bin/env python3
"""Writes Kiln's example decoders from their published PyTorch source.

    /tmp/venv/bin/python scripts/examples/export.py examples

For each model below (small widths, so the files stay small), the module is
built as its authors wrote it, traced with `torch.fx`, and written as:

- `<name>.json`: Kiln's model format, one node per module call, named by
  the module's path (`model.1`), so the state dict keys match as they are;
  a module called twice becomes a `"module"` reuse;
- `<name>.safetensors`: `model.state_dict()` (running statistics randomized
  so eval-mode BatchNorm is not the identity);
- `<name>.input.x.npy`, `<name>.output.npy`: a seeded input and PyTorch's
  eval-mode output, which `tests/examples.rs` compares with `kiln run`.

In-place activations (`nn.ReLU(True)`) are honoured: a later use of their
input reads their output, as it does in eager PyTorch (pix2pix's U-Net skip
connections carry the LeakyReLU'd tensor for exactly this reason).
"""

import functools
import json
import operator
import os
import sys

import numpy as np
import torch
import torch.fx
from torch import nn
from safetensors.torch import save_file

# ---------------------------------------------------------------- models

class FSRCNN(nn.Module):
    """Dong et al. 2016, as in yjn870/FSRCNN-pytorch (d=32, s=8, m=2, x3)."""

    def __init__(self, scale_factor=3, num_channels=1, d=32, s=8, m=2):
        super().__init__()
        self.first_part = nn.Sequential(nn.Conv2d(num_channels, d, 5, padding=2), nn.PReLU(d))
        mid = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            mid.extend([nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)])
        mid.extend([nn.Conv2d(s, d, 1), nn.PReLU(d)])
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(d, num_channels, 9, stride=scale_factor, padding=4,
                                            output_padding=scale_factor - 1)

    def forward(self, x):
        return self.last_part(self.mid_part(self.first_part(x)))


class VAEDecoder(nn.Module):
    """The decoder of AntixK/PyTorch-VAE's VanillaVAE (hidden dims 64, 32, 16)."""

    def __init__(self, latent_dim=16, hidden_dims=(16, 32, 64)):
        super().__init__()
        hidden = list(hidden_dims)[::-1]
        self.top = hidden[0]
        self.decoder_input = nn.Linear(latent_dim, hidden[0] * 4)
        blocks = []
        for i in range(len(hidden) - 1):
            blocks.append(nn.Sequential(
                nn.ConvTranspose2d(hidden[i], hidden[i + 1], 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(hidden[i + 1]), nn.LeakyReLU()))
        self.decoder = nn.Sequential(*blocks)
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(hidden[-1], hidden[-1], 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(hidden[-1]), nn.LeakyReLU(),
            nn.Conv2d(hidden[-1], 3, 3, padding=1), nn.Tanh())

    def forward(self, z):
        result = self.decoder_input(z)
        result = result.view(-1, self.top, 2, 2)
        return self.final_layer(self.decoder(result))


class ResnetBlock(nn.Module):
    """junyanz/pytorch-CycleGAN-and-pix2pix, reflection padding, no dropout."""

    def __init__(self, dim, norm_layer):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm_layer(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm_layer(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (ngf=8, 2 blocks, InstanceNorm2d)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=8, n_blocks=2):
        super().__init__()
        norm_layer = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=True), norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            model += [ResnetBlock(ngf * 4, norm_layer)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                      norm_layer(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """pix2pix's U-Net block (junyanz), BatchNorm, dropout in the middle blocks."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 use_dropout=False):
        super().__init__()
        self.outermost = outermost
        use_bias = False
        input_nc = input_nc or outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = nn.BatchNorm2d(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = nn.BatchNorm2d(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model += [nn.Dropout(0.5)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's generator with 5 downsamplings, ngf=4."""

    def __init__(self, input_nc=3, output_nc=3, num_downs=5, ngf=4):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=True)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, use_dropout=True)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x):
        return self.model(x)


MODELS = {
    "fsrcnn": (FSRCNN, {"x": [1, 1, 16, 16]}),
    "vae_decoder": (VAEDecoder, {"z": [2, 16]}),
    "cyclegan_resnet": (ResnetGenerator, {"x": [1, 3, 32, 32]}),
    "pix2pix_unet": (UnetGenerator, {"x": [1, 3, 32, 32]}),
}

# ------------------------------------------------------------- exporter

def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def module_args(m):
    """The constructor arguments of `m` that Kiln's model format takes."""
    t = type(m).__name__
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        a = {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": pair(m.kernel_size),
             "stride": pair(m.stride), "padding": pair(m.padding), "dilation": pair(m.dilation),
             "groups": m.groups, "bias": m.bias is not None}
        if isinstance(m, nn.ConvTranspose2d):
            a["output_padding"] = pair(m.output_padding)
        return a
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine}
    if isinstance(m, nn.InstanceNorm2d):
        return {"num_features": m.num_features, "eps": m.eps, "affine": m.affine,
                "track_running_stats": m.track_running_stats}
    if isinstance(m, nn.LeakyReLU):
        return {"negative_slope": m.negative_slope}
    if isinstance(m, nn.PReLU):
        return {"num_parameters": m.num_parameters}
    if isinstance(m, (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d)):
        return {"padding": list(m.padding)}
    if isinstance(m, nn.Dropout):
        return {"p": m.p}
    if isinstance(m, nn.Linear):
        return {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    if t in ("ReLU", "Tanh", "Sigmoid"):
        return {}
    raise SystemExit(f"export.py: no mapping for {t}")


def export(model, inputs):
    gm = torch.fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    nodes, names, alias, calls = [], {}, {}, {}

    def ref(n):
        name = names[n.name]
        return alias.get(name, name)

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            names[n.name] = n.name
        elif n.op == "call_module":
            m = mods[n.target]
            src = ref(n.args[0])
            calls[n.target] = calls.get(n.target, 0) + 1
            if calls[n.target] == 1:
                name = n.target
                nodes.append({"name": name, "op": type(m).__name__, "args": module_args(m), "inputs": [src]})
            else:
                name = f"{n.target}_{calls[n.target]}"
                nodes.append({"name": name, "module": n.target, "inputs": [src]})
            names[n.name] = name
            if getattr(m, "inplace", False):
                # Eager PyTorch overwrote `src`: later readers of it see this output.
                alias[src] = name
        elif n.op == "call_function" and n.target in (operator.add, torch.add):
            name = f"add{len(nodes)}"
            nodes.append({"name": name, "op": "Add", "args": {}, "inputs": [ref(a) for a in n.args[:2]]})
            names[n.name] = name
        elif n.op == "call_function" and n.target is torch.cat:
            name = f"cat{len(nodes)}"
            nodes.append({"name": name, "op": "Concat", "args": {"dim": n.args[1]}, "inputs": [ref(a) for a in n.args[0]]})
            names[n.name] = name
        elif n.op == "call_method" and n.target == "view":
            name = f"view{len(nodes)}"
            nodes.append({"name": name, "op": "Reshape", "args": {"shape": list(n.args[1:])}, "inputs": [ref(n.args[0])]})
            names[n.name] = name
        elif n.op == "output":
            out = ref(n.args[0])
        else:
            raise SystemExit(f"export.py: unsupported fx node {n.op} {n.target}")
    return {"inputs": inputs, "nodes": nodes, "outputs": [out]}


def main(out_dir):
    torch.manual_seed(7)
    for name, (cls, inputs) in MODELS.items():
        model = cls()
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.2, 0.2)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)
                if isinstance(mod, nn.PReLU):
                    mod.weight.uniform_(-0.3, 0.5)
        model.eval()
        spec = {"name": name, **export(model, inputs)}
        x = torch.randn(list(inputs.values())[0])
        with torch.no_grad():
            y = model(x)
        base = os.path.join(out_dir, name)
        with open(base + ".json", "w") as f:
            f.write("{\n")
            f.write(f'  "name": {json.dumps(name)},\n  "inputs": {json.dumps(inputs)},\n  "nodes": [\n')
            f.write(",\n".join("    " + json.dumps(n) for n in spec["nodes"]))
            f.write(f'\n  ],\n  "outputs": {json.dumps(spec["outputs"])}\n}}\n')
        state = {k: v.contiguous() for k, v in model.state_dict().items() if v.dtype == torch.float32}
        save_file(state, base + ".safetensors")
        np.save(f"{base}.input.{list(inputs)[0]}.npy", x.numpy())
        np.save(base + ".output.npy", y.numpy())
        print(f"{name}: {len(spec['nodes'])} nodes, {sum(v.numel() for v in state.values())} parameters, output {list(y.shape)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples")
