//! The graph compiler: a resolved Kiln graph in, a [`CompiledGraph`] out.
//!
//! [`lower`](lower::lower) picks and fuses kernels (BatchNorm folded into the
//! preceding convolution, activations into epilogues), [`memory`] plans
//! buffer reuse by liveness, and [`CompiledGraph`] runs the program, splitting
//! each kernel's work items over a persistent thread pool.

mod backend;
mod compiled;
mod error;
mod fold;
pub(crate) mod lower;
pub(crate) mod memory;
mod region;

pub use backend::JitBackend;
pub use compiled::{
    compile, compile_shared, compile_with, CompileOptions, CompiledGraph, KernelSummary, Shared, CANARY,
};
pub use error::CompileError;
