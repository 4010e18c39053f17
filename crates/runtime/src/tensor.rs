//! The runtime's tensor type and small helpers around it: construction from
//! data with a checked shape, C-contiguous copies, comparisons for tests and a
//! seeded random source.
//!
//! [`Tensor`] is plain `ndarray::ArrayD<f32>`; nothing here wraps it, so every
//! `ndarray` operation stays available. Tensors produced by this crate are
//! C-contiguous (standard layout); tensors passed in may have any layout.
//! [`Rng`] is SplitMix64: small, deterministic across platforms, and not
//! cryptographic; it exists so tests and benchmarks can make reproducible data
//! without another dependency. It is not PyTorch's generator: it cannot
//! reproduce PyTorch's random weights.

use ndarray::{ArrayD, IxDyn};

use crate::error::{fmt_shape, Result, RuntimeError};

/// An f32 tensor of any rank (`[N, C, H, W]` or unbatched `[C, H, W]`).
pub type Tensor = ArrayD<f32>;

/// The element count of `shape`, or `None` if it overflows `usize`.
pub fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A C-contiguous tensor from `data` in row-major order. Fails (naming both
/// counts) when `data.len()` is not the shape's element count.
pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    let expected = checked_len(shape);
    if expected != Some(data.len()) {
        return Err(RuntimeError::TensorData {
            file: "<memory>".into(),
            key: "<tensor>".into(),
            shape: fmt_shape(shape),
            reason: match expected {
                Some(n) => format!("expected {n} values, got {}", data.len()),
                None => "the element count overflows".into(),
            },
        });
    }
    // The length was checked above, so this cannot fail; map the error anyway
    // rather than unwrap.
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| RuntimeError::TensorData {
        file: "<memory>".into(),
        key: "<tensor>".into(),
        shape: fmt_shape(shape),
        reason: e.to_string(),
    })
}

/// A tensor of zeros.
///
/// # Panics
/// If the element count overflows (as `ndarray` does); use [`checked_len`]
/// first for untrusted shapes.
pub fn zeros(shape: &[usize]) -> Tensor {
    ArrayD::zeros(IxDyn(shape))
}

/// `t` itself if it is already C-contiguous, else a C-contiguous copy.
pub fn into_contiguous(t: Tensor) -> Tensor {
    if t.is_standard_layout() {
        t
    } else {
        t.as_standard_layout().into_owned()
    }
}

/// The values of `t` in row-major (logical C) order, whatever its layout.
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    t.iter().copied().collect()
}

/// `max |t|` (0 for an empty tensor; NaN entries are ignored).
pub fn max_abs(t: &Tensor) -> f32 {
    t.iter().fold(0.0f32, |m, &v| if v.abs() > m { v.abs() } else { m })
}

/// `max |a - b|` over all elements, or `None` if the shapes differ.
///
/// NaN is treated as a value: two NaNs at one position agree (difference 0);
/// a NaN against a number is an infinite difference, so a comparison against
/// any finite tolerance fails.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Option<f32> {
    if a.shape() != b.shape() {
        return None;
    }
    let diff = a.iter().zip(b.iter()).fold(0.0f32, |m, (&x, &y)| {
        let d = match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) if x == y => 0.0, // also equal infinities
            (false, false) => (x - y).abs(),
            _ => f32::INFINITY,
        };
        // `d` is never NaN: equal infinities were handled above.
        m.max(d)
    });
    Some(diff)
}

/// The golden tolerance `rel * max(1, max|expected|)`: an absolute error
/// bound that scales with the magnitude of the expected values.
pub fn tolerance(expected: &Tensor, rel: f32) -> f32 {
    rel * max_abs(expected).max(1.0)
}

/// Checks `actual` against `expected` with [`tolerance`]`(expected, rel)`;
/// the error says the shapes or the worst difference and the bound.
pub fn check_close(actual: &Tensor, expected: &Tensor, rel: f32) -> std::result::Result<f32, String> {
    let Some(diff) = max_abs_diff(actual, expected) else {
        return Err(format!("shape {:?} differs from expected {:?}", actual.shape(), expected.shape()));
    };
    let tol = tolerance(expected, rel);
    if diff <= tol {
        Ok(diff)
    } else {
        Err(format!("max abs difference {diff:e} exceeds tolerance {tol:e}"))
    }
}

/// Kiln's seeded generator (SplitMix64), shared with parameter initialization.
pub use kiln_ir::rng::SplitMix64 as Rng;

/// Random tensors from an [`Rng`].
pub trait RandomTensor {
    /// A C-contiguous tensor of `shape` with values uniform in `[-1, 1)`.
    ///
    /// # Panics
    /// If the element count overflows (see [`zeros`]).
    fn tensor(&mut self, shape: &[usize]) -> Tensor;
}

impl RandomTensor for Rng {
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        // In [-1, 1): 2u - 1 with u a multiple of 2^-24 in [0, 1) is exact.
        ArrayD::from_shape_simple_fn(IxDyn(shape), || 2.0 * self.next_f32() - 1.0)
    }
}

/// A C-contiguous tensor of `shape` with values uniform in `[-1, 1)` from a
/// fresh [`Rng`] seeded with `seed`.
///
/// # Panics
/// If the element count overflows (see [`zeros`]).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    Rng::new(seed).tensor(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    #[test]
    fn from_vec_checks_length() {
        let t = from_vec(&[2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        assert_eq!(t[[1, 2]], 5.0);
        let e = from_vec(&[2, 3], vec![0.0; 5]).unwrap_err();
        assert!(e.to_string().contains("expected 6 values, got 5"), "{e}");
        assert!(from_vec(&[usize::MAX, 2], vec![]).is_err());
    }

    #[test]
    fn contiguous_copies_only_when_needed() {
        let t = from_vec(&[2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let tt = t.clone().reversed_axes();
        assert!(!tt.is_standard_layout());
        let c = into_contiguous(tt.clone());
        assert!(c.is_standard_layout());
        assert_eq!(c, tt);
        assert_eq!(to_vec(&tt), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn comparisons() {
        let a = from_vec(&[3], vec![1.0, -4.0, f32::NAN]).unwrap();
        let mut b = a.clone();
        assert_eq!(max_abs_diff(&a, &b), Some(0.0));
        b[[0]] = 1.5;
        assert_eq!(max_abs_diff(&a, &b), Some(0.5));
        b[[2]] = 0.0;
        assert_eq!(max_abs_diff(&a, &b), Some(f32::INFINITY));
        assert_eq!(max_abs_diff(&a, &a.clone().insert_axis(Axis(0))), None);
        assert_eq!(max_abs(&a), 4.0);
        assert_eq!(tolerance(&a, 1e-4), 4e-4);
        let ok = from_vec(&[3], vec![1.0, -4.0, f32::NAN]).unwrap();
        assert!(check_close(&a, &ok, 1e-4).is_ok());
        assert!(check_close(&a, &b, 1e-4).unwrap_err().contains("exceeds tolerance"));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let a = random(&[4, 5, 6], 7);
        let b = random(&[4, 5, 6], 7);
        let c = random(&[4, 5, 6], 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&v| (-1.0..1.0).contains(&v)));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.2, "{mean}");
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let v = r.uniform(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&v));
        }
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
