//! Depthwise (and tiny-group) transposed convolutions with a large stride,
//! row by row: FCN's bilinear upsamplers (k = 2s, s ≥ 16).
//!
//! Such a layer has one or two input channels per group and about
//! `(k/s)²` taps per output pixel, so phase-based tiles do a handful of
//! FMAs per call over `s²` phase pairs of a few pixels each (FCN-32s: 1024
//! pairs of 10 pixels, 2.6 GFLOP/s and 0.3 s of compile time). Here each
//! output row is written once: it starts as the bias, and for each of its
//! vertical taps `(ih, kh)` and each input column `iw`, the kernel row `kh`
//! (dilated, zeros in the gaps) scaled by `x[ih, iw]` is added to the
//! output columns `iw·s − p ..` it reaches, clipped to the row: one
//! contiguous axpy per input pixel, in L1. Input columns are taken in
//! `⌈k_eff / s⌉` passes (`iw ≡ r` mod the pass count) so that consecutive
//! axpys never overlap: overlapping ones would reload what the previous
//! one stored before the store has left the pipeline.
//!
//! Everything is safe Rust over bounds-checked slices, run as a plane
//! kernel ([`crate::plane`], compiled for the baseline ISA, AVX2 and
//! AVX-512); the tables below are built from the validated geometry.

use crate::epilogue::{Activation, Epilogue};
use crate::error::JitError;
use crate::geometry::ConvTranspose2dGeometry;

/// Least horizontal stride this kernel serves. Measured on one Zen 4 core
/// against the phase tiles (ms, best of 2, compile ms in brackets): FCN-32s'
/// k64 s32 upsampler 0.85 [1.1] vs 3.8 [1.2]; FCN-16s' k32 s16 1.37 [0.4]
/// vs 1.63 [315]; but FCN-8s' k16 s8 2.26 vs 1.34 and CenterNet's k16 s8
/// 1.18 vs 0.67: an axpy of 16 floats does not amortize its clipping and
/// loop overhead. (A first version in 16-column blocks summing kernel
/// windows ran FCN-32s' layer in 2.5 ms.)
const MIN_STRIDE: usize = 16;

/// Most input channels per group this kernel serves (cost grows with it;
/// channel and pixel tiles reduce over channels in registers).
const MAX_CIG: usize = 2;

/// Most output channels per group.
const MAX_COG: usize = 4;

/// Longest dilated kernel row (`d·(k − 1) + 1`) kept per tap row.
const MAX_K_EFF: usize = 1024;

/// Most (input channel, vertical tap) pairs of one output row
/// (`cig · ⌈k_h / (s_h / gcd(s_h, d_h))⌉`): the work per output row grows
/// with it, where channel and pixel tiles share loads instead.
const MAX_ROW_TAPS: usize = 16;

/// Tables of one layer.
#[derive(Debug)]
pub(crate) struct DwRows {
    cig: usize,
    cog: usize,
    c_in: usize,
    in_hw: [usize; 2],
    out_w: usize,
    /// Dilated kernel rows, `[c_out][cig][k_h]` rows of `k_eff` floats
    /// (kernel column `kw` at `kw·d_w`, zeros between).
    weights: Vec<f32>,
    k_h: usize,
    /// Per output row, its range in `taps`.
    rows: Vec<(usize, usize)>,
    /// `(input row, kernel row)` pairs.
    taps: Vec<(usize, usize)>,
    /// Passes over the input columns (`⌈k_eff / s⌉`): within one, the
    /// output runs of its columns are disjoint.
    passes: usize,
    pad_w: i64,
    stride_w: i64,
    k_eff: usize,
    d_w: usize,
    bias: Vec<f32>,
    act: Activation,
}

impl DwRows {
    /// Whether a layer is in this kernel's class: few channels per group
    /// (depthwise), several groups, a horizontal stride of at least
    /// [`MIN_STRIDE`], and few kernel rows per output row.
    pub(crate) fn applies(g: &ConvTranspose2dGeometry) -> bool {
        Self::fits(g) && g.stride[1] >= MIN_STRIDE
    }

