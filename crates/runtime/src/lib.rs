//! `kiln-runtime`: running resolved Kiln graphs, and the data around them.
//!
//! - [`Tensor`] (`ndarray::ArrayD<f32>`) and helpers ([`tensor`]): checked
//!   construction, C-contiguous copies, comparisons, a seeded [`Rng`].
//! - [`WeightStore`] ([`weights`]): safetensors files with PyTorch
//!   `state_dict()` keys; [`npy`]: strict `.npy` float32 reading and writing.
//! - [`Interpreter`]: the reference executor, the oracle other backends are
//!   tested against, built from the per-op reference kernels in [`ops`].
//! - [`Backend`] / [`Executable`] ([`backend`]): the interface the JIT
//!   implements too, with [`InterpreterBackend`] and the shared
//!   [`check_inputs`].
//!
//! This crate does not build, infer shapes for or rewrite graphs (`kiln-ir`,
//! `kiln-passes`) and does not compile them (`kiln-jit`). All its errors are
//! one [`RuntimeError`] enum.

// No `unsafe` in this crate: the JIT is the only place raw memory is trusted.
// `deny`, not `forbid`: ndarray's `s!` macro expands to an `allow(unsafe_code)`
// around its own internals, which `forbid` would reject; our code stays free
// of `unsafe` all the same.
#![deny(unsafe_code)]
pub mod backend;
mod error;
pub mod interpreter;
pub mod npy;
pub mod ops;
pub mod tensor;
pub mod weights;

pub use backend::{check_inputs, Backend, Executable, InterpreterBackend};
pub use error::{ErrorKind, Result, RuntimeError};
pub use interpreter::Interpreter;
pub use tensor::{RandomTensor, Rng, Tensor};
pub use weights::WeightStore;
