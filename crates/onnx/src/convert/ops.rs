//! Data operators: one ONNX node → Kiln IR nodes.
//!
//! Every arm names the ONNX operator it implements; an operator outside the
//! list is an [`ImportError::Unsupported`] naming the node, op type and
//! opset. Weights must be constants (initializers or folded values).

use kiln_ir::{
    ArithOp, AvgDivisor, BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, GeluApproximate, InstanceNormParams,
    LinearParams, NodeId, Op, PadMode, Pair2, Pointwise, Pool2dParams, ShuffleDirection, Sides, UpsampleClass,
    UpsampleMode, UpsampleParams, UpsampleSize,
};

use super::constant::{self, Const};
use super::error::{ImportError, Result};
use super::{Builder, NodeRef, Value};

/// The tensor input `i`.
fn tensor(n: &NodeRef<'_>, inputs: &[Option<Value>], i: usize) -> Result<NodeId> {
    match inputs.get(i) {
        Some(Some(Value::Tensor(id))) => Ok(*id),
        Some(Some(Value::Const(_))) => Err(n.unsupported(format!(
            "with constant input {i} (`{}`): Kiln computes this operator on tensors only",
            n.inputs[i]
        ))),
        Some(Some(Value::Partial(_))) => Err(n.invalid("a GELU stage was not materialized")),
        _ => Err(n.invalid(format!("input {i} is missing"))),
    }
}

/// The constant input `i`, if given.
fn opt_const<'v>(n: &NodeRef<'_>, inputs: &'v [Option<Value>], i: usize) -> Result<Option<&'v Const>> {
    match inputs.get(i) {
        Some(Some(Value::Const(c))) => Ok(Some(c)),
        Some(Some(Value::Tensor(_) | Value::Partial(_))) => Err(
            n.unsupported(format!("with input {i} (`{}`) computed at run time: Kiln needs it constant", n.inputs[i]))
        ),
        Some(None) | None => Ok(None),
    }
}

fn req_const<'v>(n: &NodeRef<'_>, inputs: &'v [Option<Value>], i: usize, what: &str) -> Result<&'v Const> {
    opt_const(n, inputs, i)?.ok_or_else(|| n.invalid(format!("input {i} ({what}) is missing")))
}

fn pair(n: &NodeRef<'_>, attr: &str, default: usize) -> Result<Pair2> {
    match n.attr_ints(attr)? {
        None => Ok(Pair2::square(default)),
        Some([h, w]) if *h >= 0 && *w >= 0 => Ok(Pair2 { h: *h as usize, w: *w as usize }),
        Some(v) => Err(n.unsupported(format!("with {attr} = {v:?}: Kiln has 2-D operators (two non-negative values)"))),
    }
}

/// `strides` or `dilations`: two positive values (default 1).
fn positive(n: &NodeRef<'_>, attr: &str) -> Result<Pair2> {
    let p = pair(n, attr, 1)?;
    if p.h == 0 || p.w == 0 {
        return Err(n.invalid(format!("{attr} {p} must be positive")));
    }
    Ok(p)
}

