#!/usr/bin/env python3
"""Writes Kiln's wide ConvTranspose2d layer suite.

    python3 scripts/bench/gen_suite.py            # writes bench/suite.json and bench/suite.txt
    python3 scripts/bench/gen_suite.py --check    # also checks output shapes with torch (meta tensors), if importable

bench/suite.json has the format of ../shared/bench/shapes.json (what `kiln bench --shapes` reads);
bench/suite.txt has the same rows in the peers harness's text format
(`name N Cin H W Cout k stride pad out_pad dilation groups`).

The first part are layers of published models (the `what` field says which model and layer, at
which input size); the second part is a seeded random sample of valid configurations (rand00..rand19).
Every layer is kept between ~2e6 and ~2e9 FLOPs (0.02-20 ms on one core at ~100 GFLOP/s).
Plain Python 3; no torch needed (except for --check).
"""
import json
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "bench")

SEED = 20261203  # the random sample's seed; changing it changes rand00..rand19
N_RANDOM = 20
MIN_FLOPS = 2e6
MAX_FLOPS = 2.5e9  # "~2e9": the 256-px pix2pix / CycleGAN layers are 2.1e9-2.4e9


def L(name, what, n, cin, h, w, cout, k, s=1, p=0, op=0, d=1, g=1):
    return dict(name=name, what=what, n=n, cin=cin, h=h, w=w, cout=cout, k=k, s=s, p=p, op=op, d=d, g=g)


