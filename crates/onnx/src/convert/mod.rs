//! ONNX → `kiln_ir::Graph`: the second half of the front end.
//!
//! Walks the (topologically sorted, as ONNX requires) node list once. Every
//! value is either a Kiln tensor (an IR node, whose shape is inferred as soon
//! as it is added, so later nodes can ask for it) or a constant (an
//! initializer, a `Constant`, or a node the [`constant`] folder evaluated
//! because all its inputs were constants or known shapes). Data ops map to
//! IR ops in [`ops`]; their weights must be constants and become the IR
//! node's parameters under PyTorch's names.
//!
//! Shapes come from a caller-supplied function (the facade passes Kiln's
//! shape inference) so that this crate depends on `kiln-ir` only. Symbolic
//! input dims (`dim_param`) are bound before conversion from
//! [`ImportOptions`]: the folder then sees concrete shapes, which is what
//! lets `Shape`/`Gather`/`Concat` sub-graphs become literals.

// Errors carry the node and the values (an `IrError` inside); they are
// cold paths, as in kiln-passes, so their size does not matter.
#![allow(clippy::result_large_err)]

mod constant;
mod error;
mod gelu;
mod ops;

use std::collections::{BTreeMap, HashMap};

use kiln_ir::{Graph, NodeId, Shape};

pub use error::{ImportError, Result};

use crate::{Dim, OnnxModel, Tensor};
use constant::{Const, Kind};

/// The newest default-domain opset Kiln imports (onnx 1.23's).
pub const MAX_OPSET: i64 = 28;

/// The shape of a node just added to the graph, from its operands' shapes.
pub type ShapeFn<'a> = dyn Fn(&Graph, NodeId) -> std::result::Result<Vec<usize>, String> + 'a;

/// How to import: the shape function and the sizes of symbolic input dims.
pub struct ImportOptions<'a> {
    shape_fn: &'a ShapeFn<'a>,
    /// Concrete shapes for graph inputs (by ONNX name); each must agree with
    /// the declared fixed dims and gives the symbolic ones their size.
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    /// The size given to a symbolic or unknown dim of an input not in
    /// `input_shapes` (`None`: such a dim is an error).
    pub symbolic_default: Option<usize>,
}

impl<'a> ImportOptions<'a> {
    /// Options with `shape_fn` (Kiln's shape inference: `kiln::passes::infer_node`).
    pub fn new(shape_fn: &'a ShapeFn<'a>) -> Self {
        ImportOptions { shape_fn, input_shapes: BTreeMap::new(), symbolic_default: None }
    }
}

/// Reads an ONNX model from bytes (external data is refused: there is no
/// directory to read it from) and imports it.
pub fn import(bytes: &[u8], options: &ImportOptions<'_>) -> Result<Graph> {
    let model = OnnxModel::from_bytes(bytes, None)?;
    to_graph(&model, options)
}

/// A model's graph input, with the declared dims: what `kiln run` must be
/// given for it.
pub fn declared_inputs(model: &OnnxModel) -> Vec<(String, Vec<Dim>)> {
    model.data_inputs().map(|v| (v.name.clone(), v.shape.clone().unwrap_or_default())).collect()
}

/// One ONNX value during conversion.
#[derive(Clone, Debug)]
enum Value {
    /// Computed by the Kiln graph.
    Tensor(NodeId),
    /// Known now.
    Const(Const),
    /// A stage of an exporter's GELU formula ([`gelu`]).
    Partial(gelu::Partial),
}

/// A node as the converter sees it: its label, op type, opset and inputs,
/// with attribute access whose errors are [`ImportError`]s.
pub(crate) struct NodeRef<'a> {
    node: crate::Node<'a>,
    pub(crate) label: String,
    pub(crate) op_type: &'a str,
    pub(crate) opset: i64,
    pub(crate) inputs: &'a [String],
}

impl NodeRef<'_> {
    pub(crate) fn attr_int(&self, n: &str) -> Result<Option<i64>> {
        Ok(self.node.attr_int(n)?)
    }
    pub(crate) fn attr_ints(&self, n: &str) -> Result<Option<&[i64]>> {
        Ok(self.node.attr_ints(n)?)
    }
    pub(crate) fn attr_float(&self, n: &str) -> Result<Option<f32>> {
        Ok(self.node.attr_float(n)?)
    }
    pub(crate) fn attr_string(&self, n: &str) -> Result<Option<&str>> {
        Ok(self.node.attr_string(n)?)
    }
    pub(crate) fn attr_tensor(&self, n: &str) -> Result<Option<Tensor>> {
        Ok(self.node.attr_tensor(n)?)
    }
    pub(crate) fn unsupported(&self, reason: impl Into<String>) -> ImportError {
        ImportError::Unsupported {
            node: self.label.clone(),
            op_type: self.op_type.into(),
            domain: self.node.domain().into(),
            opset: self.opset,
            reason: reason.into(),
        }
    }
    pub(crate) fn invalid(&self, message: impl Into<String>) -> ImportError {
        ImportError::invalid(&self.label, message)
    }
}

