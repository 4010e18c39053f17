#!/usr/bin/env python3
"""Writes Kiln's non-square ConvTranspose2d table (Kiln only: the peers harness takes square layers).

    python3 scripts/bench/gen_nonsquare.py            # writes bench/suite-nonsquare.json
    python3 scripts/bench/gen_nonsquare.py --check    # also checks output shapes with torch (meta tensors), if importable

bench/suite-nonsquare.json has the format of bench/suite.json (what `kiln bench --shapes` reads), with
kernel_size, stride, padding, output_padding and dilation written as `[h, w]` where the two axes differ
(a plain number where they agree). There is no suite.txt twin: the peers harness's text format has one
number per hyper-parameter.

Every row is a transposed convolution whose kernel, stride, padding, output padding or dilation differs
between the axes, as in spectrogram and waveform decoders (axes frequency x time, or 1 x samples),
range-image (LiDAR) decoders that upsample the width only, text-line decoders, anisotropic
super-resolution. The `what` field says where the layer comes from; "-style" or "common practice"
where the configuration is typical of a family of models rather than copied from one paper's table.
Every layer is kept between 1e6 and 5e8 FLOPs, so the table runs in seconds.
Plain Python 3; no torch needed (except for --check).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "bench", "suite-nonsquare.json")

MIN_FLOPS = 1e6
MAX_FLOPS = 5e8


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def L(name, what, n, cin, h, w, cout, k, s=1, p=0, op=0, d=1, g=1):
    return dict(name=name, what=what, n=n, cin=cin, h=h, w=w, cout=cout,
                k=pair(k), s=pair(s), p=pair(p), op=pair(op), d=pair(d), g=g)


# ----------------------------------------------------------------------------------------------
ROWS = [
    # DCCRN (Hu et al. 2020, Interspeech): ComplexConvTranspose2d(kernel (5, 2), stride (2, 1),
    # padding (2, 0), output_padding (1, 0)) over (frequency, time); each complex layer is two real
    # ConvTranspose2d of half the channels (kernel_num 32, 64, 128, 256, 256, 256). 100 frames = 1 s.
    L("dccrn_d5", "DCCRN decoder (real part), freq 4 -> 8: 256 -> 128 ch, k (5,2) s (2,1) p (2,0) op (1,0), 100 frames",
      1, 256, 4, 100, 128, (5, 2), (2, 1), (2, 0), (1, 0)),
    L("dccrn_d3", "DCCRN decoder (real part), freq 16 -> 32: 128 -> 32 ch, k (5,2) s (2,1) p (2,0) op (1,0), 100 frames",
      1, 128, 16, 100, 32, (5, 2), (2, 1), (2, 0), (1, 0)),
    L("dccrn_b8", "DCCRN decoder (real part), freq 16 -> 32, streaming chunks of 25 frames, serving batch 8",
      8, 128, 16, 25, 32, (5, 2), (2, 1), (2, 0), (1, 0)),
    # CRN (Tan & Wang 2018, "A convolutional recurrent neural network for real-time speech
    # enhancement"): deconvolutions k 2x3, stride 1x2 over (time, frequency), 161 frequency bins
    # (161 -> 80 -> 39 -> 19 -> 9 -> 4 in the encoder), inputs doubled by the skip connections.
    L("crn_d1", "CRN decoder deconv 1: 2x256 skip-concatenated -> 128 ch, k (2,3) s (1,2), 4 -> 9 bins, 100 frames",
      1, 512, 100, 4, 128, (2, 3), (1, 2)),
    L("crn_d4", "CRN decoder deconv 4: 2x32 -> 16 ch, k (2,3) s (1,2) op (0,1), 39 -> 80 bins, 100 frames",
      1, 64, 100, 39, 16, (2, 3), (1, 2), 0, (0, 1)),
    L("crn_d5_b16", "CRN decoder deconv 5 (output): 2x16 -> 1 ch, k (2,3) s (1,2), 80 -> 161 bins, 100 frames, batch 16",
      16, 32, 100, 80, 1, (2, 3), (1, 2)),
    # Complex / phase-aware U-Nets for speech (DCUNet, Choi et al. 2019, and followers) mix
    # (frequency x time) kernels like (5, 3) with frequency-only strides (2, 1).
    L("dcunet_d", "DCUNet-style decoder (real part): 64 -> 32 ch, k (5,3) s (2,1) p (2,1) op (1,0), freq 32 -> 64, 64 frames",
      1, 64, 32, 64, 32, (5, 3), (2, 1), (2, 1), (1, 0)),
    L("tf_k34", "time-frequency decoder upsampling one axis: 128 -> 64 ch, k (3,4) s (1,2) p (1,1), 32 x 40 -> 32 x 80 (common practice)",
      1, 128, 32, 40, 64, (3, 4), (1, 2), (1, 1)),
    L("tf_k34_g8", "grouped (g=8) time-frequency decoder: 64 -> 64 ch, k (3,4) s (1,2) p (1,1), 32 x 40 -> 32 x 80, batch 4",
      4, 64, 32, 40, 64, (3, 4), (1, 2), (1, 1), 0, 1, 8),
    # Waveform decoders as 2-D layers of height 1 (ConvTranspose1d(k, s, p, op) == ConvTranspose2d
    # ((1, k), (1, s), (0, p), (0, op)) on [N, C, 1, L]).
    L("segan_d", "SEGAN-like (Pascual et al. 2017) generator deconv k31 s2 as 2-D: 64 -> 32 ch, k (1,31) s (1,2) p (0,15) op (0,1), 2048 -> 4096 samples",
      1, 64, 1, 2048, 32, (1, 31), (1, 2), (0, 15), (0, 1)),
    L("melgan_u1", "MelGAN (Kumar et al. 2019) generator upsampler x8 as 2-D: 512 -> 256 ch, k (1,16) s (1,8) p (0,4), 100 mel frames",
      1, 512, 1, 100, 256, (1, 16), (1, 8), (0, 4)),
    L("hifigan_u3", "HiFi-GAN V1 (Kong et al. 2020) upsampler 3 (x2) as 2-D: 128 -> 64 ch, k (1,4) s (1,2) p (0,1), 4096 -> 8192 samples",
      1, 128, 1, 4096, 64, (1, 4), (1, 2), (0, 1)),
    # Range-image (LiDAR) segmentation decoders upsample the width only: SqueezeSeg's FireDeconv
    # (Wu et al. 2018) and RangeNet++ (Milioto et al. 2019) use ConvTranspose2d(kernel (1, 4),
    # stride (1, 2), padding (0, 1)) on 64-row range images.
    L("sqseg_fd", "SqueezeSeg-style FireDeconv (squeezed 64 -> 64 ch): k (1,4) s (1,2) p (0,1), 64 x 32 -> 64 x 64 (64 x 512 scan)",
      1, 64, 64, 32, 64, (1, 4), (1, 2), (0, 1)),
    L("rnet_dec5", "RangeNet++ decoder 5: 64 -> 32 ch, k (1,4) s (1,2) p (0,1), 64 x 256 -> 64 x 512 (64 x 512 scan)",
      1, 64, 64, 256, 32, (1, 4), (1, 2), (0, 1)),
    L("rnet_dw", "depthwise (g=128) width-only bilinear-init upsampler, k (1,4) s (1,2) p (0,1), 64 x 128 range image",
      1, 128, 64, 128, 128, (1, 4), (1, 2), (0, 1), 0, 1, 128),
    # Text lines: CRNN-like recognizers (Shi et al. 2016) pool 2x1 (height only); decoders that undo
    # it (text super-resolution, text-removal / segmentation heads) upsample the height only.
    L("ocr_k21", "text-line decoder undoing a CRNN 2x1 pooling: 256 -> 128 ch, k (2,1) s (2,1), 8 x 100 -> 16 x 100 (common practice)",
      1, 256, 8, 100, 128, (2, 1), (2, 1)),
    L("ocr_k41_b4", "text-line decoder: 128 -> 64 ch, k (4,1) s (2,1) p (1,0), 16 x 64 -> 32 x 64, batch 4 (common practice)",
      4, 128, 16, 64, 64, (4, 1), (2, 1), (1, 0)),
    L("wide_k42", "wide-image decoder (16 x 64 map) upsampling the height: 64 -> 32 ch, k (4,2) s (2,1) p (1,0), odd width out (65), batch 2",
      2, 64, 16, 64, 32, (4, 2), (2, 1), (1, 0)),
    # Anisotropic super-resolution: through-plane MRI (upsampling the slice axis only) and
    # FSRCNN-like (Dong et al. 2016) k9 heads with different scales per axis.
    L("mri_x4h", "through-plane MRI super-resolution head x4 along the slice axis only: 32 -> 1 ch, k (8,3) s (4,1) p (2,1), 40 x 160",
      1, 32, 40, 160, 1, (8, 3), (4, 1), (2, 1)),
    L("fsr_2x3", "FSRCNN-like k9 head with scales 2 x 3: 56 -> 1 ch, s (2,3) p 4 op (1,2), 64 x 48 -> 128 x 144",
      1, 56, 64, 48, 1, 9, (2, 3), 4, (1, 2)),
    # Dilation along one axis (time-dilated context layers in spectrogram models), odd sizes.
    L("dil21", "dilated along height only, d (2,1), k 3 s 1 p (2,1): 64 -> 64 ch, 31 x 47 (size-preserving, odd sizes)",
      1, 64, 31, 47, 64, 3, 1, (2, 1), 0, (2, 1)),
    L("dil12_s2", "dilated along width only, d (1,2), k 3 s (2,1) p (1,2) op (1,0): 32 -> 32 ch, 15 x 37, batch 2",
      2, 32, 15, 37, 32, 3, (2, 1), (1, 2), (1, 0), (1, 2)),
]


def out_axis(i, k, s, p, op, d):
    """PyTorch's ConvTranspose2d output size along one axis."""
    return (i - 1) * s - 2 * p + d * (k - 1) + op + 1


