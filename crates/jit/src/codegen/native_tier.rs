//! CLIF for native-tier convolutions: the JIT-generated code around calls to
//! the `std::arch` micro-kernels of [`crate::microkernel`].
//!
//! A channel-tile kernel is one entry function: per work item it walks a
//! constant call list ([`CallEntry`]: micro-kernel address, weight offset,
//! pixel table, argument record per tile; a class's remainder pixels run as
//! one smaller tile) with indirect calls, so its code, and its compile time,
//! does not grow with the number of tiles. Where the plan packs the input,
//! the entry owns a stack buffer that the packer fills once per group of
//! tiles. A pixel-tile kernel dispatches to one function per chunk of rows,
//! which runs counted loops of calls whose arguments are immediates. The
//! argument records, call lists and pixel tables are returned to the library
//! as [`ConstData`], which keeps them alive as long as the code.
//!
//! Every record is built as its `#[repr(C)]` type from
//! [`crate::microkernel::abi`]; every micro-kernel address comes from the
//! typed [`table`] (an instantiation missing from it is an error here).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{FuncRef, InstBuilder, SigRef, StackSlotData, StackSlotKind, Value};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};

use super::weight_flags;
use super::{counted_loop, data_flags, ptr_var, ConstData, FnCompiler, Induction, PTR};
use crate::epilogue::Activation;
use crate::error::JitError;
use crate::microkernel::abi::{CallEntry, Dw2xArgs, FillArgs, PackArgs, PvArgs, S3k9Args, TileArgs};
use crate::microkernel::{act_code, table};
use crate::pack::{block_stride, phase_offset};
use crate::schedule::{ConvSpec, Variant, LANES};
use crate::tiling::{CvPlan, CvRun, PvPlan};

