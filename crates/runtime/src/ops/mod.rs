//! Reference implementations of every op of a resolved graph, one function per
//! op over [`Tensor`]s: the oracle the JIT is tested against.
//!
//! Written for obviousness, not speed: plain nested loops over 4-D views in
//! the order of PyTorch's definitions (the transposed convolution is the
//! scatter form of `reference/pytorch-semantics.md` §4), accumulating in f64
//! and rounding to f32 once per output element. Every function checks the
//! shapes it indexes with and returns [`RuntimeError`] instead of panicking;
//! `node` only names the caller's node in those errors. Inputs may have any
//! memory layout; outputs are C-contiguous. Rank-3 inputs are unbatched
//! `[C, H, W]` and give rank-3 outputs, as in PyTorch.
//!
//! These functions do not look at graphs; [`crate::Interpreter`] maps nodes to
//! them and checks every result against the node's declared shape.

mod batch_norm;
mod conv;
mod conv_transpose;
mod dense;
mod elementwise;
mod norm;
mod pointwise;
mod spatial;

pub use batch_norm::{batch_norm1d, batch_norm2d, BatchNormParams};
pub use conv::{conv2d, conv2d_output_hw};
pub use conv_transpose::{conv_transpose2d, conv_transpose2d_output_hw};
pub use dense::{cat, flatten, linear, narrow, reshape_to, unflatten};
pub use elementwise::{add, arith, concat, leaky_relu, relu, scalar, sigmoid, tanh};
pub use norm::{group_norm, instance_norm2d};
pub use pointwise::{pointwise, prelu};
pub use spatial::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, pad2d, pixel_shuffle, upsample};

use ndarray::{Array4, ArrayView4, Axis, Ix4};

use crate::error::{fmt_shape, Result, RuntimeError};
use crate::tensor::{checked_len, Tensor};

/// `x` as a 4-D view plus whether it was batched: rank 4 as is, rank 3
/// (unbatched) with a batch axis of 1 in front. Other ranks are an error
/// naming the op's expectation.
pub(crate) fn as_nchw<'a>(node: &str, op: &'static str, x: &'a Tensor) -> Result<(ArrayView4<'a, f32>, bool)> {
    let batched = match x.ndim() {
        4 => true,
        3 => false,
        _ => {
            return Err(bad(
                node,
                op,
                format!("expects a 3-D (unbatched) or 4-D (batched) input, got shape {}", fmt_shape(x.shape())),
            ))
        }
    };
    let view = if batched { x.view() } else { x.view().insert_axis(Axis(0)) };
    let view =
        view.into_dimensionality::<Ix4>().map_err(|e| bad(node, op, format!("cannot view input as 4-D: {e}")))?;
    Ok((view, batched))
}

/// A zero-filled f64 accumulator of `shape`, or an error (instead of an abort)
/// when the element count overflows or the memory cannot be reserved.
pub(crate) fn accumulator(node: &str, shape: [usize; 4]) -> Result<Array4<f64>> {
    let too_large = || RuntimeError::TooLarge { node: node.into(), shape: fmt_shape(&shape) };
    let len = checked_len(&shape).filter(|&n| n <= isize::MAX as usize / 8).ok_or_else(too_large)?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| too_large())?;
    data.resize(len, 0.0f64);
    Array4::from_shape_vec(shape, data).map_err(|_| too_large())
}

/// Rounds an accumulator to f32 and drops the batch axis again for unbatched input.
pub(crate) fn finish(acc: Array4<f64>, batched: bool) -> Tensor {
    let out = acc.mapv(|v| v as f32).into_dyn();
    if batched {
        out
    } else {
        out.index_axis_move(Axis(0), 0)
    }
}

/// Checks that parameter `param` has exactly `expected` shape.
pub(crate) fn check_param(
    node: &str,
    op: &'static str,
    param: &'static str,
    t: &Tensor,
    expected: &[usize],
) -> Result<()> {
    if t.shape() == expected {
        Ok(())
    } else {
        Err(RuntimeError::ParamShape {
            node: node.into(),
            op,
            param,
            expected: fmt_shape(expected),
            got: fmt_shape(t.shape()),
        })
    }
}

/// A [`RuntimeError::BadOperand`].
pub(crate) fn bad(node: &str, op: &'static str, reason: String) -> RuntimeError {
    RuntimeError::BadOperand { node: node.into(), op, reason }
}

/// A convolution's input must have `in_channels` channels, divisible by `groups`.
pub(crate) fn check_in_channels(
    node: &str,
    op: &'static str,
    shape: &[usize],
    channels: usize,
    in_channels: usize,
    groups: usize,
) -> Result<()> {
    if channels != in_channels {
        return Err(bad(
            node,
            op,
            format!("expects {in_channels} input channels, got input of shape {}", fmt_shape(shape)),
        ));
    }
    if groups == 0 || !in_channels.is_multiple_of(groups) {
        return Err(bad(node, op, format!("in_channels={in_channels} is not divisible by groups={groups}")));
    }
    Ok(())
}

/// A bias is given exactly when the layer has one, with `out_channels` values.
pub(crate) fn check_bias(
    node: &str,
    op: &'static str,
    has_bias: bool,
    bias: Option<&Tensor>,
    out_channels: usize,
) -> Result<()> {
    match (has_bias, bias) {
        (true, Some(b)) => check_param(node, op, "bias", b, &[out_channels]),
        (false, None) => Ok(()),
        (true, None) => Err(RuntimeError::MissingParam {
            node: node.into(),
            op,
            param: "bias",
            expected: fmt_shape(&[out_channels]),
        }),
        (false, Some(_)) => Err(bad(node, op, "a bias was given but the layer has bias=false".into())),
    }
}
