//! The runtime's one error type, [`RuntimeError`], for every fallible thing in
//! this crate: reading and writing weight and `.npy` files, validating a graph
//! before running it, checking inputs and evaluating ops.
//!
//! Every variant carries what a user needs to fix the problem without a
//! debugger: the file and key, or the node and parameter, and the offending
//! values next to the expected ones. [`RuntimeError::kind`] classifies errors
//! with the IR's [`ErrorKind`] so the facade can map all crates onto one
//! taxonomy. This module defines no behaviour beyond formatting.

use std::path::PathBuf;

use kiln_ir::IrError;
use thiserror::Error;

pub use kiln_ir::ErrorKind;

/// Formats a shape as `[2, 3, 4]` for messages.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Errors raised by the runtime: file formats, graph validation and execution.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    // ---- files -------------------------------------------------------------
    /// A file could not be read or written.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file whose bytes are not a valid safetensors file
    /// (truncated, corrupt header, inconsistent offsets).
    #[error("{file}: not a valid safetensors file: {reason}")]
    CorruptSafetensors {
        /// The file (or `<bytes>` for in-memory data).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A weights file in another format (`torch.save`, ONNX) given where a
    /// safetensors state dict is expected.
    #[error(
        "{file} is {format}, not safetensors; save the state dict with safetensors instead: \
         `from safetensors.torch import save_file; save_file(model.state_dict(), \"model.safetensors\")`"
    )]
    NotSafetensors {
        /// The file.
        file: String,
        /// What it looks like (`a PyTorch torch.save file (zip archive)`).
        format: &'static str,
    },
    /// A tensor stored with a dtype Kiln does not load.
    #[error(
        "{file}: tensor `{key}` has dtype {dtype}; Kiln loads F32 (and converts F16/BF16 losslessly); \
         convert it in PyTorch with `.float()` before saving"
    )]
    UnsupportedDtype {
        /// The file.
        file: String,
        /// The tensor's key.
        key: String,
        /// The stored dtype (`F64`, `I64`, `<f8`, ...).
        dtype: String,
    },
    /// A tensor whose declared shape does not match its data (or whose element
    /// count overflows).
    #[error("{file}: tensor `{key}` with shape {shape} does not match its data: {reason}")]
    TensorData {
        /// The file.
        file: String,
        /// The tensor's key (`<array>` for `.npy`).
        key: String,
        /// The declared shape, as written.
        shape: String,
        /// What is wrong (byte counts, overflow).
        reason: String,
    },
    /// A `.npy` file that is malformed or uses a layout Kiln does not read.
    #[error("{file}: invalid .npy file: {reason}")]
    InvalidNpy {
        /// The file (or `<bytes>`).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor looked up in a weight store that does not have it.
    #[error("{file}: no tensor `{key}` (it has: {available})")]
    MissingTensor {
        /// Where the store came from.
        file: String,
        /// The key looked up.
        key: String,
        /// Up to a few keys the store does have, for orientation.
        available: String,
    },

    // ---- graph validation --------------------------------------------------
    /// The graph is structurally invalid (cycle, no outputs, ...).
    #[error(transparent)]
    Graph(#[from] IrError),
    /// A node that is not resolved: still lazy, or with an unknown dimension.
    #[error("node `{node}` is not resolved: {reason}; run shape inference and ResolveLazy first")]
    Unresolved {
        /// Node name.
        node: String,
        /// Why (`still lazy (LazyConvTranspose2d)`, `shape f32[2, ?] has unknown dims`).
        reason: String,
    },
    /// A parameter the op needs is not attached to the node.
    #[error("node `{node}`: {op} needs parameter `{node}.{param}` with shape {expected}, but it is missing")]
    MissingParam {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// `weight`, `bias`, `running_mean`, `running_var`.
        param: &'static str,
        /// The shape it should have.
        expected: String,
    },
    /// A parameter whose shape disagrees with the op's hyper-parameters.
    #[error("node `{node}`: parameter `{node}.{param}` has shape {got}, but {op} expects {expected}")]
    ParamShape {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The expected shape.
        expected: String,
        /// The attached shape.
        got: String,
    },
    /// An operand whose shape the op cannot take, or a node whose declared
    /// shape disagrees with what its op computes. Both mean the resolved graph
    /// is inconsistent (the inputs were already checked against the declared
    /// input shapes).
    #[error("node `{node}`: {op}: {reason}")]
    BadOperand {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        reason: String,
    },
    /// A tensor too large to allocate or whose element count overflows.
    #[error("node `{node}`: output of shape {shape} is too large to allocate")]
    TooLarge {
        /// Node name.
        node: String,
        /// The requested shape.
        shape: String,
    },

    // ---- inputs ------------------------------------------------------------
    /// The wrong number of inputs.
    #[error("graph takes {expected} input(s) ({names}), got {got}")]
    InputCount {
        /// How many the graph takes.
        expected: usize,
        /// How many were given.
        got: usize,
        /// The graph's input names, in order.
        names: String,
    },
    /// An input whose shape differs from the graph input's declared shape.
    #[error("input `{input}`: expected shape {expected}, got {got}")]
    InputShape {
        /// Input name.
        input: String,
        /// The declared shape.
        expected: String,
        /// The given shape.
        got: String,
    },
    /// The wrong number of output buffers for a compiled graph's `run_into`.
    #[error("graph has {expected} output(s) ({names}), got {got} output buffers")]
    OutputCount {
        /// How many outputs the graph has.
        expected: usize,
        /// How many buffers were given.
        got: usize,
        /// The graph's output value names, in order.
        names: String,
    },
    /// An output buffer whose length differs from the output's element count.
    #[error("output `{output}`: expected a buffer of {expected}, got {got}")]
    OutputLength {
        /// The output's value name.
        output: String,
        /// Elements (and shape) expected.
        expected: String,
        /// Elements given.
        got: String,
    },
    /// A compiled kernel failed or broke its bounds at run time (a guard
    /// canary changed, a work range was refused): a bug in Kiln's JIT.
    #[error("internal error in the JIT kernel of `{node}`: {reason} (this is a bug in Kiln; please report it)")]
    KernelFault {
        /// The graph nodes the kernel computes.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// A named input the graph does not have, given twice, or not given.
    #[error("input `{input}`: {reason}")]
    InputName {
        /// The name involved.
        input: String,
        /// `is not an input of the graph (it has: x, skip)`, `given twice`, `missing`.
        reason: String,
    },
}

impl RuntimeError {
    /// Whether the model (graph, parameters) or the data given to it (inputs,
    /// files) is at fault.
    pub fn kind(&self) -> ErrorKind {
        use RuntimeError::*;
        match self {
            Graph(e) => e.kind(),
            Unresolved { .. } | MissingParam { .. } | ParamShape { .. } | BadOperand { .. } | TooLarge { .. } => {
                ErrorKind::InvalidConfiguration
            }
            Io { .. }
            | CorruptSafetensors { .. }
            | NotSafetensors { .. }
            | UnsupportedDtype { .. }
            | TensorData { .. }
            | InvalidNpy { .. }
            | MissingTensor { .. }
            | InputCount { .. }
            | InputShape { .. }
            | InputName { .. }
            | OutputCount { .. }
            | OutputLength { .. } => ErrorKind::InvalidInput,
            KernelFault { .. } => ErrorKind::Internal,
        }
    }
}

/// Result alias for the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
