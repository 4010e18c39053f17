//! Benchmark support shared by `kiln bench` and the criterion benches: the
//! shape file format of `../shared/bench/shapes.json`, the peers' data
//! protocol (inputs `U[-1,1)`, weights `U[-1,1)/sqrt(C_in/groups·kH·kW)`, no
//! bias) and their timing protocol (warm-up, then at least 20 calls and at
//! least 1 s of timed work; median and min per call).

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_ir::ndarray::ArrayD;
use kiln_runtime::{RandomTensor, Rng, Tensor};
use serde::Deserialize;

use crate::ir::Pair2;
use crate::{ConvTranspose2dParams, Error, Graph, GraphBuilder, ParamSource};

/// One benchmark layer, as in `shapes.json`.
///
/// `kernel_size`, `stride`, `padding`, `output_padding` and `dilation` are
/// each a number (both axes, as in the peers' files) or `[h, w]`. A shape is
/// checked when it is read: hyper-parameters in range, `output_shape` equal
/// to PyTorch's `(in-1)·s - 2p + d·(k-1) + op + 1` per axis, and `flops`
/// (which may be left out) equal to `2·N·C_in·(C_out/g)·kH·kW·H·W`; every
/// error names the shape and the field.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawShape")]
pub struct BenchShape {
    /// Short name (`dcgan2`).
    pub name: String,
    /// What it is.
    pub what: String,
    /// `[N, C_in, H, W]`.
    pub input_shape: Vec<usize>,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size `kH x kW`.
    pub kernel_size: Pair2,
    /// Stride.
    pub stride: Pair2,
    /// Padding.
    pub padding: Pair2,
    /// Output padding.
    pub output_padding: Pair2,
    /// Dilation.
    pub dilation: Pair2,
    /// Groups.
    pub groups: usize,
    /// Whether the layer has a bias (false in the peers' protocol).
    pub bias: bool,
    /// Expected output shape.
    pub output_shape: Vec<usize>,
    /// FLOPs per call (`2·N·C_in·(C_out/g)·kH·kW·H·W`).
    pub flops: u64,
}

impl BenchShape {
    /// The weight's shape, `[C_in, C_out/groups, kH, kW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        let cin = self.input_shape.get(1).copied().unwrap_or(1);
        [cin, self.out_channels / self.groups.max(1), self.kernel_size.h, self.kernel_size.w]
    }
}

/// Largest kernel size, stride, padding, output padding or dilation a shape
/// file may give: far beyond any layer worth timing, small enough that no
/// size computed from them overflows.
pub const MAX_HYPER_PARAMETER: usize = 1 << 16;
/// Largest input, weight or output tensor of a shape, in floats (1 GiB).
pub const MAX_TENSOR_FLOATS: u128 = 1 << 28;

/// A shape as written in the file, before its checks.
#[derive(Deserialize)]
struct RawShape {
    name: String,
    #[serde(default)]
    what: String,
    input_shape: Vec<usize>,
    out_channels: usize,
    kernel_size: serde_json::Value,
    stride: serde_json::Value,
    padding: serde_json::Value,
    output_padding: serde_json::Value,
    dilation: serde_json::Value,
    groups: usize,
    #[serde(default)]
    bias: bool,
    output_shape: Vec<usize>,
    #[serde(default)]
    flops: Option<u64>,
}

/// A number (both axes) or `[h, w]`, each at least `min` and at most
/// [`MAX_HYPER_PARAMETER`]; the error names the shape and the field.
fn pair(shape: &str, field: &str, v: &serde_json::Value, min: usize) -> Result<Pair2, String> {
    let bad = |why: String| format!("shape `{shape}`: {field}: {why}");
    let one = |x: &serde_json::Value| -> Result<usize, String> {
        let n = match x.as_u64() {
            Some(n) => n,
            None if x.as_i64().is_some() => return Err(bad(format!("must not be negative, got {x}"))),
            None => return Err(bad(format!("expected a non-negative integer or [h, w], got {x}"))),
        };
        if n < min as u64 {
            return Err(bad(format!("must be at least {min}, got {n}")));
        }
        if n > MAX_HYPER_PARAMETER as u64 {
            return Err(bad(format!("{n} is too large (at most {MAX_HYPER_PARAMETER})")));
        }
        Ok(n as usize)
    };
    match v {
        serde_json::Value::Array(items) if items.len() == 2 => Ok(Pair2 { h: one(&items[0])?, w: one(&items[1])? }),
        serde_json::Value::Array(items) => Err(bad(format!("expected [h, w], got {} elements: {v}", items.len()))),
        _ => Ok(Pair2::square(one(v)?)),
    }
}