# ----------------------------------------------------------------------------------------------
# Layers of published models. Channel counts are the models' own (skip concatenations included).
MODELS = [
    # DCGAN (Radford et al. 2016), the paper's generator: z=100 -> 1024x4x4 -> 512 -> 256 -> 128 -> 3x64x64,
    # batch 1 (latency).
    L("dcgP1_b1", "DCGAN paper generator, layer 1: z=100 (1x1) to 1024x4x4, batch 1", 1, 100, 1, 1, 1024, 4, 1, 0),
    L("dcgP2_b1", "DCGAN paper generator, layer 2: 1024x4x4 to 512x8x8, batch 1", 1, 1024, 4, 4, 512, 4, 2, 1),
    L("dcgP3_b1", "DCGAN paper generator, layer 3: 512x8x8 to 256x16x16, batch 1", 1, 512, 8, 8, 256, 4, 2, 1),
    L("dcgP4_b1", "DCGAN paper generator, layer 4: 256x16x16 to 128x32x32, batch 1", 1, 256, 16, 16, 128, 4, 2, 1),
    L("dcgP5_b1", "DCGAN paper generator, layer 5: 128x32x32 to RGB 64x64, batch 1", 1, 128, 32, 32, 3, 4, 2, 1),
    # PyTorch examples/dcgan (ngf=64, nz=100) at its training batch 64 (first and last layer) and batch 8.
    L("dcg64_l1", "PyTorch examples DCGAN (ngf=64), layer 1: z=100 to 512x4x4, batch 64", 64, 100, 1, 1, 512, 4, 1, 0),
    L("dcg64_l2", "PyTorch examples DCGAN (ngf=64), layer 2: 512x4x4 to 256x8x8, batch 8", 8, 512, 4, 4, 256, 4, 2, 1),
    L("dcg64_l4", "PyTorch examples DCGAN (ngf=64), layer 4: 128x16x16 to 64x32x32, batch 8", 8, 128, 16, 16, 64, 4, 2, 1),
    L("dcg64_l5", "PyTorch examples DCGAN (ngf=64), layer 5: 64x32x32 to RGB 64x64, batch 64", 64, 64, 32, 32, 3, 4, 2, 1),
    # Narrow DCGAN (ngf=32), batch 16.
    L("dcg32_l2", "DCGAN ngf=32, layer 2: 256x4x4 to 128x8x8, batch 16", 16, 256, 4, 4, 128, 4, 2, 1),
    L("dcg32_l3", "DCGAN ngf=32, layer 3: 128x8x8 to 64x16x16, batch 16", 16, 128, 8, 8, 64, 4, 2, 1),
    # DCGAN for 28x28 MNIST (7x7 -> 14 -> 28, odd spatial), batch 32.
    L("mnist_l2", "MNIST DCGAN (7x7 start), layer 2: 128x7x7 to 64x14x14, batch 32", 32, 128, 7, 7, 64, 4, 2, 1),
    L("mnist_l3", "MNIST DCGAN (7x7 start), layer 3: 64x14x14 to 1x28x28, batch 32", 32, 64, 14, 14, 1, 4, 2, 1),
    # pix2pix U-Net-256 (Isola et al. 2017; unet_256, ngf=64): decoder ConvTranspose k4 s2 p1,
    # inputs are the concatenation with the skip (2x channels), batch 1.
    L("p2p_up1", "pix2pix U-Net-256 up1 (innermost): 512x1x1 to 512x2x2, 256px input", 1, 512, 1, 1, 512, 4, 2, 1),
    L("p2p_up2", "pix2pix U-Net-256 up2: 1024x2x2 to 512x4x4, 256px input", 1, 1024, 2, 2, 512, 4, 2, 1),
    L("p2p_up3", "pix2pix U-Net-256 up3: 1024x4x4 to 512x8x8, 256px input", 1, 1024, 4, 4, 512, 4, 2, 1),
    L("p2p_up5", "pix2pix U-Net-256 up5: 1024x16x16 to 256x32x32, 256px input", 1, 1024, 16, 16, 256, 4, 2, 1),
    L("p2p_up7", "pix2pix U-Net-256 up7: 256x64x64 to 64x128x128, 256px input", 1, 256, 64, 64, 64, 4, 2, 1),
    L("p2p_out", "pix2pix U-Net-256 outermost: 128x128x128 to RGB 256x256, 256px input", 1, 128, 128, 128, 3, 4, 2, 1),
    L("p2p64_up", "pix2pix U-Net at 64px input: 256x16x16 to 64x32x32", 1, 256, 16, 16, 64, 4, 2, 1),
    L("p2p_odd", "pix2pix U-Net up (512->256) on a 13x17 map (non-multiple-of-32 input)", 1, 512, 13, 17, 256, 4, 2, 1),
    # CycleGAN ResNet generator (Zhu et al. 2017): two ConvTranspose k3 s2 p1 op1 upsamplers.
    L("cyc128_u1", "CycleGAN resnet_6blocks up1: 256x32x32 to 128x64x64, 128px input", 1, 256, 32, 32, 128, 3, 2, 1, 1),
    L("cyc128_u2", "CycleGAN resnet_6blocks up2: 128x64x64 to 64x128x128, 128px input", 1, 128, 64, 64, 64, 3, 2, 1, 1),
    L("cyc64_u1", "CycleGAN resnet generator up1 at 64px input: 256x16x16 to 128x32x32, batch 4", 4, 256, 16, 16, 128, 3, 2, 1, 1),
    L("cyc256_u2", "CycleGAN resnet_9blocks up2: 128x128x128 to 64x256x256, 256px input", 1, 128, 128, 128, 64, 3, 2, 1, 1),
    # FSRCNN (Dong et al. 2016): d=56 deconvolution head k9, stride=scale, padding 4, output_padding scale-1.
    L("fsr2", "FSRCNN x2 head: 56 to 1 channel, k9 s2, 128x128 LR", 1, 56, 128, 128, 1, 9, 2, 4, 1),
    L("fsr3", "FSRCNN x3 head: 56 to 1 channel, k9 s3, 96x96 LR", 1, 56, 96, 96, 1, 9, 3, 4, 2),
    L("fsr4", "FSRCNN x4 head: 56 to 1 channel, k9 s4, 64x64 LR", 1, 56, 64, 64, 1, 9, 4, 4, 3),
    L("fsr3_odd", "FSRCNN x3 head on 15x23 LR patches, batch 16", 16, 56, 15, 23, 1, 9, 3, 4, 2),
    L("fsrs2_rgb", "FSRCNN-s (d=32) x2 head to RGB, 120x80 LR", 1, 32, 80, 120, 3, 9, 2, 4, 1),
    # ESPCN-like / SRGAN-like heads: the sub-pixel layer replaced by a transposed convolution.
    L("espcn2", "ESPCN-like x2 head: 32 to 1 channel, k6 s2 p2, 160x160 LR", 1, 32, 160, 160, 1, 6, 2, 2),
    L("espcn3", "ESPCN-like x3 head: 32 to 3 channels, k9 s3 p3, 100x100 LR", 1, 32, 100, 100, 3, 9, 3, 3),
    L("espcn4", "ESPCN-like x4 head: 32 to 1 channel, k8 s4 p2, 64x64 LR", 1, 32, 64, 64, 1, 8, 4, 2),
    L("srgan_up", "SRGAN-like upsampler (deconv instead of pixel shuffle): 64 to 64, k4 s2 p1, 96x96 LR", 1, 64, 96, 96, 64, 4, 2, 1),
    L("srgan_out", "SRGAN-like output layer as transposed conv: 64 to RGB, k9 s1 p4, 128x128", 1, 64, 128, 128, 3, 9, 1, 4),
    # FCN (Long et al. 2015), PASCAL VOC (21 classes), 320px input; upscore layers as bilinear-init
    # depthwise (groups=21) and as full (learned) transposed convolutions.
    L("fcn32_dw", "FCN-32s upscore (bilinear, depthwise g=21): k64 s32 p16, 10x10 to 320x320", 1, 21, 10, 10, 21, 64, 32, 16, 0, 1, 21),
    L("fcn32", "FCN-32s upscore (full 21->21): k64 s32 p16, 10x10 to 320x320", 1, 21, 10, 10, 21, 64, 32, 16),
    L("fcn16_dw", "FCN-16s upscore16 (bilinear, depthwise g=21): k32 s16 p8, 20x20 to 320x320", 1, 21, 20, 20, 21, 32, 16, 8, 0, 1, 21),
    L("fcn16", "FCN-16s upscore16 (full 21->21): k32 s16 p8, 20x20 to 320x320", 1, 21, 20, 20, 21, 32, 16, 8),
    L("fcn8_dw", "FCN-8s upscore8 (bilinear, depthwise g=21): k16 s8 p4, 40x40 to 320x320", 1, 21, 40, 40, 21, 16, 8, 4, 0, 1, 21),
    L("fcn8_cs", "FCN-8s upscore8 on Cityscapes (19 classes, 512x1024 input): 64x128 to 512x1024", 1, 19, 64, 128, 19, 16, 8, 4),
    L("fcn2_cs", "FCN upscore2 (full 19->19), k4 s2 p1, Cityscapes 1024x2048: 32x64", 1, 19, 32, 64, 19, 4, 2, 1),
    L("fcn2_csdw", "FCN upscore2 (bilinear, depthwise g=19), k4 s2 p1, Cityscapes: 64x128 (pool4 level)", 1, 19, 64, 128, 19, 4, 2, 1, 0, 1, 19),
    # U-Net (Ronneberger et al. 2015) up-convs, k2 s2, padded "same" U-Net at 256px and the 128px variant.
    L("unet_u1", "U-Net up-conv 1: 1024x16x16 to 512x32x32 (256px input)", 1, 1024, 16, 16, 512, 2, 2, 0),
    L("unet_u3", "U-Net up-conv 3: 256x64x64 to 128x128x128 (256px input)", 1, 256, 64, 64, 128, 2, 2, 0),
    L("unet_u4", "U-Net up-conv 4: 128x128x128 to 64x256x256 (256px input)", 1, 128, 128, 128, 64, 2, 2, 0),
    L("unet_b4", "U-Net (base 32) up-conv 2: 256x16x16 to 128x32x32, batch 4 (128px input)", 4, 256, 16, 16, 128, 2, 2, 0),
    L("unet_odd", "U-Net up-conv 128->64 on a 31x31 map (prime spatial)", 1, 128, 31, 31, 64, 2, 2, 0),
    L("unet_orig", "original U-Net (572px input) up-conv 1 at half width: 512x28x28 to 256x56x56", 1, 512, 28, 28, 256, 2, 2, 0),
    # VAE decoders: beta-VAE (Higgins et al. 2017 / Burgess et al. 2018) 64px, k4 s2 p1, batch 64;
    # PyTorch-VAE vanilla VAE decoder (k3 s2 p1 op1), batch 1.
    L("bvae_d1", "beta-VAE decoder (64px), deconv 1: 64x4x4 to 64x8x8, batch 64", 64, 64, 4, 4, 64, 4, 2, 1),
    L("bvae_d2", "beta-VAE decoder (64px), deconv 2: 64x8x8 to 32x16x16, batch 64", 64, 64, 8, 8, 32, 4, 2, 1),
    L("bvae_d4", "beta-VAE decoder (64px), deconv 4: 32x32x32 to 3x64x64, batch 64", 64, 32, 32, 32, 3, 4, 2, 1),
    L("vae_d1", "PyTorch-VAE vanilla decoder, layer 1: 512x2x2 to 256x4x4 (k3 s2 p1 op1), batch 1", 1, 512, 2, 2, 256, 3, 2, 1, 1),
    L("vae_d3", "PyTorch-VAE vanilla decoder, layer 3: 128x8x8 to 64x16x16 (k3 s2 p1 op1), batch 16", 16, 128, 8, 8, 64, 3, 2, 1, 1),
    # Depthwise (groups = C) and small-group upsamplers.
    L("cnet_dw2", "CenterNet DLA-34 IDAUp up (bilinear depthwise g=64): k4 s2 p1, 64x64, 512px input", 1, 64, 64, 64, 64, 4, 2, 1, 0, 1, 64),
    L("cnet_dw4", "CenterNet DLA-34 IDAUp up (bilinear depthwise g=64): k8 s4 p2, 32x32", 1, 64, 32, 32, 64, 8, 4, 2, 0, 1, 64),
    L("cnet_dw8", "CenterNet DLA-34 IDAUp up (bilinear depthwise g=64): k16 s8 p4, 16x16", 1, 64, 16, 16, 64, 16, 8, 4, 0, 1, 64),
    L("cnet_dl", "CenterNet DLAUp up (bilinear depthwise g=256): k4 s2 p1, 256ch 16x16, batch 4", 4, 256, 16, 16, 256, 4, 2, 1, 0, 1, 256),
    L("cnet_r1", "CenterNet ResNet-18 head deconv 1: 512x16x16 to 256x32x32 (512px input)", 1, 512, 16, 16, 256, 4, 2, 1),
    L("cnet_r2", "CenterNet ResNet-18 head deconv 2: 256x32x32 to 256x64x64 (512px input)", 1, 256, 32, 32, 256, 4, 2, 1),
    L("grp2_up", "grouped upsampler g=2 (ResNeXt-style decoder): 256x32x32 to 128x64x64, k4 s2 p1", 1, 256, 32, 32, 128, 4, 2, 1, 0, 1, 2),
    L("grp4_up", "grouped upsampler g=4: 128x32x32 to 128x64x64, k4 s2 p1, batch 2", 2, 128, 32, 32, 128, 4, 2, 1, 0, 1, 4),
    L("grp4_k3", "grouped upsampler g=4 (k3 s2 p1 op1): 64x15x23 to 64x30x46, batch 8 (odd spatial)", 8, 64, 15, 23, 64, 3, 2, 1, 1, 1, 4),
    # Dilated transposed convolutions (dilation > 1), as in dilated decoders / context modules.
    L("dil2_s1", "dilated transposed conv d=2, k3 s1 p2 (size-preserving context layer): 64ch 32x32", 1, 64, 32, 32, 64, 3, 1, 2, 0, 2),
    L("dil2_s2", "dilated transposed conv d=2, k3 s2 p2 op1 upsampler: 128 to 64, 16x16, batch 4", 4, 128, 16, 16, 64, 3, 2, 2, 1, 2),
    L("dil3_k5", "dilated transposed conv d=3, k5 s2 p6 op1: 32 to 32, 13x17", 1, 32, 13, 17, 32, 5, 2, 6, 1, 3),
    L("dil2_dw", "dilated depthwise transposed conv d=2, k3 s1 p2, g=128: 128ch 31x31, batch 2", 2, 128, 31, 31, 128, 3, 1, 2, 0, 2, 128),
]


