//! CLIF for native-tier convolutions: the JIT-generated code around calls to
//! the `std::arch` micro-kernels of [`crate::native`].
//!
//! A channel-tile kernel is one entry function: per work item it walks a
//! constant call list (micro-kernel address, weight offset, pixel table,
//! argument block per tile; a class's remainder pixels run as one smaller
//! tile) with indirect calls, so its code, and its compile time, does not grow
//! with the number of tiles. Where the plan packs the input, the entry owns a
//! stack buffer that a native packer fills once per group of tiles. A
//! pixel-tile kernel dispatches to one function per chunk of rows, which runs
//! counted loops of calls whose arguments are immediates. The argument
//! blocks, call lists and pixel tables are returned to the library, which
//! keeps them alive as long as the code.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{FuncRef, InstBuilder, StackSlotData, StackSlotKind, Value};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use super::{counted_loop, data_flags, ptr_var, FnCompiler, Induction, PTR};
use crate::epilogue::Activation;
use crate::error::JitError;
use super::weight_flags;
use crate::native::{self, act_code, cv_symbol, pv_rows_symbol, pv_symbol, PACK_ARGS_LEN, PACK_SYMBOL, PV_ARGS_LEN, TILE_ARGS_LEN};
use crate::pack::{block_stride, phase_offset};
use crate::schedule::{ConvSpec, Variant, LANES};
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
    let sig = FnCompiler::signature(module, 6);
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

/// Fields of one entry of a channel-tile kernel's call list (`i64`s):
/// micro-kernel address, weight byte offset, pixel table address, argument
/// block address, flags ([`FLAG_X_PACKED`], [`FLAG_PACK`]).
const ENTRY_LEN: usize = 5;
/// Entry flag: the tile reads the packed input buffer instead of the input.
const FLAG_X_PACKED: i64 = 1;
/// Entry flag: the entry is the input packer, whose destination (first
/// argument) is the packed buffer.
const FLAG_PACK: i64 = 2;

