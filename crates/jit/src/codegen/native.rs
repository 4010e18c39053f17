//! CLIF for native-tier convolutions: the JIT-generated loop nest around
//! calls to the `std::arch` micro-kernels of [`crate::native`].
//!
//! A kernel is an entry function that decodes work items and dispatches to
//! one function per chunk of the [`crate::tiling`] plan. Chunk functions run
//! counted loops of micro-kernel calls whose arguments (weight panel, pixel
//! table, constant argument block) are immediates, and compute remainder
//! pixels with the Cranelift register blocks of [`super::conv`] reading the
//! same packed weights. The argument blocks and pixel tables are returned to
//! the library, which keeps them alive as long as the code.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{FuncRef, InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use super::conv::{emit_block, PhaseCtx};
use super::{counted_loop, data_flags, ptr_var, FnCompiler, Induction, PTR};
use crate::epilogue::Activation;
use crate::error::JitError;
use crate::native::{act_code, cv_symbol, pv_symbol, ACT_STRIDED_SYMBOL, PV_ARGS_LEN, TILE_ARGS_LEN};
use crate::pack::{block_stride, phase_offset};
use crate::schedule::{Block, ConvSpec, Variant, ACCUMULATORS, LANES};
use crate::tiling::{CvPlan, CvRun, PvPlan};

/// A native kernel: entry function, CLIF text, and the constant tables its code points into.
pub struct NativeEmitted {
    /// Entry `(inputs, out, start, end)`.
    pub entry: FuncId,
    /// CLIF of every function.
    pub clif: String,
    /// Pixel tables, tap lists and argument blocks (addresses are baked into the code).
    pub tables: Vec<Box<[i64]>>,
}

/// Addresses and epilogue shared by both strategies.
pub struct NativeParams<'a> {
    /// Kernel name (symbol prefix).
    pub name: &'a str,
    /// The correlation.
    pub spec: &'a ConvSpec,
    /// Packed weights address.
    pub weights_addr: i64,
    /// Packed bias address.
    pub bias_addr: i64,
    /// Activation after the bias.
    pub activation: Activation,
}

fn import(module: &mut JITModule, kernel: &str, name: &str) -> Result<FuncId, JitError> {
    let sig = FnCompiler::signature(module, if name == ACT_STRIDED_SYMBOL { 4 } else { 6 });
    module.declare_function(name, Linkage::Import, &sig).map_err(|e| JitError::codegen(kernel, format!("{e:?}")))
}

fn boxed(v: Vec<i64>) -> Box<[i64]> {
    if v.is_empty() {
        vec![0].into_boxed_slice()
    } else {
        v.into_boxed_slice()
    }
}

/// Entry function: walks `start..end`, splits each item into `(outer, sel)`
/// with `sel = item % per_outer`, lets `ptrs` compute the four pointer
/// arguments (input, output, weights, bias) and calls `fns[index(sel)]`.
#[allow(clippy::type_complexity)]
fn emit_entry(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    name: &str,
    per_outer: usize,
    fns: &[FuncId],
    ptrs: &dyn Fn(&mut FunctionBuilder, Value, Value, Value, Value) -> ([Value; 4], Value),
) -> Result<(FuncId, String), JitError> {
    let entry = FnCompiler::declare(module, name, name, 4)?;
    let text = fc.define(module, name, entry, 4, &mut |b, m, params| {
        let (inputs, out, start, end) = (params[0], params[1], params[2], params[3]);
        let x0 = b.ins().load(PTR, data_flags(), inputs, 0);
        let refs: Vec<FuncRef> = fns.iter().map(|&f| m.declare_func_in_func(f, b.func)).collect();
        let item_var = ptr_var(b, start);
        let header = b.create_block();
        let latch = b.create_block();
        let exit = b.create_block();
        let nonempty = b.ins().icmp(IntCC::UnsignedLessThan, start, end);
        b.ins().brif(nonempty, header, &[], exit, &[]);
        b.switch_to_block(header);
        let item = b.use_var(item_var);
        let outer = b.ins().udiv_imm_u(item, per_outer as i64);
        let sel = b.ins().urem_imm_u(item, per_outer as i64);
        let (args, index) = ptrs(b, x0, out, outer, sel);
        // Dispatch chain: few functions per kernel, so compares are cheaper than a table.
        for (k, &f) in refs.iter().enumerate() {
            if k + 1 == refs.len() {
                b.ins().call(f, &args);
                b.ins().jump(latch, &[]);
            } else {
                let this = b.create_block();
                let next = b.create_block();
                let hit = b.ins().icmp_imm_s(IntCC::Equal, index, k as i64);
                b.ins().brif(hit, this, &[], next, &[]);
                b.switch_to_block(this);
                b.ins().call(f, &args);
                b.ins().jump(latch, &[]);
                b.switch_to_block(next);
            }
        }
        b.switch_to_block(latch);
        let next = b.ins().iadd_imm_s(item, 1);
        b.def_var(item_var, next);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, next, end);
        b.ins().brif(more, header, &[], exit, &[]);
        b.switch_to_block(exit);
        Ok(())
    })?;
    Ok((entry, text))
}

