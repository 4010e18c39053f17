//! Serving any batch size from a few compiled ones.
//!
//! Every decoder op Kiln has computes each batch item on its own (eval-mode
//! norms use running or per-item statistics), and tensors are NCHW, so item
//! `i` of every value is one contiguous block at `i · per_item`. A graph in
//! which that holds for every value can run a batch of `n` as consecutive
//! chunks, each on the compiled version for the chunk's size, reading and
//! writing sub-slices of the caller's buffers in place. Chunks are powers of
//! two (`n = 37` runs 32, 4 and 1), so a stream of batch sizes up to 64
//! needs at most seven compiled versions per image size, which fit the
//! default cache of eight; compiling the exact size of every new batch
//! would instead miss the cache on most calls of a varied stream and pay a
//! full compile each time (the measurements are in the issue 15 note and
//! `kiln bench --batches`).
//!
//! Whether a graph qualifies is decided from its shapes at two batch sizes
//! plus the ops that name a dim: [`separable`].

use kiln_ir::{Graph, Op};
use kiln_passes::Pass;

/// Most items one chunk holds by default (the largest compiled batch).
pub const DEFAULT_MAX_CHUNK: usize = 64;

/// The chunk sizes a batch of `n` runs as, largest first: the powers of two
/// of `n`'s binary form, with every chunk at most `max_chunk` (rounded down
/// to a power of two).
pub(crate) fn chunks(n: usize, max_chunk: usize) -> impl Iterator<Item = usize> {
    let cap = if max_chunk == 0 { 1 } else { 1usize << (usize::BITS - 1 - max_chunk.leading_zeros()) };
    let full = n / cap;
    let rest = n % cap;
    let bits = (0..usize::BITS).rev().map(move |b| 1usize << b).filter(move |&c| c < cap && rest & c != 0);
    std::iter::repeat_n(cap, full).chain(bits)
}

/// Whether `op` treats the batch dim (dim 0) like every other item-wise op:
/// only ops that name a dim can touch it, and they must not name dim 0.
fn op_keeps_items_apart(op: &Op, rank: usize) -> bool {
    let names_dim0 = |dim: i64| {
        let r = rank as i64;
        dim == 0 || dim == -r
    };
    match op {
        Op::Cat { dim } => !names_dim0(*dim),
        Op::Narrow { dim, .. } => !names_dim0(*dim),
        Op::Flatten { start_dim, .. } => !names_dim0(*start_dim),
        Op::Unflatten { dim, .. } => !names_dim0(*dim),
        // A reshape keeps items apart exactly when every value keeps dim 0
        // equal to the batch and the rest fixed, which `separable` checks on
        // the shapes (C order: item i stays at i · per_item).
        Op::Reshape { .. } => true,
        Op::Input
        | Op::LazyConvTranspose2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::LazyConv2d { .. }
        | Op::Conv2d { .. }
        | Op::LazyBatchNorm2d { .. }
        | Op::BatchNorm2d { .. }
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Tanh
        | Op::Sigmoid
        | Op::Pointwise { .. }
        | Op::PRelu { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::Pad2d { .. }
        | Op::Upsample { .. }
        | Op::PixelShuffle { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Dropout2d { .. }
        | Op::LazyLinear { .. }
        | Op::Linear { .. }
        | Op::LazyBatchNorm1d { .. }
        | Op::BatchNorm1d { .. }
        | Op::LazyInstanceNorm2d { .. }
        | Op::InstanceNorm2d { .. }
        | Op::GroupNorm { .. }
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Scalar { .. }
        | Op::Concat
        | Op::Output => true,
    }
}

/// Whether `graph` (parameters not needed) can serve a batch as chunks,
/// given the other dims of its inputs (`rest[i]` = input `i`'s shape after
/// dim 0). It must: declare dim 0 of every input open, infer at batch 1 and
/// at batch 2 with every value's dim 0 equal to the batch and its other
/// dims equal between the two, and have no op that names dim 0.
pub(crate) fn separable(graph: &Graph, rest: &[&[usize]]) -> bool {
    let open_batch = graph
        .inputs()
        .iter()
        .all(|&i| graph.node(i).shape().dims().is_some_and(|d| d.first().is_some_and(|d0| d0.known().is_none())));
    if !open_batch || rest.len() != graph.inputs().len() {
        return false;
    }
    let at = |b: usize| -> Option<Graph> {
        let shapes: Vec<Vec<usize>> =
            rest.iter().map(|r| std::iter::once(b).chain(r.iter().copied()).collect()).collect();
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let mut g = graph.clone();
        g.bind_inputs(&refs).ok()?;
        kiln_passes::ShapeInference.run(&mut g).ok()?;
        Some(g)
    };
    let (Some(g1), Some(g2)) = (at(1), at(2)) else { return false };
    let all_apart = g1.node_ids().all(|id| {
        let (Some(s1), Some(s2)) = (g1.node(id).shape().as_known(), g2.node(id).shape().as_known()) else {
            return false;
        };
        let rank = s1.len();
        rank >= 1
            && s2.len() == rank
            && s1[0] == 1
            && s2[0] == 2
            && s1[1..] == s2[1..]
            && g1.operands(id).first().is_none_or(|&o| {
                let operand_rank = g1.node(o).shape().rank().unwrap_or(0);
                op_keeps_items_apart(g1.node(id).op(), operand_rank)
            })
    });
    all_apart
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_the_binary_form_capped() {
        let c = |n, m| chunks(n, m).collect::<Vec<_>>();
        assert_eq!(c(37, 64), [32, 4, 1]);
        assert_eq!(c(64, 64), [64]);
        assert_eq!(c(1, 64), [1]);
        assert_eq!(c(63, 64), [32, 16, 8, 4, 2, 1]);
        assert_eq!(c(200, 64), [64, 64, 64, 8]);
        assert_eq!(c(200, 100), [64, 64, 64, 8]);
        assert_eq!(c(5, 1), [1, 1, 1, 1, 1]);
        assert_eq!(c(0, 64), Vec::<usize>::new());
        for n in 0..300 {
            assert_eq!(c(n, 16).iter().sum::<usize>(), n);
        }
    }
}
