//! The IR's error type: every variant names the node and the offending values.

use thiserror::Error;

/// Which side is at fault, mirroring PyTorch's split between a module that
/// cannot be built (`ValueError` at construction) and data that does not fit
/// (`RuntimeError` at forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The model itself is invalid: bad hyper-parameters or a malformed graph.
    InvalidConfiguration,
    /// The model is fine but the data given to it (shapes, weights) is not.
    InvalidInput,
    /// Neither: an internal invariant of Kiln broke (a plan failed the
    /// verifier, code generation failed). A bug to report, not the user's fault.
    Internal,
}

/// Errors raised while building, validating or (de)serializing a graph.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// A hyper-parameter that must be positive is zero.
    #[error("node `{node}`: {op} argument `{arg}` must be positive, got {value}")]
    NonPositive {
        /// Node name.
        node: String,
        /// Op class name (`LazyConvTranspose2d`).
        op: &'static str,
        /// Argument name as PyTorch spells it.
        arg: &'static str,
        /// The value given, as written.
        value: String,
    },
    /// `channels % groups != 0`.
    #[error("node `{node}`: {op} {what}={channels} is not divisible by groups={groups}")]
    NotDivisibleByGroups {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// `in_channels` or `out_channels`.
        what: &'static str,
        /// The channel count.
        channels: usize,
        /// The group count.
        groups: usize,
    },
    /// A padding mode Kiln (and, for transposed convolutions, PyTorch) does not support.
    #[error("node `{node}`: {op} supports only padding_mode=\"zeros\", got \"{mode}\"")]
    UnsupportedPaddingMode {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// The mode given.
        mode: String,
    },
    /// `output_padding` not smaller than stride or dilation in some dimension.
    #[error(
        "node `{node}`: {op} output_padding={output_padding} must be smaller than either stride={stride} or dilation={dilation} in each dimension"
    )]
    OutputPaddingTooLarge {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// `HxW` as given.
        output_padding: String,
        /// `HxW`.
        stride: String,
        /// `HxW`.
        dilation: String,
    },
    /// `output_size` with a length other than 2, 3 or 4, or a zero entry.
    #[error("node `{node}`: output_size must have 2 values (H, W) or the full 3/4-value output shape with positive entries, got {value:?}")]
    InvalidOutputSize {
        /// Node name.
        node: String,
        /// The values given.
        value: Vec<usize>,
    },
    /// Explicit per-side `pads` together with `output_size` on a transposed
    /// convolution: `output_size` picks an `output_padding` for PyTorch's
    /// symmetric `padding`, and has no meaning next to explicit pads.
    #[error("node `{node}`: {op} takes either explicit per-side pads or output_size, not both (got pads={pads} and output_size={output_size:?})")]
    PadsWithOutputSize {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// The pads, `[top, left, bottom, right]`.
        pads: String,
        /// The `output_size` given.
        output_size: Vec<usize>,
    },
    /// An argument whose value Kiln does not support (e.g. `Concat` on a dim other than 1).
    #[error("node `{node}`: {op} argument `{arg}`: {message}")]
    Unsupported {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// Argument name.
        arg: &'static str,
        /// What is wrong and what is supported.
        message: String,
    },
    /// Two nodes with one name.
    #[error("duplicate node name `{0}`: node names are state-dict keys and must be unique")]
    DuplicateName(String),
    /// A name that cannot be a node name.
    #[error("invalid node name {0:?}: use letters, digits, `_`, `-` and `.`, not starting with `@`")]
    InvalidName(String),
    /// An operand refers to a node that does not exist.
    #[error("node `{node}`: operand {index} refers to unknown node `{operand}`")]
    UnknownOperand {
        /// Node name.
        node: String,
        /// Operand position.
        index: usize,
        /// The missing name (or id).
        operand: String,
    },
    /// A name lookup failed.
    #[error("no node named `{0}`")]
    NoSuchNode(String),
    /// The wrong number of operands for an op.
    #[error("node `{node}`: {op} takes {expected} operand(s), got {got}")]
    OperandCount {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// What the op takes (`1`, `2`, `at least 1`).
        expected: &'static str,
        /// How many it has.
        got: usize,
    },
    /// An output or input node used in a position it cannot take.
    #[error("node `{node}`: {message}")]
    Misplaced {
        /// Node name.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// The graph has a cycle through these nodes.
    #[error("graph has a cycle through nodes {}", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Cycle(Vec<String>),
    /// The graph has no input or no output.
    #[error("graph has no {0}")]
    Empty(&'static str),
    /// A graph input's shape is unranked or has a zero dimension (open dims,
    /// `?`, are allowed: they are bound when the model runs).
    #[error("graph input `{node}` must have a known rank and positive (or open, `null`) dims, got {shape}")]
    InvalidInputShape {
        /// Input name.
        node: String,
        /// The shape given.
        shape: String,
    },
    /// Concrete input shapes that do not fit a graph input's declared shape.
    #[error("input `{input}`: got shape {got:?}, but the model declares {declared}{reason}")]
    InputShapeMismatch {
        /// Input name.
        input: String,
        /// The declared shape (open dims as `?`).
        declared: String,
        /// The shape given.
        got: Vec<usize>,
        /// What does not fit (the rank, or which dim).
        reason: String,
    },
    /// Binding input shapes with the wrong number of shapes.
    #[error("the model has {expected} input(s) ({names}), got {got} shape(s)")]
    InputShapeCount {
        /// Inputs the graph has.
        expected: usize,
        /// Shapes given.
        got: usize,
        /// The inputs' names, comma-separated.
        names: String,
    },
    /// Malformed JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// Well-formed JSON that is not a valid model description.
    #[error("{context}: {message}")]
    Model {
        /// Where: `node `up1` field `args.stride``.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter tensor with a name the op does not have.
    #[error("node `{node}`: {op} has no parameter `{param}` (it has: {expected})")]
    UnknownParam {
        /// Node name.
        node: String,
        /// Op class name.
        op: &'static str,
        /// The parameter name given.
        param: String,
        /// The parameters the op has.
        expected: String,
    },
}

impl IrError {
    /// Whether the model or the data is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IrError::InvalidInputShape { .. }
            | IrError::InputShapeMismatch { .. }
            | IrError::InputShapeCount { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::InvalidConfiguration,
        }
    }

    /// Wraps a `serde_json` error, keeping its line and column.
    pub fn from_json(e: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; keep only the reason.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        IrError::Json { line: e.line(), column: e.column(), message }
    }
}

/// Result alias for the IR.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