    /// Whether the tables can describe a layer (any stride): few channels
    /// per group, several groups, and few kernel rows per output row.
    fn fits(g: &ConvTranspose2dGeometry) -> bool {
        let cig = g.in_channels / g.groups.max(1);
        let cog = g.out_channels / g.groups.max(1);
        let k_eff = g.dilation[1].saturating_mul(g.kernel[1].saturating_sub(1)).saturating_add(1);
        // Kernel rows reaching one output row: every (s/gcd(s, d))-th.
        let (s_h, d_h) = (g.stride[0].max(1), g.dilation[0].max(1));
        let step = s_h / gcd(s_h, d_h);
        let row_taps = g.kernel[0].div_ceil(step).saturating_mul(cig);
        g.groups > 1 && cig <= MAX_CIG && cog <= MAX_COG && k_eff <= MAX_K_EFF && row_taps <= MAX_ROW_TAPS
    }

    /// Builds the tables; `weights` in PyTorch's `[C_in, C_out/groups, kH, kW]`.
    pub(crate) fn new(g: &ConvTranspose2dGeometry, weights: &[f32], ep: &Epilogue) -> Result<DwRows, JitError> {
        let name = "conv_transpose2d";
        g.validate()?;
        if !Self::fits(g) {
            return Err(JitError::geometry(
                name,
                "not a depthwise layer with few kernel rows per output row".to_string(),
            ));
        }
        let (cig, cog) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let [k_h, k_w] = g.kernel;
        let [d_h, d_w] = g.dilation;
        if weights.len() != g.weight_len() {
            return Err(JitError::geometry(name, format!("{} weights, expected {}", weights.len(), g.weight_len())));
        }
        let k_eff = d_w * (k_w - 1) + 1;
        let mut packed = vec![0f32; g.out_channels * cig * k_h * k_eff];
        for gi in 0..g.groups {
            for ci in 0..cig {
                for co in 0..cog {
                    for kh in 0..k_h {
                        let src = &weights[(((gi * cig + ci) * cog + co) * k_h + kh) * k_w..][..k_w];
                        let dst = &mut packed[(((gi * cog + co) * cig + ci) * k_h + kh) * k_eff..][..k_eff];
                        for (kw, &w) in src.iter().enumerate() {
                            dst[kw * d_w] = w;
                        }
                    }
                }
            }
        }
        // Vertical taps per output row: input row `ih` reaches output row
        // `ih·s − p + kh·d`.
        let (s_h, p_h) = (g.stride[0] as i64, g.padding[0] as i64);
        let mut rows = Vec::with_capacity(g.out_h);
        let mut taps = Vec::new();
        for oh in 0..g.out_h as i64 {
            let start = taps.len();
            for kh in 0..k_h {
                let t = oh + p_h - (kh * d_h) as i64;
                if t >= 0 && t % s_h == 0 && t / s_h < g.in_h as i64 {
                    taps.push(((t / s_h) as usize, kh));
                }
            }
            rows.push((start, taps.len() - start));
        }
        let (s_w, p_w) = (g.stride[1] as i64, g.padding[1] as i64);
        let bias = ep.bias.clone().unwrap_or_else(|| vec![0.0; g.out_channels]);
        if bias.len() != g.out_channels {
            return Err(JitError::geometry(name, format!("{} biases for {} channels", bias.len(), g.out_channels)));
        }
        Ok(DwRows {
            cig,
            cog,
            c_in: g.in_channels,
            in_hw: [g.in_h, g.in_w],
            out_w: g.out_w,
            weights: packed,
            k_h,
            rows,
            taps,
            passes: k_eff.div_ceil(g.stride[1]),
            pad_w: p_w,
            stride_w: s_w,
            k_eff,
            d_w,
            bias,
            act: ep.activation,
        })
    }

    /// Bytes of the tables.
    pub(crate) fn table_bytes(&self) -> usize {
        4 * (self.weights.len() + self.bias.len()) + 16 * (self.rows.len() + self.taps.len())
    }

