//! Which native-tier strategy computes a convolution: a pure decision over
//! the layer's [`ConvSpec`], kept apart from building the kernel so that the
//! rules (each measured, see the comments) are unit-tested on their own.
//!
//! The order of the rules matters: dedicated kernels first (they match one
//! exact pattern), then the "tiny reduction" exception, then pixel tiles for
//! few output channels per group, then channel tiles; `None` of these means
//! the Cranelift kernel. Plans returned here have not been verified yet; the
//! builder runs `verify` on them before emitting code.

use crate::codegen::native_tier::{dw2x_applies, s3k9_applies};
use crate::epilogue::Activation;
use crate::microkernel::NativeIsa;
use crate::schedule::{ConvSpec, LANES};
use crate::tiling::{plan_cv, plan_pv, CvPlan, PvPlan};

/// Most bytes of pixel tables a channel-tile plan may build (16 bytes per
/// output pixel of a group): beyond it the layer uses the Cranelift kernel,
/// whose code and data do not grow with the number of pixels.
pub(crate) const MAX_CV_TABLE_BYTES: usize = 64 << 20;

/// Most micro-kernel calls a pixel-tile kernel's code may contain (each is
/// about eight CLIF instructions, straight-line with few live values, so far
/// cheaper to compile per instruction than the Cranelift tier's
/// `library::MAX_KERNEL_INSTRUCTIONS`); beyond it channel tiles or the
/// Cranelift kernel are used.
pub(crate) const MAX_PV_CALLS: usize = 1_500_000 / 8;

/// The chosen native strategy.
#[derive(Debug)]
pub(crate) enum Native {
    /// The AVX-512 depthwise 2x upsampler.
    Dw2x,
    /// The AVX-512 single-output-channel stride-3 kernel.
    S3k9,
    /// Pixel tiles (lanes along a phase row).
    Pixel(PvPlan),
    /// Channel tiles (lanes along output channels), possibly on a narrower ISA.
    Channel(CvPlan),
}

/// The strategy for `spec` on `isa`, or `None` for the Cranelift kernel.
/// `auto`: the tier is [`crate::KernelTier::Auto`], so the channel-tile ISA
/// may be narrowed where that measured faster; `narrow_aliased`: this CPU
/// runs AVX2 tiles and measured them faster on 4 KiB-aliased channel planes
/// (`microkernel::prefers_avx2_on_aliased_planes`: AMD Zen 4).
pub(crate) fn choose(
    spec: &ConvSpec,
    isa: NativeIsa,
    activation: Activation,
    auto: bool,
    narrow_aliased: bool,
) -> Option<Native> {
    // Depthwise 2x upsamplers (k4 s2 p1): a dedicated AVX-512 kernel with
    // contiguous output rows. Measured on Zen 4, dw_up 1 / 2 threads:
    // 0.62 / 0.38 ms (Cranelift) → 0.11–0.19 / 0.12–0.19 ms.
    // Single-output-channel stride-3 layers (FSRCNN's k9 s3 last layer): a
    // dedicated AVX-512 kernel sharing each loaded input row between all
    // nine phases.
    if isa == NativeIsa::Avx512 {
        if let Some(n) = realize(spec, Pick::Dw2x, activation).or_else(|| realize(spec, Pick::S3k9, activation)) {
            return Some(n);
        }
    }
    // Few output channels and a tiny reduction (depthwise upsamplers): the
    // kernel is store-bound and the Cranelift kernel measured faster
    // (dw_up: 13.4 vs 9.1 GFLOP/s), so keep it.
    let max_taps = spec.phase_pairs().iter().map(|&p| spec.taps(p)).max().unwrap_or(0);
    if spec.cog <= LANES && spec.cig * max_taps < 8 {
        return None;
    }
    // Few output channels per group: lanes along pixels (a channel panel
    // would leave most lanes idle), unless the unrolled calls would make the
    // code too large.
    // (Else channel tiles, unless their pixel tables would be too large.)
    realize(spec, Pick::Pixel(isa), activation)
        .or_else(|| realize(spec, Pick::Channel(channel_tile_isa(spec, isa, auto, narrow_aliased)), activation))
}

/// A strategy by name, without its plan: what autotuning compares and
/// reports, and what a builder can be told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The Cranelift kernel.
    Cranelift,
    /// The AVX-512 depthwise 2x upsampler.
    Dw2x,
    /// The AVX-512 single-output-channel stride-3 kernel.
    S3k9,
    /// Pixel tiles on this ISA.
    Pixel(NativeIsa),
    /// Channel tiles on this ISA.
    Channel(NativeIsa),
}

