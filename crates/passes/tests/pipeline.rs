//! Hand-written graphs through the pipeline: snapshots of the text form before
//! and after, state-dict loading rules, and errors naming node and values.

use std::collections::BTreeMap;

use kiln_ir::ndarray::ArrayD;
use kiln_ir::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Graph, GraphBuilder, Op};
use kiln_passes::{pipeline, resolve, verify, ParamSource, PassError};

fn before_after(g: &mut Graph) -> String {
    let before = g.to_string();
    resolve(g, ParamSource::Init { seed: 3 }).expect("resolves");
    verify(g).expect("verifies");
    format!("// before\n{before}// after\n{g}")
}

#[test]
fn groups_dilation_output_padding() {
    let mut b = GraphBuilder::new("mixed");
    let x = b.input("x", [2, 6, 5, 7]).unwrap();
    let a = b
        .lazy_conv_transpose2d(
            "grouped",
            x,
            ConvTranspose2dParams::new(9, 3).stride(2).padding(1).output_padding(1).groups(3),
        )
        .unwrap();
    let d = b
        .lazy_conv_transpose2d(
            "dilated",
            a,
            ConvTranspose2dParams::new(4, (3, 2)).dilation((2, 3)).output_padding((1, 2)).bias(false),
        )
        .unwrap();
    let dw = b
        .lazy_conv_transpose2d("depthwise", d, ConvTranspose2dParams::new(8, 4).stride(2).padding(1).groups(4))
        .unwrap();
    b.relu("act", dw).unwrap();
    let mut g = b.finish().unwrap();
    insta::assert_snapshot!(before_after(&mut g));
}

#[test]
fn output_size_becomes_output_padding() {
    let mut b = GraphBuilder::new("sized");
    let x = b.input("x", [1, 3, 5, 5]).unwrap();
    b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_size([10, 9]))
        .unwrap();
    let mut g = b.finish().unwrap();
    insta::assert_snapshot!(before_after(&mut g));
}

#[test]
fn unbatched_input() {
    let mut b = GraphBuilder::new("unbatched");
    let x = b.input("x", [3, 6, 5]).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(2, 3).stride(2).padding(1)).unwrap();
    b.tanh("out", up).unwrap();
    let mut g = b.finish().unwrap();
    insta::assert_snapshot!(before_after(&mut g));
}

#[test]
fn lazy_node_with_two_consumers() {
    let mut b = GraphBuilder::new("fanout");
    let x = b.input("x", [1, 4, 3, 3]).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
    let left = b.lazy_conv2d("left", up, Conv2dParams::new(6, 3).padding(1)).unwrap();
    let right = b.lazy_batch_norm2d("right", up, BatchNorm2dParams::default()).unwrap();
    let sum = b.add("sum", left, right).unwrap();
    let cat = b.concat("cat", &[sum, up]).unwrap();
    b.leaky_relu("out", cat, 0.1).unwrap();
    let mut g = b.finish().unwrap();
    insta::assert_snapshot!(before_after(&mut g));
    // The producer was rewritten once and both consumers see its resolved shape.
    let up = g.lookup("up").unwrap();
    assert!(matches!(g.node(up).op(), Op::ConvTranspose2d { in_channels: 4, .. }));
    assert_eq!(g.users(up).len(), 3);
}

fn decoder() -> Graph {
    let mut b = GraphBuilder::new("d");
    let x = b.input("x", [1, 4, 3, 3]).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
    b.lazy_batch_norm2d("bn", up, BatchNorm2dParams::default()).unwrap();
    b.finish().unwrap()
}

fn state_dict() -> BTreeMap<String, ArrayD<f32>> {
    let mut m = BTreeMap::new();
    m.insert("up.weight".into(), ArrayD::from_elem(vec![4, 6, 2, 2], 0.5));
    m.insert("up.bias".into(), ArrayD::from_elem(vec![6], 0.25));
    for k in ["weight", "bias", "running_mean", "running_var"] {
        m.insert(format!("bn.{k}"), ArrayD::from_elem(vec![6], 2.0));
    }
    m
}

#[test]
fn state_dict_loads_by_name() {
    let mut g = decoder();
    resolve(&mut g, ParamSource::StateDict(state_dict())).unwrap();
    let up = g.lookup("up").unwrap();
    assert!(g.node(up).param("weight").unwrap().iter().all(|&v| v == 0.5));
    assert!(g.node(up).param("bias").unwrap().iter().all(|&v| v == 0.25));
}

#[test]
fn state_dict_ignores_num_batches_tracked() {
    let mut g = decoder();
    let mut sd = state_dict();
    sd.insert("bn.num_batches_tracked".into(), ArrayD::zeros(vec![]));
    resolve(&mut g, ParamSource::StateDict(sd)).unwrap();
}

#[test]
fn missing_key_is_named() {
    let mut sd = state_dict();
    sd.remove("up.bias");
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err();
    assert_eq!(e.to_string(), "the state dict does not match the model: 1 missing key (`up.bias` [6])");
}

