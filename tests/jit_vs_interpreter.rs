//! Differential property test: random valid configurations of a lazy
//! transposed convolution (groups, dilation, output_padding or output_size,
//! or per-side pads with any output_padding, unbatched input), optionally
//! followed by BatchNorm and an activation (the
//! fused four, PReLU, the helper-computed pointwise ones, or a dropout before
//! a ReLU) so BatchNorm folding and epilogue fusion are exercised, run through the JIT
//! and the reference interpreter must agree within 1e-4 relative. A second
//! property does the same for a `Conv2d` with per-side pads, optionally fed
//! by an asymmetric zero pad (which the JIT folds into the convolution).

use kiln::ir::{Op, PadMode, Sides};
use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{tensor, Interpreter, RandomTensor, Rng};
use kiln::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, GraphBuilder, ParamSource};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Config {
    batch: Option<usize>,
    groups: usize,
    cin_per_group: usize,
    cout_per_group: usize,
    hw: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    padding: (usize, usize),
    /// Per-side mode: `padding` is the begin side, this the end side.
    pads_end: Option<(usize, usize)>,
    output_padding_seed: (usize, usize),
    use_output_size: bool,
    bias: bool,
    batch_norm: bool,
    activation: u8,
    threads: usize,
    seed: u64,
}

fn config() -> impl Strategy<Value = Config> {
    (
        (prop::option::of(1..4usize), 1..5usize, 1..4usize, 1..4usize, (1..7usize, 1..7usize)),
        (
            (1..6usize, 1..6usize),
            (1..5usize, 1..5usize),
            (1..4usize, 1..4usize),
            (0..5usize, 0..5usize),
            prop::option::of((0..5usize, 0..5usize)),
        ),
        ((0..8usize, 0..8usize), any::<bool>(), any::<bool>(), any::<bool>(), 0..9u8, 1..3usize, any::<u64>()),
    )
        .prop_map(
            |(
                (batch, groups, cin_per_group, cout_per_group, hw),
                (kernel, stride, dilation, padding, pads_end),
                rest,
            )| {
                let (output_padding_seed, use_output_size, bias, batch_norm, activation, threads, seed) = rest;
                Config {
                    batch,
                    groups,
                    cin_per_group,
                    cout_per_group,
                    hw,
                    kernel,
                    stride,
                    dilation,
                    padding,
                    pads_end,
                    output_padding_seed,
                    use_output_size,
                    bias,
                    batch_norm,
                    activation,
                    threads,
                    seed,
                }
            },
        )
}

/// Every tier this CPU runs (Cranelift, and each native ISA it has).
fn tiers() -> Vec<(&'static str, kiln::jit::KernelTier)> {
    use kiln::jit::{KernelTier, NativeIsa};
    let mut v = vec![("cranelift", KernelTier::Cranelift)];
    for (name, isa) in [("avx2", NativeIsa::Avx2), ("avx512", NativeIsa::Avx512)] {
        if isa.resolve() == Some(isa) {
            v.push((name, KernelTier::Native(isa)));
        }
    }
    v
}

