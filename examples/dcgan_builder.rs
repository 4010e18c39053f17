//! Builds a lazy DCGAN generator with the builder API, resolves it (shape
//! propagation and the lazy→concrete rewrite), prints the IR before and after,
//! JIT-compiles it with Cranelift and runs it on a random latent batch.
//!
//! Run with `cargo run --release --example dcgan_builder`.

// kiln::Error carries the node name and the offending values (see src/lib.rs).
#![allow(clippy::result_large_err)]

use std::time::Instant;

use kiln::runtime::{RandomTensor, Rng};
use kiln::{BatchNorm2dParams, ConvTranspose2dParams, GraphBuilder, ParamSource};

fn main() -> Result<(), kiln::Error> {
    // nn.Sequential(LazyConvTranspose2d(64, 4, 1, 0, bias=False), LazyBatchNorm2d(), ReLU(), ...)
    let mut b = GraphBuilder::new("dcgan");
    let z = b.input("z", [16, 100, 1, 1])?;
    let mut h = b.lazy_conv_transpose2d("up1", z, ConvTranspose2dParams::new(256, 4).bias(false))?;
    for (i, channels) in [(1, 128), (2, 64), (3, 32)] {
        h = b.lazy_batch_norm2d(&format!("bn{i}"), h, BatchNorm2dParams::default())?;
        h = b.relu(&format!("act{i}"), h)?;
        h = b.lazy_conv_transpose2d(
            &format!("up{}", i + 1),
            h,
            ConvTranspose2dParams::new(channels, 4).stride(2).padding(1).bias(false),
        )?;
    }
    h = b.lazy_batch_norm2d("bn4", h, BatchNorm2dParams::default())?;
    h = b.relu("act4", h)?;
    h = b.lazy_conv_transpose2d("up5", h, ConvTranspose2dParams::new(3, 4).stride(2).padding(1).bias(false))?;
    b.tanh("out", h)?;
    let lazy = b.finish()?;
    println!("{lazy}");

    let resolved = kiln::resolve(lazy, ParamSource::Init { seed: 42 })?;
    println!("{resolved}");

    let t = Instant::now();
    let model = kiln::Model::new(resolved, ParamSource::Init { seed: 42 }, kiln::ModelOptions::default())?;
    let kernels = model.version(&[&[16, 100, 1, 1]])?.compiled().kernels();
    println!("compiled {} kernels in {:.1} ms:", kernels.len(), t.elapsed().as_secs_f64() * 1e3);
    for k in kernels {
        println!("  {:<16} {}", k.nodes, k.kernel);
    }
    let z = Rng::new(7).tensor(&[16, 100, 1, 1]);
    let t = Instant::now();
    let images = model.run_named([("z", z)])?;
    println!("ran in {:.2} ms: output {:?}", t.elapsed().as_secs_f64() * 1e3, images[0].shape());
    Ok(())
}
