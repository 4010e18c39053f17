//! Operations and their hyper-parameters.
//!
//! Lazy and concrete variants share one params struct (`LazyConvTranspose2d(p)`
//! and `ConvTranspose2d { in_channels, params: p }`), so the lazy→concrete
//! rewrite moves `params` instead of copying fields. Params are built with
//! PyTorch-like chained setters and validated when a node is added to a graph
//! ([`Op::validate`]), with everything PyTorch checks at construction plus the
//! checks PyTorch defers to forward but that depend on hyper-parameters alone.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};
use crate::pointwise::Pointwise;
use crate::shape::Dim;
use crate::spatial::{AvgDivisor, PadMode, Pool2dParams, ShuffleDirection, Sides, UpsampleParams};

/// A 2-D hyper-parameter (`kernel_size`, `stride`, ...): PyTorch's int-or-pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair2 {
    /// Height component.
    pub h: usize,
    /// Width component.
    pub w: usize,
}

impl Pair2 {
    /// A pair with both components equal, as PyTorch's `_pair(n)`.
    pub const fn square(n: usize) -> Self {
        Pair2 { h: n, w: n }
    }

    /// `[h, w]`.
    pub const fn to_array(self) -> [usize; 2] {
        [self.h, self.w]
    }

    pub(crate) fn any_zero(self) -> bool {
        self.h == 0 || self.w == 0
    }
}

impl From<usize> for Pair2 {
    fn from(n: usize) -> Self {
        Pair2::square(n)
    }
}

impl From<[usize; 2]> for Pair2 {
    fn from([h, w]: [usize; 2]) -> Self {
        Pair2 { h, w }
    }
}

impl From<(usize, usize)> for Pair2 {
    fn from((h, w): (usize, usize)) -> Self {
        Pair2 { h, w }
    }
}

/// Prints `3x3`.
impl fmt::Display for Pair2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.h, self.w)
    }
}

/// PyTorch's `padding_mode`. Transposed convolutions accept only `Zeros`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// Implicit zero padding (the only mode Kiln computes).
    #[default]
    Zeros,
    /// Reflection padding.
    Reflect,
    /// Edge replication.
    Replicate,
    /// Wrap-around padding.
    Circular,
}

impl PaddingMode {
    /// PyTorch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PaddingMode::Zeros => "zeros",
            PaddingMode::Reflect => "reflect",
            PaddingMode::Replicate => "replicate",
            PaddingMode::Circular => "circular",
        }
    }

    /// Parses PyTorch's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "zeros" => PaddingMode::Zeros,
            "reflect" => PaddingMode::Reflect,
            "replicate" => PaddingMode::Replicate,
            "circular" => PaddingMode::Circular,
            _ => return None,
        })
    }
}

/// Zero padding of a convolution: PyTorch's symmetric `padding`, or explicit
/// per-side pads (ONNX's `pads`, a Kiln extension beyond PyTorch).
///
/// A `Conv2d` adds it to its input; a `ConvTranspose2d` removes it from its
/// full output. Both forms are kept apart (instead of one `begin`/`end`
/// pair) because they obey different rules: with `Symmetric`, a transposed
/// convolution's `output_padding` must be below `max(stride, dilation)` and
/// `output_size` may pick it (PyTorch); with `PerSide`, any `output_padding`
/// is allowed and `output_size` is refused (ONNX). Consumers that only
/// compute read [`ConvPadding::begin`] and [`ConvPadding::end`].
///
/// In graph JSON `Symmetric` is a plain [`Pair2`] (`{"h": 1, "w": 1}`, the
/// form from before per-side pads existed, so old files read unchanged) and
/// `PerSide` is `{"begin": {"h": .., "w": ..}, "end": {"h": .., "w": ..}}`.
///
/// ```
/// use kiln_ir::{ConvPadding, Pair2};
/// let p = ConvPadding::PerSide { begin: Pair2 { h: 0, w: 1 }, end: Pair2 { h: 2, w: 1 } };
/// assert_eq!(p.to_onnx(), [0, 1, 2, 1]);
/// assert_eq!(p.as_symmetric(), None);
/// assert_eq!(ConvPadding::Symmetric(Pair2::square(1)).end(), Pair2::square(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConvPadding {
    /// PyTorch's `padding`: the same amount on both sides of each axis.
    Symmetric(Pair2),
    /// Explicit per-side padding.
    PerSide {
        /// Padding at the start of each axis: `[top, left]` as `{h: top, w: left}`.
        begin: Pair2,
        /// Padding at the end of each axis: `[bottom, right]` as `{h: bottom, w: right}`.
        end: Pair2,
    },
}

impl Default for ConvPadding {
    /// No padding (PyTorch's default `padding=0`).
    fn default() -> Self {
        ConvPadding::Symmetric(Pair2::square(0))
    }
}

impl ConvPadding {
    /// Padding at the start of each axis (`{h: top, w: left}`).
    pub const fn begin(self) -> Pair2 {
        match self {
            ConvPadding::Symmetric(p) => p,
            ConvPadding::PerSide { begin, .. } => begin,
        }
    }

    /// Padding at the end of each axis (`{h: bottom, w: right}`).
    pub const fn end(self) -> Pair2 {
        match self {
            ConvPadding::Symmetric(p) => p,
            ConvPadding::PerSide { end, .. } => end,
        }
    }

    /// The per-axis amount when both sides of each axis are equal, whichever
    /// form holds it.
    pub fn as_symmetric(self) -> Option<Pair2> {
        (self.begin() == self.end()).then_some(self.begin())
    }

    /// `[top, left, bottom, right]`, ONNX's `pads` order.
    pub const fn to_onnx(self) -> [usize; 4] {
        let (b, e) = (self.begin(), self.end());
        [b.h, b.w, e.h, e.w]
    }

    /// Per-side padding from ONNX's `[top, left, bottom, right]`.
    pub const fn from_onnx([top, left, bottom, right]: [usize; 4]) -> Self {
        ConvPadding::PerSide { begin: Pair2 { h: top, w: left }, end: Pair2 { h: bottom, w: right } }
    }

    /// The padding as given, for messages and the text IR: `padding=1x1`
    /// for the symmetric form, `pads=[top, left, bottom, right]` for the
    /// per-side one (even when its sides are equal: a transposed
    /// convolution's per-side form allows an `output_padding` PyTorch's does
    /// not).
    pub fn attr(self) -> String {
        match self {
            ConvPadding::Symmetric(p) => format!("padding={p}"),
            ConvPadding::PerSide { .. } => format!("pads={:?}", self.to_onnx()),
        }
    }
}

impl From<Pair2> for ConvPadding {
    fn from(p: Pair2) -> Self {
        ConvPadding::Symmetric(p)
    }
}

