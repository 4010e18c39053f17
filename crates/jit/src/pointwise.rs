//! The pointwise activations of [`kiln_ir::Pointwise`] in compiled code:
//! generated loops call one native helper per chunk of floats, passing the
//! function as a small code plus two `f32` hyper-parameters.
//!
//! The helper evaluates the vectorized forms in [`crate::vmath`], which
//! agree with [`Pointwise::apply`] (the IR's own f32 definition; the
//! reference interpreter has an independent f64 one) to a few ulps.

use kiln_ir::{GeluApproximate, Pointwise};

use crate::vmath::{self, Block};

/// Symbol name under which [`helper_pointwise`] is registered with the JIT.
pub(crate) const POINTWISE_SYMBOL: &str = "kiln_jit_pointwise";

/// The helper's argument encoding of `f`: a code and two parameters.
pub(crate) fn encode(f: Pointwise) -> (i64, f32, f32) {
    match f {
        Pointwise::Elu { alpha } => (0, alpha, 0.0),
        Pointwise::Selu => (1, 0.0, 0.0),
        Pointwise::Silu => (2, 0.0, 0.0),
        Pointwise::Gelu { approximate: GeluApproximate::None } => (3, 0.0, 0.0),
        Pointwise::Gelu { approximate: GeluApproximate::Tanh } => (4, 0.0, 0.0),
        Pointwise::Hardtanh { min_val, max_val } => (5, min_val, max_val),
        Pointwise::Relu6 => (6, 0.0, 0.0),
        Pointwise::Softplus { beta, threshold } => (7, beta, threshold),
        Pointwise::Hardsigmoid => (8, 0.0, 0.0),
        Pointwise::Hardswish => (9, 0.0, 0.0),
        Pointwise::Mish => (10, 0.0, 0.0),
    }
}

/// Inverse of [`encode`]; `None` for a code `encode` never produces.
pub(crate) fn decode(code: i64, a: f32, b: f32) -> Option<Pointwise> {
    Some(match code {
        0 => Pointwise::Elu { alpha: a },
        1 => Pointwise::Selu,
        2 => Pointwise::Silu,
        3 => Pointwise::Gelu { approximate: GeluApproximate::None },
        4 => Pointwise::Gelu { approximate: GeluApproximate::Tanh },
        5 => Pointwise::Hardtanh { min_val: a, max_val: b },
        6 => Pointwise::Relu6,
        7 => Pointwise::Softplus { beta: a, threshold: b },
        8 => Pointwise::Hardsigmoid,
        9 => Pointwise::Hardswish,
        10 => Pointwise::Mish,
        _ => return None,
    })
}

/// `out[i] = f(x[i])` for `i < len`, `f` decoded from `(code, a, b)`. `out`
/// may be `x` (in place); an unknown code leaves `out` untouched (generated
/// code only passes codes from [`encode`]).
///
/// # Safety
/// `x` must be valid for reads and `out` for writes of `len` floats; the two
/// regions are either the same or disjoint.
pub(crate) unsafe extern "C" fn helper_pointwise(out: *mut f32, x: *const f32, len: usize, code: i64, a: f32, b: f32) {
    let Some(f) = decode(code, a, b) else { return };
    if std::ptr::eq(out.cast_const(), x) {
        // SAFETY: in place: one region valid for reads and writes of `len` floats.
        let s = unsafe { std::slice::from_raw_parts_mut(out, len) };
        vmath::map_pointwise(f, Block::InPlace(s));
    } else {
        // SAFETY: the caller guarantees both regions and that they are disjoint.
        let (src, dst) = unsafe { (std::slice::from_raw_parts(x, len), std::slice::from_raw_parts_mut(out, len)) };
        vmath::map_pointwise(f, Block::Into(src, dst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_every_function() {
        let extra = [
            Pointwise::Elu { alpha: 0.3 },
            Pointwise::Gelu { approximate: GeluApproximate::Tanh },
            Pointwise::Hardtanh { min_val: -2.0, max_val: 3.0 },
            Pointwise::Softplus { beta: 2.0, threshold: 5.0 },
        ];
        for f in Pointwise::ALL_DEFAULTS.into_iter().chain(extra) {
            let (c, a, b) = encode(f);
            assert_eq!(decode(c, a, b), Some(f));
        }
        assert_eq!(decode(11, 0.0, 0.0), None);
    }

    #[test]
    fn helper_in_place_and_out_of_place() {
        let x = [-2.0f32, -0.5, 0.0, 1.5];
        let (c, a, b) = encode(Pointwise::Silu);
        let mut out = [0.0f32; 4];
        // SAFETY: both arrays hold the 4 floats passed; they are disjoint.
        unsafe { helper_pointwise(out.as_mut_ptr(), x.as_ptr(), 4, c, a, b) };
        let mut inplace = x;
        // SAFETY: in place over the 4 floats of `inplace`.
        unsafe { helper_pointwise(inplace.as_mut_ptr(), inplace.as_ptr(), 4, c, a, b) };
        for i in 0..4 {
            assert!((out[i] - Pointwise::Silu.apply(x[i])).abs() < 1e-6);
            assert_eq!(inplace[i], out[i]);
        }
    }
}
