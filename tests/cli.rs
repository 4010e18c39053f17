//! The `kiln` command end to end: every subcommand, and every kind of bad
//! input giving one clear message and a non-zero exit that is not a panic.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln::runtime::{npy, tensor, WeightStore};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("kiln runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure: exit code 1 (never 101, the panic code), one `error:` line.
fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {err}", o.status.code());
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    err
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn check_prints_every_inferred_shape() {
    let o = kiln(&["check", &example("unet_tail.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("%cat = concat(%up1, %skip) dim=1 : f32[2, 16, 8, 8]"), "{out}");
    assert!(
        out.contains("%up2 = lazy_conv_transpose2d(%res) out_channels=4 kernel=2x2 stride=2x2 : f32[2, 4, 16, 16]"),
        "{out}"
    );
    assert!(out.contains("ok: 6 nodes (3 lazy"), "{out}");
}

#[test]
fn compile_emits_every_form() {
    let model = example("decoder.json");
    let ir = stdout(&kiln(&["compile", &model, "--emit", "ir"]));
    assert!(ir.contains("%up2 = conv_transpose2d(%act1, %up2.weight: f32[24, 4, 3, 3]"), "{ir}");
    let lazy = stdout(&kiln(&["compile", &model, "--emit", "lazy-ir"]));
    assert!(lazy.contains("lazy_conv_transpose2d") && lazy.contains(": f32[?]"), "{lazy}");
    let json = stdout(&kiln(&["compile", &model, "--emit", "json"]));
    let g = kiln::parse_model(&json).expect("emitted JSON is a model file");
    assert!(!g.has_lazy_nodes());
    let dot = stdout(&kiln(&["compile", &model, "--emit", "dot"]));
    assert!(dot.starts_with("digraph {") && dot.contains("up1 = conv_transpose2d"), "{dot}");
    let lazy_dot = stdout(&kiln(&["compile", &model, "--emit", "dot", "--lazy"]));
    assert!(lazy_dot.contains("style=dashed"), "{lazy_dot}");
    let weights = support::golden_dir().join("models/decoder.safetensors").display().to_string();
    let saved = temp_dir("emit").join("saved.safetensors");
    let with_weights = kiln(&[
        "compile",
        &model,
        "--emit",
        "json",
        "--weights",
        &weights,
        "--save-weights",
        &saved.display().to_string(),
    ]);
    assert!(with_weights.status.success(), "{}", stderr(&with_weights));
    assert!(!stdout(&with_weights).contains("weight\""), "parameters are not inlined");
    let loaded = WeightStore::load(&weights).expect("weights");
    let written = WeightStore::load(&saved).expect("saved weights");
    assert_eq!(written.get("up1.weight"), loaded.get("up1.weight"), "weights come from the file");
    assert_eq!(written.len(), loaded.len());
    let clif = stdout(&kiln(&["compile", &example("dcgan.json"), "--emit", "clif"]));
    assert!(clif.contains("computes up1+bn1+act1"), "BatchNorm and ReLU fused into the convolution: {clif}");
    assert!(clif.contains("fma"), "vectorized FMA expected in the CLIF");
}

#[test]
fn run_reproduces_pytorch_with_exported_weights() {
    let models = support::golden_dir().join("models");
    let dir = temp_dir("run");
    for backend in ["jit", "interp"] {
        let out_path = dir.join(format!("y_{backend}.npy"));
        let o = kiln(&[
            "run",
            &example("dcgan.json"),
            "--weights",
            &models.join("dcgan.safetensors").display().to_string(),
            "--input",
            &format!("z={}", models.join("dcgan.input.z.npy").display()),
            "--output",
            &out_path.display().to_string(),
            "--backend",
            backend,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("output out: shape [2, 3, 64, 64]"), "outputs are named by their node: {out}");
        assert!(out.contains("GFLOP/s"), "{out}");
        let got = npy::read(&out_path).expect("output written");
        let want = npy::read(models.join("dcgan.output.npy")).expect("golden output");
        tensor::check_close(&got, &want, 1e-4).unwrap_or_else(|e| panic!("{backend}: {e}"));
    }
}

#[test]
fn run_with_random_inputs_and_seeded_weights() {
    for threads in ["1", "2"] {
        let o = kiln(&["run", &example("unet_tail.json"), "--seed", "3", "--threads", threads]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("output up2: shape [2, 4, 16, 16]"), "{}", stdout(&o));
    }
}

#[test]
fn batch_override() {
    let o = kiln(&["run", &example("dcgan.json"), "--batch", "5", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("output out: shape [5, 3, 64, 64]"), "{}", stdout(&o));
    let o = kiln(&[
        "bench",
        &example("dcgan.json"),
        "--batch",
        "3",
        "--threads",
        "1",
        "--json",
        "--min-runs",
        "2",
        "--min-seconds",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"name\":\"dcgan\""), "{}", stdout(&o));
    assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--batch", "0"]));
}

#[test]
fn bad_json_reports_line_and_column() {
    let dir = temp_dir("json");
    let p = write(
        &dir,
        "bad.json",
        "{\n  \"inputs\": {\"x\": [1, 2, 3, 3]},\n  \"nodes\": [\n    {\"name\": \"a\" \"op\": \"ReLU\"}\n  ]\n}\n",
    );
    let err = assert_clean_failure(&kiln(&["check", &p]));
    assert!(err.contains("line 4, column"), "{err}");
}

#[test]
fn bad_node_names_node_and_field() {
    let dir = temp_dir("node");
    let p = write(
        &dir,
        "m.json",
        r#"{"inputs": {"x": [1, 2, 4, 4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "padding_mode": "reflect"}}]}"#,
    );
    let err = assert_clean_failure(&kiln(&["check", &p]));
    assert!(err.contains("node `up`") && err.contains("padding_mode=\"zeros\"") && err.contains("reflect"), "{err}");
}

#[test]
fn missing_and_misshaped_weights_name_the_key() {
    let dir = temp_dir("weights");
    let full = WeightStore::load(support::golden_dir().join("models/decoder.safetensors")).expect("weights");
    let mut missing = full.clone();
    missing.remove("up2.bias");
    let p = dir.join("missing.safetensors");
    missing.save(&p).expect("save");
    let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--weights", &p.display().to_string()]));
    assert!(err.contains("1 missing key (`up2.bias` [12])"), "{err}");
    let mut wrong = full;
    wrong.insert("up1.bias", kiln::Tensor::zeros(vec![25]));
    let p = dir.join("wrong.safetensors");
    wrong.save(&p).expect("save");
    let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--weights", &p.display().to_string()]));
    assert!(err.contains("`up1.bias`") && err.contains("[25]") && err.contains("[24]"), "{err}");
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(support::golden_dir().join("models/decoder.safetensors")).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--weights", &truncated.display().to_string()]));
}

#[test]
fn wrong_input_shape_names_the_input() {
    let dir = temp_dir("input");
    let x = dir.join("x.npy");
    npy::write(&x, &kiln::Tensor::zeros(vec![3, 48, 5, 5])).expect("npy");
    let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--input", &format!("x={}", x.display())]));
    assert!(err.contains("`x`") && err.contains("[3, 48, 5, 6]") && err.contains("[3, 48, 5, 5]"), "{err}");
    let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--input", &format!("y={}", x.display())]));
    assert!(err.contains("no input `y`"), "{err}");
}

#[test]
fn huge_models_are_refused_before_allocating() {
    let dir = temp_dir("huge");
    let p = write(
        &dir,
        "huge.json",
        r#"{"inputs": {"x": [64, 512, 64, 64]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 512, "kernel_size": 4, "stride": 4}}]}"#,
    );
    let err = assert_clean_failure(&kiln(&["run", &p]));
    assert!(err.contains("MiB") && err.contains("limit"), "{err}");
}

#[test]
fn missing_file_and_bad_usage() {
    let err = assert_clean_failure(&kiln(&["check", "/nonexistent/model.json"]));
    assert!(err.contains("/nonexistent/model.json"), "{err}");
    let o = kiln(&["run"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--threads", "0"]));
    assert!(err.contains("--threads"), "{err}");
}

/// `kiln bench --shapes SHAPES --json` on one thread with `kernels`, at
/// least `min_runs` timed calls: the first JSON line, parsed.
fn bench_json(shapes: &str, kernels: &str, min_runs: &str) -> (serde_json::Value, String) {
    let o = kiln(&[
        "bench",
        "--shapes",
        shapes,
        "--threads",
        "1",
        "--json",
        "--kernels",
        kernels,
        "--min-runs",
        min_runs,
        "--min-seconds",
        "0",
    ]);
    assert!(o.status.success(), "{kernels}: {}", stderr(&o));
    let out = stdout(&o);
    let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line").to_string();
    (serde_json::from_str(&line).expect("valid JSON"), line)
}

#[test]
fn bench_json_lines_are_what_the_peers_harness_reads() {
    let dir = temp_dir("bench");
    let shapes = write(
        &dir,
        "shapes.json",
        r#"{"shapes": [{"name": "tiny", "input_shape": [2, 8, 5, 5], "out_channels": 4, "kernel_size": 3, "stride": 2,
            "padding": 1, "output_padding": 1, "dilation": 1, "groups": 2, "bias": false, "output_shape": [2, 4, 10, 10], "flops": 14400}]}"#,
    );
    for kernels in ["cranelift", "native", "auto"] {
        let (v, line) = bench_json(&shapes, kernels, "3");
        for key in ["name", "threads", "median_ms", "min_ms", "runs", "gflops", "compile_ms", "max_abs_diff"] {
            assert!(v.get(key).is_some(), "{kernels}: missing {key} in {line}");
        }
        assert_eq!(v["name"], "tiny");
        assert_eq!(v["threads"], 1);
        assert!(v["runs"].as_u64().expect("runs") >= 3);
        assert!(
            v["max_abs_diff"].as_f64().expect("diff") < 1e-4,
            "{kernels}: JIT differs from the interpreter: {line}"
        );
    }
    let o = kiln(&["bench", "--peak"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("128-bit vectors"), "{}", stdout(&o));
}

#[test]
fn bench_takes_non_square_shapes_and_names_bad_fields() {
    let dir = temp_dir("bench-nonsquare");
    // H: (5-1)*2 - 2*1 + (3-1) + 1 + 1 = 10; W: (7-1)*1 - 2*2 + 2*(4-1) + 0 + 1 = 9.
    let shape = |k: &str| {
        format!(
            r#"{{"shapes": [{{"name": "ns", "input_shape": [2, 6, 5, 7], "out_channels": 4, "kernel_size": {k},
            "stride": [2, 1], "padding": [1, 2], "output_padding": [1, 0], "dilation": [1, 2], "groups": 2,
            "output_shape": [2, 4, 10, 9], "flops": 20160}}]}}"#
        )
    };
    let good = write(&dir, "good.json", &shape("[3, 4]"));
    for kernels in ["cranelift", "auto"] {
        let (v, line) = bench_json(&good, kernels, "2");
        assert_eq!(v["name"], "ns");
        assert!(v["max_abs_diff"].as_f64().expect("diff") < 1e-4, "{kernels}: {line}");
    }
    for (k, why) in [("[3, 0]", "at least 1"), ("[3, 4, 5]", "3 elements"), ("[-3, 4]", "negative")] {
        let bad = write(&dir, "bad.json", &shape(k));
        let err = assert_clean_failure(&kiln(&["bench", "--shapes", &bad, "--threads", "1"]));
        assert!(err.contains("shape `ns`") && err.contains("kernel_size") && err.contains(why), "{k}: {err}");
    }
}