/// The PyTorch-style chained setters both convolution params structs share.
macro_rules! conv_setters {
    () => {
        /// Sets `stride`.
        pub fn stride(mut self, v: impl Into<Pair2>) -> Self {
            self.stride = v.into();
            self
        }
        /// Sets PyTorch's symmetric `padding` (replacing any per-side `pads`).
        pub fn padding(mut self, v: impl Into<Pair2>) -> Self {
            self.padding = ConvPadding::Symmetric(v.into());
            self
        }
        /// Sets `dilation`.
        pub fn dilation(mut self, v: impl Into<Pair2>) -> Self {
            self.dilation = v.into();
            self
        }
        /// Sets `groups`.
        pub fn groups(mut self, g: usize) -> Self {
            self.groups = g;
            self
        }
        /// Sets `bias`.
        pub fn bias(mut self, b: bool) -> Self {
            self.bias = b;
            self
        }
        /// Sets `padding_mode`.
        pub fn padding_mode(mut self, m: PaddingMode) -> Self {
            self.padding_mode = m;
            self
        }
    };
}

/// Hyper-parameters of `(Lazy)ConvTranspose2d`, with PyTorch's defaults.
///
/// ```
/// use kiln_ir::ConvTranspose2dParams;
/// let p = ConvTranspose2dParams::new(24, 3).stride(2).padding(1).output_padding(1).bias(false);
/// assert_eq!(p.stride.h, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvTranspose2dParams {
    /// Output channels (`C_out`).
    pub out_channels: usize,
    /// `kernel_size`.
    pub kernel_size: Pair2,
    /// `stride` (default 1).
    pub stride: Pair2,
    /// Zero padding removed from the sides of the full output (default 0):
    /// PyTorch's symmetric `padding`, or explicit per-side pads.
    pub padding: ConvPadding,
    /// Extra size added at the end side of each axis (default 0). Below
    /// `max(stride, dilation)` with symmetric padding (PyTorch); any value
    /// with per-side pads (ONNX).
    pub output_padding: Pair2,
    /// `groups` (default 1).
    pub groups: usize,
    /// Whether the layer has a bias (default true).
    pub bias: bool,
    /// `dilation` (default 1).
    pub dilation: Pair2,
    /// `padding_mode` (only `zeros` is valid).
    pub padding_mode: PaddingMode,
    /// `output_size` passed to `forward`: 2 values `(H, W)` or the full 3/4-value
    /// shape (leading values ignored, as PyTorch does). Overrides `output_padding`;
    /// only valid with symmetric padding.
    pub output_size: Option<Vec<usize>>,
}

impl ConvTranspose2dParams {
    /// `ConvTranspose2d(_, out_channels, kernel_size)` with defaults for the rest.
    pub fn new(out_channels: usize, kernel_size: impl Into<Pair2>) -> Self {
        ConvTranspose2dParams {
            out_channels,
            kernel_size: kernel_size.into(),
            stride: Pair2::square(1),
            padding: ConvPadding::default(),
            output_padding: Pair2::square(0),
            groups: 1,
            bias: true,
            dilation: Pair2::square(1),
            padding_mode: PaddingMode::Zeros,
            output_size: None,
        }
    }
    conv_setters!();
    /// Sets explicit per-side padding removed from the full output, ONNX's
    /// `pads`: `begin = [top, left]`, `end = [bottom, right]`. Replaces the
    /// symmetric `padding`. `output_padding` is still added at the end side
    /// and may then take any value; each output dim is
    /// `stride·(in−1) + dilation·(k−1) + 1 − begin − end + output_padding`.
    /// Combining it with `output_size` is a validation error.
    ///
    /// ```
    /// use kiln_ir::ConvTranspose2dParams;
    /// let p = ConvTranspose2dParams::new(8, 3).stride(2).pads([0, 0], [1, 1]);
    /// assert_eq!(p.padding.to_onnx(), [0, 0, 1, 1]);
    /// ```
    pub fn pads(mut self, begin: [usize; 2], end: [usize; 2]) -> Self {
        self.padding = ConvPadding::PerSide { begin: begin.into(), end: end.into() };
        self
    }
    /// Sets `output_padding`.
    pub fn output_padding(mut self, v: impl Into<Pair2>) -> Self {
        self.output_padding = v.into();
        self
    }

    /// The PyTorch `(padding, output_padding)` giving the same result, if
    /// there is one: always for symmetric padding (as given, even when
    /// invalid, so it can be reported); for per-side pads when
    /// `padding = begin` and `output_padding = begin − end + output_padding`
    /// is within `0..max(stride, dilation)` on both axes. The text IR and the
    /// model JSON writer print this form wherever it exists.
    pub fn pytorch_padding(&self) -> Option<(Pair2, Pair2)> {
        let ConvPadding::PerSide { begin, end } = self.padding else {
            return Some((self.padding.begin(), self.output_padding));
        };
        let axis = |b: usize, e: usize, op: usize, s: usize, d: usize| {
            b.checked_add(op).and_then(|x| x.checked_sub(e)).filter(|&op| op < s.max(d))
        };
        let (op, s, d) = (self.output_padding, self.stride, self.dilation);
        let h = axis(begin.h, end.h, op.h, s.h, d.h)?;
        let w = axis(begin.w, end.w, op.w, s.w, d.w)?;
        Some((begin, Pair2 { h, w }))
    }
    /// Sets the `output_size` given to `forward` (2, 3 or 4 values).
    pub fn output_size(mut self, size: impl Into<Vec<usize>>) -> Self {
        self.output_size = Some(size.into());
        self
    }