/// A tensor's values as a constant.
pub(crate) fn tensor_const(t: &Tensor, node: &str) -> Result<Const> {
    use crate::DataType as D;
    let dims: Vec<usize> = t
        .dims()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| ImportError::invalid(node, "tensor dim too large")))
        .collect::<Result<_>>()?;
    let (kind, data) = match t.data_type() {
        D::Float | D::Double | D::Float16 | D::Bfloat16 => (Kind::Float, t.to_f64_vec()?),
        D::Bool => (Kind::Bool, t.to_i64_vec()?.into_iter().map(|v| v as f64).collect()),
        D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::Uint8 | D::Uint16 | D::Uint32 | D::Uint64 => {
            (Kind::Int, t.to_i64_vec()?.into_iter().map(|v| v as f64).collect())
        }
        other => {
            return Err(ImportError::invalid(node, format!("tensor `{}` of type {other:?} is not supported", t.name())))
        }
    };
    Ok(Const::new(dims, kind, data))
}

/// Graph-building state.
pub(crate) struct Builder<'a> {
    pub(crate) graph: Graph,
    values: HashMap<String, Value>,
    names: HashMap<String, usize>,
    shape_fn: &'a ShapeFn<'a>,
    /// ONNX uses of each value name, for fusions that must see every user.
    pub(crate) uses: HashMap<String, usize>,
}

impl Builder<'_> {
    /// A valid, unique Kiln node name for an ONNX node or value name
    /// (`/decoder/conv1/Conv` → `decoder.conv1.Conv`).
    pub(crate) fn fresh_name(&mut self, base: &str) -> String {
        let mut s: String = base
            .trim_start_matches('/')
            .chars()
            .map(|c| match c {
                '/' | ':' => '.',
                c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') => c,
                _ => '_',
            })
            .collect();
        if s.is_empty() || s.starts_with(kiln_ir::RESERVED_PREFIX) || s.starts_with('.') {
            s = format!("n{s}");
        }
        let n = self.names.entry(s.clone()).or_insert(0);
        *n += 1;
        if *n == 1 && self.graph.find(&s).is_none() {
            s
        } else {
            let mut k = *n;
            loop {
                let c = format!("{s}_{k}");
                if self.graph.find(&c).is_none() {
                    return c;
                }
                k += 1;
            }
        }
    }

    /// Adds `op` over `operands`, infers its shape, names it after `base`.
    pub(crate) fn add(&mut self, node: &str, base: &str, op: kiln_ir::Op, operands: &[NodeId]) -> Result<NodeId> {
        let name = self.fresh_name(base);
        let id =
            self.graph.add_node(&name, op, operands).map_err(|source| ImportError::Ir { node: node.into(), source })?;
        self.infer(node, id)?;
        Ok(id)
    }

    /// Infers and records the shape of `id`.
    pub(crate) fn infer(&mut self, node: &str, id: NodeId) -> Result<()> {
        let shape =
            (self.shape_fn)(&self.graph, id).map_err(|message| ImportError::Shape { node: node.into(), message })?;
        self.graph.set_shape(id, Shape::known(&shape));
        Ok(())
    }

    /// Attaches a parameter.
    pub(crate) fn param(&mut self, node: &str, id: NodeId, name: &str, dims: &[usize], data: Vec<f32>) -> Result<()> {
        let a = kiln_ir::ndarray::ArrayD::from_shape_vec(dims.to_vec(), data)
            .map_err(|e| ImportError::invalid(node, format!("parameter `{name}`: {e}")))?;
        self.graph.set_param(id, name, a).map_err(|source| ImportError::Ir { node: node.into(), source })
    }

    /// The known shape of tensor `id`.
    pub(crate) fn shape(&self, id: NodeId) -> Vec<usize> {
        self.graph.node(id).shape().as_known().unwrap_or_default()
    }
}

