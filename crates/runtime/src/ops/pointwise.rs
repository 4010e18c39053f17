//! The pointwise activations of [`kiln_ir::Pointwise`] and `nn.PReLU`,
//! evaluated in f64 from PyTorch's formulas and rounded once.
//!
//! Deliberately not [`Pointwise::apply`] (the f32 definition the JIT runs):
//! the oracle is written separately so that the differential tests compare
//! two implementations, and the golden cases compare both with PyTorch.

use kiln_ir::{GeluApproximate, Pointwise, SELU_ALPHA, SELU_SCALE};
use ndarray::Axis;

use super::bad;
use crate::error::{fmt_shape, Result};
use crate::tensor::{into_contiguous, Tensor};

/// Applies `f` to every element.
pub fn pointwise(x: &Tensor, f: Pointwise) -> Tensor {
    into_contiguous(x.mapv(|v| eval(f, f64::from(v)) as f32))
}

fn eval(f: Pointwise, x: f64) -> f64 {
    let clamp = |x: f64, lo: f64, hi: f64| {
        if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        }
    };
    let softplus =
        |x: f64, beta: f64, threshold: f64| if x * beta > threshold { x } else { (x * beta).exp().ln_1p() / beta };
    let elu = |x: f64, alpha: f64| if x > 0.0 { x } else { alpha * x.exp_m1() };
    match f {
        Pointwise::Elu { alpha } => elu(x, f64::from(alpha)),
        Pointwise::Selu => f64::from(SELU_SCALE) * elu(x, f64::from(SELU_ALPHA)),
        Pointwise::Silu => x / (1.0 + (-x).exp()),
        Pointwise::Gelu { approximate: GeluApproximate::None } => {
            0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
        }
        Pointwise::Gelu { approximate: GeluApproximate::Tanh } => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x.powi(3))).tanh())
        }
        Pointwise::Hardtanh { min_val, max_val } => clamp(x, f64::from(min_val), f64::from(max_val)),
        Pointwise::Relu6 => clamp(x, 0.0, 6.0),
        Pointwise::Softplus { beta, threshold } => softplus(x, f64::from(beta), f64::from(threshold)),
        Pointwise::Hardsigmoid => clamp(x / 6.0 + 0.5, 0.0, 1.0),
        Pointwise::Hardswish => x * clamp(x + 3.0, 0.0, 6.0) / 6.0,
        Pointwise::Mish => x * softplus(x, 1.0, 20.0).tanh(),
    }
}

/// `nn.PReLU`: `x` where `x ≥ 0`, else `weight[c]·x`, with `c` the index in
/// dim 1 (one weight for everything when `weight` has a single element).
pub fn prelu(node: &str, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let w: Vec<f64> = weight.iter().map(|&v| f64::from(v)).collect();
    let channels = if x.ndim() >= 2 { x.shape()[1] } else { 1 };
    if x.ndim() == 0 || (w.len() != 1 && w.len() != channels) {
        return Err(bad(
            node,
            "PReLU",
            format!("has {} weights for an input of shape {}", w.len(), fmt_shape(x.shape())),
        ));
    }
    let mut out = into_contiguous(x.clone());
    let f = |v: &mut f32, a: f64| {
        if *v < 0.0 {
            *v = (f64::from(*v) * a) as f32;
        }
    };
    if w.len() == 1 {
        out.iter_mut().for_each(|v| f(v, w[0]));
    } else {
        for (c, mut lane) in out.axis_iter_mut(Axis(1)).enumerate() {
            lane.iter_mut().for_each(|v| f(v, w[c]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;

    #[test]
    fn oracle_agrees_with_the_ir_definition() {
        let xs: Vec<f32> = (-120..=120).map(|i| i as f32 * 0.25).collect();
        let x = from_vec(&[xs.len()], xs.clone()).unwrap();
        for f in Pointwise::ALL_DEFAULTS.into_iter().chain([
            Pointwise::Gelu { approximate: GeluApproximate::Tanh },
            Pointwise::Softplus { beta: 2.0, threshold: 3.0 },
            Pointwise::Elu { alpha: 0.5 },
            Pointwise::Hardtanh { min_val: -0.5, max_val: 2.0 },
        ]) {
            let y = pointwise(&x, f);
            for (&xi, &yi) in xs.iter().zip(y.iter()) {
                let want = f.apply(xi);
                assert!((want - yi).abs() <= 2e-6 * (1.0 + yi.abs()), "{f:?}({xi}): {want} vs {yi}");
            }
        }
    }

    #[test]
    fn prelu_per_channel_and_shared() {
        let x = from_vec(&[1, 2, 1, 2], vec![-1.0, 2.0, -4.0, 0.5]).unwrap();
        let per = prelu("p", &x, &from_vec(&[2], vec![0.5, 0.25]).unwrap()).unwrap();
        assert_eq!(per.iter().copied().collect::<Vec<_>>(), [-0.5, 2.0, -1.0, 0.5]);
        let one = prelu("p", &x, &from_vec(&[1], vec![0.1]).unwrap()).unwrap();
        assert_eq!(one.iter().copied().collect::<Vec<_>>(), [-0.1, 2.0, -0.4, 0.5]);
        assert!(prelu("p", &x, &from_vec(&[3], vec![0.1; 3]).unwrap()).is_err());
    }
}