/// PyTorch's transposed-convolution output size along one axis, or `None`
/// when it is below 1.
fn out_axis(input: usize, k: usize, s: usize, p: usize, op: usize, d: usize) -> Option<usize> {
    let [i, k, s, p, op, d] = [input, k, s, p, op, d].map(|v| v as i128);
    let out = (i - 1) * s - 2 * p + d * (k - 1) + op + 1;
    usize::try_from(out).ok().filter(|&o| o >= 1)
}

impl TryFrom<RawShape> for BenchShape {
    type Error = String;

    fn try_from(r: RawShape) -> Result<Self, String> {
        let name = r.name.as_str();
        let bad = |field: &str, why: String| format!("shape `{name}`: {field}: {why}");
        let kernel_size = pair(name, "kernel_size", &r.kernel_size, 1)?;
        let stride = pair(name, "stride", &r.stride, 1)?;
        let padding = pair(name, "padding", &r.padding, 0)?;
        let output_padding = pair(name, "output_padding", &r.output_padding, 0)?;
        let dilation = pair(name, "dilation", &r.dilation, 1)?;
        let &[n, cin, h, w] = r.input_shape.as_slice() else {
            return Err(bad("input_shape", format!("expected [N, C_in, H, W], got {:?}", r.input_shape)));
        };
        let floats = |dims: &[usize]| dims.iter().map(|&d| d as u128).product::<u128>();
        if r.input_shape.contains(&0) || floats(&r.input_shape) > MAX_TENSOR_FLOATS {
            return Err(bad(
                "input_shape",
                format!("{:?}: every dim must be at least 1, at most {MAX_TENSOR_FLOATS} floats", r.input_shape),
            ));
        }
        if r.out_channels == 0 {
            return Err(bad("out_channels", "must be at least 1".into()));
        }
        if r.groups == 0 || !cin.is_multiple_of(r.groups) || !r.out_channels.is_multiple_of(r.groups) {
            return Err(bad(
                "groups",
                format!(
                    "{} must be at least 1 and divide C_in = {cin} and out_channels = {}",
                    r.groups, r.out_channels
                ),
            ));
        }
        let cout_g = r.out_channels / r.groups;
        let weight = [cin, cout_g, kernel_size.h, kernel_size.w];
        if floats(&weight) > MAX_TENSOR_FLOATS {
            return Err(bad("kernel_size", format!("the weight {weight:?} is over {MAX_TENSOR_FLOATS} floats")));
        }
        let axis = |i, a: fn(Pair2) -> usize| {
            out_axis(i, a(kernel_size), a(stride), a(padding), a(output_padding), a(dilation))
        };
        let (Some(oh), Some(ow)) = (axis(h, |p| p.h), axis(w, |p| p.w)) else {
            return Err(bad(
                "padding",
                format!(
                    "the output of {h}x{w} with kernel {kernel_size}, stride {stride}, padding {padding}, \
                     output_padding {output_padding}, dilation {dilation} is empty"
                ),
            ));
        };
        let want = vec![n, r.out_channels, oh, ow];
        if floats(&want) > MAX_TENSOR_FLOATS {
            return Err(bad("output_shape", format!("{want:?} is over {MAX_TENSOR_FLOATS} floats")));
        }
        if r.output_shape != want {
            return Err(bad("output_shape", format!("{:?}, but the layer gives {want:?}", r.output_shape)));
        }
        let flops: u128 = [2, n, cin, cout_g, kernel_size.h, kernel_size.w, h, w].iter().map(|&v| v as u128).product();
        let flops = u64::try_from(flops).map_err(|_| bad("flops", format!("{flops} does not fit 64 bits")))?;
        if let Some(f) = r.flops.filter(|&f| f != flops) {
            return Err(bad("flops", format!("{f}, but 2·N·C_in·(C_out/g)·kH·kW·H·W = {flops}")));
        }
        Ok(BenchShape {
            name: r.name,
            what: r.what,
            input_shape: r.input_shape,
            out_channels: r.out_channels,
            kernel_size,
            stride,
            padding,
            output_padding,
            dilation,
            groups: r.groups,
            bias: r.bias,
            output_shape: r.output_shape,
            flops,
        })
    }
}

#[derive(Deserialize)]
struct ShapeFile {
    shapes: Vec<serde_json::Value>,
}

/// The default shape file: `../shared/bench/shapes.json` beside the repository.
pub fn default_shapes_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/shapes.json")
}