def out_hw(c):
    return [out_axis(c["h" if a == 0 else "w"], c["k"][a], c["s"][a], c["p"][a], c["op"][a], c["d"][a])
            for a in (0, 1)]


def flops_of(c):
    return 2 * c["n"] * c["cin"] * (c["cout"] // c["g"]) * c["k"][0] * c["k"][1] * c["h"] * c["w"]


def valid(c):
    if c["cin"] % c["g"] or c["cout"] % c["g"]:
        return "groups must divide both channel counts"
    for a in (0, 1):
        if c["p"][a] > c["d"][a] * (c["k"][a] - 1):
            return f"axis {a}: padding > dilation*(kernel-1)"
        if not (c["op"][a] < c["s"][a] or c["op"][a] < c["d"][a]):
            return f"axis {a}: output_padding must be < stride or < dilation (PyTorch)"
    if min(out_hw(c)) < 1:
        return "empty output"
    if all(c[f][0] == c[f][1] for f in ("k", "s", "p", "op", "d")):
        return "square: belongs in suite.json"
    if not MIN_FLOPS <= flops_of(c) <= MAX_FLOPS:
        return f"flops {flops_of(c):.2e} outside [{MIN_FLOPS:.0e}, {MAX_FLOPS:.0e}]"
    return None


def field(v):
    """A number where both axes agree, else [h, w]."""
    return v[0] if v[0] == v[1] else list(v)


def to_json(c):
    oh, ow = out_hw(c)
    return {
        "name": c["name"], "what": c["what"],
        "input_shape": [c["n"], c["cin"], c["h"], c["w"]],
        "out_channels": c["cout"], "kernel_size": field(c["k"]), "stride": field(c["s"]),
        "padding": field(c["p"]), "output_padding": field(c["op"]), "dilation": field(c["d"]),
        "groups": c["g"], "bias": False,
        "output_shape": [c["n"], c["cout"], oh, ow],
        "flops": flops_of(c),
    }


def check_with_torch(rows):
    """Output shapes by torch itself, on meta tensors (no compute)."""
    import torch
    import torch.nn.functional as F
    for c in rows:
        x = torch.empty(c["n"], c["cin"], c["h"], c["w"], device="meta")
        w = torch.empty(c["cin"], c["cout"] // c["g"], c["k"][0], c["k"][1], device="meta")
        y = F.conv_transpose2d(x, w, stride=c["s"], padding=c["p"], output_padding=c["op"], groups=c["g"],
                               dilation=c["d"])
        want = to_json(c)["output_shape"]
        assert list(y.shape) == want, (c["name"], list(y.shape), want)
    print(f"torch {torch.__version__}: all {len(rows)} output shapes agree", file=sys.stderr)


def main():
    names = [c["name"] for c in ROWS]
    assert len(set(names)) == len(names), "duplicate names"
    for c in ROWS:
        assert len(c["name"]) <= 10, c["name"]
        why = valid(c)
        assert why is None, (c["name"], why)
    if "--check" in sys.argv:
        check_with_torch(ROWS)
    doc = {
        "about": ("Kiln's non-square ConvTranspose2d table (float32, inference, no bias; Kiln only, the peers "
                  "harness takes square layers): spectrogram, waveform, range-image, text-line and anisotropic "
                  "super-resolution decoder layers whose kernel, stride, padding, output padding or dilation "
                  "differs between the axes ([h, w] where they differ). Written by scripts/bench/gen_nonsquare.py. "
                  "flops = 2*N*C_in*(C_out/groups)*kH*kW*H_in*W_in. Weight layout [C_in, C_out/groups, kH, kW]."),
        "shapes": [to_json(c) for c in ROWS],
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    tot = sum(flops_of(c) for c in ROWS)
    print(f"wrote {len(ROWS)} layers ({tot:.2e} FLOPs in all) to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
