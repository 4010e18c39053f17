//! `CompiledGraph`: the kernels of a graph, its memory plan and its thread
//! pool, ready to run any number of times from any number of threads.

use std::sync::{Arc, Mutex};

use kiln_ir::Graph;
use kiln_runtime::{RuntimeError, Tensor};

use super::error::CompileError;
use super::lower::{lower, Program, ValueRef};
use super::memory::{plan, MemoryPlan};
use crate::library::{KernelBuilder, KernelLibrary, KernelTier, OptLevel, Options};
use crate::pool::ThreadPool;
use crate::weight_cache::WeightCache;

/// How to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Threads a run uses, the caller included; 0 = all cores.
    pub threads: usize,
    /// Cranelift's optimization level.
    pub opt_level: OptLevel,
    /// Which kernel tier convolutions use (native micro-kernels or pure Cranelift).
    pub tier: KernelTier,
    /// Debug aid: surround every scratch buffer with this many canary floats
    /// and check them after each kernel, failing the run if one changed.
    /// 0 (the default) turns it off.
    pub guard_floats: usize,
    /// Most bytes the compiled code's constant data (packed weights, tile
    /// tables) may take; `None` (the default) = only the fixed per-kernel
    /// caps. The CLI passes what `--max-memory-mib` leaves after the model's
    /// tensors.
    pub max_memory_bytes: Option<u64>,
    /// Time each convolution's candidate strategies at compile time and keep
    /// the fastest, within this much compile time per graph (choices are
    /// remembered per layer for the life of the process); `None` (the
    /// default) uses the measured rules. See `--emit clif` for what was timed.
    pub autotune: Option<std::time::Duration>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            threads: 0,
            opt_level: OptLevel::Speed,
            tier: KernelTier::Auto,
            guard_floats: 0,
            max_memory_bytes: None,
            autotune: None,
        }
    }
}

/// A NaN with a recognizable payload, written around guarded buffers.
pub const CANARY: f32 = f32::from_bits(0x7fc0_dead);

/// Whether the `guard` floats on each side of `slot` still hold [`CANARY`].
fn guards_intact(slot: &[f32], guard: usize) -> bool {
    let n = slot.len() - 2 * guard;
    let canary = |v: &f32| v.to_bits() == CANARY.to_bits();
    slot[..guard].iter().all(canary) && slot[guard + n..].iter().all(canary)
}

/// Scratch buffers for one run, one per slot of the memory plan.
///
/// `ptrs` is reused to pass each step's input addresses (as `usize`, which
/// keeps the arena `Send`), so a run after the first allocates nothing.
struct Arena {
    slots: Vec<Vec<f32>>,
    ptrs: Vec<usize>,
}

/// A graph compiled to native kernels. `Send + Sync`; running never recompiles.
pub struct CompiledGraph {
    library: KernelLibrary,
    program: Program,
    plan: MemoryPlan,
    inputs: Vec<(String, Vec<usize>)>,
    /// Name of each graph output's value node, for messages.
    output_names: Vec<String>,
    pool: Arc<ThreadPool>,
    guard: usize,
    /// For each temporary that is a graph output, the first output it is:
    /// kernels write such values straight into the caller's output buffer.
    output_home: Vec<Option<usize>>,
    /// Arenas of finished runs, reused so that runs after the first allocate
    /// no scratch memory (concurrent runs each take their own).
    arenas: Mutex<Vec<Arena>>,
}

impl std::fmt::Debug for CompiledGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGraph").field("kernels", &self.program.steps.len()).field("plan", &self.plan).finish()
    }
}

/// Compiles a resolved graph with default options (all cores, `opt_level=speed`).
pub fn compile(graph: &Graph) -> Result<CompiledGraph, CompileError> {
    compile_with(graph, CompileOptions::default())
}

/// Compiles a resolved graph. Refuses lazy nodes, unknown dims and missing
/// parameters with an error naming the node.
pub fn compile_with(graph: &Graph, options: CompileOptions) -> Result<CompiledGraph, CompileError> {
    compile_shared(graph, options, &Shared::new(options.threads)?)
}

/// What several compiled graphs can share: one thread pool and one cache of
/// packed weights. A model serving many input shapes compiles every version
/// with the same `Shared`, so the versions pack each weight once and run on
/// one set of worker threads. Cheap to clone (clones share).
#[derive(Clone, Debug)]
pub struct Shared {
    pool: Arc<ThreadPool>,
    weights: WeightCache,
}

