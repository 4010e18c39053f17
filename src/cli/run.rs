//! `kiln run`: resolve, compile and run a model, reporting shape, checksum and timings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use kiln::passes::flops;
use kiln::runtime::backend::{Backend, InterpreterBackend};
use kiln::runtime::{RandomTensor, Rng, Tensor};
use kiln::{Graph, ParamSource};

use super::common::{load_inferred_with, ModelArgs};

/// Which executor runs the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Cranelift-compiled kernels.
    Jit,
    /// The reference interpreter.
    Interp,
}

/// Arguments of `kiln run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub weights: super::common::WeightArgs,
    /// An input as NAME=FILE.npy or NAME=IMAGE.png (repeatable; an image is [1, C, H, W], converted to the
    /// model's channel count); inputs not given are random U[-1,1) from `--seed`.
    #[arg(long = "input", value_name = "NAME=X.npy")]
    pub inputs: Vec<String>,
    /// The values an image input's levels 0..255 map to: 0,1 (torchvision's ToTensor) or -1,1 (with
    /// Normalize(0.5, 0.5)), as the model was trained.
    #[arg(long, value_name = "LO,HI", default_value = "0,1", allow_hyphen_values = true)]
    pub input_range: kiln::image::ValueRange,
    /// Seed for weights and random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the output as .npy, or as a PNG image (a grid for a batch) for FILE.png (several outputs:
    /// FILE.0.npy, FILE.1.npy, ... in `outputs` order).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The values a .png output's 0..255 stand for (default: from its last activation, Tanh -1,1,
    /// Sigmoid 0,1; else its own min..max, with a note).
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true)]
    pub output_range: Option<kiln::image::ValueRange>,
    /// Worker threads for the JIT (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The executor.
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: BackendChoice,
    /// The JIT's kernel tier for convolutions.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: super::Kernels,
    /// Time every convolution's candidate strategies while compiling and keep
    /// the fastest (at most 200 ms of compile time; `--emit clif` shows the timings).
    #[arg(long)]
    pub autotune: bool,
}

/// The backend for a choice and thread count.
pub fn backend(
    choice: BackendChoice,
    threads: Option<usize>,
    kernels: super::Kernels,
    autotune: bool,
    memory_budget: Option<u64>,
) -> Result<Box<dyn Backend>, kiln::Error> {
    let options = kiln::jit::CompileOptions {
        max_memory_bytes: memory_budget,
        ..super::jit_options(threads, kernels, autotune)?
    };
    match choice {
        BackendChoice::Interp => Ok(Box::new(InterpreterBackend)),
        BackendChoice::Jit => Ok(super::jit_backend(options)),
    }
}

/// Resolves the model's parameters from `--weights` or `--seed`.
pub fn param_source(weights: &Option<PathBuf>, seed: u64) -> Result<ParamSource, kiln::Error> {
    match weights {
        Some(path) => kiln::load_weights(path),
        None => Ok(ParamSource::Init { seed }),
    }
}

/// The graph inputs that no `NAME=FILE.npy` argument gives (they will be random).
fn randomized_inputs<'g>(graph: &'g Graph, given: &[String]) -> Vec<&'g str> {
    let named: Vec<&str> = given.iter().filter_map(|a| a.split_once('=').map(|(n, _)| n)).collect();
    graph.inputs().iter().map(|&i| graph.node(i).name()).filter(|n| !named.contains(n)).collect()
}

/// An input file whose shape differs from the declared one only in the batch
/// dimension: say that `--batch` runs the model at the file's batch size.
fn check_batch(graph: &Graph, given: &[String], inputs: &[Tensor]) -> Result<(), kiln::Error> {
    let named: Vec<&str> = given.iter().filter_map(|a| a.split_once('=').map(|(n, _)| n)).collect();
    for (&id, tensor) in graph.inputs().iter().zip(inputs) {
        let node = graph.node(id);
        let Some(declared) = node.shape().as_known() else { continue };
        let got = tensor.shape();
        let only_batch = declared.len() == 4 && got.len() == 4 && declared[1..] == got[1..] && declared[0] != got[0];
        if only_batch && named.contains(&node.name()) {
            return Err(kiln::Error::Usage(format!(
                "input `{}`: expected shape {declared:?}, got {got:?}: only the batch size differs; \
                 pass --batch {} to run the model with the file's batch size",
                node.name(),
                got[0]
            )));
        }
    }
    Ok(())
}

/// One `--input NAME=FILE.npy` argument, split.
fn input_arg(arg: &str) -> Result<(&str, &str), kiln::Error> {
    arg.split_once('=').ok_or_else(|| kiln::Error::Usage(format!("--input {arg}: expected NAME=FILE.npy")))
}

