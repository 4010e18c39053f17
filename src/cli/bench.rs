//! `kiln bench`: the benchmark layers (or a whole model) through the JIT with
//! the peers' protocol, each output checked against the interpreter.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use kiln::bench::{
    copy_bandwidth, default_shapes_path, layer, load_shapes, measure, measure_peaks, memory_layers, BenchShape,
};
use kiln::jit::compile_with;
use kiln::passes::flops;
use kiln::runtime::{tensor, Interpreter, Tensor};
use kiln::Graph;

use super::common::ModelArgs;
use super::run::{inputs as model_inputs, param_source};

/// Arguments of `kiln bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A model to benchmark end to end instead of the shape file.
    pub model: Option<PathBuf>,
    /// The shape file (default: ../shared/bench/shapes.json); its kernel_size,
    /// stride, padding, output_padding and dilation are numbers or [h, w].
    #[arg(long)]
    pub shapes: Option<PathBuf>,
    /// Only these shapes (comma-separated names).
    #[arg(long)]
    pub only: Option<String>,
    /// Threads per run (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// One JSON object per line and shape (what the peers harness reads).
    #[arg(long)]
    pub json: bool,
    /// Measure this machine's one-core FMA peak and copy bandwidth, and exit.
    #[arg(long)]
    pub peak: bool,
    /// Time the memory-bound ops (pooling, padding, normalization,
    /// elementwise, upsampling) against this machine's copy bandwidth.
    #[arg(long)]
    pub memory: bool,
    /// With --memory: the tensor shape `N,C,H,W` (default 1,64,128,128).
    #[arg(long, default_value = "1,64,128,128")]
    pub memory_shape: String,
    /// With a model: override the batch size of its 4-D inputs.
    #[arg(long)]
    pub batch: Option<usize>,
    /// With a model: its weights (safetensors); else seeded init.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The JIT's kernel tier for convolutions (report both tiers by running twice).
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: super::Kernels,
    /// Time every convolution's candidate strategies while compiling and keep
    /// the fastest (at most 200 ms of compile time; `--emit clif` shows the timings).
    #[arg(long)]
    pub autotune: bool,
    /// Time `run` (fresh output tensors each call) instead of the
    /// allocation-free `run_into` into reused output buffers.
    #[arg(long)]
    pub owned_outputs: bool,
    /// With a model: serve these batch sizes (comma-separated) from one
    /// `kiln::Model` and report, per size, its compile time, run time and
    /// images per second.
    #[arg(long, value_name = "N,N,...")]
    pub batches: Option<String>,
    /// With --batches: also time a stream of this many random batch sizes
    /// (1 to the largest listed) against graphs precompiled for every size.
    #[arg(long, requires = "batches")]
    pub stream: Option<usize>,
    /// With a model: the shape of an input whose dims the model leaves
    /// open, as NAME=D0,D1,... (repeatable; with --batches, dim 0 is replaced).
    #[arg(long = "shape", value_name = "NAME=D0,D1,...")]
    pub shape: Vec<String>,
    /// Also time every kernel call of the compiled graph (median over the
    /// timed calls) and print where a run's time goes, kernel by kernel.
    #[arg(long)]
    pub profile: bool,
    /// Minimum timed calls.
    #[arg(long, default_value_t = 20)]
    pub min_runs: usize,
    /// Minimum seconds of timed work.
    #[arg(long, default_value_t = 1.0)]
    pub min_seconds: f64,
}

struct Row {
    name: String,
    threads: usize,
    median_ms: f64,
    min_ms: f64,
    runs: usize,
    gflops: f64,
    compile_ms: f64,
    max_abs_diff: f64,
}

fn bench_graph(
    name: &str,
    graph: &Graph,
    inputs: &[Tensor],
    flop_count: f64,
    args: &BenchArgs,
) -> Result<Row, kiln::Error> {
    let options = super::jit_options(args.threads, args.kernels, args.autotune)?;
    let t = Instant::now();
    let exe = compile_with(graph, options)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let got = exe.run(inputs)?;
    let want = Interpreter::run(graph, inputs)?;
    let max_abs_diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| tensor::max_abs_diff(a, b).map_or(f64::INFINITY, f64::from))
        .fold(0.0, f64::max);
    // Time the allocation-free path a serving loop uses: caller-owned output
    // buffers, reused arena (`run_into`). `--owned-outputs` times `run`,
    // which allocates fresh output tensors on every call.
    let flat: Vec<Vec<f32>> = inputs.iter().map(tensor::to_vec).collect();
    let ins: Vec<&[f32]> = flat.iter().map(Vec::as_slice).collect();
    let mut out_bufs: Vec<Vec<f32>> = got.iter().map(|t| vec![0.0; t.len()]).collect();
    let mut failed = None;
    let timing = measure(
        || {
            let result = if args.owned_outputs {
                exe.run(inputs).map(drop)
            } else {
                let mut outs: Vec<&mut [f32]> = out_bufs.iter_mut().map(Vec::as_mut_slice).collect();
                exe.run_into(&ins, &mut outs)
            };
            if let Err(e) = result {
                failed = Some(e);
            }
        },
        args.min_runs,
        timing_budget(args)?,
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    if args.profile {
        let mut outs: Vec<&mut [f32]> = out_bufs.iter_mut().map(Vec::as_mut_slice).collect();
        print_profile(&exe, &ins, &mut outs, timing.runs, args.json)?;
    }
    let median_ms = timing.median.as_secs_f64() * 1e3;
    Ok(Row {
        name: name.to_string(),
        threads: exe.threads(),
        median_ms,
        min_ms: timing.min.as_secs_f64() * 1e3,
        runs: timing.runs,
        gflops: flop_count / (median_ms * 1e6),
        compile_ms,
        max_abs_diff,
    })
}

