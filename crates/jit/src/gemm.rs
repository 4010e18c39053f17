//! The GEMM step of a few-channel transposed convolution ([`crate::col2im`]):
//! `Y[n, (g, m), p] = Σ_k W[g, k, m] · x[n, (g, k), p]`, lanes along pixels.
//!
//! With lanes along `m` (channel tiles), `m = C_out·kH·kW` is 36–81, so
//! panels of 32 leave lanes idle and every result is a channel-strided
//! scalar store (ESPCN x2's 32 → 36 GEMM ran at 39 GFLOP/s). Here a register
//! tile is [`MR`] rows `m` × [`NB`] pixels: per input channel one broadcast
//! weight per row and `NB` contiguous input floats, and results are
//! contiguous rows of `Y`. The input block is first copied into a dense
//! buffer (`K` rows of `NB` floats, zeros past the last pixel), because
//! input channel planes a multiple of 4 KiB apart would share one L1 set.
//!
//! Safe Rust over bounds-checked slices, run as a plane kernel; the
//! register tiles are `crate::microkernel::gemm_tile`'s (AVX-512 or AVX2,
//! which check the slices they are given), else plain loops. Measured on one
//! Zen 4 thread against channel tiles for the GEMM step (whole layer, ms):
//! ESPCN x2 (32 → 36 rows, 160x160) 1.77 → 1.00, FSRCNN x2 (56 → 81,
//! 128x128) 2.84 → 2.15, FSRCNN x3 on 15x23 patches 1.11 → 0.82, ESPCN x4
//! 0.36 → 0.30.

use crate::error::JitError;
use crate::geometry::ConvTranspose2dGeometry;

/// Pixels per register tile (four zmm or eight ymm vectors per row).
const NB: usize = 64;

/// Rows `m` per register tile (6 × 4 zmm accumulators of 32 registers).
const MR: usize = 6;

/// Input channels per packed block: the buffer is `KB·NB` floats (32 KiB)
/// on the stack; larger reductions add block by block into `Y`.
const KB: usize = 128;

/// Least share of a pixel block's lanes that must be real pixels (the last
/// block of a plane is zero-padded): below it channel tiles compute the
/// GEMM instead (MNIST-GAN's 14x14 head, 196 = 3·64 + 4 pixels: 0.28 ms
/// with channel tiles, 0.31–0.34 here).
const MIN_LANE_USE: f64 = 0.85;

/// Whether the pixel-lane GEMM computes `gemm` (the 1×1 geometry of
/// [`crate::col2im::gemm_geometry`]): its planes fill the pixel blocks.
pub(crate) fn applies(gemm: &ConvTranspose2dGeometry) -> bool {
    let pixels = gemm.in_h.saturating_mul(gemm.in_w);
    pixels > 0 && pixels as f64 / (pixels.div_ceil(NB) * NB) as f64 >= MIN_LANE_USE
}

/// The GEMM of one few-channel transposed convolution.
#[derive(Debug)]
pub(crate) struct Gemm {
    groups: usize,
    /// Input channels per group (the reduction).
    cig: usize,
    /// Rows of `Y` per group (`C_out/g · kH · kW`).
    mg: usize,
    /// Pixels per plane.
    pixels: usize,
    /// `[g][k][m]` (PyTorch's `[C_in, C_out/g, kH, kW]` is exactly this).
    weights: Vec<f32>,
}

impl Gemm {
    /// The GEMM of `gemm`, the 1×1 geometry [`crate::col2im::gemm_geometry`]
    /// made (its `out_channels` are the rows of `Y`); `weights` in PyTorch's
    /// layout of the original layer.
    pub(crate) fn new(gemm: &ConvTranspose2dGeometry, weights: &[f32]) -> Result<Gemm, JitError> {
        gemm.validate()?;
        let groups = gemm.groups.max(1);
        if gemm.kernel != [1, 1] || gemm.stride != [1, 1] || gemm.padding != [0, 0] || gemm.out_h != gemm.in_h {
            return Err(JitError::geometry("gemm", format!("not a 1x1 GEMM geometry: {gemm:?}")));
        }
        if weights.len() != gemm.weight_len() {
            return Err(JitError::geometry(
                "gemm",
                format!("{} weights, expected {}", weights.len(), gemm.weight_len()),
            ));
        }
        Ok(Gemm {
            groups,
            cig: gemm.in_channels / groups,
            mg: gemm.out_channels / groups,
            pixels: gemm.in_h * gemm.in_w,
            weights: weights.to_vec(),
        })
    }

