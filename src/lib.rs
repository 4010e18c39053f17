//! Kiln: a graph compiler and JIT runtime for convolutional decoders.
//!
//! Build a model with PyTorch-style lazy modules ([`GraphBuilder`] or the JSON
//! model format, [`load_model`] / [`parse_model`]), let the shape-propagation
//! pass resolve every lazy node into a concrete op with materialized weights
//! ([`resolve`]), then JIT-compile it with Cranelift ([`compile`]) and run it
//! ([`Model::run`], [`Model::run_named`]), or run it with the reference
//! interpreter ([`runtime::Interpreter`]).
//!
//! This crate is the facade: it re-exports the workspace crates (and the
//! `ndarray` they use, so you need not match its version) and wraps their
//! errors into one [`Error`]. With default features it also builds the `kiln`
//! command; `kiln = { version = "0.1", default-features = false }` builds only
//! the compiler and runtime (no `clap`).
//!
//! From a model file and a PyTorch state dict to an output file:
//!
//! ```
//! # fn main() -> Result<(), kiln::Error> {
//! # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
//! let graph = kiln::load_model("examples/decoder.json")?;           // lazy: in_channels unknown
//! let weights = kiln::load_weights("examples/decoder.safetensors")?; // keys `up1.weight`, ...
//! let model = kiln::compile(graph, weights)?;                        // resolve + JIT
//! let x = kiln::read_npy("examples/decoder.input.x.npy")?;
//! let outputs = model.run_named([("x", x)])?;                        // or model.run(&[x])
//! assert_eq!(model.output_names(), ["out"]);
//! assert_eq!(outputs[0].shape(), [3, 1, 20, 24]);
//! kiln::write_npy(std::env::temp_dir().join("decoder.y.npy"), &outputs[0])?;
//! # Ok(())
//! # }
//! ```
//!
//! Or build the graph in Rust:
//!
//! ```
//! use kiln::{ConvTranspose2dParams, GraphBuilder, ParamSource};
//!
//! let mut b = GraphBuilder::new("decoder");
//! let x = b.input("x", [3, 48, 5, 6])?;
//! let h = b.lazy_conv_transpose2d("up1", x,
//!     ConvTranspose2dParams::new(24, 3).stride(2).padding(1).output_padding(1))?;
//! let h = b.leaky_relu("act1", h, 0.2)?;
//! b.lazy_conv_transpose2d("up2", h,
//!     ConvTranspose2dParams::new(12, 3).stride(2).padding(1).output_padding(1).groups(3))?;
//! let lazy = b.finish()?;
//! let resolved = kiln::resolve(lazy, ParamSource::Init { seed: 0 })?;
//! assert!(resolved.to_string().contains(
//!     "%up1 = conv_transpose2d(%x, %up1.weight: f32[48, 24, 3, 3], %up1.bias: f32[24]) in_channels=48"));
//! assert!(resolved.to_string().contains("groups=3 : f32[3, 12, 20, 24]"));
//! # Ok::<(), kiln::Error>(())
//! ```

#![warn(missing_docs)]
// Errors carry the node name and the offending values; they are cold paths,
// so their size does not matter and boxing would only obscure them.
#![allow(clippy::result_large_err)]

use std::path::Path;

pub mod bench;
pub mod image;
mod model;

pub use model::{CacheStats, CompiledVersion, Model, ModelOptions, DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_CHUNK};

pub use kiln_ir as ir;
pub use kiln_jit as jit;
pub use kiln_onnx as onnx;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

/// The `ndarray` version Kiln's [`Tensor`] is built on, so you need not add
/// (and match) it yourself: `kiln::ndarray::ArrayD::<f32>::zeros(...)`.
pub use kiln_ir::ndarray;

pub use kiln_ir::{
    parse_model, BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Dim, ErrorKind, Graph, GraphBuilder, IrError,
    Op, Shape,
};
pub use kiln_passes::{ParamSource, PassError};
/// Strict `.npy` float32 reading and writing ([`npy::read`], [`npy::write`]).
pub use kiln_runtime::npy;
/// Tensor helpers: checked construction ([`tensor::from_vec`]), comparisons
/// ([`tensor::check_close`]), seeded random tensors ([`tensor::random`]).
pub use kiln_runtime::tensor;
pub use kiln_runtime::{RuntimeError, Tensor, WeightStore};

