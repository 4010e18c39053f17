//! CLIF for (transposed) convolutions from a [`crate::schedule`] schedule.
//!
//! One kernel is one entry function plus one function per (block variant,
//! phase pair). The entry walks its work items `(n, group, channel block)` and
//! calls the phase functions; a phase function walks the schedule's regions,
//! and each block runs the input-channel reduction in registers:
//! `LANES·v` output channels × `p` pixels of `f32x4` accumulators, initialised
//! with the bias, fed by one broadcast input value per pixel and tap against
//! `v` packed weight vectors (`fma`). All shapes, offsets and trip counts are
//! immediates. This module decides nothing about blocking or loop structure.

use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module};

use super::activation::{self, Helpers};
use super::{counted_loop, data_flags, input_flags, ptr_var, weight_flags, FnCompiler, Induction, PTR};
use crate::epilogue::Activation;
use crate::error::JitError;
use crate::pack::{block_stride, phase_offset};
use crate::schedule::{block_cost, phase_regions, union_ranges, Block, Blocking, ConvSpec, Region, Variant, LANES};

/// Everything the emitter needs about one convolution kernel.
pub struct ConvKernel<'a> {
    /// Kernel name, used as symbol prefix and in errors.
    pub name: &'a str,
    /// The correlation to compute.
    pub spec: &'a ConvSpec,
    /// Channel blocking (must match the packed weights).
    pub blocking: &'a Blocking,
    /// Address of the packed weights.
    pub weights_addr: i64,
    /// Address of the packed bias.
    pub bias_addr: i64,
    /// Activation applied after the bias.
    pub activation: Activation,
}

/// Result of emitting a kernel.
pub struct Emitted {
    /// Entry function `(inputs: *const *const f32, out: *mut f32, start: usize, end: usize)`.
    pub entry: FuncId,
    /// CLIF text of every function of the kernel.
    pub clif: String,
}

/// Immutable per-phase facts used while emitting blocks.
pub(crate) struct PhaseCtx {
    pub(crate) variant: Variant,
    /// Input offset (floats) of each vertical tap: `in_off·in_w`.
    pub(crate) h_offs: Vec<i64>,
    /// Input offset (floats) of each horizontal tap.
    pub(crate) w_offs: Vec<i64>,
    /// Floats of packed weights per input channel in this phase.
    pub(crate) record: i64,
    pub(crate) cig: usize,
    pub(crate) hw_in: i64,
    pub(crate) hw_out: i64,
    pub(crate) activation: Activation,
}

