//! `BatchNorm2d` in eval mode: per-channel normalization with the running
//! statistics, `y = (x − mean) / sqrt(var + eps) · weight + bias`. Training
//! mode (batch statistics, running-stat updates) is not implemented: Kiln runs
//! inference only.

use kiln_ir::BatchNorm2dParams;

use super::{accumulator, bad, check_param, finish};
use crate::error::{fmt_shape, Result, RuntimeError};
use crate::tensor::Tensor;

/// The statistics and affine parameters of one batch norm, as one value.
pub struct BatchNormParams<'a> {
    /// `weight` (`None` without `affine`).
    pub weight: Option<&'a Tensor>,
    /// `bias` (`None` without `affine`).
    pub bias: Option<&'a Tensor>,
    /// `running_mean`.
    pub running_mean: &'a Tensor,
    /// `running_var`.
    pub running_var: &'a Tensor,
}

/// `nn.BatchNorm1d(num_features).eval()(x)` for `[N, C]` or `[N, C, L]`:
/// the same normalization over dim 1.
pub fn batch_norm1d(
    node: &str,
    x: &Tensor,
    num_features: usize,
    p: &BatchNorm2dParams,
    t: BatchNormParams<'_>,
) -> Result<Tensor> {
    const OP1: &str = "BatchNorm1d";
    let s = x.shape().to_vec();
    let (n, c, l) = match *s.as_slice() {
        [n, c] => (n, c, 1),
        [n, c, l] => (n, c, l),
        _ => {
            return Err(bad(
                node,
                OP1,
                format!("expects a 2-D [N, C] or 3-D [N, C, L] input, got shape {}", fmt_shape(&s)),
            ))
        }
    };
    let x4 = crate::tensor::into_contiguous(x.clone())
        .into_shape_with_order(vec![n, c, l, 1])
        .map_err(|e| bad(node, OP1, format!("cannot view input as [N, C, L, 1]: {e}")))?;
    let y = normalize(node, OP1, &x4, num_features, p, t)?;
    y.into_shape_with_order(s).map_err(|e| bad(node, OP1, format!("cannot restore the input shape: {e}")))
}

const OP: &str = "BatchNorm2d";

/// `nn.BatchNorm2d(num_features, **params).eval()(x)` for a 4-D input
/// `[N, C, H, W]`. `weight` and `bias` are required when `params.affine`
/// and must be absent otherwise; `running_mean` and `running_var` are always
/// required. All four have shape `[num_features]`.
///
/// Like PyTorch, unbatched 3-D input is refused (`BatchNorm2d` raises
/// "expected 4D input (got 3D input)").
#[allow(clippy::too_many_arguments)] // one argument per PyTorch tensor, kept explicit
pub fn batch_norm2d(
    node: &str,
    x: &Tensor,
    num_features: usize,
    p: &BatchNorm2dParams,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
) -> Result<Tensor> {
    if x.ndim() != 4 {
        return Err(bad(
            node,
            OP,
            format!("expects a 4-D input [N, C, H, W] (as PyTorch does), got shape {}", fmt_shape(x.shape())),
        ));
    }
    normalize(node, OP, x, num_features, p, BatchNormParams { weight, bias, running_mean, running_var })
}