/// Any error Kiln reports, from any stage. [`Error::kind`] says whether the
/// model or the data given to it is at fault.
///
/// ```
/// let e = kiln::load_model("no/such/model.json").unwrap_err();
/// assert_eq!(e.kind(), kiln::ErrorKind::InvalidInput);
/// assert!(e.to_string().starts_with("no/such/model.json: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Building or parsing the graph.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// Shape inference, the lazy rewrite or parameter loading.
    #[error(transparent)]
    Pass(#[from] PassError),
    /// Loading weights or running a graph.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Reading an ONNX file.
    #[error(transparent)]
    Onnx(#[from] kiln_onnx::OnnxError),
    /// Converting an ONNX graph into Kiln's IR.
    #[error(transparent)]
    Import(#[from] kiln_onnx::ImportError),
    /// JIT compilation.
    #[error(transparent)]
    Compile(#[from] kiln_jit::CompileError),
    /// A backend failed to prepare (compile) a graph.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// A command-line argument that does not fit the model.
    #[error("{0}")]
    Usage(String),
    /// The model's tensors would need more memory than allowed.
    #[error("model refused: its tensors need {} MiB, over the limit of {} MiB", bytes / (1 << 20), limit / (1 << 20))]
    TooLarge {
        /// Bytes needed by parameters and values together.
        bytes: u128,
        /// The limit.
        limit: u128,
    },
    /// A file larger than the memory limit, refused before it is read.
    #[error("{path}: the file is {} MiB, over the memory limit of {} MiB (raise it with --max-memory-mib)", bytes / (1 << 20), limit / (1 << 20))]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size.
        bytes: u128,
        /// The limit.
        limit: u128,
    },
    /// An image file that cannot be read, or a tensor that cannot be written
    /// as one ([`image`]).
    #[error("{path}: {message}")]
    Image {
        /// The file.
        path: String,
        /// What is wrong, with the shape or size at fault.
        message: String,
    },
    /// A value range for images ([`image::ValueRange`]) that is not `lo < hi`
    /// with finite bounds.
    #[error("invalid value range `{range}`: {reason}")]
    ValueRange {
        /// The range as given.
        range: String,
        /// Why it is refused.
        reason: String,
    },
    /// Reading a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the model's configuration or the data given to it is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Ir(e) => e.kind(),
            Error::Pass(e) => e.kind(),
            Error::Runtime(e) => e.kind(),
            Error::Compile(e) => e.kind(),
            Error::Import(e) if e.is_unsupported() => ErrorKind::InvalidConfiguration,
            Error::Onnx(_) | Error::Import(_) => ErrorKind::InvalidInput,
            Error::Io { .. }
            | Error::TooLarge { .. }
            | Error::FileTooLarge { .. }
            | Error::Image { .. }
            | Error::ValueRange { .. }
            | Error::Usage(_)
            | Error::Backend(_) => ErrorKind::InvalidInput,
        }
    }
}

