//! Reference pooling, padding, upsampling and pixel shuffle over 3-D or 4-D
//! tensors: obvious loops in the order of PyTorch's definitions, sums in
//! f64. The upsampling index rules come from `kiln_ir` (`nearest_source`,
//! `linear_source`), where they are written once as PyTorch computes them.

use kiln_ir::{
    linear_source, nearest_source, AvgDivisor, PadMode, Pool2dParams, ShuffleDirection, Sides, UpsampleMode,
    UpsampleParams,
};

use super::{accumulator, as_nchw, bad, finish};
use crate::error::Result;
use crate::tensor::Tensor;

fn out_hw(node: &str, op: &'static str, x: &Tensor, want: [usize; 2]) -> Result<[usize; 4]> {
    let s = x.shape();
    let r = s.len();
    if r < 3 {
        return Err(bad(node, op, format!("expects a 3-D or 4-D input, got rank {r}")));
    }
    let n = if r == 4 { s[0] } else { 1 };
    Ok([n, s[r - 3], want[0], want[1]])
}

fn pool_out(node: &str, op: &'static str, x: &Tensor, p: &Pool2dParams) -> Result<[usize; 4]> {
    let s = x.shape();
    let r = s.len();
    if r != 3 && r != 4 {
        return Err(bad(node, op, format!("expects a 3-D or 4-D input, got rank {r}")));
    }
    let [oh, ow] = p.output_hw([s[r - 2], s[r - 1]]);
    if oh < 1 || ow < 1 {
        return Err(bad(node, op, format!("output size {oh}x{ow} is too small for input {s:?} and {p:?}")));
    }
    // Both are at most `in + 2p`, which fits a usize.
    out_hw(node, op, x, [oh as usize, ow as usize])
}

/// `nn.MaxPool2d`: the maximum over each dilated window of the input, padding
/// never chosen; NaN wins, as in PyTorch.
pub fn max_pool2d(node: &str, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
    const OP: &str = "MaxPool2d";
    let shape = pool_out(node, OP, x, p)?;
    let (v, batched) = as_nchw(node, OP, x)?;
    let (h, w) = (v.shape()[2] as i64, v.shape()[3] as i64);
    let mut acc = accumulator(node, shape)?;
    for ((n, c, oh, ow), out) in acc.indexed_iter_mut() {
        let mut m = f64::NEG_INFINITY;
        for kh in 0..p.kernel_size.h {
            let ih = (oh * p.stride.h + kh * p.dilation.h) as i64 - p.padding.h as i64;
            for kw in 0..p.kernel_size.w {
                let iw = (ow * p.stride.w + kw * p.dilation.w) as i64 - p.padding.w as i64;
                if (0..h).contains(&ih) && (0..w).contains(&iw) {
                    let val = f64::from(v[[n, c, ih as usize, iw as usize]]);
                    if val > m || val.is_nan() {
                        m = val;
                    }
                    if m.is_nan() {
                        break;
                    }
                }
            }
        }
        *out = m;
    }
    Ok(finish(acc, batched))
}

/// `nn.AvgPool2d`: sum over the window inside the input, divided by the
/// window clipped to the padded input (`count_include_pad`), by the window
/// inside the input (otherwise), or by `divisor_override`.
pub fn avg_pool2d(node: &str, x: &Tensor, p: &Pool2dParams, divisor: AvgDivisor) -> Result<Tensor> {
    const OP: &str = "AvgPool2d";
    let shape = pool_out(node, OP, x, p)?;
    let (v, batched) = as_nchw(node, OP, x)?;
    let (h, w) = (v.shape()[2] as i64, v.shape()[3] as i64);
    let mut acc = accumulator(node, shape)?;
    for ((n, c, oh, ow), out) in acc.indexed_iter_mut() {
        let h0 = (oh * p.stride.h) as i64 - p.padding.h as i64;
        let w0 = (ow * p.stride.w) as i64 - p.padding.w as i64;
        let h1 = (h0 + p.kernel_size.h as i64).min(h + p.padding.h as i64);
        let w1 = (w0 + p.kernel_size.w as i64).min(w + p.padding.w as i64);
        let padded = (h1 - h0) * (w1 - w0);
        let (h0, w0, h1, w1) = (h0.max(0), w0.max(0), h1.min(h), w1.min(w));
        let mut sum = 0.0f64;
        for ih in h0..h1 {
            for iw in w0..w1 {
                sum += f64::from(v[[n, c, ih as usize, iw as usize]]);
            }
        }
        let count = match divisor.divisor_override {
            Some(d) => d as i64,
            None if divisor.count_include_pad => padded,
            None => (h1 - h0).max(0) * (w1 - w0).max(0),
        };
        *out = sum / count as f64;
    }
    Ok(finish(acc, batched))
}

