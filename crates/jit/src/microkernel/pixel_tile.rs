//! Pixel tiles (`pv`): lanes are consecutive output pixels of one phase
//! row, `C ≤ 4` output channels, edge lanes masked with fault-suppressing
//! masked loads (for layers with few output channels per group); the
//! multi-row variant shares input rows between two phase rows.
//!
//! Bounds: rows, taps and weight records come from a `PvPlan` that
//! `verify::verify_pv` checked (tap counts, pairable segments, rows inside
//! the input); horizontal overhang is masked per lane here.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::abi::PvArgs;
use super::{store_activated, MAX_PV_TAPS};

/// Lane mask (bit per lane of `l` lanes) of pixels `q0..q0+l` whose input
/// column `q + w_off` lies in `0..in_w`.
#[inline(always)]
fn lane_mask(q0: i64, w_off: i64, in_w: i64, l: i64) -> u32 {
    let lo = (-(q0 + w_off)).clamp(0, l);
    let hi = (in_w - (q0 + w_off)).clamp(0, l);
    if hi <= lo {
        0
    } else {
        (((1u64 << hi) - 1) & !((1u64 << lo) - 1)) as u32
    }
}

/// Pixel tile, zmm: `NV` vectors of 16 consecutive phase pixels × `C` channels.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn pv512<const NV: usize, const C: usize>(
    a: *const f32,
    x: *const u8,
    q0: usize,
    out: *mut u8,
    bias: *const f32,
    args: *const PvArgs,
) {
    // SAFETY: (whole body) the JIT passes the input and output rows and a
    // weight record matching `args`; lanes whose input lies outside the row
    // are masked (masked lanes of `maskz_loadu` do not fault), and pointer
    // arithmetic that may leave the buffer uses `wrapping_offset`.
    unsafe {
        let g = &*args;
        let q0 = q0 as i64;
        let mut acc = [[_mm512_setzero_ps(); C]; NV];
        for c in 0..C {
            let b = _mm512_set1_ps(*bias.add(c));
            for row in acc.iter_mut() {
                row[c] = b;
            }
        }
        let (x_ci, a_ci) = (g.x_ci as isize, g.a_ci as isize);
        // Input channel outer, taps inner: consecutive loads stay within one
        // channel plane (channel planes are often 4 KiB apart, which would
        // alias in L1 if the channel loop were innermost).
        let nt = (g.nt as usize).min(MAX_PV_TAPS);
        let mut masks = [[0u16; NV]; MAX_PV_TAPS];
        let mut full = true;
        for (t, mt) in masks.iter_mut().enumerate().take(nt) {
            let w_off = *g.taps.add(3 * t + 1);
            for (v, m) in mt.iter_mut().enumerate() {
                *m = lane_mask(q0 + 16 * v as i64, w_off, g.in_w, 16) as u16;
                full &= *m == u16::MAX;
            }
        }
        // Few accumulators (one channel, short rows) cannot hide the FMA
        // latency: alternate taps between two accumulator sets then.
        let mut acc2 = [[_mm512_setzero_ps(); C]; NV];
        macro_rules! reduce {
            ($load:expr) => {{
                let mut xc = x.wrapping_offset((q0 * 4) as isize);
                let mut ac = a.cast::<u8>();
                macro_rules! tap {
                    ($t:expr, $dst:ident) => {{
                        let t = $t;
                        let xb = xc.wrapping_offset((*g.taps.add(3 * t) * 4) as isize);
                        let wp = ac.offset(*g.taps.add(3 * t + 2) as isize).cast::<f32>();
                        let mut w = [_mm512_setzero_ps(); C];
                        for (c, wv) in w.iter_mut().enumerate() {
                            *wv = _mm512_set1_ps(*wp.add(c));
                        }
                        for v in 0..NV {
                            let p = xb.wrapping_offset(64 * v as isize).cast::<f32>();
                            let xv = $load(p, masks[t][v]);
                            for c in 0..C {
                                $dst[v][c] = _mm512_fmadd_ps(xv, w[c], $dst[v][c]);
                            }
                        }
                    }};
                }
                for _ in 0..g.cig {
                    let mut t = 0;
                    if NV * C <= 8 {
                        while t + 1 < nt {
                            tap!(t, acc);
                            tap!(t + 1, acc2);
                            t += 2;
                        }
                    }
                    while t < nt {
                        tap!(t, acc);
                        t += 1;
                    }
                    xc = xc.wrapping_offset(x_ci);
                    ac = ac.offset(a_ci);
                }
            }};
        }
        if full {
            reduce!(|p: *const f32, _m: u16| _mm512_loadu_ps(p));
        } else {
            reduce!(|p: *const f32, m: u16| _mm512_maskz_loadu_ps(m, p));
        }
        for v in 0..NV {
            for c in 0..C {
                acc[v][c] = _mm512_add_ps(acc[v][c], acc2[v][c]);
            }
        }
        let alpha = f32::from_bits(g.alpha as u32);
        let (oc, osw) = (g.oc as isize, g.osw as isize);
        for v in 0..NV {
            let first = q0 + 16 * v as i64;
            let n = (g.nq - first).clamp(0, 16) as usize;
            if n == 0 {
                continue;
            }
            for c in 0..C.min(g.nc as usize) {
                let mut lanes = [0f32; 16];
                _mm512_storeu_ps(lanes.as_mut_ptr(), acc[v][c]);
                let o = out.offset(first as isize * osw + c as isize * oc);
                store_activated(&lanes, n, o, osw, g.act, alpha);
            }
        }
    }
}