/// `s·(i − 1) + d·(k − 1) + 1 − begin − end + op`, ONNX's formula (PyTorch's with `begin = end`).
#[allow(clippy::too_many_arguments)]
fn out_size(i: usize, k: usize, s: usize, begin: usize, end: usize, d: usize, op: usize) -> i64 {
    (i as i64 - 1) * s as i64 - begin as i64 - end as i64 + d as i64 * (k as i64 - 1) + op as i64 + 1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn jit_matches_interpreter(c in config()) {
        // output_padding may reach max(stride, dilation) - 1, but an output_size
        // must lie within stride - 1 of the minimum (PyTorch's range rule);
        // with per-side pads it may be anything (ONNX).
        let per_side = c.pads_end.filter(|_| !c.use_output_size);
        let limit = |s: usize, d: usize| match (per_side, c.use_output_size) {
            (Some(_), _) => 8,
            (None, true) => s,
            (None, false) => s.max(d),
        };
        let op = (c.output_padding_seed.0 % limit(c.stride.0, c.dilation.0), c.output_padding_seed.1 % limit(c.stride.1, c.dilation.1));
        let end = per_side.unwrap_or(c.padding);
        let oh = out_size(c.hw.0, c.kernel.0, c.stride.0, c.padding.0, end.0, c.dilation.0, op.0);
        let ow = out_size(c.hw.1, c.kernel.1, c.stride.1, c.padding.1, end.1, c.dilation.1, op.1);
        prop_assume!(oh >= 1 && ow >= 1);
        let cin = c.groups * c.cin_per_group;
        let mut params = ConvTranspose2dParams::new(c.groups * c.cout_per_group, c.kernel)
            .stride(c.stride).dilation(c.dilation).padding(c.padding).groups(c.groups).bias(c.bias);
        params = match (per_side, c.use_output_size) {
            (Some(e), _) => params.pads([c.padding.0, c.padding.1], [e.0, e.1]).output_padding(op),
            (None, true) => params.output_size([oh as usize, ow as usize]),
            (None, false) => params.output_padding(op),
        };
        let shape: Vec<usize> = match c.batch { Some(n) => vec![n, cin, c.hw.0, c.hw.1], None => vec![cin, c.hw.0, c.hw.1] };
        let mut b = GraphBuilder::new("p");
        let x = b.input("x", &shape).unwrap();
        let mut h = b.lazy_conv_transpose2d("up", x, params).unwrap();
        // PyTorch's BatchNorm2d takes 4-D input only.
        if c.batch_norm && c.batch.is_some() {
            h = b.lazy_batch_norm2d("bn", h, BatchNorm2dParams::default()).unwrap();
        }
        match c.activation {
            0 => { b.relu("act", h).unwrap(); }
            1 => { b.leaky_relu("act", h, 0.3).unwrap(); }
            2 => { b.tanh("act", h).unwrap(); }
            3 => { b.sigmoid("act", h).unwrap(); }
            // PReLU: per channel when batched (dim 1 is the channel), else shared.
            4 => { b.prelu("act", h, if c.batch.is_some() { c.groups * c.cout_per_group } else { 1 }).unwrap(); }
            // The helper-computed activations, one per case.
            5 | 6 => {
                let all = kiln::ir::Pointwise::ALL_DEFAULTS;
                b.pointwise("act", h, all[(c.seed % all.len() as u64) as usize]).unwrap();
            }
            // An eval-mode identity between the convolution and a fused activation.
            7 => { let d = b.dropout("drop", h, 0.5).unwrap(); b.relu("act", d).unwrap(); }
            _ => {}
        }
        let mut g = b.finish().unwrap();
        kiln::passes::resolve(&mut g, ParamSource::Init { seed: c.seed }).unwrap();
        // Non-trivial BatchNorm statistics so folding is really tested.
        if let Some(bn) = g.find("bn") {
            let ch = g.node(bn).param("running_mean").unwrap().len();
            let mut r = Rng::new(c.seed ^ 1);
            for (name, lo, hi) in [("weight", 0.5, 2.0), ("bias", -1.0, 1.0), ("running_mean", -0.5, 0.5), ("running_var", 0.2, 3.0)] {
                let v: Vec<f32> = (0..ch).map(|_| r.uniform(lo, hi)).collect();
                g.set_param(bn, name, kiln::ir::ndarray::ArrayD::from_shape_vec(vec![ch], v).unwrap()).unwrap();
            }
        }
        // Negative slopes too, one per channel.
        if let Some(act) = g.find("act") {
            if let Some(w) = g.node(act).param("weight") {
                let mut r = Rng::new(c.seed ^ 2);
                let v: Vec<f32> = (0..w.len()).map(|_| r.uniform(-1.0, 1.0)).collect();
                g.set_param(act, "weight", kiln::ir::ndarray::ArrayD::from_shape_vec(vec![v.len()], v).unwrap()).unwrap();
            }
        }
        let input = Rng::new(c.seed).tensor(&shape);
        let want = Interpreter::run(&g, std::slice::from_ref(&input)).unwrap();
        for (name, tier) in &tiers() {
            let exe = compile_with(&g, CompileOptions { threads: c.threads, tier: *tier, ..Default::default() }).unwrap();
            let got = exe.run(std::slice::from_ref(&input)).unwrap();
            let close = tensor::check_close(&got[0], &want[0], 1e-4);
            prop_assert!(close.is_ok(), "{}: {:?}", name, close);
        }
    }

    #[test]
    fn jit_matches_interpreter_conv2d_pads(
        (batch, groups, cin_g, cout_g, hw) in (1..3usize, 1..4usize, 1..4usize, 1..5usize, (1..9usize, 1..9usize)),
        (kernel, stride, dilation) in ((1..5usize, 1..5usize), (1..4usize, 1..4usize), (1..3usize, 1..3usize)),
        (begin, end) in ((0..5usize, 0..5usize), (0..5usize, 0..5usize)),
        zero_pad in prop::option::of((0..3usize, 0..3usize, 0..3usize, 0..3usize)),
        (relu, threads, seed) in (any::<bool>(), 1..3usize, any::<u64>()),
    ) {
        // The padded input must hold the dilated kernel on both axes.
        let extra = zero_pad.unwrap_or((0, 0, 0, 0));
        let span = |i: usize, b: usize, e: usize, k: usize, d: usize| (i + b + e) as i64 - (d * (k - 1)) as i64 - 1;
        prop_assume!(span(hw.0 + extra.2 + extra.3, begin.0, end.0, kernel.0, dilation.0) >= 0);
        prop_assume!(span(hw.1 + extra.0 + extra.1, begin.1, end.1, kernel.1, dilation.1) >= 0);
        let cin = groups * cin_g;
        let shape = vec![batch, cin, hw.0, hw.1];
        let mut b = GraphBuilder::new("p");
        let mut h = b.input("x", &shape).unwrap();
        if let Some((left, right, top, bottom)) = zero_pad {
            let padding = Sides { left, right, top, bottom };
            h = b.spatial("pad", h, Op::Pad2d { padding, mode: PadMode::Zero }).unwrap();
        }
        let params = Conv2dParams::new(groups * cout_g, kernel)
            .stride(stride)
            .dilation(dilation)
            .groups(groups)
            .pads([begin.0, begin.1], [end.0, end.1]);
        h = b.lazy_conv2d("conv", h, params).unwrap();
        if relu {
            b.relu("act", h).unwrap();
        }
        let mut g = b.finish().unwrap();
        kiln::passes::resolve(&mut g, ParamSource::Init { seed }).unwrap();
        let input = Rng::new(seed).tensor(&shape);
        let want = Interpreter::run(&g, std::slice::from_ref(&input)).unwrap();
        for (name, tier) in &tiers() {
            let exe = compile_with(&g, CompileOptions { threads, tier: *tier, ..Default::default() }).unwrap();
            let got = exe.run(std::slice::from_ref(&input)).unwrap();
            let close = tensor::check_close(&got[0], &want[0], 1e-4);
            prop_assert!(close.is_ok(), "{}: {:?}", name, close);
        }
    }
}

