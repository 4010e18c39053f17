//! Channel tiles (`cv`): lanes are output channels of a 16/32-channel weight
//! panel, `P` output pixels with arbitrary offsets (so pixels of several
//! batch items or rows share one tile), one broadcast input value per pixel
//! and tap. Plus the input packer that channel-tile kernels call to copy
//! 4 KiB-aliased input into a dense frame buffer.
//!
//! Bounds: every offset a tile dereferences comes from its pixel table and
//! its class's tap list, which `verify::verify_cv` checked against the
//! buffers before the kernel was emitted.

// Register tiles are indexed `acc[pixel][vector]` in fully unrolled const
// loops; index loops read like the math and keep the arrays in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::abi::{PackArgs, TileArgs};
use super::{act_slice, store_activated};

/// Stores one channel vector of every pixel of a finished tile, channel by
/// channel: lane `l` of `lanes[j]` goes to `o + outs[j] + l·oc` bytes,
/// activated, for `l < n`; with `add`, plus the value already there (the
/// partial sum of earlier input-channel blocks).
///
/// For output channel planes a multiple of 4 KiB apart, which share one L1
/// set: pixel-major stores would evict each line between its writes
/// (unet_up: 61 → 100 GFLOP/s). Not inlined, so the tile's register loops
/// stay as they are in the pixel-major variants.
#[inline(never)]
#[allow(clippy::too_many_arguments)] // a hot helper's scalars, not a record
unsafe fn store_tile<const L: usize, const P: usize>(
    lanes: &[[f32; L]; P],
    n: usize,
    o: *mut u8,
    outs: *const i64,
    oc: isize,
    code: i64,
    alpha: f32,
    add: bool,
) {
    // SAFETY: the JIT passes output offsets of pixels and channels it owns.
    unsafe {
        let mut offs = [0isize; P];
        for (j, off) in offs.iter_mut().enumerate() {
            *off = *outs.add(j) as isize;
        }
        let n = n.min(L);
        let mut v = *lanes;
        if add {
            // A later block of input channels: the output holds the
            // earlier blocks' partial sums (not yet activated).
            for l in 0..n {
                let ol = o.offset(l as isize * oc);
                for j in 0..P {
                    v[j][l] += *ol.offset(offs[j]).cast::<f32>();
                }
            }
        }
        for row in v.iter_mut() {
            act_slice(code, alpha, &mut row[..n]);
        }
        for l in 0..n {
            let ol = o.offset(l as isize * oc);
            for j in 0..P {
                *ol.offset(offs[j]).cast::<f32>() = v[j][l];
            }
        }
    }
}

/// The bias of a later block of input channels (the first block added the
/// real one): a panel's worth of zeros.
static ZEROS: [f32; 32] = [0.0; 32];

/// Adds the output's partial sums (earlier blocks of input channels) to one
/// pixel's channel vector: lane `l < n` from `o + l·oc` bytes.
///
/// # Safety
/// `o + l·oc` must be valid output floats for `l < n`.
#[inline(never)]
unsafe fn add_output(lanes: &mut [f32], n: usize, o: *const u8, oc: isize) {
    for (l, x) in lanes.iter_mut().take(n).enumerate() {
        // SAFETY: see above.
        *x += unsafe { *o.offset(l as isize * oc).cast::<f32>() };
    }
}