/// Multi-row pixel tile, zmm: `NV` vectors of 16 consecutive pixels × `C`
/// channels × `R` consecutive phase rows that share their vertical taps (a
/// row segment whose vertical taps read consecutive input rows).
///
/// Row `r`'s tap `(th, tw)` reads the same input as row 0's tap
/// `(th + r, tw)`, so each input vector loaded feeds up to `R` rows:
/// `nth + R - 1` instead of `R·nth` loads per horizontal tap. Short rows
/// with few channels are load-bound otherwise.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn pv512rows<const NV: usize, const C: usize, const R: usize>(
    a: *const f32,
    x: *const u8,
    q0: usize,
    out: *mut u8,
    bias: *const f32,
    args: *const PvArgs,
) {
    // SAFETY: (whole body) as for `pv512`; the planner only pairs rows of
    // one segment whose vertical taps are consecutive input rows, so every
    // load is an input the two rows' valid taps read.
    unsafe {
        let g = &*args;
        let q0 = q0 as i64;
        let mut acc = [[[_mm512_setzero_ps(); C]; NV]; R];
        for c in 0..C {
            let b = _mm512_set1_ps(*bias.add(c));
            for r in 0..R {
                for v in 0..NV {
                    acc[r][v][c] = b;
                }
            }
        }
        let (x_ci, a_ci) = (g.x_ci as isize, g.a_ci as isize);
        let ntw = (g.ntw as usize).clamp(1, MAX_PV_TAPS);
        let nth = (g.nt as usize).min(MAX_PV_TAPS) / ntw;
        // The planner never pairs rows without taps (`PvSegment::pairable`)
        // and the verifier checks it; bias-only rows still must not form
        // `nth - 1` below.
        let nth_reduce = if nth == 0 { 0 } else { nth + R - 1 };
        let row_in = g.row_in as isize;
        let mut masks = [[0u16; NV]; MAX_PV_TAPS];
        let mut full = true;
        for (tw, mt) in masks.iter_mut().enumerate().take(ntw) {
            let w_off = *g.taps.add(3 * tw + 1);
            for (v, m) in mt.iter_mut().enumerate() {
                *m = lane_mask(q0 + 16 * v as i64, w_off, g.in_w, 16) as u16;
                full &= *m == u16::MAX;
            }
        }
        macro_rules! reduce {
            ($load:expr) => {{
                let mut xc = x.wrapping_offset((q0 * 4) as isize);
                let mut ac = a.cast::<u8>();
                for _ in 0..g.cig {
                    for u in 0..nth_reduce {
                        for tw in 0..ntw {
                            // Input row `u` (relative to row 0): tap (u - r, tw) of row r.
                            let src = if u < nth {
                                xc.wrapping_offset((*g.taps.add(3 * (u * ntw + tw)) * 4) as isize)
                            } else {
                                let last = *g.taps.add(3 * ((nth - 1) * ntw + tw)) * 4;
                                xc.wrapping_offset(last as isize + (u + 1 - nth) as isize * row_in)
                            };
                            let mut xv = [_mm512_setzero_ps(); NV];
                            for v in 0..NV {
                                xv[v] = $load(src.wrapping_offset(64 * v as isize).cast::<f32>(), masks[tw][v]);
                            }
                            for r in 0..R {
                                if u < r || u - r >= nth {
                                    continue;
                                }
                                let t = (u - r) * ntw + tw;
                                let wp = ac.offset(*g.taps.add(3 * t + 2) as isize).cast::<f32>();
                                for c in 0..C {
                                    let w = _mm512_set1_ps(*wp.add(c));
                                    for v in 0..NV {
                                        acc[r][v][c] = _mm512_fmadd_ps(xv[v], w, acc[r][v][c]);
                                    }
                                }
                            }
                        }
                    }
                    xc = xc.wrapping_offset(x_ci);
                    ac = ac.offset(a_ci);
                }
            }};
        }
        if full {
            reduce!(|p: *const f32, _m: u16| _mm512_loadu_ps(p));
        } else {
            reduce!(|p: *const f32, m: u16| _mm512_maskz_loadu_ps(m, p));
        }
        let alpha = f32::from_bits(g.alpha as u32);
        let (oc, osw) = (g.oc as isize, g.osw as isize);
        for r in 0..R {
            let out_r = out.offset(r as isize * g.row_out as isize);
            for v in 0..NV {
                let first = q0 + 16 * v as i64;
                let n = (g.nq - first).clamp(0, 16) as usize;
                if n == 0 {
                    continue;
                }
                for c in 0..C.min(g.nc as usize) {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r][v][c]);
                    let o = out_r.offset(first as isize * osw + c as isize * oc);
                    store_activated(&lanes, n, o, osw, g.act, alpha);
                }
            }
        }
    }
}

