//! CLIF for memory-bound elementwise kernels: activation, add, folded
//! BatchNorm and channel-concat copies.
//!
//! Each kernel streams contiguous floats with 4×`f32x4` unrolled loops and
//! straight-line remainders; every length is an immediate. Work items are
//! fixed-size chunks (activation, add), channel planes (BatchNorm) or
//! `(batch, input)` pairs (concat), so threads can split the work. This
//! module does not validate sizes; `library` does before calling it.

use cranelift_codegen::ir::{condcodes::FloatCC, condcodes::IntCC, types, InstBuilder, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;

use super::activation::{self, Helpers};
use super::{counted_loop, data_flags, ptr_var, weight_flags, Induction, PTR};
use crate::epilogue::Activation;
use crate::error::JitError;

/// Floats per work item of the chunked kernels (128 KiB of output).
pub const CHUNK: usize = 32 * 1024;

/// Per-element operation of a streaming loop: receives the current base
/// pointers, a byte offset and the value type (`f32x4` or `f32`).
pub type ElemOp<'a> = dyn FnMut(&mut FunctionBuilder, &[Value], i32, Type) + 'a;

/// Streams `count` floats: calls `op` for every vector/scalar position with
/// pointers starting at `ptrs` (all advanced in lockstep).
pub fn stream(b: &mut FunctionBuilder, count: usize, ptrs: &[Value], op: &mut ElemOp<'_>) -> Result<(), JitError> {
    const UNROLL: usize = 4;
    let per_iter = 4 * UNROLL;
    let vars: Vec<Variable> = ptrs.iter().map(|&p| ptr_var(b, p)).collect();
    let ind: Vec<Induction> = vars.iter().map(|&var| Induction { var, step: (per_iter * 4) as i64 }).collect();
    counted_loop(b, count / per_iter, &ind, &mut |b| {
        let cur: Vec<Value> = vars.iter().map(|&v| b.use_var(v)).collect();
        for u in 0..UNROLL {
            op(b, &cur, (u * 16) as i32, types::F32X4);
        }
        Ok(())
    })?;
    // After the loop the variables point at the remainder (or were never advanced).
    let done = if count / per_iter == 1 { per_iter } else { 0 };
    let cur: Vec<Value> = vars.iter().map(|&v| b.use_var(v)).collect();
    let rem = count % per_iter;
    let mut off = done * 4;
    for _ in 0..rem / 4 {
        op(b, &cur, off as i32, types::F32X4);
        off += 16;
    }
    for _ in 0..rem % 4 {
        op(b, &cur, off as i32, types::F32);
        off += 4;
    }
    Ok(())
}

/// Emits the body of an entry function `(inputs, out, start, end)` that loops
/// over work items and calls `item(b, module, item_index_value)` for each.
pub fn item_loop(
    b: &mut FunctionBuilder,
    m: &mut JITModule,
    params: &[Value],
    item: &mut dyn FnMut(&mut FunctionBuilder, &mut JITModule, Value) -> Result<(), JitError>,
) -> Result<(), JitError> {
    let (start, end) = (params[2], params[3]);
    let item_var = ptr_var(b, start);
    let header = b.create_block();
    let exit = b.create_block();
    let nonempty = b.ins().icmp(IntCC::UnsignedLessThan, start, end);
    b.ins().brif(nonempty, header, &[], exit, &[]);
    b.switch_to_block(header);
    let i = b.use_var(item_var);
    item(b, m, i)?;
    let next = b.ins().iadd_imm_s(i, 1);
    b.def_var(item_var, next);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, next, end);
    b.ins().brif(more, header, &[], exit, &[]);
    b.seal_block(header);
    b.switch_to_block(exit);
    Ok(())
}

/// Loads input pointer `k` from the `inputs` array parameter.
pub fn input_ptr(b: &mut FunctionBuilder, inputs: Value, k: usize) -> Value {
    b.ins().load(PTR, data_flags(), inputs, (k * 8) as i32)
}

