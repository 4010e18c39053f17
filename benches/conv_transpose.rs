//! Per-layer GFLOP/s of the ten benchmark shapes (`../shared/bench/shapes.json`,
//! or `$KILN_BENCH_SHAPES`): the JIT on one thread and on all cores, and the
//! reference interpreter. Criterion's throughput is in FLOPs, so its
//! "elem/s" figures read as FLOP/s. Compare with `../shared/bench/peers.md`.
//!
//! `cargo bench --bench conv_transpose [-- FILTER]`

// `criterion_group!` generates an undocumented entry function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiln::bench::{default_shapes_path, layer, load_shapes};
use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::Interpreter;

fn conv_transpose(c: &mut Criterion) {
    let path = std::env::var_os("KILN_BENCH_SHAPES").map(Into::into).unwrap_or_else(default_shapes_path);
    let shapes = match load_shapes(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    for shape in shapes {
        let (graph, input) = layer(&shape).expect("benchmark layer resolves");
        let mut group = c.benchmark_group(shape.name.clone());
        group.throughput(Throughput::Elements(shape.flops));
        group.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(300));
        let inputs = [input];
        for threads in [1, 0] {
            let exe = compile_with(&graph, CompileOptions { threads, ..Default::default() }).expect("compiles");
            let label =
                if threads == 1 { "jit-1-thread".to_string() } else { format!("jit-{}-threads", exe.threads()) };
            group.bench_function(BenchmarkId::from_parameter(label), |b| b.iter(|| exe.run(&inputs).expect("runs")));
        }
        group.sample_size(10).measurement_time(Duration::from_secs(1));
        group.bench_function(BenchmarkId::from_parameter("interpreter"), |b| {
            b.iter(|| Interpreter::run(&graph, &inputs).expect("runs"))
        });
        group.finish();
    }
}

criterion_group!(benches, conv_transpose);
criterion_main!(benches);
