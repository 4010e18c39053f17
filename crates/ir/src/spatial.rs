//! Hyper-parameters of the ops that move values within image planes:
//! pooling (`nn.MaxPool2d`, `nn.AvgPool2d`, `nn.AdaptiveAvgPool2d`),
//! padding (`nn.ZeroPad2d`, `ConstantPad2d`, `ReflectionPad2d`,
//! `ReplicationPad2d`), resampling (`nn.Upsample` and its two named
//! forms) and `nn.PixelShuffle`/`PixelUnshuffle`.
//!
//! Each params struct validates what PyTorch validates at construction (or
//! at forward from the arguments alone); the shape arithmetic, which needs
//! the input, lives in `kiln-passes`' shape functions.

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};
use crate::op::Pair2;

/// `nn.MaxPool2d` / `nn.AvgPool2d` window arguments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool2dParams {
    /// Window size.
    pub kernel_size: Pair2,
    /// Step (PyTorch's default: `kernel_size`).
    pub stride: Pair2,
    /// Implicit padding on both sides (−inf for max, 0 for average).
    pub padding: Pair2,
    /// Window dilation (max pooling only; 1 for average pooling).
    pub dilation: Pair2,
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl Pool2dParams {
    /// A window of `kernel_size` with PyTorch's defaults (stride = kernel).
    pub fn new(kernel_size: impl Into<Pair2>) -> Self {
        let k = kernel_size.into();
        Self { kernel_size: k, stride: k, padding: Pair2::square(0), dilation: Pair2::square(1), ceil_mode: false }
    }

    /// Output height and width for input planes `in_hw` (PyTorch's
    /// `pooling_output_shape` per axis); values below 1 mean "too small".
    pub fn output_hw(&self, in_hw: [usize; 2]) -> [i128; 2] {
        [
            pool_axis(in_hw[0], self.kernel_size.h, self.stride.h, self.padding.h, self.dilation.h, self.ceil_mode),
            pool_axis(in_hw[1], self.kernel_size.w, self.stride.w, self.padding.w, self.dilation.w, self.ceil_mode),
        ]
    }

    /// Checks positivity and PyTorch's "pad at most half the (effective)
    /// kernel" rule.
    pub fn validate(&self, node: &str, op: &'static str) -> Result<()> {
        for (arg, v) in [("kernel_size", self.kernel_size), ("stride", self.stride), ("dilation", self.dilation)] {
            if v.any_zero() {
                return Err(IrError::NonPositive { node: node.into(), op, arg, value: v.to_string() });
            }
        }
        let half = |k: usize, d: usize| (d.saturating_mul(k - 1).saturating_add(1)) / 2;
        if self.padding.h > half(self.kernel_size.h, self.dilation.h)
            || self.padding.w > half(self.kernel_size.w, self.dilation.w)
        {
            return Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "padding",
                message: format!(
                    "pad should be at most half of effective kernel size, but got padding={}, kernel_size={} and dilation={}",
                    self.padding, self.kernel_size, self.dilation
                ),
            });
        }
        Ok(())
    }
}

/// One axis of PyTorch's `pooling_output_shape`:
/// `⌊(in + 2p − d(k−1) − 1 + (ceil ? s−1 : 0)) / s⌋ + 1`, minus one when ceil
/// mode would start the last window in the right padding. In `i128`, where
/// no `usize` arguments overflow.
pub fn pool_axis(input: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> i128 {
    let (i, k, s, p, d) = (input as i128, k as i128, s.max(1) as i128, p as i128, d as i128);
    let span = i + 2 * p - d * (k - 1) - 1;
    let mut out = (span + if ceil { s - 1 } else { 0 }).div_euclid(s) + 1;
    if ceil && (out - 1) * s >= i + p {
        out -= 1;
    }
    out
}

/// `nn.AvgPool2d`'s divisor arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgDivisor {
    /// Count padded positions in the divisor (default true).
    pub count_include_pad: bool,
    /// Divide by this instead (must be nonzero).
    pub divisor_override: Option<usize>,
}

impl Default for AvgDivisor {
    fn default() -> Self {
        Self { count_include_pad: true, divisor_override: None }
    }
}

