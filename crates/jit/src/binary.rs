//! Broadcasting elementwise arithmetic (`Add`, `Sub`, `Mul` of two tensors)
//! as a native kernel: rows of the output's last dim, each reading its two
//! operands at offsets from their broadcast strides (0 along a broadcast
//! dim), with the inner loop specialized on the last dim's strides so the
//! common cases (equal shapes, per-channel scale) vectorize.
//!
//! Safety as in `plane.rs`: [`BinaryKernel::new`] computes every length
//! with checked arithmetic, the library checks them against the planned
//! buffers, and [`binary_entry`] builds slices of exactly those lengths;
//! every index is then a bounds-checked slice index.

use kiln_ir::ArithOp;

use crate::chain::Tail;
use crate::error::JitError;
use crate::geometry::checked_len;

/// Output floats per work item (about 64 KiB), so threads can split the work.
const ITEM_FLOATS: usize = 16 * 1024;

/// PyTorch's broadcast of two shapes, or `None` when they do not broadcast.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// `out = a op b` with broadcasting, shapes fixed at compile time.
#[derive(Debug)]
pub(crate) struct BinaryKernel {
    op: ArithOp,
    /// Output dims except the last.
    outer: Vec<usize>,
    /// Strides of `a` and `b` along `outer` (0 where broadcast).
    a_strides: Vec<usize>,
    b_strides: Vec<usize>,
    /// Last dim and the operands' strides along it (0 or 1).
    row: usize,
    a_step: usize,
    b_step: usize,
    rows_per_item: usize,
    rows: usize,
    a_len: usize,
    b_len: usize,
    out_len: usize,
    /// Elementwise ops fused after the arithmetic, applied to each work range.
    tail: Option<Tail>,
}

impl BinaryKernel {
    /// Builds the kernel for operand shapes `a` and `b` broadcasting to `out`.
    pub(crate) fn new(op: ArithOp, a: &[usize], b: &[usize], out: &[usize]) -> Result<Self, JitError> {
        const K: &str = "binary";
        if out.is_empty() || out.contains(&0) || a.len() > out.len() || b.len() > out.len() {
            return Err(JitError::geometry(K, format!("bad shapes {a:?} op {b:?} -> {out:?}")));
        }
        let strides = |s: &[usize]| -> Result<Vec<usize>, JitError> {
            // Right-align `s` to `out`; a dim of 1 (or a missing one) broadcasts.
            let pad = out.len() - s.len();
            let mut st = vec![0usize; out.len()];
            let mut acc = 1usize;
            for i in (0..out.len()).rev() {
                let d = if i >= pad { s[i - pad] } else { 1 };
                if d != 1 && d != out[i] {
                    return Err(JitError::geometry(K, format!("{s:?} does not broadcast to {out:?}")));
                }
                st[i] = if d == 1 { 0 } else { acc };
                acc = acc.saturating_mul(d);
            }
            Ok(st)
        };
        let (sa, sb) = (strides(a)?, strides(b)?);
        // Merge a dim into the row after it while both operands walk the
        // pair as one run (same-shape operands, or a broadcast of whole
        // rows), up to a work item's floats: same-shape `Sub` of
        // [8, 12, 26, 22] ran 22-float rows with index arithmetic per row.
        let (mut dims, mut sa, mut sb) = (out.to_vec(), sa, sb);
        while dims.len() > 1 {
            let (i, j) = (dims.len() - 2, dims.len() - 1);
            let joins =
                |st: &[usize]| (st[i] == 0 && st[j] == 0) || (st[j] != 0 && st[i] == st[j].saturating_mul(dims[j]));
            let merged = dims[i].saturating_mul(dims[j]);
            if !(joins(&sa) && joins(&sb)) || merged > ITEM_FLOATS {
                break;
            }
            dims[i] = merged;
            let (step_a, step_b) = (sa[j], sb[j]);
            dims.pop();
            sa.pop();
            sb.pop();
            sa[i] = step_a;
            sb[i] = step_b;
        }
        let last = dims.len() - 1;
        let row = dims[last];
        let rows: usize = dims[..last].iter().product();
        Ok(Self {
            op,
            outer: dims[..last].to_vec(),
            a_strides: sa[..last].to_vec(),
            b_strides: sb[..last].to_vec(),
            row,
            a_step: sa[last],
            b_step: sb[last],
            rows_per_item: (ITEM_FLOATS / row.max(1)).max(1),
            rows,
            a_len: checked_len(K, "a", if a.is_empty() { &[1] } else { a })?,
            b_len: checked_len(K, "b", if b.is_empty() { &[1] } else { b })?,
            out_len: checked_len(K, "output", out)?,
            tail: None,
        })
    }

