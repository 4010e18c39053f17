//! Loop schedule of a convolution kernel: register blocking, work items and
//! the per-phase regions of pixel blocks, as plain data.
//!
//! Both convolutions are first described as a [`ConvSpec`] (a grouped
//! correlation over the output phases planned by [`crate::phase`]). The
//! schedule then decides, at compile time, how output channels are split into
//! register blocks ([`Blocking`]) and how each phase's output pixels are
//! visited ([`Region`]): interior pixels in runtime loops with a fixed tap set,
//! edge pixels in straight-line blocks whose per-pixel tap sets are known.
//! This module emits no code and touches no weights; `codegen::conv` turns a
//! schedule into CLIF and `pack` lays the weights out to match.

use std::ops::Range;

use crate::error::JitError;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::phase::{conv_axis, conv_transpose_axis, AxisPlan};

/// Output channels per SIMD vector (`f32x4`).
pub const LANES: usize = 4;

/// Accumulator registers a block aims to keep live (x86-64 has 16 xmm registers;
/// the rest hold weights and the broadcast input).
pub const ACCUMULATORS: usize = 12;

/// Most channel vectors per block.
pub const MAX_VECTORS: usize = 3;

/// A phase with at most this many output pixels is visited as one flat list,
/// so register blocks may span rows.
const FLATTEN_MAX_PIXELS: usize = 64;

/// A grouped correlation over output phases; the common form of conv and
/// transposed conv.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    /// Operator name for messages and symbol names.
    pub op: &'static str,
    /// Batch size.
    pub batch: usize,
    /// Number of groups.
    pub groups: usize,
    /// Input channels per group.
    pub cig: usize,
    /// Output channels per group.
    pub cog: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Vertical plan.
    pub h: AxisPlan,
    /// Horizontal plan.
    pub w: AxisPlan,
    /// Phase pairs `(h phase, w phase)` in packing order (computed once; see
    /// [`MAX_PHASE_PAIRS`]).
    pairs: Vec<(usize, usize)>,
    /// `taps_before[k]`: 2-D taps of the pairs before pair `k` (`k ≤ pairs.len()`),
    /// so a pair's packed-weight offset is O(1).
    taps_before: Vec<usize>,
}

/// Most phase pairs (`s_h·s_w` for a transposed convolution) a kernel is
/// planned for. Every pair gets its own tap tables and weight records, so
/// a stride of 16384 would mean 2.7·10⁸ pairs (gigabytes of plan for a
/// 1 GiB output); such layers are refused with [`JitError::TooLarge`]
/// instead. 65536 is a 256×256 stride, far beyond any published decoder.
pub const MAX_PHASE_PAIRS: usize = 1 << 16;

impl ConvSpec {
    /// Spec of a validated transposed convolution; fails when it has more
    /// than [`MAX_PHASE_PAIRS`] phase pairs.
    pub fn conv_transpose(g: &ConvTranspose2dGeometry) -> Result<Self, JitError> {
        Self::with_pairs(Self {
            op: "conv_transpose2d",
            batch: g.batch,
            groups: g.groups,
            cig: g.in_channels / g.groups,
            cog: g.out_channels / g.groups,
            in_h: g.in_h,
            in_w: g.in_w,
            out_h: g.out_h,
            out_w: g.out_w,
            h: conv_transpose_axis(g.in_h, g.out_h, g.kernel[0], g.stride[0], g.padding[0], g.dilation[0]),
            w: conv_transpose_axis(g.in_w, g.out_w, g.kernel[1], g.stride[1], g.padding[1], g.dilation[1]),
            pairs: Vec::new(),
            taps_before: Vec::new(),
        })
    }

    /// Spec of a validated forward convolution (always one phase pair).
    pub fn conv(g: &Conv2dGeometry) -> Result<Self, JitError> {
        Self::with_pairs(Self {
            op: "conv2d",
            batch: g.batch,
            groups: g.groups,
            cig: g.in_channels / g.groups,
            cog: g.out_channels / g.groups,
            in_h: g.in_h,
            in_w: g.in_w,
            out_h: g.out_h,
            out_w: g.out_w,
            h: conv_axis(g.in_h, g.out_h, g.kernel[0], g.stride[0], g.padding[0], g.dilation[0]),
            w: conv_axis(g.in_w, g.out_w, g.kernel[1], g.stride[1], g.padding[1], g.dilation[1]),
            pairs: Vec::new(),
            taps_before: Vec::new(),
        })
    }

