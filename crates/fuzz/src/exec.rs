//! Resolve, compile and run a graph, checking the JIT against the
//! interpreter: the oracle shared by the graph-running targets.
//!
//! Sizes are bounded *before* anything large is allocated: shape inference
//! runs first and [`kiln_passes::footprint`] must stay under
//! [`Limits::resolve_elements`] for the parameters to be materialized, and
//! under [`Limits::run_elements`] (and [`Limits::run_flops`]) for the graph
//! to be compiled and run. Every compiled run is guarded: scratch buffers get
//! canary zones (`guard_floats`), and the caller's input and output buffers
//! sit inside canary-filled memory, so an out-of-bounds write by a kernel is
//! reported as a mismatch rather than going unnoticed.

use kiln_ir::Graph;
use kiln_jit::{compile_with, CompileOptions, KernelTier, NativeIsa, CANARY};
use kiln_passes::{flops, footprint, ParamSource, Pass, ShapeInference};
use kiln_runtime::{tensor, Interpreter, RandomTensor, Rng, Tensor};

use crate::{note, Outcome};

/// Canary floats on each side of every guarded buffer.
pub const GUARD: usize = 16;

/// The relative tolerance of the JIT-vs-interpreter comparison
/// (`rel * max(1, max|expected|)`, as in the golden tests).
pub const REL_TOLERANCE: f32 = 1e-4;

/// Size caps that keep one input fast and its memory small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most tensor elements (parameters + values) for parameters to be materialized.
    pub resolve_elements: u128,
    /// Most tensor elements for the graph to be compiled and run.
    pub run_elements: u128,
    /// Most convolution FLOPs for the graph to be compiled and run.
    pub run_flops: u128,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { resolve_elements: 1 << 22, run_elements: 1 << 20, run_flops: 1 << 26 }
    }
}

/// Every kernel tier this CPU can run, with a label: Cranelift always, and
/// each native ISA the CPU has (as `tests/support::jit_tiers`).
pub fn jit_tiers() -> Vec<(&'static str, KernelTier)> {
    let mut tiers = vec![("cranelift", KernelTier::Cranelift)];
    for (name, isa) in [("avx2", NativeIsa::Avx2), ("avx512", NativeIsa::Avx512)] {
        if isa.resolve() == Some(isa) {
            tiers.push((name, KernelTier::Native(isa)));
        }
    }
    tiers
}

/// Which JIT configurations to check.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `(label, tier, threads)` triples, each compiled and run.
    pub configs: Vec<(&'static str, KernelTier, usize)>,
    /// Size caps.
    pub limits: Limits,
    /// Seed of parameter initialization and of the random inputs.
    pub seed: u64,
}

impl Plan {
    /// Every tier at 1 and 2 threads.
    pub fn all_tiers(seed: u64) -> Plan {
        let configs =
            [1, 2].into_iter().flat_map(|t| jit_tiers().into_iter().map(move |(n, tier)| (n, tier, t))).collect();
        Plan { configs, limits: Limits::default(), seed }
    }

    /// One configuration picked by `choice` among every tier × {1, 2} threads.
    pub fn one(choice: u64, seed: u64) -> Plan {
        let mut all = Plan::all_tiers(seed);
        let k = (choice % all.configs.len() as u64) as usize;
        all.configs = vec![all.configs[k]];
        all
    }
}

/// FNV-1a of `bytes`: a cheap deterministic choice from the input itself.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Shape inference, the size cap, then resolution with seeded
/// initialization. `Err` is the outcome to return (a rejection).
pub fn resolve_bounded(g: &mut Graph, plan: &Plan) -> Result<(), Outcome> {
    ShapeInference.run(g).map_err(|e| Outcome::Rejected(e.to_string()))?;
    let f = footprint(g).map_err(|e| Outcome::Rejected(e.to_string()))?;
    if f.param_elements + f.value_elements > plan.limits.resolve_elements {
        note("too large to resolve");
        return Err(Outcome::Rejected(format!("too large: {} elements", f.param_elements + f.value_elements)));
    }
    kiln_passes::resolve(g, ParamSource::Init { seed: plan.seed }).map_err(|e| Outcome::Rejected(e.to_string()))
}

fn guarded(data: &[f32]) -> Vec<f32> {
    let mut v = vec![CANARY; data.len() + 2 * GUARD];
    v[GUARD..GUARD + data.len()].copy_from_slice(data);
    v
}

fn canaries_intact(v: &[f32]) -> bool {
    let n = v.len() - 2 * GUARD;
    v[..GUARD].iter().chain(&v[GUARD + n..]).all(|x| x.to_bits() == CANARY.to_bits())
}

/// `text` without digits and node names in backquotes, cut to 100 chars:
/// a key for counting similar messages.
pub fn squash(text: &str) -> String {
    let mut out = String::new();
    let mut in_quote = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_quote = !in_quote;
                if in_quote {
                    out.push_str("`_`");
                }
            }
            _ if in_quote || c.is_ascii_digit() => {}
            _ => out.push(c),
        }
        if out.len() >= 100 {
            break;
        }
    }
    out
}

