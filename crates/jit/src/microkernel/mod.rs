//! Ahead-of-time micro-kernels in `std::arch` that JIT-emitted loop nests call
//! for full register tiles (the *native tier*).
//!
//! Cranelift has no vectors wider than 128 bits on x86-64 and its FMA lowering
//! ties a multiplicand, so its best inner loops stay near half of this
//! machine's peak. The loop nest (phases, tap classes, blocking, edges, work
//! items) is still generated per shape by the JIT; only the innermost
//! reduction over `(input channel, tap)` of one register tile runs here, with
//! every shape constant passed in a typed argument record ([`abi`]) that the
//! JIT bakes into the call as an immediate address.
//!
//! Modules, one concept each:
//! * [`abi`]: the argument records and function-pointer types shared with
//!   the generated code;
//! * `channel_tile`: channel tiles (lanes = output channels) and the input
//!   packer, for AVX-512F (zmm) and AVX2+FMA (ymm);
//! * `fill`: hole fills (the activated bias on pixels no tap reaches) for
//!   channel-tile plans, AVX-512F and AVX2;
//! * `pixel_tile`: pixel tiles (lanes = pixels of a phase row), for layers
//!   with few output channels per group;
//! * `special`: the two dedicated AVX-512 kernels (depthwise 2x, stride 3);
//! * [`table`]: the typed table of instantiated kernels the code generator
//!   picks from (no string-keyed lookups).
//!
//! Every function is `extern "C"`; none allocates or unwinds into JIT code.
//! Every address a kernel dereferences was checked by `crate::verify` (or,
//! for the dedicated kernels, by their `*_applies` shape test) before the
//! code calling it was emitted; debug builds run the same kernels with
//! overflow checks on.

pub(crate) mod abi;
#[cfg(target_arch = "x86_64")]
mod channel_tile;
#[cfg(target_arch = "x86_64")]
mod fill;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm_tile;
#[cfg(target_arch = "x86_64")]
mod pixel_tile;
#[cfg(target_arch = "x86_64")]
mod special;
pub(crate) mod table;

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

    /// Short lowercase name, as `--kernels` spells it.
    pub fn tag(self) -> &'static str {
        if self == NativeIsa::Avx512 {
            "avx512"
        } else {
            "avx2"
        }
    }
}

/// AVX-512F: the wide native kernels, and the widest copy of the plane
/// kernels' and `vmath`'s loops.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// AVX2 with FMA: the native kernels' ISA, and the one the plane kernels
/// and `vmath` compile a second copy of their loops for.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether AVX2 channel tiles should replace AVX-512 ones on output
/// channel planes a multiple of 4 KiB apart: measured faster on AMD Zen 4,
/// whose AVX-512 runs as two 256-bit halves, and slower by 1.3–1.8x on an
/// Intel Xeon with full-width units (cnet_r2 19.2 vs 35.3 ms, dcg64_l4 5.7
/// vs 7.6 ms on one thread), so only AMD CPUs with AVX2 narrow.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefers_avx2_on_aliased_planes() -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| {
        // Leaf 0 gives the vendor string in EBX, EDX, ECX.
        let r = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    }) && has_avx2()
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn prefers_avx2_on_aliased_planes() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn has_avx512() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn has_avx2() -> bool {
    false
}

/// Activation code of the micro-kernels' argument records (`act` fields).
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

/// Scalar activation by code; bit-identical to [`crate::Activation::apply`]
/// (the stores use [`act_slice`], which vectorizes the transcendental ones).
#[inline(always)]
pub(crate) fn act(code: i64, alpha: f32, x: f32) -> f32 {
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

/// [`act`] over `v` in place. Tanh and sigmoid go through `vmath`'s vector
/// loops: libm's `tanhf` costs over 10 ns a float, which made a `Tanh`
/// fused into a small-channel layer 15× slower than the layer itself. The
/// result is the vectorized definition every other tier uses (within a few
/// ulps of [`crate::Activation::apply`]).
#[inline(always)]
pub(crate) fn act_slice(code: i64, alpha: f32, v: &mut [f32]) {
    match code {
        3 => crate::vmath::map_tanh(crate::vmath::Block::InPlace(v)),
        4 => crate::vmath::map_sigmoid(crate::vmath::Block::InPlace(v)),
        _ => v.iter_mut().for_each(|x| *x = act(code, alpha, *x)),
    }
}

/// `a` over `v` in place, as [`act_slice`] computes it (nothing for the
/// identity): the epilogue of the safe-Rust plane kernels that compute
/// convolutions (`dwrows`, `col2im`).
pub(crate) fn activate(a: crate::epilogue::Activation, v: &mut [f32]) {
    if a != crate::epilogue::Activation::Identity {
        let (code, alpha) = act_code(a);
        act_slice(code, alpha, v);
    }
}

/// Stores lanes `0..n` of one finished vector, activated, to `o + lane·step`
/// bytes: the store of both tile kinds (channel tiles step between output
/// channels, pixel tiles between pixels of a row).
///
/// # Safety
/// `o + lane·step` for every `lane < n` must be a writable `f32` the
/// caller owns.
#[inline(always)]
pub(crate) unsafe fn store_activated(lanes: &[f32], n: usize, o: *mut u8, step: isize, code: i64, alpha: f32) {
    let mut v = [0f32; 16];
    let n = n.min(lanes.len()).min(v.len());
    v[..n].copy_from_slice(&lanes[..n]);
    act_slice(code, alpha, &mut v[..n]);
    for (l, &x) in v[..n].iter().enumerate() {
        // SAFETY: the caller owns these output floats (see above).
        unsafe { *o.offset(l as isize * step).cast::<f32>() = x };
    }
}

/// Pixel counts of full channel tiles, by ISA and panel width (the planner
/// picks one per kernel).
pub(crate) fn cv_pixels(isa: NativeIsa, pw: usize) -> std::ops::RangeInclusive<usize> {
    match (isa, pw) {
        (NativeIsa::Avx512, 16) => 8..=24,
        (NativeIsa::Avx512, _) => 4..=12,
        _ => 3..=6,
    }
}

/// Every pixel count a channel tile is instantiated for: `1..=max` of
/// [`cv_pixels`], so a class's remainder pixels (fewer than a full tile) run
/// as one smaller native tile instead of Cranelift code.
#[cfg(test)]
pub(crate) fn cv_all_pixels(isa: NativeIsa, pw: usize) -> std::ops::RangeInclusive<usize> {
    1..=*cv_pixels(isa, pw).end()
}

/// Most taps per row segment a pixel tile accepts (edge masks are precomputed
/// per tap, on the stack: at most 128 × 16 × 2 bytes). 128 covers k9 and k11
/// at stride 1 (81 and 121 taps): SRGAN's k9 s1 64→3 output layer left for
/// channel tiles filling 3 of 16 lanes ran at 0.11x of ONNX Runtime.
pub(crate) const MAX_PV_TAPS: usize = 128;

/// Vector counts a pixel tile is instantiated for (channels `1..=4`).
pub(crate) const PV_VECTORS: [usize; 4] = [1, 2, 4, 8];

/// Row counts multi-row pixel tiles are instantiated for (4 rows measured
/// slower than 2 on fsrcnn: 47 vs 53 GFLOP/s).
pub(crate) const PV_ROWS: [usize; 1] = [2];
