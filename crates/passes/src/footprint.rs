//! How much memory a graph's tensors need, computed from inferred shapes
//! before any parameter is materialized, so callers can refuse a model that
//! would not fit instead of failing inside an allocation.

use kiln_ir::{Graph, Op};

use crate::error::{PassError, Result};
use crate::shape_inference::operand_shape;

/// Element counts of a graph's tensors (f32, 4 bytes each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Elements of all parameters.
    pub param_elements: u128,
    /// Elements of all values (inputs and every node's result).
    pub value_elements: u128,
}

impl Footprint {
    /// Total bytes if every tensor were live at once (an upper bound).
    pub fn total_bytes(&self) -> u128 {
        (self.param_elements + self.value_elements) * 4
    }
}

/// The footprint of a graph whose shapes have been inferred (lazy nodes may
/// still be lazy: their parameter sizes follow from their operands' shapes).
pub fn footprint(graph: &Graph) -> Result<Footprint> {
    let mut f = Footprint::default();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if matches!(node.op(), Op::Output) {
            continue;
        }
        let shape = node.shape().as_known().ok_or_else(|| PassError::Unresolved {
            node: node.name().into(),
            reason: "has no inferred shape; run ShapeInference first".into(),
        })?;
        f.value_elements += shape.iter().map(|&d| d as u128).product::<u128>();
        let in_channels = || -> Result<u128> {
            let o = graph.operands(id).first().copied();
            let s = match o {
                Some(o) => operand_shape(graph, id, o)?,
                None => return Ok(0),
            };
            Ok(s.len().checked_sub(3).map_or(0, |i| s[i] as u128))
        };
        let k = |p: kiln_ir::Pair2| p.h as u128 * p.w as u128;
        f.param_elements += match node.op() {
            Op::LazyConvTranspose2d { params } | Op::ConvTranspose2d { params, .. } => {
                in_channels()? * (params.out_channels / params.groups.max(1)) as u128 * k(params.kernel_size)
                    + if params.bias { params.out_channels as u128 } else { 0 }
            }
            Op::LazyConv2d { params } | Op::Conv2d { params, .. } => {
                params.out_channels as u128 * (in_channels()? / params.groups.max(1) as u128) * k(params.kernel_size)
                    + if params.bias { params.out_channels as u128 } else { 0 }
            }
            Op::LazyBatchNorm2d { .. } | Op::BatchNorm2d { .. } => 4 * in_channels()?,
            _ => 0,
        };
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pass, ShapeInference};
    use kiln_ir::{BatchNorm2dParams, ConvTranspose2dParams, GraphBuilder};

    #[test]
    fn counts_params_and_values() {
        let mut b = GraphBuilder::new("f");
        let x = b.input("x", [2, 4, 3, 3]).unwrap();
        let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(6, 2).stride(2)).unwrap();
        b.lazy_batch_norm2d("bn", up, BatchNorm2dParams::default()).unwrap();
        let mut g = b.finish().unwrap();
        assert!(footprint(&g).is_err(), "shapes not inferred yet");
        ShapeInference.run(&mut g).unwrap();
        let f = footprint(&g).unwrap();
        assert_eq!(f.param_elements, 4 * 6 * 4 + 6 + 4 * 6);
        assert_eq!(f.value_elements, 2 * 4 * 9 + 2 * 2 * 6 * 36);
        assert_eq!(f.total_bytes(), 4 * (f.param_elements + f.value_elements));
    }
}
