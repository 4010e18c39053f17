//! `kiln run`: resolve, compile and run a model, reporting shape, checksum and timings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use kiln::passes::flops;
use kiln::runtime::backend::{Backend, InterpreterBackend};
use kiln::runtime::{npy, RandomTensor, Rng, Tensor};
use kiln::{Graph, ParamSource};

use super::common::{load_inferred, ModelArgs};

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
    /// A safetensors state dict with PyTorch's key names; without it, weights
    /// are initialized PyTorch-style from `--seed`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// An input as NAME=FILE.npy (repeatable); inputs not given are random U[-1,1) from `--seed`.
    #[arg(long = "input", value_name = "NAME=X.npy")]
    pub inputs: Vec<String>,
    /// Seed for weights and random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the output as .npy (several outputs: FILE.0.npy, FILE.1.npy, ...).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Worker threads for the JIT (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The executor.
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: BackendChoice,
    /// The JIT's kernel tier for convolutions.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: super::Kernels,
}

/// The backend for a choice and thread count.
pub fn backend(
    choice: BackendChoice,
    threads: Option<usize>,
    kernels: super::Kernels,
) -> Result<Box<dyn Backend>, kiln::Error> {
    let options = super::jit_options(threads, kernels)?;
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

/// The graph's inputs: from `NAME=FILE.npy` arguments, else random from `seed`.
pub fn inputs(graph: &Graph, given: &[String], seed: u64) -> Result<Vec<Tensor>, kiln::Error> {
    let mut files = std::collections::BTreeMap::new();
    for arg in given {
        let (name, path) =
            arg.split_once('=').ok_or_else(|| kiln::Error::Usage(format!("--input {arg}: expected NAME=FILE.npy")))?;
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
            match files.get(node.name()) {
                Some(path) => Ok(npy::read(path)?),
                None => {
                    let shape = node.shape().as_known().unwrap_or_default();
                    Ok(Rng::for_stream(seed, node.name()).tensor(&shape))
                }
            }
        })
        .collect()
}

pub fn run(args: &RunArgs) -> Result<(), kiln::Error> {
    let inferred = load_inferred(&args.model)?;
    let flop_count = flops(&inferred)?;
    let t0 = Instant::now();
    let graph = kiln::resolve(inferred, param_source(&args.weights, args.seed)?)?;
    let resolve_ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = inputs(&graph, &args.inputs, args.seed)?;
    kiln::runtime::check_inputs(&graph, &inputs)?;
    let backend = backend(args.backend, args.threads, args.kernels)?;
    let t1 = Instant::now();
    let exe = backend.prepare(&graph).map_err(kiln::Error::Backend)?;
    let compile_ms = t1.elapsed().as_secs_f64() * 1e3;
    let t2 = Instant::now();
    let outputs = exe.run(&inputs)?;
    let run_ms = t2.elapsed().as_secs_f64() * 1e3;
    for (i, out) in outputs.iter().enumerate() {
        let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
        let abs: f64 = out.iter().map(|&v| f64::from(v).abs()).sum();
        outln!("output {i}: shape {:?}  sum {sum:.6}  mean|x| {:.6}", out.shape(), abs / out.len().max(1) as f64);
        if let Some(path) = &args.output {
            npy::write(output_path(path, i, outputs.len()), out)?;
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

fn output_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.{index}.npy"))
}
