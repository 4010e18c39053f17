//! Shape functions of the plane-moving ops (pooling, padding, upsampling,
//! pixel shuffle), with PyTorch's rules. Arithmetic in `i128`/`f64` with
//! range checks, as in `shape_fns`.

use kiln_ir::{Pool2dParams, ShuffleDirection, Sides, UpsampleMode, UpsampleParams};

use crate::error::{PassError, Result};
use crate::shape_fns::split_image;

fn with_hw(input: &[usize], hw: [usize; 2]) -> Vec<usize> {
    let mut out = input.to_vec();
    let r = out.len();
    out[r - 2] = hw[0];
    out[r - 1] = hw[1];
    out
}

fn hw(input: &[usize]) -> [usize; 2] {
    [input[input.len() - 2], input[input.len() - 1]]
}

/// `MaxPool2d` / `AvgPool2d`: 3-D or 4-D input, same rank out.
pub fn pool2d(node: &str, op: &'static str, input: &[usize], p: &Pool2dParams) -> Result<Vec<usize>> {
    let (_, _, [h, w]) = split_image(node, op, input)?;
    let out = p.output_hw([h, w]);
    if out[0] < 1 || out[1] < 1 {
        return Err(PassError::OutputTooSmall {
            node: node.into(),
            op,
            input: [h, w],
            computed: out,
            args: format!(
                "kernel_size={} stride={} padding={} dilation={}",
                p.kernel_size, p.stride, p.padding, p.dilation
            ),
        });
    }
    // Both are at most `in + 2p`, which fits.
    Ok(with_hw(input, [out[0] as usize, out[1] as usize]))
}

/// `AdaptiveAvgPool2d`: `None` keeps the input's size on that axis.
pub fn adaptive_avg_pool2d(
    node: &str,
    op: &'static str,
    input: &[usize],
    size: [Option<usize>; 2],
) -> Result<Vec<usize>> {
    let (_, _, [h, w]) = split_image(node, op, input)?;
    if h == 0 || w == 0 {
        return Err(PassError::ShapeMismatch {
            node: node.into(),
            op,
            message: format!("needs non-empty planes, got input of shape {input:?}"),
        });
    }
    Ok(with_hw(input, [size[0].unwrap_or(h), size[1].unwrap_or(w)]))
}

/// `*Pad2d`: adds the sides; reflection needs each pad below its dim.
pub fn pad2d(node: &str, op: &'static str, input: &[usize], pad: Sides, reflect: bool) -> Result<Vec<usize>> {
    let (_, _, [h, w]) = split_image(node, op, input)?;
    if reflect && (pad.top >= h || pad.bottom >= h || pad.left >= w || pad.right >= w) {
        return Err(PassError::ShapeMismatch {
            node: node.into(),
            op,
            message: format!(
                "padding {pad} must be smaller than the input's width and height (reflection does not repeat the edge), got input of shape {input:?}"
            ),
        });
    }
    if h == 0 || w == 0 {
        return Err(PassError::ShapeMismatch {
            node: node.into(),
            op,
            message: format!("needs non-empty planes, got {input:?}"),
        });
    }
    let add = |a: usize, b: usize, c: usize| {
        a.checked_add(b).and_then(|x| x.checked_add(c)).ok_or_else(|| PassError::Overflow {
            node: node.into(),
            what: "padded size",
            detail: format!("{a} + {b} + {c}"),
        })
    };
    Ok(with_hw(input, [add(h, pad.top, pad.bottom)?, add(w, pad.left, pad.right)?]))
}

/// `Upsample`: 4-D input; `size`, or `⌊in · scale⌋` per axis.
pub fn upsample(node: &str, op: &'static str, input: &[usize], p: &UpsampleParams) -> Result<Vec<usize>> {
    if input.len() != 4 {
        let expected = match p.mode {
            UpsampleMode::Bilinear => "a 4-D [N, C, H, W] (bilinear mode needs 4-D input)",
            UpsampleMode::Nearest => "a 4-D [N, C, H, W] (a 2-D size or scale needs 4-D input)",
        };
        return Err(PassError::Rank { node: node.into(), op, expected, shape: input.to_vec() });
    }
    let [h, w] = hw(input);
    let out = p.output_hw([h, w]).ok_or_else(|| PassError::ShapeMismatch {
        node: node.into(),
        op,
        message: format!("{:?} gives an output size below 1 (or over 2^40) for input planes {h}x{w}", p.size),
    })?;
    if h == 0 || w == 0 {
        return Err(PassError::ShapeMismatch {
            node: node.into(),
            op,
            message: format!("needs non-empty planes, got {input:?}"),
        });
    }
    Ok(with_hw(input, out))
}

