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
    #[error("{}", prefixed(node, &source.to_string()))]
    Ir {
        /// The ONNX node being converted.
        node: String,
        /// The IR's error.
        source: kiln_ir::IrError,
    },
    /// Shape inference of a converted node.
    #[error("{}", prefixed(node, message))]
    Shape {
        /// The ONNX node being converted.
        node: String,
        /// The shape pass's message.
        message: String,
    },
}

/// `message`, after the ONNX node's name unless the message already starts
/// with a node (the IR's and the shape pass's errors name the Kiln node,
/// which is the ONNX name made valid).
fn prefixed(node: &str, message: &str) -> String {
    if message.starts_with("node `") {
        message.to_string()
    } else {
        format!("node `{node}`: {message}")
    }
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
