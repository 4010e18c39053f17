//! `ShapeInference`: gives every value a fully known shape, walking the graph
//! in topological order with one pure shape function per op
//! ([`crate::shape_fns`]). Lazy ops learn their input channel count here, but
//! are rewritten only by [`crate::ResolveLazy`].

use kiln_ir::{Graph, NodeId, Op, Shape};

use crate::error::{PassError, Result};
use crate::pass::{Changed, Pass};
use crate::shape_fns;
use crate::spatial_shapes;

/// Infers all shapes from the graph inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShapeInference;

/// The fully known shape of operand `o` of `node`.
pub(crate) fn operand_shape(graph: &Graph, node: NodeId, o: NodeId) -> Result<Vec<usize>> {
    graph.node(o).shape().as_known().ok_or_else(|| PassError::ShapeNotInferred {
        node: graph.node(node).name().into(),
        operand: graph.node(o).name().into(),
    })
}

/// The output shape of one node given its operands' (already inferred) shapes.
pub fn infer_node(graph: &Graph, id: NodeId) -> Result<Vec<usize>> {
    let node = graph.node(id);
    let name = node.name();
    let op = node.op();
    let class = op.class_name();
    let operands = graph.operands(id);
    let shapes: Vec<Vec<usize>> = operands.iter().map(|&o| operand_shape(graph, id, o)).collect::<Result<_>>()?;
    let first = || {
        shapes.first().cloned().ok_or_else(|| kiln_ir::IrError::OperandCount {
            node: name.into(),
            op: class,
            expected: "1",
            got: 0,
        })
    };
    Ok(match op {
        Op::Input => match node.shape() {
            kiln_ir::Shape::Unranked => {
                return Err(
                    kiln_ir::IrError::InvalidInputShape { node: name.into(), shape: node.shape().to_string() }.into()
                )
            }
            s => s.as_known().ok_or_else(|| PassError::OpenInput { input: name.into(), shape: s.to_string() })?,
        },
        Op::LazyConvTranspose2d { params } => shape_fns::conv_transpose2d(name, class, &first()?, None, params)?.output,
        Op::ConvTranspose2d { in_channels, params } => {
            shape_fns::conv_transpose2d(name, class, &first()?, Some(*in_channels), params)?.output
        }
        Op::LazyConv2d { params } => shape_fns::conv2d(name, class, &first()?, None, params)?.1,
        Op::Conv2d { in_channels, params } => shape_fns::conv2d(name, class, &first()?, Some(*in_channels), params)?.1,
        Op::LazyBatchNorm2d { .. } => {
            let s = first()?;
            shape_fns::batch_norm2d(name, class, &s, None)?;
            s
        }
        Op::BatchNorm2d { num_features, .. } => {
            let s = first()?;
            shape_fns::batch_norm2d(name, class, &s, Some(*num_features))?;
            s
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Tanh
        | Op::Sigmoid
        | Op::Pointwise { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Output => first()?,
        // `nn.Dropout2d` zeroes whole channels: PyTorch warns on other ranks
        // but runs them, and in eval mode it is the identity on any shape.
        Op::Dropout2d { .. } => first()?,
        Op::MaxPool2d { params } | Op::AvgPool2d { params, .. } => {
            spatial_shapes::pool2d(name, class, &first()?, params)?
        }
        Op::AdaptiveAvgPool2d { output_size } => {
            spatial_shapes::adaptive_avg_pool2d(name, class, &first()?, *output_size)?
        }
        Op::Pad2d { padding, mode } => {
            spatial_shapes::pad2d(name, class, &first()?, *padding, *mode == kiln_ir::PadMode::Reflect)?
        }
        Op::Upsample { params } => spatial_shapes::upsample(name, class, &first()?, params)?,
        Op::PixelShuffle { factor, direction } => {
            spatial_shapes::pixel_shuffle(name, class, &first()?, *factor, *direction)?
        }
        Op::LazyLinear { params } => shape_fns::linear(name, class, &first()?, None, params.out_features)?.1,
        Op::Linear { in_features, params } => {
            shape_fns::linear(name, class, &first()?, Some(*in_features), params.out_features)?.1
        }
        Op::LazyBatchNorm1d { .. } => {
            let s = first()?;
            shape_fns::batch_norm1d(name, class, &s, None)?;
            s
        }
        Op::BatchNorm1d { num_features, .. } => {
            let s = first()?;
            shape_fns::batch_norm1d(name, class, &s, Some(*num_features))?;
            s
        }
        Op::LazyInstanceNorm2d { params } => {
            let s = first()?;
            shape_fns::instance_norm2d(name, class, &s, None, params.affine || params.track_running_stats)?;
            s
        }
        Op::InstanceNorm2d { num_features, params } => {
            let s = first()?;
            shape_fns::instance_norm2d(
                name,
                class,
                &s,
                Some(*num_features),
                params.affine || params.track_running_stats,
            )?;
            s
        }
        Op::GroupNorm { num_channels, .. } => {
            let s = first()?;
            shape_fns::group_norm(name, class, &s, *num_channels)?;
            s
        }
        Op::Cat { dim } => {
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            let s = first()?;
            shape_fns::reshaped(name, class, kiln_ir::reshape::cat(&refs, *dim), &s)?
        }
        Op::Narrow { dim, start, length } => {
            let s = first()?;
            shape_fns::reshaped(name, class, kiln_ir::reshape::narrow(&s, *dim, *start, *length), &s)?
        }
        Op::Flatten { start_dim, end_dim } => {
            let s = first()?;
            shape_fns::reshaped(name, class, kiln_ir::reshape::flatten(&s, *start_dim, *end_dim), &s)?
        }
        Op::Unflatten { dim, sizes } => {
            let s = first()?;
            shape_fns::reshaped(name, class, kiln_ir::reshape::unflatten(&s, *dim, sizes), &s)?
        }
        Op::Reshape { shape } => {
            let s = first()?;
            shape_fns::reshaped(name, class, kiln_ir::reshape::reshape(&s, shape), &s)?
        }
        Op::PRelu { num_parameters, .. } => {
            let s = first()?;
            shape_fns::prelu(name, class, &s, *num_parameters)?;
            s
        }
        Op::Scalar { .. } => first()?,
        Op::Add | Op::Sub | Op::Mul => match shapes.as_slice() {
            [a, b] => shape_fns::broadcast(name, class, a, b)?,
            _ => {
                return Err(kiln_ir::IrError::OperandCount {
                    node: name.into(),
                    op: class,
                    expected: "2",
                    got: shapes.len(),
                }
                .into())
            }
        },
        Op::Concat => {
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            shape_fns::concat(name, &refs)?
        }
    })
}

/// A 3-D tensor refused by a 4-D-only op (BatchNorm2d, Concat) almost always
/// comes from a graph input declared without its batch dimension (the
/// convolutions before it accept unbatched input, as PyTorch's do): blame the
/// input, not the first op that needs the batch.
fn blame_unbatched_input(graph: &Graph, e: PassError) -> PassError {
    let PassError::Rank { node, op, shape, .. } = &e else { return e };
    if shape.len() != 3 {
        return e;
    }
    let Some(&input) = graph.inputs().iter().find(|&&i| graph.node(i).shape().rank() == Some(3)) else { return e };
    let input_node = graph.node(input);
    PassError::UnbatchedInput {
        input: input_node.name().into(),
        shape: input_node.shape().as_known().unwrap_or_default(),
        node: node.clone(),
        op,
    }
}

impl Pass for ShapeInference {
    fn name(&self) -> &'static str {
        "shape-inference"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<Changed> {
        graph.validate()?;
        let mut changed = Changed::No;
        for id in graph.topo_order()? {
            let shape = Shape::known(&infer_node(graph, id).map_err(|e| blame_unbatched_input(graph, e))?);
            if *graph.node(id).shape() != shape {
                graph.set_shape(id, shape);
                changed = Changed::Yes;
            }
        }
        Ok(changed)
    }
}
