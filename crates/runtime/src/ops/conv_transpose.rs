//! `ConvTranspose2d`: the scatter form of PyTorch's transposed convolution,
//! exactly as written in `reference/pytorch-semantics.md` §4, with groups
//! (depthwise and channel multipliers included), stride, padding (crops;
//! symmetric, or per side as ONNX's `pads`: the full result cropped by
//! `begin` at the start and `end` at the end of each axis), output_padding
//! or `output_size` (extends at the high end), dilation, optional bias,
//! batched or unbatched input.

use kiln_ir::ConvTranspose2dParams;
use ndarray::Ix4;

use super::{accumulator, as_nchw, bad, check_bias, check_in_channels, check_param, finish};
use crate::error::Result;
use crate::tensor::Tensor;

const OP: &str = "ConvTranspose2d";

/// The output height and width for an input of spatial size `in_hw`:
/// `(in − 1)·s − begin − end + d·(k − 1) + op + 1` (PyTorch's formula with
/// `begin = end = padding`, ONNX's with per-side `pads`), where `op` is
/// `output_padding`, or, when `output_size` is given (symmetric padding
/// only), `output_size − min` with PyTorch's range check
/// (`min ≤ size ≤ min + s − 1`). Fails when the result is below 1.
pub fn conv_transpose2d_output_hw(node: &str, in_hw: [usize; 2], p: &ConvTranspose2dParams) -> Result<[usize; 2]> {
    // Checked i128 arithmetic: hyper-parameters are arbitrary usizes, so even
    // i128 products (d · (k − 1)) could overflow for absurd values.
    let dim = |i: usize, k: usize, s: usize, begin: usize, end: usize, d: usize| -> Option<i128> {
        let [i, k, s, b, e, d] = [i, k, s, begin, end, d].map(|v| v as i128);
        (i - 1).checked_mul(s)?.checked_sub(b)?.checked_sub(e)?.checked_add(d.checked_mul(k - 1)?)?.checked_add(1)
    };
    let (k, s, d) = (p.kernel_size, p.stride, p.dilation);
    let (begin, end) = (p.padding.begin(), p.padding.end());
    let overflow = || bad(node, OP, format!("output size for an input of spatial size {in_hw:?} overflows"));
    let min = [
        dim(in_hw[0], k.h, s.h, begin.h, end.h, d.h).ok_or_else(overflow)?,
        dim(in_hw[1], k.w, s.w, begin.w, end.w, d.w).ok_or_else(overflow)?,
    ];
    let out = match &p.output_size {
        None => [
            min[0].checked_add(p.output_padding.h as i128).ok_or_else(overflow)?,
            min[1].checked_add(p.output_padding.w as i128).ok_or_else(overflow)?,
        ],
        Some(size) => {
            let Some(requested) = size.len().checked_sub(2).map(|i| &size[i..]) else {
                return Err(bad(node, OP, format!("output_size {size:?} needs at least 2 values")));
            };
            let requested = [requested[0] as i128, requested[1] as i128];
            let max = [min[0].saturating_add(s.h as i128 - 1), min[1].saturating_add(s.w as i128 - 1)];
            if (0..2).any(|i| requested[i] < min[i] || requested[i] > max[i]) {
                return Err(bad(
                    node,
                    OP,
                    format!(
                        "requested an output size of {requested:?}, but valid sizes range from {min:?} to {max:?} \
                         (for an input of spatial size {in_hw:?})"
                    ),
                ));
            }
            requested
        }
    };
    if out.iter().any(|&v| v > usize::MAX as i128) {
        return Err(overflow());
    }
    if out.iter().any(|&v| v < 1) {
        return Err(bad(
            node,
            OP,
            format!(
                "input of spatial size {}x{} gives output size {}x{}, which is too small",
                in_hw[0], in_hw[1], out[0], out[1]
            ),
        ));
    }
    Ok([out[0] as usize, out[1] as usize])
}