impl std::fmt::Display for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let isa = |i: &NativeIsa| match i {
            NativeIsa::Avx512 => "avx512",
            NativeIsa::Avx2 => "avx2",
            NativeIsa::Best => "best",
        };
        match self {
            Pick::Cranelift => f.write_str("cranelift"),
            Pick::Dw2x => f.write_str("dw2x"),
            Pick::S3k9 => f.write_str("s3k9"),
            Pick::Pixel(i) => write!(f, "pixel-tiles-{}", isa(i)),
            Pick::Channel(i) => write!(f, "channel-tiles-{}", isa(i)),
        }
    }
}

impl std::str::FromStr for Pick {
    type Err = String;

    /// The [`Display`](std::fmt::Display) form back (what the on-disk
    /// autotuning cache stores).
    fn from_str(s: &str) -> Result<Pick, String> {
        let isa = |i: &str| match i {
            "avx512" => Ok(NativeIsa::Avx512),
            "avx2" => Ok(NativeIsa::Avx2),
            other => Err(format!("unknown ISA `{other}`")),
        };
        match s {
            "cranelift" => Ok(Pick::Cranelift),
            "dw2x" => Ok(Pick::Dw2x),
            "s3k9" => Ok(Pick::S3k9),
            _ => {
                if let Some(i) = s.strip_prefix("pixel-tiles-") {
                    isa(i).map(Pick::Pixel)
                } else if let Some(i) = s.strip_prefix("channel-tiles-") {
                    isa(i).map(Pick::Channel)
                } else {
                    Err(format!("unknown strategy `{s}`"))
                }
            }
        }
    }
}

/// The name of a chosen strategy.
pub(crate) fn pick_of(choice: &Option<Native>) -> Pick {
    match choice {
        None => Pick::Cranelift,
        Some(Native::Dw2x) => Pick::Dw2x,
        Some(Native::S3k9) => Pick::S3k9,
        Some(Native::Pixel(p)) => Pick::Pixel(p.isa),
        Some(Native::Channel(p)) => Pick::Channel(p.isa),
    }
}

/// The plan for a named strategy, or `None` (the Cranelift kernel) when it
/// is `Cranelift` or does not apply to `spec`: its pattern, or the caps on
/// pixel-tile code and channel-tile tables. [`choose`] is built on it.
/// Whether the CPU runs the pick's ISA is the caller's question (`choose`
/// is given a usable ISA; [`candidates`] checks).
pub(crate) fn realize(spec: &ConvSpec, pick: Pick, activation: Activation) -> Option<Native> {
    match pick {
        Pick::Cranelift => None,
        Pick::Dw2x => dw2x_applies(spec, activation).then_some(Native::Dw2x),
        Pick::S3k9 => s3k9_applies(spec, activation).then_some(Native::S3k9),
        Pick::Pixel(isa) => plan_pv(spec, isa).filter(|p| p.calls(spec) <= MAX_PV_CALLS).map(Native::Pixel),
        Pick::Channel(isa) if cv_table_bytes(spec) <= MAX_CV_TABLE_BYTES => plan_cv(spec, isa).map(Native::Channel),
        Pick::Channel(_) => None,
    }
}

/// Every strategy that can compute `spec` on this CPU with `isa` as the
/// widest tier (the narrower AVX2 tiles too on an AVX-512 machine), the
/// Cranelift kernel always: the candidates autotuning times.
pub(crate) fn candidates(spec: &ConvSpec, isa: NativeIsa, activation: Activation) -> Vec<Pick> {
    let available = |i: NativeIsa| i.resolve() == Some(i);
    let mut isas: Vec<NativeIsa> = [isa].into_iter().filter(|&i| available(i)).collect();
    if isa == NativeIsa::Avx512 && available(NativeIsa::Avx2) {
        isas.push(NativeIsa::Avx2);
    }
    // The dedicated kernels are AVX-512 code.
    let mut picks = if isas.contains(&NativeIsa::Avx512) { vec![Pick::Dw2x, Pick::S3k9] } else { Vec::new() };
    for &i in &isas {
        picks.push(Pick::Pixel(i));
        picks.push(Pick::Channel(i));
    }
    let mut out: Vec<Pick> = picks.into_iter().filter(|&p| realize(spec, p, activation).is_some()).collect();
    out.push(Pick::Cranelift);
    out
}

/// Bytes of pixel tables a channel-tile plan of `spec` builds: an input and
/// an output offset per output pixel of a group (saturating).
fn cv_table_bytes(spec: &ConvSpec) -> usize {
    spec.batch.saturating_mul(spec.out_h).saturating_mul(spec.out_w).saturating_mul(16)
}

