//! A builder that reads like a PyTorch model definition.
//!
//! ```
//! use kiln_ir::{ConvTranspose2dParams, GraphBuilder};
//! # fn main() -> Result<(), kiln_ir::IrError> {
//! let mut b = GraphBuilder::new("decoder");
//! let x = b.input("x", [3, 48, 5, 6])?;
//! let h = b.lazy_conv_transpose2d("up1", x, ConvTranspose2dParams::new(24, 3).stride(2).padding(1).output_padding(1))?;
//! let h = b.leaky_relu("act1", h, 0.2)?;
//! let graph = b.finish()?; // the last node is the output unless `output` was called
//! assert!(graph.has_lazy_nodes());
//! # Ok(()) }
//! ```

use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Op};
use crate::shape::{Dim, Shape};

/// Builds a [`Graph`] node by node; every call validates what it adds.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    last: Option<NodeId>,
}

impl GraphBuilder {
    /// Starts a named graph.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder { graph: Graph::with_name(name), last: None }
    }

    /// Adds a graph input of a fully known shape.
    pub fn input(&mut self, name: &str, shape: impl AsRef<[usize]>) -> Result<NodeId> {
        self.graph.add_input(name, Shape::known(shape.as_ref()))
    }

    /// Adds a graph input whose dims may be open (`Dim::Unknown`, `null` in
    /// the model file): `b.input_dims("x", [Dim::Unknown, Dim::Unknown, 64.into(), 64.into()])`
    /// takes any batch and channel count, bound when the model runs.
    pub fn input_dims(&mut self, name: &str, dims: impl Into<Vec<Dim>>) -> Result<NodeId> {
        self.graph.add_input(name, Shape::Ranked(dims.into()))
    }

    /// Adds any op over `operands`.
    pub fn node(&mut self, name: &str, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        let id = self.graph.add_node(name, op, operands)?;
        self.last = Some(id);
        Ok(id)
    }

    /// `nn.LazyConvTranspose2d(...)(x)`.
    pub fn lazy_conv_transpose2d(&mut self, name: &str, x: NodeId, params: ConvTranspose2dParams) -> Result<NodeId> {
        self.node(name, Op::LazyConvTranspose2d { params }, &[x])
    }

    /// `nn.ConvTranspose2d(in_channels, ...)(x)`.
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: NodeId,
        in_channels: usize,
        params: ConvTranspose2dParams,
    ) -> Result<NodeId> {
        self.node(name, Op::ConvTranspose2d { in_channels, params }, &[x])
    }

    /// `nn.LazyConv2d(...)(x)`.
    pub fn lazy_conv2d(&mut self, name: &str, x: NodeId, params: Conv2dParams) -> Result<NodeId> {
        self.node(name, Op::LazyConv2d { params }, &[x])
    }

    /// `nn.LazyBatchNorm2d(...)(x)` (eval mode).
    pub fn lazy_batch_norm2d(&mut self, name: &str, x: NodeId, params: BatchNorm2dParams) -> Result<NodeId> {
        self.node(name, Op::LazyBatchNorm2d { params }, &[x])
    }

    /// `nn.ReLU()(x)`.
    pub fn relu(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.node(name, Op::Relu, &[x])
    }

    /// `nn.LeakyReLU(negative_slope)(x)`.
    pub fn leaky_relu(&mut self, name: &str, x: NodeId, negative_slope: f32) -> Result<NodeId> {
        self.node(name, Op::LeakyRelu { negative_slope }, &[x])
    }

    /// `nn.Tanh()(x)`.
    pub fn tanh(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.node(name, Op::Tanh, &[x])
    }

    /// `nn.Sigmoid()(x)`.
    pub fn sigmoid(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.node(name, Op::Sigmoid, &[x])
    }

    /// A pointwise activation (`nn.ELU`, `nn.GELU`, ...).
    pub fn pointwise(&mut self, name: &str, x: NodeId, f: crate::Pointwise) -> Result<NodeId> {
        self.node(name, Op::Pointwise { f }, &[x])
    }

    /// `nn.PReLU(num_parameters, init=0.25)(x)`.
    pub fn prelu(&mut self, name: &str, x: NodeId, num_parameters: usize) -> Result<NodeId> {
        self.node(name, Op::PRelu { num_parameters, init: 0.25 }, &[x])
    }

    /// `nn.Identity()(x)`.
    pub fn identity(&mut self, name: &str, x: NodeId) -> Result<NodeId> {
        self.node(name, Op::Identity, &[x])
    }

    /// `nn.Dropout(p)(x)` (the identity in eval mode).
    pub fn dropout(&mut self, name: &str, x: NodeId, p: f32) -> Result<NodeId> {
        self.node(name, Op::Dropout { p }, &[x])
    }

    /// `nn.LazyLinear(params)(x)`.
    pub fn lazy_linear(&mut self, name: &str, x: NodeId, params: crate::LinearParams) -> Result<NodeId> {
        self.node(name, Op::LazyLinear { params }, &[x])
    }

    /// `nn.LazyInstanceNorm2d(**params)(x)`.
    pub fn lazy_instance_norm2d(&mut self, name: &str, x: NodeId, params: crate::InstanceNormParams) -> Result<NodeId> {
        self.node(name, Op::LazyInstanceNorm2d { params }, &[x])
    }

    /// `nn.GroupNorm(num_groups, num_channels)(x)` with `eps = 1e-5`, affine.
    pub fn group_norm(&mut self, name: &str, x: NodeId, num_groups: usize, num_channels: usize) -> Result<NodeId> {
        self.node(name, Op::GroupNorm { num_groups, num_channels, eps: 1e-5, affine: true }, &[x])
    }

    /// `torch.reshape(x, shape)` (one `-1` allowed).
    pub fn reshape(&mut self, name: &str, x: NodeId, shape: &[i64]) -> Result<NodeId> {
        self.node(name, Op::Reshape { shape: shape.to_vec() }, &[x])
    }

    /// A pooling, padding or upsampling op (`Op::MaxPool2d`, `Op::Pad2d`, ...).
    pub fn spatial(&mut self, name: &str, x: NodeId, op: Op) -> Result<NodeId> {
        self.node(name, op, &[x])
    }

    /// `a + b`.
    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.node(name, Op::Add, &[a, b])
    }

    /// `torch.cat(xs, dim=1)`.
    pub fn concat(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId> {
        self.node(name, Op::Concat, xs)
    }

    /// Marks a value as a graph output (call order is output order).
    pub fn output(&mut self, value: NodeId) -> Result<()> {
        self.graph.add_output(value).map(|_| ())
    }

    /// Validates and returns the graph; without any `output` call, the last
    /// node added is the output (as an `nn.Sequential` returns its last module).
    pub fn finish(mut self) -> Result<Graph> {
        if self.graph.outputs().is_empty() {
            if let Some(last) = self.last {
                self.graph.add_output(last)?;
            }
        }
        self.graph.validate()?;
        Ok(self.graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IrError;

    #[test]
    fn builds_a_lazy_decoder() {
        let mut b = GraphBuilder::new("d");
        let x = b.input("x", [1, 8, 4, 4]).unwrap();
        let skip = b.input("skip", [1, 4, 8, 8]).unwrap();
        let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(4, 2).stride(2)).unwrap();
        let cat = b.concat("cat", &[up, skip]).unwrap();
        let c = b.lazy_conv2d("conv", cat, Conv2dParams::new(4, 3).padding(1)).unwrap();
        let bn = b.lazy_batch_norm2d("bn", c, BatchNorm2dParams::default()).unwrap();
        let r = b.relu("act", bn).unwrap();
        let s = b.add("res", r, up).unwrap();
        b.sigmoid("out", s).unwrap();
        let g = b.finish().unwrap();
        assert_eq!(g.output_values(), [g.lookup("out").unwrap()]);
        assert_eq!(g.node_count(), 10);
    }

    #[test]
    fn errors_surface_at_the_call() {
        let mut b = GraphBuilder::new("d");
        let x = b.input("x", [1, 3, 4, 4]).unwrap();
        let e = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(3, 3).groups(2)).unwrap_err();
        assert!(matches!(e, IrError::NotDivisibleByGroups { .. }));
    }

    #[test]
    fn graph_without_nodes_has_no_output() {
        let mut b = GraphBuilder::new("d");
        b.input("x", [1]).unwrap();
        assert_eq!(b.finish().unwrap_err(), IrError::Empty("output"));
    }
}