/// `nn.AdaptiveAvgPool2d`: output cell `o` averages input `⌊o·in/out⌋ ..
/// ⌈(o+1)·in/out⌉` on each axis.
pub fn adaptive_avg_pool2d(node: &str, x: &Tensor, size: [Option<usize>; 2]) -> Result<Tensor> {
    const OP: &str = "AdaptiveAvgPool2d";
    let (v, batched) = as_nchw(node, OP, x)?;
    let (h, w) = (v.shape()[2], v.shape()[3]);
    let (oh_n, ow_n) = (size[0].unwrap_or(h), size[1].unwrap_or(w));
    if h == 0 || w == 0 || oh_n == 0 || ow_n == 0 {
        return Err(bad(node, OP, "needs non-empty input and output planes".into()));
    }
    let mut acc = accumulator(node, [v.shape()[0], v.shape()[1], oh_n, ow_n])?;
    let range = |o: usize, i: usize, n: usize| (o * i / n, ((o + 1) * i).div_ceil(n));
    for ((n, c, oh, ow), out) in acc.indexed_iter_mut() {
        let (h0, h1) = range(oh, h, oh_n);
        let (w0, w1) = range(ow, w, ow_n);
        let mut sum = 0.0f64;
        for ih in h0..h1 {
            for iw in w0..w1 {
                sum += f64::from(v[[n, c, ih, iw]]);
            }
        }
        *out = sum / ((h1 - h0) * (w1 - w0)) as f64;
    }
    Ok(finish(acc, batched))
}

/// `nn.*Pad2d`: output `(oh, ow)` reads input `(oh − top, ow − left)`,
/// mirrored (reflect), clamped (replicate) or replaced by the constant.
pub fn pad2d(node: &str, x: &Tensor, pad: Sides, mode: PadMode) -> Result<Tensor> {
    let op = mode.class_name();
    let (v, batched) = as_nchw(node, op, x)?;
    let (h, w) = (v.shape()[2] as i64, v.shape()[3] as i64);
    if h == 0 || w == 0 {
        return Err(bad(node, op, "needs non-empty planes".into()));
    }
    if mode == PadMode::Reflect
        && (pad.top as i64 >= h || pad.bottom as i64 >= h || pad.left as i64 >= w || pad.right as i64 >= w)
    {
        return Err(bad(node, op, format!("padding {pad} must be smaller than the input planes {h}x{w}")));
    }
    let oh = h as usize + pad.top + pad.bottom;
    let ow = w as usize + pad.left + pad.right;
    let mut acc = accumulator(node, [v.shape()[0], v.shape()[1], oh, ow])?;
    let reflect = |i: i64, n: i64| {
        if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        }
    };
    for ((n, c, y, xo), out) in acc.indexed_iter_mut() {
        let (ih, iw) = (y as i64 - pad.top as i64, xo as i64 - pad.left as i64);
        let src = match mode {
            PadMode::Zero | PadMode::Constant { .. } => {
                ((0..h).contains(&ih) && (0..w).contains(&iw)).then_some((ih, iw))
            }
            PadMode::Reflect => Some((reflect(ih, h), reflect(iw, w))),
            PadMode::Replicate => Some((ih.clamp(0, h - 1), iw.clamp(0, w - 1))),
        };
        *out = match (src, mode) {
            (Some((a, b)), _) => f64::from(v[[n, c, a as usize, b as usize]]),
            (None, PadMode::Constant { value }) => f64::from(value),
            (None, _) => 0.0,
        };
    }
    Ok(finish(acc, batched))
}

