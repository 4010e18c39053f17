//! Ahead-of-time micro-kernels in `std::arch` that JIT-emitted loop nests call
//! for full register tiles (the *native tier*).
//!
//! Cranelift has no vectors wider than 128 bits on x86-64 and its FMA lowering
//! ties a multiplicand, so its best inner loops stay near half of this
//! machine's peak. The loop nest (phases, tap classes, blocking, edges, work
//! items) is still generated per shape by the JIT; only the innermost
//! reduction over `(input channel, tap)` of one register tile runs here, with
//! every shape constant passed in an argument block ([`TileArgs`],
//! [`PvArgs`]) that the JIT bakes into the call as an immediate address.
//!
//! Two tile shapes exist, each for AVX-512F (zmm) and AVX2+FMA (ymm):
//! * **channel tiles** (`cv`): lanes are output channels of a 16/32-channel
//!   weight panel, `P` output pixels with arbitrary offsets (so pixels of
//!   several batch items or rows share one tile), one broadcast input value
//!   per pixel and tap;
//! * **pixel tiles** (`pv`): lanes are consecutive output pixels of one phase
//!   row, `C ≤ 4` output channels, edge lanes masked with fault-suppressing
//!   masked loads (for layers with few output channels per group).
//!
//! Every function is `extern "C"`; none can panic (no indexing, no
//! allocation), so nothing unwinds into JIT code. Functions are registered
//! with the JIT under [`symbols`]' names.

use crate::epilogue::sigmoid;

/// Which vector extension the native tier uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NativeIsa {
    /// The widest available on this CPU (AVX-512F, else AVX2+FMA).
    #[default]
    Best,
    /// 512-bit `zmm` micro-kernels (AVX-512F).
    Avx512,
    /// 256-bit `ymm` micro-kernels (AVX2 + FMA); also usable on AVX-512 machines.
    Avx2,
}

impl NativeIsa {
    /// Resolves [`NativeIsa::Best`] and checks availability: the concrete ISA
    /// (`Avx512` or `Avx2`), or `None` if this CPU cannot run it.
    pub fn resolve(self) -> Option<NativeIsa> {
        let avx512 = has_avx512();
        let avx2 = has_avx2();
        match self {
            NativeIsa::Best if avx512 => Some(NativeIsa::Avx512),
            NativeIsa::Best if avx2 => Some(NativeIsa::Avx2),
            NativeIsa::Avx512 if avx512 => Some(NativeIsa::Avx512),
            NativeIsa::Avx2 if avx2 => Some(NativeIsa::Avx2),
            _ => None,
        }
    }

    /// Lanes of one vector register.
    pub fn lanes(self) -> usize {
        if self == NativeIsa::Avx512 {
            16
        } else {
            8
        }
    }

