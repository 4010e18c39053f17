//! Error type of the kernel library.
//!
//! Every fallible operation of `kiln-jit` returns [`JitError`]. Variants carry
//! enough context (kernel name, offending values) to be reported to a user
//! without a backtrace. This module does not validate anything itself; the
//! checks live next to the data they check (`geometry`, `library`).

use thiserror::Error;

/// Everything that can go wrong while building or running kernels.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum JitError {
    /// A geometry (shape, stride, padding, ...) is not a valid PyTorch configuration.
    #[error("invalid {op} geometry: {reason}")]
    InvalidGeometry {
        /// Which operator the geometry describes, e.g. `conv_transpose2d`.
        op: &'static str,
        /// What is wrong, with the offending values.
        reason: String,
    },
    /// A parameter buffer (weights, bias, scale, shift) has the wrong length.
    #[error("{kernel}: {what} has {actual} elements, expected {expected}")]
    ParameterLength {
        /// Kernel being built.
        kernel: String,
        /// Which parameter (e.g. `weight`, `bias`).
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length that was passed.
        actual: usize,
    },
    /// A size or the generated code would exceed what the JIT supports.
    #[error("{kernel}: {what} is {value}, limit is {limit}")]
    TooLarge {
        /// Kernel being built.
        kernel: String,
        /// What overflowed (e.g. `output bytes`, `estimated instructions`).
        what: &'static str,
        /// The value that was computed (saturated at `u64::MAX`).
        value: u64,
        /// The supported maximum.
        limit: u64,
    },
    /// Cranelift rejected the generated code or failed to set up the host ISA.
    #[error("code generation failed for {kernel}: {message}")]
    Codegen {
        /// Kernel (or `host-isa`) concerned.
        kernel: String,
        /// Cranelift's message.
        message: String,
    },
    /// A materialized plan failed the plan verifier (`verify`): a bug in the
    /// planner, caught before any code ran.
    #[error("internal error: the plan of {kernel} failed verification: {reason}")]
    PlanVerifier {
        /// Kernel concerned.
        kernel: String,
        /// The violated bound, with the offending values.
        reason: String,
    },
    /// A [`crate::KernelId`] does not belong to this library.
    #[error("unknown kernel id {id} (library has {count} kernels)")]
    UnknownKernel {
        /// The id that was passed.
        id: usize,
        /// Number of kernels in the library.
        count: usize,
    },
    /// A kernel was run with the wrong number of inputs.
    #[error("{kernel}: expected {expected} inputs, got {actual}")]
    InputCount {
        /// Kernel being run.
        kernel: String,
        /// Required number of inputs.
        expected: usize,
        /// Number passed.
        actual: usize,
    },
    /// An input or output buffer of a run has the wrong length.
    #[error("{kernel}: {which} has {actual} elements, expected {expected}")]
    BufferLength {
        /// Kernel being run.
        kernel: String,
        /// `input N` or `output`.
        which: String,
        /// Required length.
        expected: usize,
        /// Length passed.
        actual: usize,
    },
    /// A work range is empty-inverted or exceeds the kernel's work items.
    #[error("{kernel}: work range {start}..{end} is not within 0..{items}")]
    WorkRange {
        /// Kernel being run.
        kernel: String,
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Number of work items of the kernel.
        items: usize,
    },
}

impl JitError {
    /// Whose fault it is (see [`kiln_ir::ErrorKind`]): an invalid geometry or
    /// parameter is the model's, a size over a limit is the input's, and a
    /// code-generation or verifier failure is Kiln's own.
    pub fn kind(&self) -> kiln_ir::ErrorKind {
        use kiln_ir::ErrorKind;
        match self {
            JitError::InvalidGeometry { .. } | JitError::ParameterLength { .. } => ErrorKind::InvalidConfiguration,
            JitError::TooLarge { .. }
            | JitError::InputCount { .. }
            | JitError::BufferLength { .. }
            | JitError::WorkRange { .. }
            | JitError::UnknownKernel { .. } => ErrorKind::InvalidInput,
            JitError::Codegen { .. } | JitError::PlanVerifier { .. } => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`JitError::InvalidGeometry`].
    pub(crate) fn geometry(op: &'static str, reason: impl Into<String>) -> Self {
        JitError::InvalidGeometry { op, reason: reason.into() }
    }

    /// Shorthand for [`JitError::Codegen`].
    pub(crate) fn codegen(kernel: &str, message: impl std::fmt::Display) -> Self {
        JitError::Codegen { kernel: kernel.to_string(), message: message.to_string() }
    }
}
