//! `kiln compile`: show what Kiln makes of a model.

use clap::Args;
use kiln::ParamSource;

use super::common::{load_inferred, load_resolved, ModelArgs};
use super::run::param_source;
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
    /// A safetensors state dict with PyTorch's key names; without it,
    /// weights are initialized PyTorch-style from `--seed`.
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// Seed for PyTorch-style parameter initialization.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With `--emit clif`: the JIT's kernel tier for convolutions.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: super::Kernels,
}

pub fn run(args: &CompileArgs) -> Result<(), kiln::Error> {
    // Lazy forms need no weights: do not read (or require) the file for them.
    let lazy_form = args.emit == Emit::LazyIr || (args.emit == Emit::Dot && args.lazy);
    let source =
        if lazy_form { ParamSource::Init { seed: args.seed } } else { param_source(&args.weights, args.seed)? };
    match args.emit {
        Emit::LazyIr => out!("{}", kiln::load_model(&args.model.model)?),
        Emit::Dot if args.lazy => {
            // Validate shapes first so a broken model is reported, then draw it as written.
            load_inferred(&args.model)?;
            outln!("{}", kiln::load_model(&args.model.model)?.to_dot());
        }
        Emit::Ir => out!("{}", load_resolved(&args.model, source)?),
        Emit::Json => outln!("{}", load_resolved(&args.model, source)?.to_json()),
        Emit::Dot => outln!("{}", load_resolved(&args.model, source)?.to_dot()),
        Emit::Clif => {
            let options = super::jit_options(None, args.kernels)?;
            let compiled = kiln::jit::compile_with(&load_resolved(&args.model, source)?, options)?;
            for k in compiled.kernels() {
                let how = k.strategy.map_or(String::new(), |s| format!(", {s:?}"));
                outln!("; kernel {} computes {} ({} work items{how})", k.kernel, k.nodes, k.work_items);
            }
            out!("{}", compiled.clif());
        }
    }
    Ok(())
}
