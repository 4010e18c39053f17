//! [`Interpreter`]: runs a resolved graph node by node in topological order
//! with the reference ops of [`crate::ops`]. It is the oracle every other
//! backend is compared with, so it favours obviousness over speed: no buffer
//! reuse beyond dropping values after their last use, no fusion, f64
//! accumulation.
//!
//! Before running, [`Interpreter::validate`] refuses graphs that are not
//! resolved (a lazy node or an unknown dimension), parameters that are missing
//! or shaped differently from what the op declares, and structural errors. At
//! run time the inputs are checked against the declared input shapes, and
//! every node's result is checked against the node's declared shape, so a
//! shape-inference bug shows up as an error naming the node rather than as a
//! silently different output.
//!
//! It does not resolve lazy nodes, infer shapes or materialize weights: that
//! is `kiln-passes`' job.

use std::borrow::Borrow;
use std::collections::HashMap;

use kiln_ir::{Graph, NodeId, Op};

use crate::backend::check_inputs;
use crate::error::{fmt_shape, Result, RuntimeError};
use crate::ops;
use crate::tensor::{into_contiguous, Tensor};

/// The reference interpreter. Stateless: every method takes the graph.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl Interpreter {
    /// Checks that `graph` can run: structurally valid, every node resolved
    /// (concrete op, fully known shape) and every parameter present with the
    /// shape the op declares. Errors name the node (and `node.param`).
    pub fn validate(graph: &Graph) -> Result<()> {
        graph.validate()?;
        for id in graph.topo_order()? {
            let node = graph.node(id);
            let op = node.op();
            if op.is_lazy() {
                return Err(RuntimeError::Unresolved {
                    node: node.name().into(),
                    reason: format!("it is still lazy ({})", op.class_name()),
                });
            }
            // Output markers may keep an unranked shape: they only forward a value.
            if !matches!(op, Op::Output) && !node.shape().is_fully_known() {
                return Err(RuntimeError::Unresolved {
                    node: node.name().into(),
                    reason: format!("its shape {} has unknown dimensions", node.shape()),
                });
            }
            for (param, dims) in op.param_specs() {
                let Some(expected) = dims.iter().map(|d| d.known()).collect::<Option<Vec<usize>>>() else {
                    return Err(RuntimeError::Unresolved {
                        node: node.name().into(),
                        reason: format!("the shape of parameter `{param}` is not known"),
                    });
                };
                let Some(value) = node.param(param) else {
                    return Err(RuntimeError::MissingParam {
                        node: node.name().into(),
                        op: op.class_name(),
                        param,
                        expected: fmt_shape(&expected),
                    });
                };
                if value.shape() != expected.as_slice() {
                    return Err(RuntimeError::ParamShape {
                        node: node.name().into(),
                        op: op.class_name(),
                        param,
                        expected: fmt_shape(&expected),
                        got: fmt_shape(value.shape()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs `graph` on `inputs` (in [`Graph::inputs`] order) and returns the
    /// outputs in [`Graph::outputs`] order. Validates the graph and the inputs
    /// first; see [`Interpreter::validate`] and [`check_inputs`].
    pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Self::validate(graph)?;
        check_inputs(graph, inputs)?;
        execute(graph, inputs)
    }

    /// Like [`Interpreter::run`] with inputs given by name, in any order.
    /// Returns `(name of the output value, tensor)` in output order.
    /// Unknown, repeated and missing names are errors.
    pub fn run_named(graph: &Graph, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        Self::validate(graph)?;
        let names: Vec<&str> = graph.inputs().iter().map(|&id| graph.node(id).name()).collect();
        let mut ordered: Vec<Option<&Tensor>> = vec![None; names.len()];
        for &(name, tensor) in inputs {
            let Some(pos) = names.iter().position(|n| *n == name) else {
                return Err(RuntimeError::InputName {
                    input: name.into(),
                    reason: format!("is not an input of the graph (it has: {})", names.join(", ")),
                });
            };
            if ordered[pos].replace(tensor).is_some() {
                return Err(RuntimeError::InputName { input: name.into(), reason: "is given twice".into() });
            }
        }
        let mut given = Vec::with_capacity(names.len());
        for (name, t) in names.iter().zip(ordered) {
            match t {
                Some(t) => given.push(t),
                None => {
                    return Err(RuntimeError::InputName { input: (*name).into(), reason: "is missing".into() });
                }
            }
        }
        check_inputs(graph, &given)?;
        let outputs = execute(graph, &given)?;
        let value_names = graph.output_values().into_iter().map(|id| graph.node(id).name().to_string());
        Ok(value_names.zip(outputs).collect())
    }
}

/// Evaluates a validated graph on checked inputs.
pub(crate) fn execute<T: Borrow<Tensor>>(graph: &Graph, inputs: &[T]) -> Result<Vec<Tensor>> {
    let order = graph.topo_order()?;
    let input_pos: HashMap<NodeId, usize> = graph.inputs().iter().enumerate().map(|(i, &id)| (id, i)).collect();
    // How many nodes still need each value; a value is dropped when this hits 0.
    let mut pending: HashMap<NodeId, usize> = order.iter().map(|&id| (id, graph.users(id).len())).collect();
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for &id in &order {
        let node = graph.node(id);
        let name = node.name();
        let mut operand_ids = graph.operands(id);
        let args: Vec<&Tensor> = operand_ids
            .iter()
            .map(|o| {
                values.get(o).ok_or_else(|| RuntimeError::BadOperand {
                    node: name.into(),
                    op: node.op().class_name(),
                    reason: format!("operand `{}` has not been computed", graph.node(*o).name()),
                })
            })
            .collect::<Result<_>>()?;
        check_size_before_computing(graph, id, &args)?;
        let result = eval(graph, id, &args, input_pos.get(&id).map(|&i| inputs[i].borrow()))?;
        check_declared_shape(graph, id, &args, &result)?;
        // Release operands no later node needs (each operand once, even if used twice).
        operand_ids.sort_unstable();
        operand_ids.dedup();
        for o in operand_ids {
            if let Some(n) = pending.get_mut(&o) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    values.remove(&o);
                }
            }
        }
        values.insert(id, result);
    }
    graph
        .outputs()
        .iter()
        .map(|o| {
            values.remove(o).ok_or_else(|| RuntimeError::BadOperand {
                node: graph.node(*o).name().into(),
                op: "Output",
                reason: "the output was not computed".into(),
            })
        })
        .collect()
}

/// Evaluates one node on its operand values.
fn eval(graph: &Graph, id: NodeId, args: &[&Tensor], input: Option<&Tensor>) -> Result<Tensor> {
    let node = graph.node(id);
    let name = node.name();
    let arg = |i: usize| -> Result<&Tensor> {
        args.get(i).copied().ok_or_else(|| RuntimeError::BadOperand {
            node: name.into(),
            op: node.op().class_name(),
            reason: format!("operand {i} is missing"),
        })
    };
    // validate() guarantees the declared parameters exist; a lookup that fails
    // here is reported, not unwrapped.
    let param = |p: &'static str| -> Result<&Tensor> {
        node.param(p).ok_or_else(|| RuntimeError::MissingParam {
            node: name.into(),
            op: node.op().class_name(),
            param: p,
            expected: "as declared by the op".into(),
        })
    };
    Ok(match node.op() {
        Op::Input => {
            let x = input.ok_or_else(|| RuntimeError::InputName {
                input: name.into(),
                reason: "is not among the graph's inputs".into(),
            })?;
            into_contiguous(x.clone())
        }
        Op::Output => arg(0)?.clone(),
        Op::ConvTranspose2d { in_channels, params } => {
            let bias = if params.bias { Some(param("bias")?) } else { None };
            ops::conv_transpose2d(name, arg(0)?, param("weight")?, bias, *in_channels, params)?
        }
        Op::Conv2d { in_channels, params } => {
            let bias = if params.bias { Some(param("bias")?) } else { None };
            ops::conv2d(name, arg(0)?, param("weight")?, bias, *in_channels, params)?
        }
        Op::BatchNorm2d { num_features, params } => {
            let (weight, bias) =
                if params.affine { (Some(param("weight")?), Some(param("bias")?)) } else { (None, None) };
            ops::batch_norm2d(
                name,
                arg(0)?,
                *num_features,
                params,
                weight,
                bias,
                param("running_mean")?,
                param("running_var")?,
            )?
        }
        Op::Relu => ops::relu(arg(0)?),
        Op::LeakyRelu { negative_slope } => ops::leaky_relu(arg(0)?, *negative_slope),
        Op::Tanh => ops::tanh(arg(0)?),
        Op::Sigmoid => ops::sigmoid(arg(0)?),
        Op::Pointwise { f } => ops::pointwise(arg(0)?, *f),
        Op::PRelu { .. } => ops::prelu(name, arg(0)?, param("weight")?)?,
        Op::Linear { in_features, params } => {
            let bias = if params.bias { Some(param("bias")?) } else { None };
            ops::linear(name, arg(0)?, param("weight")?, bias, *in_features, params.bias)?
        }
        Op::BatchNorm1d { num_features, params } => {
            let (weight, bias) =
                if params.affine { (Some(param("weight")?), Some(param("bias")?)) } else { (None, None) };
            let t = ops::BatchNormParams {
                weight,
                bias,
                running_mean: param("running_mean")?,
                running_var: param("running_var")?,
            };
            ops::batch_norm1d(name, arg(0)?, *num_features, params, t)?
        }
        Op::InstanceNorm2d { params, .. } => {
            let opt = |present: bool, key| if present { param(key).map(Some) } else { Ok(None) };
            ops::instance_norm2d(
                name,
                arg(0)?,
                params,
                opt(params.affine, "weight")?,
                opt(params.affine, "bias")?,
                opt(params.track_running_stats, "running_mean")?,
                opt(params.track_running_stats, "running_var")?,
            )?
        }
        Op::GroupNorm { num_groups, eps, affine, .. } => {
            let (weight, bias) = if *affine { (Some(param("weight")?), Some(param("bias")?)) } else { (None, None) };
            ops::group_norm(name, arg(0)?, *num_groups, *eps, weight, bias)?
        }
        Op::Flatten { start_dim, end_dim } => ops::flatten(name, arg(0)?, *start_dim, *end_dim)?,
        Op::Unflatten { dim, sizes } => ops::unflatten(name, arg(0)?, *dim, sizes)?,
        Op::Reshape { shape } => ops::reshape_to(name, arg(0)?, shape)?,
        Op::MaxPool2d { params } => ops::max_pool2d(name, arg(0)?, params)?,
        Op::AvgPool2d { params, divisor } => ops::avg_pool2d(name, arg(0)?, params, *divisor)?,
        Op::AdaptiveAvgPool2d { output_size } => ops::adaptive_avg_pool2d(name, arg(0)?, *output_size)?,
        Op::Pad2d { padding, mode } => ops::pad2d(name, arg(0)?, *padding, *mode)?,
        Op::Upsample { params } => ops::upsample(name, arg(0)?, params)?,
        Op::PixelShuffle { factor, direction } => ops::pixel_shuffle(name, arg(0)?, *factor, *direction)?,
        // Eval mode: dropout is the identity.
        Op::Identity | Op::Dropout { .. } | Op::Dropout2d { .. } => arg(0)?.clone(),
        Op::Add => ops::add(name, arg(0)?, arg(1)?)?,
        Op::Sub => ops::arith(name, kiln_ir::ArithOp::Sub, arg(0)?, arg(1)?)?,
        Op::Mul => ops::arith(name, kiln_ir::ArithOp::Mul, arg(0)?, arg(1)?)?,
        Op::Scalar { op, other } => ops::scalar(arg(0)?, *op, *other),
        Op::Concat => ops::concat(name, args)?,
        Op::Cat { dim } => ops::cat(name, args, *dim)?,
        Op::Narrow { dim, start, length } => ops::narrow(name, arg(0)?, *dim, *start, *length)?,
        op @ (Op::LazyConvTranspose2d { .. }
        | Op::LazyConv2d { .. }
        | Op::LazyBatchNorm2d { .. }
        | Op::LazyLinear { .. }
        | Op::LazyBatchNorm1d { .. }
        | Op::LazyInstanceNorm2d { .. }) => {
            return Err(RuntimeError::Unresolved {
                node: name.into(),
                reason: format!("it is still lazy ({})", op.class_name()),
            })
        }
    })
}

/// For the ops whose output can be far larger than their input (a stride
/// or scale of millions), compares the output planes their arguments give
/// with the declared shape *before* computing, so a graph with a wrong small
/// declared shape is refused at once instead of after filling gigabytes.
fn check_size_before_computing(graph: &Graph, id: NodeId, args: &[&Tensor]) -> Result<()> {
    let node = graph.node(id);
    let (Some(declared), Some(x)) = (node.shape().as_known(), args.first()) else { return Ok(()) };
    let (s, r) = (x.shape(), x.ndim());
    if r < 2 || declared.len() < 2 {
        return Ok(());
    }
    let in_hw = [s[r - 2], s[r - 1]];
    let hw = match node.op() {
        Op::ConvTranspose2d { params, .. } => ops::conv_transpose2d_output_hw(node.name(), in_hw, params)?,
        Op::Conv2d { params, .. } => ops::conv2d_output_hw(node.name(), in_hw, params)?,
        Op::Upsample { params } => match params.output_hw(in_hw) {
            Some(hw) => hw,
            None => return Ok(()),
        },
        // Every other op's output is at most a small multiple of its inputs.
        _ => return Ok(()),
    };
    let d = declared.len();
    if [declared[d - 2], declared[d - 1]] != hw {
        return Err(RuntimeError::BadOperand {
            node: node.name().into(),
            op: node.op().class_name(),
            reason: format!(
                "gives output planes {}x{} for input {}, but the node's resolved shape is {}",
                hw[0],
                hw[1],
                fmt_shape(s),
                fmt_shape(&declared)
            ),
        });
    }
    Ok(())
}

/// The result of a node must have the shape shape inference declared for it.
fn check_declared_shape(graph: &Graph, id: NodeId, args: &[&Tensor], result: &Tensor) -> Result<()> {
    let node = graph.node(id);
    let Some(declared) = node.shape().as_known() else {
        // Only output markers may be left unranked (validate() checked the rest).
        return Ok(());
    };
    if declared == result.shape() {
        return Ok(());
    }
    let operands = args.iter().map(|a| fmt_shape(a.shape())).collect::<Vec<_>>().join(", ");
    Err(RuntimeError::BadOperand {
        node: node.name().into(),
        op: node.op().class_name(),
        reason: format!(
            "computes shape {} from operand shape(s) {}, but the node's resolved shape is {}",
            fmt_shape(result.shape()),
            if operands.is_empty() { "-".into() } else { operands },
            fmt_shape(&declared)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::tensor::random;
    use kiln_ir::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Shape};

    /// x[1,2,3,3] -> up (ConvT 2->3, k2 s2) -> bn -> relu -> out, resolved by hand.
    fn decoder() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::with_name("d");
        let x = g.add_input("x", vec![1, 2, 3, 3]).unwrap();
        let p = ConvTranspose2dParams::new(3, 2).stride(2);
        let up = g.add_node("up", Op::ConvTranspose2d { in_channels: 2, params: p }, &[x]).unwrap();
        g.set_shape(up, Shape::known(&[1, 3, 6, 6]));
        g.set_param(up, "weight", random(&[2, 3, 2, 2], 1)).unwrap();
        g.set_param(up, "bias", random(&[3], 2)).unwrap();
        let bn =
            g.add_node("bn", Op::BatchNorm2d { num_features: 3, params: BatchNorm2dParams::default() }, &[up]).unwrap();
        g.set_shape(bn, Shape::known(&[1, 3, 6, 6]));
        for (k, seed) in [("weight", 3), ("bias", 4), ("running_mean", 5)] {
            g.set_param(bn, k, random(&[3], seed)).unwrap();
        }
        g.set_param(bn, "running_var", random(&[3], 6).mapv(|v| v.abs() + 0.5)).unwrap();
        let act = g.add_node("act", Op::Relu, &[bn]).unwrap();
        g.set_shape(act, Shape::known(&[1, 3, 6, 6]));
        g.add_output(act).unwrap();
        (g, x, up)
    }

    #[test]
    fn runs_a_chain_like_the_ops_do() {
        let (g, _, _) = decoder();
        let x = random(&[1, 2, 3, 3], 7);
        let out = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
        assert_eq!(out.len(), 1);
        let up = g.node(g.find("up").unwrap());
        let bn = g.node(g.find("bn").unwrap());
        let Op::BatchNorm2d { params, .. } = bn.op() else { unreachable!() };
        let want = ops::conv_transpose2d(
            "up",
            &x,
            up.param("weight").unwrap(),
            up.param("bias"),
            2,
            &ConvTranspose2dParams::new(3, 2).stride(2),
        )
        .unwrap();
        let p = |k| bn.param(k).unwrap();
        let want = ops::batch_norm2d(
            "bn",
            &want,
            3,
            params,
            Some(p("weight")),
            Some(p("bias")),
            p("running_mean"),
            p("running_var"),
        )
        .unwrap();
        assert_eq!(out[0], ops::relu(&want));
        let named = Interpreter::run_named(&g, &[("x", &x)]).unwrap();
        assert_eq!(named, vec![("act".to_string(), out[0].clone())]);
    }

    #[test]
    fn skip_connections_and_multiple_outputs() {
        // unet-like: up(x) ++ skip -> conv -> relu -> + up -> outputs (res, up)
        let mut g = Graph::new();
        let x = g.add_input("x", vec![2, 4, 2, 2]).unwrap();
        let skip = g.add_input("skip", vec![2, 2, 4, 4]).unwrap();
        let up = g
            .add_node(
                "up1",
                Op::ConvTranspose2d { in_channels: 4, params: ConvTranspose2dParams::new(2, 2).stride(2) },
                &[x],
            )
            .unwrap();
        g.set_shape(up, Shape::known(&[2, 2, 4, 4]));
        g.set_param(up, "weight", random(&[4, 2, 2, 2], 1)).unwrap();
        g.set_param(up, "bias", random(&[2], 2)).unwrap();
        let cat = g.add_node("cat", Op::Concat, &[up, skip]).unwrap();
        g.set_shape(cat, Shape::known(&[2, 4, 4, 4]));
        let conv = g
            .add_node("conv", Op::Conv2d { in_channels: 4, params: Conv2dParams::new(2, 3).padding(1) }, &[cat])
            .unwrap();
        g.set_shape(conv, Shape::known(&[2, 2, 4, 4]));
        g.set_param(conv, "weight", random(&[2, 4, 3, 3], 3)).unwrap();
        g.set_param(conv, "bias", random(&[2], 4)).unwrap();
        let act = g.add_node("act", Op::LeakyRelu { negative_slope: 0.1 }, &[conv]).unwrap();
        g.set_shape(act, Shape::known(&[2, 2, 4, 4]));
        let res = g.add_node("res", Op::Add, &[act, up]).unwrap();
        g.set_shape(res, Shape::known(&[2, 2, 4, 4]));
        let sq = g.add_node("sq", Op::Add, &[res, res]).unwrap();
        g.set_shape(sq, Shape::known(&[2, 2, 4, 4]));
        let th = g.add_node("th", Op::Tanh, &[sq]).unwrap();
        g.set_shape(th, Shape::known(&[2, 2, 4, 4]));
        let sg = g.add_node("sg", Op::Sigmoid, &[up]).unwrap();
        g.set_shape(sg, Shape::known(&[2, 2, 4, 4]));
        g.add_output(th).unwrap();
        g.add_output(sg).unwrap();
        let (xv, sv) = (random(&[2, 4, 2, 2], 5), random(&[2, 2, 4, 4], 6));
        let out = Interpreter::run(&g, &[xv.clone(), sv.clone()]).unwrap();
        let n = |s: &str| g.node(g.find(s).unwrap());
        let u = ops::conv_transpose2d(
            "up1",
            &xv,
            n("up1").param("weight").unwrap(),
            n("up1").param("bias"),
            4,
            &ConvTranspose2dParams::new(2, 2).stride(2),
        )
        .unwrap();
        let c = ops::concat("cat", &[&u, &sv]).unwrap();
        let c = ops::conv2d(
            "conv",
            &c,
            n("conv").param("weight").unwrap(),
            n("conv").param("bias"),
            4,
            &Conv2dParams::new(2, 3).padding(1),
        )
        .unwrap();
        let r = ops::add("res", &ops::leaky_relu(&c, 0.1), &u).unwrap();
        assert_eq!(out[0], ops::tanh(&ops::add("sq", &r, &r).unwrap()));
        assert_eq!(out[1], ops::sigmoid(&u));
        // By name, in any order.
        let named = Interpreter::run_named(&g, &[("skip", &sv), ("x", &xv)]).unwrap();
        assert_eq!(named[0], ("th".to_string(), out[0].clone()));
        assert_eq!(named[1].0, "sg");
    }

    #[test]
    fn unbatched_graph() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![2, 3, 3]).unwrap();
        let up = g
            .add_node(
                "up",
                Op::ConvTranspose2d {
                    in_channels: 2,
                    params: ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_padding(1).bias(false),
                },
                &[x],
            )
            .unwrap();
        g.set_shape(up, Shape::known(&[2, 6, 6]));
        g.set_param(up, "weight", random(&[2, 2, 3, 3], 1)).unwrap();
        let cat = g.add_node("cat", Op::Concat, &[up, up]).unwrap();
        g.set_shape(cat, Shape::known(&[4, 6, 6]));
        g.add_output(cat).unwrap();
        let out = Interpreter::run(&g, &[random(&[2, 3, 3], 2)]).unwrap();
        assert_eq!(out[0].shape(), [4, 6, 6]);
        assert_eq!(out[0].slice(ndarray::s![..2, .., ..]), out[0].slice(ndarray::s![2.., .., ..]));
    }

    #[test]
    fn input_passthrough_and_non_contiguous_inputs() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![3, 2]).unwrap();
        let r = g.add_node("r", Op::Relu, &[x]).unwrap();
        g.set_shape(r, Shape::known(&[3, 2]));
        g.add_output(x).unwrap();
        g.add_output(r).unwrap();
        let xt = random(&[2, 3], 1).reversed_axes();
        let out = Interpreter::run(&g, std::slice::from_ref(&xt)).unwrap();
        assert_eq!(out[0], xt);
        assert!(out[0].is_standard_layout() && out[1].is_standard_layout());
        assert_eq!(out[1], xt.mapv(|v| v.max(0.0)));
    }

    #[test]
    fn refuses_unresolved_graphs() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2, 3, 3]).unwrap();
        let up = g.add_node("up1", Op::lazy_conv_transpose2d(ConvTranspose2dParams::new(3, 2)), &[x]).unwrap();
        g.add_output(up).unwrap();
        let e = Interpreter::run(&g, &[random(&[1, 2, 3, 3], 1)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up1` is not resolved: it is still lazy (LazyConvTranspose2d); run shape inference and ResolveLazy first"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidConfiguration);

        let (mut g, _, up) = decoder();
        g.set_shape(up, Shape::Ranked(vec![1.into(), kiln_ir::Dim::Unknown, 6.into(), 6.into()]));
        let e = Interpreter::validate(&g).unwrap_err();
        assert_eq!(e.to_string(), "node `up` is not resolved: its shape f32[1, ?, 6, 6] has unknown dimensions; run shape inference and ResolveLazy first");
        g.set_shape(up, Shape::Unranked);
        assert!(Interpreter::validate(&g).unwrap_err().to_string().contains("f32[?]"));
    }

    #[test]
    fn refuses_missing_and_misshapen_params() {
        let (mut g, _, up) = decoder();
        g.take_param(up, "bias");
        let e = Interpreter::validate(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: ConvTranspose2d needs parameter `up.bias` with shape [3], but it is missing"
        );
        g.set_param(up, "bias", random(&[3], 0)).unwrap();
        g.set_param(up, "weight", random(&[3, 2, 2, 2], 0)).unwrap();
        let e = Interpreter::validate(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: parameter `up.weight` has shape [3, 2, 2, 2], but ConvTranspose2d expects [2, 3, 2, 2]"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidConfiguration);
        let (mut g, _, _) = decoder();
        let bn = g.find("bn").unwrap();
        g.take_param(bn, "running_var");
        assert!(Interpreter::validate(&g).unwrap_err().to_string().contains("`bn.running_var` with shape [3]"));
    }

    #[test]
    fn refuses_wrong_inputs() {
        let (g, _, _) = decoder();
        let e = Interpreter::run(&g, &[]).unwrap_err();
        assert_eq!(e.to_string(), "graph takes 1 input(s) (x), got 0");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Interpreter::run(&g, &[random(&[1, 2, 3, 4], 1)]).unwrap_err();
        assert_eq!(e.to_string(), "input `x`: expected shape [1, 2, 3, 3], got [1, 2, 3, 4]");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let x = random(&[1, 2, 3, 3], 1);
        let e = Interpreter::run_named(&g, &[("y", &x)]).unwrap_err();
        assert_eq!(e.to_string(), "input `y`: is not an input of the graph (it has: x)");
        let e = Interpreter::run_named(&g, &[("x", &x), ("x", &x)]).unwrap_err();
        assert_eq!(e.to_string(), "input `x`: is given twice");
        let e = Interpreter::run_named(&g, &[]).unwrap_err();
        assert_eq!(e.to_string(), "input `x`: is missing");
    }

    #[test]
    fn refuses_shapes_that_disagree_with_the_ops() {
        // A shape pass that forgot output_padding: the declared shape is one row short.
        let (mut g, _, up) = decoder();
        g.set_shape(up, Shape::known(&[1, 3, 5, 6]));
        let e = Interpreter::run(&g, &[random(&[1, 2, 3, 3], 1)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: ConvTranspose2d: gives output planes 6x6 for input [1, 2, 3, 3], but the node's resolved shape is [1, 3, 5, 6]"
        );
        // A Concat whose operands disagree.
        let mut g = Graph::new();
        let a = g.add_input("a", vec![1, 1, 2, 2]).unwrap();
        let b = g.add_input("b", vec![1, 1, 3, 3]).unwrap();
        let c = g.add_node("cat", Op::Concat, &[a, b]).unwrap();
        g.set_shape(c, Shape::known(&[1, 2, 2, 2]));
        g.add_output(c).unwrap();
        let e = Interpreter::run(&g, &[random(&[1, 1, 2, 2], 1), random(&[1, 1, 3, 3], 1)]).unwrap_err();
        assert!(e.to_string().starts_with("node `cat`: Concat: operand 1 has shape [1, 1, 3, 3]"), "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidConfiguration);
    }

    #[test]
    fn refuses_structurally_invalid_graphs() {
        let mut g = Graph::new();
        g.add_input("x", vec![1]).unwrap();
        let e = Interpreter::run(&g, &[random(&[1], 1)]).unwrap_err();
        assert!(matches!(e, RuntimeError::Graph(_)), "{e}");
        assert_eq!(e.to_string(), "graph has no output");
    }

    #[test]
    fn conv_transpose_matches_a_direct_formula_on_random_configs() {
        // The scatter loop against an independently written gather form:
        // y[co, oh] = Σ_{ci in group, kh : (oh + p - kh·d) divisible by s} x[ci, (oh + p - kh·d)/s] w[ci, co%Cog, kh]
        let mut rng = crate::tensor::Rng::new(42);
        for _ in 0..40 {
            let pick = |rng: &mut crate::tensor::Rng, n: usize| (rng.next_u64() % n as u64) as usize;
            let groups = 1 + pick(&mut rng, 3);
            let (cin, cout) = (groups * (1 + pick(&mut rng, 2)), groups * (1 + pick(&mut rng, 3)));
            let k = [1 + pick(&mut rng, 4), 1 + pick(&mut rng, 4)];
            let s = [1 + pick(&mut rng, 3), 1 + pick(&mut rng, 3)];
            let d = [1 + pick(&mut rng, 3), 1 + pick(&mut rng, 3)];
            let pad = [pick(&mut rng, 3), pick(&mut rng, 3)];
            let op = [pick(&mut rng, s[0].max(d[0])), pick(&mut rng, s[1].max(d[1]))];
            let (ih, iw) = (1 + pick(&mut rng, 4), 1 + pick(&mut rng, 4));
            let p = ConvTranspose2dParams::new(cout, (k[0], k[1]))
                .stride((s[0], s[1]))
                .dilation((d[0], d[1]))
                .padding((pad[0], pad[1]))
                .output_padding((op[0], op[1]))
                .groups(groups);
            let Ok([oh, ow]) = ops::conv_transpose2d_output_hw("t", [ih, iw], &p) else { continue };
            let x = random(&[2, cin, ih, iw], rng.next_u64());
            let w = random(&[cin, cout / groups, k[0], k[1]], rng.next_u64());
            let b = random(&[cout], rng.next_u64());
            let y = ops::conv_transpose2d("t", &x, &w, Some(&b), cin, &p).unwrap();
            let (cig, cog) = (cin / groups, cout / groups);
            for n in 0..2 {
                for co in 0..cout {
                    for y0 in 0..oh {
                        for x0 in 0..ow {
                            let mut acc = f64::from(b[[co]]);
                            let g0 = co / cog;
                            for ci in g0 * cig..(g0 + 1) * cig {
                                for kh in 0..k[0] {
                                    for kw in 0..k[1] {
                                        let th = y0 as i64 + pad[0] as i64 - (kh * d[0]) as i64;
                                        let tw = x0 as i64 + pad[1] as i64 - (kw * d[1]) as i64;
                                        if th < 0 || tw < 0 || th % s[0] as i64 != 0 || tw % s[1] as i64 != 0 {
                                            continue;
                                        }
                                        let (i, j) = ((th / s[0] as i64) as usize, (tw / s[1] as i64) as usize);
                                        if i < ih && j < iw {
                                            acc += f64::from(x[[n, ci, i, j]]) * f64::from(w[[ci, co % cog, kh, kw]]);
                                        }
                                    }
                                }
                            }
                            assert!((y[[n, co, y0, x0]] - acc as f32).abs() <= 1e-6, "{p:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn never_panics_on_shape_garbage() {
        // Declared shapes and params that disagree in every way must give errors.
        let dims = [1usize, 2, 3];
        for a in dims {
            for b in dims {
                let mut g = Graph::new();
                let x = g.add_input("x", vec![1, 2, a, a]).unwrap();
                let up = g
                    .add_node(
                        "up",
                        Op::ConvTranspose2d {
                            in_channels: 2,
                            params: ConvTranspose2dParams::new(2, 2).stride(2).padding(1),
                        },
                        &[x],
                    )
                    .unwrap();
                g.set_shape(up, Shape::known(&[1, 2, b, b]));
                g.set_param(up, "weight", random(&[2, 2, 2, 2], 1)).unwrap();
                g.set_param(up, "bias", random(&[2], 1)).unwrap();
                g.add_output(up).unwrap();
                let r = Interpreter::run(&g, &[random(&[1, 2, a, a], 2)]);
                assert_eq!(r.is_ok(), 2 * a - 2 == b, "{a} {b}");
            }
        }
    }
}
