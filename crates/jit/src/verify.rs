//! The plan verifier: the check between tiling and code emission.
//!
//! Native-tier kernels run `std::arch` micro-kernels on raw pointers whose
//! offsets come from the materialized plans of [`crate::tiling`] (tap tables,
//! pixel tables, packed-input spans, phase offsets). Rather than trusting the
//! planner, every plan is checked here, in the spirit of Cranelift's verifier
//! between passes: from the plan alone, compute the float range every tile
//! loads and stores and check it against the lengths of the buffers it will
//! be given (input, output, packed weights, the frame's packed-input buffer).
//! A plan that fails is a [`JitError::PlanVerifier`] naming the kernel, never
//! a kernel run.
//!
//! * **Cheap checks** (always on, linear in the plan's size): every tile's
//!   extreme reads (its lowest and highest tap offset, over all input
//!   channels) and every store stay inside their buffers; packs stay in one
//!   channel plane and fit the packed buffer, which fits the stack budget;
//!   pixel-tile segments have tap tables the micro-kernels can index
//!   (`nt ≤ MAX_PV_TAPS`, `nt = nth·ntw`, two-row segments have taps and
//!   consecutive vertical offsets); hole fills write whole rows inside one
//!   output channel plane, with no mask bit at or beyond the row's width.
//! * **Exhaustive checks** (under `debug_assertions`, so in tests and debug
//!   builds): every tap of every pixel, and that the tiles write every output
//!   pixel of a group exactly once.
//!
//! Offsets here are in floats relative to the base pointers the entry
//! function passes (the group's first input channel, the panel's first output
//! channel, the pair's weight record).

use std::ops::Range;

use crate::error::JitError;
use crate::microkernel::MAX_PV_TAPS;
use crate::pack::{block_stride, phase_offset};
use crate::schedule::{ConvSpec, LANES};
use crate::tiling::{CvPlan, CvRun, PvPlan, MAX_PACK_FRAME_BYTES};

/// Whether the exhaustive checks run (debug builds and tests).
const EXHAUSTIVE: bool = cfg!(any(debug_assertions, test));

fn fail(kernel: &str, reason: String) -> JitError {
    JitError::PlanVerifier { kernel: kernel.to_string(), reason }
}

/// Where input float `f` (relative to the group's input base, batch folded
/// in) lies: it must be inside one input channel plane of some batch item,
/// so that reading it for every input channel of every group stays inside
/// the input tensor.
fn input_in_plane(spec: &ConvSpec, f: i64) -> bool {
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let item = (spec.groups * spec.cig) as i64 * hw_in;
    f >= 0 && f < spec.batch as i64 * item && f % item < hw_in
}

/// Same for an output float relative to the group's (and panel's) output base.
fn output_in_plane(spec: &ConvSpec, f: i64) -> bool {
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let item = (spec.groups * spec.cog) as i64 * hw_out;
    f >= 0 && f < spec.batch as i64 * item && f % item < hw_out
}

/// Checks a plan's hole rows: each starts a row of one output channel plane
/// and lies inside it, its masks exist, and no mask sets a lane outside
/// `0..out_w` (only the last block of a row can) or outside 16 bits.
fn verify_fill(kernel: &str, spec: &ConvSpec, f: &crate::tiling::CvFill) -> Result<(), JitError> {
    let out_w = spec.out_w as i64;
    if f.blocks != spec.out_w.div_ceil(16) {
        return Err(fail(kernel, format!("fill has {} blocks per row of {out_w} columns", f.blocks)));
    }
    for (i, &(start, at)) in f.rows.iter().enumerate() {
        if start % out_w != 0 || !output_in_plane(spec, start) || !output_in_plane(spec, start + out_w - 1) {
            return Err(fail(kernel, format!("fill row {i} at output float {start} is not a row of one plane")));
        }
        let masks = at.checked_add(f.blocks).and_then(|e| f.masks.get(at..e));
        let Some(masks) = masks else {
            return Err(fail(kernel, format!("fill row {i} uses masks {at}.. outside the mask table")));
        };
        for (b, &m) in masks.iter().enumerate() {
            let width = (spec.out_w - 16 * b).min(16);
            if m < 0 || m >> width != 0 {
                return Err(fail(kernel, format!("fill row {i} block {b} mask {m:#x} sets lanes beyond {width}")));
            }
        }
    }
    Ok(())
}