/// Emits the whole kernel into `module`.
pub fn emit(
    fc: &mut FnCompiler,
    module: &mut JITModule,
    helpers: &Helpers,
    k: &ConvKernel<'_>,
) -> Result<Emitted, JitError> {
    let spec = k.spec;
    let mut variants: Vec<Variant> = Vec::new();
    if k.blocking.nb_full > 0 {
        variants.push(k.blocking.full);
    }
    if let Some(t) = k.blocking.tail {
        variants.push(t);
    }
    let pairs = spec.phase_pairs();
    let mut clif = String::new();
    let mut phase_fns: Vec<Vec<FuncId>> = Vec::new();
    for (vi, &variant) in variants.iter().enumerate() {
        let mut fns = Vec::new();
        for (pi, &pair) in pairs.iter().enumerate() {
            let fname = format!("{}_v{}_p{}", k.name, vi, pi);
            let id = FnCompiler::declare(module, k.name, &fname, 4)?;
            let (ph, pw) = pair;
            let ctx = PhaseCtx {
                variant,
                h_offs: spec.h.phases[ph].taps.iter().map(|t| t.in_off.saturating_mul(spec.in_w as i64)).collect(),
                w_offs: spec.w.phases[pw].taps.iter().map(|t| t.in_off).collect(),
                record: (spec.taps(pair) * LANES * variant.v) as i64,
                cig: spec.cig,
                hw_in: (spec.in_h * spec.in_w) as i64,
                hw_out: (spec.out_h * spec.out_w) as i64,
                activation: k.activation,
            };
            let regions = phase_regions(spec, pair, variant.p);
            let w_off = (phase_offset(spec, pi, variant.v) * 4) as i64;
            let chunks = chunk_regions(&regions, variant.v);
            for (ci, chunk) in chunks.iter().enumerate() {
                let id = if ci == 0 { id } else { FnCompiler::declare(module, k.name, &format!("{fname}_c{ci}"), 4)? };
                let text = fc.define(module, k.name, id, 4, &mut |b, _m, params| {
                    let w = b.ins().iadd_imm_s(params[2], w_off);
                    for r in chunk.iter() {
                        emit_region(b, &ctx, r, params[0], params[1], w, params[3])?;
                    }
                    Ok(())
                })?;
                clif.push_str(&text);
                clif.push('\n');
                fns.push(id);
            }
        }
        phase_fns.push(fns);
    }

    let entry = FnCompiler::declare(module, k.name, k.name, 4)?;
    let nb = k.blocking.blocks();
    let slot = k.blocking.slot_channels();
    let stride = block_stride(spec, k.blocking);
    let hw_in = (spec.in_h * spec.in_w) as i64;
    let hw_out = (spec.out_h * spec.out_w) as i64;
    let text = fc.define(module, k.name, entry, 4, &mut |b, m, params| {
        let (inputs, out, start, end) = (params[0], params[1], params[2], params[3]);
        let x0 = b.ins().load(PTR, data_flags(), inputs, 0);
        let refs: Vec<Vec<_>> =
            phase_fns.iter().map(|fns| fns.iter().map(|&f| m.declare_func_in_func(f, b.func)).collect()).collect();
        let item_var = ptr_var(b, start);
        let header = b.create_block();
        let latch = b.create_block();
        let exit = b.create_block();
        let nonempty = b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan, start, end);
        b.ins().brif(nonempty, header, &[], exit, &[]);
        b.switch_to_block(header);
        let item = b.use_var(item_var);
        let per_n = (spec.groups * nb) as i64;
        let n = b.ins().udiv_imm_u(item, per_n);
        let rem = b.ins().urem_imm_u(item, per_n);
        let g = b.ins().udiv_imm_u(rem, nb as i64);
        let blk = b.ins().urem_imm_u(rem, nb as i64);
        let cin = (spec.groups * spec.cig) as i64;
        let cout = (spec.groups * spec.cog) as i64;
        let t = b.ins().imul_imm_s(n, cin * hw_in * 4);
        let x = b.ins().iadd(x0, t);
        let t = b.ins().imul_imm_s(g, spec.cig as i64 * hw_in * 4);
        let x = b.ins().iadd(x, t);
        let t = b.ins().imul_imm_s(n, cout * hw_out * 4);
        let o = b.ins().iadd(out, t);
        let t = b.ins().imul_imm_s(g, spec.cog as i64 * hw_out * 4);
        let o = b.ins().iadd(o, t);
        let t = b.ins().imul_imm_s(blk, slot as i64 * hw_out * 4);
        let o = b.ins().iadd(o, t);
        let gi = b.ins().imul_imm_s(g, nb as i64);
        let bi = b.ins().iadd(gi, blk);
        let t = b.ins().imul_imm_s(bi, stride as i64 * 4);
        let w = b.ins().iadd_imm_s(t, k.weights_addr);
        let t = b.ins().imul_imm_s(bi, slot as i64 * 4);
        let bias = b.ins().iadd_imm_s(t, k.bias_addr);
        let call_variant = |b: &mut FunctionBuilder, m: &mut JITModule, vi: usize| {
            for &f in &refs[vi] {
                b.ins().call(f, &[x, o, w, bias]);
            }
            let len = b.ins().iconst(PTR, variants[vi].channels as i64 * hw_out);
            helpers.call(b, m, k.activation, o, len);
            b.ins().jump(latch, &[]);
        };
        if variants.len() == 2 {
            let full_blk = b.create_block();
            let tail_blk = b.create_block();
            let is_tail = b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::Equal, blk, nb as i64 - 1);
            b.ins().brif(is_tail, tail_blk, &[], full_blk, &[]);
            b.switch_to_block(full_blk);
            call_variant(b, m, 0);
            b.switch_to_block(tail_blk);
            call_variant(b, m, 1);
        } else {
            call_variant(b, m, 0);
        }
        b.switch_to_block(latch);
        let next = b.ins().iadd_imm_s(item, 1);
        b.def_var(item_var, next);
        let more = b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan, next, end);
        b.ins().brif(more, header, &[], exit, &[]);
        b.switch_to_block(exit);
        Ok(())
    })?;
    clif.push_str(&text);
    Ok(Emitted { entry, clif })
}

