//! Fully resolved convolution geometries and their validation.
//!
//! A geometry is plain data: every size is known, nothing is lazy or
//! symbolic. It is what the code generator specializes on. This module checks
//! that a geometry is a valid PyTorch configuration and computes derived
//! sizes with checked arithmetic; it knows nothing about code generation.
//! Tensors are NCHW `f32`, C-contiguous.

use crate::error::JitError;

/// Largest tensor (or packed weight buffer) in bytes that kernels accept.
///
/// Kernels address memory with 32-bit signed immediates relative to a base
/// pointer; bounding every buffer by `i32::MAX` bytes keeps each immediate in
/// range, so the code generator never needs to check.
pub const MAX_TENSOR_BYTES: usize = i32::MAX as usize;

/// Largest kernel size, stride, padding or dilation accepted. Far beyond any
/// real model; bounding them keeps all compile-time index arithmetic in `i64`.
pub const MAX_PARAM: usize = 1 << 30;

/// Geometry of a 2-D transposed convolution (`ConvTranspose2d`).
///
/// The weight layout is PyTorch's `[in_channels, out_channels / groups, kH, kW]`.
/// Output coordinate `o` is coordinate `o + padding` of the full (uncropped)
/// result `(in − 1)·s + d·(k − 1) + 1`; `out_h`/`out_w` are explicit because
/// they encode everything on the end side: PyTorch's `padding` and
/// `output_padding` (or a requested `output_size`), `out = full − 2p + op`
/// with `op < max(s, d)`, or ONNX's per-side `pads` and `output_padding`,
/// `out = full − begin − end + op` with any `op`. Every `out ≥ 1` is a valid
/// geometry; outputs past the full result receive only the bias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvTranspose2dGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input channels C_in.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels C_out.
    pub out_channels: usize,
    /// Number of groups; divides both channel counts.
    pub groups: usize,
    /// Kernel size `[kH, kW]`.
    pub kernel: [usize; 2],
    /// Stride `[sH, sW]`.
    pub stride: [usize; 2],
    /// Begin-side padding `[top, left]`, cropped from the start of the full
    /// output (PyTorch's `padding`, or the begin half of ONNX's `pads`).
    pub padding: [usize; 2],
    /// Dilation `[dH, dW]`.
    pub dilation: [usize; 2],
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

/// Geometry of a 2-D (forward) convolution with zero padding (`Conv2d`).
///
/// The weight layout is PyTorch's `[out_channels, in_channels / groups, kH, kW]`.
/// `out = (in + begin + end - d·(k - 1) - 1) / s + 1` (floor division), with
/// `begin = padding`, `end = padding_end` (equal for PyTorch's symmetric
/// padding, per side for ONNX's `pads`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input channels C_in.
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels C_out.
    pub out_channels: usize,
    /// Number of groups; divides both channel counts.
    pub groups: usize,
    /// Kernel size `[kH, kW]`.
    pub kernel: [usize; 2],
    /// Stride `[sH, sW]`.
    pub stride: [usize; 2],
    /// Zero padding `[top, left]` before the input; the only side that
    /// shifts input coordinates.
    pub padding: [usize; 2],
    /// Zero padding `[bottom, right]` after the input; it only adds output
    /// positions (their taps past the input read zero).
    pub padding_end: [usize; 2],
    /// Dilation `[dH, dW]`.
    pub dilation: [usize; 2],
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

