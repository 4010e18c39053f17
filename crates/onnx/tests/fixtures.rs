//! The fixtures written by `scripts/onnx/export_fixtures.py` (torch's exporter
//! and `onnx.helper`) read as `onnx` itself reads them: every expectation
//! comes from `tests/fixtures/expected.json`, computed in Python with
//! `onnx.numpy_helper.to_array` from the saved files.

mod common;

use common::{fixture_bytes, fixtures, FIXTURES};
use kiln_onnx::{read_model, read_model_with, DataType, Dim, Limits, OnnxError, OnnxModel, Tensor, ValueInfo};
use serde_json::Value;

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("u64")).collect()
}

fn i64s(v: &Value) -> Vec<i64> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("i64")).collect()
}

fn check_value(got: &ValueInfo, want: &Value) {
    assert_eq!(got.name, want["name"].as_str().expect("name"));
    let elem = want["elem_type"].as_i64().expect("elem_type") as i32;
    assert_eq!(got.elem_type.map(|t| t as i32), Some(elem), "{}", got.name);
    let want_shape: Option<Vec<Dim>> = want["shape"].as_array().map(|dims| {
        dims.iter()
            .map(|d| match d {
                Value::Number(n) => Dim::Known(n.as_u64().expect("size")),
                Value::String(s) => Dim::Symbolic(s.clone()),
                _ => Dim::Unknown,
            })
            .collect()
    });
    assert_eq!(got.shape, want_shape, "{}", got.name);
}