    /// Fills the pair list and tap prefix sums once the axis plans exist.
    fn with_pairs(mut self) -> Result<Self, JitError> {
        let (nh, nw) = (self.h.phases.len(), self.w.phases.len());
        let n = nh.saturating_mul(nw);
        if n > MAX_PHASE_PAIRS {
            return Err(JitError::TooLarge {
                kernel: self.op.to_string(),
                what: "phase pairs (stride_h·stride_w)",
                value: n as u64,
                limit: MAX_PHASE_PAIRS as u64,
            });
        }
        self.pairs = (0..nh).flat_map(|ph| (0..nw).map(move |pw| (ph, pw))).collect();
        let mut before = Vec::with_capacity(n + 1);
        let mut acc = 0usize;
        before.push(0);
        for &p in &self.pairs {
            acc += self.taps(p);
            before.push(acc);
        }
        self.taps_before = before;
        Ok(self)
    }

    /// Phase pairs `(h phase, w phase)` in the order weights are packed.
    pub fn phase_pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// 2-D taps of all phase pairs before pair number `k` (`k` may be
    /// `phase_pairs().len()`, giving the total).
    pub fn taps_before(&self, k: usize) -> usize {
        self.taps_before[k.min(self.pairs.len())]
    }

    /// Number of 2-D taps of a phase pair.
    pub fn taps(&self, (ph, pw): (usize, usize)) -> usize {
        self.h.phases[ph].taps.len() * self.w.phases[pw].taps.len()
    }
}

/// Shape of one register block: `v` vectors of output channels times `p` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Channel vectors (`LANES` channels each).
    pub v: usize,
    /// Output pixels per block.
    pub p: usize,
    /// Valid channels (`≤ LANES·v`); lanes beyond are computed on zero weights and not stored.
    pub channels: usize,
}

impl Variant {
    fn for_channels(channels: usize) -> Self {
        // 3 vectors × 4 pixels measured best on the DCGAN layers (vs 3×3, 2×4,
        // 2×6, 1×12); fewer channels fall back to wider pixel blocks.
        let v = channels.div_ceil(LANES).clamp(1, MAX_VECTORS);
        Self { v, p: ACCUMULATORS / v, channels }
    }
}

/// How a group's output channels are split into register blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocking {
    /// Shape of the full blocks.
    pub full: Variant,
    /// Number of full blocks per group.
    pub nb_full: usize,
    /// Last, partial block, if `cog` is not a multiple of the full block.
    pub tail: Option<Variant>,
}

impl Blocking {
    /// Blocking for `cog` output channels per group.
    pub fn new(cog: usize) -> Self {
        let full = Variant::for_channels(cog.min(LANES * MAX_VECTORS));
        let per = LANES * full.v;
        let nb_full = cog / per;
        let rem = cog % per;
        let tail = (rem > 0).then(|| Variant::for_channels(rem));
        Self { full, nb_full, tail }
    }

    /// Blocks per group.
    pub fn blocks(&self) -> usize {
        self.nb_full + usize::from(self.tail.is_some())
    }

    /// Floats reserved per block for bias and per channel vector slot.
    pub fn slot_channels(&self) -> usize {
        LANES * self.full.v
    }

    /// Variant of block `b`.
    pub fn variant(&self, b: usize) -> Variant {
        if b < self.nb_full {
            self.full
        } else {
            self.tail.unwrap_or(self.full)
        }
    }
}

/// One output pixel of a block, relative to the block's base pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixel {
    /// Input offset in floats (within one input channel plane).
    pub in_off: i64,
    /// Output offset in floats (within one output channel plane).
    pub out_off: i64,
    /// Valid vertical tap indices.
    pub th: Range<usize>,
    /// Valid horizontal tap indices.
    pub tw: Range<usize>,
}

/// Pixels computed together in registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// At most `Variant::p` pixels.
    pub pixels: Vec<Pixel>,
}

/// A runtime counted loop advancing the input and output pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop {
    /// Trip count (≥ 2; single iterations are emitted straight).
    pub count: usize,
    /// Input pointer step in floats.
    pub in_step: i64,
    /// Output pointer step in floats.
    pub out_step: i64,
}

/// Innermost loop of a region: the same block repeated along a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    /// The loop.
    pub lp: Loop,
    /// Input offset of the first iteration relative to the row.
    pub start_in: i64,
    /// Output offset of the first iteration relative to the row.
    pub start_out: i64,
    /// Block, relative to the loop's pointers.
    pub block: Block,
}

