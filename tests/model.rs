//! `kiln::Model`: one model, any input shape. Models whose inputs leave the
//! batch and channel dims open (`null`) against PyTorch
//! (`tests/data/dynamic`, from `scripts/golden/gen_dynamic.py`), the version
//! cache, parameters fixed by the first input, random shapes against the
//! interpreter, and many threads at once.

use std::path::PathBuf;
use std::process::Command;

use kiln::runtime::{tensor, Interpreter, RandomTensor, Rng};
use kiln::{Model, ModelOptions, Tensor};
use proptest::prelude::*;

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/dynamic").join(file)
}

fn model(name: &str, options: ModelOptions) -> Model {
    let graph = kiln::load_model(data(&format!("{name}.json"))).expect("model loads");
    let weights = kiln::load_weights(data(&format!("{name}.safetensors"))).expect("weights load");
    Model::new(graph, weights, options).expect("model")
}

fn two_threads() -> ModelOptions {
    ModelOptions { compile: kiln::jit::CompileOptions { threads: 2, ..Default::default() }, ..Default::default() }
}

fn npy(file: &str) -> Tensor {
    kiln::read_npy(data(file)).expect("npy")
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    if let Err(e) = tensor::check_close(got, want, 1e-4) {
        panic!("{what}: {e}");
    }
}

/// The PyTorch cases of each model: (input file, output file).
fn cases(name: &str) -> Vec<(String, String)> {
    match name {
        "decoder" => {
            [1, 3, 16].iter().map(|b| (format!("decoder.b{b}.x.npy"), format!("decoder.b{b}.y.npy"))).collect()
        }
        "vae" => [1, 3, 16].iter().map(|b| (format!("vae.b{b}.z.npy"), format!("vae.b{b}.y.npy"))).collect(),
        "spatial" => (0..3).map(|i| (format!("spatial.case{i}.x.npy"), format!("spatial.case{i}.y.npy"))).collect(),
        _ => unreachable!("no such golden model"),
    }
}

#[test]
fn open_batch_and_channel_dims_match_pytorch_through_one_model() {
    for name in ["decoder", "vae", "spatial"] {
        for split in [true, false] {
            let m = model(name, ModelOptions { split_batches: split, ..two_threads() });
            assert!(!m.parameters_fixed(), "{name}: nothing is materialized before the first run");
            for (x, y) in cases(name) {
                let out = m.run(&[npy(&x)]).expect("runs");
                assert_close(&out[0], &npy(&y), &format!("{name} {x} (split {split})"));
            }
            assert!(m.parameters_fixed());
        }
    }
}

