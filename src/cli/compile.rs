//! `kiln compile`: show what Kiln makes of a model.

use clap::Args;
use kiln::ParamSource;

use super::common::{load_inferred, load_resolved, ModelArgs};
use super::Emit;

/// Arguments of `kiln compile`.
#[derive(Args, Debug)]
pub struct CompileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// What to print.
    #[arg(long, value_enum, default_value = "ir")]
    pub emit: Emit,
    /// With `--emit dot`: draw the graph before resolution.
    #[arg(long)]
    pub lazy: bool,
    #[command(flatten)]
    pub weights: super::common::WeightArgs,
    /// Write the resolved parameters to this safetensors file (with `--emit
    /// json`, the model and its weights are then a pair `kiln run` reads back).
    #[arg(long, value_name = "FILE.safetensors")]
    pub save_weights: Option<std::path::PathBuf>,
    /// Seed for parameters drawn from PyTorch's initialization distributions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With `--emit clif`: the JIT's kernel tier for convolutions.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: super::Kernels,
    /// Time every convolution's candidate strategies while compiling and keep
    /// the fastest (at most 200 ms of compile time; `--emit clif` shows the timings).
    #[arg(long)]
    pub autotune: bool,
}

pub fn run(args: &CompileArgs) -> Result<(), kiln::Error> {
    // Lazy forms need no weights: do not read (or require) the file for them.
    let lazy_form = args.emit == Emit::LazyIr || (args.emit == Emit::Dot && args.lazy);
    if lazy_form && args.save_weights.is_some() {
        return Err(kiln::Error::Usage(
            "--save-weights needs resolved parameters: it does not go with --emit lazy-ir or --lazy".into(),
        ));
    }
    let source = if lazy_form {
        ParamSource::Init { seed: args.seed }
    } else {
        args.weights.source(args.seed, super::common::memory_limit(&args.model))?
    };
    let resolved = |source| -> Result<kiln::Graph, kiln::Error> {
        let g = load_resolved(&args.model, source)?;
        if let Some(path) = &args.save_weights {
            kiln::save_weights(&g, path)?;
        }
        Ok(g)
    };
    match args.emit {
        Emit::LazyIr => out!("{}", kiln::load_model(&args.model.model)?),
        Emit::Dot if args.lazy => {
            // Validate shapes first so a broken model is reported, then draw it as written.
            load_inferred(&args.model)?;
            outln!("{}", kiln::load_model(&args.model.model)?.to_dot());
        }
        Emit::Ir => out!("{}", resolved(source)?),
        Emit::Json => {
            let g = resolved(source)?;
            if args.save_weights.is_none() {
                eprintln!(
                    "note: the model file holds no parameters; write them with --save-weights FILE.safetensors \
                     and run with `kiln run MODEL.json --weights FILE.safetensors`"
                );
            }
            outln!("{}", kiln::model_json(&g)?);
        }
        Emit::Dot => outln!("{}", resolved(source)?.to_dot()),
        Emit::Clif => {
            let options = super::jit_options(None, args.kernels, args.autotune)?;
            let compiled = kiln::jit::compile_with(&resolved(source)?, options)?;
            for k in compiled.kernels() {
                let how = k.strategy.map_or(String::new(), |s| format!(", {s:?}"));
                outln!("; kernel {} computes {} ({} work items{how})", k.kernel, k.nodes, k.work_items);
            }
            out!("{}", compiled.clif());
        }
    }
    Ok(())
}
