//! Pointwise activations beyond the four the convolution epilogues fuse
//! (ReLU, LeakyReLU, Tanh, Sigmoid, which stay their own [`crate::Op`]
//! variants): `nn.ELU`, `SELU`, `SiLU`, `GELU`, `Hardtanh`, `ReLU6`,
//! `Softplus`, `Hardsigmoid`, `Hardswish`, `Mish`.
//!
//! Each carries its hyper-parameters and owns its scalar definition
//! ([`Pointwise::apply`], PyTorch's formula in `f32`), which the reference
//! interpreter and the JIT's helpers both call, so the two cannot drift
//! apart; PyTorch-generated golden cases check the definition itself.

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};

/// `nn.GELU(approximate=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluApproximate {
    /// `x·Φ(x)` with the exact normal CDF (`approximate='none'`).
    None,
    /// The tanh approximation (`approximate='tanh'`).
    Tanh,
}

impl GeluApproximate {
    /// PyTorch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GeluApproximate::None => "none",
            GeluApproximate::Tanh => "tanh",
        }
    }

    /// Parses PyTorch's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(GeluApproximate::None),
            "tanh" => Some(GeluApproximate::Tanh),
            _ => None,
        }
    }
}

/// A pointwise activation with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pointwise {
    /// `nn.ELU(alpha)`: `x` if `x > 0`, else `alpha·(exp(x) − 1)`.
    Elu {
        /// Scale of the negative branch (default 1).
        alpha: f32,
    },
    /// `nn.SELU`: `scale·elu(x, alpha)` with PyTorch's fixed constants.
    Selu,
    /// `nn.SiLU`: `x·sigmoid(x)`.
    Silu,
    /// `nn.GELU(approximate)`.
    Gelu {
        /// Exact or tanh approximation.
        approximate: GeluApproximate,
    },
    /// `nn.Hardtanh(min_val, max_val)`: clamp.
    Hardtanh {
        /// Lower bound (default −1).
        min_val: f32,
        /// Upper bound (default 1).
        max_val: f32,
    },
    /// `nn.ReLU6`: clamp to `[0, 6]`.
    Relu6,
    /// `nn.Softplus(beta, threshold)`: `log(1 + exp(beta·x)) / beta`,
    /// and `x` where `beta·x > threshold`.
    Softplus {
        /// Sharpness (default 1).
        beta: f32,
        /// Linear above this value of `beta·x` (default 20).
        threshold: f32,
    },
    /// `nn.Hardsigmoid`: `clamp(x/6 + 1/2, 0, 1)`.
    Hardsigmoid,
    /// `nn.Hardswish`: `x·relu6(x + 3)/6`.
    Hardswish,
    /// `nn.Mish`: `x·tanh(softplus(x))`.
    Mish,
}

/// SELU's `alpha` (PyTorch's `torch.nn.functional.selu` constant).
pub const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's `scale`.
pub const SELU_SCALE: f32 = 1.050_701;

impl Pointwise {
    /// Every variant with PyTorch's default hyper-parameters (tests and fuzzing).
    pub const ALL_DEFAULTS: [Pointwise; 10] = [
        Pointwise::Elu { alpha: 1.0 },
        Pointwise::Selu,
        Pointwise::Silu,
        Pointwise::Gelu { approximate: GeluApproximate::None },
        Pointwise::Hardtanh { min_val: -1.0, max_val: 1.0 },
        Pointwise::Relu6,
        Pointwise::Softplus { beta: 1.0, threshold: 20.0 },
        Pointwise::Hardsigmoid,
        Pointwise::Hardswish,
        Pointwise::Mish,
    ];

