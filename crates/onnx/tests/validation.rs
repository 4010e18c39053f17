//! The checks after decoding: tensors whose shape, type and data disagree,
//! names that are not unique, limits, attribute types, and the range checks of
//! the typed accessors. Models are built with the crate's prost messages.

mod common;

use common::{attr_graph, attr_ints, encode, f32_tensor, graph, model, node, value, with_tensor};
use kiln_onnx::proto::{AttributeProto, GraphProto, OperatorSetIdProto, Segment, TensorProto};
use kiln_onnx::{AttributeType, DataType, Limits, OnnxError, OnnxModel};

fn read(bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
    OnnxModel::from_bytes(bytes, None)
}

/// `t` as the only initializer must be refused with a message naming the
/// tensor and containing `needle`.
fn tensor_refused(t: TensorProto, needle: &str) {
    let name = t.name.clone();
    match read(&with_tensor(t)) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle) && msg.contains(&format!("`{name}`")), "{needle:?} / {name:?} not in: {msg}");
        }
        Ok(_) => panic!("tensor accepted, expected {needle:?}"),
    }
}

fn typed(name: &str, data_type: DataType, dims: &[i64]) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: data_type as i32, ..Default::default() }
}

#[test]
fn raw_data_length_must_match_the_shape_exactly() {
    let mut t = f32_tensor("w", &[2, 3], &[1.0; 6]);
    read(&with_tensor(t.clone())).expect("24 bytes for 2x3 f32");
    t.raw_data.push(0);
    tensor_refused(t.clone(), "raw_data has 25 bytes, but 6 elements of FLOAT need 24");
    t.raw_data.truncate(23);
    tensor_refused(t, "raw_data has 23 bytes");
    let mut h = typed("h", DataType::Float16, &[3]);
    h.raw_data = vec![0; 4];
    tensor_refused(h, "need 6");
}

#[test]
fn typed_fields_must_match_the_shape_and_the_type() {
    let mut t = typed("f", DataType::Float, &[3]);
    t.float_data = vec![1.0, 2.0];
    tensor_refused(t.clone(), "float_data has 2 entries, but 3 elements of FLOAT need 3");
    t.float_data.clear();
    tensor_refused(t.clone(), "(no data given)");
    t.int64_data = vec![1, 2, 3];
    tensor_refused(t.clone(), "it belongs in `float_data`");
    t.int64_data.clear();
    t.float_data = vec![1.0; 3];
    t.raw_data = vec![0; 12];
    tensor_refused(t, "data is given twice");
    let mut b = typed("b", DataType::Bool, &[2]);
    b.int32_data = vec![1, 0];
    read(&with_tensor(b)).expect("bool in int32_data");
    let mut u = typed("u", DataType::Uint32, &[1]);
    u.int32_data = vec![1];
    tensor_refused(u, "belongs in `uint64_data`");
    let mut c = typed("c", DataType::Complex64, &[2]);
    c.float_data = vec![1.0; 4];
    read(&with_tensor(c)).expect("complex64: two floats per element");
    let mut p = typed("p", DataType::Int4, &[3]);
    p.int32_data = vec![0x21, 0x3];
    read(&with_tensor(p.clone())).expect("int4: two elements per int32_data entry");
    p.raw_data = vec![0x21];
    p.int32_data.clear();
    tensor_refused(p, "raw_data has 1 bytes, but 3 elements of INT4 need 2");
    let mut s = typed("s", DataType::String, &[2]);
    s.string_data = vec![b"a".to_vec(), b"bc".to_vec()];
    let m = read(&with_tensor(s.clone())).expect("strings");
    assert_eq!(m.initializer("s").expect("s").strings().expect("strings"), &[b"a".to_vec(), b"bc".to_vec()]);
    s.string_data.clear();
    s.raw_data = vec![0; 2];
    tensor_refused(s, "STRING tensors cannot use raw_data");
}

#[test]
fn dims_must_be_non_negative_bounded_and_not_overflow() {
    tensor_refused(f32_tensor("n", &[2, -1], &[]), "dimension 1 is negative (-1)");
    tensor_refused(f32_tensor("o", &[1 << 32, 1 << 32, 1 << 2], &[]), "element count of dims");
    tensor_refused(f32_tensor("o2", &[1 << 30, 1 << 30, 4], &[]), "byte size of dims");
    tensor_refused(f32_tensor("r", &[1; 17], &[0.0]), "rank of tensor `r` is 17, over the limit of 16");
    tensor_refused(f32_tensor("big", &[1 << 31, 4], &[]), "byte size of tensor `big` is 34359738368");
    // A zero dimension makes an empty tensor even if the others are huge.
    read(&with_tensor(f32_tensor("e", &[0, 1 << 40], &[]))).expect("empty");
}

