//! [`Model`]: one graph serving any input shape it accepts, compiled per
//! shape on first use and cached.
//!
//! The lifecycle, as PyTorch's lazy modules have it:
//! 1. A model is created from a graph whose inputs may leave dims open
//!    (`null` in the model file) and a parameter source. Nothing is
//!    compiled or materialized yet (unless every input dim is declared, in
//!    which case [`crate::compile`] prepares that one shape eagerly).
//! 2. The first run binds the input shapes, infers every shape, rewrites the
//!    lazy nodes and materializes their parameters (state dict or seeded
//!    init). That resolved graph is the model's **template** from then on:
//!    parameters never change again, and a later input whose channel count
//!    disagrees with what a layer learned is an error naming the layer and
//!    both counts.
//! 3. Each distinct set of input shapes gets a compiled version, kept in a
//!    bounded LRU cache ([`cache`]). Versions share one thread pool and one
//!    cache of packed weights ([`kiln_jit::Shared`]), so a new shape costs
//!    code generation but no weight packing or thread start-up. Batch sizes
//!    are served by chunks of power-of-two compiled batches where the graph
//!    keeps batch items apart ([`batch`]).
//!
//! `Model` is `Send + Sync`; any number of threads may run it at once, and
//! two threads asking for the same new shape compile it once.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_ir::{Graph, Shape};
use kiln_jit as jit;
use kiln_passes::{ParamSource, Pass};
use kiln_runtime::{RuntimeError, Tensor};

use crate::Error;

mod batch;
mod cache;

pub use batch::DEFAULT_MAX_CHUNK;
pub use cache::CacheStats;
use cache::VersionCache;

/// Compiled versions a [`Model`] keeps by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 8;

/// How a [`Model`] compiles and caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// JIT options for every version (`threads` sizes the one shared pool).
    pub compile: jit::CompileOptions,
    /// Most compiled versions kept (least recently used dropped first; at
    /// least 1).
    pub cache_capacity: usize,
    /// Serve batch sizes as power-of-two chunks when the graph keeps batch
    /// items apart (see the `batch` module); `false` compiles every batch
    /// size exactly.
    pub split_batches: bool,
    /// The largest chunk compiled when splitting (rounded down to a power
    /// of two).
    pub max_chunk: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            compile: jit::CompileOptions::default(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            split_batches: true,
            max_chunk: DEFAULT_MAX_CHUNK,
        }
    }
}

/// One compiled version of a [`Model`]: the code for one set of input shapes.
#[derive(Debug)]
pub struct CompiledVersion {
    compiled: jit::CompiledGraph,
    input_shapes: Vec<Vec<usize>>,
    output_shapes: Vec<Vec<usize>>,
    compile_time: Duration,
}

impl CompiledVersion {
    /// The compiled graph (kernels, CLIF, `run_into` on flat buffers).
    pub fn compiled(&self) -> &jit::CompiledGraph {
        &self.compiled
    }

    /// The input shapes it was compiled for.
    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }

    /// Its output shapes.
    pub fn output_shapes(&self) -> &[Vec<usize>] {
        &self.output_shapes
    }

    /// Wall time of binding the shapes and compiling (shape inference and
    /// the JIT; the first version also resolved the parameters).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// The resolved graph whose parameters are fixed, with its inputs' declared
/// (possibly open) shapes restored so any binding can be tried on it.
struct Template {
    graph: Graph,
    /// The same without parameters, for shape questions.
    skeleton: Graph,
}

