//! The facade as a library user sees it: one error type from every call
//! (running included), inputs by name or position, the re-exported
//! `ndarray`, and what the README promises about seeded initialization.

use kiln::ndarray::ArrayD;
use kiln::{ErrorKind, ParamSource};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn unet() -> kiln::Model {
    let options = kiln::jit::CompileOptions { threads: 1, ..Default::default() };
    let graph = kiln::load_model(example("unet_tail.json")).expect("model");
    kiln::compile_with(graph, ParamSource::Init { seed: 5 }, options).expect("compiles")
}

#[test]
fn positional_order_is_the_model_files_input_order() {
    let model = unet();
    assert_eq!(model.input_names(), ["x", "skip"]);
    assert_eq!(model.input_shapes(), [kiln::Shape::known(&[2, 16, 4, 4]), kiln::Shape::known(&[2, 8, 8, 8])]);
    assert_eq!(model.output_names(), ["up2"]);
    let x = kiln::tensor::random(&[2, 16, 4, 4], 1);
    let skip = kiln::tensor::random(&[2, 8, 8, 8], 2);
    let positional = model.run(&[x.clone(), skip.clone()]).expect("runs");
    let named = model.run_named([("skip", skip.clone()), ("x", x.clone())]).expect("runs");
    assert_eq!(positional, named);
    // Swapped positions are a shape error naming the input, as a kiln::Error.
    let e = model.run(&[skip, x]).unwrap_err();
    assert!(matches!(e, kiln::Error::Ir(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(
            "input `x`: got shape [2, 8, 8, 8], but the model declares f32[2, 16, 4, 4] (dim 1 is 8, not 16)"
        ),
        "{e}"
    );
}

#[test]
fn a_model_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let model = unet();
    send_sync(&model);
    let x = kiln::tensor::random(&[2, 16, 4, 4], 1);
    let skip = kiln::tensor::random(&[2, 8, 8, 8], 2);
    let alone = model.run(&[x.clone(), skip.clone()]).expect("runs");
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..2).map(|_| s.spawn(|| model.run(&[x.clone(), skip.clone()]).expect("runs"))).collect();
        for h in handles {
            assert_eq!(h.join().expect("thread"), alone);
        }
    });
}

#[test]
fn named_inputs_errors_name_the_input() {
    let model = unet();
    let x = || kiln::tensor::random(&[2, 16, 4, 4], 1);
    let skip = || kiln::tensor::random(&[2, 8, 8, 8], 2);
    let e = model.run_named([("x", x()), ("z", skip())]).unwrap_err();
    assert_eq!(e.to_string(), "input `z`: is not an input of the model (it has: x, skip)");
    let e = model.run_named([("x", x()), ("x", x())]).unwrap_err();
    assert_eq!(e.to_string(), "input `x`: is given twice");
    let e = model.run_named([("x", x())]).unwrap_err();
    assert_eq!(e.to_string(), "input `skip`: is missing");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = model.run(&[x()]).unwrap_err();
    assert!(e.to_string().contains("takes 2 input(s) (x, skip), got 1"), "{e}");
}

