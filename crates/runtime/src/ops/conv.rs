//! `Conv2d`: PyTorch's (cross-correlation) convolution with zero padding,
//! stride, dilation, groups and optional bias, batched or unbatched.

use kiln_ir::Conv2dParams;
use ndarray::Ix4;

use super::{accumulator, as_nchw, bad, check_bias, check_in_channels, check_param, finish};
use crate::error::Result;
use crate::tensor::Tensor;

const OP: &str = "Conv2d";

/// The output height and width, `⌊(in + begin + end − d·(k − 1) − 1) / s⌋ + 1`
/// (`begin = end = padding` for PyTorch's symmetric form), failing when the
/// padded input is smaller than the dilated kernel.
pub fn conv2d_output_hw(node: &str, in_hw: [usize; 2], p: &Conv2dParams) -> Result<[usize; 2]> {
    let dim = |i: usize, k: usize, s: usize, begin: usize, end: usize, d: usize| -> Option<usize> {
        // Checked: d · (k − 1) can overflow even i128 for absurd hyper-parameters.
        let padded = (i as i128).checked_add(begin as i128)?.checked_add(end as i128)?;
        let span = (d as i128).checked_mul(k as i128 - 1)?.checked_add(1)?;
        if padded < span || s == 0 {
            return None;
        }
        usize::try_from((padded - span) / s as i128 + 1).ok()
    };
    let (k, s, d) = (p.kernel_size, p.stride, p.dilation);
    let (b, e) = (p.padding.begin(), p.padding.end());
    match (dim(in_hw[0], k.h, s.h, b.h, e.h, d.h), dim(in_hw[1], k.w, s.w, b.w, e.w, d.w)) {
        (Some(h), Some(w)) => Ok([h, w]),
        _ => Err(bad(
            node,
            OP,
            format!(
                "input of spatial size {}x{} padded by {} is smaller than the kernel {} dilated by {}",
                in_hw[0],
                in_hw[1],
                match p.padding.as_symmetric() {
                    Some(pad) => pad.to_string(),
                    None => format!("{:?} (top, left, bottom, right)", p.padding.to_onnx()),
                },
                k,
                d
            ),
        )),
    }
}

