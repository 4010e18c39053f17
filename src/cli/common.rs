//! Pieces shared by the subcommands: loading a model, resolving it within a
//! memory limit, and `kiln check`.

use std::path::PathBuf;

use clap::Args;
use kiln::passes::{footprint, Pass, ShapeInference};
use kiln::{Graph, ParamSource};

/// The model file and how to get its weights.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// The model in Kiln's JSON model format.
    pub model: PathBuf,
    /// Refuse models whose tensors need more than this many MiB in total.
    #[arg(long, default_value_t = 8192)]
    pub max_memory_mib: u64,
    /// Override the batch size (dim 0) of every 4-D graph input.
    #[arg(long)]
    pub batch: Option<usize>,
}

/// The model with every shape inferred, refused if it would not fit in
/// `max_memory_mib` (checked before any parameter is allocated).
pub fn load_inferred(args: &ModelArgs) -> Result<Graph, kiln::Error> {
    let mut g = kiln::load_model(&args.model)?;
    if let Some(batch) = args.batch {
        set_batch(&mut g, batch)?;
    }
    ShapeInference.run(&mut g)?;
    let bytes = footprint(&g)?.total_bytes();
    let limit = u128::from(args.max_memory_mib) * 1024 * 1024;
    if bytes > limit {
        return Err(kiln::Error::TooLarge { bytes, limit });
    }
    Ok(g)
}

/// Sets dim 0 of every 4-D graph input to `batch`.
fn set_batch(g: &mut Graph, batch: usize) -> Result<(), kiln::Error> {
    if batch == 0 {
        return Err(kiln::Error::Usage("--batch must be at least 1".into()));
    }
    let inputs: Vec<_> = g.inputs().to_vec();
    for id in inputs {
        if let Some(mut dims) = g.node(id).shape().as_known().filter(|d| d.len() == 4) {
            dims[0] = batch;
            g.set_shape(id, kiln::Shape::known(&dims));
        }
    }
    Ok(())
}

/// Loads, infers and resolves a model with parameters from `source`.
pub fn load_resolved(args: &ModelArgs, source: ParamSource) -> Result<Graph, kiln::Error> {
    kiln::resolve(load_inferred(args)?, source)
}

/// `kiln check`: validate and print the inferred shapes.
pub fn check(args: &ModelArgs) -> Result<(), kiln::Error> {
    let g = load_inferred(args)?;
    let f = footprint(&g)?;
    let lazy = g.node_ids().filter(|&id| g.node(id).op().is_lazy()).count();
    out!("{g}");
    outln!(
        "ok: {} nodes ({} lazy, all shapes inferred), {} parameters, {:.1} MiB of tensors",
        g.node_count() - g.inputs().len() - g.outputs().len(),
        lazy,
        f.param_elements,
        f.total_bytes() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