/// Product of `dims`, or an error naming `what` if it overflows or exceeds
/// [`MAX_TENSOR_BYTES`] once multiplied by 4 bytes.
pub(crate) fn checked_len(op: &'static str, what: &str, dims: &[usize]) -> Result<usize, JitError> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d).ok_or_else(|| JitError::geometry(op, format!("{what} size {dims:?} overflows")))?;
    }
    if n.checked_mul(4).is_none_or(|b| b > MAX_TENSOR_BYTES) {
        return Err(JitError::geometry(
            op,
            format!("{what} of {n} elements {dims:?} exceeds {MAX_TENSOR_BYTES} bytes"),
        ));
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
fn check_common(
    op: &'static str,
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    spatial: [(&str, usize); 4],
    params: [(&str, [usize; 2]); 3],
    paddings: &[(&str, [usize; 2])],
) -> Result<(), JitError> {
    for (name, v) in params.iter().copied().chain(paddings.iter().copied()) {
        if v[0] > MAX_PARAM || v[1] > MAX_PARAM {
            return Err(JitError::geometry(op, format!("{name} {v:?} exceeds the supported maximum {MAX_PARAM}")));
        }
    }
    let named = [("batch", batch), ("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)];
    for (name, v) in named.into_iter().chain(spatial) {
        if v == 0 {
            return Err(JitError::geometry(op, format!("{name} must be positive, got 0")));
        }
    }
    for (name, v) in params {
        if v[0] == 0 || v[1] == 0 {
            return Err(JitError::geometry(op, format!("{name} must be positive, got {v:?}")));
        }
    }
    if !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(JitError::geometry(
            op,
            format!("groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"),
        ));
    }
    Ok(())
}

/// Full (uncropped, no output padding) transposed-conv output length
/// `(in-1)·s + d·(k-1) + 1`, in `i128` so it cannot overflow.
fn conv_transpose_full_out(i: usize, k: usize, s: usize, d: usize) -> i128 {
    // Saturating: operands up to usize::MAX squared exceed even i128.
    let (i, k, s, d) = (i as i128, k as i128, s as i128, d as i128);
    (i - 1).saturating_mul(s).saturating_add(d.saturating_mul(k - 1)).saturating_add(1)
}

impl ConvTranspose2dGeometry {
    /// Builds a geometry from PyTorch constructor arguments, computing the
    /// output size from `output_padding` (which must be below
    /// `max(stride, dilation)`, PyTorch's rule). Validates the result.
    #[allow(clippy::too_many_arguments)]
    pub fn from_output_padding(
        batch: usize,
        in_channels: usize,
        in_hw: [usize; 2],
        out_channels: usize,
        groups: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, JitError> {
        // Report a bad output_padding in PyTorch's terms before the generic check.
        for a in 0..2 {
            if output_padding[a] >= stride[a].max(dilation[a]) {
                return Err(JitError::geometry(
                    "conv_transpose2d",
                    format!(
                        "output padding must be smaller than either stride or dilation, got output_padding={output_padding:?} stride={stride:?} dilation={dilation:?}"
                    ),
                ));
            }
        }
        Self::from_pads(
            batch,
            in_channels,
            in_hw,
            out_channels,
            groups,
            kernel,
            stride,
            padding,
            padding,
            output_padding,
            dilation,
        )
    }

    /// Builds a geometry from ONNX-style per-side padding: `pads_begin =
    /// [top, left]` and `pads_end = [bottom, right]` cropped from the full
    /// output, then `output_padding` (any size) added at the end side:
    /// `out = (in − 1)·s + d·(k − 1) + 1 − begin − end + op`. Validates the
    /// result.
    #[allow(clippy::too_many_arguments)]
    pub fn from_pads(
        batch: usize,
        in_channels: usize,
        in_hw: [usize; 2],
        out_channels: usize,
        groups: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads_begin: [usize; 2],
        pads_end: [usize; 2],
        output_padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, JitError> {
        let mut out = [0usize; 2];
        for a in 0..2 {
            let len = conv_transpose_full_out(in_hw[a], kernel[a], stride[a], dilation[a])
                .saturating_sub(pads_begin[a] as i128)
                .saturating_sub(pads_end[a] as i128)
                .saturating_add(output_padding[a] as i128);
            out[a] = usize::try_from(len).unwrap_or(0);
        }
        let g = Self {
            batch,
            in_channels,
            in_h: in_hw[0],
            in_w: in_hw[1],
            out_channels,
            groups,
            kernel,
            stride,
            padding: pads_begin,
            dilation,
            out_h: out[0],
            out_w: out[1],
        };
        if pads_end.iter().any(|&p| p > MAX_PARAM) || output_padding.iter().any(|&p| p > MAX_PARAM) {
            return Err(JitError::geometry(
                "conv_transpose2d",
                format!(
                    "end padding {pads_end:?} or output padding {output_padding:?} exceeds the supported maximum {MAX_PARAM}"
                ),
            ));
        }
        g.validate()?;
        Ok(g)
    }

    /// Checks that this is a configuration PyTorch or ONNX accepts (any
    /// positive output size, see the type's docs) and that every derived
    /// buffer fits [`MAX_TENSOR_BYTES`].
    pub fn validate(&self) -> Result<(), JitError> {
        const OP: &str = "conv_transpose2d";
        check_common(
            OP,
            self.batch,
            self.in_channels,
            self.out_channels,
            self.groups,
            [("in_h", self.in_h), ("in_w", self.in_w), ("out_h", self.out_h), ("out_w", self.out_w)],
            [("kernel", self.kernel), ("stride", self.stride), ("dilation", self.dilation)],
            &[("padding", self.padding)],
        )?;
        self.sizes()?;
        Ok(())
    }

    /// Rows and columns `[bottom, right]` cropped from the end of the full
    /// output; negative where the output extends past it (output padding
    /// beyond the end crop). With symmetric PyTorch padding `p` and output
    /// padding `op` this is `p − op`.
    pub fn end_crop(&self) -> [i128; 2] {
        let ins = [self.in_h, self.in_w];
        let outs = [self.out_h, self.out_w];
        [0, 1].map(|a| {
            conv_transpose_full_out(ins[a], self.kernel[a], self.stride[a], self.dilation[a])
                .saturating_sub(self.padding[a] as i128)
                .saturating_sub(outs[a] as i128)
        })
    }

    /// `(input, weight, output)` element counts, checked.
    pub(crate) fn sizes(&self) -> Result<(usize, usize, usize), JitError> {
        const OP: &str = "conv_transpose2d";
        let x = checked_len(OP, "input", &[self.batch, self.in_channels, self.in_h, self.in_w])?;
        let w = checked_len(
            OP,
            "weight",
            &[self.in_channels, self.out_channels / self.groups.max(1), self.kernel[0], self.kernel[1]],
        )?;
        let y = checked_len(OP, "output", &[self.batch, self.out_channels, self.out_h, self.out_w])?;
        Ok((x, w, y))
    }

    /// Number of input elements `N·C_in·H_in·W_in` (saturating).
    pub fn input_len(&self) -> usize {
        saturating_product(&[self.batch, self.in_channels, self.in_h, self.in_w])
    }

    /// Number of output elements `N·C_out·H_out·W_out` (saturating).
    pub fn output_len(&self) -> usize {
        saturating_product(&[self.batch, self.out_channels, self.out_h, self.out_w])
    }

    /// Number of weight elements `C_in·(C_out/groups)·kH·kW` (saturating).
    pub fn weight_len(&self) -> usize {
        saturating_product(&[self.in_channels, self.out_channels / self.groups.max(1), self.kernel[0], self.kernel[1]])
    }

    /// Multiply-add FLOPs `2·N·C_in·(C_out/groups)·kH·kW·H_in·W_in`, the
    /// convention of the benchmark tables (includes taps that fall in the padding).
    pub fn flops(&self) -> u64 {
        [
            2,
            self.batch,
            self.in_channels,
            self.out_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
            self.in_h,
            self.in_w,
        ]
        .iter()
        .fold(1u64, |a, &b| a.saturating_mul(b as u64))
    }
}

impl Conv2dGeometry {
    /// Builds a geometry from PyTorch constructor arguments (symmetric
    /// `padding`), computing the output size. Validates the result.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        in_channels: usize,
        in_hw: [usize; 2],
        out_channels: usize,
        groups: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, JitError> {
        Self::with_pads(batch, in_channels, in_hw, out_channels, groups, kernel, stride, padding, padding, dilation)
    }

    /// Builds a geometry from ONNX-style per-side zero padding `pads_begin =
    /// [top, left]`, `pads_end = [bottom, right]`, computing the output size.
    /// Validates the result.
    #[allow(clippy::too_many_arguments)]
    pub fn with_pads(
        batch: usize,
        in_channels: usize,
        in_hw: [usize; 2],
        out_channels: usize,
        groups: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads_begin: [usize; 2],
        pads_end: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, JitError> {
        let mut out = [0usize; 2];
        for a in 0..2 {
            out[a] = conv_out(in_hw[a], kernel[a], stride[a], pads_begin[a], pads_end[a], dilation[a])
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0);
        }
        let g = Self {
            batch,
            in_channels,
            in_h: in_hw[0],
            in_w: in_hw[1],
            out_channels,
            groups,
            kernel,
            stride,
            padding: pads_begin,
            padding_end: pads_end,
            dilation,
            out_h: out[0],
            out_w: out[1],
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks that this is a configuration PyTorch or ONNX accepts and that
    /// every derived buffer fits [`MAX_TENSOR_BYTES`].
    pub fn validate(&self) -> Result<(), JitError> {
        const OP: &str = "conv2d";
        check_common(
            OP,
            self.batch,
            self.in_channels,
            self.out_channels,
            self.groups,
            [("in_h", self.in_h), ("in_w", self.in_w), ("out_h", self.out_h), ("out_w", self.out_w)],
            [("kernel", self.kernel), ("stride", self.stride), ("dilation", self.dilation)],
            &[("padding", self.padding), ("padding_end", self.padding_end)],
        )?;
        let ins = [self.in_h, self.in_w];
        let outs = [self.out_h, self.out_w];
        for a in 0..2 {
            let want = conv_out(
                ins[a],
                self.kernel[a],
                self.stride[a],
                self.padding[a],
                self.padding_end[a],
                self.dilation[a],
            );
            if want != Some(outs[a] as i128) {
                return Err(JitError::geometry(
                    OP,
                    format!(
                        "output size {} along {} does not match input {} kernel {} stride {} padding {}+{} dilation {} (expected {})",
                        outs[a],
                        ["height", "width"][a],
                        ins[a],
                        self.kernel[a],
                        self.stride[a],
                        self.padding[a],
                        self.padding_end[a],
                        self.dilation[a],
                        want.map_or("none: kernel larger than padded input".to_string(), |w| w.to_string())
                    ),
                ));
            }
        }
        self.sizes()?;
        Ok(())
    }

    /// `(input, weight, output)` element counts, checked.
    pub(crate) fn sizes(&self) -> Result<(usize, usize, usize), JitError> {
        const OP: &str = "conv2d";
        let x = checked_len(OP, "input", &[self.batch, self.in_channels, self.in_h, self.in_w])?;
        let w = checked_len(
            OP,
            "weight",
            &[self.out_channels, self.in_channels / self.groups.max(1), self.kernel[0], self.kernel[1]],
        )?;
        let y = checked_len(OP, "output", &[self.batch, self.out_channels, self.out_h, self.out_w])?;
        Ok((x, w, y))
    }

    /// Number of input elements (saturating).
    pub fn input_len(&self) -> usize {
        saturating_product(&[self.batch, self.in_channels, self.in_h, self.in_w])
    }

    /// Number of output elements (saturating).
    pub fn output_len(&self) -> usize {
        saturating_product(&[self.batch, self.out_channels, self.out_h, self.out_w])
    }

    /// Number of weight elements `C_out·(C_in/groups)·kH·kW` (saturating).
    pub fn weight_len(&self) -> usize {
        saturating_product(&[self.out_channels, self.in_channels / self.groups.max(1), self.kernel[0], self.kernel[1]])
    }

    /// Multiply-add FLOPs `2·N·C_out·(C_in/groups)·kH·kW·H_out·W_out`.
    pub fn flops(&self) -> u64 {
        [
            2,
            self.batch,
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
            self.out_h,
            self.out_w,
        ]
        .iter()
        .fold(1u64, |a, &b| a.saturating_mul(b as u64))
    }
}

/// Forward-conv output length with `b` and `e` zeros before and after the
/// input, `None` if the dilated kernel is larger than the padded input or
/// the stride is zero.
fn conv_out(i: usize, k: usize, s: usize, b: usize, e: usize, d: usize) -> Option<i128> {
    if s == 0 || k == 0 || d == 0 {
        return None;
    }
    let span = (d as i128).saturating_mul(k as i128 - 1).saturating_add(1);
    let padded = i as i128 + b as i128 + e as i128;
    if padded < span {
        return None;
    }
    Some((padded - span) / s as i128 + 1)
}

/// Product of sizes, saturating at `usize::MAX` instead of overflowing
/// (the `*_len` accessors; `validate` reports real overflows).
fn saturating_product(dims: &[usize]) -> usize {
    dims.iter().fold(1usize, |a, &b| a.saturating_mul(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(
        in_hw: [usize; 2],
        k: usize,
        s: usize,
        p: usize,
        op: usize,
        d: usize,
    ) -> Result<ConvTranspose2dGeometry, JitError> {
        ConvTranspose2dGeometry::from_output_padding(1, 4, in_hw, 4, 2, [k; 2], [s; 2], [p; 2], [op; 2], [d; 2])
    }

    #[test]
    fn conv_transpose_output_size() {
        let g = ct([4, 4], 4, 2, 1, 0, 1).unwrap();
        assert_eq!((g.out_h, g.out_w), (8, 8));
        let g = ct([64, 64], 9, 3, 4, 2, 1).unwrap();
        assert_eq!((g.out_h, g.out_w), (192, 192));
        assert_eq!(g.end_crop(), [2, 2]);
        // op may reach dilation - 1 when dilation exceeds stride.
        assert!(ct([5, 5], 3, 1, 0, 2, 3).is_ok());
    }

    #[test]
    fn conv_transpose_per_side() {
        // Full output 2·3 + 2 + 1 = 9; crop 0 at the top and 1 at the bottom, 2 and 0 across.
        let g = ConvTranspose2dGeometry::from_pads(1, 2, [4, 4], 2, 1, [3, 3], [2, 2], [0, 2], [1, 0], [0, 0], [1, 1])
            .unwrap();
        assert_eq!((g.out_h, g.out_w), (8, 7));
        assert_eq!(g.padding, [0, 2]);
        assert_eq!(g.end_crop(), [1, 0]);
        // output_padding past the stride: rows beyond the full output.
        let g = ConvTranspose2dGeometry::from_pads(1, 2, [4, 4], 2, 1, [3, 3], [2, 2], [1, 1], [1, 1], [5, 0], [1, 1])
            .unwrap();
        assert_eq!((g.out_h, g.out_w), (12, 7));
        assert_eq!(g.end_crop(), [-4, 1]);
        // Cropping everything is refused.
        assert!(ConvTranspose2dGeometry::from_pads(1, 2, [4, 4], 2, 1, [3, 3], [2, 2], [5, 0], [4, 0], [0, 0], [1, 1])
            .is_err());
        assert!(ConvTranspose2dGeometry::from_pads(
            1,
            2,
            [4, 4],
            2,
            1,
            [3, 3],
            [2, 2],
            [0, 0],
            [0, 0],
            [usize::MAX, 0],
            [1, 1]
        )
        .is_err());
    }

    #[test]
    fn conv_transpose_rejects() {
        assert!(ct([4, 4], 4, 2, 1, 2, 1).is_err(), "op == stride");
        assert!(ct([1, 1], 1, 2, 1, 0, 1).is_err(), "output size <= 0");
        let mut g = ct([4, 4], 4, 2, 1, 0, 1).unwrap();
        g.out_h = 0;
        assert!(g.validate().is_err());
        g.out_h = 8;
        g.groups = 3;
        assert!(g.validate().is_err());
        g.groups = 0;
        assert!(g.validate().is_err());
        g.groups = 1;
        g.stride = [0, 1];
        assert!(g.validate().is_err());
        let huge = ConvTranspose2dGeometry::from_output_padding(
            usize::MAX,
            1,
            [1, 1],
            1,
            1,
            [1, 1],
            [1, 1],
            [0, 0],
            [0, 0],
            [1, 1],
        );
        assert!(huge.is_err());
        let huge = ConvTranspose2dGeometry::from_output_padding(
            1,
            1,
            [usize::MAX, 1],
            1,
            1,
            [3, 1],
            [usize::MAX, 1],
            [0, 0],
            [0, 0],
            [1, 1],
        );
        assert!(huge.is_err());
    }

    #[test]
    fn conv_output_size() {
        let g = Conv2dGeometry::new(1, 3, [7, 9], 6, 3, [3, 2], [2, 1], [1, 0], [1, 2]).unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 7));
        // Per side: (7 + 0 + 2 - 3) / 2 + 1 = 4, (9 + 3 + 0 - 3) / 1 + 1 = 10.
        let g = Conv2dGeometry::with_pads(1, 3, [7, 9], 6, 3, [3, 2], [2, 1], [0, 3], [2, 0], [1, 2]).unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 10));
        let mut bad = g.clone();
        bad.padding_end = [0, 0];
        assert!(bad.validate().is_err());
        assert!(Conv2dGeometry::new(1, 3, [2, 2], 3, 1, [5, 5], [1, 1], [0, 0], [1, 1]).is_err());
    }
}
