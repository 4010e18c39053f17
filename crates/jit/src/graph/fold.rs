//! Producers a forward convolution absorbs: the arithmetic of two folds that
//! lowering applies when a `Conv2d` (zero padding, stride 1 for the second)
//! reads the sole output of
//!
//! * a **zero `Pad2d`** that pads both sides of each axis equally: the pad
//!   becomes extra convolution padding, so no padded copy is written;
//! * a **nearest `Upsample`** by integer factors `s`: nearest upsampling
//!   repeats each input pixel `s` times, so a `k`-tap convolution over the
//!   upsampled image is, per output phase, a convolution of the *original*
//!   image with box-summed weights — exactly a transposed convolution of
//!   stride `s`, kernel `k + s − 1` and padding `k − 1 − p`. The upsampled
//!   image is never written, and each output costs `((k+s−1)/s)²` taps
//!   instead of `k²` (4 instead of 9 for the common `k3 s2`).
//!
//! Per axis, with `u[i] = x[i / s]` and `y[o] = Σ_k w[k]·u[o + k − p]`,
//! grouping the taps by the input pixel `j = (o + k − p) / s` they read gives
//! `y[o] = Σ_j x[j]·W[o + P − j·s]` with `P = k − 1 − p` and
//! `W[t] = Σ { w[k] : k ∈ [k−1−t, k−1−t+s) ∩ [0, k) }`, `t ∈ [0, k+s−1)`:
//! PyTorch's transposed convolution with that weight. Zero padding of the
//! upsampled image is zero outside `x`, which the transposed convolution
//! does not visit, and both give `s·n + 2p − k + 1` outputs.
//!
//! The functions here are pure; lowering decides when they apply (sole user,
//! not a graph output, finite weights) and checks the results like any
//! kernel's.

use kiln_ir::{PadMode, Sides, UpsampleMode, UpsampleParams};

/// The extra convolution padding `(begin [top, left], end [bottom, right])`
/// a pad is, if it is a zero pad (a convolution's padding holds any sides).
pub(crate) fn zero_pad_as_padding(padding: Sides, mode: PadMode) -> Option<([usize; 2], [usize; 2])> {
    let zero = match mode {
        PadMode::Zero => true,
        // `-0.0` pads a negative zero, which a product with a weight can
        // carry into an all-zero sum; only `+0.0` is the convolution's pad.
        PadMode::Constant { value } => value.to_bits() == 0,
        PadMode::Reflect | PadMode::Replicate => false,
    };
    zero.then_some(([padding.top, padding.left], [padding.bottom, padding.right]))
}

/// The integer factors `[sH, sW]` of a nearest upsampling from `in_hw` to
/// `out_hw`, if every output pixel reads input `o / s` (PyTorch's index rule
/// can differ from that for non-integer or float-rounded scales; then the
/// fold does not apply).
pub(crate) fn nearest_factors(in_hw: [usize; 2], out_hw: [usize; 2], p: &UpsampleParams) -> Option<[usize; 2]> {
    if p.mode != UpsampleMode::Nearest {
        return None;
    }
    let mut factors = [0; 2];
    for axis in 0..2 {
        let (i, o) = (in_hw[axis], out_hw[axis]);
        if i == 0 || !o.is_multiple_of(i) {
            return None;
        }
        let s = o / i;
        let f = p.size.factor(axis);
        if (0..o).any(|dst| kiln_ir::nearest_source(dst, i, o, f) != dst / s) {
            return None;
        }
        factors[axis] = s;
    }
    Some(factors)
}

/// A transposed convolution equal to a stride-1, dilation-1 `Conv2d` over
/// an image upsampled (nearest) by `factors`.
#[derive(Debug, PartialEq)]
pub(crate) struct UpsampledConv {
    /// Weight in the transposed layout `[C_in, C_out/g, kH + sH − 1, kW + sW − 1]`.
    pub(crate) weight: Vec<f32>,
    /// `[kH + sH − 1, kW + sW − 1]`.
    pub(crate) kernel: [usize; 2],
    /// Stride: the factors.
    pub(crate) stride: [usize; 2],
    /// `[kH − 1 − pH, kW − 1 − pW]`.
    pub(crate) padding: [usize; 2],
}

