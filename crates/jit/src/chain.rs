//! Elementwise regions (chains of unary ops, and DAGs of them with
//! same-shape binary ops) fused into one pass over memory.
//!
//! A decoder applies several elementwise ops in a row more often than one:
//! `InstanceNorm2d → ReLU`, `GroupNorm → SiLU`, `Add → PReLU`,
//! `BatchNorm → Mish`, `Mul(0.1) → Hardtanh`. Each op alone is memory-bound,
//! so running them one kernel after another reads and writes the tensor once
//! per op. A [`Tail`] applies the whole chain to a block while it is in L1:
//! it runs after a plane kernel (pooling, padding, normalization), a
//! broadcasting binary kernel, or on its own as a [`ChainKernel`] (copy in,
//! chain, out), so a chain of any length costs one pass.
//!
//! Every op computes what the standalone kernels compute (the vectorized
//! transcendentals of [`crate::vmath`], [`Activation::apply`] for the
//! piecewise-linear ones, `x·scale + shift`), so a fused chain gives the
//! floats of the unfused kernels.
//!
//! Safety as in `plane.rs`: lengths are checked when the kernel is built,
//! the library compares them with the planned buffers, and [`chain_entry`]
//! builds slices of exactly those lengths.

use kiln_ir::{ArithOp, Pointwise};

use crate::epilogue::Activation;
use crate::error::JitError;
use crate::vmath::{self, Block};

/// Floats a tail processes per block: every op of the chain runs over one
/// block (16 KiB, inside L1) before the next block is touched.
const BLOCK: usize = 4096;

/// Floats per work item of a standalone [`ChainKernel`] (about 64 KiB).
const ITEM_FLOATS: usize = 16 * 1024;

/// One unary elementwise op of a chain.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UnaryOp {
    /// An epilogue activation.
    Activation(Activation),
    /// A parameterized activation.
    Pointwise(Pointwise),
    /// `x·scale[c] + shift[c]` (eval BatchNorm, InstanceNorm with running
    /// statistics, a scalar `Mul`/`Add`/`Sub` with one channel).
    Affine { scale: Vec<f32>, shift: Vec<f32>, inner: usize },
    /// `x` if `x ≥ 0` else `weight[c]·x`.
    PRelu { weight: Vec<f32>, inner: usize },
    /// A bilinear resize to the same size: PyTorch's `1·(1·x + 0·x) +
    /// 0·(1·x + 0·x)`, which is `x` for finite `x` and NaN for ±inf
    /// (`0·inf`), computed as `x + 0·x`.
    SameSizeBilinear,
}

impl UnaryOp {
    /// Channels and floats per channel run of a per-channel op.
    fn layout(&self) -> Option<(usize, usize)> {
        match self {
            UnaryOp::Affine { scale, inner, .. } => Some((scale.len(), *inner)),
            UnaryOp::PRelu { weight, inner } => Some((weight.len(), *inner)),
            UnaryOp::Activation(_) | UnaryOp::Pointwise(_) | UnaryOp::SameSizeBilinear => None,
        }
    }

    /// Applies the op to `block` (in place, or from a source of the same
    /// length), whose first float is element `first` of the tensor (which
    /// fixes the channel of each float).
    fn apply(&self, block: Block<'_>, first: usize) {
        match self {
            UnaryOp::Activation(Activation::Tanh) => vmath::map_tanh(block),
            UnaryOp::Activation(Activation::Sigmoid) => vmath::map_sigmoid(block),
            UnaryOp::Activation(a @ (Activation::Identity | Activation::Relu | Activation::LeakyRelu(_))) => {
                let a = *a;
                block.map(|v| a.apply(v));
            }
            UnaryOp::Pointwise(f) => vmath::map_pointwise(*f, block),
            UnaryOp::Affine { scale, shift, inner } => per_channel(block, first, *inner, scale.len(), |run, c| {
                let (s, t) = (scale[c], shift[c]);
                run.map(|v| v * s + t);
            }),
            UnaryOp::SameSizeBilinear => block.map(|v| v + 0.0 * v),
            UnaryOp::PRelu { weight, inner } => per_channel(block, first, *inner, weight.len(), |run, c| {
                let w = weight[c];
                run.map(|v| if v >= 0.0 { v } else { w * v });
            }),
        }
    }
}

