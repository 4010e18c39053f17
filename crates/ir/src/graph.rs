//! The dataflow graph: nodes (an op, a result shape, attached parameters) on a
//! `petgraph` `StableDiGraph`, so rewrites keep node ids stable.
//!
//! An edge goes from an operand to its user and carries the operand's
//! position. Node names are unique: they are the state-dict prefixes
//! (`up1.weight`). Every mutation goes through [`Graph`] so the name index and
//! the invariants (valid ops, operand counts, no dangling operands) hold;
//! acyclicity is checked by [`Graph::topo_order`] and [`Graph::validate`],
//! because deserialized graphs may reference nodes in any order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use ndarray::ArrayD;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::error::{IrError, Result};
use crate::op::Op;
use crate::shape::{Dim, Shape};

/// A node's contents before insertion: name, op, shape, parameters.
pub(crate) type NodeParts = (String, Op, Shape, BTreeMap<String, ArrayD<f32>>);

/// A node's stable id.
pub type NodeId = NodeIndex<u32>;

/// The prefix reserved for generated names (graph outputs are `@out0`, ...).
pub const RESERVED_PREFIX: char = '@';

/// One node: an op, the shape of its result, and its parameter tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    name: String,
    op: Op,
    shape: Shape,
    params: BTreeMap<String, ArrayD<f32>>,
    /// The node whose module this one calls again (`self.conv(x)` twice):
    /// same op, same parameters, which only that node owns in the state dict.
    module: Option<String>,
}

impl Node {
    /// The unique name (state-dict prefix).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The operation.
    pub fn op(&self) -> &Op {
        &self.op
    }
    /// The result shape (unknown until shape inference).
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// Attached parameters by PyTorch name (`weight`, `bias`, `running_mean`, ...).
    pub fn params(&self) -> &BTreeMap<String, ArrayD<f32>> {
        &self.params
    }
    /// One attached parameter.
    pub fn param(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.params.get(name)
    }
    /// The node whose module this node calls again, if it is a reuse.
    pub fn module(&self) -> Option<&str> {
        self.module.as_deref()
    }
}

/// A model as a graph of ops. See the module docs for the invariants.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    name: Option<String>,
    pub(crate) g: StableDiGraph<Node, usize, u32>,
    by_name: HashMap<String, NodeId>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

/// Structural equality: same name, nodes (in id order), operands, shapes and parameters.
impl PartialEq for Graph {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.inputs.len() == other.inputs.len()
            && self.outputs.len() == other.outputs.len()
            && self.g.node_count() == other.g.node_count()
            && self
                .node_ids()
                .zip(other.node_ids())
                .all(|(a, b)| self.g[a] == other.g[b] && self.operand_names(a) == other.operand_names(b))
            && self.inputs.iter().zip(&other.inputs).all(|(&a, &b)| self.g[a].name == other.g[b].name)
            && self.outputs.iter().zip(&other.outputs).all(|(&a, &b)| self.g[a].name == other.g[b].name)
    }
}

/// Checks that `name` can be a user-chosen node name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(RESERVED_PREFIX)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IrError::InvalidName(name.into()))
    }
}

impl Graph {
    /// An empty, unnamed graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// An empty graph with a name (printed in the text form).
    pub fn with_name(name: impl Into<String>) -> Self {
        Graph { name: Some(name.into()), ..Graph::default() }
    }

    /// The graph's name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Adds a graph input with a fully known shape of positive dims.
    pub fn add_input(&mut self, name: &str, shape: impl Into<Shape>) -> Result<NodeId> {
        check_name(name)?;
        let shape = shape.into();
        check_input_shape(name, &shape)?;
        let id = self.insert(name.to_string(), Op::Input, shape)?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Adds an op node over `operands` (in order). The op is validated, the
    /// operand count checked and every operand must exist and not be an output.
    pub fn add_node(&mut self, name: &str, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        check_name(name)?;
        if matches!(op, Op::Input | Op::Output) {
            return Err(IrError::Misplaced {
                node: name.into(),
                message: format!("{} nodes are added with add_input/add_output", op.class_name()),
            });
        }
        op.validate(name)?;
        op.check_arity(name, operands.len())?;
        for (index, &o) in operands.iter().enumerate() {
            self.check_operand(name, index, o)?;
        }
        let id = self.insert(name.to_string(), op, Shape::Unranked)?;
        for (index, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, index);
        }
        Ok(id)
    }

