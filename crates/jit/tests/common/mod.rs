//! Naive references (obvious loops, f64 accumulation) and test helpers.
#![allow(dead_code)]

use kiln_jit::kernel_api::{Activation, Conv2dGeometry, ConvTranspose2dGeometry, KernelBuilder, Options};
use kiln_jit::{KernelTier, NativeIsa};

/// Every kernel tier this CPU can run: Cranelift, native AVX2 (if AVX2+FMA),
/// native AVX-512 (if AVX-512F).
pub fn tiers() -> Vec<KernelTier> {
    let mut v = vec![KernelTier::Cranelift];
    for isa in [NativeIsa::Avx2, NativeIsa::Avx512] {
        if isa.resolve().is_some() {
            v.push(KernelTier::Native(isa));
        }
    }
    v
}

/// A builder forced to `tier`.
pub fn builder(tier: KernelTier) -> KernelBuilder {
    KernelBuilder::with_options(Options { tier, ..Options::default() }).expect("tier available on this CPU")
}

/// Deterministic pseudo-random floats in [-1, 1).
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// PyTorch's scatter definition of conv_transpose2d.
pub fn conv_transpose_ref(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let mut y = vec![0f64; g.output_len()];
    for n in 0..g.batch {
        for ci in 0..g.in_channels {
            let grp = ci / cig;
            for ih in 0..g.in_h {
                for iw in 0..g.in_w {
                    let xv = x[((n * g.in_channels + ci) * g.in_h + ih) * g.in_w + iw] as f64;
                    for oc in 0..cog {
                        let co = grp * cog + oc;
                        for a in 0..kh {
                            for b in 0..kw {
                                let oh = (ih * g.stride[0] + a * g.dilation[0]) as i64 - g.padding[0] as i64;
                                let ow = (iw * g.stride[1] + b * g.dilation[1]) as i64 - g.padding[1] as i64;
                                if oh >= 0 && ow >= 0 && (oh as usize) < g.out_h && (ow as usize) < g.out_w {
                                    let wv = w[((ci * cog + oc) * kh + a) * kw + b] as f64;
                                    y[((n * g.out_channels + co) * g.out_h + oh as usize) * g.out_w + ow as usize] +=
                                        xv * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    finish(y, g.out_channels, g.out_h * g.out_w, bias, act)
}

/// Forward conv2d with zero padding.
pub fn conv_ref(g: &Conv2dGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let mut y = vec![0f64; g.output_len()];
    for n in 0..g.batch {
        for co in 0..g.out_channels {
            let grp = co / cog;
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let mut acc = 0f64;
                    for c in 0..cig {
                        let ci = grp * cig + c;
                        for a in 0..kh {
                            for b in 0..kw {
                                let ih = (oh * g.stride[0] + a * g.dilation[0]) as i64 - g.padding[0] as i64;
                                let iw = (ow * g.stride[1] + b * g.dilation[1]) as i64 - g.padding[1] as i64;
                                if ih >= 0 && iw >= 0 && (ih as usize) < g.in_h && (iw as usize) < g.in_w {
                                    acc += x[((n * g.in_channels + ci) * g.in_h + ih as usize) * g.in_w + iw as usize]
                                        as f64
                                        * w[((co * cig + c) * kh + a) * kw + b] as f64;
                                }
                            }
                        }
                    }
                    y[((n * g.out_channels + co) * g.out_h + oh) * g.out_w + ow] = acc;
                }
            }
        }
    }
    finish(y, g.out_channels, g.out_h * g.out_w, bias, act)
}

fn finish(y: Vec<f64>, channels: usize, hw: usize, bias: Option<&[f32]>, act: Activation) -> Vec<f32> {
    y.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / hw) % channels;
            let v = v + bias.map_or(0.0, |b| b[c] as f64);
            act.apply(v as f32)
        })
        .collect()
}

/// Max abs error, and the tolerance `1e-4·max(1, max|expected|)`.
pub fn check_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let tol = 1e-4 * scale;
    let mut worst = (0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        if e.is_nan() || e > worst.0 {
            worst = (if e.is_nan() { f32::INFINITY } else { e }, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: max abs err {} at {} (got {}, want {}), tol {tol}",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
}
