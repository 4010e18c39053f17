//! Dedicated kernels for two layer patterns that the general tiles serve
//! less well: the depthwise 2x upsampler (k4 s2 p1 with one channel per
//! group) and the single-output-channel stride-3 layer (k9 s3 p4 op2,
//! FSRCNN's last layer). `codegen::native_tier::{dw2x_applies,
//! s3k9_applies}` decide when they compute a layer; each has its own
//! argument record ([`Dw2xArgs`], [`S3k9Args`]).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::abi::{Dw2xArgs, S3k9Args};
use super::act_slice;

/// Depthwise 2x upsampler with two taps per phase and axis (e.g. k4 s2
/// p1), one channel plane per call: lanes along input columns, both
/// column phases computed from shifted loads and interleaved in
/// registers so each output row is written with contiguous full-vector
/// stores. `w` holds `[hphase·2 + htap][wphase·2 + wtap]` weights and the
/// bias at index 16; the geometry comes in [`Dw2xArgs`] (`in_w` a multiple of
/// 16); an activation runs as one vectorized pass over each finished row pair.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn dw2x512(w: *const f32, x: *const u8, o: *mut u8, args: *const Dw2xArgs) {
    // SAFETY: the JIT passes this kernel's own argument record, the group's
    // 32-float weight record, and one input and output channel plane of the
    // sizes the record gives (`dw2x_applies` checked the layer's shape).
    unsafe {
        let a = &*args;
        let (in_h, in_w, code) = (a.in_h as usize, a.in_w as usize, a.act);
        let alpha = f32::from_bits(a.alpha as u32);
        if code == 0 {
            dw2x512_body::<false>(w, x, o, in_h, in_w, code, alpha);
        } else {
            dw2x512_body::<true>(w, x, o, in_h, in_w, code, alpha);
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dw2x512_body<const ACT: bool>(
    w: *const f32,
    x: *const u8,
    o: *mut u8,
    in_h: usize,
    in_w: usize,
    code: i64,
    alpha: f32,
) {
    // SAFETY: see the entry function: every address is inside the planes it was given.
    unsafe {
        let out_w = 2 * in_w;
        let x = x.cast::<f32>();
        let o = o.cast::<f32>();
        let wv = |i: usize| _mm512_set1_ps(*w.add(i));
        let bias = wv(16);
        // wk[hp][ht][wp][wt]
        let mut wk = [[[[_mm512_setzero_ps(); 2]; 2]; 2]; 2];
        for hp in 0..2 {
            for ht in 0..2 {
                for wp in 0..2 {
                    for wt in 0..2 {
                        wk[hp][ht][wp][wt] = wv((hp * 2 + ht) * 4 + wp * 2 + wt);
                    }
                }
            }
        }
        let lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        let chunks = in_w / 16;
        for a in 0..in_h {
            let oe = o.add(2 * a * out_w);
            let oo = oe.add(out_w);
            for j in 0..chunks {
                let m0 = j * 16;
                let lmask: u16 = if j == 0 { 0xFFFE } else { 0xFFFF };
                let rmask: u16 = if j + 1 == chunks { 0x7FFF } else { 0xFFFF };
                // (left, centre, right) of input row r.
                let load = |r: usize| {
                    let p = x.add(r * in_w + m0);
                    let c = _mm512_loadu_ps(p);
                    let l = _mm512_maskz_loadu_ps(lmask, p.wrapping_sub(1));
                    let rr = _mm512_maskz_loadu_ps(rmask, p.wrapping_add(1));
                    (l, c, rr)
                };
                // Even / odd output columns from one input row with row weights `k`.
                let cols = |v: (__m512, __m512, __m512), k: &[[__m512; 2]; 2], e: __m512, od: __m512| {
                    let (l, c, rr) = v;
                    let e = _mm512_fmadd_ps(l, k[0][0], e);
                    let e = _mm512_fmadd_ps(c, k[0][1], e);
                    let od = _mm512_fmadd_ps(c, k[1][0], od);
                    let od = _mm512_fmadd_ps(rr, k[1][1], od);
                    (e, od)
                };
                let cur = load(a);
                // Output row 2a: rows a-1 (tap 0) and a (tap 1).
                let (mut e0, mut o0) = cols(cur, &wk[0][1], bias, bias);
                if a > 0 {
                    (e0, o0) = cols(load(a - 1), &wk[0][0], e0, o0);
                }
                // Output row 2a+1: rows a (tap 0) and a+1 (tap 1).
                let (mut e1, mut o1) = cols(cur, &wk[1][0], bias, bias);
                if a + 1 < in_h {
                    (e1, o1) = cols(load(a + 1), &wk[1][1], e1, o1);
                }
                let d = oe.add(2 * m0);
                _mm512_storeu_ps(d, _mm512_permutex2var_ps(e0, lo_idx, o0));
                _mm512_storeu_ps(d.add(16), _mm512_permutex2var_ps(e0, hi_idx, o0));
                let d = oo.add(2 * m0);
                _mm512_storeu_ps(d, _mm512_permutex2var_ps(e1, lo_idx, o1));
                _mm512_storeu_ps(d.add(16), _mm512_permutex2var_ps(e1, hi_idx, o1));
            }
            if ACT {
                // The two output rows just written (`oe` and the odd row
                // after it), `2·out_w` floats the loop above stored.
                act_slice(code, alpha, std::slice::from_raw_parts_mut(oe, 2 * out_w));
            }
        }
    }
}

/// Single-output-channel stride-3 kernel (see [`S3K9_SYMBOL`]): lanes
/// along input columns, two 16-column chunks × 3 row phases × 3 column
/// phases of accumulators; each input row is loaded once per channel as
/// four shifted vectors shared by all phases. `w` holds
/// `[ci][hp][ht][wp][wt]` weights; `blk` selects the block of `rb` output
/// row groups; the geometry comes in [`S3k9Args`] (`in_w` a multiple of 32).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn s3k9_512(w: *const f32, x: *const u8, blk: usize, o: *mut u8, args: *const S3k9Args) {
    // SAFETY: the JIT passes the group's argument record and weight record
    // and the group's input and output planes (`s3k9_applies` checked the
    // layer's shape); `blk` is below `in_h / rb` rounded up, and the row
    // range is clamped to `in_h` regardless.
    unsafe {
        let a = &*args;
        let (in_h, in_w, cig, rb) = (a.in_h as usize, a.in_w as usize, a.cig as usize, a.rows_per_item as usize);
        let alpha = f32::from_bits(a.alpha as u32);
        let bias = f32::from_bits(a.bias as u32);
        let a0 = blk.saturating_mul(rb).min(in_h);
        let a1 = a0.saturating_add(rb).min(in_h);
        s3k9_body(w, x.cast::<f32>(), o.cast::<f32>(), in_h, in_w, cig, a.act, alpha, a0, a1, bias);
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn s3k9_body(
    w: *const f32,
    x: *const f32,
    o: *mut f32,
    in_h: usize,
    in_w: usize,
    cig: usize,
    code: i64,
    alpha: f32,
    a0: usize,
    a1: usize,
    bias: f32,
) {
    // SAFETY: see the entry function: every address is inside the planes it was given.
    unsafe {
        const HB: [i64; 3] = [-1, -1, 0];
        const WB: [i64; 3] = [-1, -1, 0];
        let out_w = 3 * in_w;
        let plane = in_h * in_w;
        let mut tmp = [[0f32; 16]; 3];
        for a in a0..a1 {
            for jp in (0..in_w).step_by(32) {
                // masks[j][s]: lanes of chunk j at column offset s-1 inside the row.
                let mut masks = [[0u16; 4]; 2];
                for j in 0..2 {
                    for s in 0..4 {
                        let mut m = 0u16;
                        for l in 0..16 {
                            let col = (jp + 16 * j + l) as i64 + s as i64 - 1;
                            if col >= 0 && col < in_w as i64 {
                                m |= 1 << l;
                            }
                        }
                        masks[j][s] = m;
                    }
                }
                let b = _mm512_set1_ps(bias);
                let mut acc = [[[b; 2]; 3]; 3];
                for c in 0..cig {
                    let xc = x.add(c * plane);
                    let wc = w.add(c * 81);
                    for dhi in 0..4 {
                        let dh = dhi as i64 - 1;
                        let i = a as i64 + dh;
                        if i < 0 || i >= in_h as i64 {
                            continue;
                        }
                        let row = xc.add(i as usize * in_w + jp);
                        let mut v = [[_mm512_setzero_ps(); 4]; 2];
                        for j in 0..2 {
                            for s in 0..4 {
                                v[j][s] =
                                    _mm512_maskz_loadu_ps(masks[j][s], row.wrapping_add(16 * j + s).wrapping_sub(1));
                            }
                        }
                        for hp in 0..3 {
                            let ht = dh - HB[hp];
                            if !(0..3).contains(&ht) {
                                continue;
                            }
                            let ht = ht as usize;
                            for wp in 0..3 {
                                for wt in 0..3 {
                                    let s = (WB[wp] + wt as i64 + 1) as usize;
                                    let wv = _mm512_set1_ps(*wc.add(((hp * 3 + ht) * 3 + wp) * 3 + wt));
                                    for j in 0..2 {
                                        acc[hp][wp][j] = _mm512_fmadd_ps(v[j][s], wv, acc[hp][wp][j]);
                                    }
                                }
                            }
                        }
                    }
                }
                for hp in 0..3 {
                    let orow = o.add((3 * a + hp) * out_w);
                    for j in 0..2 {
                        for wp in 0..3 {
                            _mm512_storeu_ps(tmp[wp].as_mut_ptr(), acc[hp][wp][j]);
                        }
                        let d = orow.add(3 * (jp + 16 * j));
                        for l in 0..16 {
                            for wp in 0..3 {
                                *d.add(3 * l + wp) = tmp[wp][l];
                            }
                        }
                        // The 48 consecutive floats just stored.
                        act_slice(code, alpha, std::slice::from_raw_parts_mut(d, 48));
                    }
                }
            }
        }
    }
}
