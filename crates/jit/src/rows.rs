//! Row primitives of the plane kernels (`plane.rs`): the loops that make a
//! gather, a pooling window or an interpolation run at memory speed.
//!
//! Everything here is planned once per kernel from the per-axis tables and
//! then works on whole rows: a column map turns a gather into fills, slice
//! copies and stretches (nearest upsampling), pooling is separable (the
//! vertical reduction of a column chunk into a stack buffer, then the
//! horizontal one over it), and interpolation blends two horizontally
//! interpolated source rows. The per-element table lookups this replaces
//! cost 10-30× a copy.
//!
//! All indexing is into slices (bounds-checked); the plans are built from
//! tables whose every index is below the source length, which the
//! constructors check, so a bad plan is a construction error, never a read
//! out of bounds.

use crate::error::JitError;

/// Floats of the per-call stack buffers (16 KiB: inside L1 with the rows).
pub(crate) const TMP: usize = 4096;

/// One run of output columns of a gather.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seg {
    /// `len` copies of the fill value.
    Fill { len: usize },
    /// `src[from .. from + len]`.
    Copy { from: usize, len: usize },
    /// Each of `src[from .. from + count]` repeated `k` times.
    Stretch { from: usize, count: usize, k: usize },
    /// `src[index[at + t]]` for `t < len`.
    Index { at: usize, len: usize },
}

/// An output row of a gather as runs over one source row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColMap {
    segs: Vec<Seg>,
    index: Vec<usize>,
    out_len: usize,
}

impl ColMap {
    /// The map of `cols` (per output column its source column, `None` for
    /// the fill value) over source rows of `src_len` floats.
    pub(crate) fn new(cols: &[Option<usize>], src_len: usize) -> Result<Self, JitError> {
        if let Some(bad) = cols.iter().flatten().find(|&&c| c >= src_len) {
            return Err(JitError::geometry("gather", format!("column {bad} of a row of {src_len}")));
        }
        let mut segs = Vec::new();
        let mut index = Vec::new();
        let mut i = 0;
        while i < cols.len() {
            let Some(c) = cols[i] else {
                let len = cols[i..].iter().take_while(|v| v.is_none()).count();
                segs.push(Seg::Fill { len });
                i += len;
                continue;
            };
            let run = cols[i..].iter().enumerate().take_while(|&(t, v)| *v == Some(c + t)).count();
            let k = cols[i..].iter().take_while(|&&v| v == Some(c)).count();
            let count = if k >= 2 {
                (0..)
                    .take_while(|&m| {
                        let at = i + m * k;
                        at + k <= cols.len() && cols[at..at + k].iter().all(|&v| v == Some(c + m))
                    })
                    .count()
            } else {
                0
            };
            if run >= 4 {
                segs.push(Seg::Copy { from: c, len: run });
                i += run;
            } else if count >= 2 {
                segs.push(Seg::Stretch { from: c, count, k });
                i += count * k;
            } else {
                match segs.last_mut() {
                    Some(Seg::Index { len, .. }) => *len += 1,
                    _ => segs.push(Seg::Index { at: index.len(), len: 1 }),
                }
                index.push(c);
                i += 1;
            }
        }
        Ok(ColMap { segs, index, out_len: cols.len() })
    }

    /// Bytes of its tables.
    pub(crate) fn table_bytes(&self) -> usize {
        self.segs.len() * std::mem::size_of::<Seg>() + self.index.len() * 8
    }

    /// Writes one output row (`out_len` floats) from the source row `src`.
    #[inline(always)]
    pub(crate) fn apply(&self, src: &[f32], out: &mut [f32], fill: f32) {
        let mut at = 0;
        for seg in &self.segs {
            match *seg {
                Seg::Fill { len } => {
                    out[at..at + len].fill(fill);
                    at += len;
                }
                Seg::Copy { from, len } => {
                    out[at..at + len].copy_from_slice(&src[from..from + len]);
                    at += len;
                }
                Seg::Stretch { from, count, k } => {
                    let o = &mut out[at..at + count * k];
                    let s = &src[from..from + count];
                    if k == 2 {
                        // The common upsampling factor, written so it vectorizes.
                        for (pair, &v) in o.chunks_exact_mut(2).zip(s) {
                            pair[0] = v;
                            pair[1] = v;
                        }
                    } else {
                        for (chunk, &v) in o.chunks_exact_mut(k).zip(s) {
                            chunk.fill(v);
                        }
                    }
                    at += count * k;
                }
                Seg::Index { at: first, len } => {
                    for (o, &c) in out[at..at + len].iter_mut().zip(&self.index[first..first + len]) {
                        *o = src[c];
                    }
                    at += len;
                }
            }
        }
        debug_assert_eq!(at, self.out_len);
    }
}

