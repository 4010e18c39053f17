//! Proves the oracle against PyTorch: every `layer` case of the golden set
//! that PyTorch accepted, and every `model` case, run through the interpreter
//! on graphs resolved by hand (the passes crate is not used), compared with
//! PyTorch's outputs. Also checks the golden `.npy` files against the same
//! tensors in `tensors.safetensors`, and that damaged golden files give errors.
//!
//! Reads `$KILN_GOLDEN_DIR` (default `../shared/golden` beside the
//! repository) and depends only on the documented golden format, not on case
//! ids or counts.

use std::path::PathBuf;

use kiln_ir::{ConvPadding, ConvTranspose2dParams, Graph, Op, PaddingMode, Pair2, Shape};
use kiln_runtime::tensor::{check_close, Tensor};
use kiln_runtime::{npy, ops, Interpreter, RuntimeError, WeightStore};
use serde_json::Value;

/// The golden tolerance: max abs error <= REL * max(1, max|expected|).
const REL: f32 = 1e-4;

fn golden_dir() -> PathBuf {
    match std::env::var_os("KILN_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden"),
    }
}

fn cases() -> Vec<Value> {
    let path = golden_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("cases.json is valid JSON");
    doc["cases"].as_array().expect("a `cases` list").clone()
}

fn tensors() -> WeightStore {
    WeightStore::load(golden_dir().join("tensors.safetensors")).expect("golden tensors load")
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array().expect("a shape list").iter().map(|d| d.as_u64().expect("a size") as usize).collect()
}

/// PyTorch's int-or-pair argument.
fn pair(v: &Value) -> Pair2 {
    match v {
        Value::Array(a) => Pair2 { h: a[0].as_u64().unwrap() as usize, w: a[1].as_u64().unwrap() as usize },
        n => Pair2::square(n.as_u64().unwrap() as usize),
    }
}

fn layer_params(case: &Value) -> ConvTranspose2dParams {
    let c = &case["config"];
    let mut p = ConvTranspose2dParams::new(c["out_channels"].as_u64().unwrap() as usize, pair(&c["kernel_size"]));
    for (key, value) in c.as_object().unwrap() {
        match key.as_str() {
            "out_channels" | "kernel_size" => {}
            "stride" => p.stride = pair(value),
            "padding" => p.padding = ConvPadding::Symmetric(pair(value)),
            "output_padding" => p.output_padding = pair(value),
            "dilation" => p.dilation = pair(value),
            "groups" => p.groups = value.as_u64().unwrap() as usize,
            "bias" => p.bias = value.as_bool().unwrap(),
            "padding_mode" => p.padding_mode = PaddingMode::parse(value.as_str().unwrap()).unwrap(),
            other => panic!("case {}: unknown config key {other}", case["id"]),
        }
    }
    if !case["output_size"].is_null() {
        p.output_size = Some(dims(&case["output_size"]));
    }
    p
}

/// The resolved one-node graph of a layer case, built directly with the IR API.
fn layer_graph(case: &Value, w: &WeightStore) -> Result<Graph, String> {
    let mut g = Graph::with_name(case["id"].as_str().unwrap());
    let x = g.add_input("x", dims(&case["input_shape"])).map_err(|e| e.to_string())?;
    let op =
        Op::ConvTranspose2d { in_channels: case["in_channels"].as_u64().unwrap() as usize, params: layer_params(case) };
    let bias = matches!(&op, Op::ConvTranspose2d { params, .. } if params.bias);
    let up = g.add_node("up", op, &[x]).map_err(|e| e.to_string())?;
    g.set_shape(up, Shape::known(&dims(&case["output_shape"])));
    g.set_param(up, "weight", w.require("weight").map_err(|e| e.to_string())?.clone()).map_err(|e| e.to_string())?;
    if bias {
        g.set_param(up, "bias", w.require("bias").map_err(|e| e.to_string())?.clone()).map_err(|e| e.to_string())?;
    }
    g.add_output(up).map_err(|e| e.to_string())?;
    Ok(g)
}

