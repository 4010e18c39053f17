//! What can go wrong importing a read model.

use crate::OnnxError;

/// An ONNX graph Kiln cannot import, naming the node and the values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the file or an attribute.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// An operator outside the supported set (or a form of it Kiln lacks).
    #[error("node `{node}`: {op_type} (domain `{domain}`, opset {opset}) {reason}")]
    Unsupported {
        /// The node (its name, or `#index`).
        node: String,
        /// Its op type.
        op_type: String,
        /// Its domain.
        domain: String,
        /// The model's opset for that domain.
        opset: i64,
        /// What is missing.
        reason: String,
    },
    /// A node whose inputs or attributes break the operator's rules.
    #[error("node `{node}`: {message}")]
    Invalid {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A graph input whose shape is not known.
    #[error("input `{input}`: {message}")]
    Input {
        /// The graph input.
        input: String,
        /// What is wrong.
        message: String,
    },
    /// Building the Kiln graph (a rule of the IR).
    #[error("node `{node}`: {source}")]
    Ir {
        /// The ONNX node being converted.
        node: String,
        /// The IR's error.
        source: kiln_ir::IrError,
    },
    /// Shape inference of a converted node.
    #[error("node `{node}`: {message}")]
    Shape {
        /// The ONNX node being converted.
        node: String,
        /// The shape pass's message.
        message: String,
    },
}

impl ImportError {
    pub(crate) fn invalid(node: &str, message: impl Into<String>) -> Self {
        ImportError::Invalid { node: node.into(), message: message.into() }
    }

    /// Whether the model (rather than Kiln) is at fault: everything but an
    /// unsupported operator.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, ImportError::Unsupported { .. })
    }
}

/// The import's result type.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;
