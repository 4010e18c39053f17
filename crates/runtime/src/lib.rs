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
