//! Native kernels for the ops that move values within image planes:
//! max/average/adaptive pooling, the four paddings, nearest and bilinear
//! upsampling, pixel shuffle and unshuffle.
//!
//! These ops are memory-bound gathers; what makes them fast is touching each
//! output once with precomputed per-axis index tables, not arithmetic the
//! JIT could specialize. So each is a [`PlaneKernel`] (tables built at compile
//! time from the known shapes) run by safe Rust over slices, and generated
//! code only forwards its work range to [`plane_entry`].
//!
//! Safety rests on one check: [`PlaneKernel::new`] computes the input and
//! output lengths from the shapes with checked arithmetic, the library
//! compares them with the planned buffers like every kernel's, and the
//! entry builds slices of exactly those lengths. Every index inside is then
//! a bounds-checked slice index into buffers of the checked size.
//!
//! Work items are output planes `(n, c)`; a range of them is a contiguous
//! run of the output, so threads write disjoint slices.

use kiln_ir::{
    linear_source, AvgDivisor, PadMode, Pool2dParams, ShuffleDirection, Sides, UpsampleMode, UpsampleParams,
};

use crate::chain::Tail;
use crate::col2im::Col2Im;
use crate::dwrows::DwRows;
use crate::epilogue::Epilogue;
use crate::error::JitError;
use crate::gather::GatherMap;
use crate::gemm::Gemm;
use crate::geometry::checked_len;
use crate::geometry::ConvTranspose2dGeometry;
use crate::rows::{self, Axis, Chunk, ColMap, Reduce};

/// What a plane kernel computes, with its per-axis tables.
#[derive(Debug)]
enum PlaneOp {
    /// Max over dilated windows (per axis the clipped taps), separable.
    MaxPool { rows: Axis, cols: Axis, plan: Vec<Chunk> },
    /// Window sums over the clipped windows per axis, divided per output
    /// pixel by `div_rows[y]·div_cols[x]` or the `constant`.
    AvgPool { rows: Axis, cols: Axis, plan: Vec<Chunk>, div_rows: Vec<f32>, div_cols: Vec<f32>, constant: Option<f32> },
    /// Gather: per output row its source row (`None` = the constant), and
    /// the one column map every row shares.
    Gather { rows: Vec<Option<usize>>, cols: ColMap, fill: f32 },
    /// Bilinear: per output row `(i0, i1, w0, w1)`, and the horizontal
    /// interpolation as one map per chunk of [`rows::TMP`] output columns.
    Bilinear { rows: Vec<(usize, usize, f32, f32)>, cols: Vec<rows::LerpMap> },
    /// Pixel shuffle by `r` in `direction`.
    Shuffle { r: usize, direction: ShuffleDirection },
    /// Per-item statistics (an instance plane, or a group of planes), then
    /// the per-channel affine: `y = (x − mean)·(g[c]/√(var + eps)) + b[c]`.
    Normalize { eps: f64, weight: Option<Vec<f32>>, bias: Option<Vec<f32>> },
    /// A depthwise transposed convolution with a large stride, row by row.
    DepthwiseRows(Box<DwRows>),
    /// The col2im half of a few-channel transposed convolution.
    Col2Im(Box<Col2Im>),
    /// The GEMM half of a few-channel transposed convolution.
    Gemm(Box<Gemm>),
}

/// A compiled plane op over `[n, c_in, in_h, in_w] → [n, c_out, out_h, out_w]`.
#[derive(Debug)]
pub(crate) struct PlaneKernel {
    op: PlaneOp,
    n: usize,
    c_in: usize,
    c_out: usize,
    in_hw: [usize; 2],
    out_hw: [usize; 2],
    in_len: usize,
    out_len: usize,
    /// Output planes per work item (a GroupNorm group; 1 otherwise).
    per_item: usize,
    /// Elementwise ops fused after the op, applied to each work range.
    tail: Option<Tail>,
}

/// Work of one kernel, for the library's `KernelInfo`.
pub(crate) struct PlaneIo {
    pub(crate) in_len: usize,
    pub(crate) out_len: usize,
    pub(crate) items: usize,
    pub(crate) flops: u64,
}