/// Most estimated instructions ([`block_cost`]) per emitted function.
/// Cranelift's compile time grows faster than linearly with a function's
/// size (register allocation over one huge body: a 40x40 dilated kernel whose
/// every output pixel is a border region took 81 s as one function), so a
/// phase whose regions exceed this is split into several functions, each
/// called in turn by the entry; the split costs one call per chunk.
pub(crate) const MAX_FUNCTION_INSTRUCTIONS: u64 = 8_000;

/// Consecutive runs of `regions` of at most [`MAX_FUNCTION_INSTRUCTIONS`]
/// each (a single larger region keeps a function of its own). Never empty:
/// a phase without regions still gets its (empty) function.
fn chunk_regions(regions: &[Region], v: usize) -> Vec<&[Region]> {
    let mut chunks = Vec::new();
    let (mut start, mut cost) = (0, 0u64);
    for (i, r) in regions.iter().enumerate() {
        let c: u64 = r.blocks().map(|b| block_cost(b, v)).sum();
        if i > start && cost.saturating_add(c) > MAX_FUNCTION_INSTRUCTIONS {
            chunks.push(&regions[start..i]);
            (start, cost) = (i, 0);
        }
        cost = cost.saturating_add(c);
    }
    chunks.push(&regions[start..]);
    chunks
}

fn emit_region(
    b: &mut FunctionBuilder,
    ctx: &PhaseCtx,
    r: &Region,
    x: Value,
    out: Value,
    w: Value,
    bias: Value,
) -> Result<(), JitError> {
    let x0 = b.ins().iadd_imm_s(x, r.base_in * 4);
    let o0 = b.ins().iadd_imm_s(out, r.base_out * 4);
    let vx = ptr_var(b, x0);
    let vo = ptr_var(b, o0);
    let (rows, si, so) = r.rows.map_or((1, 0, 0), |l| (l.count, l.in_step * 4, l.out_step * 4));
    let ind = [Induction { var: vx, step: si }, Induction { var: vo, step: so }];
    counted_loop(b, rows, &ind, &mut |b| {
        let xr = b.use_var(vx);
        let or = b.use_var(vo);
        for blk in &r.pre {
            emit_block(b, ctx, blk, xr, or, w, bias)?;
        }
        if let Some(inner) = &r.inner {
            let xi = b.ins().iadd_imm_s(xr, inner.start_in * 4);
            let oi = b.ins().iadd_imm_s(or, inner.start_out * 4);
            let vxi = ptr_var(b, xi);
            let voi = ptr_var(b, oi);
            let ind = [
                Induction { var: vxi, step: inner.lp.in_step * 4 },
                Induction { var: voi, step: inner.lp.out_step * 4 },
            ];
            counted_loop(b, inner.lp.count, &ind, &mut |b| {
                let xp = b.use_var(vxi);
                let op = b.use_var(voi);
                emit_block(b, ctx, &inner.block, xp, op, w, bias)
            })?;
        }
        for blk in &r.post {
            emit_block(b, ctx, blk, xr, or, w, bias)?;
        }
        Ok(())
    })
}