/// Imports a read model.
pub fn to_graph(model: &OnnxModel, options: &ImportOptions<'_>) -> Result<Graph> {
    let mut b = Builder {
        graph: Graph::with_name(if model.graph_name().is_empty() { "onnx" } else { model.graph_name() }),
        values: HashMap::new(),
        names: HashMap::new(),
        shape_fn: options.shape_fn,
        uses: HashMap::new(),
    };
    for node in model.nodes() {
        for i in node.inputs() {
            *b.uses.entry(i.clone()).or_insert(0) += 1;
        }
    }
    for o in model.outputs() {
        *b.uses.entry(o.name.clone()).or_insert(0) += 1;
    }
    for t in model.initializers() {
        let c = tensor_const(t, t.name())?;
        b.values.insert(t.name().to_string(), Value::Const(c));
    }
    for input in model.data_inputs() {
        let shape = input_shape(input, options)?;
        let name = b.fresh_name(&input.name);
        let id = b
            .graph
            .add_input(&name, shape.as_slice())
            .map_err(|source| ImportError::Ir { node: input.name.clone(), source })?;
        b.values.insert(input.name.clone(), Value::Tensor(id));
    }
    let default_opset = model.opset("").unwrap_or(1);
    for node in model.nodes() {
        let domain = node.domain();
        let opset =
            if domain.is_empty() || domain == "ai.onnx" { default_opset } else { model.opset(domain).unwrap_or(0) };
        let n = NodeRef { label: node.label(), op_type: node.op_type(), opset, inputs: node.inputs(), node };
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(n.unsupported("is outside the default ONNX domain"));
        }
        // From PyTorch's oldest export opset to onnx 1.23's newest; the
        // operator arms handle the versions' differences.
        if !(7..=MAX_OPSET).contains(&opset) {
            return Err(n.unsupported(format!("is at an opset Kiln does not import (7 to {MAX_OPSET})")));
        }
        convert_node(&mut b, &n)?;
    }
    for o in model.outputs() {
        match b.values.get(&o.name) {
            Some(Value::Tensor(id)) => {
                let id = *id;
                b.graph.add_output(id).map_err(|source| ImportError::Ir { node: o.name.clone(), source })?;
            }
            Some(Value::Const(_)) => {
                return Err(ImportError::invalid(&o.name, "the graph output is a constant; Kiln computes tensors"))
            }
            Some(Value::Partial(_)) => {
                return Err(ImportError::invalid(&o.name, "the graph output is a bare `Erf`, which Kiln does not have"))
            }
            None => return Err(ImportError::invalid(&o.name, "the graph output is never computed")),
        }
    }
    remove_dead(&mut b.graph);
    // The IR's own rules for a whole graph (an input, an output, ...).
    b.graph.validate().map_err(|source| ImportError::Ir { node: "(the graph)".into(), source })?;
    Ok(b.graph)
}

/// Drops IR nodes a fusion left without users (a `Sigmoid` whose `Mul`
/// became a SiLU, say).
fn remove_dead(graph: &mut Graph) {
    loop {
        let dead: Vec<NodeId> = graph
            .node_ids()
            .filter(|&id| {
                !matches!(graph.node(id).op(), kiln_ir::Op::Input | kiln_ir::Op::Output) && graph.users(id).is_empty()
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        for id in dead {
            // A node without users can always be removed.
            let _ = graph.remove_node(id);
        }
    }
}

/// The concrete shape of a graph input.
fn input_shape(input: &crate::ValueInfo, options: &ImportOptions<'_>) -> Result<Vec<usize>> {
    let err = |message: String| ImportError::Input { input: input.name.clone(), message };
    if let Some(t) = input.elem_type {
        if t != crate::DataType::Float {
            return Err(err(format!("has element type {t:?}; Kiln computes float32 tensors")));
        }
    }
    let declared = input.shape.clone().ok_or_else(|| err("declares no shape".into()))?;
    let zero = |dims: &[usize]| -> Result<()> {
        if dims.contains(&0) {
            return Err(ImportError::Unsupported {
                node: input.name.clone(),
                op_type: "graph input".into(),
                domain: String::new(),
                opset: 0,
                reason: format!("of shape {dims:?}: Kiln's tensors have no zero-size dims"),
            });
        }
        Ok(())
    };
    if let Some(given) = options.input_shapes.get(&input.name) {
        if given.len() != declared.len() {
            return Err(err(format!("is declared with rank {}, given shape {given:?}", declared.len())));
        }
        for (i, (d, &g)) in declared.iter().zip(given).enumerate() {
            if let Dim::Known(k) = d {
                if *k != g as u64 {
                    return Err(err(format!("dim {i} is declared {k}, given {g}")));
                }
            }
        }
        zero(given)?;
        return Ok(given.clone());
    }
    let shape: Vec<usize> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(k) => usize::try_from(*k).map_err(|_| err(format!("dim {i} is too large"))),
            Dim::Symbolic(s) => options
                .symbolic_default
                .ok_or_else(|| err(format!("dim {i} is symbolic (`{s}`): give the input's shape"))),
            Dim::Unknown => {
                options.symbolic_default.ok_or_else(|| err(format!("dim {i} is unknown: give the input's shape")))
            }
        })
        .collect::<Result<_>>()?;
    zero(&shape)?;
    Ok(shape)
}