/// Pooling windows along one axis: per output position the first input
/// index and the tap count, taps `step` apart (clipped to the input).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    /// `(first, count)` per output position.
    pub(crate) taps: Vec<(usize, usize)>,
    /// Distance between taps (the dilation; 1 for average pooling).
    pub(crate) step: usize,
}

impl Axis {
    /// One past the last input index window `o` reads (its first if empty).
    fn end(&self, o: usize) -> usize {
        let (f, c) = self.taps[o];
        if c == 0 {
            f
        } else {
            f + (c - 1) * self.step + 1
        }
    }

    /// Checks every tap lies below `len`.
    pub(crate) fn check(&self, len: usize) -> Result<(), JitError> {
        match (0..self.taps.len()).find(|&o| self.end(o) > len) {
            Some(o) => Err(JitError::geometry("pool", format!("window {o} ends at {} past {len}", self.end(o)))),
            None => Ok(()),
        }
    }
}

/// Output columns `[xa, xb)` whose windows read input columns `[lo, hi)`,
/// at most [`TMP`] of them; `direct` when one window alone is wider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Chunk {
    xa: usize,
    xb: usize,
    lo: usize,
    hi: usize,
    direct: bool,
    /// Its longest run of whole windows at a constant stride (the interior,
    /// away from the clipped edges), computed tap by tap over all of its
    /// outputs at once so the loops vectorize.
    uniform: Option<Uniform>,
}

/// Outputs `[xa, xb)` whose windows are `first + (x − xa)·stride + t·step`
/// for `t < count`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Uniform {
    xa: usize,
    xb: usize,
    first: usize,
    stride: usize,
    count: usize,
}

/// The longest uniform run among outputs `[xa, xb)` (at least 4 long).
fn uniform(cols: &Axis, xa: usize, xb: usize) -> Option<Uniform> {
    let t = &cols.taps;
    let mut best: Option<Uniform> = None;
    let mut a = xa;
    while a < xb {
        let (f, c) = t[a];
        let stride = if a + 1 < xb { t[a + 1].0.checked_sub(f) } else { None };
        let mut b = a + 1;
        if let Some(s) = stride {
            while b < xb && t[b].1 == c && t[b].0 == f + (b - a) * s {
                b += 1;
            }
        }
        // Stride 0 (windows that repeat, as when an adaptive pooling
        // enlarges: 1x1 to 4x4) is no run: the vector loop steps by it.
        if c > 0 && b - a >= 4 && stride != Some(0) && best.is_none_or(|u| b - a > u.xb - u.xa) {
            best = Some(Uniform { xa: a, xb: b, first: f, stride: stride.unwrap_or(1), count: c });
        }
        a = if b > a + 1 { b - 1 } else { b };
        if b == xb {
            break;
        }
    }
    best
}

/// Splits the output columns of `cols` into chunks whose input spans fit
/// the stack buffer.
pub(crate) fn chunks(cols: &Axis) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut xa = 0;
    let n = cols.taps.len();
    while xa < n {
        let lo = cols.taps[xa].0;
        let mut xb = xa;
        let mut hi = lo;
        while xb < n && cols.taps[xb].0 >= lo && cols.end(xb).max(hi) - lo <= TMP {
            hi = hi.max(cols.end(xb));
            xb += 1;
        }
        if xb == xa {
            out.push(Chunk { xa, xb: xa + 1, lo, hi: cols.end(xa), direct: true, uniform: None });
            xa += 1;
        } else {
            out.push(Chunk { xa, xb, lo, hi, direct: false, uniform: uniform(cols, xa, xb) });
            xa = xb;
        }
    }
    out
}

/// The reduction of a pooling window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reduce {
    /// Maximum, NaN-propagating as `torch.max_pool2d`.
    Max,
    /// Sum (the caller divides).
    Sum,
}

