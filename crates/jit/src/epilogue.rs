//! What a kernel does to each output value after the reduction: bias, then an
//! activation.
//!
//! This module defines the data ([`Activation`], [`Epilogue`]) and the Rust
//! helpers that generated code calls for transcendental activations. It does
//! not emit code; `codegen::activation` does.

/// Pointwise activation applied after bias (and after folded BatchNorm).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// `x`.
    #[default]
    Identity,
    /// `max(x, 0)`; NaN stays NaN.
    Relu,
    /// `x` if `x > 0` else `alpha·x`.
    LeakyRelu(f32),
    /// `tanh(x)` (see `vmath` for how compiled code evaluates it).
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Scalar definition; the reference that generated code must match.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    x * a
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }
}

/// Bias and activation fused into a kernel's output stage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Epilogue {
    /// One value per output channel, added before the activation.
    pub bias: Option<Vec<f32>>,
    /// Activation applied last.
    pub activation: Activation,
}

impl Epilogue {
    /// No bias, identity activation.
    pub fn none() -> Self {
        Self::default()
    }

    /// Bias only.
    pub fn bias(bias: Vec<f32>) -> Self {
        Self { bias: Some(bias), activation: Activation::Identity }
    }

    /// Builder-style activation setter.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    // Evaluate through exp of a non-positive argument so neither branch overflows.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// In-place `tanh` over `len` floats; called from generated code.
///
/// # Safety
/// `ptr` must be valid for reads and writes of `len` floats.
pub(crate) unsafe extern "C" fn helper_tanh(ptr: *mut f32, len: usize) {
    // SAFETY: guaranteed by the caller (generated code passes a region it owns).
    let s = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
    crate::vmath::map_tanh(crate::vmath::Block::InPlace(s));
}

/// In-place sigmoid over `len` floats; called from generated code.
///
/// # Safety
/// `ptr` must be valid for reads and writes of `len` floats.
pub(crate) unsafe extern "C" fn helper_sigmoid(ptr: *mut f32, len: usize) {
    // SAFETY: guaranteed by the caller (generated code passes a region it owns).
    let s = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
    crate::vmath::map_sigmoid(crate::vmath::Block::InPlace(s));
}

/// Symbol names under which the helpers are registered with the JIT.
pub(crate) const TANH_SYMBOL: &str = "kiln_jit_tanh_inplace";
/// See [`TANH_SYMBOL`].
pub(crate) const SIGMOID_SYMBOL: &str = "kiln_jit_sigmoid_inplace";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_definitions() {
        assert_eq!(Activation::Relu.apply(-2.0), 0.0);
        assert!(Activation::Relu.apply(f32::NAN).is_nan());
        assert_eq!(Activation::LeakyRelu(0.1).apply(-2.0), -0.2);
        assert_eq!(Activation::LeakyRelu(2.0).apply(3.0), 3.0);
        assert!((Activation::Sigmoid.apply(-100.0)).abs() < 1e-30);
        assert_eq!(Activation::Sigmoid.apply(100.0), 1.0);
        let mut v = [0.5f32, -1.0];
        // SAFETY: `v` holds the two floats the helper is told to transform.
        unsafe { helper_tanh(v.as_mut_ptr(), 2) };
        assert_eq!(v, [0.5f32.tanh(), (-1.0f32).tanh()]);
    }
}
