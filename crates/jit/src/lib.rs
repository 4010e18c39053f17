//! `kiln-jit`: the JIT compiler of Kiln: a resolved graph in, native code out.
//!
//! [`compile`] lowers a resolved [`kiln_ir::Graph`] (every shape known, every
//! lazy node rewritten, parameters attached) to shape-specialized kernels in
//! one Cranelift module, plans buffer reuse, and returns a [`CompiledGraph`]
//! that runs any number of times from any number of threads. Convolutions
//! use `std::arch` micro-kernels for their register tiles where the CPU has
//! AVX-512F or AVX2+FMA ([`KernelTier`]); Cranelift `f32x4` code otherwise.
//!
//! The public API is deliberately small: [`compile`], [`compile_with`],
//! [`CompileOptions`], [`CompiledGraph`], the errors ([`CompileError`],
//! [`JitError`]), the tier enums ([`KernelTier`], [`NativeIsa`]) and a few
//! inspection types. The kernel-level builder is internal; tests and
//! benchmarks of this crate reach it through the `kernel-api` feature.
//!
//! ```
//! use kiln_ir::{ConvTranspose2dParams, GraphBuilder};
//! let mut b = GraphBuilder::new("g");
//! let x = b.input("x", [1, 4, 5, 5])?;
//! let y = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(2, 3).stride(2))?;
//! b.output(y)?;
//! let mut g = b.finish()?;
//! kiln_passes::resolve(&mut g, kiln_passes::ParamSource::Init { seed: 0 })?;
//! let exe = kiln_jit::compile(&g)?;
//! let out = exe.run(&[kiln_runtime::tensor::random(&[1, 4, 5, 5], 1)])?;
//! assert_eq!(out[0].shape(), &[1, 2, 11, 11]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Code map (see `docs/ARCHITECTURE.md` for the invariants):
//! `graph` (lowering, memory plan, `CompiledGraph`) → `library` (kernel
//! builder: validation, strategy, packing) → `schedule`/`phase`/`tiling`
//! (plans as data) → `verify` (plan verifier) → `codegen` (CLIF) →
//! `microkernel` (native tiles and their typed ABI); `pool` (threads).

// Without `kernel-api`, the kernel-level helpers that only this crate's tests,
// benches and examples call (geometry constructors, `run_slices`, ...) are
// unused by the library itself.
#![cfg_attr(not(feature = "kernel-api"), allow(dead_code))]

mod binary;
mod chain;
mod codegen;
mod col2im;
mod dwrows;
mod epilogue;
mod error;
mod gather;
mod gemm;
mod geometry;
mod graph;
mod library;
mod microkernel;
mod pack;
mod phase;
mod plane;
mod pointwise;
mod pool;
mod rows;
mod schedule;
mod strategy;
mod tiling;
mod verify;
mod vmath;
mod weight_cache;

pub use error::JitError;
pub use graph::{
    compile, compile_shared, compile_with, CompileError, CompileOptions, CompiledGraph, JitBackend, KernelSummary,
    Shared, CANARY,
};
pub use library::{KernelStrategy, KernelTier, OptLevel};
pub use microkernel::NativeIsa;
pub use pool::MAX_THREADS;
pub use weight_cache::WeightCache;

/// The kernel-level API (geometries, the kernel builder and library), for
/// this crate's own tests, benchmarks and examples. Not a stable interface:
/// graphs go through [`compile`].
#[cfg(feature = "kernel-api")]
pub mod kernel_api {
    pub use crate::epilogue::{Activation, Epilogue};
    pub use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry, MAX_PARAM, MAX_TENSOR_BYTES};
    pub use crate::library::{KernelBuilder, KernelId, KernelInfo, KernelLibrary, Options};
}