fn check_tensor(t: &Tensor, want: &Value) {
    let name = t.name();
    assert_eq!(t.dims(), u64s(&want["dims"]).as_slice(), "{name}");
    assert_eq!(t.data_type() as i64, want["data_type"].as_i64().expect("data_type"), "{name}");
    assert_eq!(t.element_count(), want["count"].as_u64().expect("count"), "{name}");
    if t.element_count() > 0 {
        // An empty tensor has no data in any field, raw or typed.
        assert_eq!(t.is_raw(), want["raw"].as_bool().expect("raw"), "{name}");
    }
    if let Some(bits) = want.get("f32_bits") {
        let got = t.to_f32_vec().unwrap_or_else(|e| panic!("{name}: {e}"));
        let got_bits: Vec<u64> = got.iter().map(|x| u64::from(x.to_bits())).collect();
        let bits = u64s(bits);
        assert_eq!(&got_bits[..bits.len()], bits.as_slice(), "{name}: f32 bit patterns");
        if let Some(sum) = want["sum"].as_f64() {
            let s: f64 = t.to_f64_vec().expect("f64").iter().sum();
            assert!((s - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{name}: sum {s} vs {sum}");
        }
        assert!(t.to_i64_vec().is_err(), "{name}: floats must not convert to i64");
    }
    if let Some(bits) = want.get("f64_bits") {
        let got: Vec<u64> = t.to_f64_vec().expect("f64").iter().map(|x| x.to_bits()).collect();
        let bits = u64s(bits);
        assert_eq!(&got[..bits.len()], bits.as_slice(), "{name}: f64 bit patterns");
    }
    if let Some(vals) = want.get("i64") {
        let got = t.to_i64_vec().unwrap_or_else(|e| panic!("{name}: {e}"));
        let vals = i64s(vals);
        assert_eq!(&got[..vals.len()], vals.as_slice(), "{name}");
        let sum = got.iter().fold(0i64, |a, &x| a.wrapping_add(x));
        assert_eq!(sum, want["sum"].as_i64().expect("sum"), "{name}: wrapping sum");
        assert!(t.to_f32_vec().is_err(), "{name}: integers must not convert to f32");
    }
}

fn check_model(name: &str, m: &OnnxModel, want: &Value) {
    assert_eq!(m.ir_version(), want["ir_version"].as_i64().expect("ir_version"), "{name}");
    assert_eq!(m.producer_name(), want["producer_name"].as_str().expect("producer"), "{name}");
    let opsets = want["opsets"].as_object().expect("opsets");
    for (domain, version) in opsets {
        assert_eq!(m.opset(domain), version.as_i64(), "{name}: opset {domain:?}");
    }
    assert_eq!(m.opset("com.nobody"), None);
    let ins = want["inputs"].as_array().expect("inputs");
    assert_eq!(m.inputs().len(), ins.len(), "{name}");
    for (g, w) in m.inputs().iter().zip(ins) {
        check_value(g, w);
    }
    let outs = want["outputs"].as_array().expect("outputs");
    assert_eq!(m.outputs().len(), outs.len(), "{name}");
    for (g, w) in m.outputs().iter().zip(outs) {
        check_value(g, w);
    }
    let ops: Vec<&str> = m.nodes().map(|n| n.op_type()).collect();
    let want_ops: Vec<&str> =
        want["op_types"].as_array().expect("ops").iter().map(|v| v.as_str().expect("op")).collect();
    assert_eq!(ops, want_ops, "{name}");
    let inits = want["initializers"].as_object().expect("initializers");
    assert_eq!(m.initializers().len(), inits.len(), "{name}");
    for (tname, w) in inits {
        let t = m.initializer(tname).unwrap_or_else(|| panic!("{name}: no initializer {tname}"));
        check_tensor(t, w);
    }
}

#[test]
fn every_fixture_reads_as_onnx_reads_it() {
    let expected = expected();
    for name in FIXTURES {
        let m = read_model(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_model(name, &m, &expected[*name]);
    }
}

#[test]
fn fixtures_without_external_data_read_from_bytes_alone() {
    let expected = expected();
    for name in FIXTURES.iter().filter(|n| !n.starts_with("external/")) {
        let m = OnnxModel::from_bytes(&fixture_bytes(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_model(name, &m, &expected[*name]);
    }
}

#[test]
fn the_torch_export_has_its_conv_attributes_and_a_dynamic_batch() {
    let m = read_model(&fixtures().join("conv_static.onnx")).expect("reads");
    let conv = m.nodes().find(|n| n.op_type() == "Conv").expect("a Conv");
    assert_eq!(conv.attr_ints("kernel_shape").expect("INTS"), Some(&[3i64, 3][..]));
    assert_eq!(conv.attr_ints("pads").expect("INTS"), Some(&[1i64, 1, 1, 1][..]));
    assert_eq!(conv.attr_int("group").expect("INT"), Some(1));
    assert_eq!(conv.attr_ints("no_such").expect("absent is fine"), None);
    let up = m.nodes().find(|n| n.op_type() == "ConvTranspose").expect("a ConvTranspose");
    assert_eq!(up.attr_ints("strides").expect("INTS"), Some(&[2i64, 2][..]));
    let bn = m.nodes().find(|n| n.op_type() == "BatchNormalization").expect("a BatchNormalization");
    assert!(bn.attr_float("epsilon").expect("FLOAT").is_some_and(|e| (e - 1e-5).abs() < 1e-9));
    let w = m.initializer(&conv.inputs()[1]).expect("the conv weight is an initializer");
    assert_eq!(w.dims(), &[4, 3, 3, 3]);
    assert_eq!(m.data_inputs().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["x"]);

    let d = read_model(&fixtures().join("conv_dynamic.onnx")).expect("reads");
    let shape = d.inputs()[0].shape.as_ref().expect("a shape");
    assert_eq!(shape[0], Dim::Symbolic("batch".into()));
    assert_eq!(&shape[1..], &[Dim::Known(3), Dim::Known(8), Dim::Known(8)]);
}

#[test]
fn attributes_of_the_helper_model() {
    let m = read_model(&fixtures().join("dtypes.onnx")).expect("reads");
    let cast = m.nodes().find(|n| n.name() == "cast").expect("cast");
    assert_eq!(cast.attr_int("to").expect("INT"), Some(DataType::Double as i64));
    let err = cast.attr_float("to").expect_err("to is an INT");
    let msg = err.to_string();
    for part in ["`cast`", "Cast", "`to`", "INT", "FLOAT"] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    assert!(matches!(err, OnnxError::AttributeType { expected: "FLOAT", .. }), "{err:?}");
    let c = m.nodes().find(|n| n.op_type() == "Constant").expect("Constant");
    let v = c.attr_tensor("value").expect("TENSOR").expect("present");
    assert_eq!(v.to_f32_vec().expect("f32"), [0.5, -1.5]);
    assert_eq!(v.name(), "attribute `value` of node `const`", "an unnamed tensor is named by its place");
    assert!(c.attr_ints("value").is_err());
}

#[test]
fn subgraphs_count_toward_the_depth_limit() {
    let path = fixtures().join("subgraph.onnx");
    let m = read_model(&path).expect("reads");
    let node = m.nodes().next().expect("If");
    assert!(node.attribute("then_branch").and_then(|a| a.g.as_ref()).is_some());
    assert_eq!(m.opset("ai.onnx"), Some(17));
    assert_eq!(m.opset(""), Some(17), "\"\" and \"ai.onnx\" are the same domain");
    assert_eq!(m.opset("com.example"), Some(2));
    let err = read_model_with(&path, &Limits { max_graph_depth: 1, ..Limits::default() }).expect_err("depth 2");
    assert!(err.to_string().contains("graph nesting depth"), "{err}");
    let err = read_model_with(&path, &Limits { max_nodes: 2, ..Limits::default() }).expect_err("3 nodes");
    assert!(err.to_string().contains("node count"), "{err}");
}

#[test]
fn external_data_needs_a_directory() {
    let bytes = fixture_bytes("external/model.onnx");
    let err = OnnxModel::from_bytes(&bytes, None).expect_err("no directory");
    assert!(matches!(err, OnnxError::ExternalDataWithoutDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("no model directory"), "{err}");
    let m = OnnxModel::from_bytes(&bytes, Some(&fixtures().join("external"))).expect("with the directory");
    assert_eq!(m.initializer("w").expect("w").dims(), &[8, 4, 3, 3]);
    let small = Limits { max_external_bytes: 1000, ..Limits::default() };
    let err = read_model_with(&fixtures().join("external/model.onnx"), &small).expect_err("over budget");
    assert!(matches!(err, OnnxError::Limit { .. }), "{err:?}");
}

#[test]
fn the_file_size_is_checked_before_reading() {
    let small = Limits { max_file_bytes: 100, ..Limits::default() };
    let err = read_model_with(&fixtures().join("conv_static.onnx"), &small).expect_err("too large");
    assert!(err.to_string().contains("file size"), "{err}");
    let err = OnnxModel::from_bytes_with(&fixture_bytes("conv_static.onnx"), None, &small).expect_err("too large");
    assert!(matches!(err, OnnxError::Limit { .. }), "{err:?}");
    let err = read_model(&fixtures().join("no-such.onnx")).expect_err("missing");
    assert!(matches!(err, OnnxError::Io { .. }) && err.to_string().contains("no-such.onnx"), "{err}");
}