fn convert_node(b: &mut Builder<'_>, n: &NodeRef<'_>) -> Result<()> {
    let mut inputs: Vec<Option<Value>> = Vec::with_capacity(n.inputs.len());
    for name in n.inputs {
        if name.is_empty() {
            inputs.push(None);
            continue;
        }
        let v =
            b.values.get(name).cloned().ok_or_else(|| n.invalid(format!("input `{name}` is not defined before it")))?;
        inputs.push(Some(v));
    }
    let outputs = n.node.outputs();
    // Values every op may produce from constants: `Constant`, the shape of a
    // Kiln tensor, and anything the folder evaluates.
    let folded: Option<Vec<Const>> = match n.op_type {
        "Constant" => Some(vec![constant_value(n)?]),
        "Shape" | "Size" => {
            let dims = match inputs.first() {
                Some(Some(Value::Tensor(id))) => b.shape(*id),
                Some(Some(Value::Const(c))) => c.dims.clone(),
                Some(Some(Value::Partial(p))) => {
                    let id = gelu::materialize(b, n, *p)?;
                    b.shape(id)
                }
                _ => return Err(n.invalid("needs an input")),
            };
            Some(vec![shape_of(n, &dims)?])
        }
        _ if inputs.iter().flatten().all(|v| matches!(v, Value::Const(_))) && inputs.iter().any(Option::is_some) => {
            let cs: Vec<Option<&Const>> = inputs
                .iter()
                .map(|v| match v {
                    Some(Value::Const(c)) => Some(c),
                    Some(Value::Tensor(_) | Value::Partial(_)) | None => None,
                })
                .collect();
            constant::fold(n, &cs)?
        }
        _ => None,
    };
    if let Some(values) = folded {
        for (o, v) in outputs.iter().zip(values) {
            b.values.insert(o.clone(), Value::Const(v));
        }
        return Ok(());
    }
    if let Some(v) = gelu::step(b, n, &inputs)? {
        if let Some(o) = outputs.first() {
            b.values.insert(o.clone(), v);
        }
        return Ok(());
    }
    // A GELU stage consumed by anything else becomes a tensor (or an error).
    for v in inputs.iter_mut().flatten() {
        if let Value::Partial(p) = v {
            *v = Value::Tensor(gelu::materialize(b, n, *p)?);
        }
    }
    let produced = ops::convert(b, n, &inputs)?;
    for (o, v) in outputs.iter().zip(produced) {
        if !o.is_empty() {
            b.values.insert(o.clone(), v);
        }
    }
    Ok(())
}

/// `Shape` (with its `start`/`end`, clipped as the spec says) or `Size` of
/// a value with dims `dims`: known for a Kiln tensor as for a constant.
fn shape_of(n: &NodeRef<'_>, dims: &[usize]) -> Result<Const> {
    if n.op_type == "Size" {
        return Ok(Const::new(vec![], Kind::Int, vec![dims.iter().product::<usize>() as f64]));
    }
    let r = dims.len() as i64;
    let clip = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clip(n.attr_int("start")?.unwrap_or(0));
    let end = clip(n.attr_int("end")?.unwrap_or(r));
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    Ok(Const::ints(if start < end { &dims[start..end] } else { &[] }))
}

/// A `Constant` node's value, from whichever attribute it uses.
fn constant_value(n: &NodeRef<'_>) -> Result<Const> {
    if let Some(t) = n.attr_tensor("value")? {
        return tensor_const(&t, &n.label);
    }
    if let Some(f) = n.attr_float("value_float")? {
        return Ok(Const::new(vec![], Kind::Float, vec![f64::from(f)]));
    }
    if let Some(i) = n.attr_int("value_int")? {
        return Ok(Const::new(vec![], Kind::Int, vec![i as f64]));
    }
    if let Some(v) = n.attr_ints("value_ints")? {
        return Ok(Const::ints(v));
    }
    if let Some(v) = n.node.attr_floats("value_floats")? {
        return Ok(Const::new(vec![v.len()], Kind::Float, v.iter().map(|&x| f64::from(x)).collect()));
    }
    Err(n.unsupported("without a numeric value (sparse and string constants are not supported)"))
}
