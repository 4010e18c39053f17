//! Spatial gathers as per-axis index maps, and their composition.
//!
//! Padding (all four modes), cropping (`narrow` of H or W) and nearest
//! upsampling each write output pixel `(y, x)` from input pixel
//! `(rows[y], cols[x])`, or a fill value where either map has none. Model
//! code chains them (`F.pad(x, …)[:, :, 1:-1, 2:-2]`, a reflection pad
//! after an upsampling), and each op alone is a full pass over memory. Two
//! gathers in a row are one gather whose maps are the composition of theirs,
//! so the lowering folds a chain of any length into one plane kernel
//! ([`GatherMap::then`]) and drops a chain that composes to the identity.
//!
//! Composition is exact: the composed kernel copies the same floats, and a
//! pixel that either step fills is filled. It needs one fill value, so two
//! steps that both fill, with different values, are not composed.

use kiln_ir::{nearest_source, PadMode, Sides};

use crate::error::JitError;

/// A gather of `[in_h, in_w]` planes into `[rows.len(), cols.len()]` planes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GatherMap {
    /// Per output row its source row, `None` for the fill value.
    pub(crate) rows: Vec<Option<usize>>,
    /// Per output column its source column, `None` for the fill value.
    pub(crate) cols: Vec<Option<usize>>,
    /// The value of pixels with no source.
    pub(crate) fill: f32,
    /// The input plane size.
    pub(crate) in_hw: [usize; 2],
}

impl GatherMap {
    /// `Pad2d` of `[h, w]` planes by `pad` in `mode` (PyTorch's rules: a
    /// reflection pad must be narrower than the input).
    pub(crate) fn pad(in_hw: [usize; 2], pad: Sides, mode: PadMode) -> Result<Self, JitError> {
        if mode == PadMode::Reflect
            && (pad.top >= in_hw[0] || pad.bottom >= in_hw[0] || pad.left >= in_hw[1] || pad.right >= in_hw[1])
        {
            return Err(JitError::geometry(
                "reflection_pad",
                format!("padding {pad} must be smaller than the input {in_hw:?}"),
            ));
        }
        let out_hw = [
            in_hw[0].saturating_add(pad.top).saturating_add(pad.bottom),
            in_hw[1].saturating_add(pad.left).saturating_add(pad.right),
        ];
        let src = |o: usize, before: usize, len: usize| -> Option<usize> {
            let i = o as i64 - before as i64;
            let l = len as i64;
            match mode {
                PadMode::Zero | PadMode::Constant { .. } => (0..l).contains(&i).then_some(i as usize),
                PadMode::Reflect => {
                    let r = if i < 0 {
                        -i
                    } else if i >= l {
                        2 * (l - 1) - i
                    } else {
                        i
                    };
                    (0..l).contains(&r).then_some(r as usize)
                }
                PadMode::Replicate => Some(i.clamp(0, l - 1) as usize),
            }
        };
        let fill = match mode {
            PadMode::Constant { value } => value,
            PadMode::Zero | PadMode::Reflect | PadMode::Replicate => 0.0,
        };
        Ok(Self {
            rows: (0..out_hw[0]).map(|o| src(o, pad.top, in_hw[0])).collect(),
            cols: (0..out_hw[1]).map(|o| src(o, pad.left, in_hw[1])).collect(),
            fill,
            in_hw,
        })
    }

    /// Nearest upsampling of `[h, w]` planes to `out_hw`, with PyTorch's
    /// source rule (`factors` as given to `interpolate`, if any).
    pub(crate) fn nearest(in_hw: [usize; 2], out_hw: [usize; 2], factors: [Option<f64>; 2]) -> Self {
        let axis =
            |a: usize| (0..out_hw[a]).map(|o| Some(nearest_source(o, in_hw[a], out_hw[a], factors[a]))).collect();
        Self { rows: axis(0), cols: axis(1), fill: 0.0, in_hw }
    }

    /// `narrow` along the plane's `axis` (0 = rows, 1 = columns): keeps
    /// `start .. start + length` of it.
    pub(crate) fn crop(in_hw: [usize; 2], axis: usize, start: usize, length: usize) -> Result<Self, JitError> {
        if axis > 1 || start.checked_add(length).is_none_or(|e| e > in_hw[axis]) || length == 0 {
            return Err(JitError::geometry("narrow", format!("{start}..+{length} of axis {axis} of {in_hw:?}")));
        }
        let all = |n: usize| (0..n).map(Some).collect::<Vec<_>>();
        let kept = (start..start + length).map(Some).collect();
        let (rows, cols) = if axis == 0 { (kept, all(in_hw[1])) } else { (all(in_hw[0]), kept) };
        Ok(Self { rows, cols, fill: 0.0, in_hw })
    }

    /// The output plane size.
    pub(crate) fn out_hw(&self) -> [usize; 2] {
        [self.rows.len(), self.cols.len()]
    }

    /// Whether some output pixel takes the fill value.
    fn fills(&self) -> bool {
        self.rows.iter().chain(&self.cols).any(Option::is_none)
    }