/// Calls `f` on each run of `block` within one channel (`inner` floats per
/// channel, `channels` channels repeating).
fn per_channel(block: Block<'_>, first: usize, inner: usize, channels: usize, mut f: impl FnMut(Block<'_>, usize)) {
    let len = block.len();
    let mut block = block;
    let mut at = 0;
    while at < len {
        let g = first + at;
        let c = (g / inner) % channels;
        let run = (inner - g % inner).min(len - at);
        f(block.sub(at..at + run), c);
        at += run;
    }
}

/// Saved copies a [`Tail`] program may hold at once (each one block).
pub(crate) const MAX_SLOTS: usize = 4;

/// Floats per block of a program that saves values: its slots and the
/// block share L1 (5 × 4 KiB).
const SLOT_BLOCK: usize = 1024;

/// One step of a [`Tail`] program over the current value (the block).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TailOp {
    /// `current = op(current)`.
    Unary(UnaryOp),
    /// Slot `s` keeps a copy of the current value.
    Save(usize),
    /// The current value becomes a copy of slot `s`.
    Load(usize),
    /// `current = slot[s] op current` (`slot_first`) or `current op slot[s]`:
    /// the same-shape `Add`/`Sub`/`Mul` of two values of the region.
    Combine { op: ArithOp, slot: usize, slot_first: bool },
}

/// A fused elementwise region over a tensor of `len` floats: a chain of
/// unary ops, or a DAG of unary and same-shape binary ops whose leaves are
/// all the one value it starts from (`hardswish(x) + gelu(x) − sigmoid(x)`),
/// as a program over the block and up to [`MAX_SLOTS`] saved copies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tail {
    ops: Vec<TailOp>,
    len: usize,
    slots: usize,
}

impl Tail {
    /// A chain over a tensor of `len` floats; every per-channel op's
    /// channels × inner must divide `len` (its layout is `[outer, C, inner]`).
    #[cfg(test)]
    pub(crate) fn new(ops: Vec<UnaryOp>, len: usize) -> Result<Self, JitError> {
        Self::program(ops.into_iter().map(TailOp::Unary).collect(), len)
    }

    /// A program over a tensor of `len` floats. Slots must be below
    /// [`MAX_SLOTS`] and saved before they are read.
    pub(crate) fn program(ops: Vec<TailOp>, len: usize) -> Result<Self, JitError> {
        let mut saved = [false; MAX_SLOTS];
        for op in &ops {
            match op {
                TailOp::Unary(u) => {
                    if let Some((c, inner)) = u.layout() {
                        let run = c.checked_mul(inner).filter(|&r| r > 0);
                        if run.is_none_or(|r| !len.is_multiple_of(r)) {
                            return Err(JitError::geometry(
                                "chain",
                                format!("{c} channels of {inner} floats do not tile a tensor of {len}"),
                            ));
                        }
                    }
                }
                TailOp::Save(s) if *s < MAX_SLOTS => saved[*s] = true,
                TailOp::Load(s) | TailOp::Combine { slot: s, .. } if *s < MAX_SLOTS && saved[*s] => {}
                TailOp::Save(s) | TailOp::Load(s) | TailOp::Combine { slot: s, .. } => {
                    return Err(JitError::geometry(
                        "chain",
                        format!("slot {s} is out of range or read before it is saved"),
                    ));
                }
            }
        }
        let slots = saved.iter().rposition(|&b| b).map_or(0, |s| s + 1);
        Ok(Tail { ops, len, slots })
    }