    /// Checks everything that depends on the hyper-parameters alone, in
    /// PyTorch's order (padding mode first), naming `node` in the error.
    pub fn validate(&self, node: &str, op: &'static str) -> Result<()> {
        if self.padding_mode != PaddingMode::Zeros {
            return Err(IrError::UnsupportedPaddingMode {
                node: node.into(),
                op,
                mode: self.padding_mode.as_str().into(),
            });
        }
        check_groups(node, op, self.groups, "out_channels", self.out_channels)?;
        check_positive(node, op, "kernel_size", self.kernel_size)?;
        check_positive(node, op, "stride", self.stride)?;
        check_positive(node, op, "dilation", self.dilation)?;
        match (self.padding, &self.output_size) {
            (ConvPadding::PerSide { .. }, Some(size)) => {
                return Err(IrError::PadsWithOutputSize {
                    node: node.into(),
                    op,
                    pads: format!("{:?}", self.padding.to_onnx()),
                    output_size: size.clone(),
                });
            }
            // ONNX sets no bound on output_padding next to explicit pads; the
            // output size (checked by shape inference) is what must be sane.
            (ConvPadding::PerSide { .. }, None) => {}
            (ConvPadding::Symmetric(_), Some(size)) => {
                if !(2..=4).contains(&size.len()) || size.contains(&0) {
                    return Err(IrError::InvalidOutputSize { node: node.into(), value: size.clone() });
                }
            }
            (ConvPadding::Symmetric(_), None) => {
                // PyTorch ignores output_padding when output_size is given, so only
                // check it when it is the one that counts.
                let (op_, s, d) = (self.output_padding, self.stride, self.dilation);
                if (op_.h >= s.h && op_.h >= d.h) || (op_.w >= s.w && op_.w >= d.w) {
                    return Err(IrError::OutputPaddingTooLarge {
                        node: node.into(),
                        op,
                        output_padding: op_.to_string(),
                        stride: s.to_string(),
                        dilation: d.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// PyTorch's weight shape `[in_channels, out_channels / groups, kH, kW]`.
    pub fn weight_shape(&self, in_channels: Dim) -> Vec<Dim> {
        vec![
            in_channels,
            Dim::Known(self.out_channels / self.groups.max(1)),
            Dim::Known(self.kernel_size.h),
            Dim::Known(self.kernel_size.w),
        ]
    }
}

/// Hyper-parameters of `(Lazy)Conv2d`, with PyTorch's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conv2dParams {
    /// Output channels.
    pub out_channels: usize,
    /// `kernel_size`.
    pub kernel_size: Pair2,
    /// `stride` (default 1).
    pub stride: Pair2,
    /// Zero padding added to the input (default 0): PyTorch's symmetric
    /// `padding`, or explicit per-side pads.
    pub padding: ConvPadding,
    /// `dilation` (default 1).
    pub dilation: Pair2,
    /// `groups` (default 1).
    pub groups: usize,
    /// Whether the layer has a bias (default true).
    pub bias: bool,
    /// `padding_mode`; Kiln computes only `zeros`.
    pub padding_mode: PaddingMode,
}

impl Conv2dParams {
    /// `Conv2d(_, out_channels, kernel_size)` with defaults for the rest.
    pub fn new(out_channels: usize, kernel_size: impl Into<Pair2>) -> Self {
        Conv2dParams {
            out_channels,
            kernel_size: kernel_size.into(),
            stride: Pair2::square(1),
            padding: ConvPadding::default(),
            dilation: Pair2::square(1),
            groups: 1,
            bias: true,
            padding_mode: PaddingMode::Zeros,
        }
    }
    conv_setters!();
    /// Sets explicit per-side zero padding of the input, ONNX's `pads`:
    /// `begin = [top, left]`, `end = [bottom, right]`. Replaces the symmetric
    /// `padding`; each output dim is
    /// `⌊(in + begin + end − dilation·(k−1) − 1) / stride⌋ + 1`.
    ///
    /// ```
    /// use kiln_ir::Conv2dParams;
    /// let p = Conv2dParams::new(8, 2).pads([0, 0], [1, 1]);
    /// assert_eq!(p.padding.to_onnx(), [0, 0, 1, 1]);
    /// ```
    pub fn pads(mut self, begin: [usize; 2], end: [usize; 2]) -> Self {
        self.padding = ConvPadding::PerSide { begin: begin.into(), end: end.into() };
        self
    }

    /// Checks everything that depends on the hyper-parameters alone.
    pub fn validate(&self, node: &str, op: &'static str) -> Result<()> {
        if self.padding_mode != PaddingMode::Zeros {
            return Err(IrError::UnsupportedPaddingMode {
                node: node.into(),
                op,
                mode: self.padding_mode.as_str().into(),
            });
        }
        check_groups(node, op, self.groups, "out_channels", self.out_channels)?;
        check_positive(node, op, "kernel_size", self.kernel_size)?;
        check_positive(node, op, "stride", self.stride)?;
        check_positive(node, op, "dilation", self.dilation)
    }

    /// PyTorch's weight shape `[out_channels, in_channels / groups, kH, kW]`.
    pub fn weight_shape(&self, in_channels: Dim) -> Vec<Dim> {
        let per_group = match in_channels {
            Dim::Known(c) => Dim::Known(c / self.groups.max(1)),
            Dim::Unknown => Dim::Unknown,
        };
        vec![Dim::Known(self.out_channels), per_group, Dim::Known(self.kernel_size.h), Dim::Known(self.kernel_size.w)]
    }
}

/// Hyper-parameters of `(Lazy)Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinearParams {
    /// Output features.
    pub out_features: usize,
    /// Whether there is a learnable bias (default true).
    pub bias: bool,
}

impl LinearParams {
    /// `out_features` with a bias, as PyTorch's default.
    pub fn new(out_features: usize) -> Self {
        Self { out_features, bias: true }
    }

    /// Weight `[out_features, in_features]`, PyTorch's layout.
    pub fn weight_shape(&self, in_features: Dim) -> Vec<Dim> {
        vec![Dim::Known(self.out_features), in_features]
    }
}

/// Hyper-parameters of `(Lazy)InstanceNorm2d` (eval mode).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceNormParams {
    /// Added to the variance (default 1e-5).
    pub eps: f32,
    /// Kept for fidelity; unused in eval mode.
    pub momentum: f32,
    /// Learnable per-channel `weight` and `bias` (default false).
    pub affine: bool,
    /// With running statistics, eval mode normalizes with them (default false:
    /// each instance's own mean and variance).
    pub track_running_stats: bool,
}

impl Default for InstanceNormParams {
    fn default() -> Self {
        Self { eps: 1e-5, momentum: 0.1, affine: false, track_running_stats: false }
    }
}

impl InstanceNormParams {
    fn validate(&self, node: &str, op: &'static str) -> Result<()> {
        BatchNorm2dParams { eps: self.eps, momentum: self.momentum, affine: self.affine }.validate(node, op)
    }
}

/// Hyper-parameters of `(Lazy)BatchNorm2d` (evaluated in eval mode).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm2dParams {
    /// Added to the variance (default 1e-5).
    pub eps: f32,
    /// Kept for fidelity with PyTorch's constructor; unused in eval mode.
    pub momentum: f32,
    /// Whether there are learnable `weight` and `bias` (default true).
    pub affine: bool,
}

impl Default for BatchNorm2dParams {
    fn default() -> Self {
        BatchNorm2dParams { eps: 1e-5, momentum: 0.1, affine: true }
    }
}

impl BatchNorm2dParams {
    /// Sets `eps`.
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    /// Sets `affine`.
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }

    /// `eps` must be a positive finite number and `momentum` finite (it is
    /// unused in eval mode, but a non-finite value has no JSON form).
    pub fn validate(&self, node: &str, op: &'static str) -> Result<()> {
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(IrError::NonPositive { node: node.into(), op, arg: "eps", value: self.eps.to_string() });
        }
        if !self.momentum.is_finite() {
            return Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "momentum",
                message: format!("must be finite, got {}", self.momentum),
            });
        }
        Ok(())
    }
}