/// Emits a channel-tile kernel.
///
/// The kernel is one function: per work item it walks a constant list of
/// calls (one entry per tile or pack, see `ENTRY_LEN`) with indirect calls,
/// so its code size does not grow with the number of tiles or classes.
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
    // Argument blocks per (layout, variant, class); layout 1 reads the packed
    // buffer, whose channel stride is the pack stride.
    let mut args = Vec::new();
    let layouts: Vec<i64> = std::iter::once(hw_in * 4).chain(plan.pack.map(|pk| (pk.stride * 4) as i64)).collect();
    for &x_ci in &layouts {
        for var in &variants {
            for (ci, c) in plan.classes.iter().enumerate() {
                let record = (spec.taps(pairs[c.pair_index]) * plan.pw) as i64;
                args.extend([
                    taps_addr + tap_at[ci] as i64 * 8,
                    c.taps.len() as i64,
                    spec.cig as i64,
                    x_ci,
                    record * 4,
                    hw_out * 4,
                    var.channels as i64,
                    plan.pw as i64,
                    code,
                    alpha.to_bits() as i64,
                ]);
            }
        }
    }
    let ncls = plan.classes.len();
    let nvar = variants.len();
    let nch = plan.chunks.len();

    // Micro-kernel addresses by symbol.
    let addrs: std::collections::HashMap<String, i64> =
        native::symbols(plan.isa).into_iter().map(|(n, a)| (n, a as i64)).collect();
    let addr = |name: &str| addrs.get(name).copied().ok_or_else(|| JitError::codegen(k.name, format!("no micro-kernel {name}")));
    // Pack argument blocks go after the tile argument blocks.
    let mut pack_args: Vec<[i64; PACK_ARGS_LEN]> = Vec::new();
    let mut entries: Vec<i64> = Vec::new();
    let mut ranges: Vec<i64> = vec![0];
    let mut pending_pack: Vec<(usize, usize)> = Vec::new();
    let channel_major = (hw_out * 4) % 4096 == 0;
    for vi in 0..nvar {
        for chunk in &plan.chunks {
            for r in chunk {
                match r {
                    CvRun::Pack { lo, span } => {
                        let pk = plan.pack.ok_or_else(|| JitError::codegen(k.name, "pack without buffer"))?;
                        pending_pack.push((entries.len() + 3, pack_args.len()));
                        pack_args.push([lo * 4, *span as i64, spec.cig as i64, hw_in * 4, (pk.stride * 4) as i64]);
                        entries.extend([addr(PACK_SYMBOL)?, 0, 0, 0, FLAG_PACK]);
                    }
                    CvRun::Tiles { class, contig, p, count, table, packed } => {
                        let f = addr(&cv_symbol(plan.isa, plan.pw, *p, *contig, channel_major))?;
                        let c = &plan.classes[*class];
                        let a_off = (phase_offset(spec, c.pair_index, v) * 4) as i64;
                        let layout = usize::from(*packed);
                        let argi = ((layout * nvar + vi) * ncls + class) * TILE_ARGS_LEN;
                        for t in 0..*count {
                            let tbl = tables_addr + ((table + t * 2 * p) * 8) as i64;
                            // Argument address patched below, once `args` is final.
                            entries.extend([f, a_off, tbl, argi as i64, if *packed { FLAG_X_PACKED } else { 0 }]);
                        }
                    }
                }
            }
            ranges.push((entries.len() / ENTRY_LEN) as i64);
        }
    }
    let tile_args_len = args.len();
    for pa in &pack_args {
        args.extend(pa);
    }
    let args = boxed(args);
    let args_addr = args.as_ptr() as i64;
    let mut is_pack = vec![false; entries.len()];
    for &(at, pi) in &pending_pack {
        entries[at] = args_addr + ((tile_args_len + pi * PACK_ARGS_LEN) * 8) as i64;
        is_pack[at] = true;
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if i % ENTRY_LEN == 3 && !is_pack[i] {
            *e = args_addr + *e * 8;
        }
    }
    let entries = boxed(entries);
    let entries_addr = entries.as_ptr() as i64;
    let ranges = boxed(ranges);
    let ranges_addr = ranges.as_ptr() as i64;

    let np = plan.panels();
    let two = nvar == 2;
    let stride = block_stride(spec, &plan.blocking) as i64;
    let (cig, cog, pw) = (spec.cig as i64, spec.cog as i64, plan.pw as i64);
    let (w_addr, b_addr) = (k.weights_addr, k.bias_addr);
    let pack = plan.pack;
    let entry = FnCompiler::declare(module, k.name, k.name, 4)?;
    let clif = fc.define(module, k.name, entry, 4, &mut |b, m, params| {
        let (inputs, out, start, end) = (params[0], params[1], params[2], params[3]);
        let x0 = b.ins().load(PTR, data_flags(), inputs, 0);
        let sig = b.import_signature(FnCompiler::signature(m, 6));
        // The packed input buffer lives in this frame (stack probes are on),
        // so concurrent runs never share it.
        let packed = match pack {
            Some(pk) => {
                let bytes =
                    u32::try_from(pk.bytes(spec.cig)).map_err(|_| JitError::codegen(k.name, "packed input buffer too large"))?;
                let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 6));
                let base = b.ins().stack_addr(PTR, slot, 0);
                Some(b.ins().iadd_imm_s(base, (pk.pre * 4) as i64))
            }
            None => None,
        };
        let item_var = ptr_var(b, start);
        let header = b.create_block();
        let latch = b.create_block();
        let exit = b.create_block();
        let body = b.create_block();
        let nonempty = b.ins().icmp(IntCC::UnsignedLessThan, start, end);
        b.ins().brif(nonempty, header, &[], exit, &[]);

        b.switch_to_block(header);
        let item = b.use_var(item_var);
        let outer = b.ins().udiv_imm_u(item, nch as i64);
        let chunk = b.ins().urem_imm_u(item, nch as i64);
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
        let ro = b.ins().imul_imm_s(index, 8);
        let rp = b.ins().iadd_imm_s(ro, ranges_addr);
        let first = b.ins().load(PTR, weight_flags(), rp, 0);
        let last = b.ins().load(PTR, weight_flags(), rp, 8);
        let e_var = ptr_var(b, first);
        let any = b.ins().icmp(IntCC::UnsignedLessThan, first, last);
        b.ins().brif(any, body, &[], latch, &[]);

        b.switch_to_block(body);
        let e = b.use_var(e_var);
        let eo = b.ins().imul_imm_s(e, (ENTRY_LEN * 8) as i64);
        let ep = b.ins().iadd_imm_s(eo, entries_addr);
        let [fp, a_off, tbl, ap, flags] = [0, 1, 2, 3, 4].map(|f| b.ins().load(PTR, weight_flags(), ep, f * 8));
        let a0 = b.ins().iadd(a, a_off);
        let (p0, p1) = match packed {
            Some(buf) => {
                let xp = b.ins().band_imm_s(flags, FLAG_X_PACKED);
                let p1 = b.ins().select(xp, buf, x);
                let pp = b.ins().band_imm_s(flags, FLAG_PACK);
                let p0 = b.ins().select(pp, buf, a0);
                (p0, p1)
            }
            None => (a0, x),
        };
        b.ins().call_indirect(sig, fp, &[p0, p1, tbl, o, bias, ap]);
        let next = b.ins().iadd_imm_s(e, 1);
        b.def_var(e_var, next);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, next, last);
        b.ins().brif(more, body, &[], latch, &[]);

        b.switch_to_block(latch);
        let next = b.ins().iadd_imm_s(item, 1);
        b.def_var(item_var, next);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, next, end);
        b.ins().brif(more, header, &[], exit, &[]);
        b.switch_to_block(exit);
        Ok(())
    })?;
    Ok(NativeEmitted { entry, clif, tables: vec![tables, taps, args, entries, ranges] })
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
            s.ntw as i64,
            spec.h.in_step as i64 * in_w * 4,
            spec.h.out_step as i64 * out_w * 4,
        ]);
    }
    let args = boxed(args);
    let args_addr = args.as_ptr() as i64;
    let sym = import(module, k.name, &pv_symbol(plan.isa, plan.nv, plan.c))?;
    let sym_rows =
        if plan.rows > 1 { Some(import(module, k.name, &pv_rows_symbol(plan.isa, plan.nv, plan.c, plan.rows))?) } else { None };
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
                let argp = args_addr + (si * PV_ARGS_LEN * 8) as i64;
                // Multi-row tiles first, then the remaining rows one by one.
                let fr = sym_rows.filter(|_| s.pairable).map(|sr| m.declare_func_in_func(sr, b.func));
                let r = plan.rows as i64;
                let (multi, singles) =
                    if fr.is_some() { (rows.len() / plan.rows, rows.len() % plan.rows) } else { (0, rows.len()) };
                for (count, rows_per, func) in [(multi, r, fr), (singles, 1, Some(f))] {
                    let Some(func) = func else { continue };
                    let ind = [
                        Induction { var: vx, step: row_in * rows_per },
                        Induction { var: vo, step: row_out * rows_per },
                    ];
                    counted_loop(b, count, &ind, &mut |b| {
                        let (xr, or) = (b.use_var(vx), b.use_var(vo));
                        for q0 in (0..wp.count).step_by(tile) {
                            let q = b.ins().iconst(PTR, q0 as i64);
                            let ap = b.ins().iconst(PTR, argp);
                            b.ins().call(func, &[a_pair, xr, q, or, bias, ap]);
                        }
                        Ok(())
                    })?;
                    if count == 1 {
                        // `counted_loop` emits one iteration straight-line without
                        // advancing the pointers; the single row comes after it.
                        for ind in &ind {
                            let v = b.use_var(ind.var);
                            let v = b.ins().iadd_imm_s(v, ind.step);
                            b.def_var(ind.var, v);
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

/// Whether the depthwise 2x upsampler ([`crate::native::DW2X_SYMBOL`])
/// computes `spec`: one channel per group, stride 2 with exactly two taps
/// per phase on both axes at input offsets `(-1, 0)` (even outputs) and
/// `(0, +1)` (odd outputs), output exactly twice the input, input rows a
/// multiple of 16 floats (e.g. k4 s2 p1 depthwise). Any activation.
pub fn dw2x_applies(spec: &ConvSpec, _activation: Activation) -> bool {
    let axis_ok = |a: &crate::phase::AxisPlan, out_len: usize| {
        a.out_step == 2
            && a.in_step == 1
            && out_len == 2 * a.in_len
            && a.phases.len() == 2
            && a.phases.iter().enumerate().all(|(i, p)| {
                let offs: Vec<i64> = p.taps.iter().map(|t| t.in_off).collect();
                p.first == i && p.count == a.in_len && offs == [i as i64 - 1, i as i64]
            })
    };
    spec.cig == 1
        && spec.cog == 1
        && axis_ok(&spec.h, spec.out_h)
        && axis_ok(&spec.w, spec.out_w)
        && spec.in_h == spec.h.in_len
        && spec.in_w == spec.w.in_len
        && spec.in_w.is_multiple_of(16)
}

/// Floats per group record of the depthwise 2x upsampler (16 weights, bias, padding).
const DW2X_RECORD: usize = 32;

/// Emits a depthwise 2x upsampler kernel (see [`dw2x_applies`]); one work
/// item per `(n, group)` channel plane.
pub fn emit_dw2x(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    name: &str,
    spec: &ConvSpec,
    weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
    bias: Option<&[f32]>,
    activation: Activation,
) -> Result<NativeEmitted, JitError> {
    let mut rec = vec![0f32; spec.groups * DW2X_RECORD];
    for g in 0..spec.groups {
        let r = &mut rec[g * DW2X_RECORD..(g + 1) * DW2X_RECORD];
        for (hp, php) in spec.h.phases.iter().enumerate() {
            for (ht, th) in php.taps.iter().enumerate() {
                for (wp, pwp) in spec.w.phases.iter().enumerate() {
                    for (wt, tw) in pwp.taps.iter().enumerate() {
                        r[(hp * 2 + ht) * 4 + wp * 2 + wt] = weight(g, 0, 0, th.k, tw.k);
                    }
                }
            }
        }
        r[16] = bias.map_or(0.0, |b| b[g]);
    }
    // Two floats per i64 (native byte order, so the kernel reads them back as f32s).
    let weights = boxed(
        rec.chunks(2)
            .map(|c| i64::from_ne_bytes([c[0].to_ne_bytes(), c[1].to_ne_bytes()].concat().try_into().unwrap_or([0; 8])))
            .collect(),
    );
    let w_addr = weights.as_ptr() as i64;
    let (code, alpha) = act_code(activation);
    let args = boxed(vec![spec.in_h as i64, spec.in_w as i64, code, alpha.to_bits() as i64]);
    let args_addr = args.as_ptr() as i64;
    let sym = import(module, name, native::DW2X_SYMBOL)?;
    let fname = format!("{name}_dw");
    let id = FnCompiler::declare(module, name, &fname, 4)?;
    let mut clif = fc.define(module, name, id, 4, &mut |b, m, params| {
        let (x, out, a, bias) = (params[0], params[1], params[2], params[3]);
        let f = m.declare_func_in_func(sym, b.func);
        let zero = b.ins().iconst(PTR, 0);
        let ap = b.ins().iconst(PTR, args_addr);
        b.ins().call(f, &[a, x, zero, out, bias, ap]);
        Ok(())
    })?;
    clif.push('\n');
    let groups = spec.groups as i64;
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let (entry, text) = emit_entry(fc, module, name, 1, &[id], &|b, x0, out, outer, sel| {
        // outer = n·groups + g; one input and one output channel per group.
        let g = b.ins().urem_imm_u(outer, groups);
        let t = b.ins().imul_imm_s(outer, hw_in * 4);
        let x = b.ins().iadd(x0, t);
        let t = b.ins().imul_imm_s(outer, hw_out * 4);
        let o = b.ins().iadd(out, t);
        let t = b.ins().imul_imm_s(g, (DW2X_RECORD * 4) as i64);
        let a = b.ins().iadd_imm_s(t, w_addr);
        ([x, o, a, a], sel)
    })?;
    clif.push_str(&text);
    Ok(NativeEmitted { entry, clif, tables: vec![weights, args] })
}

/// Whether the single-output-channel stride-3 kernel
/// ([`crate::native::S3K9_SYMBOL`]) computes `spec`: one output channel per
/// group, stride 3 on both axes with three phases of three taps each at
/// input offsets `-1..=1`, `-1..=1`, `0..=2` (e.g. k9 s3 p4 op2, FSRCNN's
/// last layer), output exactly three times the input, input rows a multiple
/// of 32 floats. Any activation.
pub fn s3k9_applies(spec: &ConvSpec, _activation: Activation) -> bool {
    let axis_ok = |a: &crate::phase::AxisPlan, out_len: usize| {
        a.out_step == 3
            && a.in_step == 1
            && out_len == 3 * a.in_len
            && a.phases.len() == 3
            && a.phases.iter().enumerate().all(|(i, p)| {
                let offs: Vec<i64> = p.taps.iter().map(|t| t.in_off).collect();
                let base = if i == 2 { 0 } else { -1 };
                p.first == i && p.count == a.in_len && offs == [base, base + 1, base + 2]
            })
    };
    spec.cog == 1
        && spec.cig >= 1
        && axis_ok(&spec.h, spec.out_h)
        && axis_ok(&spec.w, spec.out_w)
        && spec.in_h == spec.h.in_len
        && spec.in_w == spec.w.in_len
        && spec.in_w.is_multiple_of(32)
}

/// Output row groups per work item of the stride-3 kernel.
pub fn s3k9_rows_per_item(spec: &ConvSpec) -> usize {
    spec.in_h.div_ceil(8).max(1)
}

/// Emits the single-output-channel stride-3 kernel (see [`s3k9_applies`]);
/// work items are `(n, group, row block)`.
pub fn emit_s3k9(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    name: &str,
    spec: &ConvSpec,
    weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
    bias: Option<&[f32]>,
    activation: Activation,
) -> Result<(NativeEmitted, usize), JitError> {
    let cig = spec.cig;
    let rec_len = (cig * 81).next_multiple_of(2);
    let mut rec = vec![0f32; spec.groups * rec_len];
    for g in 0..spec.groups {
        let r = &mut rec[g * rec_len..(g + 1) * rec_len];
        for ci in 0..cig {
            for (hp, php) in spec.h.phases.iter().enumerate() {
                for (ht, th) in php.taps.iter().enumerate() {
                    for (wp, pwp) in spec.w.phases.iter().enumerate() {
                        for (wt, tw) in pwp.taps.iter().enumerate() {
                            r[ci * 81 + ((hp * 3 + ht) * 3 + wp) * 3 + wt] = weight(g, ci, 0, th.k, tw.k);
                        }
                    }
                }
            }
        }
    }
    let weights = boxed(
        rec.chunks(2)
            .map(|c| i64::from_ne_bytes([c[0].to_ne_bytes(), c[1].to_ne_bytes()].concat().try_into().unwrap_or([0; 8])))
            .collect(),
    );
    let w_addr = weights.as_ptr() as i64;
    let (code, alpha) = act_code(activation);
    let rb = s3k9_rows_per_item(spec);
    let blocks = spec.in_h.div_ceil(rb);
    // One args record per group (the bias differs).
    let mut av = Vec::with_capacity(spec.groups * 8);
    for g in 0..spec.groups {
        let b = bias.map_or(0.0, |b| b[g]);
        av.extend([spec.in_h as i64, spec.in_w as i64, cig as i64, code, alpha.to_bits() as i64, rb as i64, b.to_bits() as i64, 0]);
    }
    let args = boxed(av);
    let args_addr = args.as_ptr() as i64;
    let sym = import(module, name, native::S3K9_SYMBOL)?;
    let fname = format!("{name}_s3");
    let id = FnCompiler::declare(module, name, &fname, 4)?;
    let mut clif = fc.define(module, name, id, 4, &mut |b, m, params| {
        let (x, out, a, ab) = (params[0], params[1], params[2], params[3]);
        let f = m.declare_func_in_func(sym, b.func);
        // ab = block · 2^32 + group: split.
        let blk = b.ins().ushr_imm_u(ab, 32);
        let g = b.ins().band_imm_u(ab, 0xFFFF_FFFF);
        let t = b.ins().imul_imm_s(g, 64);
        let ap = b.ins().iadd_imm_s(t, args_addr);
        let zero = b.ins().iconst(PTR, 0);
        b.ins().call(f, &[a, x, blk, out, zero, ap]);
        Ok(())
    })?;
    clif.push('\n');
    let groups = spec.groups as i64;
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let (entry, text) = emit_entry(fc, module, name, blocks, &[id], &|b, x0, out, outer, sel| {
        // outer = n·groups + g; cig input channels and one output channel per group.
        let g = b.ins().urem_imm_u(outer, groups);
        let t = b.ins().imul_imm_s(outer, cig as i64 * hw_in * 4);
        let x = b.ins().iadd(x0, t);
        let t = b.ins().imul_imm_s(outer, hw_out * 4);
        let o = b.ins().iadd(out, t);
        let t = b.ins().imul_imm_s(g, (rec_len * 4) as i64);
        let a = b.ins().iadd_imm_s(t, w_addr);
        let t = b.ins().ishl_imm_u(sel, 32);
        let ab = b.ins().bor(t, g);
        let zero = b.ins().iconst(PTR, 0);
        ([x, o, a, ab], zero)
    })?;
    clif.push_str(&text);
    Ok((NativeEmitted { entry, clif, tables: vec![weights, args] }, blocks))
}