    /// Bytes of the weights.
    pub(crate) fn table_bytes(&self) -> usize {
        4 * self.weights.len()
    }

    /// Multiply-adds per plane of `Y` (for the kernel info).
    pub(crate) fn plane_flops(&self) -> u64 {
        2 * (self.cig * self.pixels) as u64
    }

    /// Computes planes `start..start + out.len()/pixels` of `Y` (item `q` is
    /// batch item `q / M`, row `q % M`, `M = groups·mg`) from `x`, the
    /// whole input.
    #[inline(always)]
    pub(crate) fn planes(&self, x: &[f32], out: &mut [f32], start: usize) {
        let (np, m_all) = (self.pixels, self.groups * self.mg);
        let count = out.len() / np;
        let mut xp = [0f32; KB * NB];
        let mut q = start;
        while q < start + count {
            // A run of rows of one batch item and group.
            let (n, m) = (q / m_all, q % m_all);
            let (g, r0) = (m / self.mg, m % self.mg);
            let rows = (self.mg - r0).min(start + count - q);
            let y = &mut out[(q - start) * np..][..rows * np];
            let xg = &x[(n * self.groups + g) * self.cig * np..][..self.cig * np];
            let wg = &self.weights[g * self.cig * self.mg..][..self.cig * self.mg];
            self.run(xg, wg, r0, rows, y, &mut xp);
            q += rows;
        }
    }

    /// Rows `r0..r0 + rows` of one group's `Y` (`y`: those rows) from its
    /// input `xg` (`cig` planes) and weights `wg` (`[k][mg]`).
    #[inline(always)]
    fn run(&self, xg: &[f32], wg: &[f32], r0: usize, rows: usize, y: &mut [f32], xp: &mut [f32; KB * NB]) {
        let np = self.pixels;
        for p0 in (0..np).step_by(NB) {
            let valid = (np - p0).min(NB);
            for k0 in (0..self.cig).step_by(KB) {
                let kn = (self.cig - k0).min(KB);
                for k in 0..kn {
                    let dst = &mut xp[k * NB..][..NB];
                    let src = &xg[(k0 + k) * np + p0..][..valid];
                    match (<&mut [f32; NB]>::try_from(&mut *dst), <&[f32; NB]>::try_from(src)) {
                        // Whole blocks as fixed-size copies (vector moves, no call).
                        (Ok(d), Ok(s)) => *d = *s,
                        _ => {
                            dst[..valid].copy_from_slice(src);
                            dst[valid..].fill(0.0);
                        }
                    }
                }
                let xb = &xp[..kn * NB];
                let w = &wg[k0 * self.mg..][..kn * self.mg];
                let first = k0 == 0;
                let mut r = 0;
                while r < rows {
                    let left = rows - r;
                    let m = r0 + r;
                    let yr = &mut y[r * np..];
                    match left {
                        6.. => tile::<6>(xb, w, self.mg, m, yr, np, p0, valid, first),
                        5 => tile::<5>(xb, w, self.mg, m, yr, np, p0, valid, first),
                        4 => tile::<4>(xb, w, self.mg, m, yr, np, p0, valid, first),
                        3 => tile::<3>(xb, w, self.mg, m, yr, np, p0, valid, first),
                        2 => tile::<2>(xb, w, self.mg, m, yr, np, p0, valid, first),
                        _ => tile::<1>(xb, w, self.mg, m, yr, np, p0, valid, first),
                    }
                    r += left.min(MR);
                }
            }
        }
    }
}

