//! Hole fills: the activated bias written to the output pixels no tap
//! reaches (see [`crate::tiling::CvFill`]), one output row at a time with
//! masked 16-column vector stores, channel by channel.
//!
//! Bounds: every row start and mask comes from the plan's fill, which
//! `verify::verify_cv` checked (each row inside one output channel plane,
//! no mask bit at or beyond the row's width) before the kernel was emitted.
//! Lanes a mask clears are not accessed (masked stores suppress faults).

use std::arch::x86_64::*;

use super::abi::FillArgs;
use super::act_slice;

/// The activated bias of the panel's `nc` channels.
///
/// # Safety
/// `bias` must be valid for `nc` floats.
#[inline(always)]
unsafe fn values(bias: *const f32, g: &FillArgs) -> ([f32; 32], usize) {
    let nc = (g.nc.max(0) as usize).min(32);
    let mut v = [0f32; 32];
    for (l, x) in v[..nc].iter_mut().enumerate() {
        // SAFETY: the caller passes the panel's bias (see above).
        *x = unsafe { *bias.add(l) };
    }
    act_slice(g.act, f32::from_bits(g.alpha as u32), &mut v[..nc]);
    (v, nc)
}

/// The walk both ISAs share: per channel `l < nc` a splat of its value,
/// then per row of the list and 16-column block its address and mask
/// (blocks with no hole skipped), handed to `store`.
///
/// # Safety
/// As for the fills: `rows`, `out`, `bias` and `args` of a verified fill.
#[inline(always)]
unsafe fn walk<V: Copy>(
    rows: *const i64,
    out: *mut u8,
    bias: *const f32,
    args: *const FillArgs,
    splat: impl Fn(f32) -> V,
    store: impl Fn(*mut f32, u16, V),
) {
    // SAFETY: (whole body) the JIT passes the panel's output base and bias,
    // and a row list and record of the verified fill.
    unsafe {
        let g = &*args;
        let (v, nc) = values(bias, g);
        let blocks = g.blocks as usize;
        for (l, &value) in v[..nc].iter().enumerate() {
            let val = splat(value);
            let plane = out.offset(l as isize * g.oc as isize);
            for r in 0..g.rows as usize {
                let o = plane.offset(*rows.add(2 * r) as isize).cast::<f32>();
                let m = g.masks.add(*rows.add(2 * r + 1) as usize);
                for b in 0..blocks {
                    let k = *m.add(b) as u16;
                    if k != 0 {
                        store(o.add(16 * b), k, val);
                    }
                }
            }
        }
    }
}

/// Fill, zmm (the [`super::abi::FillFn`] of AVX-512 plans).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe extern "C" fn fill512(
    _a: *const f32,
    _x: *const u8,
    rows: *const i64,
    out: *mut u8,
    bias: *const f32,
    args: *const FillArgs,
) {
    // SAFETY: the addresses `walk` hands out are of the verified fill;
    // masked-off lanes are not accessed.
    unsafe {
        walk(
            rows,
            out,
            bias,
            args,
            |v| _mm512_set1_ps(v),
            |p, k, val| {
                if k == u16::MAX {
                    _mm512_storeu_ps(p, val);
                } else {
                    _mm512_mask_storeu_ps(p, k, val);
                }
            },
        );
    }
}

/// Fill, ymm (the [`super::abi::FillFn`] of AVX2 plans): each 16-column
/// mask as two 8-lane halves.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe extern "C" fn fill256(
    _a: *const f32,
    _x: *const u8,
    rows: *const i64,
    out: *mut u8,
    bias: *const f32,
    args: *const FillArgs,
) {
    // SAFETY: as for `fill512`.
    unsafe {
        let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        walk(
            rows,
            out,
            bias,
            args,
            |v| _mm256_set1_ps(v),
            |p, k, val| {
                for (h, half) in [k & 0xff, k >> 8].into_iter().enumerate() {
                    let p = p.add(8 * h);
                    if half == 0xff {
                        _mm256_storeu_ps(p, val);
                    } else if half != 0 {
                        let sel = _mm256_set1_epi32(i32::from(half));
                        let mask = _mm256_cmpeq_epi32(_mm256_and_si256(sel, bits), bits);
                        _mm256_maskstore_ps(p, mask, val);
                    }
                }
            },
        );
    }
}
