//! Property test: any graph the API can build round-trips through JSON
//! losslessly (ops, operand order, shapes with unknown dims, parameters).

use kiln_ir::ndarray::ArrayD;
use kiln_ir::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Dim, Graph, NodeId, Op, Shape};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    LazyCt {
        out_mult: usize,
        groups: usize,
        k: (usize, usize),
        s: (usize, usize),
        p: usize,
        bias: bool,
        out_size: bool,
    },
    Ct {
        in_ch: usize,
        out: usize,
        k: usize,
    },
    LazyConv {
        out: usize,
        k: usize,
        pad: usize,
    },
    Bn {
        eps_exp: i32,
        affine: bool,
    },
    Act(u8, f32),
    Add(usize),
    Concat(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..4usize, 1..4usize, (1..5usize, 1..5usize), (1..4usize, 1..4usize), 0..3usize, any::<bool>(), any::<bool>())
            .prop_map(|(out_mult, groups, k, s, p, bias, out_size)| Step::LazyCt {
                out_mult,
                groups,
                k,
                s,
                p,
                bias,
                out_size
            }),
        (1..8usize, 1..8usize, 1..4usize).prop_map(|(in_ch, out, k)| Step::Ct { in_ch, out, k }),
        (1..8usize, 1..4usize, 0..2usize).prop_map(|(out, k, pad)| Step::LazyConv { out, k, pad }),
        (1..7i32, any::<bool>()).prop_map(|(eps_exp, affine)| Step::Bn { eps_exp, affine }),
        (0..4u8, -1.0f32..1.0).prop_map(|(a, s)| Step::Act(a, s)),
        (0..100usize).prop_map(Step::Add),
        (0..100usize).prop_map(Step::Concat),
    ]
}

fn build(steps: &[Step], shape: Vec<usize>, unknown_dim: bool, seed: f32) -> Graph {
    let mut g = Graph::with_name("random");
    let x = g.add_input("x", shape).expect("input");
    let mut values: Vec<NodeId> = vec![x];
    for (i, s) in steps.iter().enumerate() {
        let name = format!("n{i}");
        let last = *values.last().expect("nonempty");
        let op = match s {
            Step::LazyCt { out_mult, groups, k, s, p, bias, out_size } => {
                let mut params = ConvTranspose2dParams::new(out_mult * groups, *k)
                    .stride(*s)
                    .padding(*p)
                    .groups(*groups)
                    .bias(*bias);
                if *out_size {
                    params = params.output_size([4, 5]);
                }
                Op::LazyConvTranspose2d { params }
            }
            Step::Ct { in_ch, out, k } => {
                Op::ConvTranspose2d { in_channels: *in_ch, params: ConvTranspose2dParams::new(*out, *k) }
            }
            Step::LazyConv { out, k, pad } => Op::LazyConv2d { params: Conv2dParams::new(*out, *k).padding(*pad) },
            Step::Bn { eps_exp, affine } => {
                Op::LazyBatchNorm2d { params: BatchNorm2dParams::default().eps(10f32.powi(-eps_exp)).affine(*affine) }
            }
            Step::Act(0, _) => Op::Relu,
            Step::Act(1, slope) => Op::LeakyRelu { negative_slope: *slope },
            Step::Act(2, _) => Op::Tanh,
            Step::Act(_, _) => Op::Sigmoid,
            Step::Add(j) => {
                let other = values[j % values.len()];
                let id = g.add_node(&name, Op::Add, &[last, other]).expect("add");
                values.push(id);
                continue;
            }
            Step::Concat(j) => {
                let other = values[j % values.len()];
                let id = g.add_node(&name, Op::Concat, &[other, last, other]).expect("concat");
                values.push(id);
                continue;
            }
        };
        let specs = op.param_specs();
        let id = g.add_node(&name, op, &[last]).expect("node");
        // Attach a parameter with arbitrary values to exercise tensor round trips.
        if let Some((pname, _)) = specs.first() {
            let data: Vec<f32> = (0..6).map(|v| seed * v as f32 - 0.1).collect();
            g.set_param(id, pname, ArrayD::from_shape_vec(vec![2, 3], data).expect("shape")).expect("param");
        }
        if unknown_dim {
            g.set_shape(id, Shape::Ranked(vec![Dim::Known(1), Dim::Unknown, Dim::Known(i + 1)]));
        }
        values.push(id);
    }
    let last = *values.last().expect("nonempty");
    g.add_output(last).expect("output");
    if values.len() > 2 {
        g.add_output(values[1]).expect("output");
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn graphs_round_trip_through_json(
        steps in prop::collection::vec(step(), 1..12),
        shape in prop::collection::vec(1..6usize, 3..5),
        unknown_dim in any::<bool>(),
        seed in -3.0f32..3.0,
    ) {
        let g = build(&steps, shape, unknown_dim, seed);
        let json = g.to_json();
        let back = Graph::from_json(&json).expect("parse back");
        prop_assert_eq!(&back, &g);
        prop_assert_eq!(back.to_string(), g.to_string());
        prop_assert_eq!(back.to_json(), json);
    }
}

#[test]
fn corrupted_json_is_an_error_not_a_panic() {
    let mut g = Graph::new();
    let x = g.add_input("x", vec![1, 2, 3, 3]).expect("input");
    let r = g.add_node("r", Op::Relu, &[x]).expect("relu");
    g.add_output(r).expect("out");
    let json = g.to_json();
    assert!(Graph::from_json(&json[..json.len() / 2]).is_err());
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid");
    let corrupt = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = value.clone();
        f(&mut v);
        Graph::from_json(&v.to_string())
    };
    // Dangling operand.
    assert!(matches!(
        corrupt(&|v| v["nodes"][1]["operands"][0] = "nope".into()),
        Err(kiln_ir::IrError::UnknownOperand { .. })
    ));
    // Self-cycle.
    assert!(matches!(corrupt(&|v| v["nodes"][1]["operands"][0] = "r".into()), Err(kiln_ir::IrError::Cycle(_))));
    // Wrong operand count.
    assert!(matches!(
        corrupt(&|v| v["nodes"][1]["operands"] = serde_json::json!(["x", "x"])),
        Err(kiln_ir::IrError::OperandCount { .. })
    ));
    // Invalid hyper-parameters are re-validated.
    let mut g2 = Graph::new();
    let x2 = g2.add_input("x", vec![1, 2, 3, 3]).expect("input");
    let up = g2.add_node("up", Op::lazy_conv_transpose2d(ConvTranspose2dParams::new(2, 3)), &[x2]).expect("up");
    g2.add_output(up).expect("out");
    let mut v: serde_json::Value = serde_json::from_str(&g2.to_json()).expect("valid");
    v["nodes"][1]["op"]["params"]["groups"] = 0.into();
    assert!(Graph::from_json(&v.to_string()).is_err());
    // Parameter data that does not match its shape.
    g2.set_param(up, "bias", ArrayD::zeros(vec![2])).expect("bias");
    let mut v: serde_json::Value = serde_json::from_str(&g2.to_json()).expect("valid");
    v["nodes"][1]["params"]["bias"]["shape"] = serde_json::json!([3]);
    assert!(Graph::from_json(&v.to_string()).is_err());
}
