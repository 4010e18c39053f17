//! Native-tier schedules: how a convolution's output is cut into register
//! tiles for the `std::arch` micro-kernels of [`crate::native`], as plain data.
//!
//! * [`CvPlan`] (channel tiles, many output channels per group): per phase
//!   pair, output pixels are grouped into *tap classes* (the product of one
//!   vertical and one horizontal edge segment, so every pixel of a class uses
//!   the same taps) **across the whole batch**, and each class is cut into
//!   tiles of `P` pixels. Folding the batch in keeps tiles full where a phase
//!   has few pixels (1x1-input and 4x4-input DCGAN layers) and leaves at most
//!   `P - 1` edge pixels per class, which the Cranelift blocks compute. Work
//!   items are `(group, channel panel, chunk of tiles)`, so batch-1 layers
//!   still split across threads.
//! * [`PvPlan`] (pixel tiles, few output channels per group): lanes run along
//!   the pixels of a phase row; edges are masked in the micro-kernel. Work
//!   items are `(n, group, phase pair, chunk of rows)`.
//!
//! This module emits no code; `codegen::native` does.

use std::ops::Range;

use crate::native::{cv_pixels, NativeIsa, MAX_PV_TAPS, PV_VECTORS};
use crate::schedule::{Blocking, ConvSpec, Pixel, Variant, LANES};

/// Work items a kernel aims for, so two (or a few) threads balance.
const TARGET_ITEMS: usize = 16;

/// Output pixels sharing one tap set within a phase pair.
#[derive(Debug, Clone)]
pub struct CvClass {
    /// Index of the phase pair in [`ConvSpec::phase_pairs`].
    pub pair_index: usize,
    /// Vertical tap indices (into the phase's taps).
    pub th: Range<usize>,
    /// Horizontal tap indices.
    pub tw: Range<usize>,
    /// `(input float offset, weight float offset within an input-channel record)` per tap.
    pub taps: Vec<(i64, i64)>,
}

/// A piece of a chunk: consecutive native tiles, or edge pixels for Cranelift.
#[derive(Debug, Clone)]
pub enum CvRun {
    /// `count` full tiles of one class; their pixel tables start at `table`
    /// (in `i64`s) and follow each other (`2·P` entries each).
    Tiles {
        /// Class index.
        class: usize,
        /// Whether every tile's input offsets are consecutive floats.
        contig: bool,
        /// Number of tiles.
        count: usize,
        /// Start of the first tile's table.
        table: usize,
    },
    /// Remainder pixels of a class (fewer than `P`), computed by Cranelift blocks.
    Edge {
        /// Class index.
        class: usize,
        /// Pixels with offsets relative to the group's input / panel's output base.
        pixels: Vec<Pixel>,
    },
}

