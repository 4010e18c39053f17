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
    /// The worker threads could not be started.
    #[error("cannot start {threads} worker threads: {source}")]
    Threads {
        /// Threads requested.
        threads: usize,
        /// What the OS said.
        source: std::io::Error,
    },
}