    fn tag(self) -> &'static str {
        if self == NativeIsa::Avx512 {
            "avx512"
        } else {
            "avx2"
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

/// Activation code shared by [`TileArgs::act`] and [`PvArgs::act`].
pub(crate) fn act_code(a: crate::epilogue::Activation) -> (i64, f32) {
    use crate::epilogue::Activation::*;
    match a {
        Identity => (0, 0.0),
        Relu => (1, 0.0),
        LeakyRelu(alpha) => (2, alpha),
        Tanh => (3, 0.0),
        Sigmoid => (4, 0.0),
    }
}

/// Scalar activation by code; bit-identical to [`crate::Activation::apply`].
#[inline(always)]
fn act(code: i64, alpha: f32, x: f32) -> f32 {
    match code {
        1 => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        2 => {
            if x > 0.0 {
                x
            } else {
                x * alpha
            }
        }
        3 => x.tanh(),
        4 => sigmoid(x),
        _ => x,
    }
}

/// Constant arguments of a channel tile (one per tap class), as 8-byte fields
/// so the JIT side can lay them out in an `i64` table.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TileArgs {
    /// `nt` pairs `(input byte offset, weight byte offset)`, one per tap.
    pub taps: *const i64,
    /// Number of taps.
    pub nt: i64,
    /// Input channels reduced.
    pub cig: i64,
    /// Input byte stride between input channels.
    pub x_ci: i64,
    /// Weight byte stride between input channels.
    pub a_ci: i64,
    /// Output byte stride between output channels.
    pub oc: i64,
    /// Valid channels of the panel (lanes beyond are not stored).
    pub nc: i64,
    /// Panel width in channels (16 or 32); weight rows are this many floats.
    pub pw: i64,
    /// Activation code (0 identity, 1 ReLU, 2 LeakyReLU, 3 tanh, 4 sigmoid).
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
}

/// Fields of [`TileArgs`] in `i64`s.
pub const TILE_ARGS_LEN: usize = 10;

/// Constant arguments of a pixel tile (one per phase-row segment).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PvArgs {
    /// `nt` triples `(input float offset from the row, horizontal input offset
    /// in floats for masking, weight byte offset)`.
    pub taps: *const i64,
    /// Number of taps.
    pub nt: i64,
    /// Input channels reduced.
    pub cig: i64,
    /// Input byte stride between input channels.
    pub x_ci: i64,
    /// Weight byte stride between input channels.
    pub a_ci: i64,
    /// Output byte stride between output channels.
    pub oc: i64,
    /// Output byte stride between consecutive pixels of the row.
    pub osw: i64,
    /// Pixels in the row (lanes at or beyond are not stored).
    pub nq: i64,
    /// Input row length (lanes reading outside `0..in_w` are masked).
    pub in_w: i64,
    /// Valid output channels (≤ the tile's `C`).
    pub nc: i64,
    /// Activation code.
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
    /// Horizontal taps per vertical tap (taps are listed vertical-major).
    pub ntw: i64,
    /// Input byte stride between consecutive phase rows (two-row tiles).
    pub row_in: i64,
    /// Output byte stride between consecutive phase rows (two-row tiles).
    pub row_out: i64,
}

/// Fields of [`PvArgs`] in `i64`s.
pub const PV_ARGS_LEN: usize = 15;

/// Signature of a channel tile: `(weights, input base, pixel table, output
/// base, bias, args)`. The pixel table holds `P` input byte offsets then `P`
/// output byte offsets.
pub type TileFn = unsafe extern "C" fn(*const f32, *const u8, *const i64, *mut u8, *const f32, *const TileArgs);

/// Signature of a pixel tile: `(weights, input row, first pixel q0, output
/// row, bias, args)`.
pub type PvFn = unsafe extern "C" fn(*const f32, *const u8, usize, *mut u8, *const f32, *const PvArgs);

/// Pixel counts of full channel tiles, by ISA and panel width (the planner
/// picks one per kernel).
pub fn cv_pixels(isa: NativeIsa, pw: usize) -> std::ops::RangeInclusive<usize> {
    match (isa, pw) {
        (NativeIsa::Avx512, 16) => 8..=24,
        (NativeIsa::Avx512, _) => 4..=12,
        _ => 3..=6,
    }
}

/// Every pixel count a channel tile is instantiated for: `1..=max` of
/// [`cv_pixels`], so a class's remainder pixels (fewer than a full tile) run
/// as one smaller native tile instead of Cranelift code.
pub fn cv_all_pixels(isa: NativeIsa, pw: usize) -> std::ops::RangeInclusive<usize> {
    1..=*cv_pixels(isa, pw).end()
}

/// Fields of the input packer's argument block (`i64`s): source byte offset
/// from the input base, floats per channel, channels, source channel stride
/// and destination channel stride in bytes.
pub const PACK_ARGS_LEN: usize = 5;

/// Symbol of the native input packer (`pack_input`).
pub const PACK_SYMBOL: &str = "kiln_native_pack_input";

