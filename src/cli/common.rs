//! Pieces shared by the subcommands: loading a model, resolving it within a
//! memory limit, and `kiln check`.

use std::collections::BTreeMap;
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
    /// The shape of an input whose dims the model leaves open, as
    /// NAME=D0,D1,... (repeatable; `kiln run` also takes it from --input files).
    #[arg(long = "shape", value_name = "NAME=D0,D1,...")]
    pub shapes: Vec<String>,
}

/// Most dims a `--shape` may list (far beyond any tensor Kiln runs).
const MAX_RANK: usize = 16;

/// The `--shape NAME=D0,D1,...` arguments by input name.
pub fn parse_shapes(args: &[String]) -> Result<BTreeMap<String, Vec<usize>>, kiln::Error> {
    let mut shapes = BTreeMap::new();
    for arg in args {
        let bad = |why: &str| kiln::Error::Usage(format!("--shape {arg}: {why}"));
        let (name, dims) = arg.split_once('=').ok_or_else(|| bad("expected NAME=D0,D1,... (e.g. x=1,3,64,64)"))?;
        let dims: Vec<usize> = dims
            .split(',')
            .map(|d| match d.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("`{d}` is not a positive integer"))),
            })
            .collect::<Result<_, _>>()?;
        if dims.len() > MAX_RANK {
            return Err(bad(&format!("{} dims, at most {MAX_RANK} are supported", dims.len())));
        }
        if shapes.insert(name.to_string(), dims).is_some() {
            return Err(bad(&format!("input `{name}` is given twice")));
        }
    }
    Ok(shapes)
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
    load_inferred_with(args, &BTreeMap::new())
}

/// [`load_inferred`], with the shapes of inputs whose dims the model leaves
/// open (a JSON model's `null` dims, an ONNX model's symbolic ones), from
/// the `--input` files; `--shape` arguments add to them.
pub fn load_inferred_with(args: &ModelArgs, file_shapes: &BTreeMap<String, Vec<usize>>) -> Result<Graph, kiln::Error> {
    infer_within_limit(args, load_bound(args, file_shapes)?)
}

/// The model as read, with `--batch`, `--shape` and the `file_shapes` of
/// `--input` files applied; dims nothing gives stay open (a JSON model).
fn load_bound(args: &ModelArgs, file_shapes: &BTreeMap<String, Vec<usize>>) -> Result<Graph, kiln::Error> {
    check_file_size(&args.model, memory_limit(args))?;
    if args.batch == Some(0) {
        return Err(kiln::Error::Usage("--batch must be at least 1".into()));
    }
    let mut shapes = parse_shapes(&args.shapes)?;
    for (name, shape) in file_shapes {
        if let Some(given) = shapes.get(name).filter(|s| *s != shape) {
            return Err(kiln::Error::Usage(format!(
                "input `{name}`: --shape says {given:?} but its --input file has shape {shape:?}"
            )));
        }
        shapes.insert(name.clone(), shape.clone());
    }
    if kiln::is_onnx(&args.model) {
        // The batch is bound before import: the exporter's shape arithmetic
        // is folded for it.
        return kiln::load_onnx(&args.model, &kiln::OnnxInputs { shapes, batch: args.batch });
    }
    let mut g = kiln::load_model(&args.model)?;
    if let Some(batch) = args.batch {
        set_batch(&mut g, batch);
    }
    bind_open_inputs(&mut g, &shapes)?;
    Ok(g)
}

/// Every shape inferred, refused if the tensors would not fit in
/// `--max-memory-mib` (checked before any parameter is allocated).
fn infer_within_limit(args: &ModelArgs, mut g: Graph) -> Result<Graph, kiln::Error> {
    ShapeInference.run(&mut g)?;
    let bytes = footprint(&g)?.total_bytes();
    let limit = u128::from(args.max_memory_mib) * 1024 * 1024;
    if bytes > limit {
        return Err(kiln::Error::TooLarge { bytes, limit });
    }
    Ok(g)
}

/// Sets dim 0 of every 4-D graph input to `batch` (at least 1, checked by
/// the caller), open or not; other open dims stay open.
fn set_batch(g: &mut Graph, batch: usize) {
    let inputs: Vec<_> = g.inputs().to_vec();
    for id in inputs {
        if let Some(mut dims) = g.node(id).shape().dims().filter(|d| d.len() == 4).map(<[kiln::Dim]>::to_vec) {
            dims[0] = kiln::Dim::Known(batch);
            g.set_shape(id, kiln::Shape::Ranked(dims));
        }
    }
}