/// The transposed convolution of [`UpsampledConv`], from a `Conv2d` weight
/// `[C_out, C_in/g, kH, kW]` with padding `pad`; `None` if the padding is
/// wider than `k − 1` (the transposed form would need negative padding) or
/// the sizes do not fit.
pub(crate) fn upsampled_conv(
    weight: &[f32],
    out_channels: usize,
    in_channels: usize,
    groups: usize,
    kernel: [usize; 2],
    pad: [usize; 2],
    factors: [usize; 2],
) -> Option<UpsampledConv> {
    if groups == 0 || !out_channels.is_multiple_of(groups) || !in_channels.is_multiple_of(groups) {
        return None;
    }
    let (opg, ipg) = (out_channels / groups, in_channels / groups);
    let [kh, kw] = kernel;
    if kh == 0 || kw == 0 || pad[0] >= kh || pad[1] >= kw || factors.contains(&0) {
        return None;
    }
    if weight.len() != out_channels.checked_mul(ipg)?.checked_mul(kh)?.checked_mul(kw)? {
        return None;
    }
    let tk = [kh.checked_add(factors[0] - 1)?, kw.checked_add(factors[1] - 1)?];
    let len = in_channels.checked_mul(opg)?.checked_mul(tk[0])?.checked_mul(tk[1])?;
    // Per axis and transposed tap `t`, the original taps it sums.
    let taps = |axis: usize, t: usize| {
        let k = kernel[axis];
        // [k−1−t, k−1−t+s) ∩ [0, k), with k−1−t possibly negative.
        let lo = (k - 1).saturating_sub(t);
        let hi = (k - 1 + factors[axis]).saturating_sub(t).min(k);
        lo..hi
    };
    let mut out = vec![0.0f32; len];
    let mut at = 0;
    for ci in 0..in_channels {
        let (group, cig) = (ci / ipg, ci % ipg);
        for cog in 0..opg {
            let co = group * opg + cog;
            let base = (co * ipg + cig) * kh * kw;
            for th in 0..tk[0] {
                for tw in 0..tk[1] {
                    let mut sum = 0.0f64;
                    for a in taps(0, th) {
                        for b in taps(1, tw) {
                            sum += f64::from(weight[base + a * kw + b]);
                        }
                    }
                    out[at] = sum as f32;
                    at += 1;
                }
            }
        }
    }
    Some(UpsampledConv { weight: out, kernel: tk, stride: factors, padding: [kh - 1 - pad[0], kw - 1 - pad[1]] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{Pair2, UpsampleClass, UpsampleSize};

    fn nearest(scale: f64) -> UpsampleParams {
        UpsampleParams {
            size: UpsampleSize::Scale { h: scale, w: scale },
            mode: UpsampleMode::Nearest,
            align_corners: false,
            class: UpsampleClass::Upsample,
        }
    }

    /// `Conv2d` (stride 1) on the nearest-upsampled image, directly, in f64.
    #[allow(clippy::too_many_arguments)]
    fn upsample_then_conv(
        x: &[f64],
        [c, h, w]: [usize; 3],
        wt: &[f32],
        co_n: usize,
        groups: usize,
        [kh, kw]: [usize; 2],
        [ph, pw]: [usize; 2],
        [sh, sw]: [usize; 2],
    ) -> Vec<f64> {
        let (uh, uw) = (h * sh, w * sw);
        let (oh, ow) = (uh + 2 * ph + 1 - kh, uw + 2 * pw + 1 - kw);
        let (ipg, opg) = (c / groups, co_n / groups);
        let mut y = vec![0.0; co_n * oh * ow];
        for co in 0..co_n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0;
                    for cig in 0..ipg {
                        let ci = (co / opg) * ipg + cig;
                        for a in 0..kh {
                            for b in 0..kw {
                                let (uy, ux) = ((oy + a) as isize - ph as isize, (ox + b) as isize - pw as isize);
                                if uy < 0 || ux < 0 || uy >= uh as isize || ux >= uw as isize {
                                    continue;
                                }
                                let xv = x[(ci * h + uy as usize / sh) * w + ux as usize / sw];
                                s += f64::from(wt[((co * ipg + cig) * kh + a) * kw + b]) * xv;
                            }
                        }
                    }
                    y[(co * oh + oy) * ow + ox] = s;
                }
            }
        }
        y
    }

    /// PyTorch's transposed convolution, directly, in f64.
    fn conv_transpose(x: &[f64], [c, h, w]: [usize; 3], f: &UpsampledConv, co_n: usize, groups: usize) -> Vec<f64> {
        let [kh, kw] = f.kernel;
        let ([sh, sw], [ph, pw]) = (f.stride, f.padding);
        let (oh, ow) = ((h - 1) * sh + kh - 2 * ph, (w - 1) * sw + kw - 2 * pw);
        let (ipg, opg) = (c / groups, co_n / groups);
        let mut y = vec![0.0; co_n * oh * ow];
        for ci in 0..c {
            for iy in 0..h {
                for ix in 0..w {
                    for cog in 0..opg {
                        let co = (ci / ipg) * opg + cog;
                        for a in 0..kh {
                            for b in 0..kw {
                                let (oy, ox) =
                                    ((iy * sh + a) as isize - ph as isize, (ix * sw + b) as isize - pw as isize);
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let wv = f.weight[((ci * opg + cog) * kh + a) * kw + b];
                                y[(co * oh + oy as usize) * ow + ox as usize] +=
                                    f64::from(wv) * x[(ci * h + iy) * w + ix];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn upsample_then_conv_equals_the_transposed_convolution() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // (channels in, out, groups, kernel, padding, factors, h, w)
        let cases = [
            (3, 4, 1, [3, 3], [1, 1], [2, 2], 4, 5),
            (2, 2, 2, [3, 1], [0, 0], [3, 2], 3, 4),
            (4, 6, 2, [5, 3], [2, 0], [2, 3], 2, 3),
            (1, 1, 1, [1, 1], [0, 0], [4, 4], 3, 2),
            (2, 3, 1, [2, 4], [1, 3], [1, 2], 5, 2),
        ];
        for (ci, co, g, k, p, s, h, w) in cases {
            let wt: Vec<f32> = (0..co * (ci / g) * k[0] * k[1]).map(|_| next() as f32).collect();
            let x: Vec<f64> = (0..ci * h * w).map(|_| next()).collect();
            let f = upsampled_conv(&wt, co, ci, g, k, p, s).expect("foldable");
            let want = upsample_then_conv(&x, [ci, h, w], &wt, co, g, k, p, s);
            let got = conv_transpose(&x, [ci, h, w], &f, co, g);
            assert_eq!(got.len(), want.len(), "case {:?}", (ci, co, g, k, p, s));
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "case {:?}: {a} vs {b}", (ci, co, g, k, p, s));
            }
        }
    }

    #[test]
    fn padding_wider_than_the_kernel_does_not_fold() {
        assert_eq!(upsampled_conv(&[1.0; 9], 1, 1, 1, [3, 3], [3, 1], [2, 2]), None);
        assert_eq!(upsampled_conv(&[1.0; 8], 1, 1, 1, [3, 3], [1, 1], [2, 2]), None, "wrong weight length");
    }

    #[test]
    fn only_exact_integer_nearest_factors_fold() {
        assert_eq!(nearest_factors([4, 5], [8, 10], &nearest(2.0)), Some([2, 2]));
        assert_eq!(nearest_factors([7, 3], [21, 9], &nearest(3.0)), Some([3, 3]));
        assert_eq!(nearest_factors([4, 4], [6, 6], &nearest(1.5)), None);
        let bilinear = UpsampleParams { mode: UpsampleMode::Bilinear, ..nearest(2.0) };
        assert_eq!(nearest_factors([4, 4], [8, 8], &bilinear), None);
        let sized = UpsampleParams { size: UpsampleSize::Size { size: Pair2 { h: 8, w: 12 } }, ..nearest(1.0) };
        assert_eq!(nearest_factors([4, 4], [8, 12], &sized), Some([2, 3]));
    }

    #[test]
    fn only_positive_zero_pads_fold() {
        let s = |l, r, t, b| Sides { left: l, right: r, top: t, bottom: b };
        assert_eq!(zero_pad_as_padding(s(1, 1, 2, 2), PadMode::Zero), Some(([2, 1], [2, 1])));
        assert_eq!(zero_pad_as_padding(s(1, 1, 1, 1), PadMode::Constant { value: 0.0 }), Some(([1, 1], [1, 1])));
        // Unequal sides fold too, into per-side convolution padding.
        assert_eq!(zero_pad_as_padding(s(0, 1, 2, 3), PadMode::Zero), Some(([2, 0], [3, 1])));
        assert_eq!(zero_pad_as_padding(s(1, 1, 1, 1), PadMode::Constant { value: -0.0 }), None);
        assert_eq!(zero_pad_as_padding(s(1, 1, 1, 1), PadMode::Constant { value: 0.5 }), None);
        assert_eq!(zero_pad_as_padding(s(1, 1, 1, 1), PadMode::Reflect), None);
    }
}