/// Emits `body(count)` for the item: chunks are `CHUNK` floats except a
/// shorter last one, which gets its own straight-line code.
pub fn chunked(
    b: &mut FunctionBuilder,
    item: Value,
    len: usize,
    body: &mut dyn FnMut(&mut FunctionBuilder, usize, Value) -> Result<(), JitError>,
) -> Result<(), JitError> {
    let items = len.div_ceil(CHUNK);
    let last = len - (items - 1) * CHUNK;
    let byte_off = b.ins().imul_imm_s(item, (CHUNK * 4) as i64);
    if last == CHUNK {
        return body(b, CHUNK, byte_off);
    }
    let full = b.create_block();
    let tail = b.create_block();
    let join = b.create_block();
    let is_last = b.ins().icmp_imm_s(IntCC::Equal, item, items as i64 - 1);
    b.ins().brif(is_last, tail, &[], full, &[]);
    b.switch_to_block(full);
    body(b, CHUNK, byte_off)?;
    b.ins().jump(join, &[]);
    b.switch_to_block(tail);
    body(b, last, byte_off)?;
    b.ins().jump(join, &[]);
    b.switch_to_block(join);
    Ok(())
}

/// `out = act(a)` or `out = act(a + b)` over `count` floats at `ptrs = [out, a, (b)]`.
pub fn map_body(
    b: &mut FunctionBuilder,
    m: &mut JITModule,
    helpers: &Helpers,
    act: Activation,
    count: usize,
    ptrs: &[Value],
) -> Result<(), JitError> {
    stream(b, count, ptrs, &mut |b, p, off, ty| {
        let mut v = b.ins().load(ty, data_flags(), p[1], off);
        if p.len() > 2 {
            let w = b.ins().load(ty, data_flags(), p[2], off);
            v = b.ins().fadd(v, w);
        }
        let v = activation::apply(b, act, v);
        b.ins().store(data_flags(), v, p[0], off);
    })?;
    let len = b.ins().iconst(PTR, count as i64);
    helpers.call(b, m, act, ptrs[0], len);
    Ok(())
}

/// Folded BatchNorm over one channel plane: `out = act(x·scale[c] + shift[c])`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_plane(
    b: &mut FunctionBuilder,
    m: &mut JITModule,
    helpers: &Helpers,
    act: Activation,
    hw: usize,
    ptrs: &[Value],
    scale_addr: Value,
    shift_addr: Value,
) -> Result<(), JitError> {
    let sc = b.ins().load(types::F32, weight_flags(), scale_addr, 0);
    let sh = b.ins().load(types::F32, weight_flags(), shift_addr, 0);
    let scv = b.ins().splat(types::F32X4, sc);
    let shv = b.ins().splat(types::F32X4, sh);
    stream(b, hw, ptrs, &mut |b, p, off, ty| {
        let x = b.ins().load(ty, data_flags(), p[1], off);
        let (s, t) = if ty == types::F32X4 { (scv, shv) } else { (sc, sh) };
        let y = b.ins().fma(x, s, t);
        let y = activation::apply(b, act, y);
        b.ins().store(data_flags(), y, p[0], off);
    })?;
    let len = b.ins().iconst(PTR, hw as i64);
    helpers.call(b, m, act, ptrs[0], len);
    Ok(())
}

/// `nn.PReLU` over one channel plane: `out = x < 0 ? w·x : x` with the
/// channel's weight at `weight_addr` (NaN passes through, as in PyTorch).
pub fn prelu_plane(b: &mut FunctionBuilder, hw: usize, ptrs: &[Value], weight_addr: Value) -> Result<(), JitError> {
    let w = b.ins().load(types::F32, weight_flags(), weight_addr, 0);
    let wv = b.ins().splat(types::F32X4, w);
    let z = b.ins().f32const(0.0);
    let zv = b.ins().splat(types::F32X4, z);
    stream(b, hw, ptrs, &mut |b, p, off, ty| {
        let x = b.ins().load(ty, data_flags(), p[1], off);
        let (w, zero) = if ty == types::F32X4 { (wv, zv) } else { (w, z) };
        let scaled = b.ins().fmul(x, w);
        let neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
        let y = activation::select(b, ty, neg, scaled, x);
        b.ins().store(data_flags(), y, p[0], off);
    })
}

/// Copies `count` floats from `ptrs[1]` to `ptrs[0]`.
pub fn copy(b: &mut FunctionBuilder, count: usize, ptrs: &[Value]) -> Result<(), JitError> {
    stream(b, count, ptrs, &mut |b, p, off, ty| {
        let v = b.ins().load(ty, data_flags(), p[1], off);
        b.ins().store(data_flags(), v, p[0], off);
    })
}