/// Binds the inputs that leave dims open to the shapes given for them. A
/// fully declared input keeps its shape (a file that differs is reported
/// later, with the `--batch` hint); a shape for an unknown input is an error.
fn bind_open_inputs(g: &mut Graph, shapes: &BTreeMap<String, Vec<usize>>) -> Result<(), kiln::Error> {
    let names: Vec<String> = g.inputs().iter().map(|&i| g.node(i).name().to_string()).collect();
    for name in shapes.keys() {
        if !names.contains(name) {
            return Err(kiln::Error::Usage(format!(
                "--shape {name}=...: the model has no input `{name}` (inputs: {})",
                names.join(", ")
            )));
        }
    }
    for id in g.inputs().to_vec() {
        let node = g.node(id);
        if node.shape().is_fully_known() {
            continue;
        }
        if let Some(shape) = shapes.get(node.name()) {
            kiln::ir::check_binding(node.name(), node.shape(), shape)?;
            g.set_shape(id, kiln::Shape::known(shape));
        }
    }
    Ok(())
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
/// also check the state dict against the model. A JSON model whose inputs
/// leave dims open (and no `--shape` binds them) gets [`check_open`].
pub fn check(args: &CheckArgs) -> Result<(), kiln::Error> {
    let g = load_bound(&args.model, &BTreeMap::new())?;
    if g.has_open_inputs() {
        return check_open(&g);
    }
    let g = infer_within_limit(&args.model, g)?;
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

/// Sizes tried for open dims by [`check_open`]: (batch, channels, other
/// dims) for two bindings that differ in every open dim. Several scales,
/// because a deep U-Net refuses small images.
const PROBES: [[(usize, usize, usize); 2]; 4] =
    [[(1, 3, 32), (2, 4, 48)], [(1, 3, 64), (2, 4, 96)], [(1, 3, 256), (2, 4, 384)], [(1, 3, 1024), (2, 4, 1536)]];

/// The graph with every open input dim bound from `probe` (dim 0 the
/// batch, dim 1 the channels, the rest spatial), shapes inferred.
fn probe(g: &Graph, (batch, channels, spatial): (usize, usize, usize)) -> Result<Graph, kiln::Error> {
    let mut p = g.clone();
    let shapes: Vec<Vec<usize>> = p
        .inputs()
        .iter()
        .map(|&i| {
            let dims = p.node(i).shape().dims().unwrap_or_default();
            dims.iter()
                .enumerate()
                .map(|(axis, d)| {
                    d.known().unwrap_or(match axis {
                        0 => batch,
                        1 => channels,
                        _ => spatial,
                    })
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    p.bind_inputs(&refs)?;
    ShapeInference.run(&mut p)?;
    Ok(p)
}

/// `kiln check` on a model whose inputs leave dims open: every value's shape
/// as far as it follows from the declared dims. Shapes are inferred at two
/// bindings that differ in every open dim; a dim equal in both is printed,
/// one that differs is `?` (it follows the input), and a lazy node's
/// `in_channels` that differs is learned from the first input.
fn check_open(g: &Graph) -> Result<(), kiln::Error> {
    let mut last_err = None;
    for [a, b] in PROBES {
        let (pa, pb) = match (probe(g, a), probe(g, b)) {
            (Ok(pa), Ok(pb)) => (pa, pb),
            (Err(e), _) | (_, Err(e)) => {
                last_err = Some(e);
                continue;
            }
        };
        let open: Vec<String> = g
            .inputs()
            .iter()
            .flat_map(|&i| {
                let n = g.node(i);
                let dims = n.shape().dims().unwrap_or_default().to_vec();
                dims.into_iter()
                    .enumerate()
                    .filter(|(_, d)| d.known().is_none())
                    .map(move |(k, _)| format!("{}[{k}]", n.name()))
            })
            .collect();
        outln!("graph {} (inputs with open dims; `?` follows the input)", g.name().unwrap_or("model"));
        let mut learned = Vec::new();
        for id in g.topo_order()? {
            let node = g.node(id);
            let (sa, sb) = (pa.node(id).shape(), pb.node(id).shape());
            let shape = match (sa.dims(), sb.dims()) {
                (Some(da), Some(db)) if da.len() == db.len() => kiln::Shape::Ranked(
                    da.iter().zip(db).map(|(x, y)| if x == y { *x } else { kiln::Dim::Unknown }).collect(),
                ),
                _ => kiln::Shape::Unranked,
            };
            let operands: Vec<String> = g.operands(id).iter().map(|&o| format!("%{}", g.node(o).name())).collect();
            let mut line =
                format!("  %{} = {}({}) : {shape}", node.name(), node.op().class_name(), operands.join(", "));
            if node.op().is_lazy() {
                let first = |p: &Graph| {
                    g.operands(id).first().and_then(|&o| p.node(o).shape().dims().and_then(|d| d.get(1).copied()))
                };
                if first(&pa) != first(&pb) {
                    line.push_str("  (in_channels learned from the first input)");
                    learned.push(node.name().to_string());
                }
            }
            outln!("{line}");
        }
        let nodes = g.node_count() - g.inputs().len() - g.outputs().len();
        outln!(
            "ok: {nodes} nodes; open input dims {} are bound by the first input a kiln::Model runs (or --shape / --input); {} lazy node(s) learn in_channels then{}",
            open.join(", "),
            learned.len(),
            if learned.is_empty() { String::new() } else { format!(" ({})", learned.join(", ")) }
        );
        return Ok(());
    }
    Err(last_err.unwrap_or_else(|| kiln::Error::Usage("no binding of the open dims infers".into())))
}
