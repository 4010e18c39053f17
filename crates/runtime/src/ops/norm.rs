//! `InstanceNorm2d` and `GroupNorm` in eval mode, two-pass statistics in f64:
//! mean first, then the mean squared deviation (the biased variance PyTorch
//! normalizes with), so large offsets do not cancel.

use kiln_ir::InstanceNormParams;

use super::{accumulator, as_nchw, bad, check_param, finish};
use crate::error::{fmt_shape, Result};
use crate::tensor::{into_contiguous, Tensor};

/// Mean and biased variance of `v`, two passes in f64.
fn moments(v: impl Iterator<Item = f32> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let mean = v.clone().map(f64::from).sum::<f64>() / n;
    let var = v.map(|x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// `nn.InstanceNorm2d(num_features).eval()(x)`: each `(n, c)` plane
/// normalized by its own statistics, or by the running ones when
/// `track_running_stats`; then the per-channel affine if `affine`.
#[allow(clippy::too_many_arguments)] // one argument per PyTorch tensor
pub fn instance_norm2d(
    node: &str,
    x: &Tensor,
    p: &InstanceNormParams,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "InstanceNorm2d";
    let (v, batched) = as_nchw(node, OP, x)?;
    let [n, c, h, w] = [v.shape()[0], v.shape()[1], v.shape()[2], v.shape()[3]];
    for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)]
    {
        if let Some(t) = t {
            check_param(node, OP, name, t, &[c])?;
        }
    }
    let eps = f64::from(p.eps);
    let mut acc = accumulator(node, [n, c, h, w])?;
    for b in 0..n {
        for ch in 0..c {
            let plane = v.slice(ndarray::s![b, ch, .., ..]);
            let (mean, var) = match (p.track_running_stats, running_mean, running_var) {
                (true, Some(m), Some(s)) => (f64::from(m[[ch]]), f64::from(s[[ch]])),
                (true, _, _) => {
                    return Err(bad(node, OP, "track_running_stats needs running_mean and running_var".into()))
                }
                (false, _, _) => moments(plane.iter().copied()),
            };
            let inv = 1.0 / (var + eps).sqrt();
            let (g, t) = match (weight, bias) {
                (Some(g), Some(t)) => (f64::from(g[[ch]]), f64::from(t[[ch]])),
                _ => (1.0, 0.0),
            };
            for (i, &val) in plane.indexed_iter() {
                acc[[b, ch, i.0, i.1]] = (f64::from(val) - mean) * inv * g + t;
            }
        }
    }
    Ok(finish(acc, batched))
}

/// `nn.GroupNorm(num_groups, C)(x)` on `[N, C, *]`: statistics over each
/// group of `C / num_groups` consecutive channels and all their positions.
pub fn group_norm(
    node: &str,
    x: &Tensor,
    num_groups: usize,
    eps: f32,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "GroupNorm";
    let s = x.shape().to_vec();
    if s.len() < 2 || num_groups == 0 || !s[1].is_multiple_of(num_groups) {
        return Err(bad(
            node,
            OP,
            format!("needs [N, C, *] with C divisible by {num_groups}, got shape {}", fmt_shape(&s)),
        ));
    }
    let c = s[1];
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            check_param(node, OP, name, t, &[c])?;
        }
    }
    let x = into_contiguous(x.clone());
    let xs = x.as_slice().ok_or_else(|| bad(node, OP, "input is not contiguous".into()))?;
    let inner: usize = s[2..].iter().product();
    let per_group = c / num_groups * inner;
    let mut out = vec![0.0f32; xs.len()];
    for (gi, (src, dst)) in xs.chunks(per_group.max(1)).zip(out.chunks_mut(per_group.max(1))).enumerate() {
        let (mean, var) = moments(src.iter().copied());
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        let g = gi % num_groups;
        for (k, (&v, o)) in src.iter().zip(dst.iter_mut()).enumerate() {
            let ch = g * (c / num_groups) + k / inner.max(1);
            let (a, b) = match (weight, bias) {
                (Some(wt), Some(bs)) => (f64::from(wt[[ch]]), f64::from(bs[[ch]])),
                _ => (1.0, 0.0),
            };
            *o = ((f64::from(v) - mean) * inv * a + b) as f32;
        }
    }
    Tensor::from_shape_vec(s, out).map_err(|e| bad(node, OP, e.to_string()))
}