/// Whether every value is finite and of moderate size, so the comparison
/// with the f64-accumulating interpreter is meaningful.
fn comparable(t: &Tensor) -> bool {
    t.iter().all(|x| x.is_finite() && x.abs() < 1e30)
}

/// Whether a graph is over the run limits of `plan` (or its size cannot be computed).
pub fn too_large(g: &Graph, plan: &Plan) -> bool {
    let Ok(f) = footprint(g) else { return true };
    let fl = flops(g).unwrap_or(u128::MAX);
    f.param_elements + f.value_elements > plan.limits.run_elements || fl > plan.limits.run_flops
}

/// Runs a resolved graph on the interpreter and on every configuration of
/// `plan`, guarded, and compares. Graphs over the run limits are accepted
/// unchecked (noted).
///
/// `trusted` says the graph came out of Kiln's own resolution, so the
/// interpreter must run it; an untrusted graph (read from graph JSON) may be
/// refused by the interpreter, and then the JIT must refuse it too (both
/// check every declared shape against the op's arithmetic), and must not
/// write out of bounds on the way.
pub fn compare_resolved(g: &Graph, plan: &Plan, trusted: bool) -> Outcome {
    if let Err(e) = footprint(g) {
        return Outcome::Mismatch(format!("footprint of a resolved graph failed: {e}"));
    }
    if too_large(g, plan) {
        note("resolved but too large to run");
        return Outcome::Ok;
    }
    let mut rng = Rng::new(plan.seed ^ 0x1234_5678);
    let mut inputs = Vec::new();
    for &i in g.inputs() {
        match g.node(i).shape().as_known() {
            Some(s) => inputs.push(rng.tensor(&s)),
            None => {
                return Outcome::Mismatch(format!("resolved graph input `{}` has no known shape", g.node(i).name()))
            }
        }
    }
    let expected = match Interpreter::run(g, &inputs) {
        Ok(e) => e,
        Err(e) if trusted => return Outcome::Mismatch(format!("the interpreter fails on a resolved graph: {e}")),
        Err(e) => return jit_on_refused(g, &inputs, plan, e.to_string()),
    };
    let mut out_shapes = Vec::new();
    for &o in &g.output_values() {
        match g.node(o).shape().as_known() {
            Some(s) => out_shapes.push(s),
            None => return Outcome::Mismatch(format!("output `{}` has no known shape", g.node(o).name())),
        }
    }
    for e in &expected {
        if !comparable(e) {
            note("output not finite: compared structurally only");
        }
    }
    for &(label, tier, threads) in &plan.configs {
        if let Err(o) = run_config(g, &inputs, &expected, &out_shapes, label, tier, threads) {
            return o;
        }
    }
    Outcome::Ok
}

/// The interpreter refused an untrusted graph: the JIT must refuse it too
/// (a graph it runs is a mismatch) and must not write out of bounds; the
/// outcome is the rejection.
fn jit_on_refused(g: &Graph, inputs: &[Tensor], plan: &Plan, why: String) -> Outcome {
    let mut out_shapes = Vec::new();
    for &o in &g.output_values() {
        match g.node(o).shape().as_known() {
            Some(s) => out_shapes.push(s),
            None => return Outcome::Rejected(why),
        }
    }
    for &(label, tier, threads) in &plan.configs {
        match run_guarded(g, inputs, &out_shapes, label, tier, threads) {
            Err(o) => return o,
            Ok(Some(_)) => {
                return Outcome::Mismatch(format!("[{label}] the JIT ran a graph the interpreter refuses: {why}"))
            }
            Ok(None) => {}
        }
    }
    Outcome::Rejected(why)
}