impl Reduce {
    /// The reduction of no values.
    #[inline(always)]
    fn init(self) -> f32 {
        match self {
            Reduce::Max => f32::NEG_INFINITY,
            Reduce::Sum => 0.0,
        }
    }

    /// The reduction of `values`, in order (the scalar paths).
    #[inline(always)]
    fn fold(self, values: impl Iterator<Item = f32>) -> f32 {
        match self {
            Reduce::Max => values.fold(self.init(), max_nan),
            Reduce::Sum => values.fold(self.init(), |m, v| m + v),
        }
    }
}

/// `maxss`'s own semantics (`v > m ? v : m`: one instruction, where
/// `f32::max` adds a NaN fix-up), for loops that never see a NaN (the row
/// is recomputed when one was read).
#[inline(always)]
fn fast_max(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// The NaN-propagating maximum (PyTorch's), for the scalar paths.
#[inline(always)]
fn max_nan(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// One output row of a separable pooling: `out[x]` for `x` in the row,
/// reducing rows `rows` (first, count, step) of the plane `src` (rows of
/// `iw` floats) over the windows of `cols`. Sums are not divided. `tmp`
/// is the caller's scratch of [`TMP`] floats (its contents are ignored;
/// the caller owns it so each row does not initialize a fresh buffer).
///
/// The vector loops of `Max` use `f32::max`, which ignores NaN: written
/// as PyTorch's NaN-propagating select, LLVM turns the in-place update
/// into masked stores (microcoded on AMD, 5× slower). So they also note
/// whether any value they read was NaN, and then the row is recomputed
/// window by window with the exact maximum ([`window`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn pool_row(
    reduce: Reduce,
    src: &[f32],
    iw: usize,
    rows: (usize, usize, usize),
    cols: &Axis,
    plan: &[Chunk],
    out: &mut [f32],
    tmp: &mut [f32; TMP],
) {
    let mut nan = false;
    let (r0, rc, rstep) = rows;
    let init = reduce.init();
    for ch in plan {
        if ch.direct {
            // One window wider than the buffer: straight from the source.
            out[ch.xa] = window(reduce, src, iw, rows, cols, ch.xa);
            continue;
        }
        let span = ch.hi - ch.lo;
        let t = &mut tmp[..span];
        // Two source rows per pass over the buffer (the loops are bound by
        // the buffer's loads and stores, not by the arithmetic).
        let row = |k: usize| &src[(r0 + k * rstep) * iw + ch.lo..][..span];
        let mut k = 0;
        if rc == 0 {
            t.fill(init);
        }
        while k < rc {
            let (a, b) = (row(k), row((k + 1).min(rc - 1)));
            let first = k == 0;
            match (reduce, first) {
                (Reduce::Max, true) => {
                    for (d, (&u, &v)) in t.iter_mut().zip(a.iter().zip(b)) {
                        *d = fast_max(u, v);
                        nan |= u.is_nan() | v.is_nan();
                    }
                }
                (Reduce::Max, false) => {
                    for (d, (&u, &v)) in t.iter_mut().zip(a.iter().zip(b)) {
                        *d = d.max(u.max(v));
                        nan |= u.is_nan() | v.is_nan();
                    }
                }
                (Reduce::Sum, _) => {
                    // An odd last row is added alone (its pair would repeat it).
                    let both = k + 1 < rc;
                    for (d, (&u, &v)) in t.iter_mut().zip(a.iter().zip(b)) {
                        let pair = if both { u + v } else { u };
                        *d = if first { pair } else { *d + pair };
                    }
                }
            }
            k += 2;
        }
        let t = &tmp[..span];
        let (ua, ub) = match ch.uniform {
            Some(u) => {
                let o = &mut out[u.xa..u.xb];
                let mut k0 = 0;
                if u.stride == 2 && u.count == 2 && cols.step == 1 {
                    // Pool2d(2): adjacent pairs, a deinterleave LLVM
                    // vectorizes (a stepped iterator it does not: 12% of a
                    // copy's bandwidth).
                    let pairs = t[u.first - ch.lo..][..2 * o.len()].chunks_exact(2);
                    match reduce {
                        Reduce::Max => o.iter_mut().zip(pairs).for_each(|(m, p)| *m = fast_max(p[0], p[1])),
                        Reduce::Sum => o.iter_mut().zip(pairs).for_each(|(m, p)| *m = p[0] + p[1]),
                    }
                    k0 = 2;
                } else if u.stride == 1 && u.count >= 2 {
                    // The first two taps in one pass, as the rows above.
                    let (a, b) = (&t[u.first - ch.lo..], &t[u.first - ch.lo + cols.step..]);
                    match reduce {
                        Reduce::Max => o.iter_mut().zip(a.iter().zip(b)).for_each(|(m, (&p, &q))| *m = fast_max(p, q)),
                        Reduce::Sum => o.iter_mut().zip(a.iter().zip(b)).for_each(|(m, (&p, &q))| *m = p + q),
                    }
                    k0 = 2;
                } else {
                    o.fill(init);
                }
                for k in k0..u.count {
                    let base = u.first - ch.lo + k * cols.step;
                    let taps = t[base..].iter().step_by(u.stride);
                    match (reduce, u.stride) {
                        (Reduce::Max, 1) => o.iter_mut().zip(&t[base..]).for_each(|(m, &v)| *m = m.max(v)),
                        (Reduce::Sum, 1) => o.iter_mut().zip(&t[base..]).for_each(|(m, &v)| *m += v),
                        (Reduce::Max, _) => o.iter_mut().zip(taps).for_each(|(m, &v)| *m = fast_max(*m, v)),
                        (Reduce::Sum, _) => o.iter_mut().zip(taps).for_each(|(m, &v)| *m += v),
                    }
                }
                (u.xa, u.xb)
            }
            None => (ch.xa, ch.xa),
        };
        for x in (ch.xa..ua).chain(ub..ch.xb) {
            let (f, c) = cols.taps[x];
            let w = &t[f - ch.lo..];
            out[x] = reduce.fold((0..c).map(|u| w[u * cols.step]));
        }
    }
    if nan {
        // Exact, window by window from the source.
        for (x, o) in out.iter_mut().enumerate().take(cols.taps.len()) {
            *o = window(Reduce::Max, src, iw, rows, cols, x);
        }
    }
}

/// Output `x` of the row, window by window from the source: the exact
/// reduction (NaN-propagating for `Max`).
fn window(reduce: Reduce, src: &[f32], iw: usize, rows: (usize, usize, usize), cols: &Axis, x: usize) -> f32 {
    let (r0, rc, rstep) = rows;
    let (f, c) = cols.taps[x];
    reduce.fold((0..rc).flat_map(|t| {
        let row = &src[(r0 + t * rstep) * iw..][..iw];
        (0..c).map(move |u| row[f + u * cols.step])
    }))
}

/// Horizontal linear interpolation of one source row:
/// `out[x] = w0·src[i0] + w1·src[i1]` with `cols[x] = (i0, i1, w0, w1)`,
/// planned as a periodic interior (an integer scale factor `r` repeats
/// the same `r` weight pairs with indices one further each period) that
/// runs as `r` contiguous vector loops and an interleave, and the edges
/// (clamped indices), entry by entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LerpMap {
    cols: Vec<(usize, usize, f32, f32)>,
    periodic: Option<Periodic>,
}