/// Reads a model file in Kiln's JSON model format (what `kiln compile --emit
/// json` writes, too). The graph is lazy until [`resolve`]d.
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let g = kiln::load_model("examples/dcgan.json")?;
/// assert!(g.has_lazy_nodes());
/// # Ok::<(), kiln::Error>(())
/// ```
///
/// It also reads the lossless graph form ([`Graph::to_json`], recognized by
/// its list of `inputs` names where the model format has an object of shapes),
/// which older versions of `kiln compile --emit json` wrote.
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph, Error> {
    let path = path.as_ref();
    if is_onnx(path) {
        return load_onnx(path, &OnnxInputs::default());
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let lossless = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .is_some_and(|v| v.get("inputs").is_some_and(serde_json::Value::is_array));
    if lossless {
        return Ok(Graph::from_json(&text)?);
    }
    Ok(parse_model(&text)?)
}

/// Whether `path` names an ONNX file (by its `.onnx` extension: the format
/// has no magic number).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The concrete shapes an ONNX model's inputs take, for its symbolic dims.
#[derive(Clone, Debug, Default)]
pub struct OnnxInputs {
    /// Whole shapes by ONNX input name (e.g. from the `--input` files).
    pub shapes: std::collections::BTreeMap<String, Vec<usize>>,
    /// The batch size (dim 0) of inputs not in `shapes`: binds a symbolic
    /// dim 0 (default 1) and must equal a fixed one.
    pub batch: Option<usize>,
}

/// Reads an ONNX model (external data beside it) into a Kiln graph with its
/// weights attached, binding symbolic input dims from `inputs`: the
/// exporter's shape arithmetic (`Shape`, `Gather`, `Concat`, ...) is folded
/// for those shapes, so the graph serves exactly them.
pub fn load_onnx(path: &Path, inputs: &OnnxInputs) -> Result<Graph, Error> {
    let model = kiln_onnx::read_model(path)?;
    let shape_fn = |g: &Graph, id: kiln_ir::NodeId| kiln_passes::infer_node(g, id).map_err(|e| e.to_string());
    let mut options = kiln_onnx::ImportOptions::new(&shape_fn);
    for (name, dims) in kiln_onnx::convert::declared_inputs(&model) {
        if let Some(shape) = inputs.shapes.get(&name) {
            options.input_shapes.insert(name, shape.clone());
            continue;
        }
        let mut shape = Vec::with_capacity(dims.len());
        let mut complete = true;
        for (i, d) in dims.iter().enumerate() {
            match (d, i, inputs.batch) {
                (kiln_onnx::Dim::Known(k), 0, Some(b)) if *k != b as u64 => {
                    return Err(Error::Usage(format!(
                        "input `{name}`: the model fixes the batch size to {k}; it cannot run at batch {b}"
                    )))
                }
                (kiln_onnx::Dim::Known(k), _, _) => shape.push(usize::try_from(*k).unwrap_or(usize::MAX)),
                (kiln_onnx::Dim::Symbolic(_) | kiln_onnx::Dim::Unknown, 0, b) => shape.push(b.unwrap_or(1)),
                (kiln_onnx::Dim::Symbolic(_) | kiln_onnx::Dim::Unknown, _, _) => complete = false,
            }
        }
        if complete && !dims.is_empty() {
            options.input_shapes.insert(name, shape);
        }
    }
    Ok(kiln_onnx::to_graph(&model, &options)?)
}

/// Writes `graph` (lazy or resolved) in the model format: the inverse of
/// [`parse_model`]. Parameters are not inlined; save them with
/// [`save_weights`].
///
/// ```
/// let g = kiln::parse_model(r#"{"inputs": {"x": [1, 2, 4, 4]}, "nodes": [{"name": "r", "op": "ReLU"}]}"#)?;
/// let text = kiln::model_json(&g)?;
/// assert_eq!(kiln::parse_model(&text)?.to_string(), g.to_string());
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn model_json(graph: &Graph) -> Result<String, Error> {
    Ok(kiln_ir::model::to_model_json(graph)?)
}

/// Reads a safetensors state dict (PyTorch's key names: node name, `.`,
/// parameter name, e.g. `up1.weight`) as a parameter source.
///
/// A `torch.save` file or an ONNX model is recognized and refused with the
/// one-line Python that saves a safetensors file instead.
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let weights = kiln::load_weights("examples/decoder.safetensors")?;
/// let resolved = kiln::resolve(kiln::load_model("examples/decoder.json")?, weights)?;
/// assert!(!resolved.has_lazy_nodes());
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn load_weights(path: impl AsRef<Path>) -> Result<ParamSource, Error> {
    Ok(ParamSource::StateDict(WeightStore::load(path)?.into_tensors()))
}

/// Like [`load_weights`], keeping only the keys under `prefix` and removing it
/// (`"module."` for a state dict saved from a `DataParallel` or other wrapper).
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// // No key starts with `module.`: nothing is left, and resolving says which keys are missing.
/// let none = kiln::load_weights_with_prefix("examples/decoder.safetensors", "module.")?;
/// let e = kiln::resolve(kiln::load_model("examples/decoder.json")?, none).unwrap_err();
/// assert!(e.to_string().contains("6 missing keys"), "{e}");
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn load_weights_with_prefix(path: impl AsRef<Path>, prefix: &str) -> Result<ParamSource, Error> {
    Ok(ParamSource::StateDict(WeightStore::load(path)?.with_prefix(prefix).into_tensors()))
}

/// Writes the parameters of a resolved graph as a safetensors state dict that
/// [`load_weights`] and PyTorch's `safetensors.torch.load_file` read back.
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let resolved = kiln::resolve(kiln::load_model("examples/decoder.json")?, kiln::ParamSource::Init { seed: 1 })?;
/// let path = std::env::temp_dir().join("kiln-doc-save-weights.safetensors");
/// kiln::save_weights(&resolved, &path)?;
/// let again = kiln::resolve(kiln::load_model("examples/decoder.json")?, kiln::load_weights(&path)?)?;
/// assert_eq!(again.state_dict(), resolved.state_dict());
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn save_weights(graph: &Graph, path: impl AsRef<Path>) -> Result<(), Error> {
    let store: WeightStore = graph.state_dict().into_iter().map(|(k, t)| (k, t.clone())).collect();
    Ok(store.save(path)?)
}

/// Reads a float32 `.npy` file (what `numpy.save` writes for a float32 array;
/// a float64 file is refused with the `.astype(np.float32)` hint).
///
/// ```
/// let t = kiln::tensor::from_vec(&[2, 3], vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0])?;
/// let path = std::env::temp_dir().join("kiln-doc-npy.npy");
/// kiln::write_npy(&path, &t)?;
/// assert_eq!(kiln::read_npy(&path)?, t);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, Error> {
    Ok(npy::read(path)?)
}

