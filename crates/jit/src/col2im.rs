//! Transposed convolutions with one or two output channels per group and a
//! large kernel (FSRCNN, ESPCN and MNIST-GAN output heads) as a GEMM and a
//! col2im.
//!
//! Pixel tiles serve such layers with one accumulator per vector: every
//! FMA needs its own (mostly cache-line-splitting) input load, so they run
//! load-bound near a third of the FMA peak. Written instead as
//! `Y[(co, kh, kw), ih, iw] = Σ_ci W[ci, co, kh, kw] · x[ci, ih, iw]`, the
//! reduction is a 1×1 transposed convolution with `cog·kH·kW` output
//! channels per group, which channel tiles compute near peak (the weight
//! layout `[C_in, C_out/g, kH, kW]` already is that GEMM's
//! `[C_in, cog·kH·kW, 1, 1]`); [`Col2Im`] then adds each column of `Y` into
//! the output pixel it reaches, with the bias first and the activation
//! last, so only real taps are ever added.
//!
//! The graph lowering emits the pair when [`gemm_geometry`] applies (under
//! the Auto tier), with `Y` as a temporary of the memory plan.

use crate::epilogue::{Activation, Epilogue};
use crate::error::JitError;
use crate::geometry::ConvTranspose2dGeometry;
use crate::phase::{conv_transpose_axis, AxisPlan};

/// Most output channels per group this lowering takes (with more, pixel
/// tiles share each load between channels and keep up: pix2pix's RGB
/// k4 s2 head ran at 58% of peak there).
const MAX_COG: usize = 2;

/// Least kernel taps (`kH·kW`): the GEMM has that many output channels per
/// output channel, and fewer would fill a channel tile poorly.
const MIN_TAPS: usize = 9;

/// Least input channels per group: the GEMM's reduction (depthwise layers
/// have nothing to reduce and their own kernels).
const MIN_CIG: usize = 8;

/// Largest temporary `Y`, in floats (256 MiB).
const MAX_COLUMNS: usize = 64 << 20;

/// The 1×1 GEMM geometry whose output is `Y`, if `g` is in this lowering's
/// class: few output channels and at least [`MIN_CIG`] input channels per
/// group, at least [`MIN_TAPS`] taps, and a `Y` of at most [`MAX_COLUMNS`]
/// floats.
pub(crate) fn gemm_geometry(g: &ConvTranspose2dGeometry) -> Option<ConvTranspose2dGeometry> {
    let groups = g.groups.max(1);
    let cog = g.out_channels / groups;
    let taps = g.kernel[0].checked_mul(g.kernel[1])?;
    let channels = g.out_channels.checked_mul(taps)?;
    let len = [g.batch, g.in_h, g.in_w].iter().try_fold(channels, |a, &d| a.checked_mul(d))?;
    if cog > MAX_COG || g.in_channels / groups < MIN_CIG || taps < MIN_TAPS || len > MAX_COLUMNS {
        return None;
    }
    Some(ConvTranspose2dGeometry {
        batch: g.batch,
        in_channels: g.in_channels,
        in_h: g.in_h,
        in_w: g.in_w,
        out_channels: channels,
        groups: g.groups,
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        out_h: g.in_h,
        out_w: g.in_w,
    })
}

/// The col2im step: `Y` `[N, C_out·kH·kW, H, W]` to the output `[N, C_out, OH, OW]`.
///
/// Phase by phase (output pixels `q·s + first` along each axis), so that
/// every tap's contribution is a contiguous, vectorized add of a `Y` row
/// into a phase row on the stack (`Y[(kh, kw), q_h + a, q_w + b]`), and
/// each output pixel is written once, strided, with its bias: tap by tap
/// over the output instead, every one of the `kH·kW` adds is a strided
/// read-modify-write (FSRCNN x2: 3.2 ms, most of it there).
#[derive(Debug)]
pub(crate) struct Col2Im {
    kernel_w: usize,
    taps: usize,
    in_hw: [usize; 2],
    out_w: usize,
    h: AxisPlan,
    w: AxisPlan,
    c_out: usize,
    bias: Vec<f32>,
    act: Activation,
}

/// Columns of one phase row processed at a time (a stack buffer).
const CHUNK: usize = 1024;