/// One register tile: rows `m..m + R` of `Y` over the pixel block at `p0`
/// (`valid` real pixels), reducing the packed block `xb` (`K` rows of
/// [`NB`]) with weights `w` (`[K][mg]`); `first`: the first block of input
/// channels (stores), else adds to `y`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<const R: usize>(
    xb: &[f32],
    w: &[f32],
    mg: usize,
    m: usize,
    y: &mut [f32],
    np: usize,
    p0: usize,
    valid: usize,
    first: bool,
) {
    let acc = reduce::<R>(xb, w, mg, m);
    for (i, a) in acc.iter().enumerate() {
        let dst = &mut y[i * np + p0..][..valid];
        if first {
            dst.copy_from_slice(&a[..valid]);
        } else {
            for (d, &s) in dst.iter_mut().zip(a) {
                *d += s;
            }
        }
    }
}

/// The tile's sums, by the vector kernels where the CPU has them, else by
/// plain loops.
#[inline(always)]
fn reduce<const R: usize>(xb: &[f32], w: &[f32], mg: usize, m: usize) -> [[f32; NB]; R] {
    #[cfg(target_arch = "x86_64")]
    if let Some(acc) = crate::microkernel::gemm_tile::tile::<R>(xb, w, mg, m) {
        return acc;
    }
    let mut acc = [[0f32; NB]; R];
    for (xr, wr) in xb.chunks_exact(NB).zip(w.chunks_exact(mg)) {
        for (a, &wv) in acc.iter_mut().zip(&wr[m..m + R]) {
            for (s, &xv) in a.iter_mut().zip(xr) {
                *s += wv * xv;
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Y` by the definition, in f64.
    fn naive(g: &ConvTranspose2dGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (gr, cig, mg, np) = (g.groups, g.in_channels / g.groups, g.out_channels / g.groups, g.in_h * g.in_w);
        let mut y = vec![0f32; g.batch * g.out_channels * np];
        for n in 0..g.batch {
            for gi in 0..gr {
                for m in 0..mg {
                    for p in 0..np {
                        let s: f64 = (0..cig)
                            .map(|k| {
                                f64::from(w[(gi * cig + k) * mg + m]) * f64::from(x[((n * gr + gi) * cig + k) * np + p])
                            })
                            .sum();
                        y[((n * gr + gi) * mg + m) * np + p] = s as f32;
                    }
                }
            }
        }
        y
    }

    /// Odd pixel counts (a partial last block), rows not a multiple of the
    /// tile, two groups, a reduction longer than one packed block, and work
    /// ranges starting and ending inside a group's rows.
    #[test]
    fn planes_match_the_definition() {
        for (batch, cin, rows, groups, hw) in
            [(2, 130, 13, 1, [5, 23]), (1, 40, 2 * 36, 2, [9, 8]), (3, 8, 7, 1, [1, 1])]
        {
            let g = ConvTranspose2dGeometry::from_output_padding(
                batch,
                cin,
                hw,
                rows,
                groups,
                [1, 1],
                [1, 1],
                [0, 0],
                [0, 0],
                [1, 1],
            )
            .unwrap();
            let x: Vec<f32> =
                (0..batch * cin * hw[0] * hw[1]).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 104_729) % 997) as f32 / 498.0 - 1.0).collect();
            let want = naive(&g, &x, &w);
            let gemm = Gemm::new(&g, &w).unwrap();
            let np = hw[0] * hw[1];
            let items = batch * rows;
            for cut in [0, 1, 5, items / 2, items - 1] {
                let mut got = vec![f32::NAN; items * np];
                let (a, b) = got.split_at_mut(cut * np);
                gemm.planes(&x, a, 0);
                gemm.planes(&x, b, cut);
                for (i, (&u, &v)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                        "{batch}x{cin}->{rows}/{groups} {hw:?} cut {cut}: [{i}] {u} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn lane_use_decides() {
        let g = |h: usize, w: usize| {
            ConvTranspose2dGeometry::from_output_padding(1, 8, [h, w], 81, 1, [1, 1], [1, 1], [0, 0], [0, 0], [1, 1])
                .unwrap()
        };
        assert!(applies(&g(160, 160)));
        assert!(applies(&g(15, 23)), "345 of 384 lanes");
        assert!(!applies(&g(14, 14)), "196 of 256 lanes");
    }
}