// ---- issue 17: a newcomer's first hour -------------------------------------

/// The golden dcgan files: model weights, input and PyTorch's output.
fn dcgan_golden(name: &str) -> String {
    support::golden_dir().join("models").join(name).display().to_string()
}

#[test]
fn misspelt_argument_is_named_with_a_suggestion() {
    let dir = temp_dir("kernel");
    let p = write(
        &dir,
        "m.json",
        r#"{"inputs": {"z": [1, 8, 1, 1]}, "nodes": [{"name": "up1", "op": "LazyConvTranspose2d", "args": {"out_channels": 4, "kernel": 4}}]}"#,
    );
    let err = assert_clean_failure(&kiln(&["check", &p]));
    assert!(
        err.starts_with(
            "error: node `up1` field `args.kernel`: unknown argument for LazyConvTranspose2d; did you mean `kernel_size`?"
        ),
        "{err}"
    );
    assert!(!err.contains("is required"), "{err}");
}

#[test]
fn json_type_error_names_the_node() {
    let dir = temp_dir("types");
    let p = write(
        &dir,
        "m.json",
        "{\"inputs\": {\"x\": [1, 2, 4, 4]}, \"nodes\": [\n  {\"name\": \"act3\", \"op\": \"ReLU\"},\n  {\"name\": \"cat\", \"op\": \"Concat\", \"inputs\": \"act3\"}\n]}",
    );
    let err = assert_clean_failure(&kiln(&["check", &p]));
    assert!(err.contains("line 3, column") && err.contains("node `cat` field `inputs`"), "{err}");
    assert!(err.contains("(write [\"act3\"])"), "{err}");
}

