//! `kiln-passes`: graph-to-graph passes.
//!
//! [`ShapeInference`] gives every value a fully known shape (PyTorch's rules,
//! checked arithmetic); [`ResolveLazy`] rewrites lazy ops into concrete ones
//! and materializes their parameters; [`verify`] states what a resolved graph
//! guarantees. [`PassManager`] runs pipelines and can record the IR after each
//! pass. [`resolve`] is the standard pipeline. This crate runs no tensors.

// No `unsafe` in this crate: the JIT is the only place raw memory is trusted.
#![forbid(unsafe_code)]
// Errors carry the node name and the offending values; they are cold paths,
// so their size does not matter and boxing would only obscure them.
#![allow(clippy::result_large_err)]

mod error;
mod footprint;
pub mod init;
mod pass;
mod resolve;
mod shape_fns;
mod shape_inference;
mod spatial_shapes;
mod verify;

pub use error::{PassError, Result};
pub use footprint::{flops, footprint, Footprint};
pub use pass::{Changed, Pass, PassManager, PassRecord};
pub use resolve::{ParamSource, ResolveLazy, UnexpectedKey};
pub use shape_fns::{conv_transpose_size, conv_transpose_size_per_side, ConvTransposeShape};
pub use shape_inference::{infer_node, ShapeInference};
pub use verify::{verify, Verify};

/// The pure shape functions, one per op.
pub mod shapes {
    pub use crate::shape_fns::{add, batch_norm2d, broadcast, check_element_count, concat, conv2d, conv_transpose2d};
}

use kiln_ir::Graph;

/// The standard pipeline: shape inference, lazy resolution, verification.
pub fn pipeline(source: ParamSource) -> PassManager {
    PassManager::new().then(ShapeInference).then(ResolveLazy::new(source)).then(Verify)
}

/// Resolves `graph` in place with the standard pipeline.
pub fn resolve(graph: &mut Graph, source: ParamSource) -> Result<()> {
    pipeline(source).run(graph).map(|_| ())
}
