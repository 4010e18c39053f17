//! Quick GFLOP/s table for the benchmark shapes, per kernel tier:
//! `cargo run -p kiln-jit --release --example gflops [-- opt=none] [tier=all|auto|cranelift|avx2|avx512] [threads=1,2] [split=interleave] [filter]`.
//!
//! Each cell is the median of timed runs (~0.3 s per cell after a warm-up);
//! with `threads=T` the work range is split evenly over `T` scoped std threads
//! per run (thread start-up included, as a graph executor with a pool would not);
//! `split=interleave` hands out single items round robin instead.

#[path = "../benches/support/shapes.rs"]
mod shapes;

use std::time::Instant;

use kiln_jit::kernel_api::{Epilogue, KernelBuilder, KernelLibrary, Options};
use kiln_jit::{KernelTier, NativeIsa, OptLevel};

struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint work ranges of one output to scoped threads.
unsafe impl Send for SendPtr {}
// SAFETY: see above.
unsafe impl Sync for SendPtr {}

fn run(
    lib: &KernelLibrary,
    id: kiln_jit::kernel_api::KernelId,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
    interleave: bool,
) {
    let items = lib.work_items(id);
    if threads <= 1 {
        lib.run_all(id, &[x], y).expect("run");
        return;
    }
    let out = SendPtr(y.as_mut_ptr());
    std::thread::scope(|s| {
        for t in 0..threads {
            let out = &out;
            s.spawn(move || {
                let ranges: Vec<_> = if interleave {
                    // One item at a time, round robin (what a pool handing out
                    // single-item chunks does).
                    (t..items).step_by(threads).map(|i| i..i + 1).collect()
                } else {
                    std::iter::once(items * t / threads..items * (t + 1) / threads).collect()
                };
                for r in ranges {
                    // SAFETY: buffers have the kernel's lengths; disjoint ranges write disjoint outputs.
                    unsafe { lib.run(id, &[x.as_ptr()], out.0, r).expect("run") };
                }
            });
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = if args.iter().any(|a| a == "opt=none") { OptLevel::None } else { OptLevel::Speed };
    let value = |key: &str| args.iter().find_map(|a| a.strip_prefix(key).map(str::to_string));
    let tier_arg = value("tier=").unwrap_or_else(|| "all".into());
    let mut tiers: Vec<(&str, KernelTier)> = Vec::new();
    for (n, t) in [
        ("cranelift", KernelTier::Cranelift),
        ("avx2", KernelTier::Native(NativeIsa::Avx2)),
        ("avx512", KernelTier::Native(NativeIsa::Avx512)),
        ("auto", KernelTier::Auto),
    ] {
        let wanted = if tier_arg == "all" { n != "auto" } else { tier_arg == n };
        if wanted
            && (t == KernelTier::Cranelift
                || t == KernelTier::Auto
                || KernelBuilder::with_options(Options { opt_level: opt, tier: t, ..Options::default() }).is_ok())
        {
            tiers.push((n, t));
        }
    }
    let interleave = args.iter().any(|a| a == "split=interleave");
    let threads: Vec<usize> =
        value("threads=").map_or(vec![1], |v| v.split(',').filter_map(|t| t.parse().ok()).collect());
    let filter: Vec<&String> = args.iter().filter(|a| !a.contains('=')).collect();
    println!(
        "{:<8} {:<10} {:>3} {:>10} {:>10} {:>10} {:>6}  strategy",
        "shape", "tier", "thr", "compile ms", "median ms", "GFLOP/s", "items"
    );
    for (name, g) in shapes::shapes() {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0f32; g.output_len()];
        for &(tname, tier) in &tiers {
            let t0 = Instant::now();
            let mut kb =
                KernelBuilder::with_options(Options { opt_level: opt, tier, ..Options::default() }).expect("builder");
            let id = kb.add_conv_transpose2d(&g, &w, &Epilogue::none()).expect("kernel");
            let lib = kb.finish().expect("finish");
            let compile = t0.elapsed().as_secs_f64() * 1e3;
            for &th in &threads {
                // Warm up, then time enough repetitions for ~0.3 s.
                run(&lib, id, &x, &mut y, th, interleave);
                let t = Instant::now();
                run(&lib, id, &x, &mut y, th, interleave);
                let once = t.elapsed().as_secs_f64();
                let reps = ((0.3 / once.max(1e-6)) as usize).clamp(3, 2000);
                let mut times = Vec::with_capacity(reps);
                for _ in 0..reps {
                    let t = Instant::now();
                    run(&lib, id, &x, &mut y, th, interleave);
                    times.push(t.elapsed().as_secs_f64());
                }
                times.sort_by(f64::total_cmp);
                let med = times[times.len() / 2];
                println!(
                    "{:<8} {:<10} {:>3} {:>10.1} {:>10.3} {:>10.1} {:>6}  {:?}",
                    name,
                    tname,
                    th,
                    compile,
                    med * 1e3,
                    g.flops() as f64 / med / 1e9,
                    lib.work_items(id),
                    lib.strategy(id).expect("known id")
                );
            }
        }
    }
}
