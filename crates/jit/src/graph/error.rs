//! Errors from compiling a graph (as opposed to building a single kernel).

use thiserror::Error;

use crate::error::JitError;

/// Why a graph could not be compiled.
#[derive(Debug, Error)]
pub enum CompileError {
    /// The graph is not fully resolved (a lazy node, an unknown dim, a missing
    /// parameter): run the passes first.
    #[error("cannot JIT-compile: node `{node}` {reason}; resolve the graph first (kiln::resolve)")]
    Unresolved {
        /// Node name.
        node: String,
        /// What is still open.
        reason: String,
    },
    /// The graph itself is malformed.
    #[error(transparent)]
    Graph(#[from] kiln_ir::IrError),
    /// A kernel could not be built for a node.
    #[error("node `{node}`: {source}")]
    Kernel {
        /// Node name (fused nodes joined by `+`).
        node: String,
        /// The kernel library's error.
        source: JitError,
    },
    /// A node's stored shape does not fit the op (e.g. a rank the kernels do not take).
    #[error("cannot JIT-compile: node `{node}` {reason}")]
    Shape {
        /// Node name.
        node: String,
        /// What is wrong, with the shape.
        reason: String,
    },
    /// A kernel sized from a node's attributes and shape does not match the
    /// buffers planned from its operands' shapes: the graph's stored shapes
    /// are inconsistent (edited by hand or read from a corrupted file).
    #[error(
        "cannot JIT-compile: node `{node}`: its kernel needs {kernel} floats for {which} but the buffer planned from \
         the graph's shapes holds {buffer}; the stored shapes are inconsistent (run shape inference again)"
    )]
    BufferMismatch {
        /// Node names of the step (`+`-joined when fused).
        node: String,
        /// `input N` or `output`.
        which: String,
        /// Floats the kernel reads or writes.
        kernel: usize,
        /// Floats in the planned buffer.
        buffer: usize,
    },
    /// A plan failed the verifier, or code generation broke an internal
    /// invariant: a bug in Kiln, not in the model.
    #[error(
        "internal compiler error at node `{node}`: {reason} (this is a bug in Kiln; please report it with the model)"
    )]
    Internal {
        /// Node names of the step.
        node: String,
        /// What was violated.
        reason: String,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} worker threads: {source}")]
    Threads {
        /// Threads requested.
        threads: usize,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl CompileError {
    /// Whose fault it is: the model's (configuration), the data's (input),
    /// or Kiln's own (an internal invariant broke).
    pub fn kind(&self) -> kiln_ir::ErrorKind {
        use kiln_ir::ErrorKind;
        match self {
            CompileError::Graph(e) => e.kind(),
            CompileError::Unresolved { .. } | CompileError::Shape { .. } | CompileError::BufferMismatch { .. } => {
                ErrorKind::InvalidConfiguration
            }
            CompileError::Kernel { source, .. } => source.kind(),
            CompileError::Threads { .. } => ErrorKind::InvalidInput,
            CompileError::Internal { .. } => ErrorKind::Internal,
        }
    }
}
