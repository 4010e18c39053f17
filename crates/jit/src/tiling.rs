//! Native-tier schedules: how a convolution's output is cut into register
//! tiles for the `std::arch` micro-kernels of [`crate::microkernel`], as plain data.
//!
//! * [`CvPlan`] (channel tiles, many output channels per group): per phase
//!   pair, output pixels are grouped into *tap classes* (the product of one
//!   vertical and one horizontal edge segment, so every pixel of a class uses
//!   the same taps) **across the whole batch**, and each class is cut into
//!   tiles of `P` pixels. Folding the batch in keeps tiles full where a phase
//!   has few pixels (1x1-input and 4x4-input DCGAN layers) and leaves at most
//!   `P - 1` remainder pixels per class, which run as one smaller native tile.
//!   Work items are `(group, channel panel, chunk of tiles)`, so batch-1
//!   layers still split across threads. Where input channel planes alias in
//!   L1 (plane strides of multiples of 4 KiB), tiles of all phases are run
//!   grouped by input position, and AVX2 plans also copy each group's input
//!   into a dense buffer ([`CvPack`]).
//! * [`PvPlan`] (pixel tiles, few output channels per group): lanes run along
//!   the pixels of a phase row; edges are masked in the micro-kernel; with few
//!   accumulators, two rows share a tile. Work items are `(n, group, chunk of
//!   rows)`.
//!
//! This module emits no code; `codegen::native_tier` does.

use std::ops::Range;

use crate::microkernel::{cv_pixels, NativeIsa, MAX_PV_TAPS, PV_VECTORS};
use crate::schedule::{Blocking, ConvSpec, Variant, LANES};

/// Work items a kernel aims for, so two (or a few) threads balance.
const TARGET_ITEMS: usize = 16;

/// Output pixels sharing one tap set within a phase pair.
#[derive(Debug, Clone)]
pub struct CvClass {
    /// Index of the phase pair in [`ConvSpec::phase_pairs`].
    pub pair_index: usize,
    /// Vertical tap indices (into the phase's taps); kept for tests and diagnostics.
    #[allow(dead_code)]
    pub th: Range<usize>,
    /// Horizontal tap indices.
    #[allow(dead_code)]
    pub tw: Range<usize>,
    /// `(input float offset, weight float offset within an input-channel record)` per tap.
    pub taps: Vec<(i64, i64)>,
}

/// A piece of a chunk: consecutive native tiles, or an input repack.
#[derive(Debug, Clone)]
pub enum CvRun {
    /// `count` tiles of `p` pixels of one class; their pixel tables start at
    /// `table` (in `i64`s) and follow each other (`2·p` entries each).
    Tiles {
        /// Class index.
        class: usize,
        /// Whether every tile's input offsets are consecutive floats.
        contig: bool,
        /// Pixels per tile (the plan's `p`, or fewer for a class's remainder).
        p: usize,
        /// Number of tiles.
        count: usize,
        /// Start of the first tile's table.
        table: usize,
        /// Whether the tiles read the chunk's packed input buffer (filled by
        /// the last [`CvRun::Pack`]) instead of the input tensor.
        packed: bool,
    },
    /// Copies input floats `lo..lo + span` (offsets within the group's input,
    /// the same in every input channel) of every input channel into the
    /// packed buffer, channel stride [`CvPack::stride`] floats.
    Pack {
        /// First float offset.
        lo: i64,
        /// Floats per channel.
        span: usize,
    },
    /// Writes the bias (activated) to the hole pixels of rows
    /// `rows` of [`CvFill::rows`], for every channel of the panel.
    Fill {
        /// Row indices into [`CvFill::rows`].
        rows: Range<usize>,
    },
}

/// The output pixels no tap reaches (*holes*: phases a kernel smaller than
/// its stride skips, padding wider than the kernel), which get the
/// activated bias and nothing else. They are not tiled: a tile of them is a
/// scatter of channel-strided scalar stores, one pass per phase over the
/// whole output (k1 s4: 15 of 16 pixels, 16 passes; ran at 0.22x of ONNX
/// Runtime). Instead every output row holding holes is written once per
/// channel with masked vector stores of 16 columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CvFill {
    /// 16-column blocks per output row (`ceil(out_w / 16)`).
    pub blocks: usize,
    /// Row patterns, `blocks` masks each (bit `l` of mask `b`: column
    /// `16·b + l` is a hole); rows with the same holes share one.
    pub masks: Vec<i64>,
    /// `(row start as an output float offset within the group, first mask
    /// index)` per row holding holes, in output order.
    pub rows: Vec<(i64, usize)>,
}