    /// How many arithmetic steps the program has (unary and binary ops).
    pub(crate) fn op_count(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, TailOp::Unary(_) | TailOp::Combine { .. })).count()
    }

    /// Applies the program in place to `out`, floats `first ..` of the tensor.
    pub(crate) fn apply(&self, out: &mut [f32], first: usize) {
        self.run(out, None, first);
    }

    /// `out = program(src)` when `src` is given (the first unary op reads
    /// it directly), else in place; floats `first ..` of the tensor.
    fn run(&self, out: &mut [f32], src: Option<&[f32]>, first: usize) {
        // Only the slots the program uses are on the stack (and zeroed):
        // plane kernels call this once per work range.
        match self.slots {
            0 => self.run_blocks(BLOCK, out, src, first, &mut []),
            1 => self.with_slots::<1>(out, src, first),
            2 => self.with_slots::<2>(out, src, first),
            3 => self.with_slots::<3>(out, src, first),
            _ => self.with_slots::<MAX_SLOTS>(out, src, first),
        }
    }

    fn with_slots<const N: usize>(&self, out: &mut [f32], src: Option<&[f32]>, first: usize) {
        let mut slots = [[0.0f32; SLOT_BLOCK]; N];
        self.run_blocks(SLOT_BLOCK, out, src, first, &mut slots);
    }

    fn run_blocks(
        &self,
        block: usize,
        out: &mut [f32],
        src: Option<&[f32]>,
        first: usize,
        slots: &mut [[f32; SLOT_BLOCK]],
    ) {
        for (k, o) in out.chunks_mut(block).enumerate() {
            let at = first + k * block;
            let mut ops = self.ops.as_slice();
            if let Some(x) = src.map(|x| &x[k * block..][..o.len()]) {
                match ops.split_first() {
                    Some((TailOp::Unary(head), rest)) => {
                        head.apply(Block::Into(x, o), at);
                        ops = rest;
                    }
                    _ => o.copy_from_slice(x),
                }
            }
            let mut steps = ops.iter().peekable();
            while let Some(op) = steps.next() {
                match op {
                    TailOp::Unary(u) => u.apply(Block::InPlace(o), at),
                    TailOp::Save(s) => slots[*s][..o.len()].copy_from_slice(o),
                    TailOp::Load(s) => match steps.next_if(|n| matches!(n, TailOp::Unary(_))) {
                        // A load then a unary op: the op reads the slot.
                        Some(TailOp::Unary(u)) => u.apply(Block::Into(&slots[*s][..o.len()], o), at),
                        _ => o.copy_from_slice(&slots[*s][..o.len()]),
                    },
                    TailOp::Combine { op, slot, slot_first } => {
                        let saved = &slots[*slot][..o.len()];
                        // The binary kernel's f32 operations, so a fused
                        // region gives its floats.
                        match (op, slot_first) {
                            (ArithOp::Add, _) => o.iter_mut().zip(saved).for_each(|(v, s)| *v += *s),
                            (ArithOp::Mul, _) => o.iter_mut().zip(saved).for_each(|(v, s)| *v *= *s),
                            (ArithOp::Sub, true) => o.iter_mut().zip(saved).for_each(|(v, s)| *v = *s - *v),
                            (ArithOp::Sub, false) => o.iter_mut().zip(saved).for_each(|(v, s)| *v -= *s),
                        }
                    }
                }
            }
        }
    }

    /// Bytes of its per-channel tables (charged to the memory budget).
    pub(crate) fn table_bytes(&self) -> usize {
        self.ops
            .iter()
            .filter_map(|o| match o {
                TailOp::Unary(u) => u.layout(),
                TailOp::Save(_) | TailOp::Load(_) | TailOp::Combine { .. } => None,
            })
            .map(|(c, _)| 8 * c)
            .sum()
    }

    /// Floats of the tensor it applies to.
    pub(crate) fn tensor_len(&self) -> usize {
        self.len
    }
}

/// A standalone chain: `out = chain(x)`, in blocks.
#[derive(Debug)]
pub(crate) struct ChainKernel {
    tail: Tail,
}

impl ChainKernel {
    /// The kernel of `tail`.
    pub(crate) fn new(tail: Tail) -> Self {
        ChainKernel { tail }
    }

    /// `(floats in = floats out, work items, FLOPs)`.
    pub(crate) fn io(&self) -> (usize, usize, u64) {
        let len = self.tail.len;
        (len, len.div_ceil(ITEM_FLOATS), (len as u64).saturating_mul(self.tail.op_count() as u64))
    }

    /// Bytes of its tables.
    pub(crate) fn table_bytes(&self) -> usize {
        self.tail.table_bytes()
    }

    fn run(&self, x: &[f32], out: &mut [f32], first: usize) {
        // The first op reads `x` directly (a copy pass first would cost more
        // than the arithmetic of most ops), the rest work in place.
        self.tail.run(out, Some(x), first);
    }
}

