//! `kiln-ir`: Kiln's intermediate representation.
//!
//! A model is a [`Graph`] of [`Op`] nodes on a `petgraph` `StableDiGraph`. Lazy
//! nodes (`LazyConvTranspose2d`, ...) carry no `in_channels` and an unknown
//! result [`Shape`]; the shape-propagation pass in `kiln-passes` resolves them.
//! This crate holds the data model, the PyTorch-like [`GraphBuilder`], the
//! construction-time validation PyTorch does (and a little more), the lossless
//! JSON form ([`Graph::to_json`]), the hand-writable model format
//! ([`parse_model`], written back by [`model::to_model_json`]) and the text
//! form (`Display`). It does no shape arithmetic
//! and runs nothing.

// No `unsafe` in this crate: the JIT is the only place raw memory is trusted.
#![forbid(unsafe_code)]
mod builder;
mod display;
mod dot;
mod error;
mod graph;
pub mod model;
mod op;
mod pointwise;
pub mod reshape;
pub mod rng;
mod serde_repr;
mod shape;
mod spatial;

pub use builder::GraphBuilder;
pub use error::{ErrorKind, IrError, Result};
pub use graph::{check_binding, check_name, Graph, Node, NodeId, RESERVED_PREFIX};
pub use model::{model_from_value, parse_model};
pub use op::{
    ArithOp, Arity, BatchNorm2dParams, Conv2dParams, ConvPadding, ConvTranspose2dParams, InstanceNormParams,
    LinearParams, Op, PaddingMode, Pair2,
};
pub use pointwise::{ArgValue, GeluApproximate, Pointwise, SELU_ALPHA, SELU_SCALE};
pub use shape::{Dim, Shape};
pub use spatial::{
    linear_source, nearest_source, pool_axis, AvgDivisor, PadMode, Pool2dParams, ShuffleDirection, Sides,
    UpsampleClass, UpsampleMode, UpsampleParams, UpsampleSize,
};

/// Re-exported so users build parameter tensors with the same `ndarray`.
pub use ndarray;