/// Emits a channel-tile kernel.
pub fn emit_cv(fc: &mut FnCompiler, module: &mut JITModule, k: &NativeParams<'_>, plan: &CvPlan) -> Result<NativeEmitted, JitError> {
    let spec = k.spec;
    let pairs = spec.phase_pairs();
    let (code, alpha) = act_code(k.activation);
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let v = plan.pw / LANES;

    let tables = boxed(plan.tables.clone());
    let tables_addr = tables.as_ptr() as i64;
    let mut tap_data = Vec::new();
    let mut tap_at = Vec::new();
    for c in &plan.classes {
        tap_at.push(tap_data.len());
        for &(xo, ao) in &c.taps {
            tap_data.push(xo * 4);
            tap_data.push(ao * 4);
        }
    }
    let taps = boxed(tap_data);
    let taps_addr = taps.as_ptr() as i64;
    let mut variants: Vec<Variant> = Vec::new();
    if plan.blocking.nb_full > 0 {
        variants.push(plan.blocking.full);
    }
    variants.extend(plan.blocking.tail);
    let mut args = Vec::new();
    for var in &variants {
        for (ci, c) in plan.classes.iter().enumerate() {
            let record = (spec.taps(pairs[c.pair_index]) * plan.pw) as i64;
            args.extend([
                taps_addr + tap_at[ci] as i64 * 8,
                c.taps.len() as i64,
                spec.cig as i64,
                hw_in * 4,
                record * 4,
                hw_out * 4,
                var.channels as i64,
                plan.pw as i64,
                code,
                alpha.to_bits() as i64,
            ]);
        }
    }
    let args = boxed(args);
    let args_addr = args.as_ptr() as i64;
    let ncls = plan.classes.len();

    let mut clif = String::new();
    let mut fns = Vec::new();
    let act_helper = if matches!(k.activation, Activation::Tanh | Activation::Sigmoid) {
        Some(import(module, k.name, ACT_STRIDED_SYMBOL)?)
    } else {
        None
    };
    for (vi, var) in variants.iter().enumerate() {
        for (chi, chunk) in plan.chunks.iter().enumerate() {
            let fname = format!("{}_n{vi}_{chi}", k.name);
            let id = FnCompiler::declare(module, k.name, &fname, 4)?;
            let mut imports = Vec::new();
            for r in chunk {
                imports.push(match r {
                    CvRun::Tiles { contig, .. } => Some(import(module, k.name, &cv_symbol(plan.isa, plan.pw, plan.p, *contig))?),
                    CvRun::Edge { .. } => None,
                });
            }
            let text = fc.define(module, k.name, id, 4, &mut |b, m, params| {
                let (x, out, a, bias) = (params[0], params[1], params[2], params[3]);
                for (r, &imp) in chunk.iter().zip(&imports) {
                    match r {
                        CvRun::Tiles { class, contig: _, count, table } => {
                            let c = &plan.classes[*class];
                            let imp = imp.ok_or_else(|| JitError::codegen(k.name, "tile run without micro-kernel"))?;
                            let f = m.declare_func_in_func(imp, b.func);
                            let a_pair = b.ins().iadd_imm_s(a, (phase_offset(spec, c.pair_index, v) * 4) as i64);
                            let t0 = b.ins().iconst(PTR, tables_addr + *table as i64 * 8);
                            let tv = ptr_var(b, t0);
                            let argp = args_addr + ((vi * ncls + class) * TILE_ARGS_LEN * 8) as i64;
                            let ind = [Induction { var: tv, step: (2 * plan.p * 8) as i64 }];
                            counted_loop(b, *count, &ind, &mut |b| {
                                let t = b.use_var(tv);
                                let ap = b.ins().iconst(PTR, argp);
                                b.ins().call(f, &[a_pair, x, t, out, bias, ap]);
                                Ok(())
                            })?;
                        }
                        CvRun::Edge { class, pixels } => {
                            let c = &plan.classes[*class];
                            let (ph, pwi) = pairs[c.pair_index];
                            let pe = (ACCUMULATORS / v).max(1);
                            let ctx = PhaseCtx {
                                variant: Variant { v, p: pe, channels: var.channels },
                                h_offs: spec.h.phases[ph].taps.iter().map(|t| t.in_off.saturating_mul(spec.in_w as i64)).collect(),
                                w_offs: spec.w.phases[pwi].taps.iter().map(|t| t.in_off).collect(),
                                record: (spec.taps(pairs[c.pair_index]) * plan.pw) as i64,
                                cig: spec.cig,
                                hw_in,
                                hw_out,
                                activation: k.activation,
                            };
                            let w_pair = b.ins().iadd_imm_s(a, (phase_offset(spec, c.pair_index, v) * 4) as i64);
                            for px in pixels.chunks(pe) {
                                emit_block(b, &ctx, &Block { pixels: px.to_vec() }, x, out, w_pair, bias)?;
                            }
                            if let Some(h) = act_helper {
                                let f = m.declare_func_in_func(h, b.func);
                                for px in pixels {
                                    let p = b.ins().iadd_imm_s(out, px.out_off * 4);
                                    let n = b.ins().iconst(PTR, var.channels as i64);
                                    let s = b.ins().iconst(PTR, hw_out);
                                    let cd = b.ins().iconst(PTR, code);
                                    b.ins().call(f, &[p, n, s, cd]);
                                }
                            }
                        }
                    }
                }
                Ok(())
            })?;
            clif.push_str(&text);
            clif.push('\n');
            fns.push(id);
        }
    }

    let nch = plan.chunks.len();
    let np = plan.panels();
    let two = variants.len() == 2;
    let stride = block_stride(spec, &plan.blocking) as i64;
    let (cig, cog, pw) = (spec.cig as i64, spec.cog as i64, plan.pw as i64);
    let (w_addr, b_addr) = (k.weights_addr, k.bias_addr);
    let (entry, text) = emit_entry(fc, module, k.name, nch, &fns, &|b, x0, out, outer, chunk| {
        let g = b.ins().udiv_imm_u(outer, np as i64);
        let panel = b.ins().urem_imm_u(outer, np as i64);
        let t = b.ins().imul_imm_s(g, cig * hw_in * 4);
        let x = b.ins().iadd(x0, t);
        let t = b.ins().imul_imm_s(g, cog * hw_out * 4);
        let o = b.ins().iadd(out, t);
        let t = b.ins().imul_imm_s(panel, pw * hw_out * 4);
        let o = b.ins().iadd(o, t);
        let t = b.ins().imul_imm_s(outer, stride * 4);
        let a = b.ins().iadd_imm_s(t, w_addr);
        let t = b.ins().imul_imm_s(outer, pw * 4);
        let bias = b.ins().iadd_imm_s(t, b_addr);
        let index = if two {
            let is_tail = b.ins().icmp_imm_s(IntCC::Equal, panel, np as i64 - 1);
            let is_tail = b.ins().uextend(PTR, is_tail);
            let off = b.ins().imul_imm_s(is_tail, nch as i64);
            b.ins().iadd(chunk, off)
        } else {
            chunk
        };
        ([x, o, a, bias], index)
    })?;
    clif.push_str(&text);
    Ok(NativeEmitted { entry, clif, tables: vec![tables, taps, args] })
}

