//! Quick single-threaded GFLOP/s table for the benchmark shapes:
//! `cargo run -p kiln-jit --release --example gflops [-- opt=none] [filter]`.

#[path = "../benches/support/shapes.rs"]
mod shapes;

use std::time::Instant;

use kiln_jit::{Epilogue, KernelBuilder, OptLevel};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = if args.iter().any(|a| a == "opt=none") { OptLevel::None } else { OptLevel::Speed };
    let filter: Vec<&String> = args.iter().filter(|a| !a.contains('=')).collect();
    println!("{:<8} {:>10} {:>10} {:>10} {:>9}", "shape", "compile ms", "median ms", "GFLOP/s", "items");
    for (name, g) in shapes::shapes() {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0f32; g.output_len()];
        let t0 = Instant::now();
        let mut kb = KernelBuilder::with_opt_level(opt).expect("builder");
        let id = kb.add_conv_transpose2d(&g, &w, &Epilogue::none()).expect("kernel");
        let lib = kb.finish().expect("finish");
        let compile = t0.elapsed().as_secs_f64() * 1e3;
        // Warm up, then time enough repetitions for ~0.3 s.
        lib.run_all(id, &[&x], &mut y).expect("run");
        let t = Instant::now();
        lib.run_all(id, &[&x], &mut y).expect("run");
        let once = t.elapsed().as_secs_f64();
        let reps = ((0.3 / once.max(1e-6)) as usize).clamp(3, 2000);
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t = Instant::now();
            lib.run_all(id, &[&x], &mut y).expect("run");
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{:<8} {:>10.1} {:>10.3} {:>10.1} {:>9}",
            name,
            compile,
            med * 1e3,
            g.flops() as f64 / med / 1e9,
            lib.work_items(id)
        );
    }
}