#[test]
fn unexpected_key_is_named() {
    let mut sd = state_dict();
    sd.insert("up2.weight".into(), ArrayD::zeros(vec![1]));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err();
    assert_eq!(e.to_string(), "the state dict does not match the model: 1 unexpected key (`up2.weight` [1])");
    let mut sd = state_dict();
    sd.insert("up.running_mean".into(), ArrayD::zeros(vec![6]));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err();
    assert!(
        e.to_string().contains(
            "1 unexpected key (`up.running_mean`: node `up` (ConvTranspose2d) has no parameter `running_mean`; it has: weight, bias)"
        ),
        "{e}"
    );
}

/// Renames every key of the decoder's state dict.
fn renamed(f: impl Fn(&str) -> String) -> BTreeMap<String, ArrayD<f32>> {
    state_dict().into_iter().map(|(k, v)| (f(&k), v)).collect()
}

#[test]
fn all_mismatched_keys_are_reported_together() {
    let mut sd = state_dict();
    sd.remove("up.bias");
    sd.remove("bn.running_var");
    sd.insert("head.weight".into(), ArrayD::zeros(vec![3]));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err();
    match &e {
        PassError::StateDictMismatch { missing, unexpected, .. } => {
            let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["up.bias", "bn.running_var"]);
            assert_eq!(unexpected.len(), 1);
        }
        e => panic!("{e}"),
    }
    assert!(
        e.to_string().starts_with(
            "the state dict does not match the model: 2 missing keys (`up.bias` [6], `bn.running_var` [6]); 1 unexpected key (`head.weight` [3])"
        ),
        "{e}"
    );
}

#[test]
fn a_prefix_shared_by_every_key_is_detected() {
    for prefix in ["module.", "model.", "net.module."] {
        let sd = renamed(|k| format!("{prefix}{k}"));
        let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err().to_string();
        assert!(e.contains("6 missing keys (`up.weight` [4, 6, 2, 2], `up.bias` [6], "), "{e}");
        assert!(e.contains("6 unexpected keys ("), "{e}");
        assert!(
            e.contains(&format!("every unexpected key starts with `{prefix}`"))
                && e.contains(&format!("--weights-prefix {prefix}")),
            "{e}"
        );
    }
}

#[test]
fn a_sequentials_numbered_keys_suggest_renaming_the_nodes() {
    // nn.Sequential(ConvTranspose2d, BatchNorm2d) saves `0.weight`, `1.running_mean`, ...
    let sd = renamed(|k| k.replacen("up.", "0.", 1).replacen("bn.", "1.", 1));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err().to_string();
    assert!(e.contains("rename `up` -> `0`, `bn` -> `1` in the model"), "{e}");
    // Differently named attributes, found by their shapes.
    let sd = renamed(|k| k.replacen("up.", "deconv.", 1).replacen("bn.", "norm.", 1));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err().to_string();
    assert!(e.contains("rename `up` -> `deconv`, `bn` -> `norm`"), "{e}");
    // No shape matches: no guess.
    let mut sd = renamed(|k| k.replacen("up.", "deconv.", 1));
    sd.insert("deconv.weight".into(), ArrayD::zeros(vec![1, 2]));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err().to_string();
    assert!(!e.contains("rename"), "{e}");
}