/// A set of rows sharing one vertical tap range (or a flattened small phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Input offset of the first row (floats within an input plane).
    pub base_in: i64,
    /// Output offset of the first row (floats within an output plane).
    pub base_out: i64,
    /// Loop over rows, or `None` for a single row.
    pub rows: Option<Loop>,
    /// Blocks before the inner loop, relative to the row.
    pub pre: Vec<Block>,
    /// Interior loop.
    pub inner: Option<Inner>,
    /// Blocks after the inner loop, relative to the row.
    pub post: Vec<Block>,
}

impl Region {
    /// All blocks (each once, regardless of loop trip counts).
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.pre.iter().chain(self.inner.iter().map(|i| &i.block)).chain(self.post.iter())
    }

    /// Output offsets written by this region, expanded over its loops (for tests).
    #[cfg(test)]
    pub fn written(&self) -> Vec<i64> {
        let mut out = Vec::new();
        let rows = self.rows.map_or((1, 0), |l| (l.count, l.out_step));
        for r in 0..rows.0 {
            let row = self.base_out + r as i64 * rows.1;
            for b in self.pre.iter().chain(self.post.iter()) {
                out.extend(b.pixels.iter().map(|p| row + p.out_off));
            }
            if let Some(i) = &self.inner {
                for k in 0..i.lp.count {
                    let at = row + i.start_out + k as i64 * i.lp.out_step;
                    out.extend(i.block.pixels.iter().map(|p| at + p.out_off));
                }
            }
        }
        out
    }
}

fn chunk(pixels: Vec<Pixel>, p: usize) -> Vec<Block> {
    pixels.chunks(p.max(1)).map(|c| Block { pixels: c.to_vec() }).collect()
}

/// Regions visiting every output pixel of phase pair `(ph, pw)` once, with
/// blocks of at most `p` pixels.
pub fn phase_regions(spec: &ConvSpec, (ph, pw): (usize, usize), p: usize) -> Vec<Region> {
    let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pw]);
    let (qh_n, qw_n) = (hp.count, wp.count);
    let in_w = spec.in_w as i64;
    let out_w = spec.out_w as i64;
    let (ish, isw) = (spec.h.in_step as i64, spec.w.in_step as i64);
    let (osh, osw) = (spec.h.out_step as i64, spec.w.out_step as i64);
    let row_in = |qh: usize| qh as i64 * ish * in_w;
    let row_out = |qh: usize| (qh as i64 * osh + hp.first as i64) * out_w;
    let col = |qw: usize, th: Range<usize>| Pixel {
        in_off: qw as i64 * isw,
        out_off: qw as i64 * osw + wp.first as i64,
        th,
        tw: spec.w.valid_taps(pw, qw),
    };

    if qh_n * qw_n <= FLATTEN_MAX_PIXELS {
        let mut pixels = Vec::new();
        for qh in 0..qh_n {
            let th = spec.h.valid_taps(ph, qh);
            for qw in 0..qw_n {
                let mut px = col(qw, th.clone());
                px.in_off += row_in(qh);
                px.out_off += row_out(qh);
                pixels.push(px);
            }
        }
        return vec![Region { base_in: 0, base_out: 0, rows: None, pre: chunk(pixels, p), inner: None, post: vec![] }];
    }

    // Horizontal structure, shared by every row: straight-line edge blocks
    // around a runtime loop over the interior, where all w taps are valid.
    let interior = spec.w.interior(pw);
    let loop_start = interior.start.div_ceil(p) * p;
    let n_loop = if interior.is_empty() || loop_start >= interior.end { 0 } else { (interior.end - loop_start) / p };
    let (pre_cols, inner_cols, post_cols) = if n_loop >= 2 {
        let end = loop_start + n_loop * p;
        (0..loop_start, Some(loop_start..end), end..qw_n)
    } else {
        (0..qw_n, None, qw_n..qw_n)
    };

    spec.h
        .segments(ph)
        .into_iter()
        .map(|seg| {
            let rows = seg.q.len();
            let pre = chunk(pre_cols.clone().map(|qw| col(qw, seg.taps.clone())).collect(), p);
            let post = chunk(post_cols.clone().map(|qw| col(qw, seg.taps.clone())).collect(), p);
            let inner = inner_cols.clone().map(|cols| {
                let block = Block {
                    pixels: (0..p)
                        .map(|j| {
                            let mut px = col(cols.start + j, seg.taps.clone());
                            px.in_off = j as i64 * isw;
                            px.out_off = j as i64 * osw;
                            px
                        })
                        .collect(),
                };
                Inner {
                    lp: Loop { count: n_loop, in_step: p as i64 * isw, out_step: p as i64 * osw },
                    start_in: cols.start as i64 * isw,
                    start_out: cols.start as i64 * osw + wp.first as i64,
                    block,
                }
            });
            Region {
                base_in: row_in(seg.q.start),
                base_out: row_out(seg.q.start),
                rows: (rows >= 2).then_some(Loop { count: rows, in_step: ish * in_w, out_step: osh * out_w }),
                pre,
                inner,
                post,
            }
        })
        .collect()
}