/// `PixelShuffle(r)`: `[*, C·r², H, W] → [*, C, H·r, W·r]`; `PixelUnshuffle` the inverse.
pub fn pixel_shuffle(
    node: &str,
    op: &'static str,
    input: &[usize],
    r: usize,
    dir: ShuffleDirection,
) -> Result<Vec<usize>> {
    if input.len() < 3 {
        return Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "an at least 3-D [*, C, H, W]",
            shape: input.to_vec(),
        });
    }
    let n = input.len();
    let (c, h, w) = (input[n - 3], input[n - 2], input[n - 1]);
    let overflow =
        || PassError::Overflow { node: node.into(), what: "shuffled size", detail: format!("{input:?} by {r}") };
    let r2 = r.checked_mul(r).ok_or_else(overflow)?;
    let mut out = input.to_vec();
    match dir {
        ShuffleDirection::Shuffle => {
            if c % r2 != 0 {
                return Err(PassError::ShapeMismatch {
                    node: node.into(),
                    op,
                    message: format!(
                        "needs channels divisible by upscale_factor² = {r2}, got {c} (input shape {input:?})"
                    ),
                });
            }
            out[n - 3] = c / r2;
            out[n - 2] = h.checked_mul(r).ok_or_else(overflow)?;
            out[n - 1] = w.checked_mul(r).ok_or_else(overflow)?;
        }
        ShuffleDirection::Unshuffle => {
            if h % r != 0 || w % r != 0 {
                return Err(PassError::ShapeMismatch {
                    node: node.into(),
                    op,
                    message: format!("needs height and width divisible by downscale_factor = {r}, got {h}x{w} (input shape {input:?})"),
                });
            }
            out[n - 3] = c.checked_mul(r2).ok_or_else(overflow)?;
            out[n - 2] = h / r;
            out[n - 1] = w / r;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{pool_axis, UpsampleSize};

    /// Sizes from PyTorch's documented formula, computed by hand.
    #[test]
    fn pooling_sizes_follow_pytorch() {
        assert_eq!(pool_axis(32, 2, 2, 0, 1, false), 16);
        assert_eq!(pool_axis(7, 3, 2, 1, 1, false), 4);
        assert_eq!(pool_axis(6, 3, 2, 0, 1, false), 2);
        assert_eq!(pool_axis(6, 3, 2, 0, 1, true), 3);
        // ceil mode may not start a window in the right padding: 5, k2 s2 p1.
        assert_eq!(pool_axis(5, 2, 2, 1, 1, true), 3);
        assert_eq!(pool_axis(2, 3, 1, 0, 2, false), -2);
        let p = Pool2dParams::new(3);
        assert!(pool2d("p", "MaxPool2d", &[1, 1, 2, 2], &p).is_err());
        assert_eq!(pool2d("p", "MaxPool2d", &[2, 3, 9, 7], &p).unwrap(), [2, 3, 3, 2]);
    }

    #[test]
    fn padding_shuffle_and_upsample_sizes() {
        let pad = Sides { left: 1, right: 2, top: 3, bottom: 0 };
        assert_eq!(pad2d("p", "ZeroPad2d", &[1, 2, 4, 4], pad, false).unwrap(), [1, 2, 7, 7]);
        assert!(pad2d("p", "ReflectionPad2d", &[1, 2, 3, 4], pad, true).is_err());
        assert_eq!(
            pixel_shuffle("s", "PixelShuffle", &[1, 8, 3, 5], 2, ShuffleDirection::Shuffle).unwrap(),
            [1, 2, 6, 10]
        );
        assert!(pixel_shuffle("s", "PixelShuffle", &[1, 6, 3, 5], 2, ShuffleDirection::Shuffle).is_err());
        assert_eq!(
            pixel_shuffle("s", "PixelUnshuffle", &[1, 2, 6, 10], 2, ShuffleDirection::Unshuffle).unwrap(),
            [1, 8, 3, 5]
        );
        let up = UpsampleParams {
            size: UpsampleSize::Scale { h: 1.5, w: 2.0 },
            mode: UpsampleMode::Nearest,
            align_corners: false,
            class: kiln_ir::UpsampleClass::Upsample,
        };
        assert_eq!(upsample("u", "Upsample", &[1, 1, 5, 3], &up).unwrap(), [1, 1, 7, 6]);
        assert!(upsample("u", "Upsample", &[1, 5, 3], &up).is_err());
    }
}