/// Most timed calls and seconds a bench may ask for: an hour per layer is
/// already absurd; beyond it the arguments are a typo (`--min-seconds inf`).
const MAX_MIN_RUNS: usize = 10_000_000;
const MAX_MIN_SECONDS: f64 = 3600.0;

/// `--min-seconds` as a duration, refusing values `Duration` cannot hold.
fn timing_budget(args: &BenchArgs) -> Result<Duration, kiln::Error> {
    let s = args.min_seconds;
    if !(0.0..=MAX_MIN_SECONDS).contains(&s) {
        return Err(kiln::Error::Usage(format!("--min-seconds must be between 0 and {MAX_MIN_SECONDS}, got {s}")));
    }
    if args.min_runs > MAX_MIN_RUNS {
        return Err(kiln::Error::Usage(format!("--min-runs must be at most {MAX_MIN_RUNS}, got {}", args.min_runs)));
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn run(args: &BenchArgs) -> Result<(), kiln::Error> {
    super::jit_options(args.threads, args.kernels, args.autotune)?;
    timing_budget(args)?;
    let peaks = measure_peaks();
    if args.peak {
        for p in &peaks {
            outln!("fma peak, {}-bit vectors, 1 core: {:.1} GFLOP/s", p.bits, p.gflops);
        }
        for (what, bytes) in
            [("L2-resident, 256 KiB", 256 << 10), ("L3-resident, 4 MiB", 4 << 20), ("DRAM, 256 MiB", 256 << 20)]
        {
            outln!("copy bandwidth, {what}, 1 core: {:.1} GB/s (read + write)", copy_bandwidth(bytes, 1));
        }
        return Ok(());
    }
    if args.memory {
        return memory(args);
    }
    // % of peak is against the widest vectors the CPU has: what the best peers use.
    let peak = peaks.iter().map(|p| p.gflops).fold(0.0, f64::max);
    let mut rows = Vec::new();
    if let Some(batches) = &args.batches {
        return super::batches::run(args, batches);
    }
    if let Some(model) = &args.model {
        let margs =
            ModelArgs { model: model.clone(), max_memory_mib: 8192, batch: args.batch, shapes: args.shape.clone() };
        let inferred = super::common::load_inferred(&margs)?;
        let flop_count = flops(&inferred)? as f64;
        let graph = kiln::resolve(inferred, param_source(&args.weights, 0)?)?;
        let inputs = model_inputs(&graph, &[], 0, u128::MAX, Default::default(), kiln::image::ValueRange::UNIT)?;
        let name = graph.name().unwrap_or("model").to_string();
        if !args.json {
            print_header(peak, args.kernels)?;
        }
        rows.push(bench_graph(&name, &graph, &inputs, flop_count, args)?);
        print_rows(&rows, peak, args.json)?;
    } else {
        let path = args.shapes.clone().unwrap_or_else(default_shapes_path);
        let wanted: Option<Vec<&str>> = args.only.as_deref().map(|s| s.split(',').collect());
        let shapes: Vec<BenchShape> = load_shapes(&path)?
            .into_iter()
            .filter(|s| wanted.as_ref().is_none_or(|w| w.contains(&s.name.as_str())))
            .collect();
        if !args.json {
            print_header(peak, args.kernels)?;
        }
        // A layer that fails is reported and the rest still run (a suite of
        // 90 layers should not lose 50 to one refusal); the command fails at
        // the end.
        let mut failed = Vec::new();
        for shape in &shapes {
            let result = layer(shape)
                .and_then(|(graph, input)| bench_graph(&shape.name, &graph, &[input], shape.flops as f64, args));
            match result {
                Ok(row) => {
                    print_rows(std::slice::from_ref(&row), peak, args.json)?;
                    rows.push(row);
                }
                Err(e) => {
                    eprintln!("error: layer {}: {e}", shape.name);
                    failed.push(shape.name.clone());
                }
            }
        }
        if !failed.is_empty() {
            return Err(kiln::Error::Usage(format!("{} layer(s) failed: {}", failed.len(), failed.join(", "))));
        }
    }
    Ok(())
}

/// Largest tensor `--memory-shape` may ask for (floats): 4 GiB of f32.
const MAX_MEMORY_FLOATS: usize = 1 << 30;

/// `kiln bench --memory`: each memory-bound op's bytes moved per second
/// against a copy of as many bytes on as many threads.
fn memory(args: &BenchArgs) -> Result<(), kiln::Error> {
    let dims: Vec<usize> = args
        .memory_shape
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| kiln::Error::Usage(format!("--memory-shape {:?}: {e}", args.memory_shape)))?;
    let &[n, c, h, w] = dims.as_slice() else {
        return Err(kiln::Error::Usage(format!("--memory-shape needs N,C,H,W, got {:?}", args.memory_shape)));
    };
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&l| l > 0 && l <= MAX_MEMORY_FLOATS);
    if len.is_none() || c < 4 || h < 2 || w < 2 {
        return Err(kiln::Error::Usage(format!(
            "--memory-shape {dims:?}: needs C >= 4, H, W >= 2 and at most {MAX_MEMORY_FLOATS} floats"
        )));
    }
    let layers = memory_layers(n, c, h, w)?;
    outln!("memory-bound ops on [{n}, {c}, {h}, {w}]; copy = memcpy of as many bytes on as many threads, GB/s");
    outln!(
        "{:<13} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "op",
        "threads",
        "median ms",
        "MB moved",
        "GB/s",
        "copy",
        "% of copy"
    );
    for l in &layers {
        let row = bench_graph(&l.name, &l.graph, &l.inputs, 0.0, args)?;
        let gbs = l.bytes as f64 / (row.median_ms * 1e6);
        let copy = copy_bandwidth(l.bytes / 2, row.threads);
        outln!(
            "{:<13} {:>7} {:>10.3} {:>10.1} {:>10.1} {:>8.1} {:>9.0}%",
            l.name,
            row.threads,
            row.median_ms,
            l.bytes as f64 / 1e6,
            gbs,
            copy,
            100.0 * gbs / copy
        );
    }
    Ok(())
}