impl Col2Im {
    /// The col2im of `g` (which [`gemm_geometry`] accepted), with the
    /// layer's bias and activation.
    pub(crate) fn new(g: &ConvTranspose2dGeometry, ep: &Epilogue) -> Result<Col2Im, JitError> {
        g.validate()?;
        let bias = ep.bias.clone().unwrap_or_else(|| vec![0.0; g.out_channels]);
        if bias.len() != g.out_channels {
            return Err(JitError::geometry("col2im", format!("{} biases for {} channels", bias.len(), g.out_channels)));
        }
        let h = conv_transpose_axis(g.in_h, g.out_h, g.kernel[0], g.stride[0], g.padding[0], g.dilation[0]);
        let w = conv_transpose_axis(g.in_w, g.out_w, g.kernel[1], g.stride[1], g.padding[1], g.dilation[1]);
        Ok(Col2Im {
            kernel_w: g.kernel[1],
            taps: g.kernel[0] * g.kernel[1],
            in_hw: [g.in_h, g.in_w],
            out_w: g.out_w,
            h,
            w,
            c_out: g.out_channels,
            bias,
            act: ep.activation,
        })
    }

    /// Bytes of the tables.
    pub(crate) fn table_bytes(&self) -> usize {
        let taps: usize = self.h.phases.iter().chain(&self.w.phases).map(|p| p.taps.len()).sum();
        4 * self.bias.len() + 24 * (taps + self.h.phases.len() + self.w.phases.len())
    }

    /// Adds per output plane (for the kernel info): every `Y` value that
    /// reaches the output.
    pub(crate) fn plane_flops(&self) -> u64 {
        let reach = |a: &AxisPlan| -> u64 {
            (0..a.phases.len())
                .map(|pi| (0..a.phases[pi].count).map(|q| a.valid_taps(pi, q).len() as u64).sum::<u64>())
                .sum()
        };
        reach(&self.h) * reach(&self.w)
    }

    /// Computes output plane `co` of batch item `n` into `out` (one plane)
    /// from `y`, the whole `Y`.
    #[inline(always)]
    pub(crate) fn plane(&self, y: &[f32], n: usize, co: usize, out: &mut [f32]) {
        let [ih, iw] = self.in_hw;
        let ip = ih * iw;
        let ys = &y[(n * self.c_out + co) * self.taps * ip..][..self.taps * ip];
        let bias = self.bias[co];
        let (s_h, s_w) = (self.h.out_step, self.w.out_step);
        let mut row = [0f32; CHUNK];
        for hp in &self.h.phases {
            for qh in 0..hp.count {
                let orow = &mut out[(qh * s_h + hp.first) * self.out_w..][..self.out_w];
                for wp in &self.w.phases {
                    for c0 in (0..wp.count).step_by(CHUNK) {
                        let width = (wp.count - c0).min(CHUNK);
                        let acc = &mut row[..width];
                        acc.fill(bias);
                        for th in &hp.taps {
                            let r = qh as i64 + th.in_off;
                            if r < 0 || r >= ih as i64 {
                                continue;
                            }
                            for tw in &wp.taps {
                                // Phase column c0 + j reads input column c0 + j + in_off.
                                let shift = c0 as i64 + tw.in_off;
                                let first = (-shift).clamp(0, width as i64) as usize;
                                let last = (iw as i64 - shift).clamp(0, width as i64) as usize;
                                if first >= last {
                                    continue;
                                }
                                let src0 = (shift + first as i64) as usize;
                                let yrow = &ys[(th.k * self.kernel_w + tw.k) * ip + r as usize * iw..][..iw];
                                for (a, &v) in acc[first..last].iter_mut().zip(&yrow[src0..]) {
                                    *a += v;
                                }
                            }
                        }
                        for (o, &v) in orow[c0 * s_w + wp.first..].iter_mut().step_by(s_w).zip(acc.iter()) {
                            *o = v;
                        }
                    }
                }
                crate::microkernel::activate(self.act, orow);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_boundaries() {
        let g = |co, k| {
            ConvTranspose2dGeometry::from_output_padding(1, 8, [4, 4], co, 1, [k, k], [2, 2], [0, 0], [0, 0], [1, 1])
                .expect("valid")
        };
        let gemm = gemm_geometry(&g(1, 9)).expect("applies");
        assert_eq!((gemm.out_channels, gemm.out_h, gemm.kernel), (81, 4, [1, 1]));
        assert!(gemm_geometry(&g(1, 2)).is_none(), "4 taps");
        assert!(gemm_geometry(&g(3, 4)).is_none(), "3 output channels");
        let dw =
            ConvTranspose2dGeometry::from_output_padding(1, 8, [4, 4], 8, 8, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1])
                .expect("valid");
        assert!(gemm_geometry(&dw).is_none(), "depthwise: nothing to reduce");
    }
}