#[test]
fn data_type_and_location_must_be_known() {
    let mut t = f32_tensor("t", &[1], &[1.0]);
    t.data_type = 99;
    tensor_refused(t.clone(), "unknown data_type 99");
    t.data_type = 0;
    tensor_refused(t.clone(), "data_type is UNDEFINED");
    t.data_type = DataType::Float as i32;
    t.data_location = 7;
    tensor_refused(t.clone(), "unknown data_location 7");
    t.data_location = 0;
    t.segment = Some(Segment { begin: 0, end: 1 });
    tensor_refused(t, "segmented tensors");
}

#[test]
fn names_must_be_unique() {
    let m = model(graph(vec![f32_tensor("w", &[1], &[1.0]), f32_tensor("w", &[1], &[2.0])]));
    let err = read(&encode(&m)).expect_err("duplicate");
    assert!(err.to_string().contains("two initializers named `w`"), "{err}");
    let m = model(graph(vec![f32_tensor("", &[1], &[1.0])]));
    assert!(read(&encode(&m)).expect_err("unnamed").to_string().contains("has no name"));
    let mut g = graph(vec![]);
    g.node[0].attribute = vec![attr_ints("a", &[1]), attr_ints("a", &[2])];
    assert!(read(&encode(&model(g))).expect_err("dup attr").to_string().contains("two attributes named `a`"));
    let mut m = model(graph(vec![]));
    m.opset_import.push(OperatorSetIdProto { domain: "ai.onnx".into(), version: 18 });
    assert!(read(&encode(&m)).expect_err("dup opset").to_string().contains("twice"));
    let mut m = model(graph(vec![]));
    m.graph = None;
    assert!(read(&encode(&m)).expect_err("no graph").to_string().contains("no graph"));
}

#[test]
fn declared_shapes_are_checked() {
    let mut g = graph(vec![]);
    g.input = vec![value("x", DataType::Float, &[1, -3])];
    let err = read(&encode(&model(g))).expect_err("negative");
    assert!(err.to_string().contains("value `x` has negative size -3 on axis 1"), "{err}");
    let mut g = graph(vec![]);
    g.output = vec![value("y", DataType::Float, &[1; 20])];
    assert!(read(&encode(&model(g))).expect_err("rank").to_string().contains("rank of value `y`"));
}

/// `depth` graphs nested through `If`-like `GRAPH` attributes.
fn nested(depth: usize) -> GraphProto {
    let mut g = graph(vec![]);
    for _ in 1..depth {
        let mut outer = graph(vec![]);
        outer.node[0].attribute.push(attr_graph("body", g));
        g = outer;
    }
    g
}

#[test]
fn graph_depth_and_node_count_are_limited() {
    read(&encode(&model(nested(8)))).expect("depth 8 is the default limit");
    let err = read(&encode(&model(nested(9)))).expect_err("depth 9");
    assert!(matches!(err, OnnxError::Limit { .. }) && err.to_string().contains("nesting depth"), "{err}");
    // Far beyond prost's own recursion limit: still an error, not a stack overflow.
    assert!(read(&encode(&model(nested(200)))).is_err());
    let mut g = graph(vec![]);
    g.node = (0..50).map(|i| node(&format!("n{i}"), "Relu", &["x"], &["y"], vec![])).collect();
    let limits = Limits { max_nodes: 49, ..Limits::default() };
    let err = OnnxModel::from_bytes_with(&encode(&model(g)), None, &limits).expect_err("50 nodes");
    assert!(err.to_string().contains("node count"), "{err}");
}