impl CvFill {
    /// The hole columns of the row whose masks start at `at`, in a row of
    /// `out_w` columns.
    pub fn columns(&self, at: usize, out_w: usize) -> impl Iterator<Item = usize> + '_ {
        (0..out_w).filter(move |&col| self.masks.get(at + col / 16).is_some_and(|m| m >> (col % 16) & 1 == 1))
    }

    /// Collects the holes of the tapless classes into row masks.
    fn new(spec: &ConvSpec, holes: &[ClassPixels]) -> CvFill {
        let out_w = spec.out_w as i64;
        let blocks = spec.out_w.div_ceil(16);
        let mut rows: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
        for c in holes {
            for &(_, o) in &c.pixels {
                let col = o.rem_euclid(out_w);
                let masks = rows.entry(o - col).or_insert_with(|| vec![0; blocks]);
                masks[(col / 16) as usize] |= 1 << (col % 16);
            }
        }
        let mut fill = CvFill { blocks, ..CvFill::default() };
        let mut patterns: std::collections::HashMap<Vec<i64>, usize> = std::collections::HashMap::new();
        for (start, m) in rows {
            let at = *patterns.entry(m).or_insert_with_key(|m| {
                fill.masks.extend_from_slice(m);
                fill.masks.len() - blocks
            });
            fill.rows.push((start, at));
        }
        fill
    }
}

/// Input packing of a channel-tile plan: tiles whose input lies in a short
/// range are grouped, and the range is copied once per group into a dense
/// stack buffer that every tile of the group (all phases) then reads. Used
/// when input channel planes alias in L1 (plane strides of multiples of 4 KiB
/// put every channel of a tile in the same cache set).
///
/// The buffer lives in the kernel's stack frame, so its size is bounded by
/// [`MAX_PACK_FRAME_BYTES`] whatever the layer: a plan that would need more
/// does not pack. Tiles address it as `buffer + pixel offset + tap offset`,
/// where only the sum is inside the buffer (the micro-kernels form the
/// intermediate pointer with wrapping arithmetic), so no slack is reserved
/// for negative tap offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CvPack {
    /// Floats per input channel in the buffer (most a group may span).
    pub stride: usize,
}

/// Largest packed-input buffer a kernel frame may hold. Worker threads have
/// 2 MiB stacks and the frame is probed page by page, so this leaves ample
/// room; [`crate::verify`] checks it again before code is emitted.
pub const MAX_PACK_FRAME_BYTES: usize = 64 * 1024;

impl CvPack {
    /// Buffer size in bytes for `cig` input channels (saturating, so an
    /// absurd size compares as too large instead of wrapping).
    pub fn bytes(&self, cig: usize) -> usize {
        cig.saturating_mul(self.stride).saturating_add(16).saturating_mul(4)
    }
}

/// Channel-tile schedule of one convolution.
#[derive(Debug, Clone)]
pub struct CvPlan {
    /// Micro-kernel ISA.
    pub isa: NativeIsa,
    /// Panel width in channels (16 or 32).
    pub pw: usize,
    /// Pixels per full native tile (for tests and diagnostics).
    #[allow(dead_code)]
    pub p: usize,
    /// Weight blocking matching the panels.
    pub blocking: Blocking,
    /// Tap classes.
    pub classes: Vec<CvClass>,
    /// Chunks of runs; a work item is `(group, panel, chunk)`.
    pub chunks: Vec<Vec<CvRun>>,
    /// Pixel tables: per tile, `p` input then `p` output byte offsets.
    pub tables: Vec<i64>,
    /// Number of native tiles, remainder tiles included (for tests and diagnostics).
    #[allow(dead_code)]
    pub tiles: usize,
    /// Input packing, if used.
    pub pack: Option<CvPack>,
    /// The hole pixels, if any ([`CvRun::Fill`] runs write them).
    pub fill: Option<CvFill>,
    /// Blocks of input channels (consecutive ranges covering `0..cig`): a
    /// work item runs its chunk once per block, the first block from the
    /// bias, each later one adding to the partial sums in the output (see
    /// [`kblocks`]). One block for most layers.
    pub kblocks: Vec<Range<usize>>,
}

impl CvPlan {
    /// Panels per group.
    pub fn panels(&self) -> usize {
        self.blocking.blocks()
    }

    /// Work items per kernel run.
    pub fn work_items(&self, spec: &ConvSpec) -> usize {
        spec.groups * self.panels() * self.chunks.len()
    }
}

struct ClassPixels {
    class: CvClass,
    /// `(input offset, output offset)` in floats.
    pixels: Vec<(i64, i64)>,
}

fn classes(spec: &ConvSpec, pw: usize) -> Vec<ClassPixels> {
    let cin = (spec.groups * spec.cig) as i64;
    let cout = (spec.groups * spec.cog) as i64;
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let (in_w, out_w) = (spec.in_w as i64, spec.out_w as i64);
    let mut out = Vec::new();
    for (pi, &(ph, pwi)) in spec.phase_pairs().iter().enumerate() {
        let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pwi]);
        let ntw = wp.taps.len();
        for hs in spec.h.segments(ph) {
            for ws in spec.w.segments(pwi) {
                let mut taps = Vec::new();
                for th in hs.taps.clone() {
                    for tw in ws.taps.clone() {
                        let xo = hp.taps[th].in_off * in_w + wp.taps[tw].in_off;
                        taps.push((xo, ((th * ntw + tw) * pw) as i64));
                    }
                }
                let mut pixels = Vec::new();
                for n in 0..spec.batch as i64 {
                    for qh in hs.q.clone() {
                        for qw in ws.q.clone() {
                            let (qh, qw) = (qh as i64, qw as i64);
                            let xi = n * cin * hw_in + qh * spec.h.in_step as i64 * in_w + qw * spec.w.in_step as i64;
                            let oh = qh * spec.h.out_step as i64 + hp.first as i64;
                            let ow = qw * spec.w.out_step as i64 + wp.first as i64;
                            pixels.push((xi, n * cout * hw_out + oh * out_w + ow));
                        }
                    }
                }
                out.push(ClassPixels {
                    class: CvClass { pair_index: pi, th: hs.taps.clone(), tw: ws.taps.clone(), taps },
                    pixels,
                });
            }
        }
    }
    out
}

