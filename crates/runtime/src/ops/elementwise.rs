//! Shape-preserving ops: the activations (`ReLU`, `LeakyReLU`, `Tanh`,
//! `Sigmoid`), elementwise `Add` of equal shapes (no broadcasting), and
//! `Concat` along the channel dimension.
//!
//! Activations are evaluated in f64 and rounded once, and propagate NaN as
//! PyTorch does.

use kiln_ir::ArithOp;
use ndarray::Axis;

use super::bad;
use crate::error::{fmt_shape, Result};
use crate::tensor::{into_contiguous, Tensor};

/// `nn.ReLU`: `max(x, 0)`, NaN stays NaN (PyTorch's `clamp_min` propagates it).
pub fn relu(x: &Tensor) -> Tensor {
    map(x, |v| if v.is_nan() || v > 0.0 { v } else { 0.0 })
}

/// `nn.LeakyReLU(negative_slope)`: `x if x > 0 else x * negative_slope`.
pub fn leaky_relu(x: &Tensor, negative_slope: f32) -> Tensor {
    let slope = f64::from(negative_slope);
    map(x, |v| if v > 0.0 { v } else { (f64::from(v) * slope) as f32 })
}

/// `nn.Tanh`.
pub fn tanh(x: &Tensor) -> Tensor {
    map(x, |v| f64::from(v).tanh() as f32)
}

/// `nn.Sigmoid`: `1 / (1 + exp(-x))`.
pub fn sigmoid(x: &Tensor) -> Tensor {
    map(x, |v| (1.0 / (1.0 + (-f64::from(v)).exp())) as f32)
}

/// `a + b` with PyTorch broadcasting.
pub fn add(node: &str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(node, ArithOp::Add, a, b)
}

/// `a op b` with PyTorch broadcasting (shapes aligned from the last dim,
/// each pair equal or one of them 1), computed in f32 as PyTorch does (one
/// correctly rounded operation, so f64 would give the same result).
pub fn arith(node: &str, op: ArithOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    let r = sa.len().max(sb.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    let mut shape = Vec::with_capacity(r);
    for i in 0..r {
        shape.push(match (at(sa, i), at(sb, i)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(bad(
                    node,
                    op.class_name(),
                    format!("operands of shapes {} and {} do not broadcast", fmt_shape(sa), fmt_shape(sb)),
                ))
            }
        });
    }
    let (Some(va), Some(vb)) = (a.broadcast(shape.clone()), b.broadcast(shape.clone())) else {
        return Err(bad(node, op.class_name(), "broadcast failed".into()));
    };
    let mut out = Tensor::zeros(shape);
    ndarray::Zip::from(&mut out).and(&va).and(&vb).for_each(|o, &x, &y| *o = op.apply(x, y));
    Ok(out)
}

/// `x op other` for a constant.
pub fn scalar(x: &Tensor, op: ArithOp, other: f32) -> Tensor {
    map(x, |v| op.apply(v, other))
}

/// `torch.cat(xs, dim=channel)`: dim 1 for batched `[N, C, H, W]` operands,
/// dim 0 for unbatched `[C, H, W]` ones. All operands must have one rank
/// (3 or 4) and agree on every other dimension.
pub fn concat(node: &str, xs: &[&Tensor]) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        return Err(bad(node, "Concat", "needs at least one operand".into()));
    };
    let rank = first.ndim();
    if rank != 3 && rank != 4 {
        return Err(bad(
            node,
            "Concat",
            format!("expects 3-D (unbatched) or 4-D (batched) operands, got shape {}", fmt_shape(first.shape())),
        ));
    }
    let axis = rank - 3; // the channel axis
    let strip =
        |s: &[usize]| -> Vec<usize> { s.iter().enumerate().filter(|&(i, _)| i != axis).map(|(_, &d)| d).collect() };
    for (i, x) in xs.iter().enumerate() {
        if x.ndim() != rank || strip(x.shape()) != strip(first.shape()) {
            return Err(bad(
                node,
                "Concat",
                format!(
                    "operand {i} has shape {}, which does not match operand 0's {} outside the channel dimension {axis}",
                    fmt_shape(x.shape()),
                    fmt_shape(first.shape())
                ),
            ));
        }
    }
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let out = ndarray::concatenate(Axis(axis), &views).map_err(|e| bad(node, "Concat", e.to_string()))?;
    Ok(into_contiguous(out))
}