/// How `nn.*Pad2d` fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum PadMode {
    /// `nn.ZeroPad2d`.
    Zero,
    /// `nn.ConstantPad2d(padding, value)`.
    Constant {
        /// Fill value.
        value: f32,
    },
    /// `nn.ReflectionPad2d`: mirror without repeating the edge.
    Reflect,
    /// `nn.ReplicationPad2d`: repeat the edge.
    Replicate,
}

impl PadMode {
    /// The `torch.nn` class of this mode.
    pub fn class_name(self) -> &'static str {
        match self {
            PadMode::Zero => "ZeroPad2d",
            PadMode::Constant { .. } => "ConstantPad2d",
            PadMode::Reflect => "ReflectionPad2d",
            PadMode::Replicate => "ReplicationPad2d",
        }
    }
}

/// Per-side padding `(left, right, top, bottom)`, PyTorch's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sides {
    /// Columns added before the first.
    pub left: usize,
    /// Columns added after the last.
    pub right: usize,
    /// Rows added before the first.
    pub top: usize,
    /// Rows added after the last.
    pub bottom: usize,
}

impl Sides {
    /// The same padding on all four sides.
    pub const fn all(p: usize) -> Self {
        Sides { left: p, right: p, top: p, bottom: p }
    }
}

impl std::fmt::Display for Sides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {}, {}, {})", self.left, self.right, self.top, self.bottom)
    }
}

/// `nn.Upsample`'s interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsampleMode {
    /// `mode='nearest'`: `src = floor(dst · in / out)` (or `/ scale`).
    Nearest,
    /// `mode='bilinear'`.
    Bilinear,
}

impl UpsampleMode {
    /// PyTorch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpsampleMode::Nearest => "nearest",
            UpsampleMode::Bilinear => "bilinear",
        }
    }
}

/// Output size of an upsampling: a size, or a scale factor per axis.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UpsampleSize {
    /// `size=(H, W)`.
    Size {
        /// Output height and width.
        size: Pair2,
    },
    /// `scale_factor=(sh, sw)`: output `floor(in · s)`; the interpolation
    /// uses `1/s` as PyTorch does when `recompute_scale_factor` is unset.
    Scale {
        /// Height factor.
        h: f64,
        /// Width factor.
        w: f64,
    },
}

/// `nn.Upsample` (and `UpsamplingNearest2d`, `UpsamplingBilinear2d`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsampleParams {
    /// Output size or scale.
    pub size: UpsampleSize,
    /// Interpolation.
    pub mode: UpsampleMode,
    /// Bilinear only: align the corner pixels' centres.
    pub align_corners: bool,
    /// Which `torch.nn` class wrote it (for the model format and messages).
    pub class: UpsampleClass,
}

/// The three classes that spell an upsampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsampleClass {
    /// `nn.Upsample(size, scale_factor, mode, align_corners)`.
    Upsample,
    /// `nn.UpsamplingNearest2d(size, scale_factor)`.
    Nearest2d,
    /// `nn.UpsamplingBilinear2d(size, scale_factor)`: bilinear, `align_corners=True`.
    Bilinear2d,
}

impl UpsampleClass {
    /// The `torch.nn` class name.
    pub fn class_name(self) -> &'static str {
        match self {
            UpsampleClass::Upsample => "Upsample",
            UpsampleClass::Nearest2d => "UpsamplingNearest2d",
            UpsampleClass::Bilinear2d => "UpsamplingBilinear2d",
        }
    }
}

impl UpsampleParams {
    /// Output height and width for input planes `in_hw`: `size`, or
    /// `⌊in · scale⌋` per axis; `None` when a scaled size is below 1 or
    /// absurdly large (over 2⁴⁰).
    pub fn output_hw(&self, in_hw: [usize; 2]) -> Option<[usize; 2]> {
        match self.size {
            UpsampleSize::Size { size } => Some([size.h, size.w]),
            UpsampleSize::Scale { h, w } => {
                let axis = |i: usize, s: f64| {
                    let v = (i as f64 * s).floor();
                    (v >= 1.0 && v < (1u64 << 40) as f64).then_some(v as usize)
                };
                Some([axis(in_hw[0], h)?, axis(in_hw[1], w)?])
            }
        }
    }