/// A native kernel: entry function, CLIF text, and the constant tables its code points into.
pub struct NativeEmitted {
    /// Entry `(inputs, out, start, end)`.
    pub entry: FuncId,
    /// CLIF of every function.
    pub clif: String,
    /// Pixel tables, tap lists, argument records (addresses are baked into the code).
    pub tables: Vec<ConstData>,
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

/// The `n`-pointer-argument signature, imported into the function being built.
fn sig(b: &mut FunctionBuilder, m: &JITModule, n: usize) -> SigRef {
    b.import_signature(FnCompiler::signature(m, n))
}

fn missing(kernel: &str, what: String) -> JitError {
    JitError::codegen(kernel, format!("no micro-kernel instantiated for {what}"))
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
///
/// The kernel is one function: per work item it walks a constant list of
/// calls (one [`CallEntry`] per tile or pack) with indirect calls, so its
/// code size does not grow with the number of tiles or classes.
pub fn emit_cv(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    k: &NativeParams<'_>,
    plan: &CvPlan,
) -> Result<NativeEmitted, JitError> {
    let spec = k.spec;
    let pairs = spec.phase_pairs();
    let (code, alpha) = act_code(k.activation);
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let v = plan.pw / LANES;

    let (tables, tables_addr) = ConstData::new(plan.tables.clone(), 0i64);
    let mut tap_data = Vec::new();
    let mut tap_at = Vec::new();
    for c in &plan.classes {
        tap_at.push(tap_data.len());
        for &(xo, ao) in &c.taps {
            tap_data.push(xo * 4);
            tap_data.push(ao * 4);
        }
    }
    let (taps, taps_addr) = ConstData::new(tap_data, 0i64);
    let mut variants: Vec<Variant> = Vec::new();
    if plan.blocking.nb_full > 0 {
        variants.push(plan.blocking.full);
    }
    variants.extend(plan.blocking.tail);
    // Argument records per (input-channel block, layout, variant, class);
    // layout 1 reads the packed buffer, whose channel stride is the pack
    // stride. A block after the first adds to the output's partial sums, and
    // only the last activates.
    let mut args: Vec<TileArgs> = Vec::new();
    let layouts: Vec<i64> = std::iter::once(hw_in * 4).chain(plan.pack.map(|pk| (pk.stride * 4) as i64)).collect();
    let nkb = plan.kblocks.len();
    let (none, _) = act_code(crate::epilogue::Activation::Identity);
    for (kb, block) in plan.kblocks.iter().enumerate() {
        for (layout, &x_ci) in layouts.iter().enumerate() {
            for var in &variants {
                for (ci, c) in plan.classes.iter().enumerate() {
                    let record = (spec.taps(pairs[c.pair_index]) * plan.pw) as i64;
                    args.push(TileArgs {
                        taps: (taps_addr + tap_at[ci] as i64 * 8) as *const i64,
                        nt: c.taps.len() as i64,
                        cig: block.len() as i64,
                        x_ci,
                        a_ci: record * 4,
                        oc: hw_out * 4,
                        nc: var.channels as i64,
                        pw: plan.pw as i64,
                        act: if kb + 1 == nkb { code } else { none },
                        alpha: alpha.to_bits() as i64,
                        // The packed buffer holds only this block's channels.
                        x_off: if layout == 0 { block.start as i64 * hw_in * 4 } else { 0 },
                        acc: i64::from(kb > 0),
                    });
                }
            }
        }
    }
    let (args, args_addr) = ConstData::new(
        args,
        TileArgs {
            taps: std::ptr::null(),
            nt: 0,
            cig: 0,
            x_ci: 0,
            a_ci: 0,
            oc: 0,
            nc: 0,
            pw: 0,
            act: 0,
            alpha: 0,
            x_off: 0,
            acc: 0,
        },
    );
    let tile_args = |i: usize| args_addr + (i * std::mem::size_of::<TileArgs>()) as i64;
    let ncls = plan.classes.len();
    let nvar = variants.len();

    // Hole fills: row lists `(row start byte offset, first mask index)` and
    // the row masks; one record per (variant, fill run), addressed like the
    // pack records once their box exists.
    let fill = plan.fill.clone().unwrap_or_default();
    let (masks, masks_addr) = ConstData::new(fill.masks.clone(), 0i64);
    let fill_rows: Vec<i64> = fill.rows.iter().flat_map(|&(start, at)| [start * 4, at as i64]).collect();
    let (fill_rows, fill_rows_addr) = ConstData::new(fill_rows, 0i64);
    let mut fill_args: Vec<FillArgs> = Vec::new();
    let mut fill_entries: Vec<(usize, usize)> = Vec::new();
    // Pack records are collected first and addressed once their box exists.
    let mut pack_args: Vec<PackArgs> = Vec::new();
    let mut entries: Vec<CallEntry> = Vec::new();
    let mut pack_entries: Vec<(usize, usize)> = Vec::new();
    let mut ranges: Vec<i64> = vec![0];
    let channel_major = (hw_out * 4) % 4096 == 0;
    let pack_fn = table::pack() as usize as i64;
    for (vi, var) in variants.iter().enumerate() {
        for chunk in &plan.chunks {
            for (kb, block) in plan.kblocks.iter().enumerate() {
                for r in chunk {
                    match r {
                        // Holes get the bias once, with the first block.
                        CvRun::Fill { .. } if kb > 0 => {}
                        CvRun::Pack { lo, span } => {
                            let pk = plan.pack.ok_or_else(|| JitError::codegen(k.name, "pack without buffer"))?;
                            pack_entries.push((entries.len(), pack_args.len()));
                            pack_args.push(PackArgs {
                                off: (lo + block.start as i64 * hw_in) * 4,
                                span: *span as i64,
                                channels: block.len() as i64,
                                src_stride: hw_in * 4,
                                dst_stride: (pk.stride * 4) as i64,
                            });
                            entries.push(CallEntry {
                                func: pack_fn,
                                weight_off: 0,
                                table: 0,
                                args: 0,
                                flags: CallEntry::PACK,
                            });
                        }
                        CvRun::Fill { rows } => {
                            let f = table::fill(plan.isa).ok_or_else(|| missing(k.name, "a hole fill".into()))?;
                            fill_entries.push((entries.len(), fill_args.len()));
                            fill_args.push(FillArgs {
                                rows: rows.len() as i64,
                                blocks: fill.blocks as i64,
                                masks: masks_addr as *const i64,
                                nc: var.channels as i64,
                                oc: hw_out * 4,
                                act: code,
                                alpha: alpha.to_bits() as i64,
                            });
                            entries.push(CallEntry {
                                func: f as usize as i64,
                                weight_off: 0,
                                table: fill_rows_addr + (rows.start * 16) as i64,
                                args: 0,
                                flags: 0,
                            });
                        }
                        CvRun::Tiles { class, contig, p, count, table: tbl0, packed } => {
                            let f = table::cv(plan.isa, plan.pw, *p, *contig, channel_major).ok_or_else(|| {
                                missing(
                                    k.name,
                                    format!("a {:?} channel tile of {} channels × {p} pixels", plan.isa, plan.pw),
                                )
                            })?;
                            let c = &plan.classes[*class];
                            let record = spec.taps(pairs[c.pair_index]) * plan.pw;
                            let weight_off = ((phase_offset(spec, c.pair_index, v) + block.start * record) * 4) as i64;
                            let layout = usize::from(*packed);
                            let argi = ((kb * layouts.len() + layout) * nvar + vi) * ncls + class;
                            for t in 0..*count {
                                entries.push(CallEntry {
                                    func: f as usize as i64,
                                    weight_off,
                                    table: tables_addr + ((tbl0 + t * 2 * p) * 8) as i64,
                                    args: tile_args(argi),
                                    flags: if *packed { CallEntry::X_PACKED } else { 0 },
                                });
                            }
                        }
                    }
                }
            }
            ranges.push(entries.len() as i64);
        }
    }
    let (pack_data, pack_addr) =
        ConstData::new(pack_args, PackArgs { off: 0, span: 0, channels: 0, src_stride: 0, dst_stride: 0 });
    for &(e, pi) in &pack_entries {
        entries[e].args = pack_addr + (pi * std::mem::size_of::<PackArgs>()) as i64;
    }
    let (fill_data, fill_addr) = ConstData::new(
        fill_args,
        FillArgs { rows: 0, blocks: 0, masks: std::ptr::null(), nc: 0, oc: 0, act: 0, alpha: 0 },
    );
    for &(e, fi) in &fill_entries {
        entries[e].args = fill_addr + (fi * std::mem::size_of::<FillArgs>()) as i64;
    }
    let nch = plan.chunks.len();
    let (entries, entries_addr) =
        ConstData::new(entries, CallEntry { func: 0, weight_off: 0, table: 0, args: 0, flags: 0 });
    let (ranges, ranges_addr) = ConstData::new(ranges, 0i64);

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
        let tile_sig = sig(b, m, 6);
        let pack_sig = sig(b, m, 3);
        // The packed input buffer lives in this frame (stack probes are on),
        // so concurrent runs never share it.
        let packed = match pack {
            Some(pk) => {
                let bytes = u32::try_from(pk.bytes(spec.cig))
                    .map_err(|_| JitError::codegen(k.name, "packed input buffer too large"))?;
                let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 6));
                Some(b.ins().stack_addr(PTR, slot, 0))
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
        let eo = b.ins().imul_imm_s(e, std::mem::size_of::<CallEntry>() as i64);
        let ep = b.ins().iadd_imm_s(eo, entries_addr);
        let field = |b: &mut FunctionBuilder, off: i32| b.ins().load(PTR, weight_flags(), ep, off);
        let fp = field(b, CallEntry::FUNC_OFFSET);
        let a_off = field(b, CallEntry::WEIGHT_OFFSET);
        let tbl = field(b, CallEntry::TABLE_OFFSET);
        let ap = field(b, CallEntry::ARGS_OFFSET);
        let a0 = b.ins().iadd(a, a_off);
        let next_block = b.create_block();
        match packed {
            Some(buf) => {
                let flags = field(b, CallEntry::FLAGS_OFFSET);
                let tile_block = b.create_block();
                let pack_block = b.create_block();
                let is_pack = b.ins().band_imm_s(flags, CallEntry::PACK);
                b.ins().brif(is_pack, pack_block, &[], tile_block, &[]);
                b.switch_to_block(pack_block);
                b.ins().call_indirect(pack_sig, fp, &[buf, x, ap]);
                b.ins().jump(next_block, &[]);
                b.switch_to_block(tile_block);
                let xp = b.ins().band_imm_s(flags, CallEntry::X_PACKED);
                let p1 = b.ins().select(xp, buf, x);
                b.ins().call_indirect(tile_sig, fp, &[a0, p1, tbl, o, bias, ap]);
                b.ins().jump(next_block, &[]);
            }
            None => {
                b.ins().call_indirect(tile_sig, fp, &[a0, x, tbl, o, bias, ap]);
                b.ins().jump(next_block, &[]);
            }
        }
        b.switch_to_block(next_block);
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
    // What `--emit clif` reports of the schedule beyond the code.
    let clif = if nkb > 1 {
        let sizes: Vec<String> = plan.kblocks.iter().map(|b| b.len().to_string()).collect();
        format!("; input-channel blocks: {nkb} ({} channels)\n{clif}", sizes.join("+"))
    } else {
        clif
    };
    Ok(NativeEmitted {
        entry,
        clif,
        tables: vec![tables, taps, args, pack_data, masks, fill_rows, fill_data, entries, ranges],
    })
}

/// Emits a pixel-tile kernel.
pub fn emit_pv(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    k: &NativeParams<'_>,
    plan: &PvPlan,
) -> Result<NativeEmitted, JitError> {
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
    let (taps, taps_addr) = ConstData::new(tap_data, 0i64);
    let mut args: Vec<PvArgs> = Vec::new();
    for (si, s) in plan.segments.iter().enumerate() {
        let (_, pwi) = pairs[s.pair_index];
        args.push(PvArgs {
            taps: (taps_addr + tap_at[si] as i64 * 8) as *const i64,
            nt: s.taps.len() as i64,
            cig: spec.cig as i64,
            x_ci: hw_in * 4,
            a_ci: (spec.taps(pairs[s.pair_index]) * LANES * 4) as i64,
            oc: hw_out * 4,
            osw: (spec.w.out_step * 4) as i64,
            nq: spec.w.phases[pwi].count as i64,
            in_w,
            nc: spec.cog as i64,
            act: code,
            alpha: alpha.to_bits() as i64,
            ntw: s.ntw as i64,
            row_in: spec.h.in_step as i64 * in_w * 4,
            row_out: spec.h.out_step as i64 * out_w * 4,
        });
    }
    let filler = PvArgs {
        taps: std::ptr::null(),
        ..args.first().copied().unwrap_or(PvArgs {
            taps: std::ptr::null(),
            nt: 0,
            cig: 0,
            x_ci: 0,
            a_ci: 0,
            oc: 0,
            osw: 0,
            nq: 0,
            in_w: 0,
            nc: 0,
            act: 0,
            alpha: 0,
            ntw: 0,
            row_in: 0,
            row_out: 0,
        })
    };
    let (args, args_addr) = ConstData::new(args, filler);
    let single = table::pv(plan.isa, plan.nv, plan.c, 1).ok_or_else(|| {
        missing(k.name, format!("a {:?} pixel tile of {} vectors × {} channels", plan.isa, plan.nv, plan.c))
    })?;
    let multi = if plan.rows > 1 {
        Some(table::pv(plan.isa, plan.nv, plan.c, plan.rows).ok_or_else(|| {
            missing(
                k.name,
                format!("a {:?} {}-row pixel tile of {} vectors × {} channels", plan.isa, plan.rows, plan.nv, plan.c),
            )
        })?)
    } else {
        None
    };
    let tile = plan.tile_pixels();

    let mut clif = String::new();
    let mut fns = Vec::new();
    for (chi, chunk) in plan.chunks.iter().enumerate() {
        let fname = format!("{}_r{chi}", k.name);
        let id = FnCompiler::declare(module, k.name, &fname, 4)?;
        let text = fc.define(module, k.name, id, 4, &mut |b, m, params| {
            let (x, out, a, bias) = (params[0], params[1], params[2], params[3]);
            let tile_sig = sig(b, m, 6);
            for (si, rows) in chunk {
                let s = &plan.segments[*si];
                let (ph, pwi) = pairs[s.pair_index];
                let (hp, wp) = (&spec.h.phases[ph], &spec.w.phases[pwi]);
                let row_in = spec.h.in_step as i64 * in_w * 4;
                let row_out = spec.h.out_step as i64 * out_w * 4;
                let x0 = b.ins().iadd_imm_s(x, rows.start as i64 * row_in);
                let o0 = b
                    .ins()
                    .iadd_imm_s(out, ((rows.start * spec.h.out_step + hp.first) as i64 * out_w + wp.first as i64) * 4);
                let a_pair = b.ins().iadd_imm_s(a, (phase_offset(spec, s.pair_index, 1) * 4) as i64);
                let (vx, vo) = (ptr_var(b, x0), ptr_var(b, o0));
                let argp = args_addr + (si * std::mem::size_of::<PvArgs>()) as i64;
                // Multi-row tiles first, then the remaining rows one by one.
                let fr = multi.filter(|_| s.pairable);
                let r = plan.rows as i64;
                let (n_multi, n_single) =
                    if fr.is_some() { (rows.len() / plan.rows, rows.len() % plan.rows) } else { (0, rows.len()) };
                for (count, rows_per, func) in [(n_multi, r, fr), (n_single, 1, Some(single))] {
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
                            let fp = b.ins().iconst(PTR, func as usize as i64);
                            b.ins().call_indirect(tile_sig, fp, &[a_pair, xr, q, or, bias, ap]);
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

/// Whether the depthwise 2x upsampler (`microkernel::special::dw2x512`)
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
    let (weights, w_addr) = ConstData::new(rec, 0f32);
    let (code, alpha) = act_code(activation);
    let (args, args_addr) = ConstData::new(
        vec![Dw2xArgs { in_h: spec.in_h as i64, in_w: spec.in_w as i64, act: code, alpha: alpha.to_bits() as i64 }],
        Dw2xArgs { in_h: 0, in_w: 0, act: 0, alpha: 0 },
    );
    let dw = table::dw2x().ok_or_else(|| missing(name, "the depthwise 2x upsampler".into()))?;
    let fname = format!("{name}_dw");
    let id = FnCompiler::declare(module, name, &fname, 4)?;
    let mut clif = fc.define(module, name, id, 4, &mut |b, m, params| {
        let (x, out, a) = (params[0], params[1], params[2]);
        let dw_sig = sig(b, m, 4);
        let ap = b.ins().iconst(PTR, args_addr);
        let fp = b.ins().iconst(PTR, dw as usize as i64);
        b.ins().call_indirect(dw_sig, fp, &[a, x, out, ap]);
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
/// (`microkernel::special::s3k9_512`) computes `spec`: one output channel per
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
    let (weights, w_addr) = ConstData::new(rec, 0f32);
    let (code, alpha) = act_code(activation);
    let rb = s3k9_rows_per_item(spec);
    let blocks = spec.in_h.div_ceil(rb);
    // One record per group (the bias differs).
    let records: Vec<S3k9Args> = (0..spec.groups)
        .map(|g| S3k9Args {
            in_h: spec.in_h as i64,
            in_w: spec.in_w as i64,
            cig: cig as i64,
            act: code,
            alpha: alpha.to_bits() as i64,
            rows_per_item: rb as i64,
            bias: bias.map_or(0.0, |b| b[g]).to_bits() as i64,
        })
        .collect();
    let filler = S3k9Args { in_h: 0, in_w: 0, cig: 0, act: 0, alpha: 0, rows_per_item: 0, bias: 0 };
    let (args, args_addr) = ConstData::new(records, filler);
    let s3 = table::s3k9().ok_or_else(|| missing(name, "the stride-3 kernel".into()))?;
    let fname = format!("{name}_s3");
    let id = FnCompiler::declare(module, name, &fname, 4)?;
    let mut clif = fc.define(module, name, id, 4, &mut |b, m, params| {
        let (x, out, a, ab) = (params[0], params[1], params[2], params[3]);
        let s3_sig = sig(b, m, 5);
        // ab = block · 2^32 + group: split.
        let blk = b.ins().ushr_imm_u(ab, 32);
        let g = b.ins().band_imm_u(ab, 0xFFFF_FFFF);
        let t = b.ins().imul_imm_s(g, std::mem::size_of::<S3k9Args>() as i64);
        let ap = b.ins().iadd_imm_s(t, args_addr);
        let fp = b.ins().iconst(PTR, s3 as usize as i64);
        b.ins().call_indirect(s3_sig, fp, &[a, x, blk, out, ap]);
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
