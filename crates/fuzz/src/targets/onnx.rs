//! ONNX: `kiln_onnx::OnnxModel::from_bytes(bytes, None)`. Beyond never
//! panicking, a model that reads must be self-consistent: every typed
//! accessor that succeeds returns exactly `element_count` values, every
//! attribute reads through the accessor of its own declared type (or is
//! refused with an attribute error, never anything else), and the decoded
//! message, encoded again, reads again with the same nodes.

use kiln_onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use kiln_onnx::{AttributeType, DataType, Node, OnnxError, OnnxModel, Tensor};
use prost::Message;

use crate::Outcome;

/// Runs the target on one input.
pub fn run(input: &[u8]) -> Outcome {
    let m = match OnnxModel::from_bytes(input, None) {
        Ok(m) => m,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    for t in m.initializers() {
        if let Err(why) = check_tensor(t) {
            return Outcome::Mismatch(why);
        }
    }
    for n in m.nodes() {
        if let Err(why) = check_node(&n) {
            return Outcome::Mismatch(why);
        }
    }
    let _ = (m.inputs(), m.outputs(), m.data_inputs().count(), m.opset(""), m.value_info());
    // The converter on whatever read: a graph or an error, never a panic
    // (symbolic dims bound to 1, shapes from Kiln's own inference).
    let shape_fn = |g: &kiln_ir::Graph, id: kiln_ir::NodeId| kiln_passes::infer_node(g, id).map_err(|e| e.to_string());
    let mut options = kiln_onnx::ImportOptions::new(&shape_fn);
    options.symbolic_default = Some(1);
    if let Ok(g) = kiln_onnx::to_graph(&m, &options) {
        if let Err(e) = g.validate() {
            return Outcome::Mismatch(format!("the imported graph does not validate: {e}"));
        }
    }
    // The initializers were moved out of the message; the rest must still read.
    let again = m.proto().encode_to_vec();
    match OnnxModel::from_bytes(&again, None) {
        Ok(b) if b.nodes().len() == m.nodes().len() && b.inputs() == m.inputs() => Outcome::Ok,
        Ok(_) => Outcome::Mismatch("re-encoding the decoded model changed its nodes or inputs".into()),
        Err(e) => Outcome::Mismatch(format!("the decoded model, encoded again, does not read: {e}")),
    }
}

fn check_tensor(t: &Tensor) -> Result<(), String> {
    let n = t.element_count();
    let lens = [
        t.to_f32_vec().map(|v| v.len()),
        t.to_f64_vec().map(|v| v.len()),
        t.to_i64_vec().map(|v| v.len()),
        t.strings().map(|v| v.len()),
    ];
    for len in lens.into_iter().flatten() {
        if len as u64 != n {
            return Err(format!("tensor `{}`: an accessor returned {len} values for {n} elements", t.name()));
        }
    }
    Ok(())
}

/// Reads each attribute with the accessor of its declared type.
fn check_node(n: &Node<'_>) -> Result<(), String> {
    for a in n.attributes() {
        let name = a.name.as_str();
        let r: Result<(), OnnxError> = match AttributeType::try_from(a.r#type) {
            Ok(AttributeType::Int) => n.attr_int(name).map(drop),
            Ok(AttributeType::Ints) => n.attr_ints(name).map(drop),
            Ok(AttributeType::Float) => n.attr_float(name).map(drop),
            Ok(AttributeType::Floats) => n.attr_floats(name).map(drop),
            Ok(AttributeType::String) => n.attr_string(name).map(drop),
            Ok(AttributeType::Strings) => n.attr_strings(name).map(drop),
            Ok(AttributeType::Tensor) => match n.attr_tensor(name) {
                Ok(Some(t)) => check_tensor(&t).map_err(|why| OnnxError::Invalid { reason: why }),
                other => other.map(drop),
            },
            _ => Ok(()),
        };
        match r {
            Ok(()) | Err(OnnxError::Attribute { .. }) => {}
            Err(e) => return Err(format!("node {}: attribute `{name}` of its declared type fails: {e}", n.label())),
        }
    }
    Ok(())
}

fn tensor(name: &str, data_type: DataType, dims: &[i64]) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: data_type as i32, ..Default::default() }
}

