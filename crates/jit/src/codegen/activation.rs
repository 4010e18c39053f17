//! Vector activation epilogues and calls to the transcendental helpers.
//!
//! Identity, ReLU and LeakyReLU are computed in registers on `f32x4` values.
//! Tanh and Sigmoid are not approximated in CLIF: kernels call a Rust helper
//! (registered with the JIT as an imported symbol) over each finished output
//! region, which keeps them exactly as accurate as `f32::tanh`/`exp`.

use cranelift_codegen::ir::{condcodes::FloatCC, types, AbiParam, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use crate::epilogue::{Activation, SIGMOID_SYMBOL, TANH_SYMBOL};
use crate::error::JitError;
use crate::pointwise::POINTWISE_SYMBOL;

/// Applies an in-register activation to an `f32x4` (or `f32`) value; identity
/// for activations that are done by a helper.
pub fn apply(b: &mut FunctionBuilder, act: Activation, v: Value) -> Value {
    let ty = b.func.dfg.value_type(v);
    let zero = if ty == types::F32X4 {
        let z = b.ins().f32const(0.0);
        b.ins().splat(types::F32X4, z)
    } else {
        b.ins().f32const(0.0)
    };
    match act {
        Activation::Identity | Activation::Tanh | Activation::Sigmoid => v,
        Activation::Relu => {
            // `x < 0 ? 0 : x`: NaN compares false and passes through, like torch.relu.
            let neg = b.ins().fcmp(FloatCC::LessThan, v, zero);
            select(b, ty, neg, zero, v)
        }
        Activation::LeakyRelu(alpha) => {
            let a = b.ins().f32const(alpha);
            let a = if ty == types::F32X4 { b.ins().splat(types::F32X4, a) } else { a };
            let scaled = b.ins().fmul(v, a);
            let pos = b.ins().fcmp(FloatCC::GreaterThan, v, zero);
            select(b, ty, pos, v, scaled)
        }
    }
}

/// `cond ? x : y` for a scalar or lane-wise vector condition from `fcmp`.
pub(crate) fn select(b: &mut FunctionBuilder, ty: types::Type, cond: Value, x: Value, y: Value) -> Value {
    if ty == types::F32X4 {
        // `fcmp` yields an i32x4 lane mask; bitselect needs all operands of one type.
        let mask = b.ins().bitcast(types::F32X4, MemFlagsData::new(), cond);
        b.ins().bitselect(mask, x, y)
    } else {
        b.ins().select(cond, x, y)
    }
}

/// Imported helper functions: `(ptr, len)` applying Tanh/Sigmoid in place,
/// and `(out, x, len, code, a, b)` for the other pointwise activations.
#[derive(Debug, Clone, Copy)]
pub struct Helpers {
    tanh: FuncId,
    sigmoid: FuncId,
    pointwise: FuncId,
}

impl Helpers {
    /// Declares the helper imports in `module` (the builder registers their addresses).
    pub fn declare(module: &mut JITModule) -> Result<Self, JitError> {
        let sig = super::FnCompiler::signature(module, 2);
        let decl = |m: &mut JITModule, name: &str| {
            m.declare_function(name, Linkage::Import, &sig).map_err(|e| JitError::codegen("helpers", format!("{e:?}")))
        };
        let mut psig = super::FnCompiler::signature(module, 4);
        psig.params.push(AbiParam::new(types::F32));
        psig.params.push(AbiParam::new(types::F32));
        let pointwise = module
            .declare_function(POINTWISE_SYMBOL, Linkage::Import, &psig)
            .map_err(|e| JitError::codegen("helpers", format!("{e:?}")))?;
        Ok(Self { tanh: decl(module, TANH_SYMBOL)?, sigmoid: decl(module, SIGMOID_SYMBOL)?, pointwise })
    }

    /// Emits `out[..len] = f(x[..len])` through the pointwise helper.
    pub fn call_pointwise(
        &self,
        b: &mut FunctionBuilder,
        module: &mut JITModule,
        f: kiln_ir::Pointwise,
        out: Value,
        x: Value,
        len: usize,
    ) {
        let (code, p0, p1) = crate::pointwise::encode(f);
        let callee = module.declare_func_in_func(self.pointwise, b.func);
        let len = b.ins().iconst(super::PTR, len as i64);
        let code = b.ins().iconst(super::PTR, code);
        let p0 = b.ins().f32const(p0);
        let p1 = b.ins().f32const(p1);
        b.ins().call(callee, &[out, x, len, code, p0, p1]);
    }

    /// Emits `helper(ptr, len)` if `act` needs one.
    pub fn call(&self, b: &mut FunctionBuilder, module: &mut JITModule, act: Activation, ptr: Value, len: Value) {
        let id = match act {
            Activation::Tanh => self.tanh,
            Activation::Sigmoid => self.sigmoid,
            _ => return,
        };
        let f = module.declare_func_in_func(id, b.func);
        b.ins().call(f, &[ptr, len]);
    }
}