/// Weight blocking whose blocks are panels of `pw` channels (all of the same
/// vector count, so every panel has the same packed layout).
fn panel_blocking(cog: usize, pw: usize) -> Blocking {
    let v = pw / LANES;
    let rem = cog % pw;
    Blocking {
        full: Variant { v, p: 1, channels: pw },
        nb_full: cog / pw,
        tail: (rem > 0).then_some(Variant { v, p: 1, channels: rem }),
    }
}

/// Bytes of one panel's output band (rows of all phases run together).
const BAND_BYTES: usize = 192 * 1024;

/// Bytes of packed input a group of tiles may use (leaves most of L1 to the
/// weight stream).
const PACK_BYTES: usize = 24 * 1024;

/// How many times over `channels` input planes `stride` bytes apart
/// oversubscribe the L1 sets they map to (Zen 4 / most x86: 64 sets of 8
/// ways, 64-byte lines): above 1, a tile's input lines evict each other.
fn l1_oversubscription(stride: usize, channels: usize) -> f64 {
    if !stride.is_multiple_of(64) {
        return 0.0;
    }
    let lines = stride / 64;
    let mut g = 64;
    let mut l = lines % 64;
    while l != 0 {
        (g, l) = (l, g % l);
    }
    let sets = 64 / g;
    channels as f64 / (sets * 8) as f64
}

/// Whether `channels` input planes `stride` bytes apart alias in L1.
fn planes_alias(stride: usize, channels: usize) -> bool {
    channels >= 16 && l1_oversubscription(stride, channels) > 1.0
}

/// Bytes a chunk's sweep over one block of input channels may touch (its
/// input lines, a tap class's weight record and its output partial sums):
/// a Zen 4 core's L2, so the block's data stays there while every tile of
/// the chunk reads it.
const KBLOCK_BYTES: usize = 1024 * 1024;

/// Most bytes of a chunk's output (one panel) for which input-channel
/// blocks are used: each later block reads and writes the partial sums
/// again (channel-strided scalar accesses), which must stay in L2 and be
/// few. Measured on one Zen 4 thread, 4 blocks: CycleGAN up2 at 128x128
/// (1.5 MB per chunk) 34 → 54 ms; CycleGAN up1 at 32x32 (196 KB) and a
/// U-Net up1 (131 KB) 0.87x; pix2pix up5 (66 KB) 1.2x.
const KBLOCK_OUT_BYTES: usize = 96 * 1024;

/// Fewest input channels per block: each later block adds the tiles'
/// partial sums back from the output (`P·pw` scalar loads against
/// `cig·taps·P·pw/16` FMAs).
const MIN_KBLOCK: usize = 32;

/// Input-channel blocks for chunks whose sweep over all `cig` input
/// channels touches more than [`KBLOCK_BYTES`]: every tile of a chunk reads
/// the chunk's input lines and its class's weight record once per input
/// channel, so beyond L2 each tile streams them from L3 (measured, pix2pix
/// up5, 1024 → 256 channels at 16x16, one Zen 4 thread: 100 GFLOP/s with
/// 128 input channels, 72 with 1024). `per_channel` is the most bytes any
/// chunk touches per input channel, `out` the most output bytes any chunk
/// writes per panel.
fn kblocks(cig: usize, per_channel: usize, out: usize) -> Vec<Range<usize>> {
    if out > KBLOCK_OUT_BYTES || per_channel.saturating_mul(cig).saturating_add(out) <= KBLOCK_BYTES {
        return std::iter::once(0..cig).collect();
    }
    // Blocks of half the budget: L2 also holds the partial sums, the next
    // tiles' prefetched lines and, on two threads, nothing of the other's.
    let fit = ((KBLOCK_BYTES / 2).saturating_sub(out) / per_channel.max(1)).max(1);
    let n = cig.div_ceil(fit).min(cig / MIN_KBLOCK).max(1);
    (0..n).map(|b| cig * b / n..cig * (b + 1) / n).collect()
}