/// A model that runs any input shape its graph accepts; see the module docs.
///
/// Positional inputs ([`Model::run`]) are in the order of the model file's
/// `inputs` object (or of [`kiln_ir::GraphBuilder::input`] calls), which
/// [`Model::input_names`] lists; outputs are in the order of its `outputs`
/// list ([`Model::output_names`]).
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let model = kiln::compile(kiln::load_model("examples/unet_tail.json")?, kiln::ParamSource::Init { seed: 0 })?;
/// let x = kiln::tensor::random(&[2, 16, 4, 4], 1);
/// let skip = kiln::tensor::random(&[2, 8, 8, 8], 2);
/// let by_position = model.run(&[x.clone(), skip.clone()])?;
/// let by_name = model.run_named([("skip", skip), ("x", x)])?;
/// assert_eq!(by_position, by_name);
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct Model {
    declared: Graph,
    /// The declared graph without parameters (shape questions before the
    /// first binding).
    declared_skeleton: Graph,
    inputs: Vec<(String, Shape)>,
    outputs: Vec<String>,
    options: ModelOptions,
    shared: jit::Shared,
    /// Consumed by the first binding (kept until one succeeds).
    source: Mutex<Option<ParamSource>>,
    template: OnceLock<Template>,
    cache: VersionCache<CompiledVersion>,
    /// Per input signature after dim 0: can batches run as chunks?
    splits: Mutex<Vec<(Vec<Vec<usize>>, bool)>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("parameters_fixed", &self.parameters_fixed())
            .field("cache", &self.cache.stats())
            .finish()
    }
}

/// Signatures whose split decision is remembered; more are recomputed.
const MAX_SPLIT_SIGNATURES: usize = 64;

/// Inputs and outputs a call keeps on the stack; models with more allocate
/// their per-chunk views.
const STACK_VIEWS: usize = 8;

fn elements(input: &str, shape: &[usize]) -> Result<usize, Error> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| {
        RuntimeError::InputShape {
            input: input.into(),
            expected: "a shape whose element count fits in memory".into(),
            got: format!("{shape:?}"),
        }
        .into()
    })
}

impl Model {
    /// A model over `graph` (lazy or resolved; inputs may leave dims open)
    /// whose parameters come from `source` at the first binding. Creates the
    /// shared thread pool; compiles nothing.
    pub fn new(graph: Graph, source: ParamSource, options: ModelOptions) -> Result<Model, Error> {
        graph.validate()?;
        let shared = jit::Shared::new(options.compile.threads)?;
        let inputs = graph
            .inputs()
            .iter()
            .map(|&id| {
                let n = graph.node(id);
                (n.name().to_string(), n.shape().clone())
            })
            .collect();
        let outputs = graph.output_values().iter().map(|&id| graph.node(id).name().to_string()).collect();
        Ok(Model {
            declared_skeleton: graph.without_params(),
            declared: graph,
            inputs,
            outputs,
            options,
            shared,
            source: Mutex::new(Some(source)),
            template: OnceLock::new(),
            cache: VersionCache::new(options.cache_capacity),
            splits: Mutex::new(Vec::new()),
        })
    }

    /// The graph inputs' names, in positional order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The graph inputs' declared shapes (open dims unknown), in positional order.
    pub fn input_shapes(&self) -> Vec<Shape> {
        self.inputs.iter().map(|(_, s)| s.clone()).collect()
    }