    /// Fuses `tail` after the arithmetic (sized for this kernel's output).
    pub(crate) fn with_tail(mut self, tail: Tail) -> Result<Self, JitError> {
        if tail.tensor_len() != self.out_len {
            return Err(JitError::geometry(
                "binary",
                format!("a chain over {} floats after an output of {}", tail.tensor_len(), self.out_len),
            ));
        }
        self.tail = Some(tail);
        Ok(self)
    }

    /// `(a_len, b_len, out_len, work items)`.
    pub(crate) fn io(&self) -> (usize, usize, usize, usize) {
        (self.a_len, self.b_len, self.out_len, self.rows.div_ceil(self.rows_per_item))
    }

    fn run(&self, a: &[f32], b: &[f32], out: &mut [f32], first_row: usize) {
        // One loop per op: the op's match stays outside the element loops.
        match self.op {
            ArithOp::Add => self.rows_with(a, b, out, first_row, |x, z| x + z),
            ArithOp::Sub => self.rows_with(a, b, out, first_row, |x, z| x - z),
            ArithOp::Mul => self.rows_with(a, b, out, first_row, |x, z| x * z),
        }
    }

    #[inline(always)]
    fn rows_with(&self, a: &[f32], b: &[f32], out: &mut [f32], first_row: usize, op: impl Fn(f32, f32) -> f32) {
        for (k, o) in out.chunks_exact_mut(self.row).enumerate() {
            let (mut r, mut oa, mut ob) = (first_row + k, 0usize, 0usize);
            for i in (0..self.outer.len()).rev() {
                let idx = r % self.outer[i];
                r /= self.outer[i];
                oa += idx * self.a_strides[i];
                ob += idx * self.b_strides[i];
            }
            match (self.a_step, self.b_step) {
                (1, 1) => {
                    let (ra, rb) = (&a[oa..][..self.row], &b[ob..][..self.row]);
                    for ((y, &x), &z) in o.iter_mut().zip(ra).zip(rb) {
                        *y = op(x, z);
                    }
                }
                (1, _) => {
                    let (ra, z) = (&a[oa..][..self.row], b[ob]);
                    for (y, &x) in o.iter_mut().zip(ra) {
                        *y = op(x, z);
                    }
                }
                (_, 1) => {
                    let (x, rb) = (a[oa], &b[ob..][..self.row]);
                    for (y, &z) in o.iter_mut().zip(rb) {
                        *y = op(x, z);
                    }
                }
                _ => o.fill(op(a[oa], b[ob])),
            }
        }
    }
}