/// Checks a channel-tile plan against its buffers (see the module docs).
pub(crate) fn verify_cv(kernel: &str, spec: &ConvSpec, plan: &CvPlan) -> Result<(), JitError> {
    let stride = block_stride(spec, &plan.blocking);
    // Panels: channels stored by a panel must be channels of the group.
    for b in 0..plan.blocking.blocks() {
        let var = plan.blocking.variant(b);
        if b * plan.pw + var.channels > spec.cog || var.channels > plan.pw {
            return Err(fail(kernel, format!("panel {b} stores channels beyond the group's {}", spec.cog)));
        }
    }
    if let Some(pk) = plan.pack {
        if pk.bytes(spec.cig) > MAX_PACK_FRAME_BYTES {
            return Err(fail(
                kernel,
                format!(
                    "packed input buffer of {} bytes exceeds the frame budget {MAX_PACK_FRAME_BYTES}",
                    pk.bytes(spec.cig)
                ),
            ));
        }
    }
    // Input-channel blocks: consecutive, non-empty, covering exactly the
    // group's channels, so a block's records read a subset of the channels
    // (input planes, weight rows) the checks below bound for all `cig`.
    let mut next = 0;
    for b in &plan.kblocks {
        if b.start != next || b.is_empty() {
            return Err(fail(kernel, format!("input-channel block {b:?} does not follow channel {next}")));
        }
        next = b.end;
    }
    if next != spec.cig {
        return Err(fail(kernel, format!("input-channel blocks end at {next}, the group has {}", spec.cig)));
    }
    let mut written: Vec<u32> = if EXHAUSTIVE { vec![0; spec.batch * spec.out_h * spec.out_w] } else { Vec::new() };
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let out_item = (spec.groups * spec.cog) as i64 * hw_out;
    if let Some(f) = &plan.fill {
        verify_fill(kernel, spec, f)?;
    }
    for chunk in &plan.chunks {
        // The span of the last pack in this chunk: packed tiles read only it.
        let mut span: Option<i64> = None;
        for run in chunk {
            match *run {
                CvRun::Pack { lo, span: sp } => {
                    let pk = plan.pack.ok_or_else(|| fail(kernel, "pack run without a packed buffer".into()))?;
                    if sp == 0
                        || sp > pk.stride
                        || !input_in_plane(spec, lo)
                        || !input_in_plane(spec, lo + sp as i64 - 1)
                    {
                        return Err(fail(
                            kernel,
                            format!("pack of {sp} floats at {lo} leaves its channel plane or the buffer"),
                        ));
                    }
                    span = Some(sp as i64);
                }
                CvRun::Fill { ref rows } => {
                    let f = plan.fill.as_ref().ok_or_else(|| fail(kernel, "fill run without a fill".into()))?;
                    let rows = f
                        .rows
                        .get(rows.clone())
                        .ok_or_else(|| fail(kernel, format!("fill rows {rows:?} outside the fill's row list")))?;
                    if EXHAUSTIVE {
                        for &(start, at) in rows {
                            let (n, q) = (start / out_item, start % out_item);
                            for col in f.columns(at, spec.out_w) {
                                written[(n * hw_out + q) as usize + col] += 1;
                            }
                        }
                    }
                }
                CvRun::Tiles { class, p, count, table, packed, contig } => {
                    let c =
                        plan.classes.get(class).ok_or_else(|| fail(kernel, format!("class {class} does not exist")))?;
                    let end = table.checked_add(count.saturating_mul(2 * p));
                    if p == 0 || end.is_none_or(|e| e > plan.tables.len()) {
                        return Err(fail(kernel, format!("tile table {table}+{count}×{p} outside the table")));
                    }
                    // Weight record of the class: every tap, every input channel, the whole panel.
                    let record = spec.taps(spec.phase_pairs()[c.pair_index]) * plan.pw;
                    let a_base = phase_offset(spec, c.pair_index, plan.pw / LANES) as i64;
                    for &(_, ao) in &c.taps {
                        let last = a_base + ao + ((spec.cig - 1) * record + plan.pw) as i64;
                        if ao < 0 || last > stride as i64 {
                            return Err(fail(
                                kernel,
                                format!("class {class} reads weights up to {last}, slot has {stride}"),
                            ));
                        }
                    }
                    // Tapless classes (bias-only pixels) read no input.
                    let extremes: Vec<i64> =
                        c.taps.iter().map(|t| t.0).min().into_iter().chain(c.taps.iter().map(|t| t.0).max()).collect();
                    for t in 0..count {
                        let base = table + t * 2 * p;
                        let ins = &plan.tables[base..base + p];
                        let outs = &plan.tables[base + p..base + 2 * p];
                        if contig && ins.windows(2).any(|w| w[1] != w[0] + 4) {
                            return Err(fail(
                                kernel,
                                format!("tile {t} of class {class} is marked contiguous but is not"),
                            ));
                        }
                        for (&xo, &oo) in ins.iter().zip(outs) {
                            if xo % 4 != 0 || oo % 4 != 0 {
                                return Err(fail(kernel, "pixel offsets must be whole floats".into()));
                            }
                            let reads: &mut dyn Iterator<Item = i64> = if EXHAUSTIVE {
                                &mut c.taps.iter().map(|t| xo / 4 + t.0)
                            } else {
                                &mut extremes.iter().map(|d| xo / 4 + d)
                            };
                            for f in reads {
                                let ok = match (packed, span) {
                                    (true, Some(sp)) => (0..sp).contains(&f),
                                    (true, None) => false,
                                    (false, _) => input_in_plane(spec, f),
                                };
                                if !ok {
                                    return Err(fail(
                                        kernel,
                                        format!("tile {t} of class {class} reads input float {f} outside its buffer"),
                                    ));
                                }
                            }
                            let o = oo / 4;
                            if !output_in_plane(spec, o) {
                                return Err(fail(
                                    kernel,
                                    format!("tile {t} of class {class} writes output float {o} outside its plane"),
                                ));
                            }
                            if EXHAUSTIVE {
                                let (n, q) = (o / out_item, o % out_item);
                                written[(n * hw_out + q) as usize] += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    if EXHAUSTIVE {
        // Every variant (full panels, tail panel) walks the same chunks.
        if let Some(i) = written.iter().position(|&w| w != 1) {
            return Err(fail(kernel, format!("output pixel {i} of a channel plane is written {} times", written[i])));
        }
    }
    Ok(())
}

/// Checks a pixel-tile plan against its buffers (see the module docs).
pub(crate) fn verify_pv(kernel: &str, spec: &ConvSpec, plan: &PvPlan) -> Result<(), JitError> {
    if plan.c == 0 || plan.c > LANES || plan.c != spec.cog {
        return Err(fail(kernel, format!("pixel tiles of {} channels for a group of {}", plan.c, spec.cog)));
    }
    let stride = block_stride(spec, &plan.blocking) as i64;
    let in_w = spec.in_w as i64;
    for (si, s) in plan.segments.iter().enumerate() {
        let &(ph, pw) =
            spec.phase_pairs().get(s.pair_index).ok_or_else(|| fail(kernel, format!("segment {si}: no phase pair")))?;
        let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pw]);
        let nt = s.taps.len();
        if nt > MAX_PV_TAPS || (nt > 0 && (s.ntw == 0 || nt % s.ntw != 0)) {
            return Err(fail(kernel, format!("segment {si}: {nt} taps in rows of {} (at most {MAX_PV_TAPS})", s.ntw)));
        }
        if s.pairable {
            // A two-row tile forms row 1's extra input row from row 0's last
            // vertical tap: it needs one and consecutive vertical offsets.
            let offs: Vec<i64> =
                s.taps.iter().step_by(s.ntw.max(1)).map(|t| (t.0 - t.1).div_euclid(in_w.max(1))).collect();
            if nt == 0 || spec.h.in_step != 1 || offs.windows(2).any(|w| w[1] != w[0] + 1) {
                return Err(fail(
                    kernel,
                    format!("segment {si} is marked pairable but has no consecutive vertical taps"),
                ));
            }
        }
        if s.rows.end > hp.count {
            return Err(fail(kernel, format!("segment {si}: rows {:?} beyond the phase's {}", s.rows, hp.count)));
        }
        let record = (spec.taps((ph, pw)) * LANES) as i64;
        let a_base = phase_offset(spec, s.pair_index, 1) as i64;
        for &(xo, wo, ao) in &s.taps {
            // Vertical part of the tap: the input row it reads must exist for
            // every row of the segment; horizontal overhang is masked per lane.
            let h_off = (xo - wo).div_euclid(in_w.max(1));
            if (xo - wo).rem_euclid(in_w.max(1)) != 0 {
                return Err(fail(kernel, format!("segment {si}: tap offset {xo} is not row {h_off} plus column {wo}")));
            }
            for qh in [s.rows.start, s.rows.end.saturating_sub(1)] {
                let row = (qh * spec.h.in_step) as i64 + h_off;
                if row < 0 || row >= spec.in_h as i64 {
                    return Err(fail(kernel, format!("segment {si}: row {qh} reads input row {row} of {}", spec.in_h)));
                }
            }
            let last = a_base + ao + (spec.cig as i64 - 1) * record + plan.c as i64;
            if ao < 0 || last > stride {
                return Err(fail(kernel, format!("segment {si} reads weights up to {last}, slot has {stride}")));
            }
        }
        // Stores: the last pixel of the last row, and the last channel.
        let last_row = (s.rows.end.saturating_sub(1) * spec.h.out_step + hp.first) as i64;
        let last_px = last_row * spec.out_w as i64 + ((wp.count - 1) * spec.w.out_step + wp.first) as i64;
        if last_row >= spec.out_h as i64 || last_px >= (spec.out_h * spec.out_w) as i64 {
            return Err(fail(kernel, format!("segment {si} writes output pixel {last_px} outside the plane")));
        }
    }
    let mut rows: Vec<Range<usize>> = Vec::new();
    for ch in &plan.chunks {
        for (si, r) in ch {
            let s = plan.segments.get(*si).ok_or_else(|| fail(kernel, format!("chunk names segment {si}")))?;
            if r.start < s.rows.start || r.end > s.rows.end || r.is_empty() {
                return Err(fail(kernel, format!("chunk rows {r:?} outside segment {si}'s {:?}", s.rows)));
            }
            if EXHAUSTIVE {
                rows.push(r.start + s.pair_index * spec.out_h..r.end + s.pair_index * spec.out_h);
            }
        }
    }
    if EXHAUSTIVE {
        // Every row of every phase pair exactly once.
        rows.sort_by_key(|r| r.start);
        let want: usize = spec.phase_pairs().iter().map(|&(ph, _)| spec.h.phases[ph].count).sum();
        let got: usize = rows.iter().map(|r| r.len()).sum();
        if got != want || rows.windows(2).any(|w| w[1].start < w[0].end) {
            return Err(fail(kernel, format!("chunks cover {got} phase rows (overlapping or missing), want {want}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
    use crate::microkernel::NativeIsa;
    use crate::tiling::{plan_cv, plan_pv, CvPack};

    #[allow(clippy::too_many_arguments)]
    fn ct(
        n: usize,
        ci: usize,
        hw: [usize; 2],
        co: usize,
        g: usize,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
    ) -> ConvSpec {
        let geom =
            ConvTranspose2dGeometry::from_output_padding(n, ci, hw, co, g, [k, k], [s, s], [p, p], [0, 0], [d, d])
                .unwrap();
        ConvSpec::conv_transpose(&geom).unwrap()
    }

    fn conv(n: usize, ci: usize, hw: usize, co: usize, k: usize, p: usize) -> ConvSpec {
        let geom = Conv2dGeometry::new(n, ci, [hw, hw], co, 1, [k, k], [1, 1], [p, p], [1, 1]).unwrap();
        ConvSpec::conv(&geom).unwrap()
    }

    /// Configurations from the classes that broke or nearly broke before:
    /// phases without taps, pads wider than the kernel, large dilations,
    /// 4 KiB-aliased planes, many input channels per group.
    fn specs() -> Vec<ConvSpec> {
        vec![
            conv(1, 16, 32, 1, 3, 4),
            ct(1, 8, [12, 12], 1, 1, 5, 2, 0, 2),
            ct(2, 32, [32, 32], 40, 1, 4, 2, 1, 1),
            ct(1, 16, [32, 32], 20, 1, 2, 2, 0, 1),
            ct(3, 4, [4, 4], 33, 1, 4, 2, 1, 1),
            ct(1, 32, [9, 7], 64, 2, 3, 3, 5, 3),
            ct(2, 64, [16, 16], 32, 1, 3, 1, 1, 9),
            ct(1, 8, [5, 40], 3, 1, 9, 3, 4, 1),
            ct(1, 4, [3, 3], 16, 1, 2, 4, 0, 1),
        ]
    }

    #[test]
    fn planner_output_passes_exhaustively() {
        for s in specs() {
            for isa in [NativeIsa::Avx512, NativeIsa::Avx2] {
                if let Some(p) = plan_cv(&s, isa) {
                    verify_cv("t", &s, &p).unwrap_or_else(|e| panic!("{e} for {s:?}"));
                }
                if let Some(p) = plan_pv(&s, isa) {
                    verify_pv("t", &s, &p).unwrap_or_else(|e| panic!("{e} for {s:?}"));
                }
            }
        }
    }

    /// Finding 1 of the review: a bias-only row segment marked pairable made
    /// the two-row tile index its tap table at `-1`. The verifier refuses it.
    #[test]
    fn pairable_segment_without_taps_is_refused() {
        let s = conv(1, 16, 32, 1, 3, 4);
        let mut p = plan_pv(&s, NativeIsa::Avx512).unwrap();
        let si = p.segments.iter().position(|seg| seg.taps.is_empty()).expect("the padding leaves bias-only rows");
        assert!(!p.segments[si].pairable, "planner marks a tapless segment pairable");
        p.segments[si].pairable = true;
        let e = verify_pv("k0", &s, &p).unwrap_err();
        assert!(e.to_string().contains("pairable"), "{e}");
    }

    #[test]
    fn corrupted_channel_plans_are_refused() {
        let s = ct(2, 32, [32, 32], 40, 1, 4, 2, 1, 1);
        let good = plan_cv(&s, NativeIsa::Avx2).unwrap();
        verify_cv("k", &s, &good).unwrap();
        // An output offset one plane too far.
        let mut bad = good.clone();
        let hw_out = (s.out_h * s.out_w) as i64;
        if let Some(CvRun::Tiles { table, p, .. }) =
            bad.chunks.iter().flatten().find(|r| matches!(r, CvRun::Tiles { .. }))
        {
            bad.tables[table + p] += hw_out * 4;
        }
        assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("writes output"));
        // An input offset before the buffer.
        let mut bad = good.clone();
        if let Some(CvRun::Tiles { table, packed: false, .. }) =
            bad.chunks.iter().flatten().find(|r| matches!(r, CvRun::Tiles { packed: false, .. }))
        {
            bad.tables[*table] = -4 * 1_000_000;
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("reads input"));
        }
        // A packed buffer beyond the frame budget.
        let mut bad = good.clone();
        bad.pack = Some(CvPack { stride: 1 << 20 });
        assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("frame budget"));
        // Input-channel blocks with a gap, overlapping, or past the group's channels.
        for blocks in [vec![0..10, 11..32], vec![0..20, 10..32], vec![0..16, 16..33], std::iter::once(0..31).collect()]
        {
            let mut bad = good.clone();
            bad.kblocks = blocks.clone();
            let e = verify_cv("k", &s, &bad).unwrap_err().to_string();
            assert!(e.contains("input-channel block"), "{blocks:?}: {e}");
        }
    }

    /// A plan that splits its reduction into input-channel blocks passes.
    #[test]
    fn blocked_reductions_pass() {
        let s = ct(1, 1024, [16, 16], 64, 1, 4, 2, 1, 1);
        for isa in [NativeIsa::Avx512, NativeIsa::Avx2] {
            let p = plan_cv(&s, isa).unwrap();
            assert!(p.kblocks.len() > 1, "{isa:?}: {:?}", p.kblocks);
            verify_cv("k", &s, &p).unwrap();
        }
    }

    /// Hole fills (k3 s4 leaves a phase without taps; width 21 leaves a
    /// partial last block): masks beyond the row, rows outside a plane or
    /// not at a row start, and rows written twice are refused.
    #[test]
    fn corrupted_hole_fills_are_refused() {
        for isa in [NativeIsa::Avx512, NativeIsa::Avx2] {
            let s = ct(2, 24, [6, 6], 40, 1, 3, 4, 1, 1);
            assert_eq!(s.out_w, 21);
            let good = plan_cv(&s, isa).unwrap();
            verify_cv("k", &s, &good).unwrap();
            let f = good.fill.clone().expect("holes");
            assert!(good.chunks.iter().flatten().any(|r| matches!(r, CvRun::Fill { .. })));
            let last = f.masks.len() - 1;
            let mut bad = good.clone();
            bad.fill.as_mut().unwrap().masks[last] |= 1 << 5;
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("sets lanes beyond 5"));
            let mut bad = good.clone();
            bad.fill.as_mut().unwrap().rows[0].0 += 1;
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("not a row of one plane"));
            let mut bad = good.clone();
            bad.fill.as_mut().unwrap().rows[0].0 += (s.out_h * s.out_w) as i64;
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("not a row of one plane"));
            let mut bad = good.clone();
            bad.fill.as_mut().unwrap().rows[0].1 = f.masks.len();
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("outside the mask table"));
            let mut bad = good.clone();
            bad.chunks[0].push(CvRun::Fill { rows: 0..1 });
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("written 2 times"));
            let mut bad = good.clone();
            bad.chunks[0].push(CvRun::Fill { rows: 0..f.rows.len() + 1 });
            assert!(verify_cv("k", &s, &bad).unwrap_err().to_string().contains("outside the fill's row list"));
        }
    }

    #[test]
    fn corrupted_pixel_plans_are_refused() {
        let s = ct(1, 8, [5, 40], 3, 1, 9, 3, 4, 1);
        let good = plan_pv(&s, NativeIsa::Avx512).unwrap();
        verify_pv("k", &s, &good).unwrap();
        let mut bad = good.clone();
        bad.segments[0].rows.end += 1000;
        assert!(verify_pv("k", &s, &bad).is_err());
        let mut bad = good.clone();
        if let Some(seg) = bad.segments.iter_mut().find(|seg| !seg.taps.is_empty()) {
            seg.taps[0].0 -= 1000 * s.in_w as i64;
        }
        assert!(verify_pv("k", &s, &bad).unwrap_err().to_string().contains("segment"));
    }
}