    /// The names of the nodes whose values are the outputs, in output order.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(String::as_str).collect()
    }

    /// The graph as given (before any binding).
    pub fn graph(&self) -> &Graph {
        &self.declared
    }

    /// Whether the parameters have been materialized (by the first binding).
    pub fn parameters_fixed(&self) -> bool {
        self.template.get().is_some()
    }

    /// Threads each run uses (one pool for every version).
    pub fn threads(&self) -> usize {
        self.shared.threads()
    }

    /// The version cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The packed weights every version shares.
    pub fn weight_cache(&self) -> &jit::WeightCache {
        self.shared.weight_cache()
    }

    /// The resolved graph for `shapes` (shapes inferred, parameters those
    /// of the model), fixing the parameters if this is the first binding.
    pub fn resolved(&self, shapes: &[&[usize]]) -> Result<Graph, Error> {
        let template = self.template_for(shapes)?;
        let mut g = template.graph.clone();
        g.bind_inputs(shapes)?;
        kiln_passes::ShapeInference.run(&mut g)?;
        Ok(g)
    }

    /// The template, creating it from `shapes` if no binding has happened.
    fn template_for(&self, shapes: &[&[usize]]) -> Result<&Template, Error> {
        if let Some(t) = self.template.get() {
            return Ok(t);
        }
        // One binding at a time; a second thread waits here and then finds
        // the template the first one made.
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.template.get() {
            return Ok(t);
        }
        let Some(params) = source.clone() else {
            return Err(Error::Usage("the model's parameter source was lost by an earlier failure".into()));
        };
        let mut g = self.declared.clone();
        g.bind_inputs(shapes)?;
        kiln_passes::resolve(&mut g, params)?;
        for (&id, (_, declared)) in g.inputs().to_vec().iter().zip(&self.inputs) {
            g.set_shape(id, declared.clone());
        }
        let skeleton = g.without_params();
        // The state dict's tensors now live in the template; drop the copy.
        *source = None;
        Ok(self.template.get_or_init(|| Template { graph: g, skeleton }))
    }

    /// The output shapes a run on inputs of `shapes` produces, without
    /// compiling (or fixing parameters): what [`Model::run_into`] needs.
    pub fn output_shapes(&self, shapes: &[&[usize]]) -> Result<Vec<Vec<usize>>, Error> {
        let mut g = match self.template.get() {
            Some(t) => t.skeleton.clone(),
            None => self.declared_skeleton.clone(),
        };
        g.bind_inputs(shapes)?;
        kiln_passes::ShapeInference.run(&mut g)?;
        g.output_values()
            .iter()
            .map(|&v| {
                g.node(v)
                    .shape()
                    .as_known()
                    .ok_or_else(|| Error::Usage(format!("output `{}` has no inferred shape", g.node(v).name())))
            })
            .collect()
    }

    /// Compiles ahead of time every version a run on `shapes` would use (the
    /// chunk sizes too, when batches are split).
    pub fn prepare(&self, shapes: &[&[usize]]) -> Result<(), Error> {
        match self.split_batch(shapes)? {
            Some(n) => {
                for c in batch::chunks(n, self.options.max_chunk) {
                    self.chunk_version(shapes, c)?;
                }
                Ok(())
            }
            None => self.version(shapes).map(|_| ()),
        }
    }

    /// The compiled version for exactly `shapes` (compiled if not cached).
    pub fn version(&self, shapes: &[&[usize]]) -> Result<Arc<CompiledVersion>, Error> {
        self.cache.get_or_build(shapes, || self.build(shapes))
    }

    /// The version for `shapes` with dim 0 of every input replaced by `c`.
    fn chunk_version(&self, shapes: &[&[usize]], c: usize) -> Result<Arc<CompiledVersion>, Error> {
        let is_chunk = |key: &[Vec<usize>]| {
            key.len() == shapes.len() && key.iter().zip(shapes).all(|(k, s)| k.first() == Some(&c) && k[1..] == s[1..])
        };
        let chunk_shapes = || -> Vec<Vec<usize>> {
            shapes.iter().map(|s| std::iter::once(c).chain(s[1..].iter().copied()).collect()).collect()
        };
        self.cache.get_or_build_by(is_chunk, chunk_shapes, || {
            let owned = chunk_shapes();
            let refs: Vec<&[usize]> = owned.iter().map(Vec::as_slice).collect();
            self.build(&refs)
        })
    }

    fn build(&self, shapes: &[&[usize]]) -> Result<CompiledVersion, Error> {
        let start = Instant::now();
        let graph = self.resolved(shapes)?;
        let compiled = jit::compile_shared(&graph, self.options.compile, &self.shared)?;
        let output_shapes =
            graph.output_values().iter().map(|&v| graph.node(v).shape().as_known().unwrap_or_default()).collect();
        Ok(CompiledVersion {
            compiled,
            input_shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            output_shapes,
            compile_time: start.elapsed(),
        })
    }

    /// `Some(n)` when a run on `shapes` goes as chunks of a batch of `n`:
    /// splitting is on, every input has rank ≥ 1 and the same dim 0 `n`,
    /// and the graph keeps batch items apart at these other dims.
    fn split_batch(&self, shapes: &[&[usize]]) -> Result<Option<usize>, Error> {
        if !self.options.split_batches || shapes.len() != self.inputs.len() {
            return Ok(None);
        }
        let Some(n) = shapes.first().and_then(|s| s.first().copied()) else { return Ok(None) };
        if n == 0 || shapes.iter().any(|s| s.first() != Some(&n)) {
            return Ok(None);
        }
        let rest_matches =
            |key: &[Vec<usize>]| key.len() == shapes.len() && key.iter().zip(shapes).all(|(k, s)| k[..] == s[1..]);
        {
            let splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, ok)) = splits.iter().find(|(k, _)| rest_matches(k)) {
                return Ok(ok.then_some(n));
            }
        }
        let rest: Vec<&[usize]> = shapes.iter().map(|s| &s[1..]).collect();
        let skeleton = match self.template.get() {
            Some(t) => &t.skeleton,
            None => &self.declared_skeleton,
        };
        let ok = batch::separable(skeleton, &rest);
        let mut splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        if splits.len() >= MAX_SPLIT_SIGNATURES {
            splits.clear();
        }
        splits.push((rest.iter().map(|r| r.to_vec()).collect(), ok));
        Ok(ok.then_some(n))
    }

    /// One shape per input, each fitting the input's declared shape.
    fn check_shapes(&self, shapes: &[&[usize]]) -> Result<(), Error> {
        if shapes.len() != self.inputs.len() {
            return Err(RuntimeError::InputCount {
                expected: self.inputs.len(),
                got: shapes.len(),
                names: self.input_names().join(", "),
            }
            .into());
        }
        for ((name, declared), shape) in self.inputs.iter().zip(shapes) {
            kiln_ir::check_binding(name, declared, shape)?;
        }
        Ok(())
    }

    fn check_inputs(&self, shapes: &[&[usize]], inputs: &[&[f32]]) -> Result<(), Error> {
        self.check_shapes(shapes)?;
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
                names: self.input_names().join(", "),
            }
            .into());
        }
        for (((name, _), shape), x) in self.inputs.iter().zip(shapes).zip(inputs) {
            let want = elements(name, shape)?;
            if x.len() != want {
                return Err(RuntimeError::InputShape {
                    input: name.clone(),
                    expected: format!("{want} floats ({shape:?})"),
                    got: format!("{} floats", x.len()),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Runs on flat C-order buffers: input `i` has shape `shapes[i]`, and
    /// `outputs` must have the lengths of [`Model::output_shapes`]. Compiles
    /// on the first call with new shapes; a call whose versions are cached
    /// allocates nothing (for models of at most eight inputs and outputs).
    pub fn run_into(&self, shapes: &[&[usize]], inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), Error> {
        self.check_inputs(shapes, inputs)?;
        let Some(n) = self.split_batch(shapes)? else {
            return Ok(self.version(shapes)?.compiled.run_into(inputs, outputs)?);
        };
        let mut done = 0;
        for c in batch::chunks(n, self.options.max_chunk) {
            let version = self.chunk_version(shapes, c)?;
            if done == 0 {
                self.check_split_outputs(&version, n, outputs)?;
            }
            let mut ins_stack: [&[f32]; STACK_VIEWS] = [&[]; STACK_VIEWS];
            let mut ins_heap: Vec<&[f32]> = Vec::new();
            let ins: &mut [&[f32]] = if inputs.len() <= STACK_VIEWS {
                &mut ins_stack[..inputs.len()]
            } else {
                ins_heap.resize(inputs.len(), &[]);
                &mut ins_heap
            };
            for (view, x) in ins.iter_mut().zip(inputs) {
                let per = x.len() / n;
                *view = &x[done * per..(done + c) * per];
            }
            let mut outs_stack: [&mut [f32]; STACK_VIEWS] = Default::default();
            let mut outs_heap: Vec<&mut [f32]> = Vec::new();
            let outs: &mut [&mut [f32]] = if outputs.len() <= STACK_VIEWS {
                &mut outs_stack[..outputs.len()]
            } else {
                outs_heap.resize_with(outputs.len(), Default::default);
                &mut outs_heap
            };
            for (view, y) in outs.iter_mut().zip(outputs.iter_mut()) {
                let per = y.len() / n;
                *view = &mut y[done * per..(done + c) * per];
            }
            version.compiled.run_into(ins, outs)?;
            done += c;
        }
        Ok(())
    }

    /// The caller's outputs must hold `n` items of the chunk's per-item sizes.
    fn check_split_outputs(&self, version: &CompiledVersion, n: usize, outputs: &[&mut [f32]]) -> Result<(), Error> {
        if outputs.len() != version.output_shapes.len() {
            return Err(RuntimeError::OutputCount {
                expected: version.output_shapes.len(),
                got: outputs.len(),
                names: self.outputs.join(", "),
            }
            .into());
        }
        for ((name, shape), y) in self.outputs.iter().zip(&version.output_shapes).zip(outputs) {
            let chunk = shape.first().copied().unwrap_or(1).max(1);
            let per: usize = shape.iter().product::<usize>() / chunk;
            let want = per.checked_mul(n);
            if want != Some(y.len()) {
                let mut full = shape.clone();
                if let Some(d0) = full.first_mut() {
                    *d0 = n;
                }
                return Err(RuntimeError::OutputLength {
                    output: name.clone(),
                    expected: format!("{} floats ({full:?})", want.map_or("too many".into(), |w| w.to_string())),
                    got: format!("{} floats", y.len()),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Runs on inputs given by position (see [`Model::input_names`]) of any
    /// shape the graph accepts; returns the outputs in
    /// [`Model::output_names`] order. A wrong count or shape is an error
    /// naming the input.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        // Before the output shapes are asked for (which may compile).
        self.check_shapes(&shapes)?;
        let out_shapes = match self.split_batch(&shapes)? {
            // Items are kept apart, so the full outputs are the first
            // chunk's with dim 0 = n (no shape inference per call).
            Some(n) => {
                let first = batch::chunks(n, self.options.max_chunk).next().unwrap_or(n);
                let mut shapes_n = self.chunk_version(&shapes, first)?.output_shapes.clone();
                for s in &mut shapes_n {
                    if let Some(d0) = s.first_mut() {
                        *d0 = n;
                    }
                }
                shapes_n
            }
            None => self.version(&shapes)?.output_shapes.clone(),
        };
        let contiguous: Vec<std::borrow::Cow<'_, [f32]>> = inputs
            .iter()
            .map(|t| match t.as_slice() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(t.iter().copied().collect()),
            })
            .collect();
        let slices: Vec<&[f32]> = contiguous.iter().map(|c| c.as_ref()).collect();
        let mut outs: Vec<Vec<f32>> = out_shapes.iter().map(|s| vec![0.0; s.iter().product()]).collect();
        {
            let mut views: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            self.run_into(&shapes, &slices, &mut views)?;
        }
        outs.into_iter()
            .zip(out_shapes)
            .map(|(data, shape)| {
                Tensor::from_shape_vec(shape, data)
                    .map_err(|e| RuntimeError::KernelFault { node: "<output>".into(), reason: e.to_string() }.into())
            })
            .collect()
    }

    /// Runs on inputs given by name, in any order: `model.run_named([("z", z)])`.
    /// An unknown name, a name given twice or a missing input is an error that
    /// names it.
    pub fn run_named<S: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (S, Tensor)>,
    ) -> Result<Vec<Tensor>, Error> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for (name, tensor) in inputs {
            let name = name.as_ref();
            let Some(i) = self.inputs.iter().position(|(n, _)| n == name) else {
                return Err(RuntimeError::InputName {
                    input: name.into(),
                    reason: format!("is not an input of the model (it has: {})", self.input_names().join(", ")),
                }
                .into());
            };
            if slots[i].replace(tensor).is_some() {
                return Err(RuntimeError::InputName { input: name.into(), reason: "is given twice".into() }.into());
            }
        }
        let mut ordered = Vec::with_capacity(slots.len());
        for ((name, _), slot) in self.inputs.iter().zip(slots) {
            match slot {
                Some(t) => ordered.push(t),
                None => return Err(RuntimeError::InputName { input: name.clone(), reason: "is missing".into() }.into()),
            }
        }
        self.run(&ordered)
    }
}