#[test]
fn a_wrong_attribute_type_names_node_op_and_attribute() {
    let mut g = graph(vec![]);
    g.node = vec![node("conv1", "Conv", &["x", "w"], &["y"], vec![attr_ints("strides", &[2, 2])])];
    g.node[0].attribute.push(AttributeProto {
        name: "auto_pad".into(),
        r#type: AttributeType::String as i32,
        s: vec![0xff, 0xfe],
        ..Default::default()
    });
    g.node[0].attribute.push(AttributeProto { name: "odd".into(), r#type: 42, ..Default::default() });
    g.node[0].attribute.push(AttributeProto {
        name: "ref".into(),
        r#type: AttributeType::Int as i32,
        ref_attr_name: "outer".into(),
        ..Default::default()
    });
    let m = read(&encode(&model(g))).expect("reads");
    let n = m.nodes().next().expect("conv1");
    assert_eq!(n.attr_ints("strides").expect("INTS"), Some(&[2i64, 2][..]));
    let err = n.attr_int("strides").expect_err("INTS is not INT");
    assert_eq!(err.to_string(), "node `conv1` (Conv): attribute `strides` has type INTS, expected INT");
    let err = n.attr_tensor("strides").expect_err("INTS is not TENSOR");
    assert_eq!(err.to_string(), "node `conv1` (Conv): attribute `strides` has type INTS, expected TENSOR");
    let err = n.attr_string("auto_pad").expect_err("not UTF-8");
    assert!(err.to_string().starts_with("node `conv1` (Conv): attribute `auto_pad`: the string is not UTF-8"), "{err}");
    let err = n.attr_float("odd").expect_err("unknown type");
    assert!(err.to_string().contains("has type unknown type 42, expected FLOAT"), "{err}");
    let err = n.attr_int("ref").expect_err("function reference");
    assert!(err.to_string().contains("refers to function attribute `outer`"), "{err}");
    assert_eq!(n.attr_int("absent").expect("absent"), None);

    // An unnamed node is named by its index.
    let mut g = graph(vec![]);
    g.node[0].name.clear();
    g.node[0].attribute.push(attr_ints("perm", &[0]));
    let m = read(&encode(&model(g))).expect("reads");
    let err = m.nodes().next().expect("node").attr_float("perm").expect_err("INTS");
    assert!(err.to_string().starts_with("node `#0` (Identity): attribute `perm`"), "{err}");
}

#[test]
fn attribute_tensors_are_checked_at_load() {
    let mut g = graph(vec![]);
    let mut t = f32_tensor("", &[2], &[1.0, 2.0]);
    t.raw_data.pop();
    g.node[0].attribute.push(AttributeProto {
        name: "value".into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(Box::new(t)),
        ..Default::default()
    });
    let err = read(&encode(&model(g))).expect_err("bad attribute tensor");
    assert!(err.to_string().contains("attribute `value` of node `id`"), "{err}");
}

#[test]
fn typed_accessors_refuse_values_out_of_range() {
    let cases: [(DataType, &str, &str); 6] = [
        (DataType::Int8, "int32_data", "int32_data[1] = 200 is not a valid INT8 value"),
        (DataType::Uint8, "int32_data", "int32_data[1] = 200"),
        (DataType::Bool, "int32_data", "int32_data[1] = 200 is not a valid BOOL value"),
        (DataType::Float16, "int32_data", "int32_data[1] = 70000"),
        (DataType::Uint32, "uint64_data", "uint64_data[1] = 4294967296"),
        (DataType::Uint64, "uint64_data", "uint64_data[1] = 18446744073709551615"),
    ];
    for (dt, field, needle) in cases {
        let mut t = typed("t", dt, &[2]);
        match field {
            "int32_data" => t.int32_data = vec![0, if dt == DataType::Float16 { 70000 } else { 200 }],
            _ => t.uint64_data = vec![0, if dt == DataType::Uint32 { 1 << 32 } else { u64::MAX }],
        }
        let m = read(&with_tensor(t)).expect("lengths are right");
        let t = m.initializer("t").expect("t");
        // UINT8 200 is fine; every other case is out of range.
        if dt == DataType::Uint8 {
            assert_eq!(t.to_i64_vec().expect("in range"), [0, 200]);
            continue;
        }
        let err = if dt == DataType::Float16 {
            t.to_f32_vec().expect_err("range")
        } else {
            t.to_i64_vec().expect_err("range")
        };
        let msg = err.to_string();
        assert!(msg.contains(needle) && msg.contains("tensor `t`"), "{needle:?} not in: {msg}");
    }
    let mut b = typed("b", DataType::Bool, &[2]);
    b.raw_data = vec![1, 2];
    let m = read(&with_tensor(b)).expect("lengths are right");
    assert!(m.initializer("b").expect("b").to_i64_vec().expect_err("2").to_string().contains("raw_data[1] = 2"));
    let m = read(&with_tensor(f32_tensor("f", &[1], &[1.0]))).expect("reads");
    let err = m.initializer("f").expect("f").to_i64_vec().expect_err("float");
    assert_eq!(err.to_string(), "tensor `f` has type FLOAT, which does not convert to i64");
}
