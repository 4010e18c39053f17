//! Kiln: a graph compiler and JIT runtime for convolutional decoders.
//!
//! Build a model with PyTorch-style lazy modules ([`GraphBuilder`] or the JSON
//! model format, [`parse_model`]), let the shape-propagation pass resolve every
//! lazy node into a concrete op with materialized weights, then run it with the
//! reference interpreter or JIT-compile it with Cranelift.
//!
//! This crate is the facade: it re-exports the workspace crates.

pub use kiln_ir as ir;
pub use kiln_jit as jit;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

pub use kiln_ir::{
    parse_model, BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Dim, Graph, GraphBuilder, IrError, Op, Shape,
};