impl Shared {
    /// A pool of `threads` threads (0 = all cores; at most [`crate::MAX_THREADS`])
    /// and an empty weight cache.
    pub fn new(threads: usize) -> Result<Shared, CompileError> {
        let pool = ThreadPool::new(threads).map_err(|source| CompileError::Threads { threads, source })?;
        Ok(Shared { pool: Arc::new(pool), weights: WeightCache::new() })
    }

    /// Threads each run uses, the caller included.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The packed weights held for the graphs compiled with this.
    pub fn weight_cache(&self) -> &WeightCache {
        &self.weights
    }
}

/// [`compile_with`] using `shared`'s thread pool and packed-weight cache
/// (`options.threads` is ignored: the pool has its size).
pub fn compile_shared(graph: &Graph, options: CompileOptions, shared: &Shared) -> Result<CompiledGraph, CompileError> {
    let mut kb = KernelBuilder::with_options(Options {
        opt_level: options.opt_level,
        tier: options.tier,
        memory_budget: options.max_memory_bytes,
        autotune: options.autotune,
    })
    .map_err(|source| CompileError::Kernel { node: "<module>".into(), source })?;
    kb.use_weight_cache(shared.weights.clone());
    let program = lower(graph, &mut kb)?;
    let library = kb.finish().map_err(|source| CompileError::Kernel { node: "<module>".into(), source })?;
    let plan = plan(&program);
    let inputs = graph
        .inputs()
        .iter()
        .map(|&i| {
            let n = graph.node(i);
            (n.name().to_string(), n.shape().as_known().unwrap_or_default())
        })
        .collect();
    let output_names = graph.output_values().iter().map(|&v| graph.node(v).name().to_string()).collect();
    let mut output_home = vec![None; program.temp_len.len()];
    for (k, (v, _)) in program.outputs.iter().enumerate() {
        if let ValueRef::Temp(t) = v {
            output_home[*t].get_or_insert(k);
        }
    }
    let pool = Arc::clone(&shared.pool);
    Ok(CompiledGraph {
        library,
        program,
        plan,
        inputs,
        output_names,
        pool,
        guard: options.guard_floats,
        output_home,
        arenas: Mutex::new(Vec::new()),
    })
}

/// One kernel call of a compiled graph, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSummary {
    /// The graph nodes it computes, `+`-joined when fused (`up1+bn1+act1`).
    pub nodes: String,
    /// The kernel's symbol.
    pub kernel: String,
    /// Its work items (the unit of parallelism).
    pub work_items: usize,
    /// How it computes (for convolutions: Cranelift code or which native tiles).
    pub strategy: Option<crate::library::KernelStrategy>,
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

impl CompiledGraph {
    /// Threads a run uses.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The kernel calls in execution order.
    pub fn kernels(&self) -> Vec<KernelSummary> {
        self.program
            .steps
            .iter()
            .map(|s| {
                let info = self.library.info(s.kernel);
                KernelSummary {
                    nodes: s.nodes.clone(),
                    kernel: info.map(|i| i.name.clone()).unwrap_or_default(),
                    work_items: self.library.work_items(s.kernel),
                    strategy: self.library.strategy(s.kernel),
                }
            })
            .collect()
    }

    /// Floats of scratch memory one run uses (after buffer reuse).
    pub fn scratch_len(&self) -> usize {
        self.plan.total_len()
    }

    /// The Cranelift IR of every kernel, headed by the nodes it computes.
    pub fn clif(&self) -> String {
        let mut out = String::new();
        for s in &self.program.steps {
            out.push_str(&format!("; ---- {} ----\n", s.nodes));
            out.push_str(self.library.clif(s.kernel));
            out.push('\n');
        }
        out
    }

    fn input_count_error(&self, got: usize) -> RuntimeError {
        let names: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
        RuntimeError::InputCount { expected: self.inputs.len(), got, names: names.join(", ") }
    }

    fn check_inputs(&self, shapes: &[&[usize]]) -> Result<(), RuntimeError> {
        if shapes.len() != self.inputs.len() {
            return Err(self.input_count_error(shapes.len()));
        }
        for ((name, expected), got) in self.inputs.iter().zip(shapes) {
            if expected.as_slice() != *got {
                return Err(RuntimeError::InputShape {
                    input: name.clone(),
                    expected: shape_str(expected),
                    got: shape_str(got),
                });
            }
        }
        Ok(())
    }