fn print_header(peak: f64, kernels: super::Kernels) -> Result<(), kiln::Error> {
    outln!("kernels: {kernels:?}; FMA peak (1 core, widest vectors): {peak:.1} GFLOP/s");
    outln!(
        "{:<10} {:>7} {:>10} {:>10} {:>9} {:>7} {:>11} {:>10}",
        "shape",
        "threads",
        "median ms",
        "min ms",
        "GFLOP/s",
        "% peak",
        "compile ms",
        "max diff"
    );
    Ok(())
}

/// `--profile`: each kernel's median wall time over `runs` profiled calls,
/// in execution order, with its share of the summed medians.
fn print_profile(
    exe: &kiln::jit::CompiledGraph,
    ins: &[&[f32]],
    outs: &mut [&mut [f32]],
    runs: usize,
    json: bool,
) -> Result<(), kiln::Error> {
    let kernels = exe.kernels();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); kernels.len()];
    for _ in 0..runs.max(1) {
        for (s, t) in samples.iter_mut().zip(exe.profile_into(ins, outs)?) {
            s.push(t);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s.get(s.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
        })
        .collect();
    let total: f64 = medians.iter().sum();
    if !json {
        outln!(
            "{:>4} {:>10} {:>6} {:>6}  {:<28} {:<26} nodes",
            "#",
            "median us",
            "share",
            "items",
            "kernel",
            "strategy"
        );
    }
    for (i, (k, us)) in kernels.iter().zip(&medians).enumerate() {
        let strategy = k.strategy.map(|s| format!("{s:?}")).unwrap_or_else(|| "-".into());
        let share = if total > 0.0 { 100.0 * us / total } else { 0.0 };
        if json {
            let line = serde_json::json!({
                "step": i, "kernel": k.kernel, "nodes": k.nodes, "strategy": strategy,
                "work_items": k.work_items, "median_us": us, "share_pct": share,
            });
            outln!("{line}");
        } else {
            outln!(
                "{i:>4} {us:>10.1} {share:>5.1}% {:>6}  {:<28} {:<26} {}",
                k.work_items,
                k.kernel,
                strategy,
                k.nodes
            );
        }
    }
    if !json {
        outln!("     {total:>10.1} (sum of the kernels' medians)");
    }
    Ok(())
}

fn print_rows(rows: &[Row], peak: f64, json: bool) -> Result<(), kiln::Error> {
    for r in rows {
        if json {
            let line = serde_json::json!({
                "name": r.name, "threads": r.threads, "median_ms": r.median_ms, "min_ms": r.min_ms,
                "runs": r.runs, "gflops": r.gflops, "compile_ms": r.compile_ms, "max_abs_diff": r.max_abs_diff,
            });
            outln!("{line}");
        } else {
            let pct = if peak > 0.0 { 100.0 * r.gflops / (peak * r.threads as f64) } else { f64::NAN };
            outln!(
                "{:<10} {:>7} {:>10.3} {:>10.3} {:>9.1} {:>6.0}% {:>11.1} {:>10.2e}",
                r.name,
                r.threads,
                r.median_ms,
                r.min_ms,
                r.gflops,
                pct,
                r.compile_ms,
                r.max_abs_diff
            );
        }
    }
    Ok(())
}
