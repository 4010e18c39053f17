//! The passes' error type. Each variant names the node and the values involved.

use kiln_ir::{ErrorKind, IrError};
use thiserror::Error;

use crate::resolve::UnexpectedKey;

/// How many keys of each kind a mismatch message names.
const SHOWN_KEYS: usize = 5;

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn fmt_mismatch(missing: &[(String, Vec<usize>)], unexpected: &[UnexpectedKey], hint: Option<&str>) -> String {
    let list = |items: Vec<String>, total: usize| {
        let more = if total > SHOWN_KEYS { ", ..." } else { "" };
        format!("{}{more}", items.into_iter().take(SHOWN_KEYS).collect::<Vec<_>>().join(", "))
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let items = missing.iter().map(|(k, s)| format!("`{k}` {s:?}")).collect();
        parts.push(format!("{} ({})", plural(missing.len(), "missing key"), list(items, missing.len())));
    }
    if !unexpected.is_empty() {
        let items = unexpected
            .iter()
            .map(|u| {
                if u.note.is_empty() {
                    format!("`{}` {:?}", u.key, u.shape)
                } else {
                    format!("`{}`: {}", u.key, u.note)
                }
            })
            .collect();
        parts.push(format!("{} ({})", plural(unexpected.len(), "unexpected key"), list(items, unexpected.len())));
    }
    let mut msg = format!("the state dict does not match the model: {}", parts.join("; "));
    if let Some(h) = hint {
        msg.push_str("; ");
        msg.push_str(h);
    }
    msg
}

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
    /// A graph input declared without a batch dimension, found when an op
    /// that needs one (BatchNorm2d, Concat) receives a 3-D tensor.
    #[error(
        "graph input `{input}` has shape {shape:?}, without a batch dimension, but node `{node}` ({op}) needs 4-D \
         [N, C, H, W] input: declare `{input}` as {batched:?} (convolutions accept unbatched 3-D input, {op} does not)",
        batched = std::iter::once(1).chain(shape.iter().copied()).collect::<Vec<usize>>()
    )]
    UnbatchedInput {
        /// The graph input.
        input: String,
        /// Its declared 3-D shape.
        shape: Vec<usize>,
        /// The first node that needs a batch dimension.
        node: String,
        /// That node's op class.
        op: &'static str,
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
    /// A graph input whose dims are left open (`null`) reached shape
    /// inference unbound: the shapes come from the data it will run on.
    #[error(
        "graph input `{input}` has open dims ({shape}): give concrete shapes first (`kiln::Model` binds them from the inputs it runs on; `kiln run` from the --input files or --shape {input}=...)"
    )]
    OpenInput {
        /// Input name.
        input: String,
        /// Its declared shape, open dims as `?`.
        shape: String,
    },
    /// An operand whose shape is not known (a pass ran out of order).
    #[error("node `{node}`: operand `{operand}` has no inferred shape; run ShapeInference first")]
    ShapeNotInferred {
        /// Node name.
        node: String,
        /// Operand name.
        operand: String,
    },
    /// A parameter that PyTorch-style initialization does not produce (an
    /// internal inconsistency between an op and its initializer).
    #[error("missing parameter `{key}` (expected shape {expected:?})")]
    MissingParam {
        /// `<node>.<param>`.
        key: String,
        /// The shape the op needs.
        expected: Vec<usize>,
    },
    /// State-dict keys that do not match the model's parameters: all the
    /// missing and all the unexpected keys at once, with a fix when the keys
    /// show one (a shared prefix to strip, nodes to rename).
    #[error("{}", fmt_mismatch(missing, unexpected, hint.as_deref()))]
    StateDictMismatch {
        /// `<node>.<param>` keys the model needs and the state dict lacks, with their shapes.
        missing: Vec<(String, Vec<usize>)>,
        /// Keys no node takes.
        unexpected: Vec<UnexpectedKey>,
        /// How to fix it, if the keys tell.
        hint: Option<String>,
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