/// Plans channel tiles, or `None` if no class fills a single tile (the
/// Cranelift kernel is as good there).
pub fn plan_cv(spec: &ConvSpec, isa: NativeIsa) -> Option<CvPlan> {
    let pw = if spec.cog <= 16 { 16 } else { 32 };
    let v = pw / 16;
    let (holes, cls): (Vec<ClassPixels>, Vec<ClassPixels>) =
        classes(spec, pw).into_iter().partition(|c| c.class.taps.is_empty());
    // Pick the tile size with the least modelled cost: tiles amortize weight
    // loads and the call over P pixels; a tile with few accumulators is
    // latency-bound.
    let k_of = |c: &ClassPixels| (c.class.taps.len() * spec.cig).max(1) as f64;
    let tile_cost = |p: usize, k: f64| -> f64 { (p.max(4 / v) as f64 + 2.0) * k + 60.0 };
    let cost = |p: usize| -> f64 {
        cls.iter()
            .map(|c| {
                let n = c.pixels.len();
                let k = k_of(c);
                // Remainders are charged as Cranelift-speed pixels: measured, a
                // native remainder tile is far below full-tile speed (dcgan1:
                // 12 + 4 pixels per class ran at 60 % of 8 + 8).
                (n / p) as f64 * tile_cost(p, k) + (n % p) as f64 * k * 4.0
            })
            .sum()
    };
    let p = cv_pixels(isa, pw).min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(b.cmp(&a)))?;
    if cls.iter().all(|c| c.pixels.len() < p) {
        return None;
    }

    // Tiles (full ones, then each class's remainder) with their modelled cost.
    struct Tile {
        class: usize,
        px: Vec<(i64, i64)>,
        cost: f64,
        /// Input float range the tile reads (`None` without taps).
        foot: Option<(i64, i64)>,
    }
    let mut tiles = Vec::new();
    for (ci, c) in cls.iter().enumerate() {
        let k = k_of(c);
        let (dmin, dmax) = (c.class.taps.iter().map(|t| t.0).min(), c.class.taps.iter().map(|t| t.0).max());
        for t in c.pixels.chunks(p) {
            let foot = dmin.zip(dmax).map(|(lo, hi)| {
                let (a, b) = t.iter().fold((i64::MAX, i64::MIN), |(a, b), q| (a.min(q.0), b.max(q.0)));
                (a + lo, b + hi + 1)
            });
            tiles.push(Tile { class: ci, px: t.to_vec(), cost: tile_cost(t.len(), k), foot });
        }
    }
    let ntiles = tiles.len();

    // Groups of tiles executed together: with packing, tiles sorted by input
    // position are grouped while their input range fits the buffer.
    let plane = (spec.groups * spec.cig * spec.in_h * spec.in_w) as i64;
    let span_max = PACK_BYTES / (4 * spec.cig.max(1));
    let alias = planes_alias(spec.in_h * spec.in_w * 4, spec.cig);
    // Copying the input of each group into a dense buffer (measured, GFLOP/s at
    // 1 / 2 threads): AVX2 tiles read their input once per 16-channel half, so
    // they always gain (unet_up 72 → 90); AVX-512 tiles gain only when the
    // planes oversubscribe L1 at least 4x and taps reuse the lines (dcgan4:
    // 97 / 150 → 97 / 189), and lose a little otherwise (unet_up, 1 tap:
    // 103 / 193 → 98 / 181; dcgan3, 2x: 110 / 217 → 109 / 212).
    let multi_tap = cls.iter().any(|c| c.class.taps.len() > 1);
    let over = l1_oversubscription(spec.in_h * spec.in_w * 4, spec.cig);
    let copy = alias && (isa == NativeIsa::Avx2 || (over >= 4.0 && multi_tap));
    let pack = alias
        .then(|| CvPack { stride: span_max.div_ceil(8) * 8 })
        .filter(|pk| pk.bytes(spec.cig) <= MAX_PACK_FRAME_BYTES);
    /// Tiles run together, with the `(lo, span)` input range they share when
    /// packed, after the hole rows (indices into [`CvFill::rows`]) before them.
    type Group = (Option<(i64, usize)>, Vec<Tile>, Option<Range<usize>>);
    let mut groups: Vec<Group> = Vec::new();
    let fill = (!holes.is_empty()).then(|| CvFill::new(spec, &holes));
    let fill_rows = fill.as_ref().map_or(0, |f| f.rows.len());
    if pack.is_some() {
        let (mut packed, loose): (Vec<Tile>, Vec<Tile>) =
            tiles.into_iter().partition(|t| t.foot.is_some_and(|(a, b)| (b - a) as usize <= span_max));
        packed.sort_by_key(|t| (t.foot.map_or(0, |f| f.0), t.class));
        for t in packed {
            let (a, b) = t.foot.unwrap_or((0, 0));
            match groups.last_mut() {
                Some((Some((lo, span)), g, _))
                    if a.div_euclid(plane) == lo.div_euclid(plane)
                        && (b - 1).div_euclid(plane) == lo.div_euclid(plane)
                        && (b.max(*lo + *span as i64) - *lo) as usize <= span_max =>
                {
                    *span = (b.max(*lo + *span as i64) - *lo) as usize;
                    g.push(t);
                }
                _ => groups.push((Some((a, (b - a) as usize)), vec![t], None)),
            }
        }
        for (_, g, _) in &mut groups {
            // Same-class tiles next to each other: longer runs, weight panel reuse.
            g.sort_by_key(|t| t.class);
        }
        groups.extend(loose.into_iter().map(|t| (None, vec![t], None)));
        // Hole rows in even shares at the chunks' starts (below): no tile
        // writes a hole, so any split is race-free.
    } else {
        // Tiles in output bands of rows whose panel fits L2 next to the
        // weights, each band's hole rows first, tiles by class within a band
        // (weight records stay in L1 over a run). Phase by phase over the
        // whole output instead, every output line is written once per phase
        // pair, from DRAM when the output exceeds L2 (rand01, k3 s4 with 9
        // tapped pairs and holes, 38 MB out: 22 -> 10.6 ms on one Zen 4
        // thread; dense layers unchanged within noise: unet_u4 15.2 -> 13.6,
        // cnet_r2 29.6 -> 26.8, dcg64_l4 5.6 -> 5.4 ms, best of 2).
        let out_w = spec.out_w as i64;
        let out_item = (spec.groups * spec.cog) as i64 * (spec.out_h * spec.out_w) as i64;
        let band_rows = (BAND_BYTES / (spec.out_w * pw * 4).max(1)).max(1) as i64;
        let band = |o: i64| (o.div_euclid(out_item), o.rem_euclid(out_item) / out_w / band_rows);
        let mut tiles = tiles;
        tiles.sort_by_key(|t| (t.px.first().map(|q| band(q.1)), t.class, t.px.first().map(|q| q.1)));
        let mut next = 0;
        for t in tiles {
            let b = t.px.first().map(|q| band(q.1));
            let first = next;
            while let Some(&(start, _)) = fill.as_ref().and_then(|f| f.rows.get(next)) {
                if Some(band(start)) > b {
                    break;
                }
                next += 1;
            }
            groups.push((None, vec![t], (first < next).then_some(first..next)));
        }
        if next < fill_rows {
            groups.push((None, Vec::new(), Some(next..fill_rows)));
        }
    }
    let row_cost = fill.as_ref().map_or(0.0, |f| (f.blocks * pw) as f64 / 8.0 + 10.0);

    let blocking = panel_blocking(spec.cog, pw);
    let outer = spec.groups * blocking.blocks();
    let nch = TARGET_ITEMS.div_ceil(outer).clamp(1, groups.len().max(1));
    let cost_of =
        |g: &Group| g.1.iter().map(|t| t.cost).sum::<f64>() + g.2.as_ref().map_or(0.0, |r| r.len() as f64 * row_cost);
    let total: f64 = groups.iter().map(cost_of).sum();
    let mut chunks: Vec<Vec<CvRun>> = vec![Vec::new()];
    let mut tables = Vec::new();
    let mut done = 0.0;
    for (range, group, holes) in groups {
        // Start the next chunk once this one holds its share of the cost.
        if done >= total * chunks.len() as f64 / nch as f64 && chunks.len() < nch {
            chunks.push(Vec::new());
        }
        let chunk = chunks.last_mut().unwrap_or_else(|| unreachable!());
        if let Some(rows) = holes {
            done += rows.len() as f64 * row_cost;
            chunk.push(CvRun::Fill { rows });
        }
        // Without copying, the tiles only keep the grouped order.
        let range = range.filter(|_| copy);
        let base = if let Some((lo, span)) = range {
            chunk.push(CvRun::Pack { lo, span });
            Some(lo)
        } else {
            None
        };
        for t in group {
            done += t.cost;
            let contig = t.px.windows(2).all(|w| w[1].0 == w[0].0 + 1);
            let table = tables.len();
            let n = t.px.len();
            tables.extend(t.px.iter().map(|q| (q.0 - base.unwrap_or(0)) * 4));
            tables.extend(t.px.iter().map(|q| q.1 * 4));
            let packed = base.is_some();
            match chunk.last_mut() {
                Some(CvRun::Tiles { class: c, contig: g, p: tp, count, packed: pk, .. })
                    if *c == t.class && *g == contig && *tp == n && *pk == packed =>
                {
                    *count += 1
                }
                _ => chunk.push(CvRun::Tiles { class: t.class, contig, p: n, count: 1, table, packed }),
            }
        }
    }
    chunks.retain(|c| !c.is_empty());
    let pack = pack.filter(|_| chunks.iter().flatten().any(|r| matches!(r, CvRun::Pack { .. })));
    let placed = chunks.iter().flatten().any(|r| matches!(r, CvRun::Fill { .. }));
    if let (Some(f), false) = (&fill, placed) {
        let (n, k) = (f.rows.len(), chunks.len());
        for (i, chunk) in chunks.iter_mut().enumerate() {
            let rows = n * i / k..n * (i + 1) / k;
            if !rows.is_empty() {
                chunk.insert(0, CvRun::Fill { rows });
            }
        }
    }
    let (per_channel, out) = chunk_bytes(spec, &chunks, &tables, &cls, pw);
    let kblocks = kblocks(spec.cig, per_channel, out);
    Some(CvPlan {
        isa,
        pw,
        p,
        blocking,
        classes: cls.into_iter().map(|c| c.class).collect(),
        chunks,
        tables,
        tiles: ntiles,
        pack,
        fill,
        kblocks,
    })
}