/// Pixel tile, ymm: `NV` vectors of 8 consecutive phase pixels × `C` channels.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe extern "C" fn pv256<const NV: usize, const C: usize>(
    a: *const f32,
    x: *const u8,
    q0: usize,
    out: *mut u8,
    bias: *const f32,
    args: *const PvArgs,
) {
    // SAFETY: (whole body) as for `pv512`; `maskload` does not fault on masked lanes.
    unsafe {
        let g = &*args;
        let q0 = q0 as i64;
        let mut acc = [[_mm256_setzero_ps(); C]; NV];
        for c in 0..C {
            let b = _mm256_set1_ps(*bias.add(c));
            for row in acc.iter_mut() {
                row[c] = b;
            }
        }
        let (x_ci, a_ci) = (g.x_ci as isize, g.a_ci as isize);
        let lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let nt = (g.nt as usize).min(MAX_PV_TAPS);
        // Lane bits per (tap, vector); expanded to a vector mask only on the
        // (edge) masked path.
        let mut masks = [[0u8; NV]; MAX_PV_TAPS];
        let mut full = true;
        for (t, mt) in masks.iter_mut().enumerate().take(nt) {
            let w_off = *g.taps.add(3 * t + 1);
            for (v, m) in mt.iter_mut().enumerate() {
                *m = lane_mask(q0 + 8 * v as i64, w_off, g.in_w, 8) as u8;
                full &= *m == 0xFF;
            }
        }
        let bit = _mm256_sllv_epi32(_mm256_set1_epi32(1), lane_ids);
        let mut acc2 = [[_mm256_setzero_ps(); C]; NV];
        macro_rules! reduce {
            ($load:expr) => {{
                let mut xc = x.wrapping_offset((q0 * 4) as isize);
                let mut ac = a.cast::<u8>();
                macro_rules! tap {
                    ($t:expr, $dst:ident) => {{
                        let t = $t;
                        let xb = xc.wrapping_offset((*g.taps.add(3 * t) * 4) as isize);
                        let wp = ac.offset(*g.taps.add(3 * t + 2) as isize).cast::<f32>();
                        let mut w = [_mm256_setzero_ps(); C];
                        for (c, wv) in w.iter_mut().enumerate() {
                            *wv = _mm256_set1_ps(*wp.add(c));
                        }
                        for v in 0..NV {
                            let p = xb.wrapping_offset(32 * v as isize).cast::<f32>();
                            let xv = $load(p, masks[t][v]);
                            for c in 0..C {
                                $dst[v][c] = _mm256_fmadd_ps(xv, w[c], $dst[v][c]);
                            }
                        }
                    }};
                }
                for _ in 0..g.cig {
                    let mut t = 0;
                    if NV * C <= 6 {
                        while t + 1 < nt {
                            tap!(t, acc);
                            tap!(t + 1, acc2);
                            t += 2;
                        }
                    }
                    while t < nt {
                        tap!(t, acc);
                        t += 1;
                    }
                    xc = xc.wrapping_offset(x_ci);
                    ac = ac.offset(a_ci);
                }
            }};
        }
        if full {
            reduce!(|p: *const f32, _m: u8| _mm256_loadu_ps(p));
        } else {
            reduce!(|p: *const f32, m: u8| {
                let sel = _mm256_and_si256(_mm256_set1_epi32(m as i32), bit);
                _mm256_maskload_ps(p, _mm256_cmpgt_epi32(sel, _mm256_setzero_si256()))
            });
        }
        for v in 0..NV {
            for c in 0..C {
                acc[v][c] = _mm256_add_ps(acc[v][c], acc2[v][c]);
            }
        }
        let alpha = f32::from_bits(g.alpha as u32);
        let (oc, osw) = (g.oc as isize, g.osw as isize);
        for v in 0..NV {
            let first = q0 + 8 * v as i64;
            let n = (g.nq - first).clamp(0, 8) as usize;
            if n == 0 {
                continue;
            }
            for c in 0..C.min(g.nc as usize) {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[v][c]);
                let o = out.offset(first as isize * osw + c as isize * oc);
                store_activated(&lanes, n, o, osw, g.act, alpha);
            }
        }
    }
}