/// `nn.ConvTranspose2d(in_channels, **params)(x)` with PyTorch's weight
/// layout `[in_channels, out_channels / groups, kH, kW]` and `bias` of
/// `[out_channels]` (required exactly when `params.bias`).
///
/// ```text
/// for n, ci, ih, iw, oc in [0, C_out/g), kh, kw:
///     co = (ci / (C_in/g)) * (C_out/g) + oc
///     oh = ih*sH - pH + kh*dH;  ow = iw*sW - pW + kw*dW   (pH, pW: the begin-side padding)
///     if 0 <= oh < H_out and 0 <= ow < W_out: y[n, co, oh, ow] += x[n, ci, ih, iw] * w[ci, oc, kh, kw]
/// y[n, co, :, :] += bias[co]
/// ```
pub fn conv_transpose2d(
    node: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    in_channels: usize,
    p: &ConvTranspose2dParams,
) -> Result<Tensor> {
    p.validate(node, OP)?;
    let (x, batched) = as_nchw(node, OP, x)?;
    let (batch, channels, ih, iw) = x.dim();
    check_in_channels(node, OP, x.shape(), channels, in_channels, p.groups)?;
    let groups = p.groups;
    let (cin_g, cout_g) = (in_channels / groups, p.out_channels / groups);
    let (kh_n, kw_n) = (p.kernel_size.h, p.kernel_size.w);
    check_param(node, OP, "weight", weight, &[in_channels, cout_g, kh_n, kw_n])?;
    check_bias(node, OP, p.bias, bias, p.out_channels)?;
    let w = weight.view().into_dimensionality::<Ix4>().map_err(|e| bad(node, OP, e.to_string()))?;
    let [oh_n, ow_n] = conv_transpose2d_output_hw(node, [ih, iw], p)?;
    let mut y = accumulator(node, [batch, p.out_channels, oh_n, ow_n])?;
    // Only the begin side shifts coordinates; the end side (and
    // output_padding) only sets the output size, which bounds the scatter.
    let (s, pad, d) = (p.stride, p.padding.begin(), p.dilation);
    // Output coordinate of input position `i` and tap `k` along one axis, in
    // i128 so no combination of sizes can overflow.
    let out_at = |i: usize, k: usize, s: usize, pad: usize, d: usize| {
        i as i128 * s as i128 + k as i128 * d as i128 - pad as i128
    };
    for n in 0..batch {
        for ci in 0..in_channels {
            let group = ci / cin_g;
            for ih in 0..ih {
                for iw in 0..iw {
                    let v = f64::from(x[[n, ci, ih, iw]]);
                    for oc in 0..cout_g {
                        let co = group * cout_g + oc;
                        for kh in 0..kh_n {
                            let oh = out_at(ih, kh, s.h, pad.h, d.h);
                            if oh < 0 || oh >= oh_n as i128 {
                                continue;
                            }
                            for kw in 0..kw_n {
                                let ow = out_at(iw, kw, s.w, pad.w, d.w);
                                if ow < 0 || ow >= ow_n as i128 {
                                    continue;
                                }
                                y[[n, co, oh as usize, ow as usize]] += v * f64::from(w[[ci, oc, kh, kw]]);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = bias {
        // Every output element, output_padding rows included.
        for n in 0..batch {
            for (co, &bv) in b.iter().enumerate() {
                y.slice_mut(ndarray::s![n, co, .., ..]).mapv_inplace(|v| v + f64::from(bv));
            }
        }
    }
    Ok(finish(y, batched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RuntimeError;
    use crate::tensor::from_vec;
    use kiln_ir::ConvTranspose2dParams as P;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        from_vec(shape, v.to_vec()).unwrap()
    }

    fn run(x: &Tensor, w: &Tensor, b: Option<&Tensor>, cin: usize, p: &P) -> Tensor {
        conv_transpose2d("up", x, w, b, cin, p).unwrap()
    }

    #[test]
    fn stride2_kernel2_tiles_without_overlap() {
        // 1x1x2x2 input, 2x2 kernel, stride 2: each input pixel stamps x*w into its own 2x2 block.
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let w = t(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
        let y = run(&x, &w, None, 1, &P::new(1, 2).stride(2).bias(false));
        #[rustfmt::skip]
        let want = t(&[1, 1, 4, 4], &[
            1., 10., 2., 20.,
            100., 1000., 200., 2000.,
            3., 30., 4., 40.,
            300., 3000., 400., 4000.,
        ]);
        assert_eq!(y, want);
    }

    #[test]
    fn stride1_overlaps_add_and_bias_covers_everything() {
        // Kernel larger than stride (overlapping taps) with a non-zero bias:
        // the case that hid a bias double-count in tract (#2203).
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let b = t(&[1], &[0.5]);
        let y = run(&x, &w, Some(&b), 1, &P::new(1, 2));
        #[rustfmt::skip]
        let want = t(&[1, 1, 3, 3], &[
            1.5, 3.5, 2.5,
            4.5, 10.5, 6.5,
            3.5, 7.5, 4.5,
        ]);
        assert_eq!(y, want);
    }

    #[test]
    fn padding_crops_and_output_padding_extends_with_bias() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let w = t(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
        let b = t(&[1], &[0.25]);
        // padding=1 crops one row/column on each side of the 4x4 result above.
        let y = run(&x, &w, Some(&b), 1, &P::new(1, 2).stride(2).padding(1));
        let want = t(&[1, 1, 2, 2], &[1000.25, 200.25, 30.25, 4.25]);
        assert_eq!(y, want);
        // output_padding=1 adds a row and column at the high end, holding only the bias.
        let y = run(&x, &w, Some(&b), 1, &P::new(1, 2).stride(2).output_padding(1));
        assert_eq!(y.shape(), [1, 1, 5, 5]);
        assert_eq!(y[[0, 0, 4, 4]], 0.25);
        assert_eq!(y[[0, 0, 4, 0]], 0.25);
        assert_eq!(y[[0, 0, 3, 3]], 4000.25);
        // output_size picks the same extension (and ignores output_padding).
        let z = run(&x, &w, Some(&b), 1, &P::new(1, 2).stride(2).output_padding(0).output_size([5, 5]));
        assert_eq!(z, y);
    }

    #[test]
    fn per_side_pads_crop_each_side_and_output_padding_may_pass_the_stride() {
        // The full 4x4 result of the first test, cropped by 1 row at the top
        // and 1 column at the right (ONNX pads [1, 0, 0, 1]).
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let w = t(&[1, 1, 2, 2], &[1., 10., 100., 1000.]);
        let p = P::new(1, 2).stride(2).pads([1, 0], [0, 1]).bias(false);
        #[rustfmt::skip]
        let want = t(&[1, 1, 3, 3], &[
            100., 1000., 200.,
            3., 30., 4.,
            300., 3000., 400.,
        ]);
        assert_eq!(run(&x, &w, None, 1, &p), want);
        // output_padding 2 (≥ stride, allowed with pads) adds two bias-only rows.
        let b = t(&[1], &[0.25]);
        let y = run(&x, &w, Some(&b), 1, &p.clone().bias(true).output_padding((2, 0)));
        assert_eq!(y.shape(), [1, 1, 5, 3]);
        assert_eq!(y[[0, 0, 2, 1]], 3000.25);
        assert_eq!((y[[0, 0, 3, 0]], y[[0, 0, 4, 2]]), (0.25, 0.25));
        assert_eq!(conv_transpose2d_output_hw("up", [2, 2], &p.clone().output_padding((2, 0))).unwrap(), [5, 3]);
        // Symmetric pads give PyTorch's padding exactly.
        let sym = P::new(1, 2).stride(2).pads([1, 1], [1, 1]).bias(false);
        assert_eq!(run(&x, &w, None, 1, &sym), run(&x, &w, None, 1, &P::new(1, 2).stride(2).padding(1).bias(false)));
        let e = conv_transpose2d_output_hw("up", [2, 2], &P::new(1, 2).stride(2).pads([2, 0], [2, 0])).unwrap_err();
        assert!(e.to_string().contains("output size 0x4, which is too small"), "{e}");
    }

    #[test]
    fn dilation_spreads_taps() {
        // 1x1 input, 2x2 kernel, dilation 2: taps land at (0,0), (0,2), (2,0), (2,2).
        let x = t(&[1, 1, 1, 1], &[2.]);
        let w = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = run(&x, &w, None, 1, &P::new(1, 2).dilation(2).bias(false));
        let want = t(&[1, 1, 3, 3], &[2., 0., 4., 0., 0., 0., 6., 0., 8.]);
        assert_eq!(y, want);
    }

    #[test]
    fn groups_keep_channels_apart() {
        // 2 input channels, groups=2, 2 output channels: each output channel sees only its input channel.
        let x = t(&[1, 2, 1, 1], &[1., 2.]);
        let w = t(&[2, 1, 1, 1], &[10., 100.]);
        let y = run(&x, &w, None, 2, &P::new(2, 1).groups(2).bias(false));
        assert_eq!(y, t(&[1, 2, 1, 1], &[10., 200.]));
        // groups=1 with the same data mixes them: weight [2, 2, 1, 1].
        let w1 = t(&[2, 2, 1, 1], &[1., 2., 3., 4.]);
        let y = run(&x, &w1, None, 2, &P::new(2, 1).bias(false));
        assert_eq!(y, t(&[1, 2, 1, 1], &[1. + 6., 2. + 8.]));
    }

    #[test]
    fn depthwise_channel_multiplier() {
        // groups = in_channels = 2, out_channels = 4: input channel g feeds outputs 2g and 2g+1.
        let x = t(&[1, 2, 1, 1], &[1., 2.]);
        let w = t(&[2, 2, 1, 1], &[1., 2., 3., 4.]);
        let b = t(&[4], &[0.5, 0.5, 0.5, 0.5]);
        let y = run(&x, &w, Some(&b), 2, &P::new(4, 1).groups(2));
        assert_eq!(y, t(&[1, 4, 1, 1], &[1.5, 2.5, 6.5, 8.5]));
    }

    #[test]
    fn unbatched_matches_batched() {
        let x = crate::tensor::random(&[3, 4, 5], 1);
        let w = crate::tensor::random(&[3, 2, 3, 2], 2);
        let b = crate::tensor::random(&[2], 3);
        let p = P::new(2, (3, 2)).stride((2, 1)).padding((1, 0)).output_padding((1, 0));
        let y3 = run(&x, &w, Some(&b), 3, &p);
        let y4 = run(&x.clone().insert_axis(ndarray::Axis(0)), &w, Some(&b), 3, &p);
        assert_eq!(y3.shape(), [2, 8, 6]);
        assert_eq!(y3, y4.index_axis(ndarray::Axis(0), 0));
    }

    #[test]
    fn output_size_rules() {
        let p = P::new(2, 3).stride(2).padding(1);
        assert_eq!(conv_transpose2d_output_hw("up", [5, 5], &p).unwrap(), [9, 9]);
        assert_eq!(conv_transpose2d_output_hw("up", [5, 5], &p.clone().output_size([10, 9])).unwrap(), [10, 9]);
        assert_eq!(conv_transpose2d_output_hw("up", [5, 5], &p.clone().output_size([1, 3, 9, 10])).unwrap(), [9, 10]);
        let e = conv_transpose2d_output_hw("up", [5, 5], &p.clone().output_size([12, 12])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: ConvTranspose2d: requested an output size of [12, 12], but valid sizes range from [9, 9] to [10, 10] (for an input of spatial size [5, 5])"
        );
        let e = conv_transpose2d_output_hw("up", [1, 1], &P::new(2, 1).padding(1)).unwrap_err();
        assert!(e.to_string().contains("output size -1x-1, which is too small"), "{e}");
    }

    #[test]
    fn refuses_inconsistent_operands() {
        let x = t(&[1, 2, 2, 2], &[0.; 8]);
        let p = P::new(4, 3).groups(2);
        let w = Tensor::zeros(vec![2, 2, 3, 3]);
        let b = Tensor::zeros(vec![4]);
        let cases: Vec<(Result<Tensor>, &str)> = vec![
            (
                conv_transpose2d("up", &x, &w, Some(&b), 3, &P::new(3, 3)),
                "expects 3 input channels, got input of shape [1, 2, 2, 2]",
            ),
            (
                conv_transpose2d("up", &x, &Tensor::zeros(vec![2, 4, 3, 3]), Some(&b), 2, &p),
                "parameter `up.weight` has shape [2, 4, 3, 3], but ConvTranspose2d expects [2, 2, 3, 3]",
            ),
            (conv_transpose2d("up", &x, &w, Some(&Tensor::zeros(vec![3])), 2, &p), "`up.bias` has shape [3]"),
            (conv_transpose2d("up", &x, &w, None, 2, &p), "needs parameter `up.bias`"),
            (conv_transpose2d("up", &x, &w, Some(&b), 2, &p.clone().bias(false)), "bias=false"),
            (conv_transpose2d("up", &Tensor::zeros(vec![2, 2]), &w, Some(&b), 2, &p), "3-D (unbatched) or 4-D"),
            (conv_transpose2d("up", &x, &w, Some(&b), 2, &p.clone().stride(0)), "`stride` must be positive"),
            (
                conv_transpose2d("up", &x, &w, Some(&b), 2, &P::new(4, 3).groups(3)),
                "out_channels=4 is not divisible by groups=3",
            ),
        ];
        for (r, needle) in cases {
            let e = r.unwrap_err();
            assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
        }
    }

    #[test]
    fn absurd_hyper_parameters_are_errors() {
        let p = P::new(1, usize::MAX).dilation(usize::MAX);
        let e = conv_transpose2d_output_hw("up", [2, 2], &p).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn huge_strides_do_not_overflow_or_abort() {
        let x = t(&[1, 1, 2, 1], &[1., 2.]);
        let w = t(&[1, 1, 1, 1], &[1.]);
        let p = P::new(1, 1).stride((usize::MAX / 2, 1)).bias(false);
        let e = conv_transpose2d("up", &x, &w, None, 1, &p).unwrap_err();
        assert!(matches!(e, RuntimeError::TooLarge { .. }), "{e}");
    }
}