    /// Runs on tensors (any layout) and returns the outputs as new tensors.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.check_inputs(&inputs.iter().map(|t| t.shape()).collect::<Vec<_>>())?;
        let contiguous: Vec<std::borrow::Cow<'_, [f32]>> = inputs
            .iter()
            .map(|t| match t.as_slice() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(t.iter().copied().collect()),
            })
            .collect();
        let slices: Vec<&[f32]> = contiguous.iter().map(|c| c.as_ref()).collect();
        let mut outs: Vec<Vec<f32>> = self.program.outputs.iter().map(|(_, s)| vec![0.0; s.iter().product()]).collect();
        {
            let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            self.execute(&slices, &mut views, None)?;
        }
        outs.into_iter()
            .zip(&self.program.outputs)
            .map(|(data, (_, shape))| {
                Tensor::from_shape_vec(shape.clone(), data)
                    .map_err(|e| RuntimeError::KernelFault { node: "<output>".into(), reason: e.to_string() })
            })
            .collect()
    }

    /// Runs on flat C-order buffers (inputs in graph order, with the compiled
    /// lengths) and writes every output into `outputs`. After the first run it
    /// allocates nothing.
    pub fn run_into(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), RuntimeError> {
        self.check_input_lengths(inputs)?;
        self.execute(inputs, outputs, None)
    }

    /// Runs like [`run_into`](Self::run_into) and returns each kernel call's
    /// wall time, in the order of [`kernels`](Self::kernels): where a run's
    /// time goes, kernel by kernel (the step loop reads the clock between
    /// calls, so the times add up to the run's).
    pub fn profile_into(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<Vec<std::time::Duration>, RuntimeError> {
        let mut times = vec![std::time::Duration::ZERO; self.program.steps.len()];
        self.check_input_lengths(inputs)?;
        self.execute(inputs, outputs, Some(&mut |step, t| times[step] = t))?;
        Ok(times)
    }

    fn check_input_lengths(&self, inputs: &[&[f32]]) -> Result<(), RuntimeError> {
        if inputs.len() != self.inputs.len() {
            return Err(self.input_count_error(inputs.len()));
        }
        for ((name, shape), x) in self.inputs.iter().zip(inputs) {
            let want: usize = shape.iter().product();
            if x.len() != want {
                return Err(RuntimeError::InputShape {
                    input: name.clone(),
                    expected: format!("{} floats ({})", want, shape_str(shape)),
                    got: format!("{} floats", x.len()),
                });
            }
        }
        Ok(())
    }

    /// Runs every step; `observe(step, elapsed)`, if given, sees each
    /// step's wall time (plain runs read no clock).
    fn execute(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        mut observe: Option<&mut dyn FnMut(usize, std::time::Duration)>,
    ) -> Result<(), RuntimeError> {
        if outputs.len() != self.program.outputs.len() {
            return Err(RuntimeError::OutputCount {
                expected: self.program.outputs.len(),
                got: outputs.len(),
                names: self.output_names.join(", "),
            });
        }
        for (i, ((_, shape), out)) in self.program.outputs.iter().zip(outputs.iter()).enumerate() {
            let want: usize = shape.iter().product();
            if out.len() != want {
                return Err(RuntimeError::OutputLength {
                    output: self.output_names[i].clone(),
                    expected: format!("{want} floats ({})", shape_str(shape)),
                    got: format!("{} floats", out.len()),
                });
            }
        }
        let mut arena = self.take_arena();
        let mut clock = observe.is_some().then(std::time::Instant::now);
        for (index, step) in self.program.steps.iter().enumerate() {
            arena.ptrs.clear();
            for v in &step.inputs {
                let p = match v {
                    ValueRef::Input(i) => inputs[*i].as_ptr(),
                    ValueRef::Temp(t) => self.temp_ptr(*t, &mut arena, outputs).cast_const(),
                };
                arena.ptrs.push(p as usize);
            }
            let out = SendPtr(self.temp_ptr(step.output, &mut arena, outputs));
            let kernel = step.kernel;
            let items = self.library.work_items(kernel);
            let failed = Mutex::new(None);
            // SAFETY: `usize` and `*const f32` have the same size and alignment;
            // the addresses were taken from live buffers just above.
            let ptrs = SendPtrs(unsafe {
                std::slice::from_raw_parts(arena.ptrs.as_ptr().cast::<*const f32>(), arena.ptrs.len())
            });
            self.pool.run(items, &|range| {
                // SAFETY: buffers have the lengths the kernel was compiled for
                // (inputs checked above, temporaries sized by the plan); the
                // plan never lets a step's output share a slot with its
                // inputs; the pool hands each work item to exactly one thread.
                if let Err(e) = unsafe { self.library.run(kernel, ptrs.get(), out.get(), range) } {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            });
            if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                self.return_arena(arena);
                return Err(RuntimeError::KernelFault { node: step.nodes.clone(), reason: e.to_string() });
            }
            if self.guard > 0 && !arena.slots.iter().all(|slot| guards_intact(slot, self.guard)) {
                // The arena is not returned: its canaries are broken.
                return Err(RuntimeError::KernelFault {
                    node: step.nodes.clone(),
                    reason: "wrote outside its buffers (a guard canary changed)".into(),
                });
            }
            if let (Some(f), Some(start)) = (observe.as_mut(), clock) {
                let now = std::time::Instant::now();
                f(index, now - start);
                clock = Some(now);
            }
        }
        for j in 0..outputs.len() {
            match self.program.outputs[j].0 {
                ValueRef::Input(i) => outputs[j].copy_from_slice(inputs[i]),
                ValueRef::Temp(t) => match self.output_home[t] {
                    // Already written in place by its kernel.
                    Some(k) if k == j => {}
                    // The same value returned twice: copy from its first output.
                    Some(k) => {
                        let (first, rest) = outputs.split_at_mut(j);
                        rest[0].copy_from_slice(first[k]);
                    }
                    None => {
                        let n = outputs[j].len();
                        outputs[j].copy_from_slice(&arena.slots[self.plan.slot_of[t]][self.guard..self.guard + n]);
                    }
                },
            }
        }
        self.return_arena(arena);
        Ok(())
    }

    /// Where temporary `t` lives during this run: the caller's output buffer
    /// if it is a graph output, else its arena slot.
    fn temp_ptr(&self, t: usize, arena: &mut Arena, outputs: &mut [&mut [f32]]) -> *mut f32 {
        match self.output_home[t] {
            Some(k) => outputs[k].as_mut_ptr(),
            None => arena.slots[self.plan.slot_of[t]][self.guard..].as_mut_ptr(),
        }
    }

    fn take_arena(&self) -> Arena {
        let reused = self.arenas.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| {
            let slots = self
                .plan
                .slot_len
                .iter()
                .map(|&n| {
                    let mut v = vec![CANARY; n + 2 * self.guard];
                    v[self.guard..self.guard + n].fill(0.0);
                    v
                })
                .collect();
            let most_inputs = self.program.steps.iter().map(|s| s.inputs.len()).max().unwrap_or(0);
            Arena { slots, ptrs: Vec::with_capacity(most_inputs) }
        })
    }

    fn return_arena(&self, arena: Arena) {
        self.arenas.lock().unwrap_or_else(|p| p.into_inner()).push(arena);
    }
}

/// A raw output pointer shared by the pool's threads, which write disjoint work items.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: threads write disjoint work items of the same buffer (see `execute`).
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Input pointers shared read-only by the pool's threads.
struct SendPtrs<'a>(&'a [*const f32]);
// SAFETY: the pointees are only read while `execute` keeps them alive.
unsafe impl Sync for SendPtrs<'_> {}
impl<'a> SendPtrs<'a> {
    fn get(&self) -> &'a [*const f32] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_check_detects_writes_on_either_side() {
        let mut slot = vec![CANARY; 4 + 2 * 3];
        slot[3..7].fill(1.0);
        assert!(guards_intact(&slot, 3));
        for i in [0, 2, 7, 9] {
            let mut bad = slot.clone();
            bad[i] = 0.0;
            assert!(!guards_intact(&bad, 3), "write at {i} not detected");
        }
        // Another NaN is not the canary.
        slot[8] = f32::NAN;
        assert!(!guards_intact(&slot, 3));
    }
}