#[test]
fn dotted_and_numbered_node_names_load_their_keys() {
    let mut b = GraphBuilder::new("seq");
    let x = b.input("x", [1, 4, 3, 3]).unwrap();
    let up = b.lazy_conv_transpose2d("main.0", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
    b.lazy_batch_norm2d("main.1", up, BatchNorm2dParams::default()).unwrap();
    let mut g = b.finish().unwrap();
    let sd = renamed(|k| k.replacen("up.", "main.0.", 1).replacen("bn.", "main.1.", 1));
    resolve(&mut g, ParamSource::StateDict(sd)).unwrap();
    let w = g.node(g.lookup("main.0").unwrap()).param("weight").unwrap();
    assert!(w.iter().all(|&v| v == 0.5));
}

#[test]
fn a_three_d_input_is_blamed_not_the_batch_norm() {
    let mut b = GraphBuilder::new("unbatched");
    let z = b.input("z", [32, 1, 1]).unwrap();
    let up = b.lazy_conv_transpose2d("up1", z, ConvTranspose2dParams::new(8, 4)).unwrap();
    b.lazy_batch_norm2d("bn1", up, BatchNorm2dParams::default()).unwrap();
    let e = resolve(&mut b.finish().unwrap(), ParamSource::Init { seed: 0 }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph input `z` has shape [32, 1, 1], without a batch dimension, but node `bn1` (LazyBatchNorm2d) needs 4-D \
         [N, C, H, W] input: declare `z` as [1, 32, 1, 1] (convolutions accept unbatched 3-D input, LazyBatchNorm2d does not)"
    );
}

#[test]
fn wrong_shape_names_both_shapes() {
    let mut sd = state_dict();
    sd.insert("up.weight".into(), ArrayD::zeros(vec![5, 6, 2, 2]));
    let e = resolve(&mut decoder(), ParamSource::StateDict(sd)).unwrap_err();
    assert_eq!(e.to_string(), "parameter `up.weight` has shape [5, 6, 2, 2], but the node needs [4, 6, 2, 2]");
}

#[test]
fn concrete_node_with_wrong_in_channels() {
    let mut b = GraphBuilder::new("c");
    let x = b.input("x", [2, 5, 5, 5]).unwrap();
    b.conv_transpose2d("up", x, 4, ConvTranspose2dParams::new(6, 3)).unwrap();
    let mut g = b.finish().unwrap();
    let e = resolve(&mut g, ParamSource::Init { seed: 0 }).unwrap_err();
    assert!(matches!(e, PassError::ChannelMismatch { expected: 4, got: 5, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "node `up`: ConvTranspose2d was built for in_channels=4 but its input has 5 channels (input shape [2, 5, 5, 5])"
    );
}

#[test]
fn shape_errors_downstream_name_the_node() {
    let mut b = GraphBuilder::new("c");
    let x = b.input("x", [1, 2, 4, 4]).unwrap();
    let skip = b.input("skip", [1, 2, 5, 5]).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(2, 2).stride(2)).unwrap();
    b.add("sum", up, skip).unwrap();
    let e = resolve(&mut b.finish().unwrap(), ParamSource::Init { seed: 0 }).unwrap_err();
    assert_eq!(e.to_string(), "node `sum`: Add cannot broadcast [1, 2, 8, 8] with [1, 2, 5, 5]: size 8 and size 5 at dim 2 must match or one be 1");
}

#[test]
fn verify_rejects_unresolved_graphs() {
    let g = decoder();
    assert!(matches!(verify(&g), Err(PassError::Unresolved { .. })));
}

#[test]
fn init_is_independent_of_visit_order() {
    // Same node names in a different insertion order get the same weights.
    let mut a = decoder();
    resolve(&mut a, ParamSource::Init { seed: 5 }).unwrap();
    let mut b = GraphBuilder::new("d");
    let x = b.input("x", [1, 4, 3, 3]).unwrap();
    let other = b.lazy_conv_transpose2d("other", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
    b.add("s", other, up).unwrap();
    let mut g2 = b.finish().unwrap();
    resolve(&mut g2, ParamSource::Init { seed: 5 }).unwrap();
    let w = |g: &Graph| g.node(g.lookup("up").unwrap()).param("weight").unwrap().clone();
    assert_eq!(w(&a), w(&g2));
    assert_ne!(w(&g2), g2.node(g2.lookup("other").unwrap()).param("weight").unwrap().clone());
}

#[test]
fn pipeline_reports_changes() {
    let mut g = decoder();
    let r = pipeline(ParamSource::Init { seed: 0 }).run(&mut g).unwrap();
    let names: Vec<_> = r.iter().map(|r| (r.pass, r.changed)).collect();
    use kiln_passes::Changed::*;
    assert_eq!(names, [("shape-inference", Yes), ("resolve-lazy", Yes), ("verify", No)]);
}

#[test]
fn per_side_pads_resolve_and_print_pytorch_form_where_it_exists() {
    let mut b = GraphBuilder::new("pads");
    let x = b.input("x", [1, 3, 5, 5]).unwrap();
    // begin = end + 1: PyTorch's padding=1 output_padding=1.
    let lower = ConvTranspose2dParams::new(4, 3).stride(2).pads([1, 1], [0, 0]);
    let a = b.lazy_conv_transpose2d("lower", x, lower).unwrap();
    // More at the end and output_padding past the stride: only the per-side form.
    let upper = ConvTranspose2dParams::new(2, 3).stride(2).pads([0, 1], [1, 2]).output_padding((3, 0));
    let c = b.lazy_conv_transpose2d("upper", a, upper).unwrap();
    b.lazy_conv2d("conv", c, Conv2dParams::new(2, 2).pads([0, 0], [1, 1])).unwrap();
    let mut g = b.finish().unwrap();
    let text = before_after(&mut g);
    let after = text.split("// after\n").nth(1).unwrap_or_default();
    assert!(
        after.contains(
            "in_channels=3 out_channels=4 kernel=3x3 stride=2x2 padding=1x1 output_padding=1x1 : f32[1, 4, 10, 10]"
        ),
        "{text}"
    );
    // 2·9 + 2 + 1 − 0 − 1 + 3 = 23 rows, 2·9 + 2 + 1 − 1 − 2 = 18 columns.
    assert!(after.contains("kernel=3x3 stride=2x2 pads=[0, 1, 1, 2] output_padding=3x0 : f32[1, 2, 23, 18]"), "{text}");
    assert!(after.contains("kernel=2x2 stride=1x1 pads=[0, 0, 1, 1] : f32[1, 2, 23, 18]"), "{text}");
    // The resolved ops keep the per-side form.
    let up = g.find("upper").unwrap();
    match g.node(up).op() {
        Op::ConvTranspose2d { params, .. } => assert_eq!(params.padding.to_onnx(), [0, 1, 1, 2]),
        op => panic!("{op:?}"),
    }
}