    /// Whether every output pixel is its own input pixel.
    pub(crate) fn is_identity(&self) -> bool {
        let same = |m: &[Option<usize>], n: usize| m.len() == n && m.iter().enumerate().all(|(i, &s)| s == Some(i));
        same(&self.rows, self.in_hw[0]) && same(&self.cols, self.in_hw[1])
    }

    /// This gather followed by `next` (which reads this one's output) as one
    /// gather; `None` when both fill, with different values (bitwise, so a
    /// NaN fill composes only with itself).
    pub(crate) fn then(&self, next: &GatherMap) -> Option<GatherMap> {
        if next.in_hw != self.out_hw() {
            return None;
        }
        let fill = match (self.fills(), next.fills()) {
            (true, true) if self.fill.to_bits() != next.fill.to_bits() => return None,
            (true, _) => self.fill,
            (false, _) => next.fill,
        };
        let compose = |outer: &[Option<usize>], inner: &[Option<usize>]| -> Vec<Option<usize>> {
            outer.iter().map(|s| s.and_then(|i| inner[i])).collect()
        };
        Some(GatherMap {
            rows: compose(&next.rows, &self.rows),
            cols: compose(&next.cols, &self.cols),
            fill,
            in_hw: self.in_hw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies `m` to one `[h, w]` plane, pixel by pixel (the definition).
    fn apply(m: &GatherMap, x: &[f32]) -> Vec<f32> {
        let w = m.in_hw[1];
        let mut out = Vec::new();
        for r in &m.rows {
            for c in &m.cols {
                out.push(match (r, c) {
                    (Some(r), Some(c)) => x[r * w + c],
                    _ => m.fill,
                });
            }
        }
        out
    }

    fn sides(top: usize, bottom: usize, left: usize, right: usize) -> Sides {
        Sides { top, bottom, left, right }
    }

    #[test]
    fn composition_equals_applying_both() {
        let in_hw = [5, 7];
        let x: Vec<f32> = (0..35).map(|v| v as f32 + 1.0).collect();
        let pad = GatherMap::pad(in_hw, sides(2, 1, 1, 3), PadMode::Constant { value: -2.5 }).expect("pad");
        let reflect = |hw| GatherMap::pad(hw, sides(1, 2, 2, 1), PadMode::Reflect).expect("reflect");
        let replicate = |hw| GatherMap::pad(hw, sides(0, 3, 1, 0), PadMode::Replicate).expect("replicate");
        let up = |hw: [usize; 2]| GatherMap::nearest(hw, [hw[0] * 2, hw[1] * 3 - 1], [None, None]);
        let crop_rows = |hw: [usize; 2]| GatherMap::crop(hw, 0, 1, hw[0] - 2).expect("crop");
        let crop_cols = |hw: [usize; 2]| GatherMap::crop(hw, 1, 2, hw[1] - 3).expect("crop");
        let steps: Vec<&dyn Fn([usize; 2]) -> GatherMap> =
            vec![&reflect, &up, &crop_rows, &replicate, &crop_cols, &up, &crop_rows];
        let (mut composed, mut want) = (pad.clone(), apply(&pad, &x));
        for step in steps {
            let next = step(composed.out_hw());
            want = apply(&next, &want);
            composed = composed.then(&next).expect("composable");
            assert_eq!(apply(&composed, &x), want);
        }
        assert!(want.contains(&-2.5), "the pad's fill survives the chain");
    }

    #[test]
    fn fills_must_agree() {
        let a = GatherMap::pad([3, 3], sides(1, 1, 1, 1), PadMode::Constant { value: 1.0 }).expect("pad");
        let b = GatherMap::pad(a.out_hw(), sides(1, 0, 0, 0), PadMode::Constant { value: 2.0 }).expect("pad");
        assert_eq!(a.then(&b), None);
        // A crop of the padding away leaves no filled pixel: it composes.
        let crop = GatherMap::crop(a.out_hw(), 0, 1, 3).expect("crop");
        let crop = crop.then(&GatherMap::crop(crop.out_hw(), 1, 1, 3).expect("crop")).expect("crops compose");
        let back = a.then(&crop).expect("pad then crop");
        assert!(back.is_identity());
        // Reflection fills nothing, so any constant pad composes with it.
        let r = GatherMap::pad(b.out_hw(), sides(1, 1, 1, 1), PadMode::Reflect).expect("reflect");
        assert!(b.then(&r).is_some());
        // Mismatched sizes are not composed.
        assert_eq!(a.then(&a), None);
    }

    #[test]
    fn bad_crops_and_reflections_are_refused() {
        assert!(GatherMap::crop([4, 4], 1, 3, 2).is_err());
        assert!(GatherMap::crop([4, 4], 0, 0, 0).is_err());
        assert!(GatherMap::crop([4, 4], 2, 0, 1).is_err());
        assert!(GatherMap::crop([4, 4], 0, usize::MAX, 2).is_err());
        assert!(GatherMap::pad([2, 5], sides(2, 0, 0, 0), PadMode::Reflect).is_err());
    }
}
