//! `OnnxError`: every variant names the tensor, node, attribute or file at
//! fault, so a message alone tells the user where the model is wrong.

use std::path::PathBuf;

use thiserror::Error;

/// Errors raised while reading an ONNX model or converting its data.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The model file could not be opened, sized or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A size, count or depth is beyond [`crate::Limits`].
    #[error("{what} is {value}, over the limit of {limit}")]
    Limit {
        /// What was measured (`"file size of model.onnx"`, `"graph nesting depth"`, ...).
        what: String,
        /// Its value.
        value: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// The bytes are not a valid protobuf encoding of a `ModelProto`
    /// (truncated, corrupt, invalid UTF-8 in a string field, ...).
    #[error("not a valid ONNX model: {reason}")]
    Decode {
        /// What the protobuf decoder (or the structure scan before it) reports.
        reason: String,
    },
    /// The model is well encoded but does not satisfy ONNX's rules (no graph,
    /// duplicate names, an unknown enum value, a negative dimension in a shape).
    #[error("invalid ONNX model: {reason}")]
    Invalid {
        /// What is wrong, naming the graph, node or value.
        reason: String,
    },
    /// A tensor's metadata or data is inconsistent: unknown `data_type`, negative
    /// dimension, element count overflow, data length not matching the shape.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor {
        /// The tensor's name, or where it sits (`attribute \`value\` of node \`c\``) when unnamed.
        tensor: String,
        /// What is wrong, with the values involved.
        reason: String,
    },
    /// A typed accessor was asked for a conversion the tensor's type does not
    /// support (a float tensor read as integers, a string tensor as floats).
    #[error("tensor `{tensor}` has type {actual}, which does not convert to {wanted}")]
    TensorType {
        /// The tensor.
        tensor: String,
        /// Its ONNX element type (`FLOAT16`).
        actual: String,
        /// The requested element type (`f32`).
        wanted: &'static str,
    },
    /// External data that may not or cannot be read: a path that leaves the
    /// model directory, an offset or length beyond the file, a length that does
    /// not match the tensor, an I/O error.
    #[error("tensor `{tensor}`: external data `{location}`: {reason}")]
    ExternalData {
        /// The tensor.
        tensor: String,
        /// The `location` entry as written in the model.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// The model has external data but was loaded from bytes without a directory
    /// to resolve it against.
    #[error(
        "tensor `{tensor}` stores its data in an external file, but the model was loaded from bytes with no model directory; use read_model or pass model_dir"
    )]
    ExternalDataWithoutDirectory {
        /// The tensor.
        tensor: String,
    },
    /// An attribute of a node has another type than the accessor asks for.
    #[error("node `{node}` ({op_type}): attribute `{attribute}` has type {actual}, expected {expected}")]
    AttributeType {
        /// The node's name (or `#index` when unnamed).
        node: String,
        /// The node's operator.
        op_type: String,
        /// The attribute.
        attribute: String,
        /// The type the accessor reads (`INT`).
        expected: &'static str,
        /// The type the attribute has (`FLOATS`, or the raw number if unknown).
        actual: String,
    },
    /// An attribute that has the right type but an unusable value (a string that
    /// is not UTF-8, a reference to a function attribute).
    #[error("node `{node}` ({op_type}): attribute `{attribute}`: {reason}")]
    Attribute {
        /// The node's name (or `#index` when unnamed).
        node: String,
        /// The node's operator.
        op_type: String,
        /// The attribute.
        attribute: String,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

impl OnnxError {
    /// A [`OnnxError::Tensor`] for `tensor`.
    pub(crate) fn tensor(tensor: &str, reason: impl Into<String>) -> Self {
        OnnxError::Tensor { tensor: tensor.to_string(), reason: reason.into() }
    }

    /// A [`OnnxError::Invalid`].
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        OnnxError::Invalid { reason: reason.into() }
    }

    /// A [`OnnxError::Limit`].
    pub(crate) fn limit(what: impl Into<String>, value: u64, limit: u64) -> Self {
        OnnxError::Limit { what: what.into(), value, limit }
    }
}