/// One IR operation. Hyper-parameters only; weights live on the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A graph input; its shape is the node's result shape.
    Input,
    /// `nn.LazyConvTranspose2d`: `in_channels` not known yet.
    LazyConvTranspose2d {
        /// Hyper-parameters.
        params: ConvTranspose2dParams,
    },
    /// `nn.ConvTranspose2d` with known `in_channels`.
    ConvTranspose2d {
        /// Input channels.
        in_channels: usize,
        /// Hyper-parameters.
        params: ConvTranspose2dParams,
    },
    /// `nn.LazyConv2d`.
    LazyConv2d {
        /// Hyper-parameters.
        params: Conv2dParams,
    },
    /// `nn.Conv2d`.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Hyper-parameters.
        params: Conv2dParams,
    },
    /// `nn.LazyBatchNorm2d` (eval mode).
    LazyBatchNorm2d {
        /// Hyper-parameters.
        params: BatchNorm2dParams,
    },
    /// `nn.BatchNorm2d` (eval mode).
    BatchNorm2d {
        /// Channels.
        num_features: usize,
        /// Hyper-parameters.
        params: BatchNorm2dParams,
    },
    /// `nn.ReLU`.
    Relu,
    /// `nn.LeakyReLU(negative_slope)`.
    LeakyRelu {
        /// Slope for negative inputs (default 0.01).
        negative_slope: f32,
    },
    /// `nn.Tanh`.
    Tanh,
    /// `nn.Sigmoid`.
    Sigmoid,
    /// A pointwise activation (`nn.ELU`, `nn.GELU`, ...; see [`Pointwise`]).
    Pointwise {
        /// The function and its hyper-parameters.
        f: Pointwise,
    },
    /// `nn.PReLU(num_parameters, init)`: `x` if `x ≥ 0`, else `weight[c]·x`,
    /// with one weight per channel (dim 1) or a single one for all.
    PRelu {
        /// 1, or the number of channels.
        num_parameters: usize,
        /// Initial value of every weight (seeded init; a state dict overrides it).
        init: f32,
    },
    /// `nn.MaxPool2d` (`return_indices=True` is refused by the model reader).
    MaxPool2d {
        /// Window.
        params: Pool2dParams,
    },
    /// `nn.AvgPool2d` (dilation is always 1).
    AvgPool2d {
        /// Window.
        params: Pool2dParams,
        /// `count_include_pad`, `divisor_override`.
        divisor: AvgDivisor,
    },
    /// `nn.AdaptiveAvgPool2d(output_size)`; `None` keeps that input dim.
    AdaptiveAvgPool2d {
        /// Output height and width.
        output_size: [Option<usize>; 2],
    },
    /// `nn.ZeroPad2d`, `ConstantPad2d`, `ReflectionPad2d`, `ReplicationPad2d`.
    Pad2d {
        /// `(left, right, top, bottom)`.
        padding: Sides,
        /// Border fill (and so the class).
        mode: PadMode,
    },
    /// `nn.Upsample`, `nn.UpsamplingNearest2d`, `nn.UpsamplingBilinear2d`.
    Upsample {
        /// Size or scale, mode, corners.
        params: UpsampleParams,
    },
    /// `nn.PixelShuffle(r)` / `nn.PixelUnshuffle(r)`.
    PixelShuffle {
        /// `upscale_factor` / `downscale_factor`.
        factor: usize,
        /// Which of the two.
        direction: ShuffleDirection,
    },
    /// `nn.Identity`.
    Identity,
    /// `nn.Dropout(p)`: the identity in eval mode.
    Dropout {
        /// Drop probability (training only).
        p: f32,
    },
    /// `nn.Dropout2d(p)`: the identity in eval mode.
    Dropout2d {
        /// Drop probability (training only).
        p: f32,
    },
    /// `nn.LazyLinear`: `in_features` (the last input dim) not known yet.
    LazyLinear {
        /// Hyper-parameters.
        params: LinearParams,
    },
    /// `nn.Linear`: `y = x·Wᵀ + b` over the last dim.
    Linear {
        /// Input features (the last input dim).
        in_features: usize,
        /// Hyper-parameters.
        params: LinearParams,
    },
    /// `nn.LazyBatchNorm1d` on `[N, C]` or `[N, C, L]` (eval mode).
    LazyBatchNorm1d {
        /// Hyper-parameters.
        params: BatchNorm2dParams,
    },
    /// `nn.BatchNorm1d` on `[N, C]` or `[N, C, L]` (eval mode).
    BatchNorm1d {
        /// Channels (dim 1).
        num_features: usize,
        /// Hyper-parameters.
        params: BatchNorm2dParams,
    },
    /// `nn.LazyInstanceNorm2d` (eval mode).
    LazyInstanceNorm2d {
        /// Hyper-parameters.
        params: InstanceNormParams,
    },
    /// `nn.InstanceNorm2d` (eval mode).
    InstanceNorm2d {
        /// Channels (only checked against the input with `affine` or running stats, as in PyTorch).
        num_features: usize,
        /// Hyper-parameters.
        params: InstanceNormParams,
    },
    /// `nn.GroupNorm(num_groups, num_channels, eps, affine)`.
    GroupNorm {
        /// Groups of consecutive channels normalized together.
        num_groups: usize,
        /// Channels (dim 1).
        num_channels: usize,
        /// Added to the variance (default 1e-5).
        eps: f32,
        /// Learnable per-channel `weight` and `bias` (default true).
        affine: bool,
    },
    /// `nn.Flatten(start_dim, end_dim)`.
    Flatten {
        /// First dim merged (default 1; negative counts from the end).
        start_dim: i64,
        /// Last dim merged (default −1).
        end_dim: i64,
    },
    /// `nn.Unflatten(dim, unflattened_size)`.
    Unflatten {
        /// The dim split (negative counts from the end).
        dim: i64,
        /// Its new sizes (one may be −1).
        sizes: Vec<i64>,
    },
    /// `torch.reshape(x, shape)` / `x.view(shape)` (one −1 allowed).
    Reshape {
        /// The target shape.
        shape: Vec<i64>,
    },
    /// `a + b` with PyTorch broadcasting.
    Add,
    /// `a − b` with PyTorch broadcasting.
    Sub,
    /// `a · b` with PyTorch broadcasting (per-channel `[1, C, 1, 1]` scales).
    Mul,
    /// `x op other` for a constant `other` (`{"op": "Mul", "args": {"other": 0.1}}`).
    Scalar {
        /// The operation (`Add`, `Sub` or `Mul`).
        op: ArithOp,
        /// The constant right operand.
        other: f32,
    },
    /// `torch.cat(xs, dim=1)`: concatenation along channels.
    Concat,
    /// `torch.cat(xs, dim)` along any other dim (negative counts from the end).
    Cat {
        /// The dim joined.
        dim: i64,
    },
    /// `torch.narrow(x, dim, start, length)`: a crop along one dim.
    Narrow {
        /// The dim cropped (negative counts from the end).
        dim: i64,
        /// First index kept.
        start: usize,
        /// Number of indices kept (≥ 1).
        length: usize,
    },
    /// Marks its single operand as a graph output.
    Output,
}

/// The arithmetic of [`Op::Scalar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArithOp {
    /// `x + other`.
    Add,
    /// `x − other`.
    Sub,
    /// `x · other`.
    Mul,
}

impl ArithOp {
    /// The class name of the model format (`Add`, `Sub`, `Mul`).
    pub fn class_name(self) -> &'static str {
        match self {
            ArithOp::Add => "Add",
            ArithOp::Sub => "Sub",
            ArithOp::Mul => "Mul",
        }
    }

    /// `a op b` in f32, as PyTorch computes it.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
        }
    }
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
}

