//! Depthwise (and tiny-group) transposed convolutions with a large stride,
//! row by row: FCN's and CenterNet's bilinear upsamplers (k2s s s, s = 4..32).
//!
//! Such a layer has one or two input channels per group and about
//! `(k/s)²` taps per output pixel, so phase-based tiles do a handful of
//! FMAs per call over `s²` phase pairs of a few pixels each (FCN-32s: 1024
//! pairs of 10 pixels, 2.6 GFLOP/s and 0.3 s of compile time). Here each
//! output row is computed once, in 16-column blocks: a block accumulates,
//! for each of its row's vertical taps `(ih, kh)` and each input column `iw`
//! whose kernel run `iw·s − p .. + k_eff` meets the block, the broadcast
//! input times a 16-float window of the (zero-padded) kernel row `kh`. The
//! window's offset places kernel column `c − (iw·s − p)` under output column
//! `c`, so overlapping runs, dilation (zeros inside the padded row) and
//! columns no tap reaches (weights zero) need no special case, and the row
//! is written once with its bias and activation.
//!
//! Everything is safe Rust over bounds-checked slices, run as a plane
//! kernel ([`crate::plane`], compiled for the baseline ISA, AVX2 and
//! AVX-512); the tables below are built from the validated geometry.

use crate::epilogue::{Activation, Epilogue};
use crate::error::JitError;
use crate::geometry::ConvTranspose2dGeometry;

/// Output columns per block (one AVX-512 vector, two AVX2 vectors).
const BLOCK: usize = 16;

/// Least horizontal stride this kernel serves. Measured on one Zen 4 core
/// against the phase tiles (ms, compile ms in brackets): FCN-32s' k64 s32
/// upsampler 2.5 [1.0] vs 4.7 [319]; but FCN-16s' k32 s16 2.8 [0.4] vs 1.6
/// [294], FCN-8s' k16 s8 3.1 vs 2.0, CenterNet's k8 s4 2.0 vs 0.6: a block
/// sums (16 + k)/s windows of 16 lanes for about 2k/s useful ones, and its
/// per-block work does not amortize below s = 32.
const MIN_STRIDE: usize = 32;

/// Most input channels per group this kernel serves (cost grows with it;
/// channel and pixel tiles reduce over channels in registers).
const MAX_CIG: usize = 2;

/// Most output channels per group.
const MAX_COG: usize = 4;

/// Longest dilated kernel row (`d·(k − 1) + 1`) kept padded per tap row.
const MAX_K_EFF: usize = 1024;

/// Most (input channel, vertical tap) pairs of one output row
/// (`cig · ⌈k_h·d_h / s_h⌉`, bounded by [`DwRows::applies`]).
const MAX_ROW_TAPS: usize = 16;

/// One 16-column output block: input columns `lo..hi` reach it, and the
/// window of input column `lo + j` starts at `last + span − j·s` in the
/// padded kernel row (`last`: that of `hi − 1`).
#[derive(Debug, Clone, Copy)]
struct Block {
    lo: usize,
    hi: usize,
    last: usize,
    span: usize,
}