    /// Marks `value` as a graph output (in order of calls).
    pub fn add_output(&mut self, value: NodeId) -> Result<NodeId> {
        let name = format!("{RESERVED_PREFIX}out{}", self.outputs.len());
        self.check_operand(&name, 0, value)?;
        let id = self.insert(name, Op::Output, Shape::Unranked)?;
        self.g.add_edge(value, id, 0);
        self.outputs.push(id);
        Ok(id)
    }

    fn insert(&mut self, name: String, op: Op, shape: Shape) -> Result<NodeId> {
        if self.by_name.contains_key(&name) {
            return Err(IrError::DuplicateName(name));
        }
        let id = self.g.add_node(Node { name: name.clone(), op, shape, params: BTreeMap::new(), module: None });
        self.by_name.insert(name, id);
        Ok(id)
    }

    fn check_operand(&self, node: &str, index: usize, operand: NodeId) -> Result<()> {
        match self.g.node_weight(operand) {
            None => Err(IrError::UnknownOperand { node: node.into(), index, operand: format!("#{}", operand.index()) }),
            Some(n) if matches!(n.op, Op::Output) => Err(IrError::Misplaced {
                node: node.into(),
                message: format!("operand {index} is the graph output marker `{}`, not a value", n.name),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Looks a node up by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// Looks a node up by name, or fails with [`IrError::NoSuchNode`].
    pub fn lookup(&self, name: &str) -> Result<NodeId> {
        self.find(name).ok_or_else(|| IrError::NoSuchNode(name.into()))
    }

    /// The node with this id.
    ///
    /// # Panics
    /// If `id` does not belong to this graph (a programming error, not user input).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// The node with this id, if it exists.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(id)
    }

    /// All node ids in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// Number of nodes, including inputs and output markers.
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Graph inputs, in order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// A copy without parameter tensors: what shape inference needs (it
    /// never reads parameters), at the cost of the structure alone.
    pub fn without_params(&self) -> Graph {
        let g = self.g.map(
            |_, n| Node {
                name: n.name.clone(),
                op: n.op.clone(),
                shape: n.shape.clone(),
                params: BTreeMap::new(),
                module: n.module.clone(),
            },
            |_, &e| e,
        );
        Graph {
            name: self.name.clone(),
            g,
            by_name: self.by_name.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }
    }

    /// True when some graph input leaves a dim open (`null` in the model
    /// file): the graph then runs only after [`Graph::bind_inputs`].
    pub fn has_open_inputs(&self) -> bool {
        self.inputs.iter().any(|&i| !self.g[i].shape.is_fully_known())
    }

    /// Gives every graph input a concrete shape, in input order. Each shape
    /// must have the declared rank and agree with every declared (known)
    /// dim; open dims take any positive size. Nothing changes on error.
    /// Only the inputs are set: shape inference recomputes the rest.
    pub fn bind_inputs(&mut self, shapes: &[&[usize]]) -> Result<()> {
        if shapes.len() != self.inputs.len() {
            let names: Vec<&str> = self.inputs.iter().map(|&i| self.g[i].name.as_str()).collect();
            return Err(IrError::InputShapeCount {
                expected: self.inputs.len(),
                got: shapes.len(),
                names: names.join(", "),
            });
        }
        for (&id, got) in self.inputs.iter().zip(shapes) {
            check_binding(&self.g[id].name, &self.g[id].shape, got)?;
        }
        for (&id, got) in self.inputs.clone().iter().zip(shapes) {
            self.g[id].shape = Shape::known(got);
        }
        Ok(())
    }

    /// Output marker nodes, in order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// The values the graph returns (the operands of its output markers).
    pub fn output_values(&self) -> Vec<NodeId> {
        self.outputs.iter().filter_map(|&o| self.operands(o).first().copied()).collect()
    }

    /// A node's operands in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut ops: Vec<(usize, NodeId)> =
            self.g.edges_directed(id, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        ops.sort_unstable();
        ops.into_iter().map(|(_, n)| n).collect()
    }

    fn operand_names(&self, id: NodeId) -> Vec<&str> {
        self.operands(id).into_iter().map(|o| self.g[o].name.as_str()).collect()
    }

    /// The nodes that use `id` (each once, in id order).
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        u.sort_unstable();
        u.dedup();
        u
    }

    /// Replaces a node's op, e.g. the lazy→concrete rewrite. The new op is
    /// validated against the node's existing operands; parameters the new op
    /// does not declare are dropped.
    pub fn set_op(&mut self, id: NodeId, op: Op) -> Result<()> {
        let name = self.g[id].name.clone();
        op.validate(&name)?;
        op.check_arity(&name, self.operands(id).len())?;
        let specs = op.param_specs();
        let node = &mut self.g[id];
        node.params.retain(|k, _| specs.iter().any(|(n, _)| n == k));
        node.op = op;
        Ok(())
    }

    /// Sets a node's result shape (the shape pass's job).
    pub fn set_shape(&mut self, id: NodeId, shape: Shape) {
        self.g[id].shape = shape;
    }

    /// Attaches a parameter tensor under its PyTorch name (`weight`, `bias`, ...).
    /// The name must be one the op declares; shapes are checked by the passes,
    /// which know the resolved in_channels.
    pub fn set_param(&mut self, id: NodeId, param: &str, value: ArrayD<f32>) -> Result<()> {
        let node = &mut self.g[id];
        let specs = node.op.param_specs();
        if !specs.iter().any(|(n, _)| *n == param) {
            let expected = specs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
            return Err(IrError::UnknownParam {
                node: node.name.clone(),
                op: node.op.class_name(),
                param: param.into(),
                expected: if expected.is_empty() { "none".into() } else { expected },
            });
        }
        node.params.insert(param.to_string(), value);
        Ok(())
    }

    /// Removes and returns a parameter.
    pub fn take_param(&mut self, id: NodeId, param: &str) -> Option<ArrayD<f32>> {
        self.g[id].params.remove(param)
    }

    /// Every attached parameter as `(<node>.<param>, tensor)`, in node order.
    pub fn state_dict(&self) -> Vec<(String, &ArrayD<f32>)> {
        // A reused module's parameters belong to the node that defines it.
        self.node_ids()
            .filter(|&id| self.g[id].module.is_none())
            .flat_map(|id| {
                let n = &self.g[id];
                n.params.iter().map(move |(k, v)| (format!("{}.{}", n.name, k), v))
            })
            .collect()
    }

    /// Makes `id` a second call of the module defined by node `module`: it
    /// must have the same op class, and `module` must define it itself.
    pub fn set_module(&mut self, id: NodeId, module: &str) -> Result<()> {
        let name = self
            .g
            .node_weight(id)
            .map(|n| n.name.clone())
            .ok_or_else(|| IrError::NoSuchNode(format!("#{}", id.index())))?;
        let m = self.lookup(module)?;
        let (op, m_op) = (self.g[id].op.class_name(), self.g[m].op.class_name());
        let misplaced = |message: String| IrError::Misplaced { node: name.clone(), message };
        if m == id || self.g[m].module.is_some() {
            return Err(misplaced(format!(
                "calls module `{module}`, which is not a module definition (it calls one itself)"
            )));
        }
        if op != m_op || self.g[m].op.param_specs().is_empty() {
            return Err(misplaced(format!(
                "calls module `{module}` ({m_op}) as a {op}; only a node with parameters can be called again"
            )));
        }
        self.g[id].module = Some(module.to_string());
        Ok(())
    }

    /// Redirects every use of `old` to `new` (operand positions kept).
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let name = self.g.node_weight(old).map(|n| n.name.clone()).unwrap_or_default();
        self.check_operand(&name, 0, new)?;
        let uses: Vec<_> =
            self.g.edges_directed(old, Direction::Outgoing).map(|e| (e.id(), e.target(), *e.weight())).collect();
        for (edge, user, index) in uses {
            self.g.remove_edge(edge);
            self.g.add_edge(new, user, index);
        }
        Ok(())
    }

    /// Removes a node that nothing uses any more. Inputs and outputs cannot be removed.
    pub fn remove_node(&mut self, id: NodeId) -> Result<Node> {
        let node = self.g.node_weight(id).ok_or_else(|| IrError::NoSuchNode(format!("#{}", id.index())))?;
        if matches!(node.op, Op::Input | Op::Output) || !self.users(id).is_empty() {
            return Err(IrError::Misplaced {
                node: node.name.clone(),
                message: "cannot remove a graph input, an output or a node that is still used".into(),
            });
        }
        let node = self.g.remove_node(id).ok_or_else(|| IrError::NoSuchNode(format!("#{}", id.index())))?;
        self.by_name.remove(&node.name);
        Ok(node)
    }

    /// Nodes in topological order, ties broken by id so the order is stable.
    /// Fails with the nodes of a cycle if there is one.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let mut indegree: HashMap<NodeId, usize> =
            self.node_ids().map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count())).collect();
        let mut ready: BinaryHeap<Reverse<NodeId>> =
            indegree.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| Reverse(n)).collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for user in self.g.neighbors_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&user) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(Reverse(user));
                    }
                }
            }
        }
        if order.len() == self.g.node_count() {
            return Ok(order);
        }
        Err(IrError::Cycle(self.cycle_members()))
    }

    /// Names of the nodes on cycles (strongly connected components with a loop).
    fn cycle_members(&self) -> Vec<String> {
        let mut names: Vec<String> = petgraph::algo::tarjan_scc(&self.g)
            .into_iter()
            .filter(|scc| scc.len() > 1 || scc.iter().any(|&n| self.g.contains_edge(n, n)))
            .flatten()
            .map(|n| self.g[n].name.clone())
            .collect();
        names.sort();
        names
    }

    /// Checks the whole graph: at least one input and output, well-formed
    /// inputs, valid ops with the right operand counts, contiguous operand
    /// positions, outputs unused, and no cycle.
    pub fn validate(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(IrError::Empty("input"));
        }
        if self.outputs.is_empty() {
            return Err(IrError::Empty("output"));
        }
        for id in self.node_ids() {
            let node = &self.g[id];
            let mut positions: Vec<usize> =
                self.g.edges_directed(id, Direction::Incoming).map(|e| *e.weight()).collect();
            positions.sort_unstable();
            if positions.iter().enumerate().any(|(i, &p)| i != p) {
                return Err(IrError::Misplaced {
                    node: node.name.clone(),
                    message: format!("operand positions {positions:?} are not 0..{}", positions.len()),
                });
            }
            node.op.check_arity(&node.name, positions.len())?;
            if let Some(m) = &node.module {
                let ok = self.by_name.get(m).is_some_and(|&mid| mid != id && self.g[mid].module.is_none());
                if !ok {
                    return Err(IrError::Misplaced {
                        node: node.name.clone(),
                        message: format!("calls module `{m}`, which is not a node that defines a module"),
                    });
                }
            }
            match node.op {
                Op::Input => check_input_shape(&node.name, &node.shape)?,
                Op::Output => {
                    if !self.users(id).is_empty() {
                        return Err(IrError::Misplaced {
                            node: node.name.clone(),
                            message: "an output marker cannot be an operand".into(),
                        });
                    }
                }
                Op::LazyConvTranspose2d { .. }
                | Op::ConvTranspose2d { .. }
                | Op::LazyConv2d { .. }
                | Op::Conv2d { .. }
                | Op::LazyBatchNorm2d { .. }
                | Op::BatchNorm2d { .. }
                | Op::Relu
                | Op::LeakyRelu { .. }
                | Op::Tanh
                | Op::Sigmoid
                | Op::Pointwise { .. }
                | Op::PRelu { .. }
                | Op::LazyLinear { .. }
                | Op::Linear { .. }
                | Op::LazyBatchNorm1d { .. }
                | Op::BatchNorm1d { .. }
                | Op::LazyInstanceNorm2d { .. }
                | Op::InstanceNorm2d { .. }
                | Op::GroupNorm { .. }
                | Op::Sub
                | Op::Mul
                | Op::Scalar { .. }
                | Op::Cat { .. }
                | Op::Narrow { .. }
                | Op::Flatten { .. }
                | Op::Unflatten { .. }
                | Op::Reshape { .. }
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
                | Op::Concat => node.op.validate(&node.name)?,
            }
        }
        self.topo_order().map(|_| ())
    }

    /// Whether any node is still lazy.
    pub fn has_lazy_nodes(&self) -> bool {
        self.node_ids().any(|id| self.g[id].op.is_lazy())
    }

    /// Rebuilds the name index and input/output lists from nodes; used after
    /// deserialization where nodes are inserted wholesale.
    pub(crate) fn from_parts(
        name: Option<String>,
        nodes: Vec<NodeParts>,
        operands: Vec<Vec<String>>,
        inputs: &[String],
        outputs: &[String],
    ) -> Result<Graph> {
        let mut g = Graph { name, ..Graph::default() };
        for (name, op, shape, params) in nodes {
            if !(name.starts_with(RESERVED_PREFIX) && matches!(op, Op::Output)) {
                check_name(&name)?;
            }
            let id = g.insert(name, op, shape)?;
            g.g[id].params = params;
        }
        let mut seen = std::collections::HashSet::new();
        for (list, want, what) in [(inputs, true, "input"), (outputs, false, "output")] {
            for name in list {
                let id = g.lookup(name)?;
                // A name listed twice would make up for an unlisted one in the count below.
                if !seen.insert(id) {
                    return Err(IrError::Misplaced {
                        node: name.clone(),
                        message: format!("listed twice as a graph {what}"),
                    });
                }
                let ok = if want { matches!(g.g[id].op, Op::Input) } else { matches!(g.g[id].op, Op::Output) };
                if !ok {
                    return Err(IrError::Misplaced {
                        node: name.clone(),
                        message: format!("listed as a graph {what} but is not one"),
                    });
                }
                if want {
                    g.inputs.push(id)
                } else {
                    g.outputs.push(id)
                }
            }
        }
        let listed = g.inputs.len() + g.outputs.len();
        let actual = g.node_ids().filter(|&i| matches!(g.g[i].op, Op::Input | Op::Output)).count();
        if listed != actual {
            return Err(IrError::Misplaced {
                node: "graph".into(),
                message: "every input and output node must be listed exactly once".into(),
            });
        }
        let ids: Vec<NodeId> = g.node_ids().collect();
        for (id, ops) in ids.into_iter().zip(operands) {
            for (index, operand) in ops.iter().enumerate() {
                let src = g.find(operand).ok_or_else(|| IrError::UnknownOperand {
                    node: g.g[id].name.clone(),
                    index,
                    operand: operand.clone(),
                })?;
                g.g.add_edge(src, id, index);
            }
        }
        g.validate()?;
        Ok(g)
    }
}