/// Channel-tile schedule of one convolution.
#[derive(Debug, Clone)]
pub struct CvPlan {
    /// Micro-kernel ISA.
    pub isa: NativeIsa,
    /// Panel width in channels (16 or 32).
    pub pw: usize,
    /// Pixels per native tile.
    pub p: usize,
    /// Weight blocking matching the panels (for packing and edge blocks).
    pub blocking: Blocking,
    /// Tap classes.
    pub classes: Vec<CvClass>,
    /// Chunks of runs; a work item is `(group, panel, chunk)`.
    pub chunks: Vec<Vec<CvRun>>,
    /// Pixel tables: per tile, `P` input then `P` output byte offsets.
    pub tables: Vec<i64>,
    /// Number of native tiles (for tests and diagnostics).
    pub tiles: usize,
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
    for (pi, (ph, pwi)) in spec.phase_pairs().into_iter().enumerate() {
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

/// Plans channel tiles, or `None` if no class fills a single tile (the
/// Cranelift kernel is as good there).
pub fn plan_cv(spec: &ConvSpec, isa: NativeIsa) -> Option<CvPlan> {
    let pw = if spec.cog <= 16 { 16 } else { 32 };
    let cls = classes(spec, pw);
    // Pick the tile size with the least modelled cost: tiles amortize weight
    // loads and the call over P pixels; remainders run at Cranelift speed.
    let k_of = |c: &ClassPixels| (c.class.taps.len() * spec.cig).max(1) as f64;
    let cost = |p: usize| -> f64 {
        cls.iter()
            .map(|c| {
                let n = c.pixels.len();
                let k = k_of(c);
                (n / p) as f64 * (p as f64 * k * (1.0 + 2.0 / p as f64) + 60.0) + (n % p) as f64 * k * 4.0
            })
            .sum()
    };
    let p = cv_pixels(isa, pw).min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(b.cmp(&a)))?;
    if cls.iter().all(|c| c.pixels.len() < p) {
        return None;
    }

    // Items in execution order, with their modelled cost.
    enum Item {
        Tile { class: usize, px: Vec<(i64, i64)> },
        Edge { class: usize, px: Vec<(i64, i64)> },
    }
    let mut items: Vec<(f64, Item)> = Vec::new();
    let mut tiles = 0;
    for (ci, c) in cls.iter().enumerate() {
        let k = k_of(c);
        let full = c.pixels.len() / p * p;
        for t in c.pixels[..full].chunks(p) {
            items.push((p as f64 * k, Item::Tile { class: ci, px: t.to_vec() }));
            tiles += 1;
        }
        if full < c.pixels.len() {
            let rest = c.pixels[full..].to_vec();
            items.push(((rest.len()) as f64 * k * 4.0, Item::Edge { class: ci, px: rest }));
        }
    }
    let blocking = panel_blocking(spec.cog, pw);
    let outer = spec.groups * blocking.blocks();
    let nch = TARGET_ITEMS.div_ceil(outer).clamp(1, tiles.max(1));
    let total: f64 = items.iter().map(|i| i.0).sum();
    let mut chunks: Vec<Vec<CvRun>> = vec![Vec::new()];
    let mut tables = Vec::new();
    let mut done = 0.0;
    for (w, item) in items {
        // Start the next chunk once this one holds its share of the cost.
        if done >= total * chunks.len() as f64 / nch as f64 && chunks.len() < nch {
            chunks.push(Vec::new());
        }
        done += w;
        let chunk = chunks.last_mut().unwrap_or_else(|| unreachable!());
        match item {
            Item::Tile { class, px } => {
                let contig = px.windows(2).all(|w| w[1].0 == w[0].0 + 1);
                let table = tables.len();
                tables.extend(px.iter().map(|q| q.0 * 4));
                tables.extend(px.iter().map(|q| q.1 * 4));
                match chunk.last_mut() {
                    Some(CvRun::Tiles { class: c, contig: g, count, .. }) if *c == class && *g == contig => *count += 1,
                    _ => chunk.push(CvRun::Tiles { class, contig, count: 1, table }),
                }
            }
            Item::Edge { class, px } => {
                let c = &cls[class].class;
                let pixels =
                    px.iter().map(|&(i, o)| Pixel { in_off: i, out_off: o, th: c.th.clone(), tw: c.tw.clone() }).collect();
                chunk.push(CvRun::Edge { class, pixels });
            }
        }
    }
    chunks.retain(|c| !c.is_empty());
    Some(CvPlan { isa, pw, p, blocking, classes: cls.into_iter().map(|c| c.class).collect(), chunks, tables, tiles })
}

/// One phase-row segment of a pixel-tile plan: rows sharing vertical taps.
#[derive(Debug, Clone)]
pub struct PvSegment {
    /// Index of the phase pair.
    pub pair_index: usize,
    /// Rows `qh` of the phase.
    pub rows: Range<usize>,
    /// `(input float offset from the row start, horizontal input offset,
    /// weight float offset within an input-channel record)` per tap.
    pub taps: Vec<(i64, i64, i64)>,
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
    for (pi, (ph, pwi)) in spec.phase_pairs().into_iter().enumerate() {
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
            segments.push(PvSegment { pair_index: pi, rows: hs.q, taps });
        }
    }
    // Split rows so that batch·groups·chunks reaches the target item count.
    let outer = spec.batch * spec.groups;
    let rows_total: usize = segments.iter().map(|s| s.rows.len()).sum();
    let nch = TARGET_ITEMS.div_ceil(outer).clamp(1, rows_total.max(1));
    let row_cost = |s: &PvSegment| (s.taps.len() * spec.cig + 4) as f64 * spec.w.phases[spec.phase_pairs()[s.pair_index].1].count as f64;
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
    Some(PvPlan { isa, nv, c, blocking: Blocking::new(spec.cog), segments, chunks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    fn spec(n: usize, ci: usize, hw: usize, co: usize, k: usize, s: usize, p: usize) -> ConvSpec {
        let g = ConvTranspose2dGeometry::from_output_padding(n, ci, [hw, hw], co, 1, [k, k], [s, s], [p, p], [0, 0], [1, 1])
            .unwrap();
        ConvSpec::conv_transpose(&g)
    }

    /// Native tiles and edge pixels together cover every output pixel once.
    #[test]
    fn cv_covers_every_pixel_once() {
        for s in [spec(16, 8, 1, 40, 4, 1, 0), spec(3, 4, 4, 33, 4, 2, 1), spec(1, 4, 9, 32, 3, 2, 1)] {
            let plan = plan_cv(&s, NativeIsa::Avx512).unwrap();
            let mut outs = Vec::new();
            for ch in &plan.chunks {
                for r in ch {
                    match r {
                        CvRun::Tiles { count, table, .. } => {
                            for t in 0..*count {
                                let base = table + t * 2 * plan.p;
                                outs.extend(plan.tables[base + plan.p..base + 2 * plan.p].iter().map(|o| o / 4));
                            }
                        }
                        CvRun::Edge { pixels, .. } => outs.extend(pixels.iter().map(|p| p.out_off)),
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

    #[test]
    fn dcgan1_folds_batch_into_full_tiles() {
        let plan = plan_cv(&spec(16, 128, 1, 512, 4, 1, 0), NativeIsa::Avx512).unwrap();
        assert!(plan.chunks.iter().flatten().all(|r| matches!(r, CvRun::Tiles { .. })));
        assert_eq!(plan.tiles * plan.p, 16 * 16);
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