    /// Checks sizes and factors (positive, finite) and that `align_corners`
    /// is only set for bilinear, as PyTorch requires.
    pub fn validate(&self, node: &str) -> Result<()> {
        let op = self.class.class_name();
        match self.size {
            UpsampleSize::Size { size } if size.any_zero() => {
                return Err(IrError::NonPositive { node: node.into(), op, arg: "size", value: size.to_string() })
            }
            UpsampleSize::Scale { h, w } if !(h.is_finite() && w.is_finite() && h > 0.0 && w > 0.0) => {
                return Err(IrError::Unsupported {
                    node: node.into(),
                    op,
                    arg: "scale_factor",
                    message: format!("must be positive and finite, got ({h}, {w})"),
                })
            }
            UpsampleSize::Size { .. } | UpsampleSize::Scale { .. } => {}
        }
        if self.align_corners && self.mode == UpsampleMode::Nearest {
            return Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "align_corners",
                // PyTorch's wording (raised at forward).
                message: "align_corners option can only be set with the interpolating modes: linear | bilinear | bicubic | trilinear".into(),
            });
        }
        Ok(())
    }
}

/// `nn.PixelShuffle(r)` or `nn.PixelUnshuffle(r)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShuffleDirection {
    /// `[N, C·r², H, W] → [N, C, H·r, W·r]`.
    Shuffle,
    /// `[N, C, H·r, W·r] → [N, C·r², H, W]`.
    Unshuffle,
}

/// PyTorch's source pixel of a nearest upsampling (`nearest_idx` in
/// `UpSample.h`): the identity for equal sizes, `dst / 2` for an exact 2x,
/// else `min(⌊dst · scale⌋, in − 1)` with `scale = 1/scale_factor` when a
/// factor was given and `in / out` otherwise, in f32 as PyTorch computes it
/// (the floor makes the precision part of the result).
pub fn nearest_source(dst: usize, in_size: usize, out_size: usize, scale_factor: Option<f64>) -> usize {
    if out_size == in_size {
        dst
    } else if out_size == 2 * in_size {
        dst >> 1
    } else {
        let scale = match scale_factor {
            Some(s) if s > 0.0 => (1.0 / s) as f32,
            _ => in_size as f32 / out_size as f32,
        };
        ((dst as f32 * scale).floor() as usize).min(in_size.saturating_sub(1))
    }
}

/// PyTorch's two source pixels and weights of a linear interpolation
/// (`compute_source_index_and_lambda`): `(i0, i1, w0, w1)` with
/// `out = w0·x[i0] + w1·x[i1]`, in f32 as PyTorch computes them.
pub fn linear_source(
    dst: usize,
    in_size: usize,
    out_size: usize,
    scale_factor: Option<f64>,
    align_corners: bool,
) -> (usize, usize, f32, f32) {
    if out_size == in_size {
        return (dst, dst, 1.0, 0.0);
    }
    let ratio = if align_corners {
        if out_size > 1 {
            (in_size as f32 - 1.0) / (out_size as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        match scale_factor {
            Some(s) if s > 0.0 => (1.0 / s) as f32,
            _ => in_size as f32 / out_size as f32,
        }
    };
    let real = if align_corners { ratio * dst as f32 } else { (ratio * (dst as f32 + 0.5) - 0.5).max(0.0) };
    let i0 = (real as usize).min(in_size.saturating_sub(1));
    let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
    let w1 = (real - i0 as f32).clamp(0.0, 1.0);
    (i0, i1, 1.0 - w1, w1)
}

impl UpsampleSize {
    /// The scale factor PyTorch interpolates with along `axis` (0 = H, 1 = W),
    /// if one was given.
    pub fn factor(self, axis: usize) -> Option<f64> {
        match self {
            UpsampleSize::Size { .. } => None,
            UpsampleSize::Scale { h, w } => Some(if axis == 0 { h } else { w }),
        }
    }
}