#[test]
fn every_valid_layer_case_matches_pytorch_f64() {
    let all = tensors();
    let mut checked = 0;
    let mut failures = Vec::new();
    // (case, error / tolerance) of the closest call, printed with --nocapture.
    let mut worst = (String::new(), 0.0f32);
    for case in cases().iter().filter(|c| c["kind"] == "layer" && c.get("error").is_none()) {
        let id = case["id"].as_str().unwrap();
        let w = all.with_prefix(&format!("{id}/"));
        let outcome = layer_graph(case, &w).and_then(|g| {
            let out = Interpreter::run(&g, &[w.require("input").map_err(|e| e.to_string())?.clone()])
                .map_err(|e| e.to_string())?;
            let expected = w.require("output_f64").map_err(|e| e.to_string())?;
            check_close(&out[0], expected, REL).map(|diff| diff / kiln_runtime::tensor::tolerance(expected, REL))
        });
        match outcome {
            Ok(ratio) => {
                checked += 1;
                if ratio > worst.1 || worst.0.is_empty() {
                    worst = (id.to_string(), ratio);
                }
            }
            Err(e) => failures.push(format!("{id}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} layer cases differ:\n{}",
        failures.len(),
        checked + failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "no valid layer cases in {}", golden_dir().display());
    println!("{checked} layer cases match PyTorch f64; largest error: {} at {:.2e} of the tolerance", worst.0, worst.1);
}

/// Resolves a lazy model graph by hand with the PyTorch `state_dict` in
/// `weights` (what kiln-passes will do), using the oracle's own shape rules.
fn resolve(mut g: Graph, weights: &WeightStore) -> Graph {
    for id in g.topo_order().unwrap() {
        let operands: Vec<Vec<usize>> = g.operands(id).iter().map(|&o| g.node(o).shape().as_known().unwrap()).collect();
        let name = g.node(id).name().to_string();
        let op = g.node(id).op().clone();
        let (op, shape) = match op {
            Op::Input | Op::Output => continue,
            Op::LazyConvTranspose2d { params } => {
                let x = &operands[0];
                let r = x.len();
                let hw = ops::conv_transpose2d_output_hw(&name, [x[r - 2], x[r - 1]], &params).unwrap();
                let mut s = x[..r - 3].to_vec();
                s.extend([params.out_channels, hw[0], hw[1]]);
                (Op::ConvTranspose2d { in_channels: x[r - 3], params }, s)
            }
            Op::LazyConv2d { params } => {
                let x = &operands[0];
                let r = x.len();
                let hw = ops::conv2d_output_hw(&name, [x[r - 2], x[r - 1]], &params).unwrap();
                let mut s = x[..r - 3].to_vec();
                s.extend([params.out_channels, hw[0], hw[1]]);
                (Op::Conv2d { in_channels: x[r - 3], params }, s)
            }
            Op::LazyBatchNorm2d { params } => {
                (Op::BatchNorm2d { num_features: operands[0][1], params }, operands[0].clone())
            }
            Op::Concat => {
                let mut s = operands[0].clone();
                let axis = s.len() - 3;
                s[axis] = operands.iter().map(|o| o[axis]).sum();
                (Op::Concat, s)
            }
            other => (other, operands[0].clone()),
        };
        let specs: Vec<&str> = op.param_specs().iter().map(|s| s.0).collect();
        g.set_op(id, op).unwrap();
        g.set_shape(id, Shape::known(&shape));
        for param in specs {
            let t = weights.require(&format!("{name}.{param}")).unwrap();
            g.set_param(id, param, t.clone()).unwrap();
        }
    }
    g
}

#[test]
fn every_model_case_matches_pytorch() {
    let dir = golden_dir();
    let all = tensors();
    let mut checked = 0;
    for case in cases().iter().filter(|c| c["kind"] == "model") {
        let (id, model) = (case["id"].as_str().unwrap(), case["model"].as_str().unwrap());
        let in_case = all.with_prefix(&format!("{id}/"));
        // The user's path: PyTorch's own state_dict file and numpy arrays.
        let state = WeightStore::load(dir.join(format!("models/{model}.safetensors"))).unwrap();
        let lazy = kiln_ir::model_from_value(serde_json::json!({
            "name": model, "inputs": case["inputs"], "nodes": case["nodes"],
        }))
        .unwrap();
        let g = resolve(lazy, &state);
        let mut inputs: Vec<Tensor> = Vec::new();
        for &input in g.inputs() {
            let name = g.node(input).name();
            let t = npy::read(dir.join(format!("models/{model}.input.{name}.npy"))).unwrap();
            assert_eq!(&t, in_case.require(&format!("input.{name}")).unwrap(), "{model}: npy input {name}");
            inputs.push(t);
        }
        let expected = npy::read(dir.join(format!("models/{model}.output.npy"))).unwrap();
        assert_eq!(&expected, in_case.require("output").unwrap(), "{model}: npy output");
        assert_eq!(expected.shape(), dims(&case["output_shape"]).as_slice());
        // The state_dict file and the case's tensors hold the same parameters.
        for (key, t) in state.iter() {
            assert_eq!(Some(t), in_case.get(key), "{model}: {key}");
        }
        let out = Interpreter::run(&g, &inputs).unwrap();
        match check_close(&out[0], &expected, REL) {
            Ok(diff) => println!("model {model}: max abs diff {diff:.2e} against PyTorch f32"),
            Err(e) => panic!("model {model}: {e}"),
        }
        checked += 1;
    }
    assert!(checked > 0, "no model cases in {}", dir.display());
}

#[test]
fn golden_npy_files_round_trip_byte_for_byte() {
    let dir = golden_dir().join("models");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "npy") {
            let bytes = std::fs::read(&path).unwrap();
            let t = npy::from_bytes(&bytes).unwrap();
            assert_eq!(npy::to_bytes(&t), bytes, "{}", path.display());
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn damaged_golden_files_are_errors_not_panics() {
    let bytes = std::fs::read(golden_dir().join("tensors.safetensors")).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let len = bytes.len();
    for cut in [0, 1, 7, 8, 9, 100, header_end - 1, header_end, header_end + 1, len / 2, len - 4, len - 1] {
        let e = WeightStore::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(e, RuntimeError::CorruptSafetensors { .. } | RuntimeError::TensorData { .. }), "{cut}: {e}");
    }
    // Flipping header bytes must not panic either (errors or, rarely, a still-valid file).
    for at in (8..header_end).step_by(97) {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        let _ = WeightStore::from_bytes(&b);
    }
    let npy_bytes = std::fs::read(golden_dir().join("models/dcgan.output.npy")).unwrap();
    for cut in [0, 5, 9, 60, 127, 128, 129, npy_bytes.len() - 1] {
        assert!(npy::from_bytes(&npy_bytes[..cut]).is_err(), "{cut}");
    }
}