    /// PyTorch's class name.
    pub fn class_name(self) -> &'static str {
        match self {
            Pointwise::Elu { .. } => "ELU",
            Pointwise::Selu => "SELU",
            Pointwise::Silu => "SiLU",
            Pointwise::Gelu { .. } => "GELU",
            Pointwise::Hardtanh { .. } => "Hardtanh",
            Pointwise::Relu6 => "ReLU6",
            Pointwise::Softplus { .. } => "Softplus",
            Pointwise::Hardsigmoid => "Hardsigmoid",
            Pointwise::Hardswish => "Hardswish",
            Pointwise::Mish => "Mish",
        }
    }

    /// The text-form mnemonic.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Pointwise::Elu { .. } => "elu",
            Pointwise::Selu => "selu",
            Pointwise::Silu => "silu",
            Pointwise::Gelu { .. } => "gelu",
            Pointwise::Hardtanh { .. } => "hardtanh",
            Pointwise::Relu6 => "relu6",
            Pointwise::Softplus { .. } => "softplus",
            Pointwise::Hardsigmoid => "hardsigmoid",
            Pointwise::Hardswish => "hardswish",
            Pointwise::Mish => "mish",
        }
    }

    /// Hyper-parameters that differ from PyTorch's defaults, as `key=value`
    /// (the text form).
    pub fn attributes(self) -> Vec<String> {
        match self {
            Pointwise::Elu { alpha } if alpha != 1.0 => vec![format!("alpha={alpha}")],
            Pointwise::Gelu { approximate: GeluApproximate::Tanh } => vec!["approximate=tanh".into()],
            Pointwise::Hardtanh { min_val, max_val } if (min_val, max_val) != (-1.0, 1.0) => {
                vec![format!("min_val={min_val}"), format!("max_val={max_val}")]
            }
            Pointwise::Softplus { beta, threshold } if (beta, threshold) != (1.0, 20.0) => {
                vec![format!("beta={beta}"), format!("threshold={threshold}")]
            }
            Pointwise::Elu { .. }
            | Pointwise::Gelu { .. }
            | Pointwise::Hardtanh { .. }
            | Pointwise::Softplus { .. }
            | Pointwise::Selu
            | Pointwise::Silu
            | Pointwise::Relu6
            | Pointwise::Hardsigmoid
            | Pointwise::Hardswish
            | Pointwise::Mish => Vec::new(),
        }
    }

    /// The hyper-parameters by PyTorch name (the model format writes them).
    pub fn args(self) -> Vec<(&'static str, ArgValue)> {
        match self {
            Pointwise::Elu { alpha } => vec![("alpha", ArgValue::Float(alpha))],
            Pointwise::Gelu { approximate } => vec![("approximate", ArgValue::Str(approximate.as_str()))],
            Pointwise::Hardtanh { min_val, max_val } => {
                vec![("min_val", ArgValue::Float(min_val)), ("max_val", ArgValue::Float(max_val))]
            }
            Pointwise::Softplus { beta, threshold } => {
                vec![("beta", ArgValue::Float(beta)), ("threshold", ArgValue::Float(threshold))]
            }
            Pointwise::Selu
            | Pointwise::Silu
            | Pointwise::Relu6
            | Pointwise::Hardsigmoid
            | Pointwise::Hardswish
            | Pointwise::Mish => Vec::new(),
        }
    }

    /// Checks the hyper-parameters as PyTorch does (and finiteness, which
    /// PyTorch does not check but no model needs).
    pub fn validate(self, node: &str) -> Result<()> {
        let op = self.class_name();
        for (arg, v) in self.args() {
            if let ArgValue::Float(x) = v {
                if !x.is_finite() {
                    return Err(IrError::Unsupported {
                        node: node.into(),
                        op,
                        arg,
                        message: format!("must be finite, got {x}"),
                    });
                }
            }
        }
        match self {
            // `nn.Hardtanh.__init__` asserts `max_val > min_val`.
            Pointwise::Hardtanh { min_val, max_val } if max_val <= min_val => Err(IrError::Unsupported {
                node: node.into(),
                op,
                arg: "max_val",
                message: format!("must be greater than min_val={min_val}, got {max_val}"),
            }),
            Pointwise::Elu { .. }
            | Pointwise::Hardtanh { .. }
            | Pointwise::Softplus { .. }
            | Pointwise::Gelu { .. }
            | Pointwise::Selu
            | Pointwise::Silu
            | Pointwise::Relu6
            | Pointwise::Hardsigmoid
            | Pointwise::Hardswish
            | Pointwise::Mish => Ok(()),
        }
    }

    /// The scalar definition (PyTorch's formula in `f32`). NaN propagates.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Pointwise::Elu { alpha } => elu(x, alpha, 1.0),
            Pointwise::Selu => elu(x, SELU_ALPHA, SELU_SCALE),
            Pointwise::Silu => x * sigmoid(x),
            Pointwise::Gelu { approximate: GeluApproximate::None } => {
                0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
            }
            Pointwise::Gelu { approximate: GeluApproximate::Tanh } => {
                // sqrt(2/pi)
                const K: f32 = 0.797_884_6;
                0.5 * x * (1.0 + (K * (x + 0.044_715 * x * x * x)).tanh())
            }
            Pointwise::Hardtanh { min_val, max_val } => clamp(x, min_val, max_val),
            Pointwise::Relu6 => clamp(x, 0.0, 6.0),
            Pointwise::Softplus { beta, threshold } => softplus(x, beta, threshold),
            Pointwise::Hardsigmoid => clamp(x / 6.0 + 0.5, 0.0, 1.0),
            Pointwise::Hardswish => x * clamp(x + 3.0, 0.0, 6.0) / 6.0,
            Pointwise::Mish => x * softplus(x, 1.0, 20.0).tanh(),
        }
    }
}

