//! Recognizes the erf form of GELU that exporters emit below opset 20,
//! `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)` (or with the `0.5` applied
//! to `x` first), so it compiles to the native `GELU` kernel instead of
//! failing on `Erf`, which Kiln has no kernel for.
//!
//! The intermediate values are [`Partial`]s: known to be a stage of the
//! formula over `x`, not yet a tensor. Only the next stage may consume one;
//! `x·(1 + erf(x/√2))` can also be used as it is (it is `2·gelu(x)`).

use kiln_ir::{ArithOp, GeluApproximate, NodeId, Op, Pointwise};

use super::error::Result;
use super::{Builder, NodeRef, Value};

/// A stage of the GELU formula over the tensor `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partial {
    /// `erf(x / √2)`.
    Erf(NodeId),
    /// `1 + erf(x / √2)`.
    OnePlusErf(NodeId),
    /// `x · (1 + erf(x / √2))`.
    TwiceGelu(NodeId),
}

fn scalar_of(b: &Builder<'_>, t: NodeId, want: f32) -> Option<NodeId> {
    match b.graph.node(t).op() {
        Op::Scalar { op: ArithOp::Mul, other } if (other - want).abs() <= 1e-6 * want.abs() => {
            b.graph.operands(t).first().copied()
        }
        _ => None,
    }
}

fn is_const(v: &Value, want: f64) -> bool {
    matches!(v, Value::Const(c) if c.len() == 1 && (c.data[0] - want).abs() <= 1e-6 * want.abs())
}

fn gelu(b: &mut Builder<'_>, n: &NodeRef<'_>, x: NodeId) -> Result<NodeId> {
    let base = if n.node.name().is_empty() { "Gelu".to_string() } else { n.node.name().to_string() };
    b.add(&n.label, &base, Op::Pointwise { f: Pointwise::Gelu { approximate: GeluApproximate::None } }, &[x])
}

/// The next stage, if `n` over `inputs` continues the formula.
pub(super) fn step(b: &mut Builder<'_>, n: &NodeRef<'_>, inputs: &[Option<Value>]) -> Result<Option<Value>> {
    let (Some(Some(l)), r) = (inputs.first().cloned(), inputs.get(1).cloned().flatten()) else { return Ok(None) };
    Ok(match (n.op_type, l, r) {
        // `x / √2` was converted to `x · (1/√2)`.
        ("Erf", Value::Tensor(t), None) => {
            scalar_of(b, t, std::f32::consts::FRAC_1_SQRT_2).map(|x| Value::Partial(Partial::Erf(x)))
        }
        ("Add", Value::Partial(Partial::Erf(x)), Some(one)) | ("Add", one, Some(Value::Partial(Partial::Erf(x))))
            if is_const(&one, 1.0) =>
        {
            Some(Value::Partial(Partial::OnePlusErf(x)))
        }
        ("Mul", Value::Partial(Partial::OnePlusErf(x)), Some(Value::Tensor(t)))
        | ("Mul", Value::Tensor(t), Some(Value::Partial(Partial::OnePlusErf(x)))) => {
            if t == x {
                Some(Value::Partial(Partial::TwiceGelu(x)))
            } else if scalar_of(b, t, 0.5) == Some(x) {
                Some(Value::Tensor(gelu(b, n, x)?))
            } else {
                None
            }
        }
        ("Mul", Value::Partial(Partial::TwiceGelu(x)), Some(half))
        | ("Mul", half, Some(Value::Partial(Partial::TwiceGelu(x))))
            if is_const(&half, 0.5) =>
        {
            Some(Value::Tensor(gelu(b, n, x)?))
        }
        _ => None,
    })
}

/// A partial used by anything else: `2·gelu(x)` is a tensor; the earlier
/// stages need `erf`, which Kiln does not have alone.
pub(super) fn materialize(b: &mut Builder<'_>, n: &NodeRef<'_>, p: Partial) -> Result<NodeId> {
    match p {
        Partial::TwiceGelu(x) => {
            let g = gelu(b, n, x)?;
            b.add(&n.label, "gelu_x2", Op::Scalar { op: ArithOp::Mul, other: 2.0 }, &[g])
        }
        Partial::Erf(_) | Partial::OnePlusErf(_) => {
            Err(n.unsupported("uses `Erf` outside the GELU formula; Kiln has erf only inside GELU"))
        }
    }
}
