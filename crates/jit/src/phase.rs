//! Phase, tap and edge planning along one spatial axis, as pure functions.
//!
//! Both convolutions are written as *correlations over output phases*: an
//! output coordinate `o = q·out_step + first` of a phase receives
//! `Σ_taps x[q·in_step + tap.in_off] · w[tap.k]`, restricted to taps whose
//! input coordinate lies inside the input.
//!
//! * Transposed conv with stride `s`: `s` phases (`out_step = s`, `in_step = 1`);
//!   phase `r` owns the taps `k` with `(r + p - k·d) ≡ 0 (mod s)`, at input
//!   offset `(r + p - k·d) / s`. No divisibility test is left for run time.
//! * Forward conv: one phase (`out_step = 1`, `in_step = s`) with every tap at
//!   offset `k·d - p`.
//!
//! Taps are sorted by input offset, so for any `q` the valid taps form one
//! contiguous index range; runs of `q` with the same range are the segments the
//! code generator peels. This module only plans; it emits no code.

use std::ops::Range;

/// One kernel tap of a phase along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    /// Kernel index along the axis.
    pub k: usize,
    /// Input coordinate offset: input = `q·in_step + in_off`.
    pub in_off: i64,
}

/// The output coordinates of one phase and the taps that feed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisPhase {
    /// First output coordinate (`q = 0`).
    pub first: usize,
    /// Number of output coordinates `q` in this phase (at least 1).
    pub count: usize,
    /// Contributing taps sorted by `in_off` ascending (may be empty: those
    /// outputs receive only the bias).
    pub taps: Vec<Tap>,
}

/// A run of consecutive `q` of one phase with the same valid tap range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Output indices `q` covered.
    pub q: Range<usize>,
    /// Indices into [`AxisPhase::taps`] valid for every `q` of the run.
    pub taps: Range<usize>,
}

/// Plan for one axis: the phases and how `q` maps to input coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisPlan {
    /// Input length along the axis.
    pub in_len: usize,
    /// Output coordinate step between consecutive `q` of a phase.
    pub out_step: usize,
    /// Input coordinate step between consecutive `q`.
    pub in_step: usize,
    /// Non-empty phases, ordered by `first`.
    pub phases: Vec<AxisPhase>,
}

impl AxisPlan {
    /// Range of tap indices of `phase` whose input coordinate is in bounds at `q`.
    pub fn valid_taps(&self, phase: usize, q: usize) -> Range<usize> {
        let taps = &self.phases[phase].taps;
        let base = (q * self.in_step) as i64;
        let ok = |t: &Tap| {
            let i = base + t.in_off;
            i >= 0 && i < self.in_len as i64
        };
        let lo = taps.iter().position(ok).unwrap_or(taps.len());
        let hi = lo + taps[lo..].iter().take_while(|t| ok(t)).count();
        if lo == taps.len() {
            0..0
        } else {
            lo..hi
        }
    }

    /// Maximal runs of `q` with identical valid tap ranges, covering `0..count`.
    pub fn segments(&self, phase: usize) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for q in 0..self.phases[phase].count {
            let t = self.valid_taps(phase, q);
            match out.last_mut() {
                Some(s) if s.taps == t => s.q.end = q + 1,
                _ => out.push(Segment { q: q..q + 1, taps: t }),
            }
        }
        out
    }

    /// The `q` range where every tap of `phase` is valid (empty if none).
    pub fn interior(&self, phase: usize) -> Range<usize> {
        let p = &self.phases[phase];
        let all = 0..p.taps.len();
        let mut lo = None;
        let mut hi = 0;
        for q in 0..p.count {
            let t = self.valid_taps(phase, q);
            if t == all || (p.taps.is_empty()) {
                if lo.is_none() {
                    lo = Some(q);
                }
                hi = q + 1;
            } else if lo.is_some() {
                break;
            }
        }
        match lo {
            Some(l) => l..hi,
            None => 0..0,
        }
    }
}