impl Arity {
    fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Arity::Exactly(0) => "0",
            Arity::Exactly(1) => "1",
            Arity::Exactly(2) => "2",
            Arity::Exactly(_) | Arity::AtLeast(_) => "at least 1",
        }
    }
}

impl Op {
    /// Shorthand for a lazy transposed convolution.
    pub fn lazy_conv_transpose2d(params: ConvTranspose2dParams) -> Op {
        Op::LazyConvTranspose2d { params }
    }
    /// Shorthand for a lazy convolution.
    pub fn lazy_conv2d(params: Conv2dParams) -> Op {
        Op::LazyConv2d { params }
    }
    /// Shorthand for a lazy batch norm with default hyper-parameters.
    pub fn lazy_batch_norm2d() -> Op {
        Op::LazyBatchNorm2d { params: BatchNorm2dParams::default() }
    }

    /// PyTorch's class name (`LazyConvTranspose2d`), used in messages and in
    /// the JSON model format.
    pub fn class_name(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::LazyConvTranspose2d { .. } => "LazyConvTranspose2d",
            Op::ConvTranspose2d { .. } => "ConvTranspose2d",
            Op::LazyConv2d { .. } => "LazyConv2d",
            Op::Conv2d { .. } => "Conv2d",
            Op::LazyBatchNorm2d { .. } => "LazyBatchNorm2d",
            Op::BatchNorm2d { .. } => "BatchNorm2d",
            Op::Relu => "ReLU",
            Op::LeakyRelu { .. } => "LeakyReLU",
            Op::Tanh => "Tanh",
            Op::Sigmoid => "Sigmoid",
            Op::Pointwise { f } => f.class_name(),
            Op::PRelu { .. } => "PReLU",
            Op::LazyLinear { .. } => "LazyLinear",
            Op::Linear { .. } => "Linear",
            Op::LazyBatchNorm1d { .. } => "LazyBatchNorm1d",
            Op::LazyInstanceNorm2d { .. } => "LazyInstanceNorm2d",
            Op::InstanceNorm2d { .. } => "InstanceNorm2d",
            Op::GroupNorm { .. } => "GroupNorm",
            Op::BatchNorm1d { .. } => "BatchNorm1d",
            Op::Flatten { .. } => "Flatten",
            Op::Unflatten { .. } => "Unflatten",
            Op::Reshape { .. } => "Reshape",
            Op::MaxPool2d { .. } => "MaxPool2d",
            Op::AvgPool2d { .. } => "AvgPool2d",
            Op::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            Op::Pad2d { mode, .. } => mode.class_name(),
            Op::Upsample { params } => params.class.class_name(),
            Op::PixelShuffle { direction: ShuffleDirection::Shuffle, .. } => "PixelShuffle",
            Op::PixelShuffle { direction: ShuffleDirection::Unshuffle, .. } => "PixelUnshuffle",
            Op::Identity => "Identity",
            Op::Dropout { .. } => "Dropout",
            Op::Dropout2d { .. } => "Dropout2d",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Scalar { op, .. } => op.class_name(),
            Op::Concat | Op::Cat { .. } => "Concat",
            Op::Narrow { .. } => "Narrow",
            Op::Output => "Output",
        }
    }

    /// The text-form mnemonic (`conv_transpose2d`).
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::LazyConvTranspose2d { .. } => "lazy_conv_transpose2d",
            Op::ConvTranspose2d { .. } => "conv_transpose2d",
            Op::LazyConv2d { .. } => "lazy_conv2d",
            Op::Conv2d { .. } => "conv2d",
            Op::LazyBatchNorm2d { .. } => "lazy_batch_norm2d",
            Op::BatchNorm2d { .. } => "batch_norm2d",
            Op::Relu => "relu",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Tanh => "tanh",
            Op::Sigmoid => "sigmoid",
            Op::Pointwise { f } => f.mnemonic(),
            Op::PRelu { .. } => "prelu",
            Op::LazyLinear { .. } => "lazy_linear",
            Op::Linear { .. } => "linear",
            Op::LazyBatchNorm1d { .. } => "lazy_batch_norm1d",
            Op::LazyInstanceNorm2d { .. } => "lazy_instance_norm2d",
            Op::InstanceNorm2d { .. } => "instance_norm2d",
            Op::GroupNorm { .. } => "group_norm",
            Op::BatchNorm1d { .. } => "batch_norm1d",
            Op::Flatten { .. } => "flatten",
            Op::Unflatten { .. } => "unflatten",
            Op::Reshape { .. } => "reshape",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            Op::Pad2d { .. } => "pad2d",
            Op::Upsample { .. } => "upsample",
            Op::PixelShuffle { direction: ShuffleDirection::Shuffle, .. } => "pixel_shuffle",
            Op::PixelShuffle { direction: ShuffleDirection::Unshuffle, .. } => "pixel_unshuffle",
            Op::Identity => "identity",
            Op::Dropout { .. } => "dropout",
            Op::Dropout2d { .. } => "dropout2d",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Scalar { op: ArithOp::Add, .. } => "add_scalar",
            Op::Scalar { op: ArithOp::Sub, .. } => "sub_scalar",
            Op::Scalar { op: ArithOp::Mul, .. } => "mul_scalar",
            Op::Concat => "concat",
            Op::Cat { .. } => "cat",
            Op::Narrow { .. } => "narrow",
            Op::Output => "output",
        }
    }

    /// True for ops whose input channel count is still unknown.
    pub fn is_lazy(&self) -> bool {
        matches!(
            self,
            Op::LazyConvTranspose2d { .. }
                | Op::LazyConv2d { .. }
                | Op::LazyBatchNorm2d { .. }
                | Op::LazyLinear { .. }
                | Op::LazyBatchNorm1d { .. }
                | Op::LazyInstanceNorm2d { .. }
        )
    }

    /// How many operands the op takes.
    pub fn arity(&self) -> Arity {
        match self {
            Op::Input => Arity::Exactly(0),
            Op::Add | Op::Sub | Op::Mul => Arity::Exactly(2),
            Op::Concat | Op::Cat { .. } => Arity::AtLeast(1),
            _ => Arity::Exactly(1),
        }
    }

    /// Checks the operand count.
    pub fn check_arity(&self, node: &str, got: usize) -> Result<()> {
        let arity = self.arity();
        if arity.accepts(got) {
            Ok(())
        } else {
            Err(IrError::OperandCount { node: node.into(), op: self.class_name(), expected: arity.describe(), got })
        }
    }

    /// Validates the hyper-parameters (not the operands), naming `node`.
    pub fn validate(&self, node: &str) -> Result<()> {
        let op = self.class_name();
        match self {
            Op::LazyConvTranspose2d { params } => params.validate(node, op),
            Op::ConvTranspose2d { in_channels, params } => {
                params.validate(node, op)?;
                check_groups(node, op, params.groups, "in_channels", *in_channels)
            }
            Op::LazyConv2d { params } => params.validate(node, op),
            Op::Conv2d { in_channels, params } => {
                params.validate(node, op)?;
                check_groups(node, op, params.groups, "in_channels", *in_channels)
            }
            Op::LazyBatchNorm2d { params } => params.validate(node, op),
            Op::BatchNorm2d { num_features, params } => {
                if *num_features == 0 {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "num_features", value: "0".into() });
                }
                params.validate(node, op)
            }
            Op::LeakyRelu { negative_slope } if !negative_slope.is_finite() => Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "negative_slope",
                message: format!("must be finite, got {negative_slope}"),
            }),
            Op::Pointwise { f } => f.validate(node),
            Op::PRelu { num_parameters, init } => {
                if *num_parameters == 0 {
                    return Err(IrError::NonPositive {
                        node: node.into(),
                        op,
                        arg: "num_parameters",
                        value: "0".into(),
                    });
                }
                if !init.is_finite() {
                    return Err(IrError::Unsupported {
                        node: node.into(),
                        op,
                        arg: "init",
                        message: format!("must be finite, got {init}"),
                    });
                }
                Ok(())
            }
            Op::LazyLinear { params } | Op::Linear { params, .. } => {
                if params.out_features == 0 {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "out_features", value: "0".into() });
                }
                if let Op::Linear { in_features: 0, .. } = self {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "in_features", value: "0".into() });
                }
                Ok(())
            }
            Op::LazyBatchNorm1d { params } => params.validate(node, op),
            Op::LazyInstanceNorm2d { params } => params.validate(node, op),
            Op::InstanceNorm2d { num_features, params } => {
                if *num_features == 0 {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "num_features", value: "0".into() });
                }
                params.validate(node, op)
            }
            Op::GroupNorm { num_groups, num_channels, eps, affine } => {
                if *num_groups == 0 {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "num_groups", value: "0".into() });
                }
                if !num_channels.is_multiple_of(*num_groups) || *num_channels == 0 {
                    return Err(IrError::Unsupported {
                        node: node.into(),
                        op,
                        arg: "num_channels",
                        // PyTorch's wording.
                        message: format!("num_channels must be divisible by num_groups, got num_channels={num_channels} and num_groups={num_groups}"),
                    });
                }
                BatchNorm2dParams { eps: *eps, momentum: 0.1, affine: *affine }.validate(node, op)
            }
            Op::BatchNorm1d { num_features, params } => {
                if *num_features == 0 {
                    return Err(IrError::NonPositive { node: node.into(), op, arg: "num_features", value: "0".into() });
                }
                params.validate(node, op)
            }
            Op::Unflatten { sizes, .. } if sizes.is_empty() || sizes.iter().any(|&s| s < 1 && s != -1) => {
                Err(IrError::Unsupported {
                    node: node.into(),
                    op,
                    arg: "unflattened_size",
                    message: format!("sizes must be positive (one may be -1), got {sizes:?}"),
                })
            }
            Op::Reshape { shape }
                if shape.iter().any(|&s| s < 1 && s != -1) || shape.iter().filter(|&&s| s == -1).count() > 1 =>
            {
                Err(IrError::Unsupported {
                    node: node.into(),
                    op,
                    arg: "shape",
                    message: format!("sizes must be positive with at most one -1, got {shape:?}"),
                })
            }
            Op::Flatten { .. } | Op::Unflatten { .. } | Op::Reshape { .. } => Ok(()),
            Op::Scalar { other, .. } if !other.is_finite() => Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "other",
                message: format!("must be finite, got {other}"),
            }),
            Op::Sub | Op::Mul | Op::Scalar { .. } | Op::Cat { .. } => Ok(()),
            Op::Narrow { length: 0, .. } => {
                Err(IrError::NonPositive { node: node.into(), op, arg: "length", value: "0".into() })
            }
            Op::Narrow { .. } => Ok(()),
            Op::MaxPool2d { params } => params.validate(node, op),
            Op::AvgPool2d { params, divisor } => {
                params.validate(node, op)?;
                if divisor.divisor_override == Some(0) {
                    // PyTorch: "divisor must be not zero".
                    return Err(IrError::NonPositive {
                        node: node.into(),
                        op,
                        arg: "divisor_override",
                        value: "0".into(),
                    });
                }
                Ok(())
            }
            Op::AdaptiveAvgPool2d { output_size } => match output_size {
                [Some(0), _] | [_, Some(0)] => Err(IrError::NonPositive {
                    node: node.into(),
                    op,
                    arg: "output_size",
                    value: format!("{output_size:?}"),
                }),
                _ => Ok(()),
            },
            Op::Pad2d { mode: PadMode::Constant { value }, .. } if !value.is_finite() => Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "value",
                message: format!("must be finite, got {value}"),
            }),
            Op::Pad2d { .. } => Ok(()),
            Op::Upsample { params } => params.validate(node),
            Op::PixelShuffle { factor: 0, direction } => Err(IrError::NonPositive {
                node: node.into(),
                op,
                arg: match direction {
                    ShuffleDirection::Shuffle => "upscale_factor",
                    ShuffleDirection::Unshuffle => "downscale_factor",
                },
                value: "0".into(),
            }),
            Op::PixelShuffle { .. } => Ok(()),
            Op::Dropout { p } | Op::Dropout2d { p } if !(0.0..=1.0).contains(p) => Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "p",
                // PyTorch's own wording.
                message: format!("dropout probability has to be between 0 and 1, but got {p}"),
            }),
            Op::Input
            | Op::Output
            | Op::LeakyRelu { .. }
            | Op::Relu
            | Op::Tanh
            | Op::Sigmoid
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Add
            | Op::Concat => Ok(()),
        }
    }

    /// The parameters this op carries, with their PyTorch names and shapes
    /// (unknown dims where `in_channels` is not known yet).
    pub fn param_specs(&self) -> Vec<(&'static str, Vec<Dim>)> {
        match self {
            Op::LazyConvTranspose2d { params } => conv_transpose_specs(params, Dim::Unknown),
            Op::ConvTranspose2d { in_channels, params } => conv_transpose_specs(params, Dim::Known(*in_channels)),
            Op::LazyConv2d { params } => conv_specs(params, Dim::Unknown),
            Op::Conv2d { in_channels, params } => conv_specs(params, Dim::Known(*in_channels)),
            Op::LazyBatchNorm2d { params } => batch_norm_specs(params, Dim::Unknown),
            Op::BatchNorm2d { num_features, params } => batch_norm_specs(params, Dim::Known(*num_features)),
            Op::PRelu { num_parameters, .. } => vec![("weight", vec![Dim::Known(*num_parameters)])],
            Op::LazyLinear { params } => linear_specs(params, Dim::Unknown),
            Op::Linear { in_features, params } => linear_specs(params, Dim::Known(*in_features)),
            Op::LazyBatchNorm1d { params } => batch_norm_specs(params, Dim::Unknown),
            Op::BatchNorm1d { num_features, params } => batch_norm_specs(params, Dim::Known(*num_features)),
            Op::LazyInstanceNorm2d { params } => instance_norm_specs(params, Dim::Unknown),
            Op::InstanceNorm2d { num_features, params } => instance_norm_specs(params, Dim::Known(*num_features)),
            Op::GroupNorm { num_channels, affine, .. } => {
                let c = Dim::Known(*num_channels);
                if *affine {
                    vec![("weight", vec![c]), ("bias", vec![c])]
                } else {
                    Vec::new()
                }
            }
            Op::Input
            | Op::Output
            | Op::Relu
            | Op::LeakyRelu { .. }
            | Op::Tanh
            | Op::Sigmoid
            | Op::Pointwise { .. }
            | Op::Flatten { .. }
            | Op::Unflatten { .. }
            | Op::Reshape { .. }
            | Op::Sub
            | Op::Mul
            | Op::Scalar { .. }
            | Op::Cat { .. }
            | Op::Narrow { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. }
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Add
            | Op::Concat => Vec::new(),
        }
    }
}

