//! Register tiles of the few-channel GEMM ([`crate::gemm`]): `R` rows × 64
//! pixels, one broadcast weight per row and input channel against four zmm
//! (or, per 16-pixel quarter, two ymm) vectors of the packed input block.
//!
//! Bounds: [`tile`] is safe; it checks the slice lengths the kernels index
//! (`xb`: `K` rows of 64 floats, `w`: `K` rows of `mg` floats with
//! `m + R ≤ mg`) before calling them, and the kernels return the
//! accumulators by value.

// Register tiles are indexed `acc[row][vector]` in fully unrolled const
// loops; index loops read like the math and keep the arrays in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// Pixels per tile.
pub(crate) const NB: usize = 64;

/// `Σ_k w[k·mg + m + r] · xb[k·64 + j]` for rows `r < R` and pixels `j < 64`,
/// on the widest ISA this CPU has. `None` without AVX2, or if the slices do
/// not hold what the tile reads (the caller then uses plain loops).
pub(crate) fn tile<const R: usize>(xb: &[f32], w: &[f32], mg: usize, m: usize) -> Option<[[f32; NB]; R]> {
    let k = xb.len() / NB;
    if xb.len() != k * NB || m.checked_add(R)? > mg || w.len() < k.checked_mul(mg)? {
        return None;
    }
    if super::has_avx512() {
        // SAFETY: AVX-512F was detected; the kernel reads `xb[..k·64]` and
        // `w[kk·mg + m + r]` for `kk < k`, `r < R`, all inside (checked above).
        return Some(unsafe { tile512::<R>(xb.as_ptr(), w.as_ptr(), k, mg, m) });
    }
    if super::has_avx2() {
        // SAFETY: as above, with AVX2 and FMA detected.
        return Some(unsafe { tile256::<R>(xb.as_ptr(), w.as_ptr(), k, mg, m) });
    }
    None
}

/// zmm tile: `R` rows × 4 vectors.
///
/// # Safety
/// AVX-512F; `xb` valid for `k·64` floats, `w` for `k·mg` with `m + R ≤ mg`.
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize>(xb: *const f32, w: *const f32, k: usize, mg: usize, m: usize) -> [[f32; NB]; R] {
    // SAFETY: (whole body) the caller's bounds, see above.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        let mut xp = xb;
        let mut wp = w.add(m);
        for _ in 0..k {
            let x = [
                _mm512_loadu_ps(xp),
                _mm512_loadu_ps(xp.add(16)),
                _mm512_loadu_ps(xp.add(32)),
                _mm512_loadu_ps(xp.add(48)),
            ];
            for r in 0..R {
                let b = _mm512_set1_ps(*wp.add(r));
                for v in 0..4 {
                    acc[r][v] = _mm512_fmadd_ps(b, x[v], acc[r][v]);
                }
            }
            xp = xp.add(NB);
            wp = wp.add(mg);
        }
        let mut out = [[0f32; NB]; R];
        for r in 0..R {
            for v in 0..4 {
                _mm512_storeu_ps(out[r].as_mut_ptr().add(16 * v), acc[r][v]);
            }
        }
        out
    }
}

/// ymm tile: per 16-pixel quarter, `R` rows × 2 vectors (12 accumulators
/// of 16 registers at `R = 6`).
///
/// # Safety
/// AVX2 and FMA; bounds as for [`tile512`].
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize>(xb: *const f32, w: *const f32, k: usize, mg: usize, m: usize) -> [[f32; NB]; R] {
    // SAFETY: (whole body) the caller's bounds, see above.
    unsafe {
        let mut out = [[0f32; NB]; R];
        for q in 0..NB / 16 {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let mut xp = xb.add(16 * q);
            let mut wp = w.add(m);
            for _ in 0..k {
                let x = [_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8))];
                for r in 0..R {
                    let b = _mm256_set1_ps(*wp.add(r));
                    for v in 0..2 {
                        acc[r][v] = _mm256_fmadd_ps(b, x[v], acc[r][v]);
                    }
                }
                xp = xp.add(NB);
                wp = wp.add(mg);
            }
            for r in 0..R {
                for v in 0..2 {
                    _mm256_storeu_ps(out[r].as_mut_ptr().add(16 * q + 8 * v), acc[r][v]);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both vector kernels (where the CPU has them) agree with the plain
    /// loops, for every row count; bad slices are refused.
    #[test]
    fn kernels_agree() {
        let (k, mg) = (37, 11);
        let xb: Vec<f32> = (0..k * NB).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let w: Vec<f32> = (0..k * mg).map(|i| ((i * 7) % 13) as f32 / 4.0 - 1.5).collect();
        fn check<const R: usize>(xb: &[f32], w: &[f32], k: usize, mg: usize, m: usize) {
            let mut want = [[0f64; NB]; R];
            for kk in 0..k {
                for r in 0..R {
                    for j in 0..NB {
                        want[r][j] += f64::from(w[kk * mg + m + r]) * f64::from(xb[kk * NB + j]);
                    }
                }
            }
            let close = |got: [[f32; NB]; R]| {
                got.iter().flatten().zip(want.iter().flatten()).all(|(&a, &b)| (f64::from(a) - b).abs() < 1e-3)
            };
            let got = tile::<R>(xb, w, mg, m);
            assert_eq!(got.is_some(), super::super::has_avx2(), "dispatch, R={R}");
            assert!(got.is_none_or(close), "dispatch, R={R}");
            if super::super::has_avx2() {
                // SAFETY: AVX2 and FMA detected; bounds as `tile` checks them.
                assert!(close(unsafe { tile256::<R>(xb.as_ptr(), w.as_ptr(), k, mg, m) }), "avx2, R={R}");
            }
            if super::super::has_avx512() {
                // SAFETY: AVX-512F detected; bounds as above.
                assert!(close(unsafe { tile512::<R>(xb.as_ptr(), w.as_ptr(), k, mg, m) }), "avx512, R={R}");
            }
        }
        check::<6>(&xb, &w, k, mg, 5);
        check::<5>(&xb, &w, k, mg, 0);
        check::<3>(&xb, &w, k, mg, 8);
        check::<1>(&xb, &w, k, mg, 10);
        assert!(tile::<6>(&xb, &w, mg, 6).is_none(), "rows past mg");
        assert!(tile::<2>(&xb[1..], &w, mg, 0).is_none(), "a partial input row");
        assert!(tile::<2>(&xb, &w[1..], mg, 0).is_none(), "weights short");
    }
}