/// Input packer with the [`TileFn`] signature, so the JIT calls it like a
/// tile: `dst` is the packed buffer, `x` the input base, `args` points to
/// [`PACK_ARGS_LEN`] `i64`s (see there); the other arguments are unused.
/// Copies the span of every input channel into the dense buffer. Used by
/// channel-tile kernels whose input channel planes alias in L1 (plane strides
/// of multiples of 4 KiB map every channel of a tile to one cache set).
///
/// # Safety
/// `x + off + c·src_stride` must be valid for reads of `span` floats and
/// `dst + c·dst_stride` for writes, for every channel `c`; they must not overlap.
pub(crate) unsafe extern "C" fn pack_input(
    dst: *const f32,
    x: *const u8,
    _tbl: *const i64,
    _out: *mut u8,
    _bias: *const f32,
    args: *const TileArgs,
) {
    // SAFETY: guaranteed by the caller (the JIT passes a span inside one input
    // channel plane and a stack buffer of `channels·dst_stride` bytes).
    unsafe {
        let a = args.cast::<i64>();
        let [off, span, channels, src_stride, dst_stride] = [0, 1, 2, 3, 4].map(|i| *a.add(i) as isize);
        let (span, channels) = (span as usize, channels as usize);
        let src = x.offset(off);
        let dst = dst.cast_mut().cast::<u8>();
        for c in 0..channels as isize {
            let s = src.offset(c * src_stride).cast::<f32>();
            let d = dst.offset(c * dst_stride).cast::<f32>();
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

/// Most taps per row segment a pixel tile accepts (edge masks are precomputed per tap).
pub const MAX_PV_TAPS: usize = 32;

/// Vector counts a pixel tile is instantiated for (channels `1..=4`).
pub const PV_VECTORS: [usize; 4] = [1, 2, 4, 8];

/// Symbol name of a channel tile; `channel_major` selects the variant that
/// stores channel by channel (for output planes a multiple of 4 KiB apart).
pub fn cv_symbol(isa: NativeIsa, pw: usize, p: usize, contig: bool, channel_major: bool) -> String {
    let pw = if isa == NativeIsa::Avx512 { pw } else { 0 };
    format!("kiln_native_cv_{}_w{pw}_p{p}_{}{}", isa.tag(), if contig { "c" } else { "g" }, if channel_major { "_cm" } else { "" })
}

/// Symbol name of a pixel tile.
pub fn pv_symbol(isa: NativeIsa, nv: usize, c: usize) -> String {
    format!("kiln_native_pv_{}_v{nv}_c{c}", isa.tag())
}

/// Symbol name of a pixel tile over `rows` (see [`PV_ROWS`]) phase rows (AVX-512 only).
pub fn pv_rows_symbol(isa: NativeIsa, nv: usize, c: usize, rows: usize) -> String {
    format!("kiln_native_pv_{}_v{nv}_c{c}_r{rows}", isa.tag())
}

/// Row counts multi-row pixel tiles are instantiated for (4 rows measured
/// slower than 2 on fsrcnn: 47 vs 53 GFLOP/s).
pub const PV_ROWS: [usize; 1] = [2];

/// Symbol of the AVX-512 single-output-channel stride-3 kernel (three taps per
/// phase and axis at input offsets `-1..=1`, `-1..=1`, `0..=2`; e.g. k9 s3 p4 op2).
pub const S3K9_SYMBOL: &str = "kiln_native_s3k9_avx512";

/// Symbol of the AVX-512 depthwise 2x upsampler (two taps per phase and axis).
pub const DW2X_SYMBOL: &str = "kiln_native_dw2x_avx512";

// Register tiles are indexed `acc[pixel][vector]` in fully unrolled const
// loops; index loops read like the math and keep the arrays in registers.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Stores one finished vector of a channel tile: lanes `0..n` to
    /// `o + lane·oc` bytes, activated.
    #[inline(always)]
    unsafe fn store_lanes(lanes: &[f32], n: usize, o: *mut u8, oc: isize, code: i64, alpha: f32) {
        let mut l = 0;
        while l < n && l < lanes.len() {
            // SAFETY: the JIT passes output offsets of pixels and channels it owns.
            unsafe { *o.offset(l as isize * oc).cast::<f32>() = act(code, alpha, lanes[l]) };
            l += 1;
        }
    }

    /// Stores one channel vector of every pixel of a finished tile, channel by
    /// channel: lane `l` of `lanes[j]` goes to `o + outs[j] + l·oc` bytes,
    /// activated, for `l < n`.
    ///
    /// For output channel planes a multiple of 4 KiB apart, which share one L1
    /// set: pixel-major stores would evict each line between its writes
    /// (unet_up: 61 → 100 GFLOP/s). Not inlined, so the tile's register loops
    /// stay as they are in the pixel-major variants.
    #[inline(never)]
    unsafe fn store_tile<const L: usize, const P: usize>(
        lanes: &[[f32; L]; P],
        n: usize,
        o: *mut u8,
        outs: *const i64,
        oc: isize,
        code: i64,
        alpha: f32,
    ) {
        // SAFETY: the JIT passes output offsets of pixels and channels it owns.
        unsafe {
            let mut offs = [0isize; P];
            for (j, off) in offs.iter_mut().enumerate() {
                *off = *outs.add(j) as isize;
            }
            for l in 0..n.min(L) {
                let ol = o.offset(l as isize * oc);
                for j in 0..P {
                    *ol.offset(offs[j]).cast::<f32>() = act(code, alpha, lanes[j][l]);
                }
            }
        }
    }

    /// Channel tile, zmm: `V` vectors (16·V channels) × `P` pixels.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe extern "C" fn cv512<const V: usize, const P: usize, const CONTIG: bool, const CM: bool>(
        a: *const f32,
        x: *const u8,
        tbl: *const i64,
        out: *mut u8,
        bias: *const f32,
        args: *const TileArgs,
    ) {
        // SAFETY (whole body): the JIT passes a weight panel, input, output and
        // tables laid out as described by `args`, all valid for the offsets it holds.
        unsafe {
            let g = &*args;
            let mut acc = [[_mm512_setzero_ps(); V]; P];
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
            let mut xc = x;
            let mut ac = a.cast::<u8>();
            for _ in 0..g.cig {
                for t in 0..nt {
                    let xb = xc.offset(*taps.add(2 * t) as isize);
                    let ab = ac.offset(*taps.add(2 * t + 1) as isize).cast::<f32>();
                    let mut w = [_mm512_setzero_ps(); V];
                    for (v, wv) in w.iter_mut().enumerate() {
                        *wv = _mm512_loadu_ps(ab.add(16 * v));
                    }
                    for j in 0..P {
                        let b = _mm512_set1_ps(*xb.offset(xo[j]).cast::<f32>());
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
                    store_tile(&lanes, n, out.offset(16 * v as isize * oc), tbl.add(P), oc, g.act, alpha);
                }
            } else {
                for j in 0..P {
                    let o = out.offset(*tbl.add(P + j) as isize);
                    for v in 0..V {
                        let mut lanes = [0f32; 16];
                        _mm512_storeu_ps(lanes.as_mut_ptr(), acc[j][v]);
                        let n = nc.saturating_sub(16 * v).min(16);
                        store_lanes(&lanes, n, o.offset(16 * v as isize * oc), oc, g.act, alpha);
                    }
                }
            }
        }
    }

    /// Channel tile, ymm: 16 channels × `P` pixels per pass, one pass per
    /// 16-channel half of the panel.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe extern "C" fn cv256<const P: usize, const CONTIG: bool, const CM: bool>(
        a: *const f32,
        x: *const u8,
        tbl: *const i64,
        out: *mut u8,
        bias: *const f32,
        args: *const TileArgs,
    ) {
        // SAFETY (whole body): as for `cv512`.
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
                let mut xc = x;
                let mut ac = a.add(16 * h).cast::<u8>();
                for _ in 0..g.cig {
                    for t in 0..nt {
                        let xb = xc.offset(*taps.add(2 * t) as isize);
                        let ab = ac.offset(*taps.add(2 * t + 1) as isize).cast::<f32>();
                        let w = [_mm256_loadu_ps(ab), _mm256_loadu_ps(ab.add(8))];
                        for j in 0..P {
                            let b = _mm256_set1_ps(*xb.offset(xo[j]).cast::<f32>());
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
                        store_tile(&lanes, n, out.offset((16 * h + 8 * v) as isize * oc), tbl.add(P), oc, g.act, alpha);
                    }
                } else {
                    for j in 0..P {
                        let o = out.offset(*tbl.add(P + j) as isize + (16 * h) as isize * oc);
                        for v in 0..2 {
                            let mut lanes = [0f32; 8];
                            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[j][v]);
                            let n = nc.saturating_sub(16 * h + 8 * v).min(8);
                            store_lanes(&lanes, n, o.offset(8 * v as isize * oc), oc, g.act, alpha);
                        }
                    }
                }
            }
        }
    }

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

    /// Stores the activated lanes `0..n` of one pixel vector of channel `c`.
    #[inline(always)]
    unsafe fn store_pixels(lanes: &[f32], n: usize, o: *mut u8, osw: isize, code: i64, alpha: f32) {
        let mut l = 0;
        while l < n && l < lanes.len() {
            // SAFETY: the JIT passes the output row of pixels it owns; `n` excludes pixels past the row.
            unsafe { *o.offset(l as isize * osw).cast::<f32>() = act(code, alpha, lanes[l]) };
            l += 1;
        }
    }

    /// Depthwise 2x upsampler with two taps per phase and axis (e.g. k4 s2
    /// p1), one channel plane per call: lanes along input columns, both
    /// column phases computed from shifted loads and interleaved in
    /// registers so each output row is written with contiguous full-vector
    /// stores. `w` holds `[hphase·2 + htap][wphase·2 + wtap]` weights and the
    /// bias at index 16; `args = [in_h, in_w, act, alpha]` (`in_w` a multiple of
    /// 16); an activation runs as a scalar pass over each finished row pair.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe extern "C" fn dw2x512(
        w: *const f32,
        x: *const u8,
        _unused: usize,
        o: *mut u8,
        _bias: *const f32,
        args: *const PvArgs,
    ) {
        let args = args.cast::<i64>();
        let in_h = *args as usize;
        let in_w = *args.add(1) as usize;
        let code = *args.add(2);
        let alpha = f32::from_bits(*args.add(3) as u32);
        if code == 0 {
            dw2x512_body::<false>(w, x, o, in_h, in_w, code, alpha);
        } else {
            dw2x512_body::<true>(w, x, o, in_h, in_w, code, alpha);
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dw2x512_body<const ACT: bool>(w: *const f32, x: *const u8, o: *mut u8, in_h: usize, in_w: usize, code: i64, alpha: f32) {
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
                for i in 0..2 * out_w {
                    *oe.add(i) = act(code, alpha, *oe.add(i));
                }
            }
        }
    }

    /// Single-output-channel stride-3 kernel (see [`S3K9_SYMBOL`]): lanes
    /// along input columns, two 16-column chunks × 3 row phases × 3 column
    /// phases of accumulators; each input row is loaded once per channel as
    /// four shifted vectors shared by all phases. `w` holds
    /// `[ci][hp][ht][wp][wt]` weights; `blk` selects the block of `rb` output
    /// row groups; `args = [in_h, in_w, cig, act, alpha, rb, bias]` (`in_w` a
    /// multiple of 32).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe extern "C" fn s3k9_512(w: *const f32, x: *const u8, blk: usize, o: *mut u8, _bias: *const f32, args: *const PvArgs) {
        let args = args.cast::<i64>();
        let in_h = *args as usize;
        let in_w = *args.add(1) as usize;
        let cig = *args.add(2) as usize;
        let code = *args.add(3);
        let alpha = f32::from_bits(*args.add(4) as u32);
        let rb = *args.add(5) as usize;
        let bias = f32::from_bits(*args.add(6) as u32);
        let a0 = (blk * rb).min(in_h);
        let a1 = (a0 + rb).min(in_h);
        s3k9_body(w, x.cast::<f32>(), o.cast::<f32>(), in_h, in_w, cig, code, alpha, a0, a1, bias);
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn s3k9_body(w: *const f32, x: *const f32, o: *mut f32, in_h: usize, in_w: usize, cig: usize, code: i64, alpha: f32, a0: usize, a1: usize, bias: f32) {
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
                                v[j][s] = _mm512_maskz_loadu_ps(masks[j][s], row.wrapping_add(16 * j + s).wrapping_sub(1));
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
                                *d.add(3 * l + wp) = act(code, alpha, tmp[wp][l]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Pixel tile, zmm: `NV` vectors of 16 consecutive phase pixels × `C` channels.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe extern "C" fn pv512<const NV: usize, const C: usize>(
        a: *const f32,
        x: *const u8,
        q0: usize,
        out: *mut u8,
        bias: *const f32,
        args: *const PvArgs,
    ) {
        // SAFETY (whole body): the JIT passes the input and output rows and a
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
                    store_pixels(&lanes, n, o, osw, g.act, alpha);
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
    pub(super) unsafe extern "C" fn pv512rows<const NV: usize, const C: usize, const R: usize>(
        a: *const f32,
        x: *const u8,
        q0: usize,
        out: *mut u8,
        bias: *const f32,
        args: *const PvArgs,
    ) {
        // SAFETY (whole body): as for `pv512`; the planner only pairs rows of
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
                        for u in 0..nth + R - 1 {
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
                        store_pixels(&lanes, n, o, osw, g.act, alpha);
                    }
                }
            }
        }
    }

    /// Pixel tile, ymm: `NV` vectors of 8 consecutive phase pixels × `C` channels.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe extern "C" fn pv256<const NV: usize, const C: usize>(
        a: *const f32,
        x: *const u8,
        q0: usize,
        out: *mut u8,
        bias: *const f32,
        args: *const PvArgs,
    ) {
        // SAFETY (whole body): as for `pv512`; `maskload` does not fault on masked lanes.
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
                    store_pixels(&lanes, n, o, osw, g.act, alpha);
                }
            }
        }
    }
}