fn conv_transpose_specs(p: &ConvTranspose2dParams, in_channels: Dim) -> Vec<(&'static str, Vec<Dim>)> {
    let mut v = vec![("weight", p.weight_shape(in_channels))];
    if p.bias {
        v.push(("bias", vec![Dim::Known(p.out_channels)]));
    }
    v
}

fn instance_norm_specs(p: &InstanceNormParams, c: Dim) -> Vec<(&'static str, Vec<Dim>)> {
    let mut v = Vec::new();
    if p.affine {
        v.push(("weight", vec![c]));
        v.push(("bias", vec![c]));
    }
    if p.track_running_stats {
        v.push(("running_mean", vec![c]));
        v.push(("running_var", vec![c]));
    }
    v
}

fn linear_specs(p: &LinearParams, in_features: Dim) -> Vec<(&'static str, Vec<Dim>)> {
    let mut v = vec![("weight", p.weight_shape(in_features))];
    if p.bias {
        v.push(("bias", vec![Dim::Known(p.out_features)]));
    }
    v
}

fn conv_specs(p: &Conv2dParams, in_channels: Dim) -> Vec<(&'static str, Vec<Dim>)> {
    let mut v = vec![("weight", p.weight_shape(in_channels))];
    if p.bias {
        v.push(("bias", vec![Dim::Known(p.out_channels)]));
    }
    v
}