/// The most bytes one chunk's sweep keeps in use per input channel, and
/// the most output bytes one chunk writes per panel. In use: the input lines
/// of one batch item (tiles run item by item: the span of the chunk's tile
/// and pack offsets within one item's channel plane) and the weight record
/// of one tap class (`taps·pw` floats; tiles of a class run together).
fn chunk_bytes(
    spec: &ConvSpec,
    chunks: &[Vec<CvRun>],
    tables: &[i64],
    cls: &[ClassPixels],
    pw: usize,
) -> (usize, usize) {
    let item = ((spec.groups * spec.cig * spec.in_h * spec.in_w) as i64).max(1);
    let (mut most, mut most_out) = (0, 0);
    for chunk in chunks {
        let mut pixels = 0;
        let mut weights = 0;
        // Per batch item, the span of input offsets within its planes.
        let mut spans: std::collections::HashMap<i64, (i64, i64)> = std::collections::HashMap::new();
        let mut reach = |a: i64, b: i64| {
            let e = spans.entry(a.div_euclid(item)).or_insert((i64::MAX, i64::MIN));
            *e = (e.0.min(a.rem_euclid(item)), e.1.max(b - a.div_euclid(item) * item));
        };
        for run in chunk {
            match *run {
                CvRun::Tiles { class, p, count, table, packed, .. } => {
                    pixels += p * count;
                    let taps = &cls[class].class.taps;
                    weights = weights.max(taps.len() * pw);
                    let (dmin, dmax) = taps.iter().fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t.0), b.max(t.0)));
                    // Packed tiles read the stack buffer; their packs count.
                    if packed || dmin > dmax {
                        continue;
                    }
                    for t in 0..count {
                        for &x in &tables[table + t * 2 * p..][..p] {
                            reach(x / 4 + dmin, x / 4 + dmax + 1);
                        }
                    }
                }
                CvRun::Pack { lo, span } => reach(lo, lo + span as i64),
                CvRun::Fill { .. } => {}
            }
        }
        let input = spans.values().map(|&(a, b)| (b - a).max(0) as usize).max().unwrap_or(0);
        let input = input.min(spec.in_h * spec.in_w);
        most = most.max(4 * (input + weights));
        most_out = most_out.max(4 * pw * pixels);
    }
    (most, most_out)
}