#[test]
fn concat_with_null_inputs_is_an_error() {
    let dir = temp_dir("null");
    let p = write(
        &dir,
        "m.json",
        r#"{"inputs": {"x": [1, 2, 4, 4]}, "nodes": [{"name": "a", "op": "ReLU"}, {"name": "cat", "op": "Concat", "inputs": null}]}"#,
    );
    let err = assert_clean_failure(&kiln(&["check", &p]));
    assert!(err.contains("node `cat` field `inputs`") && err.contains("Concat combines several operands"), "{err}");
}

#[test]
fn unbatched_input_is_blamed_on_the_input() {
    let dir = temp_dir("unbatched");
    let model = std::fs::read_to_string(example("dcgan.json")).expect("read").replace("[2, 32, 1, 1]", "[32, 1, 1]");
    let p = write(&dir, "m.json", &model);
    let err = assert_clean_failure(&kiln(&["run", &p]));
    assert!(err.contains("graph input `z` has shape [32, 1, 1], without a batch dimension"), "{err}");
    assert!(err.contains("declare `z` as [1, 32, 1, 1]"), "{err}");
}

/// The dcgan state dict with every key renamed by `f`, saved in `dir`.
fn renamed_weights(dir: &Path, file: &str, f: impl Fn(&str) -> String) -> String {
    let full = WeightStore::load(dcgan_golden("dcgan.safetensors")).expect("weights");
    let store: WeightStore = full.iter().map(|(k, t)| (f(k), t.clone())).collect();
    let p = dir.join(file);
    store.save(&p).expect("save");
    p.display().to_string()
}