/// Entry called from generated code: items `start..end` (runs of rows).
///
/// # Safety
/// `k` points to a live [`BinaryKernel`]; `inputs` holds two pointers valid
/// for reads of `a_len` and `b_len` floats; `out` is valid for writes of
/// `out_len` floats and overlaps neither; concurrent calls use disjoint ranges.
pub(crate) unsafe extern "C" fn binary_entry(
    k: *const BinaryKernel,
    inputs: *const *const f32,
    out: *mut f32,
    start: usize,
    end: usize,
) {
    // SAFETY: the caller passes the library-owned kernel and the two input pointers.
    let (k, pa, pb) = unsafe { (&*k, *inputs, *inputs.add(1)) };
    let first = start.saturating_mul(k.rows_per_item).min(k.rows);
    let last = end.saturating_mul(k.rows_per_item).min(k.rows);
    if first >= last {
        return;
    }
    // SAFETY: lengths checked at compile time against the planned buffers;
    // rows `[first, last)` lie inside the output and belong to this call alone.
    let (a, b, o) = unsafe {
        (
            std::slice::from_raw_parts(pa, k.a_len),
            std::slice::from_raw_parts(pb, k.b_len),
            std::slice::from_raw_parts_mut(out.add(first * k.row), (last - first) * k.row),
        )
    };
    k.run(a, b, o, first);
    if let Some(tail) = &k.tail {
        tail.apply(o, first * k.row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &BinaryKernel, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut out = vec![f32::NAN; k.out_len];
        k.run(a, b, &mut out, 0);
        out
    }

    #[test]
    fn broadcasts_per_channel_and_across_rows() {
        // [2, 3, 2] * [1, 3, 1]: a per-channel scale.
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let k = BinaryKernel::new(ArithOp::Mul, &[2, 3, 2], &[1, 3, 1], &[2, 3, 2]).unwrap();
        let y = run(&k, &a, &[1.0, 10.0, 100.0]);
        assert_eq!(y, [0., 1., 20., 30., 400., 500., 6., 7., 80., 90., 1000., 1100.]);
        // [3, 1] - [4]: an outer difference.
        let k = BinaryKernel::new(ArithOp::Sub, &[3, 1], &[4], &[3, 4]).unwrap();
        assert_eq!(run(&k, &[1., 2., 3.], &[0., 1., 2., 3.]), [1., 0., -1., -2., 2., 1., 0., -1., 3., 2., 1., 0.]);
        assert!(BinaryKernel::new(ArithOp::Add, &[3], &[4], &[4]).is_err());
    }

    /// Every broadcast the kernel's dims can express, against the index
    /// definition, with the rows it merged.
    #[test]
    fn merged_rows_compute_the_broadcast() {
        let def = |op: ArithOp, a: &[usize], b: &[usize], out: &[usize], xa: &[f32], xb: &[f32]| -> Vec<f32> {
            let at = |s: &[usize], idx: &[usize]| {
                let pad = out.len() - s.len();
                s.iter().enumerate().fold(0, |acc, (d, &n)| acc * n + if n == 1 { 0 } else { idx[d + pad] })
            };
            let len: usize = out.iter().product();
            (0..len)
                .map(|mut f| {
                    let mut idx = vec![0; out.len()];
                    for d in (0..out.len()).rev() {
                        idx[d] = f % out[d];
                        f /= out[d];
                    }
                    op.apply(xa[at(a, &idx)], xb[at(b, &idx)])
                })
                .collect()
        };
        let out = [2, 3, 4, 5];
        let cases: [(&[usize], &[usize], usize); 6] = [
            (&out, &out, 120),
            (&out, &[1, 3, 1, 1], 20),
            (&out, &[1, 1, 4, 5], 20),
            (&[2, 1, 4, 5], &[1, 3, 1, 1], 20),
            (&out, &[1], 120),
            (&[2, 3, 4, 1], &[5], 5),
        ];
        for (a, b, row) in cases {
            for op in [ArithOp::Add, ArithOp::Sub, ArithOp::Mul] {
                let k = BinaryKernel::new(op, a, b, &out).unwrap();
                assert_eq!(k.row, row, "{a:?} {b:?}");
                let xa: Vec<f32> = (0..a.iter().product::<usize>()).map(|v| v as f32 * 0.5 - 7.0).collect();
                let xb: Vec<f32> = (0..b.iter().product::<usize>()).map(|v| 3.0 - v as f32).collect();
                assert_eq!(run(&k, &xa, &xb), def(op, a, b, &out, &xa, &xb), "{op:?} {a:?} {b:?}");
            }
        }
    }
}
