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
        // The first operand's shape (empty when there is none).
        let input_shape = || -> Result<Vec<usize>> {
            match graph.operands(id).first() {
                Some(&o) => operand_shape(graph, id, o),
                None => Ok(Vec::new()),
            }
        };
        let in_channels = || -> Result<u128> {
            let s = input_shape()?;
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
            // At most four per-channel tensors (an estimate for the memory limit).
            Op::LazyBatchNorm2d { .. }
            | Op::BatchNorm2d { .. }
            | Op::LazyInstanceNorm2d { .. }
            | Op::InstanceNorm2d { .. } => 4 * in_channels()?,
            Op::GroupNorm { num_channels, .. } => 2 * *num_channels as u128,
            Op::LazyBatchNorm1d { .. } | Op::BatchNorm1d { .. } => {
                4 * input_shape()?.get(1).copied().unwrap_or(0) as u128
            }
            Op::LazyLinear { params } | Op::Linear { params, .. } => {
                let fin = input_shape()?.last().copied().unwrap_or(0) as u128;
                fin * params.out_features as u128 + if params.bias { params.out_features as u128 } else { 0 }
            }
            Op::Flatten { .. } | Op::Unflatten { .. } | Op::Reshape { .. } => 0,
            Op::PRelu { num_parameters, .. } => *num_parameters as u128,
            Op::Input
            | Op::Output
            | Op::Relu
            | Op::LeakyRelu { .. }
            | Op::Tanh
            | Op::Sigmoid
            | Op::Pointwise { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. }
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Scalar { .. }
            | Op::Cat { .. }
            | Op::Narrow { .. }
            | Op::Concat => 0,
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

/// Multiply-add FLOPs (2 per MAC) of the convolutions of a graph with inferred
/// shapes: `2·N·C_in·(C_out/g)·kH·kW·H_in·W_in` for a transposed convolution
/// (every input pixel meets every tap) and `2·N·C_out·(C_in/g)·kH·kW·H_out·W_out`
/// for a convolution. Elementwise ops are not counted.
pub fn flops(graph: &Graph) -> Result<u128> {
    let mut total = 0u128;
    for id in graph.node_ids() {
        let node = graph.node(id);
        let (input, output) = match node.op() {
            Op::LazyLinear { params } | Op::Linear { params, .. } => {
                // 2·M·in·out for an input [*, in] flattened to M rows.
                let Some(&o) = graph.operands(id).first() else { continue };
                let s = operand_shape(graph, id, o)?;
                let m: u128 = s.iter().map(|&d| d as u128).product();
                total = total.saturating_add(2 * m.saturating_mul(params.out_features as u128));
                continue;
            }
            Op::LazyConvTranspose2d { .. } | Op::ConvTranspose2d { .. } | Op::LazyConv2d { .. } | Op::Conv2d { .. } => {
                let Some(&o) = graph.operands(id).first() else { continue };
                let output = node.shape().as_known().ok_or_else(|| PassError::Unresolved {
                    node: node.name().into(),
                    reason: "has no inferred shape; run ShapeInference first".into(),
                })?;
                (operand_shape(graph, id, o)?, output)
            }
            // Elementwise work is not counted (see the docs above).
            Op::LazyBatchNorm2d { .. }
            | Op::BatchNorm2d { .. }
            | Op::LazyBatchNorm1d { .. }
            | Op::BatchNorm1d { .. }
            | Op::LazyInstanceNorm2d { .. }
            | Op::InstanceNorm2d { .. }
            | Op::GroupNorm { .. }
            | Op::Flatten { .. }
            | Op::Unflatten { .. }
            | Op::Reshape { .. }
            | Op::Input
            | Op::Output
            | Op::Relu
            | Op::LeakyRelu { .. }
            | Op::Tanh
            | Op::Sigmoid
            | Op::Pointwise { .. }
            | Op::PRelu { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. }
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Scalar { .. }
            | Op::Cat { .. }
            | Op::Narrow { .. }
            | Op::Concat => continue,
        };
        // A graph read from graph JSON may declare any rank: refuse, don't index.
        if input.len() < 3 || output.len() < 3 {
            return Err(PassError::Unresolved {
                node: node.name().into(),
                reason: format!(
                    "a convolution needs [C, H, W] or [N, C, H, W] shapes, got input {input:?} and result {output:?}"
                ),
            });
        }
        let n: u128 = input[..input.len() - 3].iter().map(|&d| d as u128).product();
        let dims = |s: &[usize]| -> [u128; 3] {
            let r = s.len();
            [s[r - 3] as u128, s[r - 2] as u128 * s[r - 1] as u128, 0]
        };
        let ([cin, hw_in, _], [cout, hw_out, _]) = (dims(&input), dims(&output));
        total += match node.op() {
            Op::LazyConvTranspose2d { params } | Op::ConvTranspose2d { params, .. } => {
                2 * n * cin * (cout / params.groups.max(1) as u128) * k2(params.kernel_size) * hw_in
            }
            Op::LazyConv2d { params } | Op::Conv2d { params, .. } => {
                2 * n * cout * (cin / params.groups.max(1) as u128) * k2(params.kernel_size) * hw_out
            }
            // Counted above.
            Op::LazyLinear { .. } | Op::Linear { .. } => 0,
            Op::LazyBatchNorm2d { .. }
            | Op::BatchNorm2d { .. }
            | Op::LazyBatchNorm1d { .. }
            | Op::BatchNorm1d { .. }
            | Op::LazyInstanceNorm2d { .. }
            | Op::InstanceNorm2d { .. }
            | Op::GroupNorm { .. }
            | Op::Flatten { .. }
            | Op::Unflatten { .. }
            | Op::Reshape { .. }
            | Op::Input
            | Op::Output
            | Op::Relu
            | Op::LeakyRelu { .. }
            | Op::Tanh
            | Op::Sigmoid
            | Op::Pointwise { .. }
            | Op::PRelu { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. }
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Scalar { .. }
            | Op::Cat { .. }
            | Op::Narrow { .. }
            | Op::Concat => 0,
        };
    }
    Ok(total)
}

fn k2(p: kiln_ir::Pair2) -> u128 {
    p.h as u128 * p.w as u128
}

#[cfg(test)]
mod flop_tests {
    use super::*;
    use crate::{Pass, ShapeInference};
    use kiln_ir::{Conv2dParams, ConvTranspose2dParams, GraphBuilder};

    #[test]
    fn matches_the_benchmark_formula() {
        // dcgan2 of shapes.json: 16x512x4x4 -> 256, k4 s2 p1: 1073741824 FLOPs.
        let mut b = GraphBuilder::new("f");
        let x = b.input("x", [16, 512, 4, 4]).unwrap();
        let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(256, 4).stride(2).padding(1)).unwrap();
        b.lazy_conv2d("c", up, Conv2dParams::new(8, 3).padding(1).groups(2)).unwrap();
        let mut g = b.finish().unwrap();
        ShapeInference.run(&mut g).unwrap();
        let conv = 2 * 16 * 8 * (256 / 2) * 9 * 64;
        assert_eq!(flops(&g).unwrap(), 1_073_741_824 + conv);
    }

    #[test]
    fn low_rank_declared_shapes_are_an_error_not_a_panic() {
        // Found by kiln-fuzz (graph-json): a conv2d whose declared result is
        // [1, 2] made `flops` index shape[r - 3] with r = 2.
        let json = r#"{"name": null, "inputs": ["x"], "outputs": ["@out0"], "nodes": [
            {"name": "x", "op": {"kind": "input"}, "operands": [], "shape": [1, 6, 1, 1]},
            {"name": "n0", "op": {"kind": "conv2d", "in_channels": 6, "params": {"out_channels": 12,
              "kernel_size": {"h": 1, "w": 2}, "stride": {"h": 4, "w": 3}, "padding": {"h": 0, "w": 3},
              "dilation": {"h": 2, "w": 1}, "groups": 6, "bias": true, "padding_mode": "zeros"}},
             "operands": ["x"], "shape": [1, 2]},
            {"name": "@out0", "op": {"kind": "output"}, "operands": ["n0"], "shape": [1, 2]}]}"#;
        let g = kiln_ir::Graph::from_json(json).unwrap();
        let e = flops(&g).unwrap_err().to_string();
        assert!(e.contains("n0"), "{e}");
    }
}