#[test]
fn every_stage_reports_kiln_error_with_a_kind() {
    let e = kiln::parse_model(r#"{"inputs": {"x": [1, 2, 4, 4]}, "nodes": [{"name": "c", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel": 3}}]}"#)
        .map_err(kiln::Error::from)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfiguration);
    let e = kiln::load_weights(example("decoder.json")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let graph = kiln::load_model(example("decoder.json")).expect("model");
    let e = kiln::compile(graph, kiln::load_weights(example("decoder.safetensors")).expect("w")).map(|_| ());
    assert!(e.is_ok(), "{e:?}");
    let graph = kiln::load_model(example("dcgan.json")).expect("model");
    let e = kiln::compile(graph, kiln::load_weights(example("decoder.safetensors")).expect("w")).unwrap_err();
    assert!(matches!(e, kiln::Error::Pass(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn ndarray_is_re_exported_for_building_tensors() {
    // No `ndarray` in this crate's own dependencies is needed for this.
    let t: kiln::Tensor = ArrayD::from_elem(kiln::ndarray::IxDyn(&[2, 16, 4, 4]), 0.5);
    let skip = kiln::tensor::from_vec(&[2, 8, 8, 8], vec![0.0; 2 * 8 * 8 * 8]).expect("tensor");
    let out = unet().run(&[t, skip]).expect("runs");
    assert_eq!(out[0].shape(), [2, 4, 16, 16]);
}

#[test]
fn emitted_model_and_weights_reproduce_the_original() {
    let dir = std::env::temp_dir().join(format!("kiln-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let resolved =
        kiln::resolve(kiln::load_model(example("unet_tail.json")).expect("m"), ParamSource::Init { seed: 9 })
            .expect("resolves");
    let weights = dir.join("unet.safetensors");
    kiln::save_weights(&resolved, &weights).expect("save");
    let text = kiln::model_json(&resolved).expect("json");
    assert!(!text.contains("\"weight\""), "no inlined parameters");
    let again = kiln::resolve(kiln::parse_model(&text).expect("parses"), kiln::load_weights(&weights).expect("load"))
        .expect("resolves");
    assert_eq!(again.to_string(), resolved.to_string());
    assert_eq!(again.state_dict(), resolved.state_dict());
}

#[test]
fn load_model_also_reads_the_lossless_graph_form() {
    let dir = std::env::temp_dir().join(format!("kiln-api-lossless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let resolved = kiln::resolve(kiln::load_model(example("decoder.json")).expect("m"), ParamSource::Init { seed: 2 })
        .expect("resolves");
    let path = dir.join("decoder.graph.json");
    std::fs::write(&path, resolved.to_json()).expect("write");
    let back = kiln::load_model(&path).expect("reads the lossless form");
    assert_eq!(back.state_dict(), resolved.state_dict(), "parameters come along");
    // Its parameters are already attached: resolving keeps them.
    let again = kiln::resolve(back, ParamSource::Init { seed: 99 }).expect("resolves");
    assert_eq!(again.state_dict(), resolved.state_dict());
}

/// The README says seeded weights follow PyTorch's `reset_parameters()`
/// distributions: kaiming-uniform `U(-b, b)` with `b = 1/sqrt(fan_in)`.
#[test]
fn seeded_weights_follow_pytorchs_distribution() {
    let g = kiln::parse_model(
        r#"{"inputs": {"x": [1, 64, 2, 2]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 128, "kernel_size": 4}}]}"#,
    )
    .expect("model");
    let g = kiln::resolve(g, ParamSource::Init { seed: 3 }).expect("resolves");
    let w = g.node(g.lookup("up").expect("up")).param("weight").expect("weight");
    // ConvTranspose2d weight [in, out, kH, kW]: fan_in = weight.size(1) * kH * kW = 128 * 16.
    let bound = 1.0 / (128.0f64 * 16.0).sqrt();
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = w.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    assert!(w.iter().all(|&v| f64::from(v).abs() <= bound), "inside the bound");
    assert!(mean.abs() < 0.02 * bound, "mean {mean}");
    let uniform_var = bound * bound / 3.0;
    assert!((var / uniform_var - 1.0).abs() < 0.02, "variance {var} vs {uniform_var}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    assert!(
        readme.contains("That is PyTorch's initialization in\ndistribution, not in bits"),
        "README says what the seed means"
    );
}

/// `kiln = { default-features = false }` must not build the command line:
/// clap is not among the normal dependencies then (checked offline from the
/// lock file, so this runs in CI without network).
#[test]
fn library_without_default_features_does_not_depend_on_clap() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |extra: &[&str]| {
        let o = std::process::Command::new(&cargo)
            .args(["tree", "--offline", "-e", "normal", "-p", "kiln", "--prefix", "none"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let lib_only = tree(&["--no-default-features"]);
    assert!(lib_only.lines().any(|l| l.starts_with("kiln-jit ")), "the tree lists dependencies: {lib_only}");
    assert!(!lib_only.lines().any(|l| l.starts_with("clap")), "clap without the cli feature:\n{lib_only}");
    // The check can fail: with default features, clap is there.
    assert!(tree(&[]).lines().any(|l| l.starts_with("clap ")), "clap with the cli feature");
}

#[test]
fn autotuned_compiles_match_the_interpreter_and_say_what_they_timed() {
    for name in ["dcgan.json", "fsrcnn.json", "unet_tail.json"] {
        let mut g = kiln::load_model(example(name)).expect("model");
        kiln::passes::resolve(&mut g, ParamSource::Init { seed: 2 }).expect("resolves");
        let options = kiln::jit::CompileOptions {
            threads: 2,
            autotune: Some(std::time::Duration::from_millis(200)),
            ..Default::default()
        };
        let start = std::time::Instant::now();
        let exe = kiln::jit::compile_with(&g, options).expect("compiles");
        // The budget bounds the timing; compiling the winners comes on top.
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{name}: {:?}", start.elapsed());
        if kiln::jit::NativeIsa::Best.resolve().is_some() {
            assert!(exe.clif().contains("; autotune"), "{name}: --emit clif names the timings");
        }
        let inputs: Vec<kiln::Tensor> = g
            .inputs()
            .iter()
            .map(|&i| kiln::tensor::random(&g.node(i).shape().as_known().expect("known"), 3))
            .collect();
        let got = exe.run(&inputs).expect("runs");
        let want = kiln::runtime::Interpreter::run(&g, &inputs).expect("interprets");
        for (a, b) in got.iter().zip(&want) {
            kiln::tensor::check_close(a, b, 1e-4).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// Few-channel heads with large kernels compile to a GEMM and a col2im
/// under the Auto tier, with a BatchNorm folded in and the activation after
/// the col2im; batch 3, and a grouped head.
#[test]
fn few_channel_heads_run_as_gemm_and_col2im() {
    let lazy = kiln::parse_model(
        r#"{"inputs": {"x": [3, 12, 7, 9]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 1, "kernel_size": 9, "stride": 2, "padding": 4, "output_padding": 1}},
            {"name": "bn", "op": "BatchNorm2d", "args": {"num_features": 1}},
            {"name": "act", "op": "Tanh"},
            {"name": "up2", "op": "LazyConvTranspose2d", "args": {"out_channels": 16, "kernel_size": 1}, "inputs": ["x"]},
            {"name": "head", "op": "LazyConvTranspose2d", "args": {"out_channels": 4, "kernel_size": 6, "stride": 2, "padding": 2, "groups": 2}, "inputs": ["up2"]},
            {"name": "act2", "op": "LeakyReLU", "args": {"negative_slope": 0.1}}
        ], "outputs": ["act", "act2"]}"#,
    )
    .expect("model");
    let g = kiln::resolve(lazy, ParamSource::Init { seed: 6 }).expect("resolves");
    let x = kiln::tensor::random(&[3, 12, 7, 9], 7);
    let exe =
        kiln::jit::compile_with(&g, kiln::jit::CompileOptions { threads: 2, ..Default::default() }).expect("compiles");
    if kiln::jit::NativeIsa::Best.resolve().is_some() {
        let col2im = exe.kernels().iter().filter(|k| k.kernel.contains("col2im")).count();
        assert_eq!(col2im, 2, "{:?}", exe.kernels().iter().map(|k| &k.kernel).collect::<Vec<_>>());
    }
    let got = exe.run(std::slice::from_ref(&x)).expect("runs");
    let want = kiln::runtime::Interpreter::run(&g, &[x]).expect("interprets");
    for (a, b) in got.iter().zip(&want) {
        kiln::tensor::check_close(a, b, 1e-4).expect("matches the interpreter");
    }
}

#[test]
fn a_layer_too_large_for_the_cranelift_tier_compiles() {
    // FCN-32s' bilinear upsampler: depthwise k64 s32 p16. The rules kept tiny
    // reductions on the Cranelift tier, whose unrolled code exceeded its size
    // cap here (the layer was refused); it now runs as depthwise rows, and
    // must compile and match.
    let lazy = kiln::parse_model(
        r#"{"inputs": {"x": [1, 21, 10, 10]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d",
            "args": {"out_channels": 21, "kernel_size": 64, "stride": 32, "padding": 16, "groups": 21, "bias": false}}]}"#,
    )
    .expect("model");
    let g = kiln::resolve(lazy, ParamSource::Init { seed: 4 }).expect("resolves");
    let x = kiln::tensor::random(&[1, 21, 10, 10], 5);
    let exe =
        kiln::jit::compile_with(&g, kiln::jit::CompileOptions { threads: 2, ..Default::default() }).expect("compiles");
    let got = exe.run(std::slice::from_ref(&x)).expect("runs");
    let want = kiln::runtime::Interpreter::run(&g, &[x]).expect("interprets");
    kiln::tensor::check_close(&got[0], &want[0], 1e-4).expect("matches the interpreter");
}
