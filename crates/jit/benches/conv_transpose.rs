//! Single-threaded GFLOP/s of the JIT conv-transpose kernels on the ten
//! benchmark shapes (`shared/bench/shapes.json`), for every kernel tier this
//! CPU can run (`cranelift`, `avx2`, `avx512`). Criterion reports throughput
//! in elements; each "element" is one FLOP, so elem/s = FLOP/s.

// `criterion_group!` generates an undocumented entry function.
#![allow(missing_docs)]

#[path = "support/shapes.rs"]
mod shapes;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_jit::kernel_api::{Epilogue, KernelBuilder, Options};
use kiln_jit::{KernelTier, NativeIsa};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_transpose2d_1thread");
    group.sample_size(20);
    let mut tiers = vec![("cranelift", KernelTier::Cranelift)];
    for (n, isa) in [("avx2", NativeIsa::Avx2), ("avx512", NativeIsa::Avx512)] {
        if isa.resolve().is_some() {
            tiers.push((n, KernelTier::Native(isa)));
        }
    }
    for (name, g) in shapes::shapes() {
        let w: Vec<f32> = (0..g.weight_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0f32; g.output_len()];
        for &(tname, tier) in &tiers {
            let mut kb = KernelBuilder::with_options(Options { tier, ..Options::default() }).expect("host ISA");
            let id = kb.add_conv_transpose2d(&g, &w, &Epilogue::none()).expect("benchmark shape compiles");
            let lib = kb.finish().expect("finalize");
            group.throughput(Throughput::Elements(g.flops()));
            group
                .bench_function(format!("{name}/{tname}"), |b| b.iter(|| lib.run_all(id, &[&x], &mut y).expect("run")));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
