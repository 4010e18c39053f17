//! Pieces shared by the subcommands: loading a model, resolving it within a
//! memory limit, and `kiln check`.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln::passes::{footprint, Pass, ShapeInference};
use kiln::{Graph, ParamSource};

/// The model file and how to get its weights.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// The model: Kiln's JSON model format, or an ONNX file (`.onnx`).
    pub model: PathBuf,
    /// Refuse models whose tensors need more than this many MiB in total.
    #[arg(long, default_value_t = 8192)]
    pub max_memory_mib: u64,
    /// Override the batch size (dim 0) of every 4-D graph input.
    #[arg(long)]
    pub batch: Option<usize>,
}

/// `--max-memory-mib` in bytes.
pub fn memory_limit(args: &ModelArgs) -> u128 {
    u128::from(args.max_memory_mib) * 1024 * 1024
}

/// Refuses a file larger than `limit` bytes before it is read whole (model,
/// weights and input files are read into memory).
pub fn check_file_size(path: &Path, limit: u128) -> Result<(), kiln::Error> {
    let meta =
        std::fs::metadata(path).map_err(|source| kiln::Error::Io { path: path.display().to_string(), source })?;
    let bytes = u128::from(meta.len());
    if bytes > limit {
        return Err(kiln::Error::FileTooLarge { path: path.display().to_string(), bytes, limit });
    }
    Ok(())
}

/// What the JIT's compile-time data (packed weights, tile tables) may take:
/// the memory limit less what the model's tensors need.
pub fn jit_budget(args: &ModelArgs, g: &Graph) -> Result<Option<u64>, kiln::Error> {
    let used = footprint(g)?.total_bytes();
    let left = memory_limit(args).saturating_sub(used);
    Ok(Some(u64::try_from(left).unwrap_or(u64::MAX)))
}

/// The model with every shape inferred, refused if it would not fit in
/// `max_memory_mib` (checked before any parameter is allocated).
pub fn load_inferred(args: &ModelArgs) -> Result<Graph, kiln::Error> {
    load_inferred_with(args, &std::collections::BTreeMap::new())
}

/// [`load_inferred`], with the input shapes an ONNX model's symbolic dims
/// take (from the `--input` files; a JSON model declares all of its dims).
pub fn load_inferred_with(
    args: &ModelArgs,
    onnx_shapes: &std::collections::BTreeMap<String, Vec<usize>>,
) -> Result<Graph, kiln::Error> {
    check_file_size(&args.model, memory_limit(args))?;
    if args.batch == Some(0) {
        return Err(kiln::Error::Usage("--batch must be at least 1".into()));
    }
    let mut g = if kiln::is_onnx(&args.model) {
        // The batch is bound before import: the exporter's shape arithmetic
        // is folded for it.
        kiln::load_onnx(&args.model, &kiln::OnnxInputs { shapes: onnx_shapes.clone(), batch: args.batch })?
    } else {
        let mut g = kiln::load_model(&args.model)?;
        if let Some(batch) = args.batch {
            set_batch(&mut g, batch);
        }
        g
    };
    ShapeInference.run(&mut g)?;
    let bytes = footprint(&g)?.total_bytes();
    let limit = u128::from(args.max_memory_mib) * 1024 * 1024;
    if bytes > limit {
        return Err(kiln::Error::TooLarge { bytes, limit });
    }
    Ok(g)
}

/// Sets dim 0 of every 4-D graph input to `batch` (at least 1, checked by
/// the caller).
fn set_batch(g: &mut Graph, batch: usize) {
    let inputs: Vec<_> = g.inputs().to_vec();
    for id in inputs {
        if let Some(mut dims) = g.node(id).shape().as_known().filter(|d| d.len() == 4) {
            dims[0] = batch;
            g.set_shape(id, kiln::Shape::known(&dims));
        }
    }
}

/// Where `kiln check` and `kiln compile` get parameters, besides `--seed`.
#[derive(Args, Debug)]
pub struct WeightArgs {
    /// A safetensors state dict with PyTorch's key names (`<node>.<param>`,
    /// e.g. `up1.weight`); without it, weights are drawn from PyTorch's
    /// initialization distributions with `--seed`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Use only the state-dict keys that start with this prefix, with the
    /// prefix removed (`module.` for a model saved from a wrapper).
    #[arg(long, value_name = "PREFIX", requires = "weights")]
    pub weights_prefix: Option<String>,
}

impl WeightArgs {
    /// The parameter source: the state dict (refused before reading if the
    /// file exceeds `limit` bytes), or seeded initialization.
    pub fn source(&self, seed: u64, limit: u128) -> Result<ParamSource, kiln::Error> {
        if let Some(path) = &self.weights {
            check_file_size(path, limit)?;
        }
        match (&self.weights, &self.weights_prefix) {
            (Some(path), Some(prefix)) => kiln::load_weights_with_prefix(path, prefix),
            (Some(path), None) => kiln::load_weights(path),
            (None, _) => Ok(ParamSource::Init { seed }),
        }
    }
}

/// Arguments of `kiln check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Also load this state dict and check every key and shape against the model.
    #[command(flatten)]
    pub weights: WeightArgs,
}

/// Loads, infers and resolves a model with parameters from `source`.
pub fn load_resolved(args: &ModelArgs, source: ParamSource) -> Result<Graph, kiln::Error> {
    kiln::resolve(load_inferred(args)?, source)
}

/// `kiln check`: validate and print the inferred shapes; with `--weights`,
/// also check the state dict against the model.
pub fn check(args: &CheckArgs) -> Result<(), kiln::Error> {
    let g = load_inferred(&args.model)?;
    let f = footprint(&g)?;
    let lazy = g.node_ids().filter(|&id| g.node(id).op().is_lazy()).count();
    let nodes = g.node_count() - g.inputs().len() - g.outputs().len();
    let weights = match &args.weights.weights {
        Some(path) => {
            let source = args.weights.source(0, memory_limit(&args.model))?;
            let tensors = match &source {
                ParamSource::StateDict(map) => map.len(),
                ParamSource::Init { .. } => 0,
            };
            kiln::resolve(g.clone(), source)?;
            format!("; the state dict {} matches ({tensors} tensors)", path.display())
        }
        None => String::new(),
    };
    out!("{g}");
    outln!(
        "ok: {nodes} nodes ({lazy} lazy, all shapes inferred), {} parameters, {:.1} MiB of tensors{weights}",
        f.param_elements,
        f.total_bytes() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
