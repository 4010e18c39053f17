//! Tensor shapes whose dimensions may not be known yet.
//!
//! Before shape propagation a lazy node's result has no known rank at all
//! (`f32[?]`); a graph input has a fully known shape. Only the shape pass turns
//! unknowns into knowns. This module is plain data: no shape arithmetic lives
//! here (that belongs to `kiln-passes`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One dimension of a shape: known, or not yet inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Option<usize>", into = "Option<usize>")]
pub enum Dim {
    /// A dimension whose size is known.
    Known(usize),
    /// A dimension that shape inference has not resolved yet.
    Unknown,
}

impl Dim {
    /// The size, if known.
    pub fn known(self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(n),
            Dim::Unknown => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Known(n)
    }
}

impl From<Option<usize>> for Dim {
    fn from(n: Option<usize>) -> Self {
        n.map_or(Dim::Unknown, Dim::Known)
    }
}

impl From<Dim> for Option<usize> {
    fn from(d: Dim) -> Self {
        d.known()
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The shape of an f32 tensor: unranked (nothing known) or a list of dims.
///
/// Serialized as `null` (unranked) or a list whose unknown entries are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "Option<Vec<Dim>>", into = "Option<Vec<Dim>>")]
pub enum Shape {
    /// Not even the rank is known (the result of a lazy node before inference).
    #[default]
    Unranked,
    /// A shape of known rank; each dim may still be unknown.
    Ranked(Vec<Dim>),
}

impl Shape {
    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Self {
        Shape::Ranked(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// The rank, if known.
    pub fn rank(&self) -> Option<usize> {
        match self {
            Shape::Unranked => None,
            Shape::Ranked(d) => Some(d.len()),
        }
    }

    /// The dims, if the rank is known.
    pub fn dims(&self) -> Option<&[Dim]> {
        match self {
            Shape::Unranked => None,
            Shape::Ranked(d) => Some(d),
        }
    }

    /// The sizes if every dimension is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.dims()?.iter().map(|d| d.known()).collect()
    }

    /// True when the rank and every dimension are known.
    pub fn is_fully_known(&self) -> bool {
        self.as_known().is_some()
    }

    /// Number of elements, if fully known and it fits in `usize`.
    pub fn num_elements(&self) -> Option<usize> {
        self.as_known()?.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape::known(&d)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::known(d)
    }
}

impl From<Option<Vec<Dim>>> for Shape {
    fn from(d: Option<Vec<Dim>>) -> Self {
        d.map_or(Shape::Unranked, Shape::Ranked)
    }
}

impl From<Shape> for Option<Vec<Dim>> {
    fn from(s: Shape) -> Self {
        match s {
            Shape::Unranked => None,
            Shape::Ranked(d) => Some(d),
        }
    }
}

/// Prints `f32[2, ?, 4, 4]`, or `f32[?]` when the rank is unknown.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Unranked => f.write_str("f32[?]"),
            Shape::Ranked(dims) => {
                f.write_str("f32[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        assert_eq!(Shape::Unranked.to_string(), "f32[?]");
        assert_eq!(Shape::Ranked(vec![Dim::Known(2), Dim::Unknown]).to_string(), "f32[2, ?]");
        assert_eq!(Shape::known(&[]).to_string(), "f32[]");
    }

    #[test]
    fn element_count_overflow_is_none() {
        assert_eq!(Shape::known(&[2, 3]).num_elements(), Some(6));
        assert_eq!(Shape::known(&[usize::MAX, 2]).num_elements(), None);
        assert_eq!(Shape::Ranked(vec![Dim::Unknown]).num_elements(), None);
    }

    #[test]
    fn serde_uses_null_for_unknown() {
        let s = Shape::Ranked(vec![Dim::Known(3), Dim::Unknown]);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "[3,null]");
        assert_eq!(serde_json::from_str::<Shape>(&j).unwrap(), s);
        assert_eq!(serde_json::from_str::<Shape>("null").unwrap(), Shape::Unranked);
    }
}
