//! CLIF emission shared by all kernels: function definition, memory flags,
//! counted loops.
//!
//! Debug aid: with `KILN_JIT_DISASM` set in the environment, the machine code
//! of every function is printed to stderr as it is compiled.
//!
//! Submodules emit one kernel family each (`conv`, `elementwise`) plus the
//! vector activation epilogue (`activation`). Nothing here plans loops or
//! packs data; callers pass fully decided schedules and buffer addresses.

pub mod activation;
pub mod conv;
pub mod elementwise;
pub mod native_tier;

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use crate::error::JitError;

/// Constant data that generated code points into (argument records, tap and
/// pixel tables, call lists), owned by the kernel library for as long as the
/// code lives. Built once before emission, then never read or written from
/// Rust again: the code only reads it.
pub struct ConstData {
    /// Only ever dropped: the code holds its address.
    _data: Box<dyn std::any::Any>,
    bytes: usize,
}

// SAFETY: the contents are immutable after construction (no interior
// mutability is ever stored: only `Box<[T]>` of plain `Copy` records whose
// raw-pointer fields point into other `ConstData`), so sharing or sending the
// owner between threads cannot race.
unsafe impl Send for ConstData {}
// SAFETY: as above.
unsafe impl Sync for ConstData {}

impl ConstData {
    /// Boxes `items` (at least one element, so the address is a real
    /// allocation) and returns the owner and the address of the first item.
    pub fn new<T: Copy + 'static>(mut items: Vec<T>, filler: T) -> (ConstData, i64) {
        if items.is_empty() {
            items.push(filler);
        }
        let boxed: Box<[T]> = items.into_boxed_slice();
        let addr = boxed.as_ptr() as i64;
        let bytes = std::mem::size_of_val(&*boxed);
        (ConstData { _data: Box::new(boxed), bytes }, addr)
    }

    /// Size of the data in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Pointer-sized integer type (the library only supports 64-bit hosts).
pub const PTR: Type = types::I64;

/// Flags for loads of packed, compile-time constant data (weights, bias,
/// scale/shift): aligned, never trapping, never written while code runs, so
/// the optimizer may hoist them.
pub fn weight_flags() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// Flags for accesses to caller buffers: in bounds by construction, but only
/// element-aligned (callers pass plain `&[f32]`).
pub fn data_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Flags for loads of a kernel input that the kernel never writes (convolution
/// inputs: the output never aliases them). `readonly` + `can_move` turns the
/// load into a pure value for Cranelift's egraph, so it is placed next to its
/// use (and folds into `vbroadcastss`/`vfmadd` memory operands) instead of
/// being scheduled first and keeping many scalars live across the loop body.
pub fn input_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_readonly().with_can_move()
}

/// Reusable Cranelift contexts for defining functions in one module.
pub struct FnCompiler {
    ctx: Context,
    fctx: FunctionBuilderContext,
}

/// Emission callback: builder, module (to reference other functions), parameters.
pub type Body<'a> = dyn FnMut(&mut FunctionBuilder, &mut JITModule, &[Value]) -> Result<(), JitError> + 'a;

impl FnCompiler {
    /// Fresh contexts.
    pub fn new() -> Self {
        Self { ctx: Context::new(), fctx: FunctionBuilderContext::new() }
    }

    /// Signature with `n_ptr` pointer-sized parameters and no results.
    pub fn signature(module: &JITModule, n_ptr: usize) -> Signature {
        let mut sig = module.make_signature();
        for _ in 0..n_ptr {
            sig.params.push(AbiParam::new(PTR));
        }
        sig
    }

    /// Declares `name` with `n_ptr` pointer parameters (used before its body exists
    /// so that other functions can call it).
    pub fn declare(module: &mut JITModule, kernel: &str, name: &str, n_ptr: usize) -> Result<FuncId, JitError> {
        let sig = Self::signature(module, n_ptr);
        module.declare_function(name, Linkage::Local, &sig).map_err(|e| JitError::codegen(kernel, format!("{e:?}")))
    }

    /// Defines a declared function from `body`; returns its CLIF text as built
    /// (before Cranelift's optimizations).
    pub fn define(
        &mut self,
        module: &mut JITModule,
        kernel: &str,
        id: FuncId,
        n_ptr: usize,
        body: &mut Body<'_>,
    ) -> Result<String, JitError> {
        self.ctx.clear();
        self.ctx.func.signature = Self::signature(module, n_ptr);
        self.ctx.func.name = cranelift_codegen::ir::UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let params = b.block_params(entry).to_vec();
            body(&mut b, module, &params)?;
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(module.target_config());
        }
        let clif = self.ctx.func.display().to_string();
        let disasm = std::env::var_os("KILN_JIT_DISASM").is_some();
        self.ctx.set_disasm(disasm);
        module.define_function(id, &mut self.ctx).map_err(|e| JitError::codegen(kernel, format!("{e:?}")))?;
        if disasm {
            if let Some(code) = self.ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
                eprintln!("==== {kernel} (func {})\n{code}", id.as_u32());
            }
        }
        self.ctx.clear();
        Ok(clif)
    }
}

impl Default for FnCompiler {
    fn default() -> Self {
        Self::new()
    }
}

/// A pointer variable of a counted loop and its per-iteration step in bytes.
pub struct Induction {
    /// The variable (defined before the loop).
    pub var: Variable,
    /// Byte step per iteration.
    pub step: i64,
}

/// Emits `body` `count` times (`count` is a compile-time constant ≥ 1).
///
/// A single iteration is emitted straight-line; otherwise a do-while loop
/// whose counter counts down to zero, so the back edge is one `brif` on the
/// decremented counter. Induction variables are advanced after each
/// iteration; the body sees their current values through `use_var`.
pub fn counted_loop(
    b: &mut FunctionBuilder,
    count: usize,
    inductions: &[Induction],
    body: &mut dyn FnMut(&mut FunctionBuilder) -> Result<(), JitError>,
) -> Result<(), JitError> {
    if count == 0 {
        return Ok(());
    }
    if count == 1 {
        return body(b);
    }
    let counter = b.declare_var(PTR);
    let n = b.ins().iconst(PTR, count as i64);
    b.def_var(counter, n);
    let header = b.create_block();
    let exit = b.create_block();
    b.ins().jump(header, &[]);
    b.switch_to_block(header);
    body(b)?;
    for ind in inductions {
        let v = b.use_var(ind.var);
        let v = b.ins().iadd_imm_s(v, ind.step);
        b.def_var(ind.var, v);
    }
    let c = b.use_var(counter);
    let c = b.ins().iadd_imm_s(c, -1);
    b.def_var(counter, c);
    b.ins().brif(c, header, &[], exit, &[]);
    b.seal_block(header);
    b.switch_to_block(exit);
    b.seal_block(exit);
    Ok(())
}

/// Declares a pointer variable initialised to `value`.
pub fn ptr_var(b: &mut FunctionBuilder, value: Value) -> Variable {
    let v = b.declare_var(PTR);
    b.def_var(v, value);
    v
}