/// Reductions split into input-channel blocks (many input channels on small
/// planes, pix2pix up5's class): the first block starts from the bias, later
/// ones add to the partial sums in the output, and only the last activates.
/// Every tier must agree with the interpreter, and the native plans must
/// really be blocked (their CLIF says so).
#[test]
fn input_channel_blocks_match_the_interpreter() {
    // (batch, output channels, threads, activation: tanh or a negative-slope LeakyReLU)
    for (batch, cout, threads, tanh) in [(1, 40, 2, true), (2, 64, 1, false)] {
        let shape = vec![batch, 2048, 4, 4];
        let mut b = GraphBuilder::new("blocks");
        let x = b.input("x", &shape).unwrap();
        let params = ConvTranspose2dParams::new(cout, (4, 4)).stride((2, 2)).padding((1, 1)).bias(true);
        let h = b.lazy_conv_transpose2d("up", x, params).unwrap();
        if tanh {
            b.tanh("act", h).unwrap();
        } else {
            b.leaky_relu("act", h, 0.2).unwrap();
        }
        let mut g = b.finish().unwrap();
        kiln::passes::resolve(&mut g, ParamSource::Init { seed: 7 }).unwrap();
        // A bias larger than the init's, so adding it twice would show.
        let up = g.find("up").unwrap();
        let bias: Vec<f32> = (0..cout).map(|c| 0.5 - c as f32 / cout as f32).collect();
        g.set_param(up, "bias", kiln::ir::ndarray::ArrayD::from_shape_vec(vec![cout], bias).unwrap()).unwrap();
        let input = Rng::new(3).tensor(&shape);
        let want = Interpreter::run(&g, std::slice::from_ref(&input)).unwrap();
        for (name, tier) in &tiers() {
            let exe = compile_with(&g, CompileOptions { threads, tier: *tier, ..Default::default() }).unwrap();
            if *name != "cranelift" {
                assert!(exe.clif().contains("; input-channel blocks:"), "{name}: the reduction is not blocked");
            }
            let got = exe.run(std::slice::from_ref(&input)).unwrap();
            let close = tensor::check_close(&got[0], &want[0], 1e-4);
            assert!(close.is_ok(), "{name}, batch {batch}, {cout} channels: {close:?}");
        }
    }
}

