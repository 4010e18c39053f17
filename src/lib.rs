//! Kiln: a graph compiler and JIT runtime for convolutional decoders.
//!
//! Build a model with PyTorch-style lazy modules ([`GraphBuilder`] or the JSON
//! model format, [`parse_model`]), let the shape-propagation pass resolve every
//! lazy node into a concrete op with materialized weights ([`resolve`]), then
//! run it with the reference interpreter or JIT-compile it with Cranelift.
//!
//! This crate is the facade: it re-exports the workspace crates and wraps
//! their errors into one [`Error`].
//!
//! ```
//! use kiln::{ConvTranspose2dParams, GraphBuilder, ParamSource};
//!
//! let mut b = GraphBuilder::new("decoder");
//! let x = b.input("x", [3, 48, 5, 6])?;
//! let h = b.lazy_conv_transpose2d("up1", x,
//!     ConvTranspose2dParams::new(24, 3).stride(2).padding(1).output_padding(1))?;
//! let h = b.leaky_relu("act1", h, 0.2)?;
//! b.lazy_conv_transpose2d("up2", h,
//!     ConvTranspose2dParams::new(12, 3).stride(2).padding(1).output_padding(1).groups(3))?;
//! let lazy = b.finish()?;
//! let resolved = kiln::resolve(lazy, ParamSource::Init { seed: 0 })?;
//! assert!(resolved.to_string().contains(
//!     "%up1 = conv_transpose2d(%x, %up1.weight: f32[48, 24, 3, 3], %up1.bias: f32[24]) in_channels=48"));
//! assert!(resolved.to_string().contains("groups=3 : f32[3, 12, 20, 24]"));
//! # Ok::<(), kiln::Error>(())
//! ```

// Errors carry the node name and the offending values; they are cold paths,
// so their size does not matter and boxing would only obscure them.
#![allow(clippy::result_large_err)]

use std::path::Path;

pub mod bench;

pub use kiln_ir as ir;
pub use kiln_jit as jit;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

pub use kiln_ir::{
    parse_model, BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Dim, Graph, GraphBuilder, IrError, Op, Shape,
};
pub use kiln_passes::{ParamSource, PassError};
pub use kiln_runtime::{RuntimeError, Tensor, WeightStore};

/// Any error Kiln reports, from any stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building or parsing the graph.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// Shape inference, the lazy rewrite or parameter loading.
    #[error(transparent)]
    Pass(#[from] PassError),
    /// Loading weights or running a graph.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// JIT compilation.
    #[error(transparent)]
    Compile(#[from] kiln_jit::CompileError),
    /// A backend failed to prepare (compile) a graph.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// A command-line argument that does not fit the model.
    #[error("{0}")]
    Usage(String),
    /// The model's tensors would need more memory than allowed.
    #[error("model refused: its tensors need {} MiB, over the limit of {} MiB", bytes / (1 << 20), limit / (1 << 20))]
    TooLarge {
        /// Bytes needed by parameters and values together.
        bytes: u128,
        /// The limit.
        limit: u128,
    },
    /// Reading a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the model's configuration or the data given to it is at fault.
    pub fn kind(&self) -> ir::ErrorKind {
        match self {
            Error::Ir(e) => e.kind(),
            Error::Pass(e) => e.kind(),
            Error::Runtime(e) => e.kind(),
            Error::Io { .. } | Error::TooLarge { .. } | Error::Usage(_) | Error::Backend(_) | Error::Compile(_) => {
                ir::ErrorKind::InvalidInput
            }
        }
    }
}

/// Reads a model file in Kiln's JSON model format.
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph, Error> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    Ok(parse_model(&text)?)
}

/// Reads a safetensors state dict (PyTorch's key names) as a parameter source.
pub fn load_weights(path: impl AsRef<Path>) -> Result<ParamSource, Error> {
    Ok(ParamSource::StateDict(WeightStore::load(path)?.into_tensors()))
}

/// Resolves `graph` (see [`resolve`]) and JIT-compiles it with default
/// options: the whole pipeline in one call.
pub fn compile(graph: Graph, source: ParamSource) -> Result<jit::CompiledGraph, Error> {
    Ok(jit::compile(&resolve(graph, source)?)?)
}

/// Runs the standard pipeline (shape inference, lazy→concrete rewrite with
/// parameters from `source`, verification) and returns the resolved graph.
pub fn resolve(mut graph: Graph, source: ParamSource) -> Result<Graph, Error> {
    passes::resolve(&mut graph, source)?;
    Ok(graph)
}