/// Whether the concrete shape `got` fits input `name`'s declared shape.
pub fn check_binding(name: &str, declared: &Shape, got: &[usize]) -> Result<()> {
    let mismatch = |reason: String| IrError::InputShapeMismatch {
        input: name.into(),
        declared: declared.to_string(),
        got: got.to_vec(),
        reason,
    };
    let Some(dims) = declared.dims() else {
        return Err(IrError::InvalidInputShape { node: name.into(), shape: declared.to_string() });
    };
    if dims.len() != got.len() {
        return Err(mismatch(format!(" (rank {} instead of {})", got.len(), dims.len())));
    }
    for (axis, (d, &n)) in dims.iter().zip(got).enumerate() {
        if n == 0 {
            return Err(mismatch(format!(" (dim {axis} is 0; sizes must be positive)")));
        }
        if let Dim::Known(k) = d {
            if *k != n {
                return Err(mismatch(format!(" (dim {axis} is {n}, not {k})")));
            }
        }
    }
    Ok(())
}

fn check_input_shape(name: &str, shape: &Shape) -> Result<()> {
    // An open dim (`Unknown`) is bound per run (`Graph::bind_inputs`); a zero
    // one can never be.
    let ok = shape.dims().is_some_and(|d| d.iter().all(|d| !matches!(d, Dim::Known(0))));
    if ok {
        Ok(())
    } else {
        Err(IrError::InvalidInputShape { node: name.into(), shape: shape.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::ConvTranspose2dParams;

    fn small() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::with_name("t");
        let x = g.add_input("x", vec![1, 2, 4, 4]).unwrap();
        let up = g.add_node("up", Op::lazy_conv_transpose2d(ConvTranspose2dParams::new(3, 3)), &[x]).unwrap();
        g.add_output(up).unwrap();
        (g, x, up)
    }

    #[test]
    fn a_graph_output_listed_twice_is_an_error() {
        // Found by kiln-fuzz (graph-json): outputs ["@out0", "@out0"] with the
        // Output node `@out1` unlisted passed the "listed exactly once" count,
        // and the interpreter then failed with "the output was not computed".
        let json = r#"{"name": "g", "inputs": ["x", "y"], "outputs": ["@out0", "@out0"], "nodes": [
            {"name": "x", "op": {"kind": "input"}, "operands": [], "shape": [1, 2, 1, 1]},
            {"name": "y", "op": {"kind": "input"}, "operands": [], "shape": [1, 4, 1, 1]},
            {"name": "n0", "op": {"kind": "relu"}, "operands": ["y"], "shape": [1, 4, 1, 1]},
            {"name": "@out0", "op": {"kind": "output"}, "operands": ["n0"], "shape": [1, 4, 1, 1]},
            {"name": "@out1", "op": {"kind": "output"}, "operands": ["x"], "shape": [1, 2, 1, 1]}]}"#;
        let e = Graph::from_json(json).unwrap_err().to_string();
        assert!(e.contains("@out0") && e.contains("twice"), "{e}");
        assert!(Graph::from_json(&json.replace(r#"["@out0", "@out0"]"#, r#"["@out0", "@out1"]"#)).is_ok());
        let e = Graph::from_json(&json.replace(r#"["x", "y"]"#, r#"["x", "x"]"#)).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn names_are_unique_and_valid() {
        let (mut g, x, _) = small();
        assert_eq!(g.add_node("up", Op::Relu, &[x]).unwrap_err(), IrError::DuplicateName("up".into()));
        for bad in ["", "a b", "@x", "%y"] {
            assert!(matches!(g.add_node(bad, Op::Relu, &[x]), Err(IrError::InvalidName(_))), "{bad}");
        }
        assert!(g.add_node("decoder.0", Op::Relu, &[x]).is_ok());
    }

    #[test]
    fn lookup_by_name() {
        let (g, x, up) = small();
        assert_eq!(g.find("x"), Some(x));
        assert_eq!(g.lookup("up").unwrap(), up);
        assert_eq!(g.lookup("nope").unwrap_err(), IrError::NoSuchNode("nope".into()));
    }

    #[test]
    fn operand_count_is_checked() {
        let (mut g, x, up) = small();
        assert!(matches!(g.add_node("a", Op::Add, &[x]), Err(IrError::OperandCount { got: 1, .. })));
        assert!(g.add_node("a", Op::Add, &[x, up]).is_ok());
        assert!(matches!(g.add_node("c", Op::Concat, &[]), Err(IrError::OperandCount { got: 0, .. })));
    }

    #[test]
    fn dangling_operand_is_an_error() {
        let (mut g, _, _) = small();
        let ghost = NodeId::new(99);
        assert!(matches!(g.add_node("r", Op::Relu, &[ghost]), Err(IrError::UnknownOperand { .. })));
    }

    #[test]
    fn outputs_cannot_be_operands() {
        let (mut g, _, _) = small();
        let out = g.outputs()[0];
        assert!(matches!(g.add_node("r", Op::Relu, &[out]), Err(IrError::Misplaced { .. })));
    }

    #[test]
    fn inputs_need_known_positive_shapes() {
        let mut g = Graph::new();
        assert!(matches!(g.add_input("x", vec![1, 0, 4]), Err(IrError::InvalidInputShape { .. })));
        assert!(matches!(g.add_input("x", Shape::Unranked), Err(IrError::InvalidInputShape { .. })));
        assert!(g.add_input("open", Shape::Ranked(vec![Dim::Unknown, Dim::Known(3)])).is_ok());
    }

    #[test]
    fn empty_graph_is_invalid() {
        assert_eq!(Graph::new().validate().unwrap_err(), IrError::Empty("input"));
        let mut g = Graph::new();
        g.add_input("x", vec![1]).unwrap();
        assert_eq!(g.validate().unwrap_err(), IrError::Empty("output"));
    }

    #[test]
    fn topo_order_is_stable_and_complete() {
        let (g, x, up) = small();
        let order = g.topo_order().unwrap();
        assert_eq!(order[..2], [x, up]);
        assert_eq!(order.len(), 3);
        assert!(g.validate().is_ok());
    }

    #[test]
    fn cycles_are_detected_with_their_members() {
        let (mut g, x, up) = small();
        let a = g.add_node("a", Op::Relu, &[x]).unwrap();
        let b = g.add_node("b", Op::Relu, &[a]).unwrap();
        // Close the loop a -> b -> a behind the API's back, as a deserialized graph could.
        g.g.add_edge(b, a, 1);
        let _ = up;
        match g.topo_order().unwrap_err() {
            IrError::Cycle(names) => assert_eq!(names, ["a", "b"]),
            e => panic!("{e}"),
        }
        assert!(g.validate().is_err());
    }

    #[test]
    fn params_are_checked_by_name_and_keyed_like_pytorch() {
        let (mut g, x, up) = small();
        let w = ArrayD::zeros(vec![2, 3, 3, 3]);
        g.set_param(up, "weight", w).unwrap();
        g.set_param(up, "bias", ArrayD::zeros(vec![3])).unwrap();
        let e = g.set_param(up, "running_mean", ArrayD::zeros(vec![3])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d has no parameter `running_mean` (it has: weight, bias)"
        );
        assert!(g.set_param(x, "weight", ArrayD::zeros(vec![1])).is_err());
        let keys: Vec<String> = g.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["up.bias", "up.weight"]);
    }

    #[test]
    fn set_op_validates_and_drops_undeclared_params() {
        let (mut g, _, up) = small();
        g.set_param(up, "bias", ArrayD::zeros(vec![3])).unwrap();
        let p = ConvTranspose2dParams::new(3, 3).bias(false);
        g.set_op(up, Op::ConvTranspose2d { in_channels: 2, params: p }).unwrap();
        assert!(g.node(up).param("bias").is_none());
        assert!(g.set_op(up, Op::Add).is_err());
        let bad = Op::ConvTranspose2d { in_channels: 3, params: ConvTranspose2dParams::new(4, 3).groups(2) };
        assert!(g.set_op(up, bad).is_err());
    }

    #[test]
    fn replace_uses_and_remove() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2, 2, 2]).unwrap();
        let a = g.add_node("a", Op::Relu, &[x]).unwrap();
        let b = g.add_node("b", Op::Add, &[a, x]).unwrap();
        g.add_output(b).unwrap();
        assert!(g.remove_node(a).is_err());
        g.replace_all_uses(a, x).unwrap();
        assert_eq!(g.operands(b), [x, x]);
        g.remove_node(a).unwrap();
        assert!(g.find("a").is_none());
        assert!(g.validate().is_ok());
    }
}
