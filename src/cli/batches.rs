//! `kiln bench MODEL --batches 1,2,4,...`: one [`kiln::Model`] serving many
//! batch sizes. Per batch size: the compile time of that size, the run time
//! through the model (cache hit) and through the compiled version directly,
//! and images per second. With `--stream N`: N seeded random batch sizes up
//! to the largest listed, through the model, against a graph precompiled
//! for every size and against compiling every size exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln::bench::measure;
use kiln::runtime::{RandomTensor, Rng};
use kiln::{Model, ModelOptions};

use super::bench::BenchArgs;

/// Largest batch `--batches` may list: far beyond a serving batch, small
/// enough that the tensors of a toy model still fit.
const MAX_BATCH: usize = 4096;
/// Most calls `--stream` may ask for.
const MAX_STREAM: usize = 100_000;

/// Parses `--batches 1,2,4`.
fn parse_batches(s: &str) -> Result<Vec<usize>, kiln::Error> {
    let bad = |why: String| kiln::Error::Usage(format!("--batches {s}: {why}"));
    let list: Vec<usize> = s
        .split(',')
        .map(|d| match d.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_BATCH).contains(&n) => Ok(n),
            _ => Err(bad(format!("`{d}` is not a batch size between 1 and {MAX_BATCH}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(list)
}

/// The input shapes at batch `n`: dim 0 is `n`, other open dims from `--shape`.
fn shapes_at(model: &Model, given: &BTreeMap<String, Vec<usize>>, n: usize) -> Result<Vec<Vec<usize>>, kiln::Error> {
    model
        .input_names()
        .iter()
        .zip(model.input_shapes())
        .map(|(name, declared)| {
            let dims = declared.dims().ok_or_else(|| kiln::Error::Usage(format!("input `{name}` has no rank")))?;
            let mut shape: Vec<Option<usize>> = match given.get(*name) {
                Some(s) => s.iter().map(|&d| Some(d)).collect(),
                None => dims.iter().map(|d| d.known()).collect(),
            };
            if let Some(d0) = shape.first_mut() {
                *d0 = Some(n);
            }
            shape.into_iter().collect::<Option<Vec<usize>>>().ok_or_else(|| {
                kiln::Error::Usage(format!(
                    "input `{name}` ({declared}) leaves dims besides the batch open: give them with --shape {name}=..."
                ))
            })
        })
        .collect()
}

fn refs(shapes: &[Vec<usize>]) -> Vec<&[usize]> {
    shapes.iter().map(Vec::as_slice).collect()
}

/// Flat input and output buffers of one call.
type Buffers = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Random inputs and zeroed outputs for `shapes`.
fn buffers(model: &Model, shapes: &[Vec<usize>], seed: u64) -> Result<Buffers, kiln::Error> {
    let ins =
        shapes.iter().enumerate().map(|(i, s)| kiln::tensor::to_vec(&Rng::new(seed + i as u64).tensor(s))).collect();
    let outs = model.output_shapes(&refs(shapes))?.iter().map(|s| vec![0.0; s.iter().product()]).collect();
    Ok((ins, outs))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `--batches` (and `--stream`) for `model_path`.
pub fn run(args: &BenchArgs, batches: &str) -> Result<(), kiln::Error> {
    let list = parse_batches(batches)?;
    let path = args.model.as_ref().ok_or_else(|| kiln::Error::Usage("--batches needs a model".into()))?;
    let given = super::common::parse_shapes(&args.shape)?;
    let compile = super::jit_options(args.threads, args.kernels, args.autotune)?;
    let source = || super::run::param_source(&args.weights, 0);
    let mut graph = kiln::load_model(path)?;
    // Every batch size is asked for: open dim 0 of every input, as a model
    // exported with a dynamic batch would have it.
    for id in graph.inputs().to_vec() {
        if let Some(dims) = graph.node(id).shape().dims().filter(|d| !d.is_empty()) {
            let mut dims = dims.to_vec();
            dims[0] = kiln::Dim::Unknown;
            graph.set_shape(id, kiln::Shape::Ranked(dims));
        }
    }
    let options = ModelOptions { compile, ..ModelOptions::default() };
    let model = Model::new(graph.clone(), source()?, options)?;
    let budget = Duration::from_secs_f64(args.min_seconds);
    outln!(
        "{}: one kiln::Model, {} threads; compile = binding + JIT of that batch size (weights packed once, shared)",
        path.display(),
        model.threads()
    );
    outln!(
        "{:>6} {:>11} {:>11} {:>11} {:>10} {:>12}",
        "batch",
        "compile ms",
        "model ms",
        "direct ms",
        "overhead",
        "images/s"
    );
    for &n in &list {
        let shapes = shapes_at(&model, &given, n)?;
        let t = Instant::now();
        model.prepare(&refs(&shapes))?;
        let compile_ms = ms(t.elapsed());
        let (ins, mut outs) = buffers(&model, &shapes, n as u64)?;
        let in_refs: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
        let mut failed = None;
        let through_model = measure(
            || {
                let mut o: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                if let Err(e) = model.run_into(&refs(&shapes), &in_refs, &mut o) {
                    failed = Some(e);
                }
            },
            args.min_runs,
            budget,
        );
        if let Some(e) = failed.take() {
            return Err(e);
        }
        // The exact version, called directly: what the model's dispatch
        // (cache lookup, chunking) costs on top.
        let exact = model.version(&refs(&shapes))?;
        let direct = measure(
            || {
                let mut o: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                if let Err(e) = exact.compiled().run_into(&in_refs, &mut o) {
                    failed = Some(kiln::Error::from(e));
                }
            },
            args.min_runs,
            budget,
        );
        if let Some(e) = failed.take() {
            return Err(e);
        }
        let (m, d) = (ms(through_model.median), ms(direct.median));
        outln!("{n:>6} {compile_ms:>11.1} {m:>11.3} {d:>11.3} {:>9.2}x {:>12.0}", m / d, n as f64 / (m / 1e3));
    }
    hit_overhead(&model, &given)?;
    if let Some(calls) = args.stream {
        stream(args, &graph, &given, &list, calls, options)?;
    }
    let stats = model.cache_stats();
    let w = model.weight_cache();
    outln!(
        "cache: {} versions held, {} compiled, {} hits, {} evicted; packed weights: {} buffers, {:.2} MiB, {} reuses",
        stats.len,
        stats.compiles,
        stats.hits,
        stats.evictions,
        w.len(),
        w.bytes() as f64 / (1 << 20) as f64,
        w.hits()
    );
    Ok(())
}

/// The dispatch cost of a cache hit: `Model::run_into` against the same
/// compiled version's `run_into`, at batch 1, averaged over many calls.
fn hit_overhead(model: &Model, given: &BTreeMap<String, Vec<usize>>) -> Result<(), kiln::Error> {
    let shapes = shapes_at(model, given, 1)?;
    let (ins, mut outs) = buffers(model, &shapes, 1)?;
    let in_refs: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
    let exact = model.version(&refs(&shapes))?;
    let shape_refs = refs(&shapes);
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    const CALLS: u32 = 2000;
    let mut best = (f64::INFINITY, f64::INFINITY);
    // Interleaved rounds, best of each: the two paths see the same machine state.
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..CALLS {
            model.run_into(&shape_refs, &in_refs, &mut o)?;
        }
        best.0 = best.0.min(t.elapsed().as_secs_f64() / f64::from(CALLS));
        let t = Instant::now();
        for _ in 0..CALLS {
            exact.compiled().run_into(&in_refs, &mut o)?;
        }
        best.1 = best.1.min(t.elapsed().as_secs_f64() / f64::from(CALLS));
    }
    outln!(
        "cache-hit overhead at batch 1: model {:.2} us/call, direct {:.2} us/call, difference {:.2} us",
        best.0 * 1e6,
        best.1 * 1e6,
        (best.0 - best.1) * 1e6
    );
    Ok(())
}

/// `--stream N`: seeded random batch sizes between 1 and the largest listed.
fn stream(
    args: &BenchArgs,
    graph: &kiln::Graph,
    given: &BTreeMap<String, Vec<usize>>,
    list: &[usize],
    calls: usize,
    options: ModelOptions,
) -> Result<(), kiln::Error> {
    if calls == 0 || calls > MAX_STREAM {
        return Err(kiln::Error::Usage(format!("--stream must be between 1 and {MAX_STREAM}, got {calls}")));
    }
    let max = list.iter().copied().max().unwrap_or(1);
    let mut rng = Rng::new(7);
    let sizes: Vec<usize> = (0..calls).map(|_| 1 + (rng.next_u64() % max as u64) as usize).collect();
    let images: usize = sizes.iter().sum();
    let source = || super::run::param_source(&args.weights, 0);
    // Precompiled: one exact version per size, all compiled before timing.
    let pre =
        Model::new(graph.clone(), source()?, ModelOptions { cache_capacity: max, split_batches: false, ..options })?;
    let t = Instant::now();
    for n in 1..=max {
        pre.prepare(&refs(&shapes_at(&pre, given, n)?))?;
    }
    let pre_compile = t.elapsed();
    let split = Model::new(graph.clone(), source()?, options)?;
    let exact = Model::new(graph.clone(), source()?, ModelOptions { split_batches: false, ..options })?;
    outln!(
        "stream of {calls} random batch sizes 1..={max} ({images} images); precompiling all {max} sizes took {:.0} ms",
        ms(pre_compile)
    );
    outln!("{:<34} {:>10} {:>12} {:>10} {:>9}", "serving", "total ms", "images/s", "compiles", "vs pre");
    // Buffers for every size, made before timing (a server gets them from
    // its caller; the values do not change the timing).
    let mut bufs = Vec::with_capacity(max);
    for n in 1..=max {
        let shapes = shapes_at(&pre, given, n)?;
        let ins: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.5; s.iter().product()]).collect();
        let outs: Vec<Vec<f32>> =
            pre.output_shapes(&refs(&shapes))?.iter().map(|s| vec![0.0; s.iter().product()]).collect();
        bufs.push((shapes, ins, outs));
    }
    let mut base = None;
    for (label, model) in [
        ("precompiled, one version per size", &pre),
        ("kiln::Model, power-of-two chunks", &split),
        ("kiln::Model, exact sizes (LRU 8)", &exact),
    ] {
        let before = model.cache_stats().compiles;
        let t = Instant::now();
        for &n in &sizes {
            let (shapes, ins, outs) = &mut bufs[n - 1];
            let in_refs: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            model.run_into(&refs(shapes), &in_refs, &mut o)?;
        }
        let total = t.elapsed().as_secs_f64();
        let rate = images as f64 / total;
        let vs = base.map_or(1.0, |b: f64| rate / b);
        base.get_or_insert(rate);
        outln!(
            "{label:<34} {:>10.1} {rate:>12.0} {:>10} {vs:>8.2}x",
            total * 1e3,
            model.cache_stats().compiles - before
        );
    }
    Ok(())
}