/// The clipped taps along one axis of a pooling window at output `o`:
/// the first input index and how many (they are `d` apart).
fn taps(o: usize, k: usize, s: usize, p: usize, d: usize, len: usize) -> (usize, usize) {
    let mut it = (0..k).filter_map(|t| (o * s + t * d).checked_sub(p)).filter(|&i| i < len);
    match it.next() {
        Some(first) => (first, 1 + it.count()),
        None => (0, 0),
    }
}

/// Clipped `[start, end)` of an average window along one axis, and its
/// divisor share (padded or clipped length).
fn avg_range(o: usize, k: usize, s: usize, p: usize, len: usize, include_pad: bool) -> ((usize, usize), f32) {
    let start = (o * s) as i64 - p as i64;
    let end = (start + k as i64).min((len + p) as i64);
    let padded = end - start;
    let (a, b) = (start.max(0) as usize, end.clamp(0, len as i64) as usize);
    let b = b.max(a);
    ((a, b), if include_pad { padded as f32 } else { (b - a) as f32 })
}

impl PlaneKernel {
    fn with(op: PlaneOp, n: usize, c: [usize; 2], in_hw: [usize; 2], out_hw: [usize; 2]) -> Result<Self, JitError> {
        let name = "plane";
        if [n, c[0], c[1], in_hw[0], in_hw[1], out_hw[0], out_hw[1]].contains(&0) {
            return Err(JitError::geometry(
                name,
                format!("sizes must be positive: n={n} c={c:?} in={in_hw:?} out={out_hw:?}"),
            ));
        }
        let in_len = checked_len(name, "input", &[n, c[0], in_hw[0], in_hw[1]])?;
        let out_len = checked_len(name, "output", &[n, c[1], out_hw[0], out_hw[1]])?;
        Ok(Self { op, n, c_in: c[0], c_out: c[1], in_hw, out_hw, in_len, out_len, per_item: 1, tail: None })
    }

    /// A depthwise large-stride `ConvTranspose2d` ([`DwRows::applies`]),
    /// `weights` in PyTorch's layout, with its bias and activation.
    pub(crate) fn depthwise_rows(
        g: &ConvTranspose2dGeometry,
        weights: &[f32],
        ep: &Epilogue,
    ) -> Result<Self, JitError> {
        let rows = DwRows::new(g, weights, ep)?;
        Self::with(
            PlaneOp::DepthwiseRows(Box::new(rows)),
            g.batch,
            [g.in_channels, g.out_channels],
            [g.in_h, g.in_w],
            [g.out_h, g.out_w],
        )
    }

    /// The col2im of a transposed convolution `g` (see [`crate::col2im`]):
    /// from its GEMM's output `[N, C_out·kH·kW, H, W]` to `g`'s output.
    pub(crate) fn col2im(g: &ConvTranspose2dGeometry, ep: &Epilogue) -> Result<Self, JitError> {
        let op = Col2Im::new(g, ep)?;
        let columns = g.out_channels.checked_mul(g.kernel[0] * g.kernel[1]).ok_or_else(|| {
            JitError::geometry("col2im", format!("{} channels × {:?} taps overflow", g.out_channels, g.kernel))
        })?;
        Self::with(
            PlaneOp::Col2Im(Box::new(op)),
            g.batch,
            [columns, g.out_channels],
            [g.in_h, g.in_w],
            [g.out_h, g.out_w],
        )
    }

    /// The GEMM of a few-channel transposed convolution (see
    /// [`crate::gemm`]): `gemm` is its 1×1 geometry, `weights` the layer's.
    pub(crate) fn gemm(gemm: &ConvTranspose2dGeometry, weights: &[f32]) -> Result<Self, JitError> {
        let op = Gemm::new(gemm, weights)?;
        Self::with(
            PlaneOp::Gemm(Box::new(op)),
            gemm.batch,
            [gemm.in_channels, gemm.out_channels],
            [gemm.in_h, gemm.in_w],
            [gemm.out_h, gemm.out_w],
        )
    }

    /// Fuses `tail` after the op: it runs on each work range while the
    /// range is in cache. The tail must be sized for this kernel's output.
    pub(crate) fn with_tail(mut self, tail: Tail) -> Result<Self, JitError> {
        if tail.tensor_len() != self.out_len {
            return Err(JitError::geometry(
                "plane",
                format!("a chain over {} floats after an output of {}", tail.tensor_len(), self.out_len),
            ));
        }
        self.tail = Some(tail);
        Ok(self)
    }