fn value(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    use kiln_onnx::proto::tensor_shape_proto::{dimension, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("batch".into()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn attr(name: &str, t: AttributeType) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: t as i32, ..Default::default() }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| (*s).into()).collect(),
        output: outputs.iter().map(|s| (*s).into()).collect(),
        attribute,
        ..Default::default()
    }
}

fn model(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "kiln-fuzz".into(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Models written with `kiln_onnx::proto`: a Conv with raw and typed
/// initializers of several element types and every attribute kind, and an
/// `If` with two subgraph branches holding Constant tensors.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut w = tensor("w", DataType::Float, &[2, 1, 2, 2]);
    w.raw_data = (0..8).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
    let mut b = tensor("b", DataType::Float, &[2]);
    b.float_data = vec![0.25, -0.5];
    let mut h = tensor("h", DataType::Float16, &[3]);
    h.int32_data = vec![0x3c00, 0x0001, 0x7c00];
    let mut hr = tensor("hr", DataType::Float16, &[2]);
    hr.raw_data = vec![0x00, 0x3c, 0xff, 0x7b];
    let mut q = tensor("q", DataType::Int8, &[2, 2]);
    q.int32_data = vec![-128, -1, 0, 127];
    let mut k = tensor("k", DataType::Bool, &[3]);
    k.raw_data = vec![1, 0, 1];
    let mut s = tensor("s", DataType::Int64, &[2]);
    s.int64_data = vec![-1, 1 << 40];
    let mut d = tensor("d", DataType::Double, &[2]);
    d.double_data = vec![1e-300, -2.0];
    let mut u = tensor("u", DataType::Uint64, &[1]);
    u.uint64_data = vec![7];
    let mut strides = attr("strides", AttributeType::Ints);
    strides.ints = vec![1, 1];
    let mut alpha = attr("alpha", AttributeType::Float);
    alpha.f = 0.1;
    let mut group = attr("group", AttributeType::Int);
    group.i = 1;
    let mut pad = attr("auto_pad", AttributeType::String);
    pad.s = b"NOTSET".to_vec();
    let conv = GraphProto {
        name: "conv".into(),
        node: vec![
            node("conv", "Conv", &["x", "w", "b"], &["c"], vec![strides, group, pad]),
            node("act", "LeakyRelu", &["c"], &["y"], vec![alpha]),
        ],
        initializer: vec![w, b, h, hr, q, k, s, d, u],
        input: vec![value("x", DataType::Float, &[None, Some(1), Some(4), Some(4)])],
        output: vec![value("y", DataType::Float, &[None, Some(2), Some(3), Some(3)])],
        ..Default::default()
    };
    let branch = |name: &str, v: f32| {
        let mut c = tensor("", DataType::Float, &[1]);
        c.float_data = vec![v];
        let mut value_attr = attr("value", AttributeType::Tensor);
        value_attr.t = Some(Box::new(c));
        GraphProto {
            name: name.into(),
            node: vec![node(name, "Constant", &[], &["out"], vec![value_attr])],
            output: vec![value("out", DataType::Float, &[Some(1)])],
            ..Default::default()
        }
    };
    let mut then_branch = attr("then_branch", AttributeType::Graph);
    then_branch.g = Some(Box::new(branch("then", 1.0)));
    let mut else_branch = attr("else_branch", AttributeType::Graph);
    else_branch.g = Some(Box::new(branch("else", 2.0)));
    let cond = GraphProto {
        name: "if".into(),
        node: vec![node("if", "If", &["cond"], &["y"], vec![then_branch, else_branch])],
        input: vec![value("cond", DataType::Bool, &[])],
        output: vec![value("y", DataType::Float, &[Some(1)])],
        ..Default::default()
    };
    vec![model(conv), model(cond)]
}