/// Emits a pixel-tile kernel.
pub fn emit_pv(fc: &mut FnCompiler, module: &mut JITModule, k: &NativeParams<'_>, plan: &PvPlan) -> Result<NativeEmitted, JitError> {
    let spec = k.spec;
    let pairs = spec.phase_pairs();
    let (code, alpha) = act_code(k.activation);
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let (in_w, out_w) = (spec.in_w as i64, spec.out_w as i64);

    let mut tap_data = Vec::new();
    let mut tap_at = Vec::new();
    for s in &plan.segments {
        tap_at.push(tap_data.len());
        for &(xo, wo, ao) in &s.taps {
            tap_data.extend([xo, wo, ao * 4]);
        }
    }
    let taps = boxed(tap_data);
    let taps_addr = taps.as_ptr() as i64;
    let mut args = Vec::new();
    for (si, s) in plan.segments.iter().enumerate() {
        let (_, pwi) = pairs[s.pair_index];
        args.extend([
            taps_addr + tap_at[si] as i64 * 8,
            s.taps.len() as i64,
            spec.cig as i64,
            hw_in * 4,
            (spec.taps(pairs[s.pair_index]) * LANES * 4) as i64,
            hw_out * 4,
            (spec.w.out_step * 4) as i64,
            spec.w.phases[pwi].count as i64,
            in_w,
            spec.cog as i64,
            code,
            alpha.to_bits() as i64,
        ]);
    }
    let args = boxed(args);
    let args_addr = args.as_ptr() as i64;
    let sym = import(module, k.name, &pv_symbol(plan.isa, plan.nv, plan.c))?;
    let tile = plan.tile_pixels();

    let mut clif = String::new();
    let mut fns = Vec::new();
    for (chi, chunk) in plan.chunks.iter().enumerate() {
        let fname = format!("{}_r{chi}", k.name);
        let id = FnCompiler::declare(module, k.name, &fname, 4)?;
        let text = fc.define(module, k.name, id, 4, &mut |b, m, params| {
            let (x, out, a, bias) = (params[0], params[1], params[2], params[3]);
            let f = m.declare_func_in_func(sym, b.func);
            for (si, rows) in chunk {
                let s = &plan.segments[*si];
                let (ph, pwi) = pairs[s.pair_index];
                let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pwi]);
                let row_in = spec.h.in_step as i64 * in_w * 4;
                let row_out = spec.h.out_step as i64 * out_w * 4;
                let x0 = b.ins().iadd_imm_s(x, rows.start as i64 * row_in);
                let o0 = b.ins().iadd_imm_s(out, ((rows.start * spec.h.out_step + hp.first) as i64 * out_w + wp.first as i64) * 4);
                let a_pair = b.ins().iadd_imm_s(a, (phase_offset(spec, s.pair_index, 1) * 4) as i64);
                let (vx, vo) = (ptr_var(b, x0), ptr_var(b, o0));
                let ind = [Induction { var: vx, step: row_in }, Induction { var: vo, step: row_out }];
                let argp = args_addr + (si * PV_ARGS_LEN * 8) as i64;
                counted_loop(b, rows.len(), &ind, &mut |b| {
                    let (xr, or) = (b.use_var(vx), b.use_var(vo));
                    for q0 in (0..wp.count).step_by(tile) {
                        let q = b.ins().iconst(PTR, q0 as i64);
                        let ap = b.ins().iconst(PTR, argp);
                        b.ins().call(f, &[a_pair, xr, q, or, bias, ap]);
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        clif.push_str(&text);
        clif.push('\n');
        fns.push(id);
    }

    let groups = spec.groups as i64;
    let stride = block_stride(spec, &plan.blocking) as i64;
    let (cig, cog) = (spec.cig as i64, spec.cog as i64);
    let slot = plan.blocking.slot_channels() as i64;
    let (w_addr, b_addr) = (k.weights_addr, k.bias_addr);
    let (entry, text) = emit_entry(fc, module, k.name, plan.chunks.len(), &fns, &|b, x0, out, outer, chunk| {
        // outer = n·groups + g.
        let g = b.ins().urem_imm_u(outer, groups);
        let t = b.ins().imul_imm_s(outer, cig * hw_in * 4);
        let x = b.ins().iadd(x0, t);
        let t = b.ins().imul_imm_s(outer, cog * hw_out * 4);
        let o = b.ins().iadd(out, t);
        let t = b.ins().imul_imm_s(g, stride * 4);
        let a = b.ins().iadd_imm_s(t, w_addr);
        let t = b.ins().imul_imm_s(g, slot * 4);
        let bias = b.ins().iadd_imm_s(t, b_addr);
        ([x, o, a, bias], chunk)
    })?;
    clif.push_str(&text);
    Ok(NativeEmitted { entry, clif, tables: vec![taps, args] })
}