/// Channel tile, zmm: `V` vectors (16·V channels) × `P` pixels.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn cv512<const V: usize, const P: usize, const CONTIG: bool, const CM: bool>(
    a: *const f32,
    x: *const u8,
    tbl: *const i64,
    out: *mut u8,
    bias: *const f32,
    args: *const TileArgs,
) {
    // SAFETY: (whole body) the JIT passes a weight panel, input, output and
    // tables laid out as described by `args`, all valid for the offsets it holds.
    unsafe {
        let g = &*args;
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        let add = g.acc != 0;
        let bias = if add { ZEROS.as_ptr() } else { bias };
        for v in 0..V {
            let b = _mm512_loadu_ps(bias.add(16 * v));
            for row in acc.iter_mut() {
                row[v] = b;
            }
        }
        let mut xo = [0isize; P];
        for (j, o) in xo.iter_mut().enumerate() {
            *o = if CONTIG { *tbl as isize + 4 * j as isize } else { *tbl.add(j) as isize };
        }
        let taps = g.taps;
        let nt = g.nt as usize;
        let (x_ci, a_ci) = (g.x_ci as isize, g.a_ci as isize);
        let mut xc = x.offset(g.x_off as isize);
        let mut ac = a.cast::<u8>();
        for _ in 0..g.cig {
            for t in 0..nt {
                // Only `xb + xo[j]` is inside the buffer (see `CvPack`).
                let xb = xc.wrapping_offset(*taps.add(2 * t) as isize);
                let ab = ac.offset(*taps.add(2 * t + 1) as isize).cast::<f32>();
                let mut w = [_mm512_setzero_ps(); V];
                for (v, wv) in w.iter_mut().enumerate() {
                    *wv = _mm512_loadu_ps(ab.add(16 * v));
                }
                for j in 0..P {
                    let b = _mm512_set1_ps(*xb.wrapping_offset(xo[j]).cast::<f32>());
                    for v in 0..V {
                        acc[j][v] = _mm512_fmadd_ps(b, w[v], acc[j][v]);
                    }
                }
            }
            xc = xc.offset(x_ci);
            ac = ac.offset(a_ci);
        }
        let nc = g.nc as usize;
        let alpha = f32::from_bits(g.alpha as u32);
        let oc = g.oc as isize;
        if CM {
            // Channel-major stores (see `store_tile`).
            for v in 0..V {
                let mut lanes = [[0f32; 16]; P];
                for j in 0..P {
                    _mm512_storeu_ps(lanes[j].as_mut_ptr(), acc[j][v]);
                }
                let n = nc.saturating_sub(16 * v).min(16);
                store_tile(&lanes, n, out.offset(16 * v as isize * oc), tbl.add(P), oc, g.act, alpha, add);
            }
        } else {
            for j in 0..P {
                let o = out.offset(*tbl.add(P + j) as isize);
                for v in 0..V {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), acc[j][v]);
                    let n = nc.saturating_sub(16 * v).min(16);
                    let o = o.offset(16 * v as isize * oc);
                    if add {
                        add_output(&mut lanes, n, o, oc);
                    }
                    store_activated(&lanes, n, o, oc, g.act, alpha);
                }
            }
        }
    }
}