/// `nn.Conv2d(in_channels, **params)(x)` (or ONNX `Conv` with per-side
/// `pads`: the input zero-padded by `begin`/`end`, then a valid convolution)
/// with PyTorch's weight layout
/// `[out_channels, in_channels / groups, kH, kW]` and `bias` of
/// `[out_channels]` (required exactly when `params.bias`).
///
/// ```text
/// y[n, co, oh, ow] = bias[co] + Σ_{cg, kh, kw} x[n, g·C_in/g + cg, oh·sH − pH + kh·dH, ow·sW − pW + kw·dW] · w[co, cg, kh, kw]
/// ```
/// with `g = co / (C_out/g)` and out-of-range input positions reading zero.
pub fn conv2d(
    node: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    in_channels: usize,
    p: &Conv2dParams,
) -> Result<Tensor> {
    p.validate(node, OP)?;
    let (x, batched) = as_nchw(node, OP, x)?;
    let (batch, channels, ih_n, iw_n) = x.dim();
    check_in_channels(node, OP, x.shape(), channels, in_channels, p.groups)?;
    let groups = p.groups;
    let (cin_g, cout_g) = (in_channels / groups, p.out_channels / groups);
    let (kh_n, kw_n) = (p.kernel_size.h, p.kernel_size.w);
    check_param(node, OP, "weight", weight, &[p.out_channels, cin_g, kh_n, kw_n])?;
    check_bias(node, OP, p.bias, bias, p.out_channels)?;
    let w = weight.view().into_dimensionality::<Ix4>().map_err(|e| bad(node, OP, e.to_string()))?;
    let [oh_n, ow_n] = conv2d_output_hw(node, [ih_n, iw_n], p)?;
    let mut y = accumulator(node, [batch, p.out_channels, oh_n, ow_n])?;
    // Only the begin side shifts coordinates; the end side only adds output
    // positions, whose taps past the input read zero like any other.
    let (s, pad, d) = (p.stride, p.padding.begin(), p.dilation);
    // Input coordinate read by output position `o` and tap `k` along one axis.
    let in_at = |o: usize, k: usize, s: usize, pad: usize, d: usize| {
        o as i128 * s as i128 + k as i128 * d as i128 - pad as i128
    };
    for n in 0..batch {
        for co in 0..p.out_channels {
            let group = co / cout_g;
            let b = bias.map_or(0.0, |b| f64::from(b[[co]]));
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut acc = b;
                    for cg in 0..cin_g {
                        let ci = group * cin_g + cg;
                        for kh in 0..kh_n {
                            let ih = in_at(oh, kh, s.h, pad.h, d.h);
                            if ih < 0 || ih >= ih_n as i128 {
                                continue; // zero padding
                            }
                            for kw in 0..kw_n {
                                let iw = in_at(ow, kw, s.w, pad.w, d.w);
                                if iw < 0 || iw >= iw_n as i128 {
                                    continue;
                                }
                                acc += f64::from(x[[n, ci, ih as usize, iw as usize]]) * f64::from(w[[co, cg, kh, kw]]);
                            }
                        }
                    }
                    y[[n, co, oh, ow]] = acc;
                }
            }
        }
    }
    Ok(finish(y, batched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;
    use kiln_ir::Conv2dParams as P;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        from_vec(shape, v.to_vec()).unwrap()
    }

    #[rustfmt::skip]
    fn x3x3() -> Tensor {
        t(&[1, 1, 3, 3], &[
            1., 2., 3.,
            4., 5., 6.,
            7., 8., 9.,
        ])
    }

    #[test]
    fn valid_correlation_is_not_flipped() {
        let w = t(&[1, 1, 2, 2], &[1., 0., 0., 10.]);
        let y = conv2d("c", &x3x3(), &w, None, 1, &P::new(1, 2).bias(false)).unwrap();
        // y[i, j] = x[i, j] + 10 x[i+1, j+1]
        assert_eq!(y, t(&[1, 1, 2, 2], &[51., 62., 84., 95.]));
    }

    #[test]
    fn per_side_pads_pad_each_side() {
        // 2x2 box sums with one zero row below and one zero column to the
        // right (ONNX pads [0, 0, 1, 1], PyTorch's padding='same' for k=2).
        let w = t(&[1, 1, 2, 2], &[1.; 4]);
        let p = P::new(1, 2).pads([0, 0], [1, 1]).bias(false);
        let y = conv2d("c", &x3x3(), &w, None, 1, &p).unwrap();
        assert_eq!(y, t(&[1, 1, 3, 3], &[12., 16., 9., 24., 28., 15., 15., 17., 9.]));
        // Begin side only: the zero row and column come first.
        let p = P::new(1, 2).pads([1, 1], [0, 0]).bias(false);
        let y = conv2d("c", &x3x3(), &w, None, 1, &p).unwrap();
        assert_eq!(y, t(&[1, 1, 3, 3], &[1., 3., 5., 5., 12., 16., 11., 24., 28.]));
        let e = conv2d_output_hw("c", [3, 3], &P::new(1, 5).pads([0, 0], [1, 0])).unwrap_err();
        assert!(e.to_string().contains("padded by [0, 0, 1, 0] (top, left, bottom, right)"), "{e}");
    }

    #[test]
    fn zero_padding_stride_and_bias() {
        let w = t(&[1, 1, 3, 3], &[1.; 9]);
        let b = t(&[1], &[0.5]);
        let y = conv2d("c", &x3x3(), &w, Some(&b), 1, &P::new(1, 3).padding(1)).unwrap();
        // 3x3 box sums with zero padding.
        assert_eq!(y, t(&[1, 1, 3, 3], &[12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5]));
        let y = conv2d("c", &x3x3(), &w, Some(&b), 1, &P::new(1, 3).padding(1).stride(2)).unwrap();
        assert_eq!(y, t(&[1, 1, 2, 2], &[12.5, 16.5, 24.5, 28.5]));
    }

    #[test]
    fn dilation_skips_pixels() {
        let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let y = conv2d("c", &x3x3(), &w, None, 1, &P::new(1, 2).dilation(2).bias(false)).unwrap();
        assert_eq!(y, t(&[1, 1, 1, 1], &[1. + 3. + 7. + 9.]));
    }

    #[test]
    fn groups_and_unbatched() {
        let x = t(&[2, 1, 1], &[1., 2.]);
        let w = t(&[4, 1, 1, 1], &[1., 2., 3., 4.]);
        let y = conv2d("c", &x, &w, None, 2, &P::new(4, 1).groups(2).bias(false)).unwrap();
        assert_eq!(y, t(&[4, 1, 1], &[1., 2., 6., 8.]));
    }

    #[test]
    fn refusals() {
        let w = t(&[1, 1, 3, 3], &[1.; 9]);
        let e = conv2d("c", &t(&[1, 1, 2, 2], &[0.; 4]), &w, None, 1, &P::new(1, 3).bias(false)).unwrap_err();
        assert!(
            e.to_string()
                .contains("input of spatial size 2x2 padded by 0x0 is smaller than the kernel 3x3 dilated by 1x1"),
            "{e}"
        );
        let e = conv2d("c", &x3x3(), &w, None, 1, &P::new(1, 3)).unwrap_err();
        assert!(e.to_string().contains("needs parameter `c.bias`"), "{e}");
        let e = conv2d("c", &x3x3(), &w, None, 1, &P::new(2, 3).bias(false)).unwrap_err();
        assert!(e.to_string().contains("`c.weight` has shape [1, 1, 3, 3], but Conv2d expects [2, 1, 3, 3]"), "{e}");
    }
}