def out_hw(h, k, s, p, op, d):
    """PyTorch's ConvTranspose2d output size."""
    return (h - 1) * s - 2 * p + d * (k - 1) + op + 1


def flops_of(c):
    return 2 * c["n"] * c["cin"] * (c["cout"] // c["g"]) * c["k"] * c["k"] * c["h"] * c["w"]


def valid(c):
    if c["cin"] % c["g"] or c["cout"] % c["g"]:
        return "groups must divide both channel counts"
    if c["p"] > c["d"] * (c["k"] - 1):
        return "padding > dilation*(kernel-1)"
    if not (c["op"] < c["s"] or c["op"] < c["d"]):
        return "output_padding must be < stride or < dilation (PyTorch)"
    if out_hw(c["h"], c["k"], c["s"], c["p"], c["op"], c["d"]) < 1 or out_hw(c["w"], c["k"], c["s"], c["p"], c["op"], c["d"]) < 1:
        return "empty output"
    if not MIN_FLOPS <= flops_of(c) <= MAX_FLOPS:
        return f"flops {flops_of(c):.2e} outside [{MIN_FLOPS:.0e}, {MAX_FLOPS:.1e}]"
    return None


def random_sample():
    rng = random.Random(SEED)
    out = []
    while len(out) < N_RANDOM:
        k = rng.randint(1, 9)
        s = rng.randint(1, 4)
        p = rng.randint(0, k - 1)
        op = rng.randint(0, s - 1)
        d = 1 if rng.random() < 0.8 else rng.randint(2, 3)
        if d > 1 and k == 1:
            continue
        n = rng.randint(1, 8)
        h, w = rng.randint(3, 64), rng.randint(3, 64)
        r = rng.random()
        if r < 0.25:  # grouped / depthwise: equal channel counts, groups a random divisor (C itself included)
            cin = cout = rng.randint(1, 256)
            g = rng.choice([q for q in range(1, cin + 1) if cin % q == 0])
        else:  # independent channel counts, groups a random common divisor (mostly 1)
            cin, cout = rng.randint(1, 256), rng.randint(1, 256)
            gcd = math.gcd(cin, cout)
            g = rng.choice([q for q in range(1, gcd + 1) if gcd % q == 0])
        name = f"rand{len(out):02d}"
        c = L(name, "", n, cin, h, w, cout, k, s, p, op, d, g)
        if valid(c) is None:
            c["what"] = (f"random valid configuration #{len(out)} (seed {SEED}): "
                         f"k{k} s{s} p{p} op{op} d{d} g{g}")
            out.append(c)
    return out


def to_json(c):
    oh = out_hw(c["h"], c["k"], c["s"], c["p"], c["op"], c["d"])
    ow = out_hw(c["w"], c["k"], c["s"], c["p"], c["op"], c["d"])
    return {
        "name": c["name"], "what": c["what"],
        "input_shape": [c["n"], c["cin"], c["h"], c["w"]],
        "out_channels": c["cout"], "kernel_size": c["k"], "stride": c["s"], "padding": c["p"],
        "output_padding": c["op"], "dilation": c["d"], "groups": c["g"], "bias": False,
        "output_shape": [c["n"], c["cout"], oh, ow],
        "flops": flops_of(c),
    }


def check_with_torch(rows):
    """Output shapes by torch itself, on meta tensors (no compute)."""
    import torch
    import torch.nn.functional as F
    for c in rows:
        x = torch.empty(c["n"], c["cin"], c["h"], c["w"], device="meta")
        w = torch.empty(c["cin"], c["cout"] // c["g"], c["k"], c["k"], device="meta")
        y = F.conv_transpose2d(x, w, stride=c["s"], padding=c["p"], output_padding=c["op"], groups=c["g"], dilation=c["d"])
        want = to_json(c)["output_shape"]
        assert list(y.shape) == want, (c["name"], list(y.shape), want)
    print(f"torch {torch.__version__}: all {len(rows)} output shapes agree", file=sys.stderr)


def main():
    rows = MODELS + random_sample()
    names = [c["name"] for c in rows]
    assert len(set(names)) == len(names), "duplicate names"
    for c in rows:
        assert len(c["name"]) <= 10, c["name"]
        why = valid(c)
        assert why is None, (c["name"], why)
        # PyTorch's formula, spelled out once more from the docs:
        # H_out = (H_in - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1
        for hin, hout in [(c["h"], to_json(c)["output_shape"][2]), (c["w"], to_json(c)["output_shape"][3])]:
            assert hout == (hin - 1) * c["s"] - 2 * c["p"] + c["d"] * (c["k"] - 1) + c["op"] + 1
    if "--check" in sys.argv:
        check_with_torch(rows)
    os.makedirs(OUT_DIR, exist_ok=True)
    doc = {
        "about": ("Kiln's wide ConvTranspose2d suite (float32, inference, no bias): layers of published models, "
                  f"then {N_RANDOM} seeded random valid configurations (seed {SEED}). Written by "
                  "scripts/bench/gen_suite.py; same rows as bench/suite.txt. "
                  "flops = 2*N*C_in*(C_out/groups)*kH*kW*H_in*W_in. Weight layout [C_in, C_out/groups, kH, kW]."),
        "shapes": [to_json(c) for c in rows],
    }
    with open(os.path.join(OUT_DIR, "suite.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT_DIR, "suite.txt"), "w") as f:
        f.write("# Kiln wide ConvTranspose2d suite; written by scripts/bench/gen_suite.py (same rows as suite.json)\n")
        f.write("# name      N  Cin  H   W   Cout k  stride pad out_pad dilation groups\n")
        for c in rows:
            f.write(f"{c['name']:<11}{c['n']:<3}{c['cin']:<5}{c['h']:<4}{c['w']:<4}{c['cout']:<5}{c['k']:<3}"
                    f"{c['s']:<7}{c['p']:<4}{c['op']:<8}{c['d']:<9}{c['g']}\n")
    tot = sum(flops_of(c) for c in rows)
    print(f"wrote {len(MODELS)} model layers + {N_RANDOM} random = {len(rows)} layers "
          f"({tot:.2e} FLOPs in all) to {OUT_DIR}/suite.json and suite.txt", file=sys.stderr)


if __name__ == "__main__":
    main()