/// Applies `f` elementwise, keeping the shape; the result is C-contiguous.
fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    // `mapv` keeps the input's memory order; normalize it to C order.
    into_contiguous(x.mapv(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn activations() {
        let x = t(&[5], &[-2., -0.5, 0., 0.5, f32::NAN]);
        let r = relu(&x);
        assert_eq!(r.as_slice().unwrap()[..4], [0., 0., 0., 0.5]);
        assert!(r[[4]].is_nan());
        let l = leaky_relu(&x, 0.2);
        assert_eq!(l.as_slice().unwrap()[..4], [-0.4, -0.1, 0., 0.5]);
        assert!(l[[4]].is_nan());
        let th = tanh(&x);
        assert_eq!(th[[2]], 0.0);
        assert!((th[[0]] - (-0.964_027_6)).abs() < 1e-7);
        let s = sigmoid(&x);
        assert_eq!(s[[2]], 0.5);
        assert!((s[[3]] - 0.622_459_3).abs() < 1e-7);
        assert_eq!(sigmoid(&t(&[2], &[-1000., 1000.])).as_slice().unwrap(), [0., 1.]);
        assert_eq!(tanh(&t(&[1], &[100.]))[[0]], 1.0);
    }

    #[test]
    fn layouts_are_normalized() {
        let x = crate::tensor::random(&[3, 4], 1).reversed_axes();
        assert!(relu(&x).is_standard_layout());
        assert_eq!(relu(&x), x.mapv(|v| v.max(0.0)));
    }

    #[test]
    fn add_broadcasts_as_pytorch() {
        let a = t(&[1, 2, 1, 1], &[1., 2.]);
        assert_eq!(add("res", &a, &a).unwrap(), t(&[1, 2, 1, 1], &[2., 4.]));
        assert_eq!(add("res", &a, &t(&[1, 1, 1, 1], &[1.])).unwrap(), t(&[1, 2, 1, 1], &[2., 3.]));
        let e = add("res", &a, &t(&[1, 3, 1, 1], &[1., 1., 1.])).unwrap_err();
        assert_eq!(e.to_string(), "node `res`: Add: operands of shapes [1, 2, 1, 1] and [1, 3, 1, 1] do not broadcast");
    }

    #[test]
    fn concat_along_channels() {
        let a = t(&[1, 1, 1, 2], &[1., 2.]);
        let b = t(&[1, 2, 1, 2], &[3., 4., 5., 6.]);
        assert_eq!(concat("cat", &[&a, &b]).unwrap(), t(&[1, 3, 1, 2], &[1., 2., 3., 4., 5., 6.]));
        let a3 = t(&[1, 1, 2], &[1., 2.]);
        let b3 = t(&[2, 1, 2], &[3., 4., 5., 6.]);
        assert_eq!(concat("cat", &[&a3, &b3]).unwrap(), t(&[3, 1, 2], &[1., 2., 3., 4., 5., 6.]));
        assert_eq!(concat("cat", &[&a]).unwrap(), a);
        let e = concat("cat", &[&a, &t(&[1, 1, 2, 1], &[1., 2.])]).unwrap_err();
        assert!(
            e.to_string().contains("operand 1 has shape [1, 1, 2, 1], which does not match operand 0's [1, 1, 1, 2]"),
            "{e}"
        );
        assert!(concat("cat", &[&a, &a3]).is_err());
        assert!(concat("cat", &[&t(&[2], &[1., 2.])]).is_err());
        assert!(concat("cat", &[]).is_err());
    }
}