/// Channel tile, ymm: 16 channels × `P` pixels per pass, one pass per
/// 16-channel half of the panel.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe extern "C" fn cv256<const P: usize, const CONTIG: bool, const CM: bool>(
    a: *const f32,
    x: *const u8,
    tbl: *const i64,
    out: *mut u8,
    bias: *const f32,
    args: *const TileArgs,
) {
    // SAFETY: (whole body) as for `cv512`.
    unsafe {
        let g = &*args;
        let mut xo = [0isize; P];
        for (j, o) in xo.iter_mut().enumerate() {
            *o = if CONTIG { *tbl as isize + 4 * j as isize } else { *tbl.add(j) as isize };
        }
        let taps = g.taps;
        let nt = g.nt as usize;
        let (x_ci, a_ci) = (g.x_ci as isize, g.a_ci as isize);
        let nc = g.nc as usize;
        let alpha = f32::from_bits(g.alpha as u32);
        let oc = g.oc as isize;
        let halves = (g.pw as usize / 16).max(1);
        let add = g.acc != 0;
        let bias = if add { ZEROS.as_ptr() } else { bias };
        for h in 0..halves {
            if 16 * h >= nc {
                break;
            }
            let mut acc = [[_mm256_setzero_ps(); 2]; P];
            for v in 0..2 {
                let b = _mm256_loadu_ps(bias.add(16 * h + 8 * v));
                for row in acc.iter_mut() {
                    row[v] = b;
                }
            }
            let mut xc = x.offset(g.x_off as isize);
            let mut ac = a.add(16 * h).cast::<u8>();
            for _ in 0..g.cig {
                for t in 0..nt {
                    // Only `xb + xo[j]` is inside the buffer (see `CvPack`).
                    let xb = xc.wrapping_offset(*taps.add(2 * t) as isize);
                    let ab = ac.offset(*taps.add(2 * t + 1) as isize).cast::<f32>();
                    let w = [_mm256_loadu_ps(ab), _mm256_loadu_ps(ab.add(8))];
                    for j in 0..P {
                        let b = _mm256_set1_ps(*xb.wrapping_offset(xo[j]).cast::<f32>());
                        acc[j][0] = _mm256_fmadd_ps(b, w[0], acc[j][0]);
                        acc[j][1] = _mm256_fmadd_ps(b, w[1], acc[j][1]);
                    }
                }
                xc = xc.offset(x_ci);
                ac = ac.offset(a_ci);
            }
            if CM {
                // Channel-major stores (see `store_tile`).
                for v in 0..2 {
                    let mut lanes = [[0f32; 8]; P];
                    for j in 0..P {
                        _mm256_storeu_ps(lanes[j].as_mut_ptr(), acc[j][v]);
                    }
                    let n = nc.saturating_sub(16 * h + 8 * v).min(8);
                    store_tile(
                        &lanes,
                        n,
                        out.offset((16 * h + 8 * v) as isize * oc),
                        tbl.add(P),
                        oc,
                        g.act,
                        alpha,
                        add,
                    );
                }
            } else {
                for j in 0..P {
                    let o = out.offset(*tbl.add(P + j) as isize + (16 * h) as isize * oc);
                    for v in 0..2 {
                        let mut lanes = [0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j][v]);
                        let n = nc.saturating_sub(16 * h + 8 * v).min(8);
                        let o = o.offset(8 * v as isize * oc);
                        if add {
                            add_output(&mut lanes, n, o, oc);
                        }
                        store_activated(&lanes, n, o, oc, g.act, alpha);
                    }
                }
            }
        }
    }
}

/// The input packer ([`super::abi::PackFn`]): copies `span` floats of every
/// input channel (`channels` planes `src_stride` bytes apart, starting
/// `off` bytes after `x`) into `dst`, `dst_stride` bytes apart. Used by
/// channel-tile kernels whose input channel planes alias in L1 (plane
/// strides of multiples of 4 KiB map every channel of a tile to one set).
///
/// # Safety
/// `x + off + c·src_stride` must be valid for reads of `span` floats and
/// `dst + c·dst_stride` for writes, for every channel `c < channels`; they
/// must not overlap. The JIT passes a span inside one input channel plane
/// (checked by the plan verifier) and its frame buffer of
/// `channels·dst_stride` bytes.
pub(crate) unsafe extern "C" fn pack_input(dst: *mut f32, x: *const u8, args: *const PackArgs) {
    // SAFETY: guaranteed by the caller, see above.
    unsafe {
        let a = &*args;
        let (span, channels) = (a.span as usize, a.channels as isize);
        let src = x.offset(a.off as isize);
        let dst = dst.cast::<u8>();
        for c in 0..channels {
            let s = src.offset(c * a.src_stride as isize).cast::<f32>();
            let d = dst.offset(c * a.dst_stride as isize).cast::<f32>();
            let mut i = 0;
            while i + 8 <= span {
                // Fixed-size chunks compile to unaligned vector moves.
                std::ptr::copy_nonoverlapping(s.add(i).cast::<[f32; 8]>(), d.add(i).cast::<[f32; 8]>(), 1);
                i += 8;
            }
            while i < span {
                *d.add(i) = *s.add(i);
                i += 1;
            }
        }
    }
}