#[test]
fn prefixed_state_dict_is_reported_whole_and_loads_with_weights_prefix() {
    let dir = temp_dir("prefix");
    let weights = renamed_weights(&dir, "module.safetensors", |k| format!("module.{k}"));
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--weights", &weights]));
    // dcgan: 5 convolutions without bias and 4 BatchNorms with 4 tensors each.
    assert!(err.contains("21 missing keys (`up1.weight` [32, 64, 4, 4], "), "{err}");
    assert!(err.contains("21 unexpected keys (`module."), "{err}");
    assert!(
        err.contains("every unexpected key starts with `module.`") && err.contains("--weights-prefix module."),
        "{err}"
    );
    let out_path = dir.join("y.npy");
    let o = kiln(&[
        "run",
        &example("dcgan.json"),
        "--weights",
        &weights,
        "--weights-prefix",
        "module.",
        "--input",
        &format!("z={}", dcgan_golden("dcgan.input.z.npy")),
        "--output",
        &out_path.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = npy::read(&out_path).expect("output");
    let want = npy::read(dcgan_golden("dcgan.output.npy")).expect("golden");
    tensor::check_close(&got, &want, 1e-4).expect("PyTorch's output");
    // check --weights sees the same problem, and accepts the prefix too.
    let err = assert_clean_failure(&kiln(&["check", &example("dcgan.json"), "--weights", &weights]));
    assert!(err.contains("21 missing keys"), "{err}");
    let o = kiln(&["check", &example("dcgan.json"), "--weights", &weights, "--weights-prefix", "module."]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("matches (21 tensors)"), "{}", stdout(&o));
}

#[test]
fn sequential_keys_suggest_node_names() {
    let dir = temp_dir("sequential");
    // nn.Sequential(ConvTranspose2d, BatchNorm2d, ReLU, ...) numbers its modules 0, 1, 2, ...
    let index = |node: &str| match node {
        "up1" => "0",
        "bn1" => "1",
        "up2" => "3",
        "bn2" => "4",
        "up3" => "6",
        "bn3" => "7",
        "up4" => "9",
        "bn4" => "10",
        "up5" => "12",
        other => panic!("unexpected node {other}"),
    };
    let weights = renamed_weights(&dir, "seq.safetensors", |k| {
        let (node, param) = k.split_once('.').expect("dotted");
        format!("main.{}.{param}", index(node))
    });
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--weights", &weights]));
    assert!(
        err.contains(
            "rename `up1` -> `main.0`, `bn1` -> `main.1`, `up2` -> `main.3`, `bn2` -> `main.4`, ... (9 in all)"
        ),
        "{err}"
    );
    // Renaming the nodes as suggested loads the file.
    let mut model = std::fs::read_to_string(example("dcgan.json")).expect("read");
    for node in ["up1", "bn1", "up2", "bn2", "up3", "bn3", "up4", "bn4", "up5"] {
        model = model.replace(&format!("\"name\": \"{node}\""), &format!("\"name\": \"main.{}\"", index(node)));
    }
    let p = write(&dir, "renamed.json", &model);
    let o = kiln(&["check", &p, "--weights", &weights]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn torch_save_and_onnx_files_are_recognized() {
    let dir = temp_dir("torchsave");
    let zip = dir.join("model.pt");
    std::fs::write(&zip, b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl").expect("write");
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--weights", &zip.display().to_string()]));
    assert!(err.contains("is a PyTorch `torch.save` file (zip archive), not safetensors"), "{err}");
    assert!(err.contains("from safetensors.torch import save_file; save_file(model.state_dict()"), "{err}");
    assert!(!err.contains("header length"), "{err}");
    let onnx = dir.join("model.onnx");
    std::fs::write(&onnx, b"\x08\x08\x12\x07pytorch\x1a\x052.5.0").expect("write");
    let err = assert_clean_failure(&kiln(&["check", &example("dcgan.json"), "--weights", &onnx.display().to_string()]));
    assert!(err.contains("is an ONNX model, not safetensors"), "{err}");
}

#[test]
fn emitted_json_and_saved_weights_run_again() {
    let dir = temp_dir("roundtrip");
    let model_json = dir.join("dcgan.resolved.json");
    let weights = dir.join("dcgan.resolved.safetensors");
    let o = kiln(&[
        "compile",
        &example("dcgan.json"),
        "--emit",
        "json",
        "--weights",
        &dcgan_golden("dcgan.safetensors"),
        "--save-weights",
        &weights.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&model_json, stdout(&o)).expect("write");
    assert!(
        stdout(&o).contains(r#""op":"ConvTranspose2d""#) && stdout(&o).contains(r#""in_channels":32"#),
        "{}",
        stdout(&o)
    );
    // Weights go to the safetensors file, not into the JSON (61 k parameters).
    assert!(stdout(&o).len() < 4096, "{} bytes of JSON", stdout(&o).len());
    let out_path = dir.join("y.npy");
    let o = kiln(&[
        "run",
        &model_json.display().to_string(),
        "--weights",
        &weights.display().to_string(),
        "--input",
        &format!("z={}", dcgan_golden("dcgan.input.z.npy")),
        "--output",
        &out_path.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = npy::read(&out_path).expect("output");
    let want = npy::read(dcgan_golden("dcgan.output.npy")).expect("golden");
    tensor::check_close(&got, &want, 1e-4).expect("the re-read model still matches PyTorch");
    let err = assert_clean_failure(&kiln(&[
        "compile",
        &example("dcgan.json"),
        "--emit",
        "lazy-ir",
        "--save-weights",
        &weights.display().to_string(),
    ]));
    assert!(err.contains("--save-weights needs resolved parameters"), "{err}");
}

#[test]
fn random_inputs_are_announced_on_stderr() {
    let o = kiln(&["run", &example("unet_tail.json"), "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("note: no --input for `x`, `skip`: using random U[-1, 1) values from --seed 0"),
        "{}",
        stderr(&o)
    );
    let skip = format!("skip={}", support::golden_dir().join("models/unet_tail.input.skip.npy").display());
    let o = kiln(&["run", &example("unet_tail.json"), "--threads", "1", "--input", &skip]);
    assert!(stderr(&o).starts_with("note: no --input for `x`:"), "{}", stderr(&o));
    let x = format!("x={}", support::golden_dir().join("models/unet_tail.input.x.npy").display());
    let o = kiln(&["run", &example("unet_tail.json"), "--threads", "1", "--input", &skip, "--input", &x]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "all inputs given: no note");
}

#[test]
fn batch_mismatch_points_at_batch() {
    let dir = temp_dir("batchhint");
    let z = dir.join("z.npy");
    npy::write(&z, &kiln::Tensor::zeros(vec![5, 32, 1, 1])).expect("npy");
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--input", &format!("z={}", z.display())]));
    assert!(err.contains("expected shape [2, 32, 1, 1], got [5, 32, 1, 1]") && err.contains("pass --batch 5"), "{err}");
    let o = kiln(&[
        "run",
        &example("dcgan.json"),
        "--input",
        &format!("z={}", z.display()),
        "--batch",
        "5",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_with_weights_verifies_the_state_dict() {
    let o = kiln(&["check", &example("dcgan.json"), "--weights", &dcgan_golden("dcgan.safetensors")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("matches (21 tensors)"), "{}", stdout(&o));
    let err = assert_clean_failure(&kiln(&[
        "check",
        &example("decoder.json"),
        "--weights",
        &dcgan_golden("dcgan.safetensors"),
    ]));
    assert!(err.contains("`up1.weight` has shape [32, 64, 4, 4], but the node needs [48, 24, 3, 3]"), "{err}");
}

// ---- absurd argument values and resource limits (issue 12) ----------------

/// Like [`assert_clean_failure`], but clap's own usage errors (exit 2, a
/// usage block after the `error:` line) are accepted too.
fn assert_clean_failure_or_usage(o: &Output) -> String {
    if o.status.code() == Some(2) {
        let err = stderr(o);
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
        return err;
    }
    assert_clean_failure(o)
}

#[test]
fn absurd_thread_counts_are_refused() {
    for t in ["18446744073709551615", "1025", "4294967296"] {
        let err = assert_clean_failure_or_usage(&kiln(&["run", &example("decoder.json"), "--threads", t]));
        assert!(err.contains("--threads"), "{t}: {err}");
    }
    // Not a number at all: clap's usage error.
    assert_eq!(kiln(&["run", &example("decoder.json"), "--threads", "-1"]).status.code(), Some(2));
}

fn tiny_shapes(dir: &Path) -> String {
    write(
        dir,
        "shapes.json",
        r#"{"shapes": [{"name": "tiny", "input_shape": [1, 4, 3, 3], "out_channels": 2, "kernel_size": 3, "stride": 2,
            "padding": 1, "output_padding": 1, "dilation": 1, "groups": 1, "bias": false, "output_shape": [1, 2, 6, 6], "flops": 1296}]}"#,
    )
}

#[test]
fn bench_timing_arguments_are_validated() {
    let dir = temp_dir("limits-bench");
    let shapes = tiny_shapes(&dir);
    // Zero runs and zero seconds used to index an empty list of timings.
    let o = kiln(&["bench", "--shapes", &shapes, "--threads", "1", "--min-runs", "0", "--min-seconds", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for secs in ["inf", "-1", "NaN", "1e300", "3601"] {
        let arg = format!("--min-seconds={secs}");
        let o = kiln(&["bench", "--shapes", &shapes, "--threads", "1", &arg]);
        let err = assert_clean_failure_or_usage(&o);
        assert!(err.contains("--min-seconds"), "{secs}: {err}");
    }
    let err =
        assert_clean_failure_or_usage(&kiln(&["bench", "--shapes", &shapes, "--min-runs", "18446744073709551615"]));
    assert!(err.contains("--min-runs"), "{err}");
}

#[test]
fn files_over_the_memory_limit_are_refused_before_reading() {
    // The model file itself.
    let err = assert_clean_failure_or_usage(&kiln(&["run", &example("dcgan.json"), "--max-memory-mib", "0"]));
    assert!(err.contains("memory limit") && err.contains("dcgan.json"), "{err}");
    // A weights file larger than the limit, with a model that fits.
    let dir = temp_dir("limits-weights");
    let big = dir.join("big.safetensors");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(3 << 20).expect("sparse file");
    let o = kiln(&["run", &example("decoder.json"), "--max-memory-mib", "2", "--weights", &big.display().to_string()]);
    let err = assert_clean_failure_or_usage(&o);
    assert!(err.contains("big.safetensors") && err.contains("memory limit"), "{err}");
}

#[test]
fn huge_strides_are_refused_quickly() {
    let dir = temp_dir("limits-stride");
    let model = write(
        &dir,
        "stride.json",
        r#"{"inputs": {"x": [1, 1, 2, 2]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 1, "kernel_size": 1, "stride": 16384}}]}"#,
    );
    let t = Instant::now();
    let err = assert_clean_failure_or_usage(&kiln(&["run", &model, "--threads", "1"]));
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert!(err.contains("phase pairs"), "{err}");
}

#[test]
fn bench_profile_times_every_kernel_of_the_model() {
    let o = kiln(&[
        "bench",
        &example("dcgan.json"),
        "--threads",
        "1",
        "--profile",
        "--json",
        "--min-runs",
        "3",
        "--min-seconds",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let steps: Vec<serde_json::Value> =
        out.lines().filter(|l| l.contains("\"step\"")).map(|l| serde_json::from_str(l).expect("valid JSON")).collect();
    // One line per kernel call, as `--emit clif` lists the kernels.
    let clif = kiln(&["compile", &example("dcgan.json"), "--emit", "clif"]);
    assert!(clif.status.success(), "{}", stderr(&clif));
    let kernels: Vec<String> = stdout(&clif)
        .lines()
        .filter_map(|l| l.strip_prefix("; kernel ").and_then(|r| r.split(' ').next()).map(str::to_string))
        .collect();
    assert!(!kernels.is_empty());
    let profiled: Vec<String> = steps.iter().map(|v| v["kernel"].as_str().expect("kernel").to_string()).collect();
    assert_eq!(profiled, kernels);
    for (i, v) in steps.iter().enumerate() {
        assert_eq!(v["step"], i);
        assert!(v["median_us"].as_f64().expect("median_us") > 0.0, "{v}");
    }
    let share: f64 = steps.iter().map(|v| v["share_pct"].as_f64().expect("share")).sum();
    assert!((share - 100.0).abs() < 1e-6, "shares add up to {share}");
    assert!(out.contains("\"name\":\"dcgan\""), "the timing row is still printed: {out}");
}
