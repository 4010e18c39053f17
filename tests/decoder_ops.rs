//! The decoder ops of issue 13 beyond their golden cases: module reuse
//! rules, messages that name the node and the values, and compiled graphs
//! mixing the new ops with convolutions on every tier, against the
//! interpreter.

mod support;

use kiln::ir::{model_from_value, parse_model};
use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{tensor, Interpreter};
use kiln::ParamSource;
use serde_json::json;

fn resolve(model: serde_json::Value) -> Result<kiln::Graph, String> {
    let mut g = model_from_value(model).map_err(|e| e.to_string())?;
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 3 }).map_err(|e| e.to_string())?;
    Ok(g)
}

#[test]
fn a_module_called_twice_shares_one_set_of_parameters() {
    let g = resolve(json!({"inputs": {"x": [1, 4, 5, 5]}, "nodes": [
        {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}},
        {"name": "conv_2", "module": "conv", "inputs": ["conv"]}]}))
    .unwrap();
    let keys: Vec<String> = g.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["conv.bias", "conv.weight"]);
    let (a, b) = (g.node(g.lookup("conv").unwrap()), g.node(g.lookup("conv_2").unwrap()));
    assert_eq!(a.param("weight"), b.param("weight"));
    assert_eq!(b.module(), Some("conv"));
    // The written model keeps the reuse, and reads back to the same graph.
    let text = kiln::ir::model::to_model_json(&g).unwrap();
    assert!(text.contains("\"module\":\"conv\""), "{text}");
    let mut again = parse_model(&text).unwrap();
    let state = g.state_dict().into_iter().map(|(k, v)| (k, v.clone())).collect();
    kiln::passes::resolve(&mut again, ParamSource::StateDict(state)).unwrap();
    let x = tensor::random(&[1, 4, 5, 5], 1);
    assert_eq!(Interpreter::run(&g, std::slice::from_ref(&x)).unwrap(), Interpreter::run(&again, &[x]).unwrap());
}

#[test]
fn a_reused_lazy_module_must_see_the_same_channels() {
    let e = resolve(json!({"inputs": {"x": [1, 3, 5, 5]}, "nodes": [
        {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3}},
        {"name": "conv_2", "module": "conv"}]}))
    .unwrap_err();
    assert!(e.contains("`conv_2`") && e.contains("in_channels=4") && e.contains("in_channels=3"), "{e}");
    // A reuse carries no op or args of its own, and names a defining node.
    for bad in [
        json!({"name": "c2", "module": "conv", "op": "ReLU"}),
        json!({"name": "c2", "module": "nothing"}),
        json!({"name": "c2", "module": "act"}),
    ] {
        let model = json!({"inputs": {"x": [1, 3, 5, 5]}, "nodes": [
            {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 3, "kernel_size": 1}},
            {"name": "act", "op": "ReLU"}, bad]});
        let e = model_from_value(model).unwrap_err().to_string();
        assert!(e.contains("c2"), "{e}");
    }
}

#[test]
fn refusals_name_the_node_and_the_values() {
    let cases = [
        (json!({"name": "p", "op": "MaxPool2d", "args": {"kernel_size": 2, "return_indices": true}}), "return_indices"),
        (json!({"name": "p", "op": "ZeroPad2d", "args": {"padding": -1}}), "negative padding"),
        (
            json!({"name": "p", "op": "Upsample", "args": {"scale_factor": 2, "mode": "bicubic"}}),
            "'bicubic' is not supported",
        ),
        (json!({"name": "p", "op": "Upsample", "args": {}}), "either size or scale_factor"),
        (json!({"name": "p", "op": "Reshape", "args": {"shape": [-1, -1]}}), "-1"),
    ];
    for (node, needle) in cases {
        let e = model_from_value(json!({"inputs": {"x": [1, 2, 4, 4]}, "nodes": [node]})).unwrap_err().to_string();
        assert!(e.contains("`p`") && e.contains(needle), "{needle}: {e}");
    }
    let e = resolve(json!({"inputs": {"x": [2, 5]}, "nodes": [
        {"name": "fc", "op": "Linear", "args": {"in_features": 4, "out_features": 3}}]}))
    .unwrap_err();
    assert!(e.contains("`fc`") && e.contains("in_features=4") && e.contains("5"), "{e}");
}