/// `(symbol, address)` of every micro-kernel of `isa` plus the input packer,
/// for registration with the JIT builder.
pub fn symbols(isa: NativeIsa) -> Vec<(String, *const u8)> {
    let mut v: Vec<(String, *const u8)> = vec![
        (PACK_SYMBOL.to_string(), pack_input as TileFn as *const u8),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! cv512 {
            ($v:literal, $pw:literal; $($p:literal)*) => {$(
                v.push((cv_symbol(NativeIsa::Avx512, $pw, $p, true, false), x86::cv512::<$v, $p, true, false> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx512, $pw, $p, false, false), x86::cv512::<$v, $p, false, false> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx512, $pw, $p, true, true), x86::cv512::<$v, $p, true, true> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx512, $pw, $p, false, true), x86::cv512::<$v, $p, false, true> as TileFn as *const u8));
            )*};
        }
        macro_rules! cv256 {
            ($($p:literal)*) => {$(
                v.push((cv_symbol(NativeIsa::Avx2, 0, $p, true, false), x86::cv256::<$p, true, false> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx2, 0, $p, false, false), x86::cv256::<$p, false, false> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx2, 0, $p, true, true), x86::cv256::<$p, true, true> as TileFn as *const u8));
                v.push((cv_symbol(NativeIsa::Avx2, 0, $p, false, true), x86::cv256::<$p, false, true> as TileFn as *const u8));
            )*};
        }
        macro_rules! pv {
            ($isa:expr, $f:ident; $($nv:literal)*) => {$(
                v.push((pv_symbol($isa, $nv, 1), x86::$f::<$nv, 1> as PvFn as *const u8));
                v.push((pv_symbol($isa, $nv, 2), x86::$f::<$nv, 2> as PvFn as *const u8));
                v.push((pv_symbol($isa, $nv, 3), x86::$f::<$nv, 3> as PvFn as *const u8));
                v.push((pv_symbol($isa, $nv, 4), x86::$f::<$nv, 4> as PvFn as *const u8));
            )*};
        }
        match isa {
            NativeIsa::Avx512 => {
                cv512!(2, 32; 1 2 3 4 5 6 7 8 9 10 11 12);
                cv512!(1, 16; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
                pv!(NativeIsa::Avx512, pv512; 1 2 4 8);
                macro_rules! pvr {
                    ($r:literal; $($nv:literal)*) => {$(
                        v.push((pv_rows_symbol(NativeIsa::Avx512, $nv, 1, $r), x86::pv512rows::<$nv, 1, $r> as PvFn as *const u8));
                        v.push((pv_rows_symbol(NativeIsa::Avx512, $nv, 2, $r), x86::pv512rows::<$nv, 2, $r> as PvFn as *const u8));
                        v.push((pv_rows_symbol(NativeIsa::Avx512, $nv, 3, $r), x86::pv512rows::<$nv, 3, $r> as PvFn as *const u8));
                        v.push((pv_rows_symbol(NativeIsa::Avx512, $nv, 4, $r), x86::pv512rows::<$nv, 4, $r> as PvFn as *const u8));
                    )*};
                }
                pvr!(2; 1 2 4);
                v.push((DW2X_SYMBOL.to_string(), x86::dw2x512 as PvFn as *const u8));
                v.push((S3K9_SYMBOL.to_string(), x86::s3k9_512 as PvFn as *const u8));
            }
            NativeIsa::Avx2 => {
                cv256!(1 2 3 4 5 6);
                pv!(NativeIsa::Avx2, pv256; 1 2 4 8);
            }
            NativeIsa::Best => {}
        }
    }
    v
}