/// Few-channel heads as a pixel-lane GEMM and a col2im (FSRCNN, ESPCN):
/// pixel counts that leave a partial last block, a reduction longer than
/// one packed block, two output channels; every tier must agree with the
/// interpreter, and under the Auto tier the GEMM must be the pixel-lane kernel.
#[test]
fn few_channel_heads_match_the_interpreter() {
    // (input shape, out_channels, kernel, stride, padding, output_padding)
    for (shape, cout, k, s, p, op) in [([2, 136, 15, 23], 1, 9, 3, 4, 2), ([1, 32, 20, 20], 2, 6, 2, 2, 0)] {
        let mut b = GraphBuilder::new("head");
        let x = b.input("x", shape).unwrap();
        let params =
            ConvTranspose2dParams::new(cout, (k, k)).stride((s, s)).padding((p, p)).output_padding((op, op)).bias(true);
        let h = b.lazy_conv_transpose2d("up", x, params).unwrap();
        b.tanh("act", h).unwrap();
        let mut g = b.finish().unwrap();
        kiln::passes::resolve(&mut g, ParamSource::Init { seed: 11 }).unwrap();
        let input = Rng::new(5).tensor(&shape);
        let want = Interpreter::run(&g, std::slice::from_ref(&input)).unwrap();
        // The pair is the Auto tier's choice; the fixed tiers compute the layer directly.
        let mut all = tiers();
        all.push(("auto", kiln::jit::KernelTier::Auto));
        for (name, tier) in &all {
            let exe = compile_with(&g, CompileOptions { threads: 2, tier: *tier, ..Default::default() }).unwrap();
            let kernels: Vec<String> = exe.kernels().into_iter().map(|k| k.kernel).collect();
            if *name == "auto" {
                assert!(kernels.iter().any(|k| k.contains("gemm")), "{name}: {kernels:?}");
            }
            let got = exe.run(std::slice::from_ref(&input)).unwrap();
            let close = tensor::check_close(&got[0], &want[0], 1e-4);
            assert!(close.is_ok(), "{name}, {shape:?} -> {cout}: {close:?}");
        }
    }
}
