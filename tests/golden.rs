//! The golden harness: every case in `$KILN_GOLDEN_DIR` through every backend,
//! compared with PyTorch's tensors.
//!
//! - `layer` cases: the lazy one-node graph is resolved with the case's weights,
//!   run, and compared with `ID/output_f64`;
//! - `error` cases: must be rejected at construction, in the passes, or when
//!   preparing or running;
//! - `model` cases: built from the node list, resolved with the case's state
//!   dict, compared with `ID/output`; and, where `models/<model>.safetensors`
//!   exists, the same model through the path a PyTorch user takes (the
//!   exported `state_dict` and `.npy` inputs, loaded by name).
//!
//! Tolerance: max abs error <= 1e-4 * max(1, max |expected|). Prints
//! `golden: N passed, M failed`. Run as `cargo test --release --test golden`.

mod support;

use kiln::ir::model_from_value;
use kiln::jit::{CompileOptions, JitBackend, KernelTier};
use kiln::runtime::backend::{Backend, InterpreterBackend};
use kiln::runtime::{npy, tensor, Tensor, WeightStore};
use kiln::{Graph, ParamSource};
use serde_json::Value;

/// The backends every case runs through.
fn backends() -> Vec<Box<dyn Backend>> {
    let jit = |threads, tier| JitBackend { options: CompileOptions { threads, tier, ..CompileOptions::default() } };
    let mut v: Vec<Box<dyn Backend>> =
        vec![Box::new(InterpreterBackend), Box::new(jit(1, KernelTier::Auto)), Box::new(jit(2, KernelTier::Auto))];
    // Every tier on its own, so a tier that Auto does not pick here stays checked.
    for (_, tier) in support::jit_tiers() {
        v.push(Box::new(jit(2, tier)));
    }
    v
}

const REL_TOL: f32 = 1e-4;

struct Golden {
    dir: std::path::PathBuf,
    tensors: WeightStore,
}

impl Golden {
    fn load(dir: std::path::PathBuf) -> Golden {
        let path = dir.join("tensors.safetensors");
        let tensors = WeightStore::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Golden { dir, tensors }
    }

    fn tensor(&self, key: &str) -> Result<Tensor, String> {
        self.tensors.get(key).cloned().ok_or_else(|| format!("golden tensor `{key}` missing"))
    }
}

/// Resolves, prepares and runs; any stage's error becomes a message.
fn run_graph(
    backend: &dyn Backend,
    mut g: Graph,
    source: ParamSource,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>, String> {
    kiln::passes::resolve(&mut g, source).map_err(|e| e.to_string())?;
    let exe = backend.prepare(&g).map_err(|e| e.to_string())?;
    exe.run(inputs).map_err(|e| e.to_string())
}

fn compare(got: &Tensor, expected: &Tensor) -> Result<(), String> {
    tensor::check_close(got, expected, REL_TOL).map(|_| ())
}

fn layer_case(backend: &dyn Backend, golden: &Golden, case: &Value) -> Result<(), String> {
    let id = case["id"].as_str().ok_or("case without id")?;
    let built = model_from_value(support::layer_model_json(case));
    if case.get("error").is_some() {
        let expected = &case["error"]["message"];
        let Ok(g) = built else { return Ok(()) };
        let input = Tensor::zeros(support::usizes(&case["input_shape"]));
        return match run_graph(backend, g, ParamSource::Init { seed: 0 }, &[input]) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!("accepted, but PyTorch rejects it: {expected}")),
        };
    }
    let g = built.map_err(|e| e.to_string())?;
    let mut state = std::collections::BTreeMap::new();
    state.insert("up.weight".to_string(), golden.tensor(&format!("{id}/weight"))?);
    if let Ok(b) = golden.tensor(&format!("{id}/bias")) {
        state.insert("up.bias".to_string(), b);
    }
    let out = run_graph(backend, g, ParamSource::StateDict(state), &[golden.tensor(&format!("{id}/input"))?])?;
    compare(out.first().ok_or("no output")?, &golden.tensor(&format!("{id}/output_f64"))?)
}

fn model_case(backend: &dyn Backend, golden: &Golden, case: &Value) -> Result<(), String> {
    let id = case["id"].as_str().ok_or("case without id")?;
    if case.get("error").is_some() {
        // Rejected by PyTorch: must be rejected at construction, in the
        // passes, or when preparing or running on zeros.
        let expected = &case["error"]["message"];
        let Ok(g) = model_from_value(support::model_json(case)) else { return Ok(()) };
        let inputs: Vec<Tensor> =
            g.inputs().iter().map(|&i| Tensor::zeros(support::usizes(&case["inputs"][g.node(i).name()]))).collect();
        return match run_graph(backend, g, ParamSource::Init { seed: 0 }, &inputs) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!("accepted, but PyTorch rejects it: {expected}")),
        };
    }
    let g = model_from_value(support::model_json(case)).map_err(|e| e.to_string())?;
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&i| golden.tensor(&format!("{id}/input.{}", g.node(i).name())))
        .collect::<Result<_, _>>()?;
    let state = golden.tensors.with_prefix(&format!("{id}/")).into_tensors();
    let state = state.into_iter().filter(|(k, _)| !k.starts_with("input.") && k != "output").collect();
    let out = run_graph(backend, g.clone(), ParamSource::StateDict(state), &inputs)?;
    compare(out.first().ok_or("no output")?, &golden.tensor(&format!("{id}/output"))?)?;

    // The PyTorch user's path: an exported state_dict and .npy files, by name.
    let name = case["model"].as_str().ok_or("model without name")?;
    let dir = golden.dir.join("models");
    let weights = dir.join(format!("{name}.safetensors"));
    if !weights.exists() {
        return Ok(());
    }
    let source = kiln::load_weights(&weights).map_err(|e| e.to_string())?;
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&i| npy::read(dir.join(format!("{name}.input.{}.npy", g.node(i).name()))).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let out = run_graph(backend, g, source, &inputs)?;
    let expected = npy::read(dir.join(format!("{name}.output.npy"))).map_err(|e| e.to_string())?;
    compare(out.first().ok_or("no output")?, &expected).map_err(|e| format!("user path: {e}"))
}

#[test]
fn golden_cases_on_every_backend() {
    run_cases(support::golden_dir());
}

/// The project's own cases for the ops beyond the shared set
/// (`scripts/golden/gen_ops.py`).
#[test]
fn project_golden_cases_on_every_backend() {
    run_cases(support::ops_golden_dir());
}

/// Per-side (asymmetric) convolution padding, Kiln's `pads` extension,
/// against ONNX's definitions (`scripts/golden/gen_pads_onnx.py`).
#[test]
fn pads_golden_cases_on_every_backend() {
    run_cases(support::pads_golden_dir());
}

fn run_cases(dir: std::path::PathBuf) {
    let cases = support::cases_in(&dir);
    assert!(!cases.is_empty(), "no case in {}", dir.display());
    let golden = Golden::load(dir);
    let (mut passed, mut failures) = (0usize, Vec::new());
    for (b, backend) in backends().into_iter().enumerate() {
        for case in &cases {
            let result = match case["kind"].as_str() {
                Some("layer") => layer_case(backend.as_ref(), &golden, case),
                Some("model") => model_case(backend.as_ref(), &golden, case),
                other => Err(format!("unknown case kind {other:?}")),
            };
            match result {
                Ok(()) => passed += 1,
                Err(e) => failures.push(format!("[{} #{b}] {}: {e}", backend.name(), case["id"])),
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    println!("golden: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{} golden case(s) failed", failures.len());
}