#[test]
fn open_dims_through_kiln_run_match_pytorch() {
    let dir = std::env::temp_dir().join(format!("kiln-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in ["decoder", "vae", "spatial"] {
        for (i, (x, y)) in cases(name).into_iter().enumerate() {
            let out = dir.join(format!("{name}.{i}.npy"));
            let input = if name == "vae" { "z" } else { "x" };
            let status = Command::new(env!("CARGO_BIN_EXE_kiln"))
                .arg("run")
                .arg(data(&format!("{name}.json")))
                .arg("--weights")
                .arg(data(&format!("{name}.safetensors")))
                .arg("--input")
                .arg(format!("{input}={}", data(&x).display()))
                .arg("--output")
                .arg(&out)
                .output()
                .expect("kiln runs");
            assert!(status.status.success(), "{name} {x}: {}", String::from_utf8_lossy(&status.stderr));
            assert_close(&kiln::read_npy(&out).expect("output"), &npy(&y), &format!("kiln run {name} {x}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn kiln_run_on_open_dims_needs_shapes_and_takes_shape_arguments() {
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("run")
            .arg(data("decoder.json"))
            .args(extra)
            .output()
            .expect("runs")
    };
    let o = run(&[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("graph input `x` has open dims (f32[?, ?, 4, 5])") && err.contains("--shape x="), "{err}");
    let o = run(&["--shape", "x=2,5,4,5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("output out: shape [2, 3, 16, 20]"));
    let o = run(&["--shape", "x=2,5,4,6"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("input `x`: got shape [2, 5, 4, 6], but the model declares f32[?, ?, 4, 5] (dim 3 is 6, not 5)"),
        "{err}"
    );
    for bad in ["x=2,0,4,5", "x=2,a,4,5", "x", "y=1,2,4,5"] {
        let o = run(&["--shape", bad]);
        assert!(!o.status.success(), "--shape {bad} must fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "--shape {bad}: {err}");
    }
}

#[test]
fn kiln_check_reports_what_open_dims_leave_open() {
    let o = Command::new(env!("CARGO_BIN_EXE_kiln")).arg("check").arg(data("decoder.json")).output().expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "%x = Input() : f32[?, ?, 4, 5]",
        "%up1 = LazyConvTranspose2d(%x) : f32[?, 16, 8, 10]  (in_channels learned from the first input)",
        "%conv3 = LazyConv2d(%act2) : f32[?, 3, 16, 20]",
        "open input dims x[0], x[1]",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The spatial model: every dim open, so the spatial dims stay open too.
    let o = Command::new(env!("CARGO_BIN_EXE_kiln")).arg("check").arg(data("spatial.json")).output().expect("runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("%out = Sigmoid(%conv2) : f32[?, 3, ?, ?]"), "{out}");
    // --shape binds them and the ordinary report follows.
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", &data("spatial.json").display().to_string(), "--shape", "x=1,4,8,8"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&o.stdout).contains("all shapes inferred"));
}

#[test]
fn parameters_are_fixed_by_the_first_input() {
    let m = model("decoder", two_threads());
    m.run(&[npy("decoder.b3.x.npy")]).expect("6 channels first");
    let e = m.run(&[npy("decoder.c7.x.npy")]).expect_err("7 channels later");
    let msg = e.to_string();
    assert!(
        msg.contains("node `up1`") && msg.contains("in_channels=6") && msg.contains("7 channels"),
        "the error names the node and both channel counts: {msg}"
    );
    assert_eq!(e.kind(), kiln::ErrorKind::InvalidInput);
    // Still serving the channels it learned.
    let out = m.run(&[npy("decoder.b16.x.npy")]).expect("6 channels again");
    assert_close(&out[0], &npy("decoder.b16.y.npy"), "after the refused input");
}

#[test]
fn seeded_parameters_are_the_same_for_every_later_shape() {
    // With seeded init, a new resolution per shape would draw new weights:
    // batch 1 of a batch-4 run must equal the batch-1 run.
    let graph = kiln::load_model(data("spatial.json")).expect("model");
    let m = Model::new(graph, kiln::ParamSource::Init { seed: 9 }, two_threads()).expect("model");
    let x4 = Rng::new(1).tensor(&[4, 5, 6, 7]);
    let y4 = m.run(std::slice::from_ref(&x4)).expect("batch 4");
    let x1 = x4.slice_axis(kiln::ndarray::Axis(0), (0..1).into()).to_owned();
    let y1 = m.run(&[x1]).expect("batch 1");
    let y4_first = y4[0].slice_axis(kiln::ndarray::Axis(0), (0..1).into()).to_owned();
    // Other kernels may round differently; other weights would differ by O(1).
    let diff = tensor::max_abs_diff(&y1[0], &y4_first).expect("same shape");
    assert!(diff < 1e-5, "batch 1 differs from item 0 of batch 4 by {diff}");
}

#[test]
fn versions_are_cached_and_share_packed_weights() {
    let m = model("decoder", two_threads());
    let shapes = |b: usize| vec![b, 6, 4, 5];
    assert_eq!(m.output_shapes(&[&shapes(5)]).expect("shapes"), [vec![5, 3, 16, 20]]);
    assert_eq!(m.cache_stats().compiles, 0, "output_shapes compiles nothing");
    assert!(!m.parameters_fixed(), "nor does it fix parameters");
    // Batch 3 runs as chunks of 2 and 1; batch 2 and 1 then hit.
    m.prepare(&[&shapes(3)]).expect("prepares");
    assert_eq!(m.cache_stats().compiles, 2);
    for b in [1, 2, 3] {
        m.run(&[Rng::new(b as u64).tensor(&shapes(b))]).expect("runs");
    }
    assert_eq!(m.cache_stats().compiles, 2, "no new version for sizes made of cached chunks");
    m.prepare(&[&shapes(4)]).expect("prepares");
    let w = m.weight_cache();
    assert_eq!(m.cache_stats().compiles, 3);
    assert!(w.hits() > 0, "later versions reuse packed weights: {w:?}");
    assert!(w.len() < 3 * 3, "three versions of three convolutions share buffers: {w:?}");
    // Exact-size versions when splitting is off, bounded by the capacity.
    let exact = model("decoder", ModelOptions { split_batches: false, cache_capacity: 2, ..two_threads() });
    for b in [1, 2, 3, 1] {
        exact.run(&[Rng::new(b as u64).tensor(&shapes(b))]).expect("runs");
    }
    let s = exact.cache_stats();
    assert_eq!((s.compiles, s.len, s.evictions), (4, 2, 2), "{s:?}");
}

#[test]
fn a_graph_that_mixes_batch_items_is_compiled_per_batch_size() {
    // Flatten(0, -1) puts the whole batch into one row: no chunking.
    let g = kiln::parse_model(
        r#"{"inputs": {"x": [null, 3]}, "nodes": [
            {"name": "f", "op": "Flatten", "args": {"start_dim": 0}},
            {"name": "fc", "op": "LazyLinear", "args": {"out_features": 2}}]}"#,
    )
    .expect("model");
    let m = Model::new(g, kiln::ParamSource::Init { seed: 0 }, two_threads()).expect("model");
    m.run(&[Rng::new(0).tensor(&[2, 3])]).expect("batch 2 learns in_features = 6");
    assert_eq!(m.cache_stats().compiles, 1);
    let e = m.run(&[Rng::new(0).tensor(&[3, 3])]).expect_err("in_features is fixed at 6");
    assert!(e.to_string().contains("fc"), "{e}");
}

#[test]
fn wrong_inputs_are_errors_naming_the_input() {
    let m = model("decoder", two_threads());
    let msg = |r: Result<Vec<Tensor>, kiln::Error>| r.expect_err("refused").to_string();
    let e = msg(m.run(&[Rng::new(0).tensor(&[2, 6, 4, 6])]));
    assert!(e.contains("input `x`") && e.contains("dim 3 is 6, not 5"), "{e}");
    let e = msg(m.run(&[Rng::new(0).tensor(&[2, 6, 4])]));
    assert!(e.contains("rank 3 instead of 4"), "{e}");
    let e = msg(m.run(&[]));
    assert!(e.contains("x"), "{e}");
    let e = msg(m.run(&[Tensor::zeros(vec![0, 6, 4, 5])]));
    assert!(e.contains("dim 0 is 0"), "{e}");
    // run_into with buffers that do not match the shapes.
    let mut out = vec![0.0; 3 * 16 * 20];
    let e = m.run_into(&[&[1, 6, 4, 5]], &[&[0.0; 10]], &mut [&mut out]).expect_err("short input").to_string();
    assert!(e.contains("120 floats") && e.contains("10 floats"), "{e}");
    let x = vec![0.0; 2 * 120];
    let e = m.run_into(&[&[2, 6, 4, 5]], &[&x], &mut [&mut out]).expect_err("short output").to_string();
    assert!(e.contains("1920 floats") && e.contains("960 floats"), "{e}");
}

/// The interpreter's output for `x` on the model's resolved graph at its shape.
fn oracle(m: &Model, x: &Tensor) -> Tensor {
    let g = m.resolved(&[x.shape()]).expect("resolves");
    Interpreter::run(&g, std::slice::from_ref(x)).expect("interprets").remove(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random shapes, one model: every call matches the interpreter.
    #[test]
    fn random_shapes_through_one_model_match_the_interpreter(
        calls in prop::collection::vec((1usize..7, 1usize..10, 1usize..10, any::<u64>()), 1..5)
    ) {
        let graph = kiln::load_model(data("spatial.json")).expect("model");
        let m = Model::new(graph, kiln::ParamSource::Init { seed: 3 }, ModelOptions { cache_capacity: 3, ..two_threads() })
            .expect("model");
        for (n, h, w, seed) in calls {
            let x = Rng::new(seed).tensor(&[n, 4, h, w]);
            let got = m.run(std::slice::from_ref(&x)).expect("runs");
            let want = oracle(&m, &x);
            prop_assert!(tensor::check_close(&got[0], &want, 1e-4).is_ok(), "shape {:?}", x.shape());
        }
    }
}

#[test]
fn eight_threads_with_mixed_shapes_share_one_model() {
    let m = model("spatial", ModelOptions { cache_capacity: 4, ..two_threads() });
    let shapes: Vec<[usize; 4]> =
        vec![[1, 4, 5, 7], [3, 4, 5, 7], [2, 4, 8, 8], [5, 4, 8, 8], [1, 4, 3, 3], [4, 4, 6, 2]];
    // The answers, from the interpreter, before any thread starts.
    let inputs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| Rng::new(i as u64).tensor(s)).collect();
    m.run(&[inputs[0].clone()]).expect("fixes parameters");
    let want: Vec<Tensor> = inputs.iter().map(|x| oracle(&m, x)).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (m, inputs, want) = (&m, &inputs, &want);
            s.spawn(move || {
                for round in 0..12 {
                    let i = (t * 5 + round * 7) % inputs.len();
                    let got = m.run(std::slice::from_ref(&inputs[i])).expect("runs");
                    assert_close(&got[0], &want[i], &format!("thread {t} round {round} shape {:?}", inputs[i].shape()));
                }
            });
        }
    });
    let stats = m.cache_stats();
    assert!(stats.len <= 4, "{stats:?}");
}

#[test]
fn threads_asking_for_one_new_shape_compile_it_once() {
    let m = model("decoder", two_threads());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| m.prepare(&[&[3, 6, 4, 5]]).expect("prepares"));
        }
    });
    // Batch 3 is chunks 2 and 1: two versions, each compiled once.
    let stats = m.cache_stats();
    assert_eq!((stats.compiles, stats.len), (2, 2), "{stats:?}");
}

#[test]
fn model_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
}
