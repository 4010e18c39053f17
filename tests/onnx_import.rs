//! ONNX files exported from PyTorch by `scripts/onnx/export_models.py`
//! (the TorchScript exporter with fixed shapes and with a symbolic batch,
//! and the dynamo exporter), run through `kiln run model.onnx` as a user
//! would, on the JIT and the interpreter, and compared with PyTorch's
//! eval-mode outputs saved beside them (which the script checked against
//! onnxruntime).

use std::process::Command;

use kiln::runtime::{npy, tensor};

fn data(name: &str) -> String {
    format!("{}/tests/data/onnx/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `file` on `input` (a saved `.npy`) and compares with `output`.
fn run(file: &str, input_name: &str, input: &str, output: &str, extra: &[&str]) {
    let out =
        std::env::temp_dir().join(format!("kiln-onnx-{file}-{input}-{}-{}.npy", std::process::id(), extra.join("_")));
    let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", &data(file)])
        .args(["--input", &format!("{input_name}={}", data(input))])
        .args(["--output", &out.display().to_string()])
        .args(extra)
        .output()
        .expect("kiln runs");
    assert!(res.status.success(), "{file} on {input} {extra:?}: {}", String::from_utf8_lossy(&res.stderr));
    let got = npy::read(&out).expect("output written");
    let want = npy::read(data(output)).expect("reference output");
    let _ = std::fs::remove_file(&out);
    tensor::check_close(&got, &want, 1e-4).unwrap_or_else(|e| panic!("{file} on {input} {extra:?}: {e}"));
}

/// (model, the input's name in the TorchScript export, in the dynamo export, has a dynamo file).
const MODELS: &[(&str, &str, &str, bool)] = &[
    ("dcgan", "x", "x", true),
    ("opzoo", "x", "z", true),
    ("fsrcnn", "x", "x", true),
    ("vae_decoder", "x", "z", true),
    ("cyclegan_resnet", "x", "x", false),
    ("pix2pix_unet", "x", "x", false),
];

#[test]
fn torchscript_exports_match_pytorch() {
    for &(m, name, _, _) in MODELS {
        let (input, output) = (format!("{m}.input.npy"), format!("{m}.output.npy"));
        run(&format!("{m}.static.onnx"), name, &input, &output, &[]);
        run(&format!("{m}.static.onnx"), name, &input, &output, &["--backend", "interp"]);
    }
}

#[test]
fn a_symbolic_batch_is_bound_from_the_input_file() {
    for &(m, name, _, _) in MODELS {
        let file = format!("{m}.dynamic.onnx");
        run(&file, name, &format!("{m}.input.npy"), &format!("{m}.output.npy"), &[]);
        run(&file, name, &format!("{m}.b3.input.npy"), &format!("{m}.b3.output.npy"), &[]);
        run(&file, name, &format!("{m}.b3.input.npy"), &format!("{m}.b3.output.npy"), &["--threads", "2"]);
    }
}

#[test]
fn dynamo_exports_match_pytorch() {
    for &(m, _, name, dynamo) in MODELS {
        if dynamo {
            let (input, output) = (format!("{m}.input.npy"), format!("{m}.output.npy"));
            run(&format!("{m}.dynamo.onnx"), name, &input, &output, &[]);
            run(&format!("{m}.dynamo.onnx"), name, &input, &output, &["--backend", "interp"]);
        }
    }
}

#[test]
fn a_fixed_batch_refuses_another_batch_clearly() {
    let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", &data("dcgan.static.onnx"), "--input", &format!("x={}", data("dcgan.b3.input.npy"))])
        .output()
        .expect("kiln runs");
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("input `x`") && err.contains("dim 0 is declared 1, given 3"), "{err}");
}

#[test]
fn onnx_models_are_accepted_by_check_and_compile() {
    for args in [vec!["check"], vec!["compile", "--emit", "ir"], vec!["compile", "--emit", "json"]] {
        let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&args)
            .arg(data("opzoo.dynamic.onnx"))
            .output()
            .expect("kiln runs");
        assert!(res.status.success(), "{args:?}: {}", String::from_utf8_lossy(&res.stderr));
        assert!(!res.stdout.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn an_unsupported_operator_is_named_with_its_node_and_opset() {
    let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", &data("unsupported_cos.onnx")])
        .output()
        .expect("kiln runs");
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("node `my_cos`") && err.contains("Cos") && err.contains("opset 17"), "{err}");
}

#[test]
fn an_imported_model_written_as_kiln_json_runs_the_same() {
    let dir = std::env::temp_dir().join(format!("kiln-onnx-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, weights) = (dir.join("opzoo.json"), dir.join("opzoo.safetensors"));
    let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["compile", &data("opzoo.dynamic.onnx"), "--batch", "2", "--emit", "json"])
        .args(["--save-weights", &weights.display().to_string()])
        .output()
        .expect("kiln runs");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    std::fs::write(&json, &res.stdout).expect("json written");
    let out = dir.join("y.npy");
    let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", &json.display().to_string(), "--weights", &weights.display().to_string()])
        .args(["--input", &format!("x={}", data("opzoo.input.npy")), "--output", &out.display().to_string()])
        .output()
        .expect("kiln runs");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let got = npy::read(&out).expect("output");
    let want = npy::read(data("opzoo.output.npy")).expect("reference");
    let _ = std::fs::remove_dir_all(&dir);
    tensor::check_close(&got, &want, 1e-4).expect("the JSON form computes what the ONNX file does");
}

/// Hostile models: each refused by `kiln run` with one clear error (exit
/// status 1, one `error:` line naming what is wrong), never a crash.
#[test]
fn hostile_onnx_files_get_one_clear_error_each() {
    for (file, expect) in [
        ("hostile_cycle.onnx", "input `b` is not defined before it"),
        ("hostile_huge.onnx", "model refused"),
        ("hostile_int_input.onnx", "Kiln computes float32 tensors"),
        ("hostile_channels.onnx", "in_channels=3 but its input has 2 channels"),
        ("hostile_attr_type.onnx", "attribute `strides` has type FLOAT, expected INTS"),
        ("hostile_runtime_weight.onnx", "computed at run time"),
        ("hostile_external_escape.onnx", "must stay inside the model directory"),
        ("unsupported_cos.onnx", "Cos (domain ``, opset 17)"),
    ] {
        let res = Command::new(env!("CARGO_BIN_EXE_kiln")).args(["run", &data(file)]).output().expect("kiln runs");
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(expect), "{file}: expected `{expect}` in: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{file}: {err}");
    }
    // Every prefix of a real export: an error, never a crash.
    let bytes = std::fs::read(data("fsrcnn.static.onnx")).expect("model");
    let dir = std::env::temp_dir().join(format!("kiln-onnx-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for len in (0..bytes.len()).step_by(997) {
        let path = dir.join("t.onnx");
        std::fs::write(&path, &bytes[..len]).expect("write");
        let res = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["check", &path.display().to_string()])
            .output()
            .expect("kiln runs");
        assert_eq!(res.status.code(), Some(1), "prefix {len}: {}", String::from_utf8_lossy(&res.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
