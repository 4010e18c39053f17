//! The passes' error type. Each variant names the node and the values involved.

use kiln_ir::{ErrorKind, IrError};
use thiserror::Error;

/// Errors from shape inference, the lazy rewrite, parameter materialization
/// and verification.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PassError {
    /// An IR invariant was violated (invalid op, cycle, ...).
    #[error(transparent)]
    Ir(#[from] IrError),
    /// An input of the wrong rank.
    #[error("node `{node}`: {op} expects {expected} input, got input of shape {shape:?}")]
    Rank {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// What it accepts (`3-D (unbatched) or 4-D (batched)`).
        expected: &'static str,
        /// The input's shape.
        shape: Vec<usize>,
    },
    /// A concrete op whose channel count disagrees with its input.
    #[error(
        "node `{node}`: {op} was built for {param}={expected} but its input has {got} channels (input shape {shape:?})"
    )]
    ChannelMismatch {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// `in_channels` or `num_features`.
        param: &'static str,
        /// What the op expects.
        expected: usize,
        /// What the input has.
        got: usize,
        /// The input's shape.
        shape: Vec<usize>,
    },
    /// Inferred `in_channels` not divisible by `groups`.
    #[error("node `{node}`: {op} in_channels={in_channels} (inferred from input shape {shape:?}) is not divisible by groups={groups}")]
    InChannelsNotDivisible {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// Input channels.
        in_channels: usize,
        /// Groups.
        groups: usize,
        /// The input's shape.
        shape: Vec<usize>,
    },
    /// `output_size` of a length that does not fit the input rank.
    #[error("node `{node}`: for a {rank}-D input, output_size must have 2 or {rank} values, got {got:?}")]
    OutputSizeLength {
        /// Node name.
        node: String,
        /// The input rank.
        rank: usize,
        /// The values given.
        got: Vec<usize>,
    },
    /// `output_size` outside what stride allows.
    #[error("node `{node}`: requested output size {requested:?}, but for input size {input:?} valid sizes range from {min:?} to {max:?} (stride {stride:?} allows output_padding 0..stride-1)")]
    OutputSizeOutOfRange {
        /// Node name.
        node: String,
        /// The requested (H, W).
        requested: [usize; 2],
        /// Smallest valid (H, W).
        min: [i128; 2],
        /// Largest valid (H, W).
        max: [i128; 2],
        /// Input (H, W).
        input: [usize; 2],
        /// Stride (H, W).
        stride: [usize; 2],
    },
    /// The computed output would be empty or negative.
    #[error("node `{node}`: {op} output size would be {computed:?} for input size {input:?} with {args}; it must be at least 1x1")]
    OutputTooSmall {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// Input (H, W).
        input: [usize; 2],
        /// Computed (H, W), possibly negative.
        computed: [i128; 2],
        /// The arguments that determine the size (`kernel_size=1x1 stride=1x1 padding=2x2 ...`).
        args: String,
    },
    /// Shapes that must agree do not.
    #[error("node `{node}`: {op} {message}")]
    ShapeMismatch {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// What disagrees, with the shapes.
        message: String,
    },
    /// A shape too large to address.
    #[error("node `{node}`: {what} overflows: {detail}")]
    Overflow {
        /// Node name.
        node: String,
        /// What overflowed.
        what: &'static str,
        /// The values involved.
        detail: String,
    },
    /// An operand whose shape is not known (a pass ran out of order).
    #[error("node `{node}`: operand `{operand}` has no inferred shape; run ShapeInference first")]
    ShapeNotInferred {
        /// Node name.
        node: String,
        /// Operand name.
        operand: String,
    },
    /// A parameter the state dict does not have.
    #[error("missing parameter `{key}` (expected shape {expected:?}) in the state dict")]
    MissingParam {
        /// `<node>.<param>`.
        key: String,
        /// The shape the op needs.
        expected: Vec<usize>,
    },
    /// A state-dict key no node uses.
    #[error("unexpected key `{key}` in the state dict: {reason}")]
    UnexpectedParam {
        /// The key.
        key: String,
        /// Why nothing uses it.
        reason: String,
    },
    /// A parameter of the wrong shape.
    #[error("parameter `{key}` has shape {got:?}, but the node needs {expected:?}")]
    ParamShape {
        /// `<node>.<param>`.
        key: String,
        /// The shape the op needs.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A graph that should be fully resolved is not.
    #[error("graph is not resolved: node `{node}` {reason}")]
    Unresolved {
        /// Node name.
        node: String,
        /// What is still open.
        reason: String,
    },
}

impl PassError {
    /// Whether the model (configuration) or the data given to it is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PassError::Ir(e) => e.kind(),
            PassError::InChannelsNotDivisible { .. }
            | PassError::OutputSizeLength { .. }
            | PassError::Unresolved { .. } => ErrorKind::InvalidConfiguration,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// Result alias for the passes.
pub type Result<T, E = PassError> = std::result::Result<T, E>;