/// One register block: bias-initialised accumulators, the input-channel
/// reduction loop over the block's taps, activation and stores.
pub(crate) fn emit_block(
    b: &mut FunctionBuilder,
    ctx: &PhaseCtx,
    blk: &Block,
    x: Value,
    out: Value,
    w: Value,
    bias: Value,
) -> Result<(), JitError> {
    let v = ctx.variant.v;
    let ntw = ctx.w_offs.len();
    // Taps used by at least one pixel, with the pixels that use them.
    let (uh, uw) = union_ranges(blk);
    let mut taps: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for th in uh.clone() {
        for tw in uw.clone() {
            let pix: Vec<usize> = blk
                .pixels
                .iter()
                .enumerate()
                .filter(|(_, p)| p.th.contains(&th) && p.tw.contains(&tw))
                .map(|(i, _)| i)
                .collect();
            if !pix.is_empty() {
                taps.push((th, tw, pix));
            }
        }
    }

    let mut accs: Vec<Vec<Variable>> = Vec::with_capacity(blk.pixels.len());
    let bias_v: Vec<Value> =
        (0..v).map(|j| b.ins().load(types::F32X4, weight_flags(), bias, (j * LANES * 4) as i32)).collect();
    for _ in &blk.pixels {
        accs.push(
            bias_v
                .iter()
                .map(|&bv| {
                    let a = b.declare_var(types::F32X4);
                    b.def_var(a, bv);
                    a
                })
                .collect(),
        );
    }

    if !taps.is_empty() {
        // Unroll the reduction so the loop-carried accumulators are renamed
        // back into place (the x64 FMA forms tie a multiplicand, not the
        // accumulator) once per `unroll` input channels.
        // Measured: 2 helps single-tap blocks (U-Net 2x2/s2: +20 %); for longer
        // bodies unrolling raises register pressure and loses up to 40 %.
        let taps_work: usize = taps.iter().map(|t| t.2.len()).sum::<usize>() * v;
        let unroll = if taps_work <= 12 { 2 } else { 1 };
        let unroll = unroll.min(ctx.cig).max(1);
        let vx = ptr_var(b, x);
        let vw = ptr_var(b, w);
        let step_x = ctx.hw_in * 4;
        let step_w = ctx.record * 4;
        let channel = |b: &mut FunctionBuilder, k: i64| -> Result<(), JitError> {
            let xp = b.use_var(vx);
            let wp = b.use_var(vw);
            for (th, tw, pix) in &taps {
                let wo = ((th * ntw + tw) * LANES * v) as i64;
                let mut wv: Vec<Value> = Vec::with_capacity(v);
                for j in 0..v {
                    let at = offset32((wo + (j * LANES) as i64) * 4 + k * step_w)?;
                    wv.push(b.ins().load(types::F32X4, weight_flags(), wp, at));
                }
                for &pi in pix {
                    let off = (blk.pixels[pi].in_off + ctx.h_offs[*th] + ctx.w_offs[*tw]) * 4 + k * step_x;
                    let s = b.ins().load(types::F32, input_flags(), xp, offset32(off)?);
                    let s = b.ins().splat(types::F32X4, s);
                    for (&acc, &wj) in accs[pi].iter().zip(&wv) {
                        let a = b.use_var(acc);
                        let a = b.ins().fma(s, wj, a);
                        b.def_var(acc, a);
                    }
                }
            }
            Ok(())
        };
        let main = ctx.cig / unroll;
        let ind =
            [Induction { var: vx, step: step_x * unroll as i64 }, Induction { var: vw, step: step_w * unroll as i64 }];
        counted_loop(b, main, &ind, &mut |b| {
            for k in 0..unroll {
                channel(b, k as i64)?;
            }
            Ok(())
        })?;
        // Remainder channels: pointers were advanced past the main loop unless it ran once.
        let base = if main == 1 { unroll } else { 0 };
        for k in 0..ctx.cig % unroll {
            channel(b, (base + k) as i64)?;
        }
    }

    for (pi, px) in blk.pixels.iter().enumerate() {
        for (j, &acc) in accs[pi].iter().enumerate() {
            let a = b.use_var(acc);
            let a = activation::apply(b, ctx.activation, a);
            for lane in 0..LANES {
                let c = j * LANES + lane;
                if c >= ctx.variant.channels {
                    break;
                }
                let e = b.ins().extractlane(a, lane as u8);
                b.ins().store(data_flags(), e, out, offset32((c as i64 * ctx.hw_out + px.out_off) * 4)?);
            }
        }
    }
    Ok(())
}