/// Rough number of CLIF instructions a block costs, used to refuse kernels
/// whose unrolled code would be unreasonably large.
pub fn block_cost(block: &Block, v: usize) -> u64 {
    let mut pairs = 0u64;
    let mut taps = 0u64;
    let (th, tw) = union_ranges(block);
    for a in th.clone() {
        for b in tw.clone() {
            let n = block.pixels.iter().filter(|p| p.th.contains(&a) && p.tw.contains(&b)).count() as u64;
            if n > 0 {
                taps += 1;
                pairs += n;
            }
        }
    }
    let p = block.pixels.len() as u64;
    let v = v as u64;
    taps * v + pairs * (2 + v) + p * v * (LANES as u64 * 2 + 2) + 16
}

/// Smallest ranges containing every pixel's vertical and horizontal tap ranges.
pub fn union_ranges(block: &Block) -> (Range<usize>, Range<usize>) {
    let mut acc: Option<(Range<usize>, Range<usize>)> = None;
    for p in &block.pixels {
        if !p.th.is_empty() && !p.tw.is_empty() {
            acc = Some(match acc {
                None => (p.th.clone(), p.tw.clone()),
                Some((th, tw)) => {
                    (th.start.min(p.th.start)..th.end.max(p.th.end), tw.start.min(p.tw.start)..tw.end.max(p.tw.end))
                }
            });
        }
    }
    acc.unwrap_or((0..0, 0..0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(in_hw: [usize; 2], k: usize, s: usize, p: usize, op: usize, d: usize) -> ConvSpec {
        let g =
            ConvTranspose2dGeometry::from_output_padding(1, 1, in_hw, 1, 1, [k; 2], [s; 2], [p; 2], [op; 2], [d; 2])
                .unwrap();
        ConvSpec::conv_transpose(&g).unwrap()
    }

    /// Every output pixel is written exactly once across all phases.
    fn check_cover(s: &ConvSpec, p: usize) {
        let mut all = Vec::new();
        for &pair in s.phase_pairs() {
            for r in phase_regions(s, pair, p) {
                assert!(r.blocks().all(|b| !b.pixels.is_empty() && b.pixels.len() <= p));
                all.extend(r.written());
            }
        }
        all.sort();
        let want: Vec<i64> = (0..(s.out_h * s.out_w) as i64).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn regions_cover_output_once() {
        check_cover(&spec([4, 4], 4, 2, 1, 0, 1), 4);
        check_cover(&spec([32, 32], 4, 2, 1, 0, 1), 4);
        check_cover(&spec([16, 16], 16, 8, 4, 0, 1), 12);
        check_cover(&spec([64, 64], 9, 3, 4, 2, 1), 6);
        check_cover(&spec([20, 3], 3, 2, 2, 1, 2), 4);
        check_cover(&spec([30, 30], 1, 4, 0, 3, 1), 4);
    }

    #[test]
    fn blocking() {
        assert_eq!(Blocking::new(256).full, Variant { v: 3, p: 4, channels: 12 });
        assert_eq!(Blocking::new(256).nb_full, 21);
        assert_eq!(Blocking::new(256).tail, Some(Variant { v: 1, p: 12, channels: 4 }));
        let b = Blocking::new(6);
        assert_eq!((b.nb_full, b.tail), (0, Some(Variant { v: 2, p: 6, channels: 6 })));
        assert_eq!(b.variant(0).channels, 6);
        assert_eq!(Blocking::new(1).tail, Some(Variant { v: 1, p: 12, channels: 1 }));
    }
}
