//! The ONNX backend node tests (ONNX's own cases, with outputs from its
//! reference implementations) of the operators Kiln imports, as
//! `scripts/onnx/export_node_tests.py` copied them: each model is imported,
//! resolved and run on the interpreter and the JIT, and compared with the
//! expected outputs. Prints `N passed, M failed, K skipped` and the reason
//! for every skip; a case Kiln refuses as unsupported is a skip, any other
//! error or a wrong number is a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{npy, tensor, Interpreter};
use kiln::ParamSource;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx-node")
}

/// What one case did.
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

fn run_case(case: &serde_json::Value) -> Verdict {
    let name = case["name"].as_str().expect("a name");
    if let Some(why) = case["skip"].as_str() {
        return Verdict::Skip(format!("not copied: {why}"));
    }
    let d = dir();
    let names: Vec<&str> = case["inputs"].as_array().expect("inputs").iter().filter_map(|v| v.as_str()).collect();
    let inputs: Vec<kiln::Tensor> =
        (0..names.len()).map(|k| npy::read(d.join(format!("{name}.in{k}.npy"))).expect("input")).collect();
    let n_out = case["outputs"].as_u64().expect("outputs") as usize;
    let want: Vec<kiln::Tensor> =
        (0..n_out).map(|k| npy::read(d.join(format!("{name}.out{k}.npy"))).expect("output")).collect();
    let shapes: BTreeMap<String, Vec<usize>> =
        names.iter().zip(&inputs).map(|(n, t)| (n.to_string(), t.shape().to_vec())).collect();
    let loaded = kiln::load_onnx(&d.join(format!("{name}.onnx")), &kiln::OnnxInputs { shapes, batch: None });
    let graph = match loaded {
        Ok(g) => g,
        Err(kiln::Error::Import(e)) if e.is_unsupported() => return Verdict::Skip(e.to_string()),
        Err(e) => return Verdict::Fail(format!("import: {e}")),
    };
    // Graph inputs in the IR's order, matched by name (the importer keeps
    // ONNX's names where they are valid Kiln names).
    let order: Vec<usize> = graph
        .inputs()
        .iter()
        .map(|&id| {
            let n = graph.node(id).name();
            names.iter().position(|m| *m == n).unwrap_or(0)
        })
        .collect();
    let inputs: Vec<kiln::Tensor> = order.iter().map(|&k| inputs[k].clone()).collect();
    let graph = match kiln::resolve(graph, ParamSource::StateDict(BTreeMap::new())) {
        Ok(g) => g,
        Err(e) => return Verdict::Fail(format!("resolve: {e}")),
    };
    let check = |got: &[kiln::Tensor], who: &str| -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{who}: {} outputs, expected {}", got.len(), want.len()));
        }
        for (g, w) in got.iter().zip(&want) {
            tensor::check_close(g, w, 1e-4).map_err(|e| format!("{who}: {e}"))?;
        }
        Ok(())
    };
    let interp = match Interpreter::run(&graph, &inputs) {
        Ok(o) => o,
        Err(e) => return Verdict::Fail(format!("interpreter: {e}")),
    };
    if let Err(e) = check(&interp, "interpreter") {
        return Verdict::Fail(e);
    }
    let exe = match compile_with(&graph, CompileOptions::default()) {
        Ok(e) => e,
        Err(e) => return Verdict::Fail(format!("jit: {e}")),
    };
    match exe.run(&inputs) {
        Ok(o) => match check(&o, "jit") {
            Ok(()) => Verdict::Pass,
            Err(e) => Verdict::Fail(e),
        },
        Err(e) => Verdict::Fail(format!("jit run: {e}")),
    }
}

#[test]
fn onnx_backend_node_tests() {
    let text = std::fs::read_to_string(dir().join("cases.json")).expect("cases.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = manifest["cases"].as_array().expect("cases");
    let (mut passed, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?").to_string();
        match run_case(case) {
            Verdict::Pass => passed.push(name),
            Verdict::Fail(why) => failed.push((name, why)),
            Verdict::Skip(why) => skipped.push((name, why)),
        }
    }
    for (n, why) in &skipped {
        println!("skipped {n}: {why}");
    }
    for (n, why) in &failed {
        println!("FAILED {n}: {why}");
    }
    println!("onnx node tests (onnx {}):", manifest["onnx"].as_str().unwrap_or("?"));
    println!("{} passed, {} failed, {} skipped", passed.len(), failed.len(), skipped.len());
    assert!(
        failed.is_empty(),
        "{} ONNX node tests failed: {:?}",
        failed.len(),
        failed.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    // The suite must exercise the importer, not only skip.
    assert!(passed.len() >= 100, "only {} cases passed", passed.len());
}