/// Reads a shape file and checks every shape (see [`BenchShape`]).
pub fn load_shapes(path: &Path) -> Result<Vec<BenchShape>, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    parse_shapes(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Parses the text of a shape file (`{"shapes": [...]}`).
pub fn parse_shapes(text: &str) -> Result<Vec<BenchShape>, String> {
    let file: ShapeFile = serde_json::from_str(text).map_err(|e| format!("not a shapes file: {e}"))?;
    file.shapes
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            serde_json::from_value(v).map_err(|e| {
                let e = e.to_string();
                // The checks' own errors already name the shape.
                match name {
                    Some(n) if !e.starts_with("shape `") => format!("shape `{n}` (#{i}): {e}"),
                    None => format!("shape #{i}: {e}"),
                    Some(_) => e,
                }
            })
        })
        .collect()
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
    let wshape = shape.weight_shape();
    let [cin, _, kh, kw] = wshape;
    let scale = 1.0 / ((cin / shape.groups.max(1)) as f32 * (kh * kw) as f32).sqrt();
    let mut rng = Rng::for_stream(0, &shape.name);
    let weight: ArrayD<f32> = rng.tensor(&wshape).mapv(|v| v * scale);
    let mut state = std::collections::BTreeMap::new();
    state.insert("up.weight".to_string(), weight);
    if shape.bias {
        state.insert("up.bias".to_string(), rng.tensor(&[shape.out_channels]));
    }
    let g = crate::resolve(g, ParamSource::StateDict(state))?;
    // The file's output shape was checked against PyTorch's formula when it
    // was read; this checks Kiln's shape inference against both.
    let out: Vec<Option<Vec<usize>>> = g.output_values().iter().map(|&o| g.node(o).shape().as_known()).collect();
    if out != [Some(shape.output_shape.clone())] {
        return Err(Error::Usage(format!(
            "shape `{}`: output_shape {:?}, but the graph infers {out:?}",
            shape.name, shape.output_shape
        )));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A shape file of one shape whose five per-axis fields are `fields`
    /// (JSON text), with `rest` for the other fields.
    fn one(fields: &str, rest: &str) -> Result<Vec<BenchShape>, String> {
        parse_shapes(&format!(
            r#"{{"shapes": [{{"name": "t", "input_shape": [2, 6, 5, 7], "out_channels": 4, "groups": 2, {fields}, {rest}}}]}}"#
        ))
    }

    const SQUARE: &str = r#""kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "dilation": 1"#;
    // (5-1)*2 - 2 + 2 + 1 + 1 = 10 and (7-1)*2 - 2 + 2 + 1 + 1 = 14;
    // 2·2·6·(4/2)·3·3·5·7 = 15120.
    const SQUARE_OUT: &str = r#""output_shape": [2, 4, 10, 14], "flops": 15120"#;
    const NONSQUARE: &str =
        r#""kernel_size": [3, 4], "stride": [2, 1], "padding": [1, 2], "output_padding": [1, 0], "dilation": [1, 2]"#;
    // H: (5-1)*2 - 2*1 + 1*(3-1) + 1 + 1 = 10; W: (7-1)*1 - 2*2 + 2*(4-1) + 0 + 1 = 9;
    // 2·2·6·(4/2)·3·4·5·7 = 20160.
    const NONSQUARE_OUT: &str = r#""output_shape": [2, 4, 10, 9], "flops": 20160"#;

    #[test]
    fn per_axis_fields_take_a_number_or_a_pair() {
        let s = &one(SQUARE, SQUARE_OUT).unwrap()[0];
        assert_eq!((s.kernel_size, s.stride, s.padding), (Pair2::square(3), Pair2::square(2), Pair2::square(1)));
        assert_eq!((s.output_padding, s.dilation, s.flops), (Pair2::square(1), Pair2::square(1), 15120));
        let s = &one(NONSQUARE, NONSQUARE_OUT).unwrap()[0];
        assert_eq!(
            (s.kernel_size, s.stride, s.padding),
            (Pair2 { h: 3, w: 4 }, Pair2 { h: 2, w: 1 }, Pair2 { h: 1, w: 2 })
        );
        assert_eq!((s.output_padding, s.dilation), (Pair2 { h: 1, w: 0 }, Pair2 { h: 1, w: 2 }));
        assert_eq!(s.weight_shape(), [6, 2, 3, 4]);
        // A pair of equal numbers is the number; flops may be left out.
        let same = r#""kernel_size": [3, 3], "stride": [2, 2], "padding": 1, "output_padding": [1, 1], "dilation": 1"#;
        let s = &one(same, r#""output_shape": [2, 4, 10, 14]"#).unwrap()[0];
        assert_eq!(
            (s.kernel_size, s.stride, s.output_padding, s.flops),
            (Pair2::square(3), Pair2::square(2), Pair2::square(1), 15120)
        );
    }

    #[test]
    fn bad_values_name_the_shape_and_the_field() {
        let five = |k: &str, s: &str, p: &str, op: &str, d: &str| {
            format!(r#""kernel_size": {k}, "stride": {s}, "padding": {p}, "output_padding": {op}, "dilation": {d}"#)
        };
        let out = r#""output_shape": [2, 4, 7, 9]"#;
        let cases = [
            (five("0", "1", "0", "0", "1"), out, "kernel_size", "at least 1"),
            (five("[3, 0]", "1", "0", "0", "1"), out, "kernel_size", "at least 1"),
            (five("3", "[0, 1]", "0", "0", "1"), out, "stride", "at least 1"),
            (five("3", "1", "0", "0", "0"), out, "dilation", "at least 1"),
            (five("[3, 4, 5]", "1", "0", "0", "1"), out, "kernel_size", "3 elements"),
            (five("[3]", "1", "0", "0", "1"), out, "kernel_size", "1 elements"),
            (five("3", "1", "[-1, 0]", "0", "1"), out, "padding", "negative"),
            (five("3", "1", "0", "-2", "1"), out, "output_padding", "negative"),
            (five("3.5", "1", "0", "0", "1"), out, "kernel_size", "integer"),
            (five(r#""3""#, "1", "0", "0", "1"), out, "kernel_size", "integer"),
            (five("3", "[1, 1e30]", "0", "0", "1"), out, "stride", "integer"),
            (five("[3, 18446744073709551615]", "1", "0", "0", "1"), out, "kernel_size", "too large"),
            (five("3", "1", "65536", "0", "1"), out, "padding", "empty"),
            (five("65536", "1", "0", "0", "1"), out, "kernel_size", "floats"),
            (NONSQUARE.to_string(), r#""output_shape": [2, 4, 10, 10]"#, "output_shape", "[2, 4, 10, 9]"),
            (NONSQUARE.to_string(), r#""output_shape": [2, 4, 10, 9], "flops": 15120"#, "flops", "20160"),
        ];
        for (fields, rest, field, why) in cases {
            let err = one(&fields, rest).expect_err(&fields);
            assert!(
                err.contains("shape `t`") && err.contains(&format!("{field}:")) && err.contains(why),
                "{fields}: {err}"
            );
        }
        // Fields outside the five also name the shape.
        let err = one(SQUARE, r#""output_shape": [2, 4, 10, 14], "groups": 0"#).unwrap_err();
        assert!(err.contains("shape `t`"), "{err}");
        let err = parse_shapes(
            r#"{"shapes": [{"name": "u", "input_shape": [1, 2, 3], "out_channels": 1, "kernel_size": 1,
            "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1, "output_shape": [1, 1, 3]}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("shape `u`") && err.contains("input_shape"), "{err}");
        let err = parse_shapes(r#"{"shapes": [{"name": "v", "input_shape": [1, 2, 3, 3], "out_channels": -1}]}"#)
            .unwrap_err();
        assert!(err.contains("shape `v`"), "{err}");
    }

    #[test]
    fn a_non_square_layer_has_pytorchs_output_shape_and_flops() {
        let s = &one(NONSQUARE, NONSQUARE_OUT).unwrap()[0];
        let (g, x) = layer(s).unwrap();
        assert_eq!(crate::passes::flops(&g).unwrap(), 20160);
        let want = crate::runtime::Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        assert_eq!(want[0].shape(), [2, 4, 10, 9]);
        let got = crate::jit::compile(&g).unwrap().run(&[x]).unwrap();
        assert!(crate::tensor::max_abs_diff(&got[0], &want[0]).unwrap() < 1e-4);
    }

    #[test]
    fn the_shape_files_of_the_repository_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let suite = load_shapes(&root.join("bench/suite.json")).unwrap();
        assert!(suite.len() >= 80);
        // The peers' harness takes square layers only; suite.txt mirrors suite.json.
        assert!(suite
            .iter()
            .all(|s| [s.kernel_size, s.stride, s.padding, s.output_padding, s.dilation].iter().all(|p| p.h == p.w)));
        let nonsquare = load_shapes(&root.join("bench/suite-nonsquare.json")).unwrap();
        assert!(nonsquare.len() >= 10);
        for s in &nonsquare {
            assert!(
                s.kernel_size.h != s.kernel_size.w
                    || s.stride.h != s.stride.w
                    || s.padding.h != s.padding.w
                    || s.output_padding.h != s.output_padding.w
                    || s.dilation.h != s.dilation.w,
                "{} is square",
                s.name
            );
        }
        // The peers' ten layers, when the shared folder is beside the repository.
        if default_shapes_path().exists() {
            assert_eq!(load_shapes(&default_shapes_path()).unwrap().len(), 10);
        }
    }
}