/// Random small decoders that mix the new ops with convolutions, compiled on
/// every tier at 1 and 2 threads, against the interpreter.
#[test]
fn mixed_decoders_compile_to_the_interpreters_numbers() {
    let blocks = [
        json!({"op": "MaxPool2d", "args": {"kernel_size": 2, "ceil_mode": true}}),
        json!({"op": "AvgPool2d", "args": {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": false}}),
        json!({"op": "ReflectionPad2d", "args": {"padding": [1, 0, 1, 1]}}),
        json!({"op": "ReplicationPad2d", "args": {"padding": 1}}),
        json!({"op": "Upsample", "args": {"scale_factor": 2, "mode": "bilinear"}}),
        json!({"op": "Upsample", "args": {"scale_factor": [2, 1.5]}}),
        json!({"op": "LazyInstanceNorm2d", "args": {}}),
        json!({"op": "InstanceNorm2d", "args": {"num_features": 4, "affine": true}}),
        json!({"op": "GroupNorm", "args": {"num_groups": 2, "num_channels": 4}}),
        json!({"op": "PReLU", "args": {"num_parameters": 4}}),
        json!({"op": "GELU", "args": {"approximate": "tanh"}}),
        json!({"op": "Mish", "args": {}}),
        json!({"op": "Dropout2d", "args": {"p": 0.1}}),
    ];
    let mut rng = kiln::runtime::Rng::new(17);
    for case in 0..24 {
        let mut nodes = vec![
            json!({"name": "c0", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}}),
        ];
        for i in 0..3 {
            let mut b = blocks[(rng.uniform(0.0, blocks.len() as f32) as usize).min(blocks.len() - 1)].clone();
            b["name"] = json!(format!("b{i}"));
            nodes.push(b);
            // Keep 4 channels for the blocks that need them.
            nodes.push(json!({"name": format!("k{i}"), "op": "LazyConvTranspose2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}}));
        }
        nodes.push(json!({"name": "head", "op": "PixelShuffle", "args": {"upscale_factor": 2}}));
        let model = json!({"inputs": {"x": [2, 3, 7, 6]}, "nodes": nodes});
        let g = resolve(model.clone()).unwrap_or_else(|e| panic!("case {case}: {e}\n{model}"));
        let x = tensor::random(&[2, 3, 7, 6], case);
        let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        for (tier_name, tier) in support::jit_tiers() {
            for threads in [1, 2] {
                let exe = compile_with(&g, CompileOptions { tier, threads, guard_floats: 64, ..Default::default() })
                    .unwrap_or_else(|e| panic!("case {case} [{tier_name}]: {e}"));
                let got = exe.run(std::slice::from_ref(&x)).unwrap();
                let close = tensor::check_close(&got[0], &want[0], 1e-4);
                assert!(close.is_ok(), "case {case} [{tier_name}, {threads}t]: {close:?}\n{model}");
            }
        }
    }
}

/// Producers a `Conv2d` absorbs: a zero pad (any sides) becomes its per-side
/// padding, a nearest integer upsampling makes the pair one transposed
/// convolution. The fused kernels must match the interpreter, and the cases
/// the folds must not touch (non-zero pads, fractional scales, strided or
/// per-side padded convolutions after an upsampling, a producer with a
/// second user) stay separate kernels.
#[test]
fn pads_and_nearest_upsamplings_fold_into_the_following_convolution() {
    let conv = |name: &str, extra: serde_json::Value| {
        let mut args = json!({"out_channels": 6, "kernel_size": 3, "padding": 1});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        json!({"name": name, "op": "LazyConv2d", "args": args})
    };
    // (producer, conv extra args, whether the two fuse)
    let cases = [
        (json!({"op": "ZeroPad2d", "args": {"padding": 2}}), json!({}), true),
        (json!({"op": "ConstantPad2d", "args": {"padding": [1, 1, 2, 2], "value": 0.0}}), json!({"stride": 2}), true),
        (json!({"op": "ZeroPad2d", "args": {"padding": [1, 0, 1, 1]}}), json!({}), true),
        // An asymmetric pad into a convolution with per-side pads of its own.
        (
            json!({"op": "ZeroPad2d", "args": {"padding": [0, 2, 1, 0]}}),
            json!({"padding": null, "pads": [0, 1, 2, 0], "stride": [1, 2]}),
            true,
        ),
        (json!({"op": "ConstantPad2d", "args": {"padding": 1, "value": 0.5}}), json!({}), false),
        (json!({"op": "Upsample", "args": {"scale_factor": 2}}), json!({}), true),
        (
            json!({"op": "Upsample", "args": {"scale_factor": [3, 2], "mode": "nearest"}}),
            json!({"kernel_size": [3, 5], "padding": [0, 2], "groups": 2}),
            true,
        ),
        (
            json!({"op": "UpsamplingNearest2d", "args": {"size": [14, 12]}}),
            json!({"kernel_size": 1, "padding": 0, "bias": false}),
            true,
        ),
        (json!({"op": "Upsample", "args": {"scale_factor": 1.5}}), json!({}), false),
        (json!({"op": "Upsample", "args": {"scale_factor": 2}}), json!({"stride": 2}), false),
        (json!({"op": "Upsample", "args": {"scale_factor": 2}}), json!({"kernel_size": 3, "padding": 3}), false),
        (json!({"op": "Upsample", "args": {"scale_factor": 2}}), json!({"padding": null, "pads": [1, 1, 0, 0]}), false),
    ];
    for (i, (producer, extra, fuses)) in cases.into_iter().enumerate() {
        let mut p = producer.clone();
        p["name"] = json!("up");
        let nodes = vec![
            json!({"name": "c0", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 1}}),
            p,
            conv("conv", extra),
            json!({"name": "bn", "op": "LazyBatchNorm2d", "args": {}}),
            json!({"name": "act", "op": "LeakyReLU", "args": {"negative_slope": 0.2}}),
        ];
        let model = json!({"inputs": {"x": [2, 3, 7, 6]}, "nodes": nodes});
        let g = resolve(model.clone()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let x = tensor::random(&[2, 3, 7, 6], i as u64);
        let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        for (tier_name, tier) in support::jit_tiers() {
            for threads in [1, 2] {
                let exe = compile_with(&g, CompileOptions { tier, threads, guard_floats: 64, ..Default::default() })
                    .unwrap_or_else(|e| panic!("case {i} [{tier_name}]: {e}"));
                let groups: Vec<String> = exe.kernels().into_iter().map(|k| k.nodes).collect();
                let fused = groups.iter().any(|n| n == "up+conv+bn+act");
                assert_eq!(fused, fuses, "case {i} [{tier_name}]: kernels {groups:?}\n{producer}");
                let got = exe.run(std::slice::from_ref(&x)).unwrap();
                let close = tensor::check_close(&got[0], &want[0], 1e-4);
                assert!(close.is_ok(), "case {i} [{tier_name}, {threads}t]: {close:?}\n{model}");
            }
        }
    }
    // A producer that is also a graph output keeps its own kernel.
    let g = resolve(json!({"inputs": {"x": [1, 2, 4, 4]}, "outputs": ["up", "conv"], "nodes": [
        {"name": "up", "op": "Upsample", "args": {"scale_factor": 2}},
        {"name": "conv", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel_size": 3, "padding": 1}}]}))
    .unwrap();
    let exe = compile_with(&g, CompileOptions::default()).unwrap();
    let groups: Vec<String> = exe.kernels().into_iter().map(|k| k.nodes).collect();
    assert_eq!(groups, ["up", "conv"]);
}

/// Chains of elementwise ops run as one pass: after a normalization, a
/// pooling or padding, a broadcasting or residual add, or on their own. The
/// fused kernels must match the interpreter on every tier, and a node with a
/// second user (here a graph output) ends its chain.
#[test]
fn elementwise_chains_fuse_into_one_kernel() {
    let conv = json!({"name": "c0", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}});
    let n = |name: &str, op: &str, args: serde_json::Value| json!({"name": name, "op": op, "args": args});
    // (nodes after c0, outputs, the kernel group that must appear)
    let cases = [
        (
            vec![n("norm", "InstanceNorm2d", json!({"num_features": 4, "affine": true})), n("act", "ReLU", json!({}))],
            None,
            "norm+act",
        ),
        (
            vec![n("norm", "GroupNorm", json!({"num_groups": 2, "num_channels": 4})), n("act", "SiLU", json!({}))],
            None,
            "norm+act",
        ),
        (
            vec![
                n("pool", "MaxPool2d", json!({"kernel_size": 2})),
                n("p", "PReLU", json!({"num_parameters": 4})),
                n("m", "Mul", json!({"other": 0.5})),
                n("g", "GELU", json!({})),
            ],
            None,
            "pool+p+m+g",
        ),
        (
            vec![
                n("bn", "LazyBatchNorm2d", json!({})),
                n("s", "Mish", json!({})),
                n("h", "Hardtanh", json!({"min_val": -0.5, "max_val": 0.5})),
            ],
            None,
            "s+h",
        ),
        (
            vec![
                n("pad", "ReflectionPad2d", json!({"padding": 1})),
                n("e", "ELU", json!({"alpha": 0.7})),
                n("t", "Tanh", json!({})),
            ],
            Some(json!(["e", "t"])),
            "pad+e",
        ),
    ];
    for (i, (tail, outputs, group)) in cases.into_iter().enumerate() {
        let mut nodes = vec![conv.clone()];
        nodes.extend(tail);
        let mut model = json!({"inputs": {"x": [2, 3, 6, 8]}, "nodes": nodes});
        if let Some(o) = outputs {
            model["outputs"] = o;
        }
        let g = resolve(model.clone()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let x = tensor::random(&[2, 3, 6, 8], i as u64 + 40);
        let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        for (tier_name, tier) in support::jit_tiers() {
            for threads in [1, 2] {
                let exe = compile_with(&g, CompileOptions { tier, threads, guard_floats: 64, ..Default::default() })
                    .unwrap_or_else(|e| panic!("case {i} [{tier_name}]: {e}"));
                let groups: Vec<String> = exe.kernels().into_iter().map(|k| k.nodes).collect();
                assert!(groups.iter().any(|k| k == group), "case {i} [{tier_name}]: {groups:?}, want {group}");
                let got = exe.run(std::slice::from_ref(&x)).unwrap();
                for (o, (a, b)) in got.iter().zip(&want).enumerate() {
                    let close = tensor::check_close(a, b, 1e-4);
                    assert!(close.is_ok(), "case {i} output {o} [{tier_name}, {threads}t]: {close:?}\n{model}");
                }
            }
        }
    }
    // A residual add with a longer chain, and a broadcasting one.
    let g = resolve(json!({"inputs": {"x": [2, 4, 5, 5], "s": [1, 4, 1, 1]}, "nodes": [
        {"name": "c", "op": "LazyConv2d", "inputs": ["x"], "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}},
        {"name": "add", "op": "Add", "inputs": ["c", "x"]},
        {"name": "p", "op": "PReLU", "args": {}},
        {"name": "h", "op": "Hardswish", "args": {}},
        {"name": "mul", "op": "Mul", "inputs": ["h", "s"]},
        {"name": "r", "op": "ReLU6", "args": {}},
        {"name": "sig", "op": "Sigmoid"}]}))
    .unwrap();
    let inputs = [tensor::random(&[2, 4, 5, 5], 7), tensor::random(&[1, 4, 1, 1], 8)];
    let want = Interpreter::run(&g, &inputs).unwrap();
    for (tier_name, tier) in support::jit_tiers() {
        let exe = compile_with(&g, CompileOptions { tier, guard_floats: 64, ..Default::default() }).unwrap();
        let groups: Vec<String> = exe.kernels().into_iter().map(|k| k.nodes).collect();
        assert_eq!(groups, ["c", "add+p+h", "mul+r+sig"], "[{tier_name}]");
        let got = exe.run(&inputs).unwrap();
        assert!(tensor::check_close(&got[0], &want[0], 1e-4).is_ok(), "[{tier_name}]");
    }
}

/// Runs `model` on every tier at 1 and 2 threads against the interpreter
/// (inputs drawn from `seed`) and returns
/// the kernel groups of the last compile.
fn matches_interpreter(model: &serde_json::Value, seed: u64) -> Vec<String> {
    let g = resolve(model.clone()).unwrap_or_else(|e| panic!("{e}\n{model}"));
    let inputs: Vec<tensor::Tensor> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| tensor::random(&g.node(id).shape().as_known().expect("known input"), seed + i as u64))
        .collect();
    let want = Interpreter::run(&g, &inputs).unwrap();
    let mut groups = Vec::new();
    for (tier_name, tier) in support::jit_tiers() {
        for threads in [1, 2] {
            let exe = compile_with(&g, CompileOptions { tier, threads, guard_floats: 64, ..Default::default() })
                .unwrap_or_else(|e| panic!("[{tier_name}]: {e}\n{model}"));
            groups = exe.kernels().into_iter().map(|k| k.nodes).collect();
            let got = exe.run(&inputs).unwrap();
            for (o, (a, b)) in got.iter().zip(&want).enumerate() {
                let close = tensor::check_close(a, b, 1e-4);
                assert!(close.is_ok(), "output {o} [{tier_name}, {threads}t]: {close:?}\n{groups:?}\n{model}");
            }
        }
    }
    groups
}

fn has_group(groups: &[String], names: &[&str]) -> bool {
    groups.iter().any(|g| {
        let mut parts: Vec<&str> = g.split('+').collect();
        parts.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        parts == want
    })
}

#[test]
fn elementwise_dags_fuse_into_one_pass() {
    let conv = json!({"name": "c", "op": "LazyConv2d", "args": {"out_channels": 4, "kernel_size": 3, "padding": 1}});
    let n = |name: &str, op: &str, inputs: &[&str]| json!({"name": name, "op": op, "inputs": inputs});
    // The op zoo's `hardswish(x) + gelu(x) - sigmoid(x)` after a pad and two crops.
    let model = json!({"inputs": {"x": [2, 3, 7, 9]}, "nodes": [conv.clone(),
        {"name": "pad", "op": "ConstantPad2d", "args": {"padding": [1, 1, 2, 2], "value": 0.25}},
        {"name": "n1", "op": "Narrow", "args": {"dim": 2, "start": 1, "length": 9}},
        {"name": "n2", "op": "Narrow", "args": {"dim": -1, "start": 2, "length": 8}},
        n("hs", "Hardswish", &["n2"]), n("ge", "GELU", &["n2"]), n("add", "Add", &["hs", "ge"]),
        n("sg", "Sigmoid", &["n2"]), n("sub", "Sub", &["add", "sg"])]});
    let groups = matches_interpreter(&model, 1);
    assert!(has_group(&groups, &["pad", "n1", "n2", "hs", "ge", "add", "sg", "sub"]), "{groups:?}");
    // After a convolution (which fuses no DAG itself): one chain kernel.
    // `x·sigmoid(x)` written out, a residual, `x·x`, then a chain.
    let model = json!({"inputs": {"x": [2, 3, 6, 5]}, "nodes": [conv.clone(),
        n("s", "Sigmoid", &["c"]), n("m", "Mul", &["c", "s"]), n("r", "Add", &["m", "c"]),
        n("q", "Mul", &["r", "r"]), n("t", "Tanh", &["q"]), n("e", "ELU", &["t"])]});
    let groups = matches_interpreter(&model, 2);
    assert!(has_group(&groups, &["s", "m", "r", "q", "t", "e"]), "{groups:?}");
    assert!(groups.iter().any(|g| g == "c"), "{groups:?}");
    // An inner value that is also an output ends the region there.
    let mut escaping = model.clone();
    escaping["outputs"] = json!(["r", "e"]);
    let groups = matches_interpreter(&escaping, 3);
    assert!(has_group(&groups, &["s", "m", "r"]), "{groups:?}");
    assert!(!groups.iter().any(|g| g.contains("q") && g.contains("m")), "{groups:?}");
    // `x − sigmoid(x)`: the operand computed last is the subtrahend.
    let model = json!({"inputs": {"x": [1, 3, 4, 4]}, "nodes": [conv.clone(),
        n("s", "Sigmoid", &["c"]), n("u", "Sub", &["c", "s"])]});
    assert!(has_group(&matches_interpreter(&model, 8), &["s", "u"]));
    // Six values live at once: more than the program's saved copies, so
    // no region; the nodes still compute the interpreter's numbers.
    let un = ["Sigmoid", "Tanh", "SiLU", "ELU", "Hardswish", "GELU"];
    let mut nodes = vec![conv.clone()];
    for (i, op) in un.iter().enumerate() {
        nodes.push(n(&format!("u{i}"), op, &["c"]));
    }
    nodes.push(n("a0", "Add", &["u0", "u1"]));
    for i in 1..5 {
        nodes.push(n(&format!("a{i}"), "Add", &[&format!("a{}", i - 1), &format!("u{}", i + 1)]));
    }
    let wide = json!({"inputs": {"x": [1, 3, 5, 6]}, "nodes": nodes});
    let groups = matches_interpreter(&wide, 9);
    assert!(groups.len() > 2, "{groups:?}");
    // Two values leaving the region (a sum and a difference both output).
    let model = json!({"inputs": {"x": [1, 3, 4, 4]}, "outputs": ["a", "d"], "nodes": [conv,
        n("s", "Sigmoid", &["c"]), n("a", "Add", &["c", "s"]), n("d", "Sub", &["c", "s"])]});
    matches_interpreter(&model, 4);
}

#[test]
fn chains_of_pads_crops_and_nearest_upsamplings_are_one_gather() {
    let conv = json!({"name": "c", "op": "LazyConv2d", "args": {"out_channels": 3, "kernel_size": 1}});
    // Pad then crop back: the identity, no kernel at all.
    let model = json!({"inputs": {"x": [2, 2, 5, 6]}, "nodes": [conv,
        {"name": "pad", "op": "ZeroPad2d", "args": {"padding": [2, 1, 1, 3]}},
        {"name": "n1", "op": "Narrow", "args": {"dim": 3, "start": 2, "length": 6}},
        {"name": "n2", "op": "Narrow", "args": {"dim": 2, "start": 1, "length": 5}},
        {"name": "t", "op": "Tanh", "inputs": ["c"]},
        {"name": "sum", "op": "Add", "inputs": ["n2", "t"]}]});
    let groups = matches_interpreter(&model, 5);
    assert!(!groups.iter().any(|g| g.contains("pad")), "{groups:?}");
    // Reflect, nearest 2x, crop, replicate: one kernel with the chain after it.
    let model = json!({"inputs": {"x": [1, 2, 4, 5]}, "nodes": [conv,
        {"name": "rp", "op": "ReflectionPad2d", "args": {"padding": [1, 2, 1, 0]}},
        {"name": "up", "op": "Upsample", "args": {"scale_factor": 2, "mode": "nearest"}},
        {"name": "cr", "op": "Narrow", "args": {"dim": 2, "start": 3, "length": 5}},
        {"name": "rep", "op": "ReplicationPad2d", "args": {"padding": 2}},
        {"name": "act", "op": "LeakyReLU", "args": {"negative_slope": 0.1}}]});
    let groups = matches_interpreter(&model, 6);
    assert!(has_group(&groups, &["rp", "up", "cr", "rep", "act"]), "{groups:?}");
    // Two constant pads with different fills stay two kernels.
    let model = json!({"inputs": {"x": [1, 2, 3, 3]}, "nodes": [conv,
        {"name": "p1", "op": "ConstantPad2d", "args": {"padding": 1, "value": 1.5}},
        {"name": "p2", "op": "ConstantPad2d", "args": {"padding": 1, "value": -2.0}}]});
    let groups = matches_interpreter(&model, 7);
    assert!(groups.iter().any(|g| g == "p1") && groups.iter().any(|g| g == "p2"), "{groups:?}");
}

#[test]
fn a_bilinear_resize_to_the_same_size_is_elementwise() {
    // After a plane kernel (fused into its pass), and on its own.
    let resize = json!({"name": "r", "op": "Upsample", "args": {"size": [5, 7], "mode": "bilinear"}});
    for (i, nodes) in [
        vec![
            json!({"name": "p", "op": "AvgPool2d", "args": {"kernel_size": 3, "stride": 1, "padding": 1}}),
            resize.clone(),
            json!({"name": "e", "op": "ELU", "args": {}}),
        ],
        vec![resize.clone()],
    ]
    .into_iter()
    .enumerate()
    {
        let model = json!({"inputs": {"x": [2, 3, 5, 7]}, "nodes": nodes});
        let groups = matches_interpreter(&model, 20 + i as u64);
        assert!(groups.iter().any(|g| g.contains('r')), "{groups:?}");
        assert_eq!(groups.len(), 1, "one kernel: {groups:?}");
        // PyTorch's identity interpolation turns an infinity into NaN (0·inf).
        let g = resolve(model.clone()).unwrap();
        let mut x = tensor::random(&[2, 3, 5, 7], 9);
        if let Some(v) = x.iter_mut().nth(11) {
            *v = f32::INFINITY;
        }
        let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        for (tier_name, tier) in support::jit_tiers() {
            let exe = compile_with(&g, CompileOptions { tier, guard_floats: 64, ..Default::default() }).unwrap();
            let got = exe.run(std::slice::from_ref(&x)).unwrap();
            for (a, b) in got[0].iter().zip(want[0].iter()) {
                assert!(
                    a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() <= 1e-4 * b.abs().max(1.0)),
                    "[{tier_name}] {a} vs {b}"
                );
            }
            assert!(want[0].iter().any(|v| v.is_nan()), "the reference has the NaN");
        }
    }
}