/// `nn.Upsample` on `[N, C, H, W]`: to `size`, or `⌊in · scale⌋`.
pub fn upsample(node: &str, x: &Tensor, p: &UpsampleParams) -> Result<Tensor> {
    let op = p.class.class_name();
    if x.ndim() != 4 {
        return Err(bad(node, op, format!("expects a 4-D input, got rank {}", x.ndim())));
    }
    let (v, _) = as_nchw(node, op, x)?;
    let (h, w) = (v.shape()[2], v.shape()[3]);
    let out = p
        .output_hw([h, w])
        .ok_or_else(|| bad(node, op, format!("{:?} gives an output size below 1 for input planes {h}x{w}", p.size)))?;
    if h == 0 || w == 0 || out[0] == 0 || out[1] == 0 {
        return Err(bad(node, op, "needs non-empty input and output planes".into()));
    }
    let mut acc = accumulator(node, [v.shape()[0], v.shape()[1], out[0], out[1]])?;
    let (fh, fw) = (p.size.factor(0), p.size.factor(1));
    for ((n, c, oy, ox), o) in acc.indexed_iter_mut() {
        *o = match p.mode {
            UpsampleMode::Nearest => {
                f64::from(v[[n, c, nearest_source(oy, h, out[0], fh), nearest_source(ox, w, out[1], fw)]])
            }
            UpsampleMode::Bilinear => {
                let (y0, y1, a0, a1) = linear_source(oy, h, out[0], fh, p.align_corners);
                let (x0, x1, b0, b1) = linear_source(ox, w, out[1], fw, p.align_corners);
                let g = |y: usize, x: usize| f64::from(v[[n, c, y, x]]);
                let (a0, a1, b0, b1) = (f64::from(a0), f64::from(a1), f64::from(b0), f64::from(b1));
                a0 * (b0 * g(y0, x0) + b1 * g(y0, x1)) + a1 * (b0 * g(y1, x0) + b1 * g(y1, x1))
            }
        };
    }
    Ok(finish(acc, true))
}

/// `nn.PixelShuffle(r)`: `out[n, c, h·r + i, w·r + j] = in[n, c·r² + i·r + j, h, w]`;
/// `PixelUnshuffle` is the inverse map.
pub fn pixel_shuffle(node: &str, x: &Tensor, r: usize, dir: ShuffleDirection) -> Result<Tensor> {
    let op = match dir {
        ShuffleDirection::Shuffle => "PixelShuffle",
        ShuffleDirection::Unshuffle => "PixelUnshuffle",
    };
    let (v, batched) = as_nchw(node, op, x)?;
    let [n, c, h, w] = [v.shape()[0], v.shape()[1], v.shape()[2], v.shape()[3]];
    let r2 = r.checked_mul(r).filter(|&r2| r2 > 0).ok_or_else(|| bad(node, op, format!("bad factor {r}")))?;
    let shape = match dir {
        ShuffleDirection::Shuffle if c % r2 == 0 => [n, c / r2, h * r, w * r],
        ShuffleDirection::Unshuffle if h % r == 0 && w % r == 0 => [n, c * r2, h / r, w / r],
        _ => return Err(bad(node, op, format!("factor {r} does not divide input [{n}, {c}, {h}, {w}]"))),
    };
    let mut acc = accumulator(node, shape)?;
    for ((b, co, y, xo), o) in acc.indexed_iter_mut() {
        *o = f64::from(match dir {
            ShuffleDirection::Shuffle => v[[b, co * r2 + (y % r) * r + xo % r, y / r, xo / r]],
            ShuffleDirection::Unshuffle => {
                let (ci, rest) = (co / r2, co % r2);
                v[[b, ci, y * r + rest / r, xo * r + rest % r]]
            }
        });
    }
    Ok(finish(acc, batched))
}