/// ISA of a channel-tile kernel. With the `Auto` tier on an AVX-512 machine
/// that measured it faster (`narrow_aliased`, AMD Zen 4 only; on an Intel
/// Xeon AVX-512 wins by 1.3–1.8x), AVX2 for output channel planes a multiple
/// of 4 KiB apart (channel-major tile stores) with multi-tap phases. Measured on Zen 4
/// (GFLOP/s, 1 / 2 threads, AVX-512 → AVX2): dcgan4 55–97 / 192 → 102 / 196,
/// fcn8x 55 / 81 → 57 / 98, dil 78–87 / 75 → 74 / 73; single-tap unet_up stays
/// on AVX-512 (104 / 198 vs 92 / 168).
fn channel_tile_isa(spec: &ConvSpec, isa: NativeIsa, auto: bool, narrow_aliased: bool) -> NativeIsa {
    let channel_major = (spec.out_h * spec.out_w * 4).is_multiple_of(4096);
    let multi_tap = spec.phase_pairs().iter().any(|&p| spec.taps(p) > 1);
    if auto && isa == NativeIsa::Avx512 && channel_major && multi_tap && narrow_aliased {
        NativeIsa::Avx2
    } else {
        isa
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    #[allow(clippy::too_many_arguments)]
    fn ct(n: usize, ci: usize, hw: usize, co: usize, g: usize, k: usize, s: usize, p: usize, op: usize) -> ConvSpec {
        let geom = ConvTranspose2dGeometry::from_output_padding(
            n,
            ci,
            [hw, hw],
            co,
            g,
            [k, k],
            [s, s],
            [p, p],
            [op, op],
            [1, 1],
        )
        .unwrap();
        ConvSpec::conv_transpose(&geom).unwrap()
    }

    fn name(c: &Option<Native>) -> String {
        match c {
            None => "cranelift".into(),
            Some(Native::Dw2x) => "dw2x".into(),
            Some(Native::S3k9) => "s3k9".into(),
            Some(Native::Pixel(_)) => "pixel".into(),
            Some(Native::Channel(p)) => format!("channel-{:?}", p.isa),
        }
    }

    #[test]
    fn rules_pick_the_measured_strategy() {
        let a = Activation::Identity;
        let avx512 = NativeIsa::Avx512;
        // Depthwise k4 s2 p1 with rows a multiple of 16: the dedicated kernel
        // on AVX-512 only; on AVX2 the tiny reduction keeps Cranelift.
        let dw = ct(1, 32, 32, 32, 32, 4, 2, 1, 0);
        assert_eq!(name(&choose(&dw, avx512, a, true, true)), "dw2x");
        assert_eq!(name(&choose(&dw, NativeIsa::Avx2, a, true, true)), "cranelift");
        // FSRCNN's last layer.
        let fs = ct(1, 56, 32, 1, 1, 9, 3, 4, 2);
        assert_eq!(name(&choose(&fs, avx512, a, true, true)), "s3k9");
        assert_eq!(name(&choose(&fs, NativeIsa::Avx2, a, true, true)), "pixel");
        // Few output channels, real reduction: pixel tiles (DCGAN's last layer).
        assert_eq!(name(&choose(&ct(2, 64, 32, 3, 1, 4, 2, 1, 0), avx512, a, true, true)), "pixel");
        // Many output channels: channel tiles; 4 KiB-aliased output planes with
        // multi-tap phases narrow to AVX2 under Auto only.
        let dcgan4 = ct(1, 256, 16, 128, 1, 4, 2, 1, 0);
        assert_eq!(name(&choose(&dcgan4, avx512, a, true, true)), "channel-Avx2");
        assert_eq!(name(&choose(&dcgan4, avx512, a, false, true)), "channel-Avx512");
        assert_eq!(name(&choose(&dcgan4, avx512, a, true, false)), "channel-Avx512");
        // Single-tap (k2 s2) stays on AVX-512 even with aliased planes.
        assert_eq!(name(&choose(&ct(1, 128, 32, 64, 1, 2, 2, 0, 0), avx512, a, true, true)), "channel-Avx512");
    }

    #[test]
    fn picks_round_trip_through_their_names() {
        for p in [
            Pick::Cranelift,
            Pick::Dw2x,
            Pick::S3k9,
            Pick::Pixel(NativeIsa::Avx512),
            Pick::Pixel(NativeIsa::Avx2),
            Pick::Channel(NativeIsa::Avx512),
            Pick::Channel(NativeIsa::Avx2),
        ] {
            assert_eq!(p.to_string().parse::<Pick>(), Ok(p));
        }
        assert!("pixel-tiles-sse".parse::<Pick>().is_err());
        assert!("fast".parse::<Pick>().is_err());
    }

    #[test]
    fn huge_layers_fall_back_to_cranelift() {
        // 256·130·130 output pixels: tables over the cap, so no channel-tile plan.
        let big = ct(256, 16, 65, 16, 1, 4, 2, 1, 0);
        assert!(cv_table_bytes(&big) > MAX_CV_TABLE_BYTES);
        assert_eq!(name(&choose(&big, NativeIsa::Avx512, Activation::Identity, true, true)), "cranelift");
    }
}