/// Most accumulators (vectors × channels × rows) of a multi-row pixel tile.
/// (dcgan5 with 12 measured no better.)
const ROWS_ACC: usize = 8;

/// One phase-row segment of a pixel-tile plan: rows sharing vertical taps.
#[derive(Debug, Clone)]
pub struct PvSegment {
    /// Index of the phase pair.
    pub pair_index: usize,
    /// Rows `qh` of the phase.
    pub rows: Range<usize>,
    /// `(input float offset from the row start, horizontal input offset,
    /// weight float offset within an input-channel record)` per tap,
    /// vertical-major (`ntw` horizontal taps per vertical tap).
    pub taps: Vec<(i64, i64, i64)>,
    /// Horizontal taps per vertical tap.
    pub ntw: usize,
    /// Whether consecutive rows may share a two-row tile (the vertical taps
    /// read consecutive input rows).
    pub pairable: bool,
}

/// Pixel-tile schedule of one convolution (few output channels per group).
#[derive(Debug, Clone)]
pub struct PvPlan {
    /// Micro-kernel ISA.
    pub isa: NativeIsa,
    /// Vectors per tile.
    pub nv: usize,
    /// Channels per tile (`cog`, at most 4).
    pub c: usize,
    /// Weight blocking (one 4-lane block).
    pub blocking: Blocking,
    /// Row segments.
    pub segments: Vec<PvSegment>,
    /// Chunks, each a list of `(segment, row sub-range)`; a work item is
    /// `(n, group, chunk)`.
    pub chunks: Vec<Vec<(usize, Range<usize>)>>,
    /// Rows per tile on pairable segments (1, 2 or 4; remaining rows run
    /// one per tile).
    pub rows: usize,
}

impl PvPlan {
    /// Pixels per tile.
    pub fn tile_pixels(&self) -> usize {
        self.nv * self.isa.lanes()
    }

    /// Work items per kernel run.
    pub fn work_items(&self, spec: &ConvSpec) -> usize {
        spec.batch * spec.groups * self.chunks.len()
    }

    /// Upper bound of the micro-kernel calls the emitted code contains: per
    /// chunk entry, one call per tile of the phase row in each of (at most)
    /// two loops (multi-row tiles, then single rows). Code size grows with it.
    pub fn calls(&self, spec: &ConvSpec) -> usize {
        let tile = self.tile_pixels().max(1);
        self.chunks
            .iter()
            .flatten()
            .map(|(si, _)| {
                let pw = spec.phase_pairs()[self.segments[*si].pair_index].1;
                2 * spec.w.phases[pw].count.div_ceil(tile)
            })
            .fold(0usize, usize::saturating_add)
    }
}