/// Eval-mode batch norm of a 4-D `x` over dim 1.
fn normalize(
    node: &str,
    op: &'static str,
    x: &Tensor,
    num_features: usize,
    p: &BatchNorm2dParams,
    t: BatchNormParams<'_>,
) -> Result<Tensor> {
    let BatchNormParams { weight, bias, running_mean, running_var } = t;
    p.validate(node, op)?;
    let (batch, channels, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    if channels != num_features {
        return Err(bad(
            node,
            op,
            format!("expects {num_features} channels, got input of shape {}", fmt_shape(x.shape())),
        ));
    }
    let c = [num_features];
    check_param(node, op, "running_mean", running_mean, &c)?;
    check_param(node, op, "running_var", running_var, &c)?;
    let affine = match (p.affine, weight, bias) {
        (true, Some(wt), Some(b)) => {
            check_param(node, op, "weight", wt, &c)?;
            check_param(node, op, "bias", b, &c)?;
            Some((wt, b))
        }
        (true, None, _) | (true, _, None) => {
            let param = if weight.is_none() { "weight" } else { "bias" };
            return Err(RuntimeError::MissingParam { node: node.into(), op, param, expected: fmt_shape(&c) });
        }
        (false, None, None) => None,
        (false, _, _) => return Err(bad(node, op, "weight/bias were given but the layer has affine=false".into())),
    };
    let eps = f64::from(p.eps);
    let mut y = accumulator(node, [batch, channels, h, w])?;
    for n in 0..batch {
        for ch in 0..channels {
            let mean = f64::from(running_mean[[ch]]);
            let inv_std = 1.0 / (f64::from(running_var[[ch]]) + eps).sqrt();
            let (scale, shift) = affine.map_or((1.0, 0.0), |(wt, b)| (f64::from(wt[[ch]]), f64::from(b[[ch]])));
            for i in 0..h {
                for j in 0..w {
                    y[[n, ch, i, j]] = (f64::from(x[[n, ch, i, j]]) - mean) * inv_std * scale + shift;
                }
            }
        }
    }
    Ok(finish(y, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn normalizes_per_channel() {
        let x = t(&[1, 2, 1, 2], &[1., 3., 10., 20.]);
        let mean = t(&[2], &[1., 10.]);
        let var = t(&[2], &[4. - 1e-5, 100. - 1e-5]);
        let w = t(&[2], &[2., -1.]);
        let b = t(&[2], &[0.5, 0.]);
        let p = BatchNorm2dParams::default();
        let y = batch_norm2d("bn", &x, 2, &p, Some(&w), Some(&b), &mean, &var).unwrap();
        // ch0: (x-1)/2*2+0.5 ; ch1: -(x-10)/10
        let want = t(&[1, 2, 1, 2], &[0.5, 2.5, 0., -1.]);
        assert!(crate::tensor::max_abs_diff(&y, &want).unwrap() < 1e-6, "{y}");
        let plain = batch_norm2d("bn", &x, 2, &p.affine(false), None, None, &mean, &var).unwrap();
        let want = t(&[1, 2, 1, 2], &[0., 1., 0., 1.]);
        assert!(crate::tensor::max_abs_diff(&plain, &want).unwrap() < 1e-6, "{plain}");
    }

    #[test]
    fn refusals() {
        let x = t(&[1, 2, 1, 1], &[1., 2.]);
        let two = t(&[2], &[1., 1.]);
        let three = t(&[3], &[1., 1., 1.]);
        let p = BatchNorm2dParams::default();
        let cases = [
            (
                batch_norm2d("bn", &t(&[2, 1, 1], &[1., 2.]), 2, &p, Some(&two), Some(&two), &two, &two),
                "expects a 4-D input",
            ),
            (batch_norm2d("bn", &x, 3, &p, Some(&three), Some(&three), &three, &three), "expects 3 channels"),
            (batch_norm2d("bn", &x, 2, &p, Some(&two), Some(&two), &two, &three), "`bn.running_var` has shape [3]"),
            (batch_norm2d("bn", &x, 2, &p, None, Some(&two), &two, &two), "needs parameter `bn.weight`"),
            (batch_norm2d("bn", &x, 2, &p, Some(&two), None, &two, &two), "needs parameter `bn.bias`"),
            (batch_norm2d("bn", &x, 2, &p.affine(false), Some(&two), None, &two, &two), "affine=false"),
            (batch_norm2d("bn", &x, 2, &p.eps(0.0), Some(&two), Some(&two), &two, &two), "`eps` must be positive"),
        ];
        for (r, needle) in cases {
            let e = r.unwrap_err();
            assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
        }
    }
}