    /// `MaxPool2d` over `[n, c, h, w]` to the output size `out_hw`.
    pub(crate) fn max_pool(
        n: usize,
        c: usize,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        p: &Pool2dParams,
    ) -> Result<Self, JitError> {
        let rows = Axis {
            taps: (0..out_hw[0])
                .map(|o| taps(o, p.kernel_size.h, p.stride.h, p.padding.h, p.dilation.h, in_hw[0]))
                .collect(),
            step: p.dilation.h,
        };
        let cols = Axis {
            taps: (0..out_hw[1])
                .map(|o| taps(o, p.kernel_size.w, p.stride.w, p.padding.w, p.dilation.w, in_hw[1]))
                .collect(),
            step: p.dilation.w,
        };
        rows.check(in_hw[0])?;
        cols.check(in_hw[1])?;
        let plan = rows::chunks(&cols);
        Self::with(PlaneOp::MaxPool { rows, cols, plan }, n, [c, c], in_hw, out_hw)
    }

    /// `AvgPool2d`.
    pub(crate) fn avg_pool(
        n: usize,
        c: usize,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        p: &Pool2dParams,
        d: AvgDivisor,
    ) -> Result<Self, JitError> {
        let inc = d.count_include_pad;
        let (rows, div_rows) =
            (0..out_hw[0]).map(|o| avg_range(o, p.kernel_size.h, p.stride.h, p.padding.h, in_hw[0], inc)).unzip();
        let (cols, div_cols) =
            (0..out_hw[1]).map(|o| avg_range(o, p.kernel_size.w, p.stride.w, p.padding.w, in_hw[1], inc)).unzip();
        let constant = d.divisor_override.map(|v| v as f32);
        Self::avg(rows, cols, div_rows, div_cols, constant, n, c, in_hw, out_hw)
    }

    /// `AdaptiveAvgPool2d`: cell `o` averages `⌊o·in/out⌋ .. ⌈(o+1)·in/out⌉`.
    pub(crate) fn adaptive_avg(n: usize, c: usize, in_hw: [usize; 2], out_hw: [usize; 2]) -> Result<Self, JitError> {
        let axis = |i: usize, o: usize| -> (Vec<(usize, usize)>, Vec<f32>) {
            (0..o)
                .map(|k| {
                    let (a, b) = (k * i / o, ((k + 1) * i).div_ceil(o));
                    ((a, b), (b - a) as f32)
                })
                .unzip()
        };
        let (rows, div_rows) = axis(in_hw[0], out_hw[0].max(1));
        let (cols, div_cols) = axis(in_hw[1], out_hw[1].max(1));
        Self::avg(rows, cols, div_rows, div_cols, None, n, c, in_hw, out_hw)
    }

    /// An average pooling from its `[start, end)` windows per axis.
    #[allow(clippy::too_many_arguments)]
    fn avg(
        rows: Vec<(usize, usize)>,
        cols: Vec<(usize, usize)>,
        div_rows: Vec<f32>,
        div_cols: Vec<f32>,
        constant: Option<f32>,
        n: usize,
        c: usize,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
    ) -> Result<Self, JitError> {
        let axis = |w: Vec<(usize, usize)>| Axis { taps: w.into_iter().map(|(a, b)| (a, b - a)).collect(), step: 1 };
        let (rows, cols) = (axis(rows), axis(cols));
        rows.check(in_hw[0])?;
        cols.check(in_hw[1])?;
        let plan = rows::chunks(&cols);
        let op = PlaneOp::AvgPool { rows, cols, plan, div_rows, div_cols, constant };
        Self::with(op, n, [c, c], in_hw, out_hw)
    }

    /// The four `*Pad2d` modes.
    pub(crate) fn pad(n: usize, c: usize, in_hw: [usize; 2], pad: Sides, mode: PadMode) -> Result<Self, JitError> {
        Self::gather(n, c, &GatherMap::pad(in_hw, pad, mode)?)
    }