/// Writes a tensor as a float32 `.npy` file that `numpy.load` reads.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), Error> {
    Ok(npy::write(path, tensor)?)
}

/// Runs the standard pipeline (shape inference, lazy→concrete rewrite with
/// parameters from `source`, verification) and returns the resolved graph.
///
/// `ParamSource::Init { seed }` draws every parameter from the distribution
/// PyTorch's `reset_parameters()` uses (not PyTorch's random stream: the
/// values differ from `torch.manual_seed`); for PyTorch's exact weights load
/// its state dict ([`load_weights`]).
///
/// ```
/// let lazy = kiln::parse_model(r#"{"inputs": {"x": [1, 3, 4, 4]}, "nodes": [
///     {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 2, "stride": 2}}]}"#)?;
/// let g = kiln::resolve(lazy, kiln::ParamSource::Init { seed: 0 })?;
/// let up = g.node(g.lookup("up")?);
/// assert_eq!(up.param("weight").map(|w| w.shape().to_vec()), Some(vec![3, 2, 2, 2]));   // in_channels=3 inferred
/// assert_eq!(up.shape().as_known(), Some(vec![1, 2, 8, 8]));
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn resolve(mut graph: Graph, source: ParamSource) -> Result<Graph, Error> {
    passes::resolve(&mut graph, source)?;
    Ok(graph)
}

/// Resolves `graph` (see [`resolve`]) and JIT-compiles it with default
/// options (all cores): the whole pipeline in one call.
pub fn compile(graph: Graph, source: ParamSource) -> Result<Model, Error> {
    compile_with(graph, source, jit::CompileOptions::default())
}

/// [`compile`] with explicit JIT options (threads, kernel tier).
///
/// ```
/// # std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
/// let options = kiln::jit::CompileOptions { threads: 1, ..Default::default() };
/// let model = kiln::compile_with(kiln::load_model("examples/unet_tail.json")?, kiln::ParamSource::Init { seed: 0 }, options)?;
/// assert_eq!(model.input_names(), ["x", "skip"]);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn compile_with(graph: Graph, source: ParamSource, options: jit::CompileOptions) -> Result<Model, Error> {
    let model = Model::new(graph, source, ModelOptions { compile: options, ..ModelOptions::default() })?;
    // A model whose inputs are all declared accepts one shape set: resolve
    // and compile it now, so a bad model fails here rather than on first run.
    let declared: Vec<Option<Vec<usize>>> = model.input_shapes().iter().map(Shape::as_known).collect();
    if let Some(shapes) = declared.into_iter().collect::<Option<Vec<_>>>() {
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        model.prepare(&refs)?;
    }
    Ok(model)
}

/// The README's Rust blocks, run as doctests so the README cannot drift from
/// the API (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
