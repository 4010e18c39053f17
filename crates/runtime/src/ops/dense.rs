//! `nn.Linear` (a matrix product over the last dim, summed in f64) and the
//! ops that only reinterpret a contiguous tensor (`Flatten`, `Unflatten`,
//! `Reshape`), whose shape rules come from `kiln_ir::reshape`.

use kiln_ir::reshape;

use super::{bad, check_bias, check_param};
use crate::error::{fmt_shape, Result};
use crate::tensor::{into_contiguous, Tensor};

/// `nn.Linear(in_features, out_features)(x)` for `x` of shape `[*, in_features]`.
pub fn linear(
    node: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    in_features: usize,
    has_bias: bool,
) -> Result<Tensor> {
    const OP: &str = "Linear";
    let s = x.shape().to_vec();
    if s.last() != Some(&in_features) {
        return Err(bad(
            node,
            OP,
            format!("expects {in_features} input features (last dim), got input of shape {}", fmt_shape(&s)),
        ));
    }
    let out_features = weight.shape().first().copied().unwrap_or(0);
    check_param(node, OP, "weight", weight, &[out_features, in_features])?;
    check_bias(node, OP, has_bias, bias, out_features)?;
    let x = into_contiguous(x.clone());
    let xs = x.as_slice().ok_or_else(|| bad(node, OP, "input is not contiguous".into()))?;
    let w: Vec<f64> = weight.iter().map(|&v| f64::from(v)).collect();
    let b: Vec<f64> = bias.map_or_else(|| vec![0.0; out_features], |b| b.iter().map(|&v| f64::from(v)).collect());
    let rows = xs.len() / in_features.max(1);
    let mut out = Vec::with_capacity(rows * out_features);
    for r in 0..rows {
        let xr = &xs[r * in_features..][..in_features];
        for o in 0..out_features {
            let wr = &w[o * in_features..][..in_features];
            let dot: f64 = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a) * b).sum();
            out.push((dot + b[o]) as f32);
        }
    }
    let mut shape = s;
    if let Some(last) = shape.last_mut() {
        *last = out_features;
    }
    Tensor::from_shape_vec(shape, out).map_err(|e| bad(node, OP, e.to_string()))
}

/// Reinterprets `x` with the shape `rule` computes from its shape.
pub fn reshaped(
    node: &str,
    op: &'static str,
    x: &Tensor,
    rule: impl FnOnce(&[usize]) -> std::result::Result<Vec<usize>, String>,
) -> Result<Tensor> {
    let shape = rule(x.shape()).map_err(|m| bad(node, op, format!("{m} (input shape {})", fmt_shape(x.shape()))))?;
    into_contiguous(x.clone()).into_shape_with_order(shape).map_err(|e| bad(node, op, e.to_string()))
}

/// `nn.Flatten(start_dim, end_dim)`.
pub fn flatten(node: &str, x: &Tensor, start_dim: i64, end_dim: i64) -> Result<Tensor> {
    reshaped(node, "Flatten", x, |s| reshape::flatten(s, start_dim, end_dim))
}

/// `nn.Unflatten(dim, sizes)`.
pub fn unflatten(node: &str, x: &Tensor, dim: i64, sizes: &[i64]) -> Result<Tensor> {
    reshaped(node, "Unflatten", x, |s| reshape::unflatten(s, dim, sizes))
}

/// `torch.reshape(x, shape)`.
pub fn reshape_to(node: &str, x: &Tensor, shape: &[i64]) -> Result<Tensor> {
    reshaped(node, "Reshape", x, |s| reshape::reshape(s, shape))
}

/// `torch.cat(xs, dim)` along any dim.
pub fn cat(node: &str, xs: &[&Tensor], dim: i64) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    reshape::cat(&shapes, dim).map_err(|m| bad(node, "Concat", m))?;
    let d = reshape::wrap_dim(dim, shapes[0].len()).map_err(|m| bad(node, "Concat", m))?;
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let out = ndarray::concatenate(ndarray::Axis(d), &views).map_err(|e| bad(node, "Concat", e.to_string()))?;
    Ok(into_contiguous(out))
}

/// `torch.narrow(x, dim, start, length)`.
pub fn narrow(node: &str, x: &Tensor, dim: i64, start: usize, length: usize) -> Result<Tensor> {
    reshape::narrow(x.shape(), dim, start, length).map_err(|m| bad(node, "Narrow", m))?;
    let d = reshape::wrap_dim(dim, x.ndim()).map_err(|m| bad(node, "Narrow", m))?;
    Ok(into_contiguous(x.slice_axis(ndarray::Axis(d), ndarray::Slice::from(start..start + length)).to_owned()))
}
