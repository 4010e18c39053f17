//! Benchmark support shared by `kiln bench` and the criterion benches: the
//! shape file format of `../shared/bench/shapes.json`, the peers' data
//! protocol (inputs `U[-1,1)`, weights `U[-1,1)/sqrt(C_in/groups·k·k)`, no
//! bias) and their timing protocol (warm-up, then at least 20 calls and at
//! least 1 s of timed work; median and min per call).

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_ir::ndarray::ArrayD;
use kiln_runtime::{RandomTensor, Rng, Tensor};
use serde::Deserialize;

use crate::{ConvTranspose2dParams, Error, Graph, GraphBuilder, ParamSource};

/// One benchmark layer, as in `shapes.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct BenchShape {
    /// Short name (`dcgan2`).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub what: String,
    /// `[N, C_in, H, W]`.
    pub input_shape: Vec<usize>,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel.
    pub kernel_size: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub padding: usize,
    /// Output padding.
    pub output_padding: usize,
    /// Dilation.
    pub dilation: usize,
    /// Groups.
    pub groups: usize,
    /// Whether the layer has a bias (false in the peers' protocol).
    #[serde(default)]
    pub bias: bool,
    /// Expected output shape.
    pub output_shape: Vec<usize>,
    /// FLOPs per call (`2·N·C_in·(C_out/g)·k²·H·W`).
    pub flops: u64,
}

#[derive(Deserialize)]
struct ShapeFile {
    shapes: Vec<BenchShape>,
}

/// The default shape file: `../shared/bench/shapes.json` beside the repository.
pub fn default_shapes_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/shapes.json")
}

/// Reads a shape file.
pub fn load_shapes(path: &Path) -> Result<Vec<BenchShape>, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let file: ShapeFile =
        serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: not a shapes file: {e}", path.display())))?;
    Ok(file.shapes)
}

/// The shape's layer as a resolved one-node graph with the peers' weights
/// (seeded by the shape's name), and its input.
pub fn layer(shape: &BenchShape) -> Result<(Graph, Tensor), Error> {
    let mut b = GraphBuilder::new(shape.name.clone());
    let x = b.input("x", &shape.input_shape)?;
    let params = ConvTranspose2dParams::new(shape.out_channels, shape.kernel_size)
        .stride(shape.stride)
        .padding(shape.padding)
        .output_padding(shape.output_padding)
        .dilation(shape.dilation)
        .groups(shape.groups)
        .bias(shape.bias);
    b.lazy_conv_transpose2d("up", x, params)?;
    let g = b.finish()?;
    let cin = shape.input_shape.get(1).copied().unwrap_or(1);
    let scale = 1.0 / ((cin / shape.groups.max(1)) as f32 * (shape.kernel_size * shape.kernel_size) as f32).sqrt();
    let wshape = vec![cin, shape.out_channels / shape.groups.max(1), shape.kernel_size, shape.kernel_size];
    let mut rng = Rng::for_stream(0, &shape.name);
    let weight: ArrayD<f32> = rng.tensor(&wshape).mapv(|v| v * scale);
    let mut state = std::collections::BTreeMap::new();
    state.insert("up.weight".to_string(), weight);
    if shape.bias {
        state.insert("up.bias".to_string(), rng.tensor(&[shape.out_channels]));
    }
    let g = crate::resolve(g, ParamSource::StateDict(state))?;
    let input = rng.tensor(&shape.input_shape);
    Ok((g, input))
}

/// Wall-time statistics of one measured function.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Median time per call.
    pub median: Duration,
    /// Fastest call.
    pub min: Duration,
    /// Timed calls.
    pub runs: usize,
}