/// Outputs `xa + m·r + ph` (`m < count`, `ph < r`) are
/// `w0·src[i0 + m] + w1·src[i1 + m]` with `phases[ph] = (i0, i1, w0, w1)`.
#[derive(Debug, Clone, PartialEq)]
struct Periodic {
    xa: usize,
    count: usize,
    phases: Vec<(usize, usize, f32, f32)>,
}

impl LerpMap {
    /// The map of `cols` over source rows of `src_len` floats (at most
    /// [`TMP`] outputs).
    pub(crate) fn new(cols: Vec<(usize, usize, f32, f32)>, src_len: usize) -> Result<Self, JitError> {
        if cols.len() > TMP || cols.iter().any(|c| c.0 >= src_len || c.1 >= src_len) {
            return Err(JitError::geometry("bilinear", format!("{} columns over a row of {src_len}", cols.len())));
        }
        let periodic = Self::find_periodic(&cols);
        Ok(LerpMap { cols, periodic })
    }

    /// Outputs it writes.
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }

    fn find_periodic(cols: &[(usize, usize, f32, f32)]) -> Option<Periodic> {
        let n = cols.len();
        // `cols[x + r]` is `cols[x]` one source column further, same weights.
        let shifted = |x: usize, r: usize| {
            x + r < n && {
                let (a, b) = (cols[x], cols[x + r]);
                b.0 == a.0 + 1 && b.1 == a.1 + 1 && b.2.to_bits() == a.2.to_bits() && b.3.to_bits() == a.3.to_bits()
            }
        };
        let mid = n / 2;
        let r = (1..=8).find(|&r| (mid..mid + r).all(|x| shifted(x, r)))?;
        let (mut lo, mut hi) = (mid, mid);
        while lo > 0 && shifted(lo - 1, r) {
            lo -= 1;
        }
        while shifted(hi, r) {
            hi += 1;
        }
        // The property holds for x in [lo, hi): outputs [lo, hi + r) repeat.
        let count = (hi + r - lo) / r;
        (count >= 4).then(|| Periodic { xa: lo, count, phases: cols[lo..lo + r].to_vec() })
    }

    /// Bytes of its tables.
    pub(crate) fn table_bytes(&self) -> usize {
        24 * (self.cols.len() + self.periodic.as_ref().map_or(0, |p| p.phases.len()))
    }

    /// Writes `out` (its `len()` floats) from the source row `src`;
    /// `scratch` holds the phase rows.
    #[inline(always)]
    pub(crate) fn apply(&self, src: &[f32], out: &mut [f32], scratch: &mut [f32; TMP]) {
        let (pa, pb) = match &self.periodic {
            Some(p) => {
                let r = p.phases.len();
                let per = TMP / r;
                let mut m0 = 0;
                while m0 < p.count {
                    let mut rows: [&[f32]; 8] = [&[]; 8];
                    let n = (p.count - m0).min(per);
                    for (dst, &(i0, i1, w0, w1)) in scratch.chunks_exact_mut(per).zip(&p.phases) {
                        let (a, b) = (&src[i0 + m0..][..n], &src[i1 + m0..][..n]);
                        for (d, (&u, &v)) in dst[..n].iter_mut().zip(a.iter().zip(b)) {
                            *d = w0 * u + w1 * v;
                        }
                    }
                    for (ph, row) in rows.iter_mut().take(r).enumerate() {
                        *row = &scratch[ph * per..][..n];
                    }
                    interleave(&rows[..r], &mut out[p.xa + m0 * r..][..n * r]);
                    m0 += n;
                }
                (p.xa, p.xa + p.count * r)
            }
            None => (0, 0),
        };
        for x in (0..pa).chain(pb..self.cols.len()) {
            let (i0, i1, w0, w1) = self.cols[x];
            out[x] = w0 * src[i0] + w1 * src[i1];
        }
    }
}

