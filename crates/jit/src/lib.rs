//! `kiln-jit`: a Cranelift kernel library for convolutional decoders.
//!
//! It compiles shape-specialized kernels (transposed and forward 2-D
//! convolutions with fused bias and activation, plus elementwise helpers)
//! from plain geometry structs into one JIT module, and runs them over work
//! ranges so one compiled function serves any number of threads. Every shape,
//! stride and loop bound is an immediate in the generated code.
//!
//! It is *not* a graph compiler: it knows nothing of the Kiln IR, memory
//! planning or thread pools. The executor built on top of it decides which
//! kernels to compile, allocates buffers and splits work items among threads.
//!
//! ```
//! use kiln_jit::{ConvTranspose2dGeometry, Epilogue, KernelBuilder};
//! let g = ConvTranspose2dGeometry::from_output_padding(1, 2, [3, 3], 2, 1, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1])?;
//! let mut kb = KernelBuilder::new()?;
//! let id = kb.add_conv_transpose2d(&g, &vec![0.5; g.weight_len()], &Epilogue::none())?;
//! let lib = kb.finish()?;
//! let x = vec![1.0; g.input_len()];
//! let mut y = vec![0.0; g.output_len()];
//! lib.run_all(id, &[&x], &mut y)?;
//! # Ok::<(), kiln_jit::JitError>(())
//! ```

#![warn(missing_docs)]

pub mod codegen;
pub mod epilogue;
pub mod error;
pub mod geometry;
pub mod graph;
pub mod library;
pub mod native;
pub mod pack;
pub mod phase;
pub mod pool;
pub mod schedule;
pub mod tiling;

pub use epilogue::{Activation, Epilogue};
pub use error::JitError;
pub use geometry::{Conv2dGeometry, ConvTranspose2dGeometry, MAX_PARAM, MAX_TENSOR_BYTES};
pub use library::{KernelBuilder, KernelId, KernelInfo, KernelLibrary, OptLevel};
pub use library::{KernelStrategy, KernelTier, Options};
pub use native::NativeIsa;
pub use graph::{compile, compile_with, CompileError, CompileOptions, CompiledGraph, JitBackend, KernelSummary};