/// Entry called from generated code: items `start..end` of [`ITEM_FLOATS`].
///
/// # Safety
/// `k` points to a live [`ChainKernel`]; `x` is valid for reads and `out`
/// for writes of its `len` floats, and the two do not overlap (the library
/// registers it as not in place); concurrent calls use disjoint ranges.
pub(crate) unsafe extern "C" fn chain_entry(
    k: *const ChainKernel,
    x: *const f32,
    out: *mut f32,
    start: usize,
    end: usize,
) {
    // SAFETY: the caller passes the library-owned kernel.
    let k = unsafe { &*k };
    let len = k.tail.len;
    let first = start.saturating_mul(ITEM_FLOATS).min(len);
    let last = end.saturating_mul(ITEM_FLOATS).min(len);
    if first >= last {
        return;
    }
    // SAFETY: `x` and `out` hold `len` floats (checked against the planned
    // buffers at compile time) and do not overlap; `[first, last)` belongs
    // to this call alone.
    let (x, out) = unsafe {
        (
            std::slice::from_raw_parts(x.add(first), last - first),
            std::slice::from_raw_parts_mut(out.add(first), last - first),
        )
    };
    k.run(x, out, first);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each op applied to the whole tensor in turn, the obvious way.
    fn unfused(ops: &[UnaryOp], x: &[f32]) -> Vec<f32> {
        let mut y = x.to_vec();
        for op in ops {
            for (i, v) in y.iter_mut().enumerate() {
                *v = match op {
                    UnaryOp::Activation(a) => a.apply(*v),
                    UnaryOp::Pointwise(f) => f.apply(*v),
                    UnaryOp::Affine { scale, shift, inner } => {
                        let c = (i / inner) % scale.len();
                        *v * scale[c] + shift[c]
                    }
                    UnaryOp::SameSizeBilinear => 1.0 * (1.0 * *v + 0.0 * *v) + 0.0 * (1.0 * *v + 0.0 * *v),
                    UnaryOp::PRelu { weight, inner } => {
                        let c = (i / inner) % weight.len();
                        if *v >= 0.0 {
                            *v
                        } else {
                            weight[c] * *v
                        }
                    }
                };
            }
        }
        y
    }

    #[test]
    fn a_same_size_bilinear_is_the_identity_but_for_infinities() {
        let x = [1.5f32, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -3.25e-40, f32::MAX];
        let mut y = x.to_vec();
        Tail::new(vec![UnaryOp::SameSizeBilinear], x.len()).unwrap().apply(&mut y, 0);
        for (a, b) in x.iter().zip(&y) {
            if a.is_finite() {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} -> {b}");
            } else {
                assert!(b.is_nan(), "{a} -> {b}");
            }
        }
    }

    #[test]
    fn a_fused_chain_equals_its_ops_one_after_another_at_every_offset() {
        // [2, 3, 1500]: channel runs that straddle the 4096-float blocks.
        let len = 2 * 3 * 1500;
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 201) as f32 / 50.0 - 2.0).collect();
        let ops = vec![
            UnaryOp::Affine { scale: vec![1.5, -0.5, 2.0], shift: vec![0.1, 0.2, -0.3], inner: 1500 },
            UnaryOp::PRelu { weight: vec![0.1, 0.2, 0.3], inner: 1500 },
            UnaryOp::Pointwise(Pointwise::Silu),
            UnaryOp::Activation(Activation::LeakyRelu(0.3)),
            UnaryOp::SameSizeBilinear,
            UnaryOp::Affine { scale: vec![0.5], shift: vec![1.0], inner: len },
        ];
        let want = unfused(&ops, &x);
        let tail = Tail::new(ops, len).unwrap();
        // The whole tensor, and split at arbitrary points (as work ranges split it).
        let close = |y: &[f32]| y.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0));
        let mut whole = x.clone();
        tail.apply(&mut whole, 0);
        assert!(close(&whole));
        for split in [0, 1, 1499, 1500, 4095, 4096, 5000, len] {
            let mut y = x.clone();
            let (a, b) = y.split_at_mut(split);
            tail.apply(a, 0);
            tail.apply(b, split);
            assert_eq!(y, whole, "split at {split}");
        }
        let k = ChainKernel::new(tail);
        let mut out = vec![f32::NAN; len];
        let items = k.io().1;
        for item in 0..items {
            // SAFETY: both buffers hold `len` floats and are disjoint.
            unsafe { chain_entry(&k, x.as_ptr(), out.as_mut_ptr(), item, item + 1) };
        }
        assert_eq!(out, whole);
    }

    #[test]
    fn a_layout_that_does_not_tile_the_tensor_is_refused() {
        let op = |inner| UnaryOp::PRelu { weight: vec![0.1; 3], inner };
        assert!(Tail::new(vec![op(4)], 24).is_ok());
        assert!(Tail::new(vec![op(5)], 24).is_err());
        assert!(Tail::new(vec![op(0)], 24).is_err());
        assert!(Tail::new(vec![UnaryOp::Affine { scale: vec![], shift: vec![], inner: 1 }], 24).is_err());
    }
}