/// Compiles and runs `g` guarded: `Ok(None)` if the JIT refuses to compile
/// it, `Ok(Some(outputs))`, or the mismatch outcome (a failed run, an
/// overwritten canary, a modified input).
fn run_guarded(
    g: &Graph,
    inputs: &[Tensor],
    out_shapes: &[Vec<usize>],
    label: &str,
    tier: KernelTier,
    threads: usize,
) -> Result<Option<Vec<Tensor>>, Outcome> {
    let what = format!("[{label}, {threads} thread{}]", if threads == 1 { "" } else { "s" });
    let opts = CompileOptions { threads, tier, guard_floats: GUARD, ..Default::default() };
    let exe = match compile_with(g, opts) {
        Ok(e) => e,
        Err(e) => {
            // A graph the JIT refuses: not a crash, but worth counting.
            note(format!("jit refused: {}", squash(&e.to_string())));
            return Ok(None);
        }
    };
    let mut ins: Vec<Vec<f32>> = inputs.iter().map(|t| guarded(&tensor::to_vec(t))).collect();
    let mut outs: Vec<Vec<f32>> = out_shapes.iter().map(|s| guarded(&vec![0.0; s.iter().product()])).collect();
    let result = {
        let in_views: Vec<&[f32]> = ins.iter().map(|v| &v[GUARD..v.len() - GUARD]).collect();
        let mut out_views: Vec<&mut [f32]> = outs
            .iter_mut()
            .map(|v| {
                let n = v.len();
                &mut v[GUARD..n - GUARD]
            })
            .collect();
        exe.run_into(&in_views, &mut out_views)
    };
    if let Err(e) = result {
        let msg = e.to_string();
        if msg.to_lowercase().contains("canar") || msg.to_lowercase().contains("guard") {
            return Err(Outcome::Mismatch(format!("{what} scratch guard overwritten: {msg}")));
        }
        return Err(Outcome::Mismatch(format!("{what} run of a compiled graph failed: {msg}")));
    }
    for (k, (v, t)) in ins.iter_mut().zip(inputs).enumerate() {
        if !canaries_intact(v) {
            return Err(Outcome::Mismatch(format!("{what} canary around input {k} overwritten")));
        }
        if v[GUARD..v.len() - GUARD].iter().zip(t.iter()).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(Outcome::Mismatch(format!("{what} input {k} modified")));
        }
    }
    let mut got = Vec::new();
    for (k, (v, shape)) in outs.iter().zip(out_shapes).enumerate() {
        if !canaries_intact(v) {
            return Err(Outcome::Mismatch(format!("{what} canary around output {k} overwritten")));
        }
        match Tensor::from_shape_vec(shape.clone(), v[GUARD..v.len() - GUARD].to_vec()) {
            Ok(t) => got.push(t),
            Err(e) => return Err(Outcome::Mismatch(format!("{what} output {k}: {e}"))),
        }
    }
    Ok(Some(got))
}

fn run_config(
    g: &Graph,
    inputs: &[Tensor],
    expected: &[Tensor],
    out_shapes: &[Vec<usize>],
    label: &str,
    tier: KernelTier,
    threads: usize,
) -> Result<(), Outcome> {
    let what = format!("[{label}, {threads} thread{}]", if threads == 1 { "" } else { "s" });
    let Some(outs) = run_guarded(g, inputs, out_shapes, label, tier, threads)? else { return Ok(()) };
    if outs.len() != expected.len() {
        return Err(Outcome::Mismatch(format!("{what} {} outputs, the interpreter {}", outs.len(), expected.len())));
    }
    for (k, (got, want)) in outs.iter().zip(expected).enumerate() {
        if got.shape() != want.shape() {
            return Err(Outcome::Mismatch(format!(
                "{what} output {k} has shape {:?}, the interpreter's {:?}",
                got.shape(),
                want.shape()
            )));
        }
        if comparable(want) {
            if let Err(e) = tensor::check_close(got, want, REL_TOLERANCE) {
                // f32 accumulation cannot be more accurate than the largest
                // intermediate value allows (a LeakyReLU slope of 1e6 then a
                // sigmoid makes outputs <= 1 out of values ~1e6): forgive
                // differences within f32 rounding of that scale.
                let diff = tensor::max_abs_diff(got, want).unwrap_or(f32::INFINITY);
                let scale = intermediate_scale(g, inputs).unwrap_or(0.0);
                if diff <= INTERMEDIATE_REL * scale {
                    note("difference within f32 rounding of the intermediate values: forgiven");
                    continue;
                }
                return Err(Outcome::Mismatch(format!(
                    "{what} output {k} differs from the interpreter: {e} (largest intermediate |value| {scale:e})"
                )));
            }
        }
    }
    Ok(())
}

/// The error allowed relative to the largest intermediate value: about 170
/// f32 ulps (2^-24 ≈ 6e-8), what sums of a few thousand terms can lose.
pub const INTERMEDIATE_REL: f32 = 1e-5;

/// The largest finite |value| of every node of `g` on `inputs` (the
/// interpreter run again with every value as an output), or `None`.
pub fn intermediate_scale(g: &Graph, inputs: &[Tensor]) -> Option<f32> {
    let mut all = g.clone();
    let values: Vec<_> = all.node_ids().filter(|&id| !matches!(all.node(id).op(), kiln_ir::Op::Output)).collect();
    for id in values {
        all.add_output(id).ok()?;
    }
    let outs = Interpreter::run(&all, inputs).ok()?;
    Some(outs.iter().flat_map(|t| t.iter()).filter(|x| x.is_finite()).fold(0.0f32, |m, x| m.max(x.abs())))
}

/// Parses nothing: resolves `g` within the limits and compares (the tail
/// of the model-JSON and graph targets).
pub fn resolve_and_compare(mut g: Graph, plan: &Plan) -> Outcome {
    if let Err(o) = resolve_bounded(&mut g, plan) {
        return o;
    }
    compare_resolved(&g, plan, true)
}