/// ONNX `pads` `[top, left, bottom, right]`.
fn pads4(n: &NodeRef<'_>) -> Result<[usize; 4]> {
    match n.attr_ints("pads")? {
        None => Ok([0; 4]),
        Some(v) if v.len() == 4 && v.iter().all(|&p| p >= 0) => {
            Ok([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
        }
        Some(v) => Err(n.unsupported(format!("with pads = {v:?}: Kiln has 2-D operators (four non-negative values)"))),
    }
}

/// `auto_pad` resolved to per-side pads for an input of `in_hw`
/// (`SAME_*`: output `ceil(in / stride)`, the odd pixel at the end for
/// `SAME_UPPER`, at the beginning for `SAME_LOWER`).
fn auto_pads(n: &NodeRef<'_>, in_hw: [usize; 2], k: Pair2, s: Pair2, d: Pair2) -> Result<Option<[usize; 4]>> {
    let mode = n.attr_string("auto_pad")?.unwrap_or("NOTSET");
    let same = |upper: bool| {
        let mut p = [0usize; 4];
        for (a, (i, (k, (s, d)))) in
            in_hw.iter().zip(k.to_array().iter().zip(s.to_array().iter().zip(d.to_array()))).enumerate()
        {
            let out = i.div_ceil(*s);
            let span = out
                .saturating_sub(1)
                .saturating_mul(*s)
                .saturating_add((k.saturating_sub(1)).saturating_mul(d))
                .saturating_add(1);
            let total = span.saturating_sub(*i);
            // `total` is a usize, so both halves are non-negative usizes.
            let (lo, hi) = split_total(total as i128, upper);
            p[a] = lo as usize;
            p[a + 2] = hi as usize;
        }
        p
    };
    match mode {
        "NOTSET" => Ok(None),
        "VALID" => Ok(Some([0; 4])),
        "SAME_UPPER" => Ok(Some(same(true))),
        "SAME_LOWER" => Ok(Some(same(false))),
        other => Err(n.invalid(format!("auto_pad `{other}` is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"))),
    }
}

fn hw(b: &Builder<'_>, n: &NodeRef<'_>, x: NodeId) -> Result<[usize; 2]> {
    match b.shape(x).as_slice() {
        [_, _, h, w] => Ok([*h, *w]),
        s => Err(n.unsupported(format!("on an input of shape {s:?}: Kiln has the 2-D form (rank 4)"))),
    }
}

fn symmetric(n: &NodeRef<'_>, p: [usize; 4]) -> Result<Pair2> {
    if p[0] == p[2] && p[1] == p[3] {
        Ok(Pair2 { h: p[0], w: p[1] })
    } else {
        Err(n.unsupported(format!("with asymmetric pads {p:?} (top, left, bottom, right)")))
    }
}

/// ONNX's split of a total padding into (start, end): the odd pixel at the
/// end for `SAME_UPPER`, at the start otherwise, with floor division as the
/// spec's (Python) reference, so a negative total (a ConvTranspose
/// `output_shape` beyond the full output) extends the end.
fn split_total(total: i128, upper: bool) -> (i128, i128) {
    let half = total.div_euclid(2);
    if upper {
        (half, total - half)
    } else {
        (total - half, half)
    }
}

/// Converts one data node; returns its output values in order.
pub(super) fn convert(b: &mut Builder<'_>, n: &NodeRef<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let label = n.label.clone();
    let base = if n.node.name().is_empty() { n.op_type.to_string() } else { n.node.name().to_string() };
    let unary = |b: &mut Builder<'_>, op: Op| -> Result<Vec<Value>> {
        let x = tensor(n, inputs, 0)?;
        Ok(vec![Value::Tensor(b.add(&label, &base, op, &[x])?)])
    };
    let pw = |f: Pointwise| Op::Pointwise { f };
    match n.op_type {
        "Identity" | "Dropout" => {
            if n.op_type == "Dropout" {
                if n.node.outputs().get(1).is_some_and(|m| !m.is_empty()) {
                    return Err(n.unsupported("with a mask output"));
                }
                let training = opt_const(n, inputs, 2)?.map(|c| c.scalar(&n.label, "training_mode")).transpose()?;
                // Training with ratio 0 keeps every value: the identity too.
                let ratio = opt_const(n, inputs, 1)?.map(|c| c.scalar(&n.label, "ratio")).transpose()?.unwrap_or(0.5);
                if training.is_some_and(|t| t != 0.0) && ratio != 0.0 {
                    return Err(n.unsupported("in training mode: Kiln runs eval mode, where Dropout is the identity"));
                }
            }
            Ok(vec![Value::Tensor(tensor(n, inputs, 0)?)])
        }
        "Relu" => unary(b, Op::Relu),
        "Tanh" => unary(b, Op::Tanh),
        "Sigmoid" => unary(b, Op::Sigmoid),
        "LeakyRelu" => unary(b, Op::LeakyRelu { negative_slope: n.attr_float("alpha")?.unwrap_or(0.01) }),
        "Elu" => unary(b, pw(Pointwise::Elu { alpha: n.attr_float("alpha")?.unwrap_or(1.0) })),
        "Selu" => {
            let (a, g) = (n.attr_float("alpha")?, n.attr_float("gamma")?);
            let close = |v: Option<f32>, k: f32| v.is_none_or(|v| (v - k).abs() <= 1e-6 * k);
            if close(a, kiln_ir::SELU_ALPHA) && close(g, kiln_ir::SELU_SCALE) {
                return unary(b, pw(Pointwise::Selu));
            }
            // Other constants: `gamma · elu(x, alpha)`, ONNX's definition.
            let x = tensor(n, inputs, 0)?;
            let alpha = a.unwrap_or(1.673_263_2);
            let e = b.add(&label, &base, pw(Pointwise::Elu { alpha }), &[x])?;
            let op = Op::Scalar { op: ArithOp::Mul, other: g.unwrap_or(1.050_701) };
            Ok(vec![Value::Tensor(b.add(&label, &base, op, &[e])?)])
        }
        "Softplus" => unary(b, pw(Pointwise::Softplus { beta: 1.0, threshold: 20.0 })),
        "HardSigmoid" => {
            let (a, bb) = (n.attr_float("alpha")?.unwrap_or(0.2), n.attr_float("beta")?.unwrap_or(0.5));
            if a == 1.0 / 6.0 && bb == 0.5 {
                return unary(b, pw(Pointwise::Hardsigmoid));
            }
            // ONNX's `max(0, min(1, alpha·x + beta))`, rounded as it is.
            let x = tensor(n, inputs, 0)?;
            let m = b.add(&label, &base, Op::Scalar { op: ArithOp::Mul, other: a }, &[x])?;
            let s = b.add(&label, &base, Op::Scalar { op: ArithOp::Add, other: bb }, &[m])?;
            let op = pw(Pointwise::Hardtanh { min_val: 0.0, max_val: 1.0 });
            Ok(vec![Value::Tensor(b.add(&label, &base, op, &[s])?)])
        }
        "HardSwish" => unary(b, pw(Pointwise::Hardswish)),
        "Mish" => unary(b, pw(Pointwise::Mish)),
        "Gelu" => {
            let approximate = match n.attr_string("approximate")?.unwrap_or("none") {
                "none" => GeluApproximate::None,
                "tanh" => GeluApproximate::Tanh,
                other => return Err(n.invalid(format!("approximate `{other}` is not none or tanh"))),
            };
            unary(b, pw(Pointwise::Gelu { approximate }))
        }
        "Clip" => {
            let (lo, hi) = if n.opset >= 11 {
                let get = |i| -> Result<Option<f32>> {
                    opt_const(n, inputs, i)?.map(|c| c.scalar(&n.label, "Clip bound").map(|v| v as f32)).transpose()
                };
                (get(1)?, get(2)?)
            } else {
                (n.attr_float("min")?, n.attr_float("max")?)
            };
            if let (Some(l), Some(h)) = (lo, hi) {
                if l > h {
                    return Err(n.unsupported(format!("with min {l} above max {h} (a constant output)")));
                }
            }
            let op = match (lo, hi) {
                (Some(0.0), None) => Op::Relu,
                (Some(l), Some(h)) if l == 0.0 && h == 6.0 => pw(Pointwise::Relu6),
                (None, None) => return Ok(vec![Value::Tensor(tensor(n, inputs, 0)?)]),
                // A missing or infinite bound is the largest finite one: the
                // same for every finite input (only ±inf inputs differ, and
                // clamp to ±f32::MAX), since Hardtanh's bounds are finite.
                (l, h) => pw(Pointwise::Hardtanh {
                    min_val: l.unwrap_or(f32::MIN).max(f32::MIN),
                    max_val: h.unwrap_or(f32::MAX).min(f32::MAX),
                }),
            };
            unary(b, op)
        }
        "PRelu" => {
            let x = tensor(n, inputs, 0)?;
            let slope = req_const(n, inputs, 1, "slope")?;
            let c = b.shape(x).get(1).copied().unwrap_or(1);
            let num = match slope.len() {
                1 => 1,
                k if k == c && slope.dims.iter().filter(|&&d| d != 1).count() <= 1 => c,
                _ => {
                    return Err(n.unsupported(format!(
                        "with slope of shape {:?}: Kiln has one slope or one per channel",
                        slope.dims
                    )))
                }
            };
            let id = b.add(&label, &base, Op::PRelu { num_parameters: num, init: 0.25 }, &[x])?;
            b.param(&label, id, "weight", &[num], slope.to_f32())?;
            Ok(vec![Value::Tensor(id)])
        }
        "Add" | "Sub" | "Mul" | "Div" => arith(b, n, inputs, &label, &base),
        "Concat" => {
            let xs: Vec<NodeId> = (0..inputs.len()).map(|i| tensor(n, inputs, i)).collect::<Result<_>>()?;
            let rank = b.shape(xs[0]).len();
            let axis = n.attr_int("axis")?.ok_or_else(|| n.invalid("needs an axis"))?;
            let a = constant::axis(&n.label, axis, rank, false)?;
            let op = if a == 1 && rank == 4 { Op::Concat } else { Op::Cat { dim: a as i64 } };
            Ok(vec![Value::Tensor(b.add(&label, &base, op, &xs)?)])
        }
        "Conv" => conv(b, n, inputs, &label, &base),
        "ConvTranspose" => conv_transpose(b, n, inputs, &label, &base),
        "BatchNormalization" => {
            let x = tensor(n, inputs, 0)?;
            if n.node.outputs().iter().skip(1).any(|o| !o.is_empty()) || n.attr_int("training_mode")?.unwrap_or(0) != 0
            {
                return Err(n.unsupported("in training mode: Kiln runs eval mode"));
            }
            let eps = n.attr_float("epsilon")?.unwrap_or(1e-5);
            let rank = b.shape(x).len();
            let c = b.shape(x).get(1).copied().unwrap_or(0);
            let params = BatchNorm2dParams::default().eps(eps);
            let op = match rank {
                4 => Op::BatchNorm2d { num_features: c, params },
                2 | 3 => Op::BatchNorm1d { num_features: c, params },
                r => return Err(n.unsupported(format!("on rank {r}"))),
            };
            let id = b.add(&label, &base, op, &[x])?;
            for (i, p) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                let v = req_const(n, inputs, i, p)?;
                b.param(&label, id, p, &[c], v.to_f32())?;
            }
            Ok(vec![Value::Tensor(id)])
        }
        "InstanceNormalization" => {
            let x = tensor(n, inputs, 0)?;
            let c = b.shape(x).get(1).copied().unwrap_or(0);
            let eps = n.attr_float("epsilon")?.unwrap_or(1e-5);
            if let Some(v) = group_norm_decomposition(b, n, inputs, x, eps)? {
                return Ok(vec![v]);
            }
            if b.shape(x).len() != 4 {
                return Err(n.unsupported(format!("on shape {:?}: Kiln has InstanceNorm2d (rank 4)", b.shape(x))));
            }
            let params = InstanceNormParams { eps, affine: true, ..InstanceNormParams::default() };
            let id = b.add(&label, &base, Op::InstanceNorm2d { num_features: c, params }, &[x])?;
            b.param(&label, id, "weight", &[c], req_const(n, inputs, 1, "scale")?.to_f32())?;
            b.param(&label, id, "bias", &[c], req_const(n, inputs, 2, "B")?.to_f32())?;
            Ok(vec![Value::Tensor(id)])
        }
        "GroupNormalization" => {
            let x = tensor(n, inputs, 0)?;
            let c = b.shape(x).get(1).copied().unwrap_or(0);
            let g = n.attr_int("num_groups")?.ok_or_else(|| n.invalid("needs num_groups"))?;
            let g = usize::try_from(g).map_err(|_| n.invalid(format!("num_groups {g}")))?;
            let eps = n.attr_float("epsilon")?.unwrap_or(1e-5);
            let (scale, bias) = (req_const(n, inputs, 1, "scale")?, req_const(n, inputs, 2, "bias")?);
            // Opset 18 gives one scale per group, 21 one per channel.
            let per_channel = |v: &Const| -> Result<Vec<f32>> {
                match v.len() {
                    k if k == c => Ok(v.to_f32()),
                    k if k == g && g > 0 && c % g == 0 => {
                        Ok(v.to_f32().iter().flat_map(|&s| std::iter::repeat_n(s, c / g)).collect())
                    }
                    k => Err(n.invalid(format!("scale/bias of {k} values for {c} channels in {g} groups"))),
                }
            };
            let op = Op::GroupNorm { num_groups: g, num_channels: c, eps, affine: true };
            let id = b.add(&label, &base, op, &[x])?;
            b.param(&label, id, "weight", &[c], per_channel(scale)?)?;
            b.param(&label, id, "bias", &[c], per_channel(bias)?)?;
            Ok(vec![Value::Tensor(id)])
        }
        "MaxPool" | "AveragePool" => {
            let x = tensor(n, inputs, 0)?;
            if n.op_type == "MaxPool" && n.node.outputs().get(1).is_some_and(|m| !m.is_empty()) {
                return Err(n.unsupported("with an Indices output (PyTorch's return_indices)"));
            }
            let k = pair(n, "kernel_shape", 1)?;
            if n.attr_ints("kernel_shape")?.is_none() {
                return Err(n.invalid("needs kernel_shape"));
            }
            let s = positive(n, "strides")?;
            let d = positive(n, "dilations")?;
            let in_hw = hw(b, n, x)?;
            let pads = match auto_pads(n, in_hw, k, s, d)? {
                Some(p) => p,
                None => pads4(n)?,
            };
            let mut params = Pool2dParams::new(k);
            params.stride = s;
            params.dilation = d;
            params.padding = symmetric(n, pads)?;
            params.ceil_mode = n.attr_int("ceil_mode")?.unwrap_or(0) != 0;
            let half = |a: usize| k.to_array()[a].saturating_sub(1).saturating_mul(d.to_array()[a]).div_ceil(2);
            if params.padding.h > half(0) || params.padding.w > half(1) {
                return Err(n.unsupported(format!(
                    "with pads {pads:?} over half the kernel {k}: Kiln's pooling keeps PyTorch's limit"
                )));
            }
            let op = if n.op_type == "MaxPool" {
                Op::MaxPool2d { params }
            } else {
                if d != Pair2::square(1) {
                    return Err(n.unsupported("with dilations (PyTorch's AvgPool2d has none)"));
                }
                let divisor = AvgDivisor {
                    count_include_pad: n.attr_int("count_include_pad")?.unwrap_or(0) != 0,
                    divisor_override: None,
                };
                Op::AvgPool2d { params, divisor }
            };
            unary(b, op)
        }
        "GlobalAveragePool" => unary(b, Op::AdaptiveAvgPool2d { output_size: [Some(1), Some(1)] }),
        "Gemm" => {
            let x = tensor(n, inputs, 0)?;
            if n.attr_int("transA")?.unwrap_or(0) != 0 {
                return Err(n.unsupported("with transA (the input transposed)"));
            }
            let w = req_const(n, inputs, 1, "B")?;
            let (alpha, beta) = (n.attr_float("alpha")?.unwrap_or(1.0), n.attr_float("beta")?.unwrap_or(1.0));
            let [r, cc] = w.dims[..] else { return Err(n.invalid(format!("B of shape {:?}", w.dims))) };
            let trans_b = n.attr_int("transB")?.unwrap_or(0) != 0;
            let (out, inf) = if trans_b { (r, cc) } else { (cc, r) };
            let mut weight = vec![0f32; out * inf];
            for o in 0..out {
                for i in 0..inf {
                    let v = if trans_b { w.data[o * inf + i] } else { w.data[i * out + o] };
                    weight[o * inf + i] = (v * f64::from(alpha)) as f32;
                }
            }
            let bias = opt_const(n, inputs, 2)?;
            let bias_v: Option<Vec<f32>> = match bias {
                None => None,
                Some(c) if c.len() == out => Some(c.data.iter().map(|&v| (v * f64::from(beta)) as f32).collect()),
                Some(c) if c.len() == 1 => Some(vec![(c.data[0] * f64::from(beta)) as f32; out]),
                Some(c) => return Err(n.unsupported(format!("with C of shape {:?}", c.dims))),
            };
            linear(b, n, &label, &base, x, out, inf, weight, bias_v)
        }
        "MatMul" => {
            let x = tensor(n, inputs, 0)?;
            let w = req_const(n, inputs, 1, "B")?;
            let [inf, out] = w.dims[..] else {
                return Err(n.unsupported(format!("with B of shape {:?}: Kiln has x·W for a 2-D constant W", w.dims)));
            };
            let mut weight = vec![0f32; out * inf];
            for o in 0..out {
                for i in 0..inf {
                    weight[o * inf + i] = w.data[i * out + o] as f32;
                }
            }
            linear(b, n, &label, &base, x, out, inf, weight, None)
        }
        "Flatten" => {
            let x = tensor(n, inputs, 0)?;
            let s = b.shape(x);
            let a = constant::axis(&n.label, n.attr_int("axis")?.unwrap_or(1), s.len(), true)?;
            let lead: usize = s[..a].iter().product();
            let rest: usize = s[a..].iter().product();
            reshape_to(b, &label, &base, x, &[lead, rest])
        }
        "Reshape" => {
            let x = tensor(n, inputs, 0)?;
            let shape = if n.opset >= 5 {
                req_const(n, inputs, 1, "shape")?.to_i64(&n.label, "shape")?
            } else {
                n.attr_ints("shape")?.ok_or_else(|| n.invalid("needs a shape"))?.to_vec()
            };
            let allow_zero = n.attr_int("allowzero")?.unwrap_or(0) != 0;
            let dims = constant::reshape_dims(&n.label, &b.shape(x), &shape, allow_zero)?;
            reshape_to(b, &label, &base, x, &dims)
        }
        "Squeeze" | "Unsqueeze" => {
            let x = tensor(n, inputs, 0)?;
            let axes = if n.opset >= 13 {
                opt_const(n, inputs, 1)?.map(|c| c.to_i64(&n.label, "axes")).transpose()?
            } else {
                n.attr_ints("axes")?.map(<[i64]>::to_vec)
            };
            let s = b.shape(x);
            let dims = if n.op_type == "Squeeze" {
                constant::squeeze_dims(&n.label, &s, axes.as_deref())?
            } else {
                constant::unsqueeze_dims(&n.label, &s, &axes.ok_or_else(|| n.invalid("needs axes"))?)?
            };
            reshape_to(b, &label, &base, x, &dims)
        }
        "Transpose" | "Expand" => {
            let x = tensor(n, inputs, 0)?;
            let s = b.shape(x);
            let identity = match n.op_type {
                "Transpose" => n.attr_ints("perm")?.is_some_and(|p| p.iter().enumerate().all(|(i, &a)| a == i as i64)),
                _ => {
                    let shape = req_const(n, inputs, 1, "shape")?.to_i64(&n.label, "shape")?;
                    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
                    constant::broadcast_dims(&n.label, &s, &dims)? == s
                }
            };
            if identity {
                Ok(vec![Value::Tensor(x)])
            } else {
                Err(n.unsupported("on a computed tensor (only on constants and as the identity)"))
            }
        }
        "Slice" => {
            let mut x = tensor(n, inputs, 0)?;
            let consts: Vec<Option<&Const>> = inputs
                .iter()
                .map(|v| match v {
                    Some(Value::Const(c)) => Some(c),
                    Some(Value::Tensor(_) | Value::Partial(_)) | None => None,
                })
                .collect();
            let spec = constant::slice_spec(n, &consts, &b.shape(x))?;
            for s in spec {
                let full = b.shape(x)[s.axis];
                if s.step != 1 {
                    return Err(n.unsupported(format!("with step {} (Kiln crops with step 1)", s.step)));
                }
                if s.len == full {
                    continue;
                }
                if s.len == 0 {
                    return Err(n.unsupported("producing an empty tensor (Kiln's tensors have no zero-size dims)"));
                }
                let op = Op::Narrow { dim: s.axis as i64, start: s.start as usize, length: s.len };
                x = b.add(&label, &base, op, &[x])?;
            }
            Ok(vec![Value::Tensor(x)])
        }
        "Pad" => pad(b, n, inputs, &label, &base),
        "Resize" | "Upsample" => resize(b, n, inputs, &label, &base),
        "DepthToSpace" | "SpaceToDepth" => {
            let x = tensor(n, inputs, 0)?;
            let r = n.attr_int("blocksize")?.ok_or_else(|| n.invalid("needs blocksize"))?;
            let r = usize::try_from(r).ok().filter(|&r| r > 0).ok_or_else(|| n.invalid(format!("blocksize {r}")))?;
            let c = b.shape(x).get(1).copied().unwrap_or(0);
            let shuffle = n.op_type == "DepthToSpace";
            // PixelShuffle is DepthToSpace's CRD order; DCR (the default) and
            // SpaceToDepth agree with it when one channel results / is read.
            let single = if shuffle { Some(c) == r.checked_mul(r) } else { c == 1 };
            let crd = n.attr_string("mode")?.unwrap_or("DCR") == "CRD";
            if !(single || shuffle && crd) {
                return Err(n.unsupported(format!(
                    "in {} order with {c} channels: Kiln's PixelShuffle/PixelUnshuffle order is CRD",
                    if shuffle { "DCR" } else { "SpaceToDepth's" }
                )));
            }
            let direction = if shuffle { ShuffleDirection::Shuffle } else { ShuffleDirection::Unshuffle };
            unary(b, Op::PixelShuffle { factor: r, direction })
        }
        other => Err(n.unsupported(format!("is not an operator Kiln imports (`{other}`)"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn linear(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    label: &str,
    base: &str,
    x: NodeId,
    out: usize,
    inf: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
) -> Result<Vec<Value>> {
    let last = b.shape(x).last().copied().unwrap_or(0);
    if last != inf {
        return Err(n.invalid(format!("input has {last} features, the weight {inf}")));
    }
    let params = LinearParams { out_features: out, bias: bias.is_some() };
    let id = b.add(label, base, Op::Linear { in_features: inf, params }, &[x])?;
    b.param(label, id, "weight", &[out, inf], weight)?;
    if let Some(v) = bias {
        b.param(label, id, "bias", &[out], v)?;
    }
    Ok(vec![Value::Tensor(id)])
}

/// PyTorch's `GroupNorm` as its exporters write it: `Reshape` to
/// `[N, G, L]`, `InstanceNormalization` with unit scale and zero bias,
/// `Reshape` back (then `Mul`/`Add` by the affine parameters, which
/// [`arith`] folds in). Becomes one `GroupNorm` on the 4-D tensor, followed
/// by the reshape the graph asked for, which the reshape back cancels.
fn group_norm_decomposition(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    inputs: &[Option<Value>],
    x: NodeId,
    eps: f32,
) -> Result<Option<Value>> {
    let [_, g, _] = b.shape(x)[..] else { return Ok(None) };
    if !matches!(b.graph.node(x).op(), Op::Reshape { .. }) {
        return Ok(None);
    }
    let Some(&src) = b.graph.operands(x).first() else { return Ok(None) };
    let [_, c, _, _] = b.shape(src)[..] else { return Ok(None) };
    let (scale, bias) = (req_const(n, inputs, 1, "scale")?, req_const(n, inputs, 2, "B")?);
    if g == 0 || c % g != 0 || scale.data.iter().any(|&v| v != 1.0) || bias.data.iter().any(|&v| v != 0.0) {
        return Ok(None);
    }
    let base = if n.node.name().is_empty() { "GroupNorm".to_string() } else { n.node.name().to_string() };
    let gn = b.add(&n.label, &base, Op::GroupNorm { num_groups: g, num_channels: c, eps, affine: false }, &[src])?;
    let dims = b.shape(x);
    let flat = reshape_to(b, &n.label, &base, gn, &dims)?;
    Ok(flat.into_iter().next())
}

fn reshape_to(b: &mut Builder<'_>, label: &str, base: &str, x: NodeId, dims: &[usize]) -> Result<Vec<Value>> {
    if b.shape(x) == dims {
        return Ok(vec![Value::Tensor(x)]);
    }
    // A reshape of a reshape back to the original shape is the original.
    if matches!(b.graph.node(x).op(), Op::Reshape { .. }) {
        if let Some(&src) = b.graph.operands(x).first() {
            if b.shape(src) == dims {
                return Ok(vec![Value::Tensor(src)]);
            }
        }
    }
    let shape = dims.iter().map(|&d| d as i64).collect();
    Ok(vec![Value::Tensor(b.add(label, base, Op::Reshape { shape }, &[x])?)])
}

/// `Add`/`Sub`/`Mul`/`Div`: tensor with tensor (broadcasting), tensor with a
/// scalar constant, or tensor with a per-channel constant (as a depthwise
/// 1×1 convolution, the one IR op that carries a per-channel affine).
/// `x · sigmoid(x)` is SiLU.
fn arith(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    inputs: &[Option<Value>],
    label: &str,
    base: &str,
) -> Result<Vec<Value>> {
    let (l, r) = match (inputs.first(), inputs.get(1)) {
        (Some(Some(l)), Some(Some(r))) => (l.clone(), r.clone()),
        _ => return Err(n.invalid("needs two inputs")),
    };
    match (&l, &r) {
        (Value::Tensor(a), Value::Tensor(c)) => {
            if n.op_type == "Mul" {
                for (x, s) in [(*a, *c), (*c, *a)] {
                    let sig = b.graph.node(s);
                    if matches!(sig.op(), Op::Sigmoid) && b.graph.operands(s) == [x] {
                        let id = b.add(label, base, Op::Pointwise { f: Pointwise::Silu }, &[x])?;
                        return Ok(vec![Value::Tensor(id)]);
                    }
                }
            }
            let op = match n.op_type {
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                _ => return Err(n.unsupported("of two computed tensors (Kiln divides by constants)")),
            };
            Ok(vec![Value::Tensor(b.add(label, base, op, &[*a, *c])?)])
        }
        (Value::Tensor(x), Value::Const(k)) | (Value::Const(k), Value::Tensor(x)) => {
            let const_left = matches!(l, Value::Const(_));
            let x = *x;
            let xs = b.shape(x);
            if constant::broadcast_dims(label, &xs, &k.dims)? != xs {
                return Err(n.unsupported(format!("with a constant of shape {:?} that enlarges {xs:?}", k.dims)));
            }
            if k.len() == 1 {
                let v = k.data[0];
                let (op, other, negate) = match (n.op_type, const_left) {
                    ("Add", _) => (ArithOp::Add, v, false),
                    ("Mul", _) => (ArithOp::Mul, v, false),
                    ("Sub", false) => (ArithOp::Sub, v, false),
                    // c − x = (−x) + c.
                    ("Sub", true) => (ArithOp::Add, v, true),
                    // x / c = x · (1/c): within an ulp of the division.
                    ("Div", false) => (ArithOp::Mul, 1.0 / v, false),
                    _ => return Err(n.unsupported("of a constant by a tensor")),
                };
                let mut x = x;
                if negate {
                    x = b.add(label, base, Op::Scalar { op: ArithOp::Mul, other: -1.0 }, &[x])?;
                }
                let id = b.add(label, base, Op::Scalar { op, other: other as f32 }, &[x])?;
                return Ok(vec![Value::Tensor(id)]);
            }
            // A per-channel constant on [N, C, H, W]: `[C, 1, 1]` or `[1, C, 1, 1]`.
            let c = xs.get(1).copied().unwrap_or(0);
            let per_channel = xs.len() == 4 && k.len() == c && k.dims.len() >= 3 && k.dims[k.dims.len() - 3] == c;
            if !per_channel {
                return Err(n.unsupported(format!("with a constant of shape {:?} on {xs:?}", k.dims)));
            }
            let kv = k.to_f32();
            let sole_use = |i: usize| n.inputs.get(i).and_then(|name| b.uses.get(name)) == Some(&1);
            if let Some(v) = fold_into_group_norm(b, n, x, &kv, sole_use(usize::from(!const_left)), const_left)? {
                return Ok(vec![v]);
            }
            let (w, bias): (Vec<f32>, Option<Vec<f32>>) = match (n.op_type, const_left) {
                ("Mul", _) => (kv, None),
                ("Div", false) => (kv.iter().map(|v| 1.0 / v).collect(), None),
                ("Add", _) => (vec![1.0; c], Some(kv)),
                ("Sub", false) => (vec![1.0; c], Some(kv.iter().map(|v| -v).collect())),
                ("Sub", true) => (vec![-1.0; c], Some(kv)),
                _ => return Err(n.unsupported("of a constant by a tensor")),
            };
            let params = Conv2dParams::new(c, 1).groups(c).bias(bias.is_some());
            let id = b.add(label, base, Op::Conv2d { in_channels: c, params }, &[x])?;
            b.param(label, id, "weight", &[c, 1, 1, 1], w)?;
            if let Some(v) = bias {
                b.param(label, id, "bias", &[c], v)?;
            }
            Ok(vec![Value::Tensor(id)])
        }
        (Value::Const(_), Value::Const(_)) => Err(n.invalid("constant operands should have been folded")),
        (Value::Partial(_), _) | (_, Value::Partial(_)) => Err(n.invalid("a GELU stage was not materialized")),
    }
}

/// `GroupNorm(x) · γ` and then `+ β` (per channel, the GroupNorm's value
/// used by nothing else) become the GroupNorm's affine parameters: the
/// native op with `affine=True`, as PyTorch wrote it.
fn fold_into_group_norm(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    x: NodeId,
    k: &[f32],
    sole_use: bool,
    const_left: bool,
) -> Result<Option<Value>> {
    let Op::GroupNorm { num_groups, num_channels, eps, affine } = *b.graph.node(x).op() else { return Ok(None) };
    if !sole_use || (const_left && n.op_type != "Mul" && n.op_type != "Add") {
        return Ok(None);
    }
    let c = num_channels;
    match (n.op_type, affine) {
        ("Mul", false) => {
            let op = Op::GroupNorm { num_groups, num_channels, eps, affine: true };
            b.graph.set_op(x, op).map_err(|source| ImportError::Ir { node: n.label.clone(), source })?;
            b.param(&n.label, x, "weight", &[c], k.to_vec())?;
            b.param(&n.label, x, "bias", &[c], vec![0.0; c])?;
            Ok(Some(Value::Tensor(x)))
        }
        ("Add", true) => {
            let zero_bias = b.graph.node(x).param("bias").is_some_and(|v| v.iter().all(|&e| e == 0.0));
            if !zero_bias {
                return Ok(None);
            }
            b.param(&n.label, x, "bias", &[c], k.to_vec())?;
            Ok(Some(Value::Tensor(x)))
        }
        _ => Ok(None),
    }
}

/// The weight `W` and its per-layer numbers.
fn weight<'v>(n: &NodeRef<'_>, inputs: &'v [Option<Value>]) -> Result<(&'v Const, [usize; 4])> {
    let w = req_const(n, inputs, 1, "W")?;
    match w.dims[..] {
        [a, bb, kh, kw] => Ok((w, [a, bb, kh, kw])),
        _ => Err(n.unsupported(format!("with W of shape {:?}: Kiln has the 2-D form", w.dims))),
    }
}

fn kernel(n: &NodeRef<'_>, wk: [usize; 2]) -> Result<Pair2> {
    let k = pair(n, "kernel_shape", 0)?;
    if n.attr_ints("kernel_shape")?.is_some() && k.to_array() != wk {
        return Err(n.invalid(format!("kernel_shape {k} differs from W's {}x{}", wk[0], wk[1])));
    }
    Ok(Pair2::from(wk))
}

fn group(n: &NodeRef<'_>) -> Result<usize> {
    let g = n.attr_int("group")?.unwrap_or(1);
    usize::try_from(g).ok().filter(|&g| g > 0).ok_or_else(|| n.invalid(format!("group {g} must be positive")))
}

fn conv(b: &mut Builder<'_>, n: &NodeRef<'_>, inputs: &[Option<Value>], label: &str, base: &str) -> Result<Vec<Value>> {
    let x = tensor(n, inputs, 0)?;
    let (w, [m, cg, kh, kw]) = weight(n, inputs)?;
    let k = kernel(n, [kh, kw])?;
    let (s, d, g) = (positive(n, "strides")?, positive(n, "dilations")?, group(n)?);
    let in_hw = hw(b, n, x)?;
    let pads = match auto_pads(n, in_hw, k, s, d)? {
        Some(p) => p,
        None => pads4(n)?,
    };
    let c = cg * g;
    let bias = opt_const(n, inputs, 2)?;
    let params = Conv2dParams::new(m, k)
        .stride(s)
        .dilation(d)
        .groups(g)
        .pads([pads[0], pads[1]], [pads[2], pads[3]])
        .bias(bias.is_some());
    let id = b.add(label, base, Op::Conv2d { in_channels: c, params }, &[x])?;
    b.param(label, id, "weight", &[m, cg, kh, kw], w.to_f32())?;
    if let Some(bv) = bias {
        b.param(label, id, "bias", &[m], bv.to_f32())?;
    }
    Ok(vec![Value::Tensor(id)])
}

/// `ConvTranspose` as the ONNX spec defines it: `output_shape` (which wins
/// over `pads`) or `auto_pad` give the total padding, split as the spec
/// says, and the per-side result becomes the `ConvTranspose2d`'s per-side
/// padding (printed in PyTorch's form where one exists).
fn conv_transpose(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    inputs: &[Option<Value>],
    label: &str,
    base: &str,
) -> Result<Vec<Value>> {
    let x = tensor(n, inputs, 0)?;
    let (w, [c, mg, kh, kw]) = weight(n, inputs)?;
    let k = kernel(n, [kh, kw])?;
    let (s, d, g) = (positive(n, "strides")?, positive(n, "dilations")?, group(n)?);
    let op_attr = pair(n, "output_padding", 0)?;
    let in_hw = hw(b, n, x)?;
    // i128: attribute values up to i64::MAX cannot overflow here, and the
    // pads derived from them are range-checked below.
    let full = |a: usize| -> i128 {
        let v = |p: Pair2| p.to_array()[a] as i128;
        v(s) * (in_hw[a] as i128 - 1) + v(op_attr) + (v(k) - 1) * v(d) + 1
    };
    let mode = n.attr_string("auto_pad")?.unwrap_or("NOTSET");
    let split = |total: [i128; 2], upper: bool| -> [i128; 4] {
        let (h, w) = (split_total(total[0], upper), split_total(total[1], upper));
        [h.0, w.0, h.1, w.1]
    };
    let pads: [i128; 4] = if let Some(os) = n.attr_ints("output_shape")? {
        let os = &os[os.len().saturating_sub(2)..];
        let [oh, ow] = os else { return Err(n.invalid(format!("output_shape {os:?}"))) };
        let total = [full(0) - i128::from(*oh), full(1) - i128::from(*ow)];
        split(total, mode == "SAME_UPPER")
    } else {
        match mode {
            "NOTSET" => pads4(n)?.map(|p| p as i128),
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let total = [full(0) - in_hw[0] as i128 * s.h as i128, full(1) - in_hw[1] as i128 * s.w as i128];
                split(total, mode == "SAME_UPPER")
            }
            other => {
                return Err(n.invalid(format!("auto_pad `{other}` is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")))
            }
        }
    };
    // Per-side crops; a negative end (an `output_shape` beyond the full
    // output) extends the end instead, which is what `output_padding` does.
    let mut begin = [0usize; 2];
    let mut end = [0usize; 2];
    let mut out_pad = op_attr.to_array();
    let too_large = || n.invalid(format!("pads {pads:?} are too large"));
    for a in 0..2 {
        let (lo, hi) = (pads[a], pads[a + 2]);
        if lo < 0 {
            return Err(
                n.unsupported(format!("with pads {pads:?}: a negative start padding (an output shifted right)"))
            );
        }
        begin[a] = usize::try_from(lo).map_err(|_| too_large())?;
        if hi < 0 {
            let extra = usize::try_from(-hi).map_err(|_| too_large())?;
            out_pad[a] = out_pad[a].checked_add(extra).ok_or_else(too_large)?;
        } else {
            end[a] = usize::try_from(hi).map_err(|_| too_large())?;
        }
    }
    let bias = opt_const(n, inputs, 2)?;
    let params = ConvTranspose2dParams::new(mg * g, k)
        .stride(s)
        .dilation(d)
        .groups(g)
        .pads(begin, end)
        .output_padding(out_pad)
        .bias(bias.is_some());
    let id = b.add(label, base, Op::ConvTranspose2d { in_channels: c, params }, &[x])?;
    b.param(label, id, "weight", &[c, mg, kh, kw], w.to_f32())?;
    if let Some(bv) = bias {
        b.param(label, id, "bias", &[mg * g], bv.to_f32())?;
    }
    Ok(vec![Value::Tensor(id)])
}

/// `Pad` on the two spatial axes (negative pads crop, as `F.pad`).
fn pad(b: &mut Builder<'_>, n: &NodeRef<'_>, inputs: &[Option<Value>], label: &str, base: &str) -> Result<Vec<Value>> {
    let x = tensor(n, inputs, 0)?;
    let rank = b.shape(x).len();
    let (pads, value) = if n.opset >= 11 {
        let p = req_const(n, inputs, 1, "pads")?.to_i64(&n.label, "pads")?;
        let v = opt_const(n, inputs, 2)?.map(|c| c.scalar(&n.label, "constant_value")).transpose()?.unwrap_or(0.0);
        if opt_const(n, inputs, 3)?.is_some() {
            // `axes` (opset 18): expand to all axes.
            let axes = req_const(n, inputs, 3, "axes")?.to_i64(&n.label, "axes")?;
            if p.len() != 2 * axes.len() {
                return Err(n.invalid(format!("{} pads for {} axes", p.len(), axes.len())));
            }
            let mut full = vec![0i64; 2 * rank];
            for (i, &a) in axes.iter().enumerate() {
                let a = constant::axis(&n.label, a, rank, false)?;
                full[a] = p[i];
                full[a + rank] = p[i + axes.len()];
            }
            (full, v)
        } else {
            (p, v)
        }
    } else {
        let p = n.attr_ints("pads")?.ok_or_else(|| n.invalid("needs pads"))?.to_vec();
        (p, f64::from(n.attr_float("value")?.unwrap_or(0.0)))
    };
    if pads.len() != 2 * rank || rank != 4 {
        return Err(n.unsupported(format!("with pads {pads:?} on rank {rank}: Kiln pads 4-D tensors")));
    }
    if pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 {
        return Err(n.unsupported(format!("with pads {pads:?} on the batch or channel axis")));
    }
    let mode = match n.attr_string("mode")?.unwrap_or("constant") {
        "constant" if value == 0.0 => PadMode::Zero,
        "constant" => PadMode::Constant { value: value as f32 },
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Replicate,
        other => return Err(n.unsupported(format!("in mode `{other}`"))),
    };
    let (top, left, bottom, right) = (pads[2], pads[3], pads[6], pads[7]);
    let mut x = x;
    // Crops first (negative pads), then the padding.
    for (axis, lo, hi) in [(2usize, top, bottom), (3, left, right)] {
        if lo < 0 || hi < 0 {
            let size = b.shape(x)[axis] as i64;
            let start = (-lo).max(0);
            let len = size - start - (-hi).max(0);
            if len <= 0 {
                return Err(n.invalid(format!("pads {pads:?} crop axis {axis} of size {size} to nothing")));
            }
            x =
                b.add(label, base, Op::Narrow { dim: axis as i64, start: start as usize, length: len as usize }, &[x])?;
        }
    }
    let sides = Sides {
        left: left.max(0) as usize,
        right: right.max(0) as usize,
        top: top.max(0) as usize,
        bottom: bottom.max(0) as usize,
    };
    if sides != Sides::all(0) {
        x = b.add(label, base, Op::Pad2d { padding: sides, mode }, &[x])?;
    }
    Ok(vec![Value::Tensor(x)])
}

/// `Resize` (opset 10+) and `Upsample` (opset 7–9) in the forms PyTorch's
/// `Upsample` exports: nearest with asymmetric coordinates and floor, or
/// linear with half-pixel (`pytorch_half_pixel`) or `align_corners`.
fn resize(
    b: &mut Builder<'_>,
    n: &NodeRef<'_>,
    inputs: &[Option<Value>],
    label: &str,
    base: &str,
) -> Result<Vec<Value>> {
    let x = tensor(n, inputs, 0)?;
    let xs = b.shape(x);
    if xs.len() != 4 {
        return Err(n.unsupported(format!("on shape {xs:?}: Kiln resizes 4-D tensors")));
    }
    let (scales, sizes) = if n.op_type == "Upsample" {
        let s = if n.opset >= 9 {
            req_const(n, inputs, 1, "scales")?.data.clone()
        } else {
            n.node
                .attr_floats("scales")?
                .ok_or_else(|| n.invalid("needs scales"))?
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        };
        (Some(s), None)
    } else {
        let (si, zi) = if n.opset >= 11 { (2, 3) } else { (1, usize::MAX) };
        let scales = opt_const(n, inputs, si)?.filter(|c| c.len() > 0).map(|c| c.data.clone());
        let sizes =
            opt_const(n, inputs, zi)?.filter(|c| c.len() > 0).map(|c| c.to_i64(&n.label, "sizes")).transpose()?;
        (scales, sizes)
    };
    // `axes` (opset 18): scales or sizes for those axes only; the rest keep
    // their size.
    let (scales, sizes) = match n.attr_ints("axes")? {
        None => (scales, sizes),
        Some(axes) => {
            let ax: Vec<usize> = axes.iter().map(|&a| constant::axis(&n.label, a, 4, false)).collect::<Result<_>>()?;
            let spread = |given: &[f64], keep: &dyn Fn(usize) -> f64| -> Result<Vec<f64>> {
                if given.len() != ax.len() {
                    return Err(n.invalid(format!("{} values for axes {axes:?}", given.len())));
                }
                let mut full: Vec<f64> = (0..4).map(keep).collect();
                for (k, &a) in ax.iter().enumerate() {
                    full[a] = given[k];
                }
                Ok(full)
            };
            let scales = scales.map(|s| spread(&s, &|_| 1.0)).transpose()?;
            let sizes = sizes
                .map(|z| {
                    let z: Vec<f64> = z.iter().map(|&v| v as f64).collect();
                    spread(&z, &|a| xs[a] as f64).map(|v| v.iter().map(|&d| d as i64).collect::<Vec<i64>>())
                })
                .transpose()?;
            (scales, sizes)
        }
    };
    if n.attr_string("keep_aspect_ratio_policy")?.is_some_and(|p| p != "stretch") {
        return Err(n.unsupported("with a keep_aspect_ratio_policy other than stretch"));
    }
    if n.attr_int("antialias")?.unwrap_or(0) != 0 {
        return Err(n.unsupported("with antialias"));
    }
    let mode = match n.attr_string("mode")?.unwrap_or("nearest") {
        "nearest" => UpsampleMode::Nearest,
        "linear" | "bilinear" => UpsampleMode::Bilinear,
        other => return Err(n.unsupported(format!("in mode `{other}` (Kiln has nearest and linear)"))),
    };
    let ctm = n.attr_string("coordinate_transformation_mode")?.unwrap_or(if n.opset >= 11 {
        "half_pixel"
    } else {
        "asymmetric"
    });
    let align_corners = match (mode, ctm) {
        (UpsampleMode::Nearest, "asymmetric") => {
            let nm = n.attr_string("nearest_mode")?.unwrap_or("round_prefer_floor");
            if n.op_type == "Resize" && n.opset >= 11 && nm != "floor" {
                return Err(n.unsupported(format!("with nearest_mode `{nm}` (PyTorch's nearest is floor)")));
            }
            false
        }
        (UpsampleMode::Bilinear, "pytorch_half_pixel" | "half_pixel") => false,
        (UpsampleMode::Bilinear, "align_corners") => true,
        (UpsampleMode::Bilinear, "asymmetric") if n.op_type == "Upsample" || n.opset < 11 => {
            return Err(n.unsupported("in linear mode with asymmetric coordinates (not PyTorch's bilinear)"))
        }
        (m, c) => {
            return Err(n.unsupported(format!("in mode {} with coordinate_transformation_mode `{c}`", m.as_str())))
        }
    };
    let size = match (scales, sizes) {
        (_, Some(z)) => {
            let [zn, zc, zh, zw] = z[..] else { return Err(n.invalid(format!("sizes {z:?}"))) };
            if zn as usize != xs[0] || zc as usize != xs[1] || zh <= 0 || zw <= 0 {
                return Err(n.unsupported(format!("with sizes {z:?} on {xs:?}: Kiln resizes the spatial axes")));
            }
            UpsampleSize::Size { size: Pair2 { h: zh as usize, w: zw as usize } }
        }
        (Some(s), None) => {
            let [sn, sc, sh, sw] = s[..] else { return Err(n.invalid(format!("scales {s:?}"))) };
            if sn != 1.0 || sc != 1.0 {
                return Err(n.unsupported(format!("with scales {s:?}: Kiln resizes the spatial axes")));
            }
            // ONNX computes in f32: the factor is the f32 value.
            let (sh, sw) = (f64::from(sh as f32), f64::from(sw as f32));
            if align_corners {
                // ONNX maps corners with the unrounded `in · scale`, PyTorch
                // with the output size: the same only when it is whole.
                let (oh, ow) = (xs[2] as f64 * sh, xs[3] as f64 * sw);
                if oh.fract() != 0.0 || ow.fract() != 0.0 || oh < 1.0 || ow < 1.0 {
                    return Err(n.unsupported(format!(
                        "with align_corners and scales {s:?} that do not give whole sizes (ONNX's corner mapping then differs from PyTorch's)"
                    )));
                }
                UpsampleSize::Size { size: Pair2 { h: oh as usize, w: ow as usize } }
            } else {
                UpsampleSize::Scale { h: sh, w: sw }
            }
        }
        (None, None) => return Err(n.invalid("needs scales or sizes")),
    };
    let params = UpsampleParams { size, mode, align_corners, class: UpsampleClass::Upsample };
    if mode == UpsampleMode::Bilinear
        && !align_corners
        && params.output_hw([xs[2], xs[3]]).is_some_and(|o| o.contains(&1))
    {
        return Err(n.unsupported("to an output size of 1 with half-pixel coordinates (PyTorch and ONNX differ there)"));
    }
    let id = b.add(label, base, Op::Upsample { params }, &[x])?;
    Ok(vec![Value::Tensor(id)])
}