/// The peers' protocol: warm up (≥2 calls and ≥0.2 s), then time at least
/// `min_runs` calls and at least `min_time` of work (at most 2000 calls).
pub fn measure(mut f: impl FnMut(), min_runs: usize, min_time: Duration) -> Timing {
    let warm = Instant::now();
    let mut warm_calls = 0;
    while warm_calls < 2 || warm.elapsed() < Duration::from_millis(200) {
        f();
        warm_calls += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    // At least one timed call whatever the arguments, so the median exists.
    while times.len() < min_runs.max(1) || (start.elapsed() < min_time && times.len() < 2000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Timing { median: times[times.len() / 2], min: times[0], runs: times.len() }
}

/// FMA peak of one core at a vector width, measured with independent
/// accumulator chains (no memory traffic), in GFLOP/s.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// Vector width in bits (128 for Cranelift's `f32x4`).
    pub bits: u32,
    /// Measured GFLOP/s on one thread.
    pub gflops: f64,
}

/// Measures the one-core FMA peak at every vector width the CPU supports
/// (128, 256, 512 bits), or an empty list on other architectures.
pub fn measure_peaks() -> Vec<Peak> {
    #[cfg(target_arch = "x86_64")]
    {
        peak_x86::measure()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

#[cfg(target_arch = "x86_64")]
mod peak_x86 {
    use std::arch::x86_64::*;
    use std::time::Instant;

    use super::Peak;

    const ITERS: u64 = 20_000_000;
    const CHAINS: u64 = 12;

    macro_rules! fma_loop {
        ($name:ident, $feat:literal, $ty:ty, $set1:ident, $fma:ident, $add:ident, $store:ident, $lanes:expr) => {
            #[target_feature(enable = $feat)]
            unsafe fn $name(iters: u64) -> f32 {
                let m = $set1(0.999_999);
                let a = $set1(1e-7);
                let mut acc: [$ty; CHAINS as usize] = [$set1(1.0); CHAINS as usize];
                for _ in 0..iters {
                    for x in acc.iter_mut() {
                        *x = $fma(*x, m, a);
                    }
                }
                let mut s = acc[0];
                for x in &acc[1..] {
                    s = $add(s, *x);
                }
                let mut out = [0f32; $lanes];
                // SAFETY: `out` holds exactly one vector of lanes.
                unsafe { $store(out.as_mut_ptr(), s) };
                out.iter().sum()
            }
        };
    }
    fma_loop!(fma128, "fma", __m128, _mm_set1_ps, _mm_fmadd_ps, _mm_add_ps, _mm_storeu_ps, 4);
    fma_loop!(fma256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8);
    fma_loop!(fma512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16);

    fn time(bits: u32, f: unsafe fn(u64) -> f32) -> Peak {
        // SAFETY: each `f` is only called after its CPU feature was detected.
        std::hint::black_box(unsafe { f(ITERS / 10) });
        let t = Instant::now();
        // SAFETY: as above.
        std::hint::black_box(unsafe { f(ITERS) });
        let secs = t.elapsed().as_secs_f64();
        let flops = ITERS as f64 * CHAINS as f64 * (bits / 32) as f64 * 2.0;
        Peak { bits, gflops: flops / secs / 1e9 }
    }

    pub fn measure() -> Vec<Peak> {
        let mut v = Vec::new();
        if is_x86_feature_detected!("fma") {
            v.push(time(128, fma128));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(time(256, fma256));
        }
        if is_x86_feature_detected!("avx512f") {
            v.push(time(512, fma512));
        }
        v
    }
}

/// Copy bandwidth: `threads` threads each copying their share of a
/// `bytes`-byte buffer into another (`copy_from_slice`, which is `memcpy`),
/// in GB/s counting the bytes read and the bytes written, median of the
/// timing protocol. The reference memory-bound kernels are compared with:
/// an op that reads and writes as many bytes as the copy does at this
/// bandwidth is as fast as moving its data can be.
pub fn copy_bandwidth(bytes: usize, threads: usize) -> f64 {
    let floats = (bytes / 4).max(1024);
    let threads = threads.clamp(1, 64);
    let src = vec![1.0f32; floats];
    let mut dst = vec![0.0f32; floats];
    let per = floats.div_ceil(threads);
    let timing = measure(
        || {
            if threads == 1 {
                dst.copy_from_slice(&src);
            } else {
                std::thread::scope(|s| {
                    for (d, x) in dst.chunks_mut(per).zip(src.chunks(per)) {
                        s.spawn(move || d.copy_from_slice(x));
                    }
                });
            }
            std::hint::black_box(&mut dst);
        },
        20,
        Duration::from_millis(300),
    );
    (2 * 4 * floats) as f64 / timing.median.as_secs_f64() / 1e9
}

/// One memory-bound layer of [`memory_layers`]: a resolved one-op graph
/// (after a first op that only makes its input), its inputs and the bytes
/// the op must move (its input and output once each).
pub struct MemoryLayer {
    /// Short name (`maxpool_k2`).
    pub name: String,
    /// The resolved graph.
    pub graph: Graph,
    /// Its inputs.
    pub inputs: Vec<Tensor>,
    /// Bytes read plus bytes written by the op, each tensor once.
    pub bytes: usize,
}

/// The memory-bound ops of a decoder (pooling, padding, normalization,
/// elementwise, upsampling, shuffles, concatenation) on `[n, c, h, w]`
/// tensors, each as its own graph.
pub fn memory_layers(n: usize, c: usize, h: usize, w: usize) -> Result<Vec<MemoryLayer>, Error> {
    use serde_json::json;
    let x = [n, c, h, w];
    let len = n * c * h * w;
    // (name, node JSON, second input, output floats)
    let cases: Vec<(&str, serde_json::Value, bool, usize)> = vec![
        ("relu", json!({"op": "ReLU"}), false, len),
        ("silu", json!({"op": "SiLU"}), false, len),
        ("add", json!({"op": "Add", "inputs": ["x", "y"]}), true, len),
        ("bn", json!({"op": "BatchNorm2d", "args": {"num_features": c}}), false, len),
        ("inorm", json!({"op": "InstanceNorm2d", "args": {"num_features": c, "affine": true}}), false, len),
        ("gnorm", json!({"op": "GroupNorm", "args": {"num_groups": (c / 4).max(1), "num_channels": c}}), false, len),
        ("maxpool_k2", json!({"op": "MaxPool2d", "args": {"kernel_size": 2}}), false, len / 4),
        ("avgpool_k3s1", json!({"op": "AvgPool2d", "args": {"kernel_size": 3, "stride": 1, "padding": 1}}), false, len),
        ("reflpad_1", json!({"op": "ReflectionPad2d", "args": {"padding": 1}}), false, n * c * (h + 2) * (w + 2)),
        ("zeropad_1", json!({"op": "ZeroPad2d", "args": {"padding": 1}}), false, n * c * (h + 2) * (w + 2)),
        ("nearest_x2", json!({"op": "Upsample", "args": {"scale_factor": 2}}), false, 4 * len),
        ("bilinear_x2", json!({"op": "Upsample", "args": {"scale_factor": 2, "mode": "bilinear"}}), false, 4 * len),
        ("shuffle_2", json!({"op": "PixelShuffle", "args": {"upscale_factor": 2}}), false, len),
        ("cat", json!({"op": "Concat", "inputs": ["x", "y"], "args": {"dim": 1}}), true, 2 * len),
    ];
    let mut layers = Vec::new();
    for (name, mut node, two, out_floats) in cases {
        node["name"] = json!("op");
        let mut inputs = json!({"x": x});
        if two {
            inputs["y"] = json!(x);
        }
        let model = json!({"name": name, "inputs": inputs, "nodes": [node]});
        let g = kiln_ir::model_from_value(model)?;
        let g = crate::resolve(g, ParamSource::Init { seed: 1 })?;
        let mut rng = Rng::for_stream(1, name);
        let count = if two { 2 } else { 1 };
        let ins: Vec<Tensor> = (0..count).map(|_| rng.tensor(&x)).collect();
        let bytes = 4 * (count * len + out_floats);
        layers.push(MemoryLayer { name: name.to_string(), graph: g, inputs: ins, bytes });
    }
    Ok(layers)
}