/// Plans a transposed-conv axis: `out = in_idx·s - p + k·d`.
///
/// Inputs must be validated (non-zero stride/dilation/kernel).
pub fn conv_transpose_axis(in_len: usize, out_len: usize, k: usize, s: usize, p: usize, d: usize) -> AxisPlan {
    let mut phases = Vec::new();
    for r in 0..s.min(out_len) {
        let count = (out_len - r).div_ceil(s);
        let mut taps: Vec<Tap> = (0..k)
            .filter_map(|kk| {
                let num = r as i64 + p as i64 - (kk * d) as i64;
                (num.rem_euclid(s as i64) == 0).then(|| Tap { k: kk, in_off: num.div_euclid(s as i64) })
            })
            .collect();
        taps.sort_by_key(|t| t.in_off);
        phases.push(AxisPhase { first: r, count, taps });
    }
    AxisPlan { in_len, out_step: s, in_step: 1, phases }
}

/// Plans a forward-conv axis: `in_idx = out·s - p + k·d`.
pub fn conv_axis(in_len: usize, out_len: usize, k: usize, s: usize, p: usize, d: usize) -> AxisPlan {
    let taps = (0..k).map(|kk| Tap { k: kk, in_off: (kk * d) as i64 - p as i64 }).collect();
    AxisPlan { in_len, out_step: 1, in_step: s, phases: vec![AxisPhase { first: 0, count: out_len, taps }] }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force check: every (output, input, k) triple of the scatter
    /// definition is produced exactly once by the plan.
    fn check_transpose(in_len: usize, k: usize, s: usize, p: usize, d: usize, op: usize) {
        let full = (in_len as i64 - 1) * s as i64 - 2 * p as i64 + (d * (k - 1)) as i64 + 1 + op as i64;
        if full < 1 {
            return;
        }
        let out_len = full as usize;
        let plan = conv_transpose_axis(in_len, out_len, k, s, p, d);
        let mut want = Vec::new();
        for i in 0..in_len {
            for kk in 0..k {
                let o = (i * s + kk * d) as i64 - p as i64;
                if o >= 0 && (o as usize) < out_len {
                    want.push((o as usize, i, kk));
                }
            }
        }
        let mut got = Vec::new();
        for (pi, ph) in plan.phases.iter().enumerate() {
            for q in 0..ph.count {
                let o = q * s + ph.first;
                assert!(o < out_len);
                for t in &ph.taps[plan.valid_taps(pi, q)] {
                    got.push((o, (q as i64 + t.in_off) as usize, t.k));
                }
            }
            let segs = plan.segments(pi);
            assert_eq!(segs.first().map(|s| s.q.start), Some(0));
            assert_eq!(segs.last().map(|s| s.q.end), Some(ph.count));
        }
        want.sort();
        got.sort();
        assert_eq!(want, got, "in={in_len} k={k} s={s} p={p} d={d} op={op}");
    }

    #[test]
    fn transpose_plans_cover_scatter_exactly() {
        for in_len in 1..6 {
            for k in 1..6 {
                for s in 1..5 {
                    for p in 0..6 {
                        for d in 1..4 {
                            for op in 0..s.max(d) {
                                check_transpose(in_len, k, s, p, d, op);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dcgan_phases() {
        let plan = conv_transpose_axis(4, 8, 4, 2, 1, 1);
        assert_eq!(plan.phases.len(), 2);
        assert_eq!(plan.phases[0].taps, vec![Tap { k: 3, in_off: -1 }, Tap { k: 1, in_off: 0 }]);
        assert_eq!(plan.segments(0), vec![Segment { q: 0..1, taps: 1..2 }, Segment { q: 1..4, taps: 0..2 }]);
        assert_eq!(plan.interior(0), 1..4);
        assert_eq!(plan.interior(1), 0..3);
    }

    #[test]
    fn kernel_smaller_than_stride_leaves_bias_only_phases() {
        let plan = conv_transpose_axis(3, 10, 2, 4, 0, 1);
        assert_eq!(plan.phases.len(), 4);
        assert!(plan.phases[2].taps.is_empty());
        assert_eq!(plan.segments(2), vec![Segment { q: 0..2, taps: 0..0 }]);
    }

    #[test]
    fn conv_plan() {
        let plan = conv_axis(5, 5, 3, 1, 1, 1);
        assert_eq!(plan.valid_taps(0, 0), 1..3);
        assert_eq!(plan.valid_taps(0, 2), 0..3);
        assert_eq!(plan.valid_taps(0, 4), 0..2);
        assert_eq!(plan.interior(0), 1..4);
    }
}