    /// A spatial gather of `[n, c]` planes (a pad, crop or nearest
    /// upsampling, or a composition of them).
    pub(crate) fn gather(n: usize, c: usize, map: &GatherMap) -> Result<Self, JitError> {
        let cols = ColMap::new(&map.cols, map.in_hw[1])?;
        if let Some(bad) = map.rows.iter().flatten().find(|&&r| r >= map.in_hw[0]) {
            return Err(JitError::geometry("gather", format!("row {bad} of a plane of {}", map.in_hw[0])));
        }
        let op = PlaneOp::Gather { rows: map.rows.clone(), cols, fill: map.fill };
        Self::with(op, n, [c, c], map.in_hw, map.out_hw())
    }

    /// `Upsample` to `out_hw` (the size shape inference computed).
    pub(crate) fn upsample(
        n: usize,
        c: usize,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        p: &UpsampleParams,
    ) -> Result<Self, JitError> {
        let (fh, fw) = (p.size.factor(0), p.size.factor(1));
        let op = match p.mode {
            UpsampleMode::Nearest => return Self::gather(n, c, &GatherMap::nearest(in_hw, out_hw, [fh, fw])),
            UpsampleMode::Bilinear => {
                let cols: Vec<_> =
                    (0..out_hw[1]).map(|o| linear_source(o, in_hw[1], out_hw[1], fw, p.align_corners)).collect();
                let rows: Vec<_> =
                    (0..out_hw[0]).map(|o| linear_source(o, in_hw[0], out_hw[0], fh, p.align_corners)).collect();
                if rows.iter().any(|r| r.0.max(r.1) >= in_hw[0]) {
                    return Err(JitError::geometry("bilinear", format!("a source row past {}", in_hw[0])));
                }
                let cols = cols
                    .chunks(rows::TMP)
                    .map(|c| rows::LerpMap::new(c.to_vec(), in_hw[1]))
                    .collect::<Result<_, _>>()?;
                PlaneOp::Bilinear { rows, cols }
            }
        };
        Self::with(op, n, [c, c], in_hw, out_hw)
    }

    /// `PixelShuffle(r)` / `PixelUnshuffle(r)` of `[n, c_in, h, w]`.
    pub(crate) fn shuffle(
        n: usize,
        c_in: usize,
        in_hw: [usize; 2],
        r: usize,
        direction: ShuffleDirection,
    ) -> Result<Self, JitError> {
        let r2 = r
            .checked_mul(r)
            .filter(|&v| v > 0)
            .ok_or_else(|| JitError::geometry("pixel_shuffle", format!("bad factor {r}")))?;
        let (c_out, out_hw) = match direction {
            ShuffleDirection::Shuffle if c_in.is_multiple_of(r2) => {
                (c_in / r2, [in_hw[0].saturating_mul(r), in_hw[1].saturating_mul(r)])
            }
            ShuffleDirection::Unshuffle if in_hw[0].is_multiple_of(r) && in_hw[1].is_multiple_of(r) => {
                (c_in.saturating_mul(r2), [in_hw[0] / r, in_hw[1] / r])
            }
            _ => {
                return Err(JitError::geometry("pixel_shuffle", format!("factor {r} does not divide {c_in}x{in_hw:?}")))
            }
        };
        Self::with(PlaneOp::Shuffle { r, direction }, n, [c_in, c_out], in_hw, out_hw)
    }

    /// `InstanceNorm2d` with per-instance statistics over `[n, c, h, w]`
    /// (`weight`/`bias`: `c` values each, when affine).
    pub(crate) fn instance_norm(
        n: usize,
        c: usize,
        hw: [usize; 2],
        eps: f32,
        weight: Option<Vec<f32>>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, JitError> {
        Self::check_affine(c, &weight, &bias)?;
        Self::with(PlaneOp::Normalize { eps: f64::from(eps), weight, bias }, n, [c, c], hw, hw)
    }

    /// `GroupNorm` over `[n, c, inner]`: one work item per `(n, group)`.
    pub(crate) fn group_norm(
        n: usize,
        c: usize,
        inner: usize,
        groups: usize,
        eps: f32,
        weight: Option<Vec<f32>>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, JitError> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(JitError::geometry("group_norm", format!("{c} channels do not split into {groups} groups")));
        }
        Self::check_affine(c, &weight, &bias)?;
        let mut k =
            Self::with(PlaneOp::Normalize { eps: f64::from(eps), weight, bias }, n, [c, c], [1, inner], [1, inner])?;
        k.per_item = c / groups;
        Ok(k)
    }