fn batch_norm_specs(p: &BatchNorm2dParams, c: Dim) -> Vec<(&'static str, Vec<Dim>)> {
    let mut v = Vec::new();
    if p.affine {
        v.push(("weight", vec![c]));
        v.push(("bias", vec![c]));
    }
    v.push(("running_mean", vec![c]));
    v.push(("running_var", vec![c]));
    v
}

fn check_positive(node: &str, op: &'static str, arg: &'static str, v: Pair2) -> Result<()> {
    if v.any_zero() {
        return Err(IrError::NonPositive { node: node.into(), op, arg, value: v.to_string() });
    }
    Ok(())
}

/// `groups > 0` and `channels % groups == 0`.
pub(crate) fn check_groups(
    node: &str,
    op: &'static str,
    groups: usize,
    what: &'static str,
    channels: usize,
) -> Result<()> {
    if groups == 0 {
        return Err(IrError::NonPositive { node: node.into(), op, arg: "groups", value: "0".into() });
    }
    if channels == 0 {
        return Err(IrError::NonPositive { node: node.into(), op, arg: what, value: "0".into() });
    }
    if !channels.is_multiple_of(groups) {
        return Err(IrError::NotDivisibleByGroups { node: node.into(), op, what, channels, groups });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy(p: ConvTranspose2dParams) -> Result<()> {
        Op::lazy_conv_transpose2d(p).validate("up")
    }

    #[test]
    fn defaults_match_pytorch() {
        let p = ConvTranspose2dParams::new(6, 3);
        assert_eq!(p.stride, Pair2::square(1));
        assert_eq!(p.padding, ConvPadding::Symmetric(Pair2::square(0)));
        assert_eq!(p.output_padding, Pair2::square(0));
        assert_eq!(p.dilation, Pair2::square(1));
        assert_eq!(p.groups, 1);
        assert!(p.bias);
        assert_eq!(p.padding_mode, PaddingMode::Zeros);
        assert!(lazy(p).is_ok());
    }

    #[test]
    fn int_or_pair_arguments() {
        let p = ConvTranspose2dParams::new(4, (3, 2)).stride([2, 1]).padding(1).dilation((1, 2));
        assert_eq!(p.kernel_size, Pair2 { h: 3, w: 2 });
        assert_eq!(p.stride, Pair2 { h: 2, w: 1 });
        assert_eq!(p.padding, ConvPadding::Symmetric(Pair2 { h: 1, w: 1 }));
        assert_eq!(p.dilation, Pair2 { h: 1, w: 2 });
    }

    #[test]
    fn padding_mode_other_than_zeros_is_rejected_first() {
        // PyTorch checks padding_mode before groups: groups=0 + reflect reports the mode.
        let e = lazy(ConvTranspose2dParams::new(2, 3).padding_mode(PaddingMode::Reflect).groups(0)).unwrap_err();
        assert!(matches!(e, IrError::UnsupportedPaddingMode { ref mode, .. } if mode == "reflect"), "{e}");
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d supports only padding_mode=\"zeros\", got \"reflect\""
        );
        for m in [PaddingMode::Replicate, PaddingMode::Circular] {
            assert!(lazy(ConvTranspose2dParams::new(2, 3).padding_mode(m)).is_err());
        }
    }

    #[test]
    fn zero_groups_rejected() {
        let e = lazy(ConvTranspose2dParams::new(2, 3).groups(0)).unwrap_err();
        assert!(matches!(e, IrError::NonPositive { arg: "groups", .. }), "{e}");
    }

    #[test]
    fn out_channels_must_divide_by_groups() {
        let e = lazy(ConvTranspose2dParams::new(3, 3).groups(2)).unwrap_err();
        assert_eq!(e.to_string(), "node `up`: LazyConvTranspose2d out_channels=3 is not divisible by groups=2");
        assert!(lazy(ConvTranspose2dParams::new(4, 3).groups(2)).is_ok());
    }

    #[test]
    fn in_channels_must_divide_by_groups_for_concrete() {
        let op = Op::ConvTranspose2d { in_channels: 3, params: ConvTranspose2dParams::new(4, 3).groups(2) };
        let e = op.validate("up").unwrap_err();
        assert!(matches!(e, IrError::NotDivisibleByGroups { what: "in_channels", channels: 3, groups: 2, .. }));
    }

    #[test]
    fn zero_out_channels_rejected() {
        assert!(matches!(
            lazy(ConvTranspose2dParams::new(0, 3)).unwrap_err(),
            IrError::NonPositive { arg: "out_channels", .. }
        ));
    }

    #[test]
    fn kernel_stride_dilation_must_be_positive() {
        let cases = [
            (ConvTranspose2dParams::new(2, (3, 0)), "kernel_size"),
            (ConvTranspose2dParams::new(2, 3).stride((0, 1)), "stride"),
            (ConvTranspose2dParams::new(2, 3).dilation(0), "dilation"),
        ];
        for (p, arg) in cases {
            let e = lazy(p).unwrap_err();
            assert!(matches!(e, IrError::NonPositive { arg: a, .. } if a == arg), "{e}");
        }
    }

    #[test]
    fn output_padding_must_be_below_stride_or_dilation() {
        let e = lazy(ConvTranspose2dParams::new(2, 3).stride(2).output_padding(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d output_padding=2x2 must be smaller than either stride=2x2 or dilation=1x1 in each dimension"
        );
        // Smaller than dilation is enough (PyTorch's rule is "stride or dilation").
        assert!(lazy(ConvTranspose2dParams::new(2, 3).output_padding(1).dilation(2)).is_ok());
        // Per dimension: width violates.
        assert!(lazy(ConvTranspose2dParams::new(2, 3).stride((2, 1)).output_padding((1, 1))).is_err());
        // Ignored when output_size is given, as in PyTorch.
        assert!(lazy(ConvTranspose2dParams::new(2, 3).output_padding(5).output_size([4, 4])).is_ok());
    }

    #[test]
    fn output_size_length_and_values() {
        for bad in [vec![4], vec![1, 2, 3, 4, 5], vec![0, 4]] {
            assert!(matches!(
                lazy(ConvTranspose2dParams::new(2, 3).output_size(bad)).unwrap_err(),
                IrError::InvalidOutputSize { .. }
            ));
        }
        for good in [vec![4, 4], vec![2, 4, 4], vec![1, 2, 4, 4]] {
            assert!(lazy(ConvTranspose2dParams::new(2, 3).output_size(good)).is_ok());
        }
    }

    #[test]
    fn conv2d_rules() {
        let ok = Op::lazy_conv2d(Conv2dParams::new(4, 3).padding(1));
        assert!(ok.validate("c").is_ok());
        assert!(Op::lazy_conv2d(Conv2dParams::new(3, 3).groups(2)).validate("c").is_err());
        assert!(Op::lazy_conv2d(Conv2dParams::new(4, 0)).validate("c").is_err());
        assert!(Op::lazy_conv2d(Conv2dParams::new(4, 3).stride(0)).validate("c").is_err());
        assert!(Op::lazy_conv2d(Conv2dParams::new(4, 3).padding_mode(PaddingMode::Reflect)).validate("c").is_err());
        let concrete = Op::Conv2d { in_channels: 5, params: Conv2dParams::new(4, 3).groups(2) };
        assert!(concrete.validate("c").is_err());
    }

    #[test]
    fn batch_norm_rules() {
        assert!(Op::lazy_batch_norm2d().validate("bn").is_ok());
        let bad = Op::LazyBatchNorm2d { params: BatchNorm2dParams::default().eps(0.0) };
        assert!(bad.validate("bn").is_err());
        let zero = Op::BatchNorm2d { num_features: 0, params: BatchNorm2dParams::default() };
        assert!(zero.validate("bn").is_err());
    }

    #[test]
    fn arity() {
        assert!(Op::Add.check_arity("a", 2).is_ok());
        assert!(Op::Add.check_arity("a", 1).is_err());
        assert!(Op::Concat.check_arity("c", 0).is_err());
        assert!(Op::Concat.check_arity("c", 3).is_ok());
        assert!(Op::Input.check_arity("x", 1).is_err());
        assert!(Op::Relu.check_arity("r", 2).is_err());
    }

    #[test]
    fn param_specs_follow_pytorch_layouts() {
        let p = ConvTranspose2dParams::new(6, (3, 2)).groups(2);
        let specs = Op::ConvTranspose2d { in_channels: 4, params: p.clone() }.param_specs();
        assert_eq!(specs[0], ("weight", vec![Dim::Known(4), Dim::Known(3), Dim::Known(3), Dim::Known(2)]));
        assert_eq!(specs[1], ("bias", vec![Dim::Known(6)]));
        let lazy = Op::lazy_conv_transpose2d(p.bias(false)).param_specs();
        assert_eq!(lazy.len(), 1);
        assert_eq!(lazy[0].1[0], Dim::Unknown);
        let conv = Op::Conv2d { in_channels: 4, params: Conv2dParams::new(6, 3).groups(2) }.param_specs();
        assert_eq!(conv[0].1, vec![Dim::Known(6), Dim::Known(2), Dim::Known(3), Dim::Known(3)]);
        let bn = Op::lazy_batch_norm2d().param_specs();
        let names: Vec<_> = bn.iter().map(|s| s.0).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
    }

    #[test]
    fn per_side_pads() {
        let p = ConvTranspose2dParams::new(2, 3).stride(2).pads([0, 1], [1, 0]).output_padding(5);
        assert_eq!(p.padding.begin(), Pair2 { h: 0, w: 1 });
        assert_eq!(p.padding.end(), Pair2 { h: 1, w: 0 });
        // Any output_padding with explicit pads (ONNX has no `< stride` rule).
        assert!(lazy(p.clone()).is_ok());
        let e = lazy(p.output_size([6, 6])).unwrap_err();
        assert!(matches!(e, IrError::PadsWithOutputSize { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d takes either explicit per-side pads or output_size, not both (got pads=[0, 1, 1, 0] and output_size=[6, 6])"
        );
        // `padding` after `pads` replaces it, and the PyTorch rules apply again.
        let p = ConvTranspose2dParams::new(2, 3).pads([1, 1], [2, 2]).padding(1);
        assert_eq!(p.padding, ConvPadding::Symmetric(Pair2::square(1)));
        let c = Conv2dParams::new(2, 2).pads([0, 0], [1, 1]);
        assert_eq!(c.padding.to_onnx(), [0, 0, 1, 1]);
        assert_eq!(ConvPadding::from_onnx([0, 0, 1, 1]), c.padding);
        assert!(Op::lazy_conv2d(c).validate("c").is_ok());
    }

    #[test]
    fn pytorch_form_of_per_side_pads() {
        let ct = |b: [usize; 2], e: [usize; 2], op: usize| {
            ConvTranspose2dParams::new(2, 3).stride(2).pads(b, e).output_padding(op).pytorch_padding()
        };
        // begin = end: padding p, output_padding unchanged.
        assert_eq!(ct([1, 1], [1, 1], 1), Some((Pair2::square(1), Pair2::square(1))));
        // One more at the begin side: PyTorch's padding=1 output_padding=1.
        assert_eq!(ct([1, 1], [0, 0], 0), Some((Pair2::square(1), Pair2::square(1))));
        // More at the end side (SAME_UPPER-like): no PyTorch form.
        assert_eq!(ct([0, 0], [1, 1], 0), None);
        // output_padding past the stride: none either.
        assert_eq!(ct([1, 1], [1, 1], 2), None);
        let sym = ConvTranspose2dParams::new(2, 3).padding(2).output_padding(7);
        assert_eq!(sym.pytorch_padding(), Some((Pair2::square(2), Pair2::square(7))));
    }
}