/// The graph's inputs: from `NAME=FILE.npy` (or image) arguments, else random
/// from `seed`. Files already in `read` (by input name) are not read again.
pub fn inputs(
    graph: &Graph,
    given: &[String],
    seed: u64,
    limit: u128,
    mut read: BTreeMap<String, Tensor>,
    range: kiln::image::ValueRange,
) -> Result<Vec<Tensor>, kiln::Error> {
    let mut files = BTreeMap::new();
    for arg in given {
        let (name, path) = input_arg(arg)?;
        if graph.inputs().iter().all(|&i| graph.node(i).name() != name) {
            let names: Vec<&str> = graph.inputs().iter().map(|&i| graph.node(i).name()).collect();
            return Err(kiln::Error::Usage(format!(
                "--input {arg}: the model has no input `{name}` (inputs: {})",
                names.join(", ")
            )));
        }
        files.insert(name.to_string(), PathBuf::from(path));
    }
    graph
        .inputs()
        .iter()
        .map(|&i| {
            let node = graph.node(i);
            match (read.remove(node.name()), files.get(node.name())) {
                (Some(t), _) => Ok(t),
                (None, Some(path)) => {
                    super::image_io::read_input(path, range, super::image_io::declared_channels(graph, i), limit)
                }
                (None, None) => {
                    let shape = node.shape().as_known().unwrap_or_default();
                    Ok(Rng::for_stream(seed, node.name()).tensor(&shape))
                }
            }
        })
        .collect()
}

/// The `--input NAME=FILE.npy` tensors by name, read before the model is:
/// an ONNX model's symbolic dims are bound to their shapes.
/// An image is converted to the channel count in `channels` (by input name).
fn read_input_files(
    given: &[String],
    limit: u128,
    range: kiln::image::ValueRange,
    channels: &BTreeMap<String, usize>,
) -> Result<BTreeMap<String, Tensor>, kiln::Error> {
    let mut read = BTreeMap::new();
    for arg in given {
        let (name, path) = input_arg(arg)?;
        let c = channels.get(name).copied();
        read.insert(name.to_string(), super::image_io::read_input(Path::new(path), range, c, limit)?);
    }
    Ok(read)
}

pub fn run(args: &RunArgs) -> Result<(), kiln::Error> {
    // The files are read first: their shapes bind the dims the model leaves
    // open (`null` in a JSON model, symbolic in an ONNX one).
    let limit = super::common::memory_limit(&args.model);
    let channels = super::image_io::model_declared_channels(&args.model.model, &args.inputs, limit)?;
    let read = read_input_files(&args.inputs, limit, args.input_range, &channels)?;
    let shapes = read.iter().map(|(name, t)| (name.clone(), t.shape().to_vec())).collect();
    let inferred = load_inferred_with(&args.model, &shapes)?;
    let flop_count = flops(&inferred)?;
    let t0 = Instant::now();
    let limit = super::common::memory_limit(&args.model);
    let budget = super::common::jit_budget(&args.model, &inferred)?;
    let graph = kiln::resolve(inferred, args.weights.source(args.seed, limit)?)?;
    let resolve_ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = inputs(&graph, &args.inputs, args.seed, limit, read, args.input_range)?;
    check_batch(&graph, &args.inputs, &inputs)?;
    kiln::runtime::check_inputs(&graph, &inputs)?;
    super::image_io::check_outputs(&graph, args.output.as_deref())?;
    let backend = backend(args.backend, args.threads, args.kernels, args.autotune, budget)?;
    let t1 = Instant::now();
    let exe = backend.prepare(&graph).map_err(kiln::Error::Backend)?;
    let compile_ms = t1.elapsed().as_secs_f64() * 1e3;
    // Said once everything that can fail before the run has passed, so an
    // error stays the only line on stderr.
    let randomized = randomized_inputs(&graph, &args.inputs);
    if !randomized.is_empty() {
        let list: Vec<String> = randomized.iter().map(|n| format!("`{n}`")).collect();
        eprintln!(
            "note: no --input for {}: using random U[-1, 1) values from --seed {} (pass --input NAME=FILE.npy)",
            list.join(", "),
            args.seed
        );
    }
    let t2 = Instant::now();
    let outputs = exe.run(&inputs)?;
    let run_ms = t2.elapsed().as_secs_f64() * 1e3;
    let values = graph.output_values();
    let names: Vec<&str> = values.iter().map(|&id| graph.node(id).name()).collect();
    for (i, out) in outputs.iter().enumerate() {
        let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
        let abs: f64 = out.iter().map(|&v| f64::from(v).abs()).sum();
        let name = names.get(i).copied().unwrap_or("?");
        outln!("output {name}: shape {:?}  sum {sum:.6}  mean|x| {:.6}", out.shape(), abs / out.len().max(1) as f64);
        if let (Some(path), Some(&id)) = (&args.output, values.get(i)) {
            let file = super::image_io::output_path(path, i, outputs.len());
            super::image_io::write_output(&file, out, &graph, id, args.output_range)?;
        }
    }
    let gflops = flop_count as f64 / (run_ms * 1e6);
    outln!(
        "backend {}: resolve {resolve_ms:.2} ms, compile {compile_ms:.2} ms, run {run_ms:.3} ms ({gflops:.2} GFLOP/s over {:.3} GFLOP)",
        backend.name(),
        flop_count as f64 / 1e9
    );
    Ok(())
}