    /// Useful FLOPs of one output plane's taps (for the kernel info).
    pub(crate) fn plane_flops(&self) -> u64 {
        let per_row: u64 = self.taps.len() as u64 * self.in_hw[1] as u64;
        // Each (tap row, input column) pair applies a kernel row.
        2 * per_row * self.k_eff.div_ceil(self.d_w) as u64 * self.cig as u64
    }

    /// Computes output plane `co` of batch item `n` into `out` (one plane).
    #[inline(always)]
    pub(crate) fn plane(&self, x: &[f32], n: usize, co: usize, out: &mut [f32]) {
        let [in_h, in_w] = self.in_hw;
        let ip = in_h * in_w;
        let g = co / self.cog;
        let k_eff = self.k_eff;
        let planes = &x[(n * self.c_in + g * self.cig) * ip..][..self.cig * ip];
        // An infinite or NaN input times a dilation zero would put NaN in a
        // column it does not reach: with dilation, such planes add real taps
        // only (cheap to detect: the output is s² times larger than the
        // input). Undilated kernel rows hold real taps only.
        let finite = self.d_w == 1 || planes.iter().all(|v| v.is_finite());
        let weights = &self.weights[co * self.cig * self.k_h * k_eff..][..self.cig * self.k_h * k_eff];
        let out_w = self.out_w as i64;
        for (oh, orow) in out.chunks_exact_mut(self.out_w).enumerate() {
            orow.fill(self.bias[co]);
            let (t0, nt) = self.rows[oh];
            for ci in 0..self.cig {
                for &(ih, kh) in &self.taps[t0..][..nt] {
                    let xr = &planes[ci * ip + ih * in_w..][..in_w];
                    let kr = &weights[(ci * self.k_h + kh) * k_eff..][..k_eff];
                    for pass in 0..self.passes {
                        for iw in (pass..in_w).step_by(self.passes) {
                            // Output column of kernel column 0, and the kernel
                            // columns that land inside the row.
                            let start = iw as i64 * self.stride_w - self.pad_w;
                            let (a, b) = ((-start).clamp(0, k_eff as i64), (out_w - start).clamp(0, k_eff as i64));
                            if a >= b {
                                continue;
                            }
                            let (a, b) = (a as usize, b as usize);
                            let (Some(dst), Some(src)) =
                                (orow.get_mut((start + a as i64) as usize..(start + b as i64) as usize), kr.get(a..b))
                            else {
                                continue;
                            };
                            let v = xr[iw];
                            if finite {
                                for (o, &w) in dst.iter_mut().zip(src) {
                                    *o += v * w;
                                }
                            } else {
                                for (j, (o, &w)) in dst.iter_mut().zip(src).enumerate() {
                                    if (a + j) % self.d_w == 0 {
                                        *o += v * w;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            crate::microkernel::activate(self.act, orow);
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct scatter definition of a transposed convolution (PyTorch's).
    fn reference(g: &ConvTranspose2dGeometry, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (cig, cog) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let mut y = vec![0f32; g.batch * g.out_channels * g.out_h * g.out_w];
        for n in 0..g.batch {
            for co in 0..g.out_channels {
                for p in 0..g.out_h * g.out_w {
                    y[(n * g.out_channels + co) * g.out_h * g.out_w + p] = bias[co];
                }
            }
            for gi in 0..g.groups {
                for ci in 0..cig {
                    for co in 0..cog {
                        for ih in 0..g.in_h {
                            for iw in 0..g.in_w {
                                let v = x[((n * g.in_channels + gi * cig + ci) * g.in_h + ih) * g.in_w + iw];
                                for kh in 0..g.kernel[0] {
                                    for kw in 0..g.kernel[1] {
                                        let oh = (ih * g.stride[0] + kh * g.dilation[0]) as i64 - g.padding[0] as i64;
                                        let ow = (iw * g.stride[1] + kw * g.dilation[1]) as i64 - g.padding[1] as i64;
                                        if oh < 0 || ow < 0 || oh >= g.out_h as i64 || ow >= g.out_w as i64 {
                                            continue;
                                        }
                                        let wv =
                                            w[(((gi * cig + ci) * cog + co) * g.kernel[0] + kh) * g.kernel[1] + kw];
                                        let o = gi * cog + co;
                                        y[((n * g.out_channels + o) * g.out_h + oh as usize) * g.out_w
                                            + ow as usize] += v * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    /// Against the scatter definition: FCN- and CenterNet-like upsamplers,
    /// a multiplier of 3, two channels per group, dilation, kernels shorter
    /// than the stride (holes), output padding, runs clipped at both row ends.
    #[test]
    fn matches_the_scatter_definition() {
        // (n, c_in, [h, w], c_out, groups, k, s, p, op, d)
        #[allow(clippy::type_complexity)]
        let cases: &[(
            usize,
            usize,
            [usize; 2],
            usize,
            usize,
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
        )] = &[
            (1, 3, [5, 4], 3, 3, [64, 64], [32, 32], [16, 16], [0, 0], [1, 1]),
            (2, 4, [3, 7], 4, 4, [16, 16], [8, 8], [4, 4], [0, 0], [1, 1]),
            (1, 2, [4, 5], 6, 2, [8, 8], [4, 4], [2, 2], [1, 3], [1, 1]),
            (1, 4, [3, 3], 2, 2, [5, 3], [3, 5], [1, 0], [0, 4], [2, 3]),
            (1, 3, [2, 9], 3, 3, [2, 2], [6, 6], [0, 1], [5, 2], [1, 1]),
        ];
        for (i, c) in cases.iter().enumerate() {
            let g = ConvTranspose2dGeometry::from_output_padding(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9)
                .expect("valid");
            assert!(DwRows::fits(&g), "case {i}");
            let x: Vec<f32> = (0..g.input_len()).map(|v| ((v * 7 + 3) % 11) as f32 - 5.0).collect();
            let w: Vec<f32> = (0..g.weight_len()).map(|v| ((v * 5 + 1) % 13) as f32 / 6.0 - 1.0).collect();
            let bias: Vec<f32> = (0..g.out_channels).map(|c| c as f32 * 0.5 - 1.0).collect();
            let k = DwRows::new(&g, &w, &Epilogue { bias: Some(bias.clone()), activation: Activation::Identity })
                .expect("builds");
            let plane = g.out_h * g.out_w;
            let mut y = vec![f32::NAN; g.batch * g.out_channels * plane];
            for (q, o) in y.chunks_exact_mut(plane).enumerate() {
                k.plane(&x, q / g.out_channels, q % g.out_channels, o);
            }
            let want = reference(&g, &x, &w, &bias);
            let err = y.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-4, "case {i}: max err {err}");
            // An infinite input reaches only its own taps' outputs (inf or
            // NaN exactly where the definition has them).
            let mut xi = x.clone();
            xi[g.input_len() / 2] = f32::INFINITY;
            for (q, o) in y.chunks_exact_mut(plane).enumerate() {
                k.plane(&xi, q / g.out_channels, q % g.out_channels, o);
            }
            let want = reference(&g, &xi, &w, &bias);
            for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                let same = if b.is_finite() {
                    (a - b).abs() < 1e-4
                } else {
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                };
                assert!(same, "case {i}, inf input: output {j} is {a}, want {b}");
            }
        }
    }

    #[test]
    fn class_boundaries() {
        let g = |ci, co, groups, s| {
            ConvTranspose2dGeometry::from_output_padding(
                1,
                ci,
                [4, 4],
                co,
                groups,
                [4, 4],
                [s, s],
                [0, 0],
                [0, 0],
                [1, 1],
            )
            .expect("valid")
        };
        assert!(DwRows::applies(&g(8, 8, 8, 32)) && DwRows::applies(&g(8, 8, 8, 16)));
        assert!(!DwRows::applies(&g(8, 8, 8, 8)), "stride 8 stays on phase tiles");
        assert!(DwRows::fits(&g(8, 8, 8, 2)));
        assert!(!DwRows::fits(&g(8, 8, 1, 32)), "dense layers stay on channel tiles");
        assert!(!DwRows::fits(&g(24, 8, 8, 32)), "three input channels per group");
    }
}