/// Tables of one layer.
#[derive(Debug)]
pub(crate) struct DwRows {
    cig: usize,
    cog: usize,
    c_in: usize,
    in_hw: [usize; 2],
    out_w: usize,
    /// Padded weight rows, `[c_out][cig][k_h]` rows of `row_len` floats:
    /// kernel column `j` (dilated) at `BLOCK + j`, zeros elsewhere.
    weights: Vec<f32>,
    row_len: usize,
    k_h: usize,
    /// Per output row, its range in `taps`.
    rows: Vec<(usize, usize)>,
    /// `(input row, kernel row)` pairs.
    taps: Vec<(usize, usize)>,
    /// Per 16-column block, the input columns whose runs meet it.
    blocks: Vec<Block>,
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
        let row_len = k_eff + 2 * BLOCK;
        let mut packed = vec![0f32; g.out_channels * cig * k_h * row_len];
        for gi in 0..g.groups {
            for ci in 0..cig {
                for co in 0..cog {
                    for kh in 0..k_h {
                        let src = &weights[(((gi * cig + ci) * cog + co) * k_h + kh) * k_w..][..k_w];
                        let dst = &mut packed[(((gi * cog + co) * cig + ci) * k_h + kh) * row_len..][..row_len];
                        for (kw, &w) in src.iter().enumerate() {
                            dst[BLOCK + kw * d_w] = w;
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
        // Input columns whose run `iw·s − p .. + k_eff` meets block b.
        let (s_w, p_w) = (g.stride[1] as i64, g.padding[1] as i64);
        let blocks = (0..g.out_w.div_ceil(BLOCK) as i64)
            .map(|b| {
                let (c0, c1) = (b * BLOCK as i64, b * BLOCK as i64 + BLOCK as i64 - 1);
                // iw·s − p ≤ c1  and  iw·s − p + k_eff − 1 ≥ c0.
                let hi = (c1 + p_w).div_euclid(s_w).min(g.in_w as i64 - 1);
                let lo = (c0 + p_w - (k_eff as i64 - 1) + s_w - 1).div_euclid(s_w).max(0);
                // Kernel column under output column c0 for input column iw is
                // c0 − (iw·s − p), at BLOCK + that in the padded row: in
                // 1..=BLOCK + k_eff − 1 for every iw in lo..=hi, so each window
                // lies inside the row.
                let at = |iw: i64| (BLOCK as i64 + c0 + p_w - iw * s_w) as usize;
                if hi < lo {
                    Block { lo: 0, hi: 0, last: 0, span: 0 }
                } else {
                    Block { lo: lo as usize, hi: hi as usize + 1, last: at(hi), span: at(lo) - at(hi) }
                }
            })
            .collect();
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
            row_len,
            k_h,
            rows,
            taps,
            blocks,
            stride_w: s_w,
            k_eff,
            d_w,
            bias,
            act: ep.activation,
        })
    }

    /// Whether dilated kernel column `j` is a kernel tap (not padding or a
    /// dilation gap).
    fn is_tap(&self, j: i64) -> bool {
        j >= 0 && j < self.k_eff as i64 && j % self.d_w as i64 == 0
    }

    /// Bytes of the tables.
    pub(crate) fn table_bytes(&self) -> usize {
        4 * (self.weights.len() + self.bias.len()) + 16 * (self.rows.len() + self.taps.len()) + 32 * self.blocks.len()
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
        let bias = self.bias[co];
        let (code, alpha) = crate::microkernel::act_code(self.act);
        let s = self.stride_w as usize;
        let planes = &x[(n * self.c_in + g * self.cig) * ip..][..self.cig * ip];
        // An infinite or NaN input times a padding zero would spread NaN to
        // columns it does not reach: such planes take the per-lane tap test
        // (cheap to detect: the output is s² times larger than the input).
        let finite = planes.iter().all(|v| v.is_finite());
        let weights = &self.weights[co * self.cig * self.k_h * self.row_len..][..self.cig * self.k_h * self.row_len];
        let nfull = self.out_w / BLOCK;
        for (oh, orow) in out.chunks_exact_mut(self.out_w).enumerate() {
            // This row's (input row, kernel row) pairs, over every input channel.
            let (t0, nt) = self.rows[oh];
            let mut srcs: [(&[f32], &[f32]); MAX_ROW_TAPS] = [(&[], &[]); MAX_ROW_TAPS];
            let mut k = 0;
            for ci in 0..self.cig {
                for &(ih, kh) in &self.taps[t0..][..nt] {
                    if let Some(slot) = srcs.get_mut(k) {
                        let xr = &planes[ci * ip + ih * in_w..][..in_w];
                        let wr = &weights[(ci * self.k_h + kh) * self.row_len..][..self.row_len];
                        *slot = (xr, wr);
                        k += 1;
                    }
                }
            }
            let srcs = &srcs[..k];
            let (full, tail) = orow.split_at_mut(nfull * BLOCK);
            let sum = |blk: &Block| {
                let mut a = [bias; BLOCK];
                for &(xr, wr) in srcs {
                    let (Some(xs), Some(ws)) = (xr.get(blk.lo..blk.hi), wr.get(blk.last..)) else { continue };
                    a = if finite {
                        window_sum(a, xs, ws, blk.span, s)
                    } else {
                        self.window_sum_taps_only(a, xs, ws, blk.span, s, blk.last)
                    };
                }
                if code != 0 {
                    crate::microkernel::act_slice(code, alpha, &mut a);
                }
                a
            };
            for (blk, dst) in self.blocks.iter().zip(full.chunks_exact_mut(BLOCK)) {
                if let Some(dst) = dst.first_chunk_mut::<BLOCK>() {
                    *dst = sum(blk);
                }
            }
            if let Some(blk) = self.blocks.get(nfull).filter(|_| !tail.is_empty()) {
                let a = sum(blk);
                let m = tail.len();
                tail.copy_from_slice(&a[..m]);
            }
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

/// `acc + Σ_j xs[j] · ws[span − j·s ..][..BLOCK]`: the accumulators are a
/// value in and out, so they stay in one vector register (kept as a place,
/// they went to the stack behind alias checks). Two interleaved
/// accumulators measured slower (FCN-8s' layer 3.1 -> 5.1 ms).
#[inline(always)]
fn window_sum(acc: [f32; BLOCK], xs: &[f32], ws: &[f32], span: usize, s: usize) -> [f32; BLOCK] {
    let mut a = acc;
    for (j, &v) in xs.iter().enumerate() {
        let Some(w) = ws.get(span - j * s..).and_then(|w| w.first_chunk::<BLOCK>()) else {
            continue;
        };
        for l in 0..BLOCK {
            a[l] += v * w[l];
        }
    }
    a
}

impl DwRows {
    /// [`window_sum`] restricted to real taps, for an input plane holding
    /// an infinity or NaN: times a padding zero it would spread NaN to
    /// columns it does not reach. `last` is the window row's offset in the
    /// padded kernel row.
    #[inline(never)]
    fn window_sum_taps_only(
        &self,
        acc: [f32; BLOCK],
        xs: &[f32],
        ws: &[f32],
        span: usize,
        s: usize,
        last: usize,
    ) -> [f32; BLOCK] {
        let mut a = acc;
        for (j, &v) in xs.iter().enumerate() {
            let o = span - j * s;
            let Some(w) = ws.get(o..).and_then(|w| w.first_chunk::<BLOCK>()) else {
                continue;
            };
            for l in 0..BLOCK {
                if self.is_tap((last + o + l) as i64 - BLOCK as i64) {
                    a[l] += v * w[l];
                }
            }
        }
        a
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
    /// than the stride (holes), output padding, widths that end mid-block.
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
        assert!(DwRows::applies(&g(8, 8, 8, 32)));
        assert!(!DwRows::applies(&g(8, 8, 8, 16)), "stride 16 stays on phase tiles");
        assert!(DwRows::fits(&g(8, 8, 8, 2)));
        assert!(!DwRows::fits(&g(8, 8, 1, 32)), "dense layers stay on channel tiles");
        assert!(!DwRows::fits(&g(24, 8, 8, 32)), "three input channels per group");
    }
}