/// Plans pixel tiles for layers with at most 4 output channels per group
/// whose horizontal input step is 1 (transposed convs, stride-1 convs).
pub fn plan_pv(spec: &ConvSpec, isa: NativeIsa) -> Option<PvPlan> {
    if spec.cog > LANES || spec.w.in_step != 1 {
        return None;
    }
    let l = isa.lanes();
    let c = spec.cog;
    let widest = spec.w.phases.iter().map(|p| p.count).max().unwrap_or(1);
    let budget = if isa == NativeIsa::Avx512 { 16 } else { 12 };
    let nv = PV_VECTORS.iter().copied().filter(|&nv| nv * c <= budget && (nv == 1 || (nv / 2) * l < widest)).max()?;
    let in_w = spec.in_w as i64;
    let mut segments = Vec::new();
    for (pi, &(ph, pwi)) in spec.phase_pairs().iter().enumerate() {
        let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pwi]);
        let ntw = wp.taps.len();
        for hs in spec.h.segments(ph) {
            let mut taps = Vec::new();
            for th in hs.taps.clone() {
                for (tw, t) in wp.taps.iter().enumerate() {
                    taps.push((hp.taps[th].in_off * in_w + t.in_off, t.in_off, ((th * ntw + tw) * LANES) as i64));
                }
            }
            if taps.len() > MAX_PV_TAPS {
                return None;
            }
            let offs: Vec<i64> = hp.taps[hs.taps.clone()].iter().map(|t| t.in_off).collect();
            // A two-row tile derives row 1's input from row 0's last vertical
            // tap, so a segment without taps (bias-only rows: padding wider
            // than the kernel, phases a stride skips) is never pairable.
            let pairable = spec.h.in_step == 1 && !taps.is_empty() && offs.windows(2).all(|w| w[1] == w[0] + 1);
            segments.push(PvSegment { pair_index: pi, rows: hs.q, taps, ntw, pairable });
        }
    }
    // Split rows so that batch·groups·chunks reaches the target item count.
    let outer = spec.batch * spec.groups;
    let rows_total: usize = segments.iter().map(|s| s.rows.len()).sum();
    let nch = TARGET_ITEMS.div_ceil(outer).clamp(1, rows_total.max(1));
    let row_cost = |s: &PvSegment| {
        (s.taps.len() * spec.cig + 4) as f64 * spec.w.phases[spec.phase_pairs()[s.pair_index].1].count as f64
    };
    let total: f64 = segments.iter().map(|s| row_cost(s) * s.rows.len() as f64).sum();
    let mut chunks: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new()];
    let mut done = 0.0;
    for (si, s) in segments.iter().enumerate() {
        let rc = row_cost(s);
        for r in s.rows.clone() {
            if done >= total * chunks.len() as f64 / nch as f64 && chunks.len() < nch {
                chunks.push(Vec::new());
            }
            done += rc;
            let ch = chunks.last_mut().unwrap_or_else(|| unreachable!());
            match ch.last_mut() {
                Some((seg, rows)) if *seg == si && rows.end == r => rows.end = r + 1,
                _ => ch.push((si, r..r + 1)),
            }
        }
    }
    chunks.retain(|c| !c.is_empty());
    // Multi-row tiles where a tile has few accumulators (short rows, few
    // channels), so loads of shared input rows dominate: measured on fsrcnn
    // (1 channel, 4 vectors): 47 → 53 GFLOP/s with 2 rows; dcgan5 (3
    // channels, 2 vectors) stays at 1 row (no gain measured).
    let rows = if isa != NativeIsa::Avx512 || nv > 4 {
        1
    } else {
        crate::microkernel::PV_ROWS.iter().copied().filter(|&r| nv * c * r <= ROWS_ACC).max().unwrap_or(1)
    };
    Some(PvPlan { isa, nv, c, blocking: Blocking::new(spec.cog), segments, chunks, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    fn spec(n: usize, ci: usize, hw: usize, co: usize, k: usize, s: usize, p: usize) -> ConvSpec {
        let g = ConvTranspose2dGeometry::from_output_padding(
            n,
            ci,
            [hw, hw],
            co,
            1,
            [k, k],
            [s, s],
            [p, p],
            [0, 0],
            [1, 1],
        )
        .unwrap();
        ConvSpec::conv_transpose(&g).unwrap()
    }

    /// Native tiles (full and remainder) cover every output pixel once.
    #[test]
    fn cv_covers_every_pixel_once() {
        for (s, isa) in [
            (spec(16, 8, 1, 40, 4, 1, 0), NativeIsa::Avx512),
            (spec(3, 4, 4, 33, 4, 2, 1), NativeIsa::Avx512),
            (spec(1, 4, 9, 32, 3, 2, 1), NativeIsa::Avx512),
            (spec(2, 32, 32, 40, 4, 2, 1), NativeIsa::Avx2),
            (spec(2, 32, 32, 40, 4, 2, 1), NativeIsa::Avx512),
            // Kernels smaller than the stride: hole rows and columns.
            (spec(2, 16, 7, 40, 1, 4, 0), NativeIsa::Avx512),
            (spec(3, 8, 9, 24, 3, 4, 1), NativeIsa::Avx2),
            (spec(1, 20, 21, 17, 2, 3, 0), NativeIsa::Avx512),
        ] {
            let plan = plan_cv(&s, isa).unwrap();
            let holes = s.h.phases.iter().chain(&s.w.phases).any(|p| p.taps.is_empty());
            assert!(plan.fill.is_some() || !holes);
            let mut outs = Vec::new();
            for ch in &plan.chunks {
                for r in ch {
                    match r {
                        CvRun::Tiles { count, table, p, .. } => {
                            for t in 0..*count {
                                let base = table + t * 2 * p;
                                outs.extend(plan.tables[base + p..base + 2 * p].iter().map(|o| o / 4));
                            }
                        }
                        CvRun::Pack { .. } => {}
                        CvRun::Fill { rows } => {
                            let f = plan.fill.as_ref().unwrap();
                            for &(start, at) in &f.rows[rows.clone()] {
                                outs.extend(f.columns(at, s.out_w).map(|col| start + col as i64));
                            }
                        }
                    }
                }
            }
            outs.sort();
            let want: Vec<i64> = (0..s.batch as i64)
                .flat_map(|n| (0..(s.out_h * s.out_w) as i64).map(move |o| n * (s.cog * s.out_h * s.out_w) as i64 + o))
                .collect();
            assert_eq!(outs, want);
        }
    }

    /// Input channel planes 4 KiB apart: AVX2 plans (and AVX-512 plans with
    /// multi-tap classes on heavily oversubscribed sets) pack the input of each
    /// group of tiles, and every packed tile reads inside its group's span.
    #[test]
    fn aliasing_planes_pack_input() {
        for (s, isa) in [
            (spec(2, 32, 32, 40, 4, 2, 1), NativeIsa::Avx2),
            (spec(1, 16, 32, 20, 2, 2, 0), NativeIsa::Avx2),
            (spec(2, 32, 32, 40, 4, 2, 1), NativeIsa::Avx512),
        ] {
            let plan = plan_cv(&s, isa).unwrap();
            let pack = plan.pack.expect("packing");
            let mut span = None;
            let mut packed = 0;
            for r in plan.chunks.iter().flatten() {
                match r {
                    CvRun::Pack { span: sp, .. } => {
                        assert!(*sp <= pack.stride);
                        span = Some(*sp as i64);
                    }
                    CvRun::Tiles { class, count, table, p, packed: true, .. } => {
                        let sp = span.expect("pack before packed tiles");
                        for t in 0..*count {
                            let base = table + t * 2 * p;
                            for &xo in &plan.tables[base..base + p] {
                                for &(d, _) in &plan.classes[*class].taps {
                                    assert!((0..sp).contains(&(xo / 4 + d)), "read outside the packed span");
                                }
                            }
                        }
                        packed += count;
                    }
                    CvRun::Tiles { .. } | CvRun::Fill { .. } => {}
                }
            }
            assert!(packed > 0);
        }
        // AVX-512 copies only for multi-tap classes on heavily oversubscribed sets.
        assert!(plan_cv(&spec(1, 16, 32, 20, 2, 2, 0), NativeIsa::Avx512).unwrap().pack.is_none());
        assert!(plan_cv(&spec(2, 32, 32, 40, 4, 2, 1), NativeIsa::Avx512).unwrap().pack.is_some());
        assert!(plan_cv(&spec(1, 256, 8, 128, 4, 2, 1), NativeIsa::Avx512).unwrap().pack.is_none());
        assert!(
            planes_alias(4096, 16) && planes_alias(1024, 40) && !planes_alias(1024, 32) && !planes_alias(4100, 256)
        );
    }

    #[test]
    fn dcgan1_folds_batch_into_full_tiles() {
        let plan = plan_cv(&spec(16, 128, 1, 512, 4, 1, 0), NativeIsa::Avx512).unwrap();
        assert!(plan.chunks.iter().flatten().all(|r| matches!(r, CvRun::Tiles { .. })));
        let (mut pixels, mut small) = (0, 0);
        for r in plan.chunks.iter().flatten() {
            if let CvRun::Tiles { count, p, .. } = r {
                pixels += count * p;
                small += usize::from(*p < plan.p) * count;
            }
        }
        // 16 phase pixels per batch item; at most one remainder tile per class.
        assert_eq!(pixels, 16 * 16);
        assert!(small <= plan.classes.len());
        assert!(plan.pack.is_none());
    }

    /// The reduction is split only where a chunk's sweep outgrows L2 and its
    /// partial sums stay small; the blocks partition the input channels.
    #[test]
    fn input_channel_blocks() {
        // pix2pix up5 (1024 → 256 at 16x16): blocked; a narrow layer and one
        // whose chunks write much output: one block.
        let blocked = plan_cv(&spec(1, 1024, 16, 256, 4, 2, 1), NativeIsa::Avx512).unwrap();
        assert!(blocked.kblocks.len() > 1, "{:?}", blocked.kblocks);
        for (s, why) in
            [(spec(1, 128, 16, 256, 4, 2, 1), "fits L2"), (spec(1, 128, 128, 64, 3, 2, 1), "large partial sums")]
        {
            assert_eq!(plan_cv(&s, NativeIsa::Avx512).unwrap().kblocks, vec![0..128], "{why}");
        }
        for (cig, pc, out) in [(1024, 1536, 65_664), (2048, 576, 8192), (100, 100_000, 0), (40, 1 << 20, 0)] {
            let b = kblocks(cig, pc, out);
            assert_eq!(b.first().map(|r| r.start), Some(0));
            assert_eq!(b.last().map(|r| r.end), Some(cig));
            assert!(b.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()), "{b:?}");
            assert!(b.len() == 1 || b.iter().all(|r| r.len() >= MIN_KBLOCK.min(cig)), "{b:?}");
        }
        assert_eq!(kblocks(100, 100_000, 0).len(), 3, "32-channel blocks at least");
    }

    #[test]
    fn pv_rows_cover_once() {
        let s = spec(1, 5, 20, 1, 9, 3, 4);
        let plan = plan_pv(&s, NativeIsa::Avx2).unwrap();
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for ch in &plan.chunks {
            for (si, r) in ch {
                rows.extend(r.clone().map(|q| (plan.segments[*si].pair_index, q)));
            }
        }
        let n_rows: usize = s.phase_pairs().iter().map(|&(ph, _)| s.h.phases[ph].count).sum();
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), n_rows);
    }
}
