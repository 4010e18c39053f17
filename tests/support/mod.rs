//! Shared helpers for the workspace-level tests: where the golden cases are
//! and how to read them. Depends only on the documented golden format.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `$KILN_GOLDEN_DIR`, or `../shared/golden` beside the repository.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("KILN_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"),
    }
}

/// The project's own PyTorch-generated cases (`scripts/golden/gen_ops.py`),
/// in the same format: the ops beyond the shared golden set.
pub fn ops_golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ops")
}

/// The per-side padding cases computed from ONNX's definitions
/// (`scripts/golden/gen_pads_onnx.py`).
pub fn pads_golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pads")
}

/// Every case of `cases.json`.
pub fn cases() -> Vec<Value> {
    cases_in(&golden_dir())
}

/// Every case of `dir/cases.json`.
pub fn cases_in(dir: &std::path::Path) -> Vec<Value> {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("cases.json is valid JSON");
    doc["cases"].as_array().expect("cases.json has a `cases` list").clone()
}

/// The cases of one kind.
pub fn cases_of(kind: &str) -> Vec<Value> {
    cases().into_iter().filter(|c| c["kind"] == kind).collect()
}

/// A `model` case in Kiln's model format: its `inputs` and `nodes`, named after the model.
pub fn model_json(case: &Value) -> Value {
    serde_json::json!({
        "name": case["model"],
        "inputs": case["inputs"],
        "nodes": case["nodes"],
    })
}

/// A `layer` case as a one-node lazy model: input `x`, node `up`
/// (`LazyConvTranspose2d` with the case's `config`, plus `output_size` when given).
pub fn layer_model_json(case: &Value) -> Value {
    let mut args = case["config"].clone();
    if !case["output_size"].is_null() {
        args["output_size"] = case["output_size"].clone();
    }
    serde_json::json!({
        "name": case["id"],
        "inputs": {"x": case["input_shape"]},
        "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": args, "inputs": null}],
    })
}

/// A JSON list of unsigned ints as a `Vec<usize>`.
pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("a list").iter().map(|d| d.as_u64().expect("a non-negative int") as usize).collect()
}

/// Every JIT kernel tier this CPU can run, with a label: the pure-Cranelift
/// tier always, and each native ISA the CPU has.
pub fn jit_tiers() -> Vec<(&'static str, kiln::jit::KernelTier)> {
    use kiln::jit::{KernelTier, NativeIsa};
    let mut tiers = vec![("cranelift", KernelTier::Cranelift)];
    for (name, isa) in [("avx2", NativeIsa::Avx2), ("avx512", NativeIsa::Avx512)] {
        if isa.resolve() == Some(isa) {
            tiers.push((name, KernelTier::Native(isa)));
        }
    }
    tiers
}