    fn check_affine(c: usize, weight: &Option<Vec<f32>>, bias: &Option<Vec<f32>>) -> Result<(), JitError> {
        for (what, v) in [("weight", weight), ("bias", bias)] {
            if let Some(v) = v {
                if v.len() != c {
                    return Err(JitError::ParameterLength {
                        kernel: "norm".into(),
                        what,
                        expected: c,
                        actual: v.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `torch.narrow` viewed as planes: `[outer, size, inner] → [outer, length, inner]`
    /// keeping rows `start .. start + length`.
    pub(crate) fn narrow(
        outer: usize,
        size: usize,
        start: usize,
        length: usize,
        inner: usize,
    ) -> Result<Self, JitError> {
        if start.checked_add(length).is_none_or(|e| e > size) {
            return Err(JitError::geometry("narrow", format!("rows {start}..+{length} exceed {size}")));
        }
        let rows = (start..start + length).map(Some).collect();
        let cols = ColMap::new(&(0..inner).map(Some).collect::<Vec<_>>(), inner)?;
        Self::with(PlaneOp::Gather { rows, cols, fill: 0.0 }, outer, [1, 1], [size, inner], [length, inner])
    }

    /// Lengths and work for the library.
    pub(crate) fn io(&self) -> PlaneIo {
        let window = match &self.op {
            PlaneOp::MaxPool { rows, cols, .. } => {
                let most = |a: &Axis| a.taps.iter().map(|t| t.1).max().unwrap_or(1);
                most(rows) * most(cols)
            }
            PlaneOp::AvgPool { .. } | PlaneOp::Bilinear { .. } => 4,
            PlaneOp::Gather { .. } | PlaneOp::Shuffle { .. } => 1,
            PlaneOp::Normalize { .. } => 5,
            PlaneOp::DepthwiseRows(_) | PlaneOp::Col2Im(_) | PlaneOp::Gemm(_) => 0,
        };
        let flops = match &self.op {
            PlaneOp::DepthwiseRows(d) => d.plane_flops().saturating_mul((self.n * self.c_out) as u64),
            PlaneOp::Col2Im(c) => c.plane_flops().saturating_mul((self.n * self.c_out) as u64),
            PlaneOp::Gemm(g) => g.plane_flops().saturating_mul((self.n * self.c_out) as u64),
            _ => (self.out_len as u64).saturating_mul(window as u64),
        };
        PlaneIo { in_len: self.in_len, out_len: self.out_len, items: self.n * self.c_out / self.per_item, flops }
    }

    /// Bytes of the per-axis tables (charged to the compile-time budget).
    pub(crate) fn table_bytes(&self) -> usize {
        let v = |n: usize, per: usize| n.saturating_mul(per);
        match &self.op {
            PlaneOp::MaxPool { rows, cols, plan } => v(rows.taps.len() + cols.taps.len() + 3 * plan.len(), 16),
            PlaneOp::AvgPool { rows, cols, plan, .. } => v(rows.taps.len() + cols.taps.len() + 3 * plan.len(), 20),
            PlaneOp::Gather { rows, cols, .. } => v(rows.len(), 16) + cols.table_bytes(),
            PlaneOp::Bilinear { rows, cols } => {
                v(rows.len(), 24) + cols.iter().map(rows::LerpMap::table_bytes).sum::<usize>()
            }
            PlaneOp::Shuffle { .. } => 0,
            PlaneOp::Normalize { weight, bias, .. } => {
                v(weight.as_ref().map_or(0, Vec::len) + bias.as_ref().map_or(0, Vec::len), 4)
            }
            PlaneOp::DepthwiseRows(d) => d.table_bytes(),
            PlaneOp::Col2Im(c) => c.table_bytes(),
            PlaneOp::Gemm(g) => g.table_bytes(),
        }
    }

    /// The output shape `[n, c, h, w]`.
    pub(crate) fn out_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.out_hw[0], self.out_hw[1]]
    }

    /// Computes work items `start..` (output planes, or groups of
    /// `per_item` planes) into `out`, which holds exactly those items:
    /// the same code compiled for AVX-512 or AVX2 when the CPU has it
    /// (two or four times the vector width for the row loops), else for
    /// the baseline ISA.
    fn run(&self, x: &[f32], out: &mut [f32], start: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::microkernel::{has_avx2, has_avx512};
            if has_avx512() && has_avx2() {
                // SAFETY: AVX-512F, AVX2 and FMA were just detected.
                return unsafe { self.run_avx512(x, out, start) };
            }
            if has_avx2() {
                // SAFETY: AVX2 and FMA were just detected.
                return unsafe { self.run_avx2(x, out, start) };
            }
        }
        self.run_generic(x, out, start)
    }

    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_avx512(&self, x: &[f32], out: &mut [f32], start: usize) {
        self.run_generic(x, out, start)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, x: &[f32], out: &mut [f32], start: usize) {
        self.run_generic(x, out, start)
    }

    #[inline(always)]
    fn run_generic(&self, x: &[f32], out: &mut [f32], start: usize) {
        let [ih, iw] = self.in_hw;
        let [oh, ow] = self.out_hw;
        let (ip, op) = (ih * iw, oh * ow);
        if let PlaneOp::Gemm(g) = &self.op {
            // Register tiles span several planes of a work range.
            g.planes(x, out, start);
            return;
        }
        if let PlaneOp::Normalize { eps, weight, bias } = &self.op {
            // Same layout in and out: item `q` is the floats `q·len ..`.
            let len = op * self.per_item;
            for (k, o) in out.chunks_exact_mut(len).enumerate() {
                let q = start + k;
                let src = &x[q * len..][..len];
                // Two passes (mean, then squared deviations from it): the
                // stable form, with f32 partial sums that vectorize.
                let mean = rows::sum_f64(src, |v| v) / len as f64;
                let m = mean as f32;
                // Deviations in f32 from the rounded mean, corrected by the
                // rounding's own contribution (len·(mean − m)²).
                let shift = mean - f64::from(m);
                let sq = rows::sum_f64(src, |v| (v - m) * (v - m)) - len as f64 * shift * shift;
                let inv = 1.0 / (sq.max(0.0) / len as f64 + eps).sqrt();
                for (p, (oc, sc)) in o.chunks_exact_mut(op).zip(src.chunks_exact(op)).enumerate() {
                    let c = (q * self.per_item + p) % self.c_out;
                    let g = weight.as_ref().map_or(1.0, |w| f64::from(w[c]));
                    let scale = (g * inv) as f32;
                    let b = bias.as_ref().map_or(0.0, |b| b[c]);
                    for (y, &v) in oc.iter_mut().zip(sc) {
                        *y = (v - m) * scale + b;
                    }
                }
            }
            return;
        }
        for (k, o) in out.chunks_exact_mut(op).enumerate() {
            let q = start + k;
            let (b, co) = (q / self.c_out, q % self.c_out);
            match &self.op {
                PlaneOp::Shuffle { r, direction } => {
                    let r = *r;
                    match direction {
                        ShuffleDirection::Shuffle => {
                            // Output plane `co` interleaves input planes co·r² .. (co+1)·r²:
                            // output row y·r + i interleaves row y of planes (i, 0..r).
                            let planes = &x[(b * self.c_in + co * r * r) * ip..][..r * r * ip];
                            let mut srcs: [&[f32]; 8] = [&[]; 8];
                            for y in 0..ih {
                                for i in 0..r {
                                    let row = &mut o[(y * r + i) * ow..][..ow];
                                    if r <= 8 {
                                        for (j, s) in srcs.iter_mut().take(r).enumerate() {
                                            *s = &planes[(i * r + j) * ip + y * iw..][..iw];
                                        }
                                        rows::interleave(&srcs[..r], row);
                                    } else {
                                        for j in 0..r {
                                            let s = &planes[(i * r + j) * ip + y * iw..][..iw];
                                            for (v, &u) in row[j..].iter_mut().step_by(r).zip(s) {
                                                *v = u;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        ShuffleDirection::Unshuffle => {
                            let (ci, rest) = (co / (r * r), co % (r * r));
                            let (i, j) = (rest / r, rest % r);
                            let src = &x[(b * self.c_in + ci) * ip..][..ip];
                            for y in 0..oh {
                                let srow = &src[(y * r + i) * iw..][..iw];
                                for (v, c) in o[y * ow..][..ow].iter_mut().zip(srow.chunks_exact(r)) {
                                    *v = c[j];
                                }
                            }
                        }
                    }
                }
                PlaneOp::DepthwiseRows(d) => d.plane(x, b, co, o),
                PlaneOp::Col2Im(c) => c.plane(x, b, co, o),
                // (Computed for the whole range above; one plane is the same.)
                PlaneOp::Gemm(g) => g.planes(x, o, q),
                plane_local => {
                    let src = &x[(b * self.c_in + co) * ip..][..ip];
                    Self::plane(plane_local, src, iw, o, ow);
                }
            }
        }
    }

    /// One plane of a plane-local op.
    #[inline(always)]
    fn plane(op: &PlaneOp, src: &[f32], iw: usize, o: &mut [f32], ow: usize) {
        match op {
            PlaneOp::MaxPool { rows, cols, plan } => {
                let mut tmp = [0.0f32; rows::TMP];
                for (y, &(r0, rc)) in rows.taps.iter().enumerate() {
                    let row = &mut o[y * ow..][..ow];
                    rows::pool_row(Reduce::Max, src, iw, (r0, rc, rows.step), cols, plan, row, &mut tmp);
                }
            }
            PlaneOp::AvgPool { rows, cols, plan, div_rows, div_cols, constant } => {
                let mut tmp = [0.0f32; rows::TMP];
                for (y, (&(r0, rc), &dy)) in rows.taps.iter().zip(div_rows).enumerate() {
                    let row = &mut o[y * ow..][..ow];
                    rows::pool_row(Reduce::Sum, src, iw, (r0, rc, 1), cols, plan, row, &mut tmp);
                    match constant {
                        Some(c) => row.iter_mut().for_each(|v| *v /= c),
                        None => row.iter_mut().zip(div_cols).for_each(|(v, &dx)| *v /= dy * dx),
                    }
                }
            }
            PlaneOp::Gather { rows, cols, fill } => {
                for (y, sy) in rows.iter().enumerate() {
                    let (done, rest) = o.split_at_mut(y * ow);
                    let row = &mut rest[..ow];
                    if y > 0 && rows[y - 1] == *sy {
                        // A repeated source row (nearest upsampling): the
                        // previous output row again.
                        row.copy_from_slice(&done[(y - 1) * ow..]);
                        continue;
                    }
                    match sy {
                        None => row.fill(*fill),
                        Some(sy) => cols.apply(&src[sy * iw..][..iw], row, *fill),
                    }
                }
            }
            PlaneOp::Bilinear { rows, cols } => {
                // Separable, in PyTorch's order: h0·(w0·a + w1·b) + h1·(w0·c + w1·d),
                // the horizontal interpolation of each source row computed once
                // per column chunk and kept in one of two slots.
                let mut slots = [[0.0f32; rows::TMP]; 2];
                let mut scratch = [0.0f32; rows::TMP];
                for (chunk, map) in cols.iter().enumerate() {
                    let (x0, w) = (chunk * rows::TMP, map.len());
                    let mut keys = [usize::MAX; 2];
                    for (y, &(y0, y1, a0, a1)) in rows.iter().enumerate() {
                        for need in [y0, y1] {
                            if !keys.contains(&need) {
                                // Replace the slot the other row of this pair does not use.
                                let other = if need == y0 { y1 } else { y0 };
                                let s = if keys[0] == other { 1 } else { 0 };
                                map.apply(&src[need * iw..][..iw], &mut slots[s][..w], &mut scratch);
                                keys[s] = need;
                            }
                        }
                        let s0 = if keys[0] == y0 { 0 } else { 1 };
                        let s1 = if keys[0] == y1 { 0 } else { 1 };
                        let (t0, t1) = (&slots[s0][..w], &slots[s1][..w]);
                        let row = &mut o[y * ow + x0..][..w];
                        for (v, (&p, &q)) in row.iter_mut().zip(t0.iter().zip(t1)) {
                            *v = a0 * p + a1 * q;
                        }
                    }
                }
            }
            // Handled by `run` (they need the channel or whole groups).
            PlaneOp::Shuffle { .. }
            | PlaneOp::Normalize { .. }
            | PlaneOp::DepthwiseRows(_)
            | PlaneOp::Col2Im(_)
            | PlaneOp::Gemm(_) => {}
        }
    }
}

/// Entry called from generated code: runs output planes `start..end`.
///
/// # Safety
/// `k` points to a live [`PlaneKernel`]; `x` is valid for reads of its
/// `in_len` floats and `out` for writes of its `out_len` floats, the two do
/// not overlap, and `start ≤ end ≤` its work items (the library checks the
/// range before calling the generated function). Concurrent calls must use
/// disjoint ranges: each writes only its own planes.
pub(crate) unsafe extern "C" fn plane_entry(
    k: *const PlaneKernel,
    x: *const f32,
    out: *mut f32,
    start: usize,
    end: usize,
) {
    // SAFETY: the caller passes the library-owned kernel.
    let k = unsafe { &*k };
    let plane = k.out_hw[0] * k.out_hw[1] * k.per_item;
    let items = k.n * k.c_out / k.per_item;
    let (start, end) = (start.min(items), end.min(items));
    if start >= end {
        return;
    }
    // SAFETY: `x` holds `in_len` floats and is only read; the output range
    // `[start·plane, end·plane)` lies inside `out_len = items·plane` floats
    // and is written by this call alone.
    let (x, out) = unsafe {
        (
            std::slice::from_raw_parts(x, k.in_len),
            std::slice::from_raw_parts_mut(out.add(start * plane), (end - start) * plane),
        )
    };
    k.run(x, out, start);
    if let Some(tail) = &k.tail {
        tail.apply(out, start * plane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &PlaneKernel, x: &[f32]) -> Vec<f32> {
        let mut out = vec![f32::NAN; k.out_len];
        k.run(x, &mut out, 0);
        out
    }

    #[test]
    fn shuffle_and_unshuffle_are_inverse() {
        let x: Vec<f32> = (0..2 * 8 * 3 * 5).map(|v| v as f32).collect();
        let s = PlaneKernel::shuffle(2, 8, [3, 5], 2, ShuffleDirection::Shuffle).unwrap();
        assert_eq!(s.out_shape(), [2, 2, 6, 10]);
        let y = run(&s, &x);
        let u = PlaneKernel::shuffle(2, 2, [6, 10], 2, ShuffleDirection::Unshuffle).unwrap();
        assert_eq!(run(&u, &y), x);
        // out[0, 0, 0, 1] = in[0, 1, 0, 0] (channel i·r + j = 0·2 + 1).
        assert_eq!(y[1], x[15]);
    }

    #[test]
    fn group_norm_normalizes_each_group() {
        // Two groups of two channels, one pixel each: [1, 3] and [10, 30].
        let k = PlaneKernel::group_norm(1, 4, 1, 2, 0.0, None, Some(vec![0.0, 0.0, 5.0, 5.0])).unwrap();
        assert_eq!(k.io().items, 2);
        let y = run(&k, &[1.0, 3.0, 10.0, 30.0]);
        assert_eq!(y, [-1.0, 1.0, 4.0, 6.0]);
    }

    #[test]
    fn pads_fill_mirror_and_clamp() {
        let x = [1.0f32, 2.0, 3.0];
        let pad = Sides { left: 2, right: 1, top: 0, bottom: 0 };
        let run_mode = |m| run(&PlaneKernel::pad(1, 1, [1, 3], pad, m).unwrap(), &x);
        assert_eq!(run_mode(PadMode::Reflect), [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
        assert_eq!(run_mode(PadMode::Replicate), [1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(run_mode(PadMode::Constant { value: -1.0 }), [-1.0, -1.0, 1.0, 2.0, 3.0, -1.0]);
    }

    #[test]
    fn entry_clamps_its_range_and_writes_only_it() {
        let k = PlaneKernel::pad(1, 3, [1, 1], Sides::all(0), PadMode::Zero).unwrap();
        let x = [1.0f32, 2.0, 3.0];
        let mut out = [0.0f32; 3];
        // SAFETY: buffers of the kernel's lengths; the range is clamped.
        unsafe { plane_entry(&k, x.as_ptr(), out.as_mut_ptr(), 1, 9) };
        assert_eq!(out, [0.0, 2.0, 3.0]);
    }
}