/// Converts a byte offset to Cranelift's 32-bit immediate. Geometry validation
/// bounds every buffer by `MAX_TENSOR_BYTES`, so an offset that does not fit
/// is a broken invariant of the schedule: an error, never a silently clamped
/// (wrong) address.
pub(crate) fn offset32(v: i64) -> Result<i32, JitError> {
    i32::try_from(v).map_err(|_| JitError::PlanVerifier {
        kernel: "conv".into(),
        reason: format!("byte offset {v} does not fit a 32-bit immediate"),
    })
}

#[cfg(test)]
mod tests {
    use super::{chunk_regions, MAX_FUNCTION_INSTRUCTIONS};
    use crate::schedule::{block_cost, Block, Region};

    /// A region of `blocks` empty blocks (each costs the fixed per-block
    /// overhead of `block_cost`).
    fn region(blocks: usize) -> Region {
        let pre = (0..blocks).map(|_| Block { pixels: Vec::new() }).collect();
        Region { base_in: 0, base_out: 0, rows: None, pre, inner: None, post: Vec::new() }
    }

    fn cost(rs: &[Region]) -> u64 {
        rs.iter().flat_map(|r| r.blocks()).map(|b| block_cost(b, 1)).sum()
    }

    #[test]
    fn chunks_cover_every_region_in_order_and_respect_the_cap() {
        let per_block = block_cost(&Block { pixels: Vec::new() }, 1);
        // Regions of about an eighth, a half and twice the cap.
        for blocks in [
            MAX_FUNCTION_INSTRUCTIONS / per_block / 8,
            MAX_FUNCTION_INSTRUCTIONS / per_block / 2 + 1,
            2 * MAX_FUNCTION_INSTRUCTIONS / per_block,
        ] {
            let regions: Vec<Region> = (0..20).map(|_| region(blocks as usize)).collect();
            let chunks = chunk_regions(&regions, 1);
            assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), regions.len());
            // Chunks are consecutive slices of `regions`, in order.
            let mut next = regions.as_ptr();
            for c in &chunks {
                assert_eq!(c.as_ptr(), next);
                next = next.wrapping_add(c.len());
                // Over the cap only when one region alone is.
                assert!(cost(c) <= MAX_FUNCTION_INSTRUCTIONS || c.len() == 1, "{} regions cost {}", c.len(), cost(c));
            }
            // And greedy: no two neighbours could have been merged.
            for w in chunks.windows(2) {
                assert!(cost(w[0]) + cost(&w[1][..1]) > MAX_FUNCTION_INSTRUCTIONS);
            }
        }
        // A phase without regions still gets one (empty) function.
        assert_eq!(chunk_regions(&[], 1).len(), 1);
    }

    #[test]
    fn offset32_refuses_instead_of_clamping() {
        assert_eq!(super::offset32(-8).unwrap(), -8);
        assert_eq!(super::offset32(i32::MAX as i64).unwrap(), i32::MAX);
        assert!(super::offset32(i32::MAX as i64 + 1).is_err());
        assert!(super::offset32(i64::MIN).is_err());
    }
}