/// Interleaves `r` rows into `out` (`out[x·r + j] = rows[j][x]`), the
/// pixel shuffle's inner loop.
#[inline(always)]
pub(crate) fn interleave(rows: &[&[f32]], out: &mut [f32]) {
    match rows {
        [a, b] => {
            for (pair, (&u, &v)) in out.chunks_exact_mut(2).zip(a.iter().zip(b.iter())) {
                pair[0] = u;
                pair[1] = v;
            }
        }
        _ => {
            let r = rows.len();
            for (j, row) in rows.iter().enumerate() {
                for (o, &v) in out[j..].iter_mut().step_by(r).zip(row.iter()) {
                    *o = v;
                }
            }
        }
    }
}

/// `Σ f(v)` over `src` in f64, accumulated as f32 partial sums over
/// 16 lanes and 256-float blocks (so it vectorizes; each partial sum adds
/// at most 16 terms in f32, far below the 1e-4 tolerance), then in f64.
#[inline(always)]
pub(crate) fn sum_f64(src: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in src.chunks(256) {
        let mut acc = [0.0f32; 16];
        let mut it = block.chunks_exact(16);
        for c in &mut it {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let rest: f32 = it.remainder().iter().map(|&v| f(v)).sum();
        total += acc.iter().map(|&a| f64::from(a)).sum::<f64>() + f64::from(rest);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(cols: &[Option<usize>], src: &[f32], fill: f32) -> Vec<f32> {
        cols.iter().map(|c| c.map_or(fill, |c| src[c])).collect()
    }

    #[test]
    fn column_maps_equal_the_gather_they_plan() {
        let src: Vec<f32> = (0..40).map(|v| v as f32).collect();
        let n = |v: usize| Some(v);
        let cases: Vec<Vec<Option<usize>>> = vec![
            // Zero pad, reflect pad, replicate pad.
            [None, None].into_iter().chain((0..40).map(n)).chain([None]).collect(),
            [n(2), n(1)].into_iter().chain((0..40).map(n)).chain([n(38), n(37)]).collect(),
            [n(0), n(0), n(0)].into_iter().chain((0..40).map(n)).chain([n(39)]).collect(),
            // Nearest x2, x3, a non-integer scale, a crop.
            (0..80).map(|o| n(o / 2)).collect(),
            (0..120).map(|o| n(o / 3)).collect(),
            (0..57).map(|o| n(o * 40 / 57)).collect(),
            (5..9).map(n).collect(),
            vec![n(7)],
            vec![None],
        ];
        for cols in cases {
            let m = ColMap::new(&cols, 40).unwrap();
            let mut out = vec![f32::NAN; cols.len()];
            m.apply(&src, &mut out, -1.0);
            assert_eq!(out, gather(&cols, &src, -1.0), "{cols:?} as {:?}", m.segs);
        }
        assert!(ColMap::new(&[Some(40)], 40).is_err());
    }

    #[test]
    fn x2_stretches_and_pads_become_runs() {
        let m = ColMap::new(&(0..80).map(|o| Some(o / 2)).collect::<Vec<_>>(), 40).unwrap();
        assert_eq!(m.segs, [Seg::Stretch { from: 0, count: 40, k: 2 }]);
        let pad: Vec<_> = [None].into_iter().chain((0..40).map(Some)).chain([None]).collect();
        let m = ColMap::new(&pad, 40).unwrap();
        assert_eq!(m.segs, [Seg::Fill { len: 1 }, Seg::Copy { from: 0, len: 40 }, Seg::Fill { len: 1 }]);
    }

    /// The windows of output `o`: `first + t·step` for `t < count`.
    fn direct_pool(reduce: Reduce, src: &[f32], iw: usize, rows: (usize, usize, usize), cols: &Axis) -> Vec<f32> {
        (0..cols.taps.len())
            .map(|x| {
                let (f, c) = cols.taps[x];
                let mut vals = Vec::new();
                for t in 0..rows.1 {
                    for u in 0..c {
                        vals.push(src[(rows.0 + t * rows.2) * iw + f + u * cols.step]);
                    }
                }
                match reduce {
                    Reduce::Max => vals.into_iter().fold(f32::NEG_INFINITY, max_nan),
                    Reduce::Sum => vals.into_iter().sum(),
                }
            })
            .collect()
    }

    #[test]
    fn separable_pooling_equals_the_direct_windows() {
        for (iw, k, s, d) in
            [(37usize, 3usize, 2usize, 1usize), (10_000, 2, 2, 1), (9000, 3, 1, 3000), (50, 5, 3, 2), (8, 2, 2, 1)]
        {
            let src: Vec<f32> = (0..3 * iw).map(|v| ((v * 7919) % 101) as f32 - 50.0).collect();
            let ow = (iw - (k - 1) * d - 1) / s + 1;
            let cols = Axis { taps: (0..ow).map(|o| (o * s, k)).collect(), step: d };
            cols.check(iw).unwrap();
            let plan = chunks(&cols);
            for reduce in [Reduce::Max, Reduce::Sum] {
                let mut out = vec![f32::NAN; ow];
                pool_row(reduce, &src, iw, (0, 3, 1), &cols, &plan, &mut out, &mut [0.0; TMP]);
                let want = direct_pool(reduce, &src, iw, (0, 3, 1), &cols);
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-3, "iw {iw} k {k} s {s} d {d} {reduce:?}: {a} vs {b}");
                }
            }
        }
        // Clipped edge windows (padding 1, kernel 3, stride 1) around a uniform interior.
        let iw = 40;
        let src: Vec<f32> = (0..iw).map(|v| ((v * 37) % 11) as f32).collect();
        let taps: Vec<_> =
            (0..iw).map(|o: usize| (o.saturating_sub(1), if o == 0 || o == iw - 1 { 2 } else { 3 })).collect();
        let cols = Axis { taps, step: 1 };
        let plan = chunks(&cols);
        assert!(plan[0].uniform.is_some_and(|u| u.xa == 1 && u.xb == iw - 1), "{plan:?}");
        for reduce in [Reduce::Max, Reduce::Sum] {
            let mut out = vec![f32::NAN; iw];
            pool_row(reduce, &src, iw, (0, 1, 1), &cols, &plan, &mut out, &mut [0.0; TMP]);
            assert_eq!(out, direct_pool(reduce, &src, iw, (0, 1, 1), &cols), "{reduce:?}");
        }
        // Repeated windows (an adaptive pooling from 1 to 6 columns, found by
        // kiln-fuzz: a stride-0 run panicked in `step_by` inside the kernel).
        let cols = Axis { taps: vec![(0, 1); 6], step: 1 };
        let plan = chunks(&cols);
        assert!(plan.iter().all(|c| c.uniform.is_none_or(|u| u.stride > 0)), "{plan:?}");
        let src = [3.0f32; 4];
        for reduce in [Reduce::Max, Reduce::Sum] {
            let mut out = vec![f32::NAN; 6];
            pool_row(reduce, &src, 1, (0, 1, 1), &cols, &plan, &mut out, &mut [0.0; TMP]);
            assert_eq!(out, direct_pool(reduce, &src, 1, (0, 1, 1), &cols), "{reduce:?}");
        }
        let mut src = vec![1.0f32; 16];
        src[5] = f32::NAN;
        let cols = Axis { taps: vec![(0, 4), (4, 4)], step: 1 };
        let mut out = [0.0; 2];
        pool_row(Reduce::Max, &src, 8, (0, 2, 1), &cols, &chunks(&cols), &mut out, &mut [0.0; TMP]);
        assert!(out[1].is_nan() && out[0] == 1.0);
    }

    #[test]
    fn lerp_maps_equal_the_table() {
        let src: Vec<f32> = (0..300).map(|v| ((v * 7919) % 97) as f32 * 0.1).collect();
        for (iw, ow) in [(100usize, 200usize), (100, 300), (100, 800), (150, 151), (7, 14), (300, 1000)] {
            // PyTorch's half-pixel source coordinates, clamped at the edges.
            let cols: Vec<_> = (0..ow)
                .map(|x| {
                    let s = ((x as f32 + 0.5) * iw as f32 / ow as f32 - 0.5).max(0.0);
                    let i0 = (s as usize).min(iw - 1);
                    let i1 = (i0 + 1).min(iw - 1);
                    let l = s - i0 as f32;
                    (i0, i1, 1.0 - l, l)
                })
                .collect();
            let m = LerpMap::new(cols.clone(), iw).unwrap();
            if ow == 2 * iw {
                assert!(
                    m.periodic.as_ref().is_some_and(|p| p.phases.len() == 2 && p.count * 2 >= ow - 4),
                    "{iw}->{ow}"
                );
            }
            let mut out = vec![f32::NAN; ow];
            m.apply(&src, &mut out, &mut [0.0; TMP]);
            let want: Vec<f32> = cols.iter().map(|&(a, b, u, v)| u * src[a] + v * src[b]).collect();
            assert_eq!(out, want, "{iw}->{ow}");
        }
        assert!(LerpMap::new(vec![(0, 5, 0.5, 0.5)], 5).is_err());
    }

    #[test]
    fn interleave_and_sums() {
        let (a, b, c) = ([1.0f32, 2.0], [3.0f32, 4.0], [5.0f32, 6.0]);
        let mut o = [0.0; 4];
        interleave(&[&a, &b], &mut o);
        assert_eq!(o, [1.0, 3.0, 2.0, 4.0]);
        let mut o = [0.0; 6];
        interleave(&[&a, &b, &c], &mut o);
        assert_eq!(o, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let v: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5).collect();
        assert_eq!(sum_f64(&v, |x| x), 250_250.0);
        assert_eq!(sum_f64(&v, |x| 2.0 * x), 500_500.0);
    }
}