/// A hyper-parameter value, for writing the model format.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgValue {
    /// A float argument.
    Float(f32),
    /// A string argument.
    Str(&'static str),
}

fn elu(x: f32, alpha: f32, scale: f32) -> f32 {
    if x > 0.0 {
        scale * x
    } else {
        // expm1 keeps small negative inputs accurate, as PyTorch's kernel does.
        scale * alpha * x.exp_m1()
    }
}

fn sigmoid(x: f32) -> f32 {
    // Through exp of a non-positive argument, so neither branch overflows.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `clamp` that lets NaN through (as `torch.clamp` and `hardtanh` do).
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

fn softplus(x: f32, beta: f32, threshold: f32) -> f32 {
    let bx = x * beta;
    if bx > threshold {
        x
    } else {
        bx.exp().ln_1p() / beta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    /// Values computed independently (f64 formulas in Python's `math`), not
    /// by this code.
    #[test]
    fn definitions_at_known_points() {
        assert!(close(Pointwise::Elu { alpha: 1.0 }.apply(-1.0), -0.632_120_558_828_557_7));
        assert!(close(Pointwise::Selu.apply(-1.0), -1.111_330_737_812_562_7));
        assert!(close(Pointwise::Selu.apply(2.0), 2.101_401_974_710_961));
        assert!(close(Pointwise::Silu.apply(1.0), 0.731_058_578_630_004_9));
        assert!(close(Pointwise::Gelu { approximate: GeluApproximate::None }.apply(1.0), 0.841_344_746_068_542_9));
        assert!(close(Pointwise::Gelu { approximate: GeluApproximate::Tanh }.apply(1.0), 0.841_191_990_608_276_4));
        assert!(close(Pointwise::Softplus { beta: 1.0, threshold: 20.0 }.apply(0.0), std::f64::consts::LN_2));
        assert_eq!(Pointwise::Softplus { beta: 2.0, threshold: 4.0 }.apply(3.0), 3.0);
        assert!(close(Pointwise::Mish.apply(1.0), 0.865_098_388_331_545_7));
        assert_eq!(Pointwise::Relu6.apply(7.0), 6.0);
        assert_eq!(Pointwise::Hardsigmoid.apply(-4.0), 0.0);
        assert!(close(Pointwise::Hardsigmoid.apply(1.0), 0.666_666_666_666_666_6));
        assert!(close(Pointwise::Hardswish.apply(1.0), 0.666_666_666_666_666_6));
        assert_eq!(Pointwise::Hardtanh { min_val: -2.0, max_val: 0.5 }.apply(-3.0), -2.0);
        for p in Pointwise::ALL_DEFAULTS {
            assert!(p.apply(f32::NAN).is_nan(), "{p:?}");
        }
    }

    #[test]
    fn validation_follows_pytorch() {
        assert!(Pointwise::Hardtanh { min_val: 1.0, max_val: 1.0 }.validate("h").is_err());
        // PyTorch accepts beta = 0 (and returns inf): so does Kiln.
        assert!(Pointwise::Softplus { beta: 0.0, threshold: 20.0 }.validate("s").is_ok());
        assert!(Pointwise::Elu { alpha: f32::INFINITY }.validate("e").is_err());
        for p in Pointwise::ALL_DEFAULTS {
            assert!(p.validate("p").is_ok(), "{p:?}");
        }
    }
}
