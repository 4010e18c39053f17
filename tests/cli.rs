//! The `kiln` command end to end: every subcommand, and every kind of bad
//! input giving one clear message and a non-zero exit that is not a panic.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let g = kiln::Graph::from_json(&json).expect("emitted JSON parses back");
    assert!(!g.has_lazy_nodes());
    let dot = stdout(&kiln(&["compile", &model, "--emit", "dot"]));
    assert!(dot.starts_with("digraph {") && dot.contains("up1 = conv_transpose2d"), "{dot}");
    let lazy_dot = stdout(&kiln(&["compile", &model, "--emit", "dot", "--lazy"]));
    assert!(lazy_dot.contains("style=dashed"), "{lazy_dot}");
    let weights = support::golden_dir().join("models/decoder.safetensors").display().to_string();
    let with_weights = kiln(&["compile", &model, "--emit", "json", "--weights", &weights]);
    assert!(with_weights.status.success(), "{}", stderr(&with_weights));
    let g = kiln::Graph::from_json(&stdout(&with_weights)).expect("parses");
    let loaded = WeightStore::load(&weights).expect("weights");
    let up1 = g.lookup("up1").expect("up1");
    assert_eq!(g.node(up1).param("weight"), loaded.get("up1.weight"), "weights come from the file");
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
        assert!(out.contains("output 0: shape [2, 3, 64, 64]"), "{out}");
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
        assert!(stdout(&o).contains("output 0: shape [2, 4, 16, 16]"));
    }
}

#[test]
fn batch_override() {
    let o = kiln(&["run", &example("dcgan.json"), "--batch", "5", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("output 0: shape [5, 3, 64, 64]"), "{}", stdout(&o));
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
    assert!(err.contains("missing parameter `up2.bias`"), "{err}");
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
        let o = kiln(&[
            "bench",
            "--shapes",
            &shapes,
            "--threads",
            "1",
            "--json",
            "--kernels",
            kernels,
            "--min-runs",
            "3",
            "--min-seconds",
            "0",
        ]);
        assert!(o.status.success(), "{kernels}: {}", stderr(&o));
        let out = stdout(&o);
        let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line");
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
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
