//! [`OnnxModel`]: reading a file or bytes, the checks after decoding, and the
//! accessors a converter uses (opsets, inputs and outputs with shapes,
//! initializers, nodes).
//!
//! Order of a read: size check (before the file is read), structure scan
//! (`scan.rs`, before decoding), prost decode (its own recursion limit of 100),
//! then one walk over every graph that checks nesting depth, node count,
//! unique names, every tensor (`tensor::check`) and every declared shape, and
//! reads external data. A model that comes out of this is consistent: every
//! tensor in it can be read by the typed accessors without another check
//! failing, except conversions the element type does not support.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use prost::Message;

use crate::attr::{attr_tensor_label, Node};
use crate::error::{OnnxError, Result};
use crate::external::ExternalReader;
use crate::limits::Limits;
use crate::proto::{
    tensor_shape_proto::dimension, type_proto, DataLocation, DataType, GraphProto, ModelProto, TensorProto,
    ValueInfoProto,
};
use crate::tensor::{self, Tensor};

/// One axis of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Known(u64),
    /// A named size that varies (`dim_param`, e.g. a dynamic batch axis `"batch"`).
    Symbolic(String),
    /// Neither given.
    Unknown,
}

/// A graph input or output (or `value_info` entry) with its declared type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// The element type, `None` if not declared or not a tensor type.
    pub elem_type: Option<DataType>,
    /// The shape, `None` if not declared (not even the rank) or not a tensor type.
    pub shape: Option<Vec<Dim>>,
}

/// A read and checked ONNX model.
///
/// The main graph's initializers are moved out of the protobuf into
/// [`OnnxModel::initializers`] (so weights are held once); [`OnnxModel::proto`]
/// gives the rest of the message as decoded, with external data of
/// subgraph and attribute tensors already read into their `raw_data`.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    proto: ModelProto,
    initializers: Vec<Tensor>,
    /// Initializer index by name (names are unique: checked at load).
    by_name: HashMap<String, usize>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    value_info: Vec<ValueInfo>,
    limits: Limits,
}

/// Reads and checks the model at `path` with the default [`Limits`]; external
/// data is resolved against the file's directory.
pub fn read_model(path: &Path) -> Result<OnnxModel> {
    read_model_with(path, &Limits::default())
}

/// [`read_model`] with explicit limits.
pub fn read_model_with(path: &Path, limits: &Limits) -> Result<OnnxModel> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limits.max_file_bytes {
        return Err(OnnxError::limit(format!("file size of {}", path.display()), size, limits.max_file_bytes));
    }
    // Read through the handle that was sized, and never more than the limit
    // even if the file grows meanwhile.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.by_ref().take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(OnnxError::limit(
            format!("file size of {}", path.display()),
            bytes.len() as u64,
            limits.max_file_bytes,
        ));
    }
    // A bare file name has the parent "", which means the current directory.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    OnnxModel::from_bytes_with(&bytes, Some(dir), limits)
}

/// State of the checking walk over all graphs.
struct Walk<'a> {
    limits: &'a Limits,
    external: ExternalReader,
    nodes: usize,
}

impl Walk<'_> {
    /// Checks a tensor and reads its external data into `raw_data`.
    fn tensor(&mut self, t: &mut TensorProto, label: &str) -> Result<()> {
        let c = tensor::check(t, label, self.limits)?;
        if c.external {
            // `check` refuses external STRING tensors, so there is a byte length.
            let expected = c.byte_len.unwrap_or(0);
            t.raw_data = self.external.read(label, &t.external_data, expected)?;
            t.external_data.clear();
            t.data_location = DataLocation::Default as i32;
        }
        Ok(())
    }

    fn graph(&mut self, g: &mut GraphProto, depth: usize) -> Result<()> {
        let gname = if g.name.is_empty() { "<unnamed>".to_string() } else { g.name.clone() };
        if depth > self.limits.max_graph_depth {
            return Err(OnnxError::limit(
                format!("nesting depth of graph `{gname}`"),
                depth as u64,
                self.limits.max_graph_depth as u64,
            ));
        }
        self.nodes = self.nodes.saturating_add(g.node.len());
        if self.nodes > self.limits.max_nodes {
            return Err(OnnxError::limit("node count (all graphs)", self.nodes as u64, self.limits.max_nodes as u64));
        }
        let mut names = HashSet::new();
        for (i, t) in g.initializer.iter_mut().enumerate() {
            if t.name.is_empty() {
                return Err(OnnxError::invalid(format!("initializer {i} of graph `{gname}` has no name")));
            }
            if !names.insert(t.name.clone()) {
                return Err(OnnxError::invalid(format!("graph `{gname}` has two initializers named `{}`", t.name)));
            }
            let label = t.name.clone();
            self.tensor(t, &label)?;
        }
        for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
            value_info(v, self.limits)?;
        }
        for (i, n) in g.node.iter_mut().enumerate() {
            let node = if n.name.is_empty() { format!("#{i}") } else { n.name.clone() };
            let mut seen = HashSet::new();
            for a in &mut n.attribute {
                if !seen.insert(a.name.clone()) {
                    return Err(OnnxError::invalid(format!(
                        "node `{node}` ({}) of graph `{gname}` has two attributes named `{}`",
                        n.op_type, a.name
                    )));
                }
                if let Some(t) = &mut a.t {
                    let label = attr_tensor_label(&t.name, &node, &a.name);
                    self.tensor(t, &label)?;
                }
                for (k, t) in a.tensors.iter_mut().enumerate() {
                    let label = attr_tensor_label(&t.name, &node, &format!("{}[{k}]", a.name));
                    self.tensor(t, &label)?;
                }
                if let Some(sub) = &mut a.g {
                    self.graph(sub, depth + 1)?;
                }
                for sub in &mut a.graphs {
                    self.graph(sub, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Converts a declared value type, refusing unknown element types, negative
/// sizes and ranks over the limit.
fn value_info(v: &ValueInfoProto, limits: &Limits) -> Result<ValueInfo> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(ValueInfo { name: v.name.clone(), elem_type: None, shape: None });
    };
    let elem_type = match t.elem_type {
        0 => None,
        e => Some(
            DataType::try_from(e)
                .map_err(|_| OnnxError::invalid(format!("value `{}` has unknown element type {e}", v.name)))?,
        ),
    };
    let shape = match &t.shape {
        None => None,
        Some(s) => {
            if s.dim.len() > limits.max_rank {
                return Err(OnnxError::limit(
                    format!("rank of value `{}`", v.name),
                    s.dim.len() as u64,
                    limits.max_rank as u64,
                ));
            }
            let dims = s.dim.iter().enumerate().map(|(i, d)| match &d.value {
                Some(dimension::Value::DimValue(n)) => u64::try_from(*n)
                    .map(Dim::Known)
                    .map_err(|_| OnnxError::invalid(format!("value `{}` has negative size {n} on axis {i}", v.name))),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Ok(Dim::Symbolic(p.clone())),
                _ => Ok(Dim::Unknown),
            });
            Some(dims.collect::<Result<Vec<_>>>()?)
        }
    };
    Ok(ValueInfo { name: v.name.clone(), elem_type, shape })
}

/// `""` and `"ai.onnx"` both name the default operator set.
fn canonical_domain(d: &str) -> &str {
    if d == "ai.onnx" {
        ""
    } else {
        d
    }
}

impl OnnxModel {
    /// Decodes and checks a model from `bytes` with the default [`Limits`].
    /// External data is resolved against `model_dir`; with `None`, a model
    /// that has external data is an error.
    pub fn from_bytes(bytes: &[u8], model_dir: Option<&Path>) -> Result<OnnxModel> {
        OnnxModel::from_bytes_with(bytes, model_dir, &Limits::default())
    }

    /// [`OnnxModel::from_bytes`] with explicit limits.
    pub fn from_bytes_with(bytes: &[u8], model_dir: Option<&Path>, limits: &Limits) -> Result<OnnxModel> {
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(OnnxError::limit("model size", bytes.len() as u64, limits.max_file_bytes));
        }
        crate::scan::scan(bytes, limits)?;
        let mut proto = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode { reason: e.to_string() })?;

        let mut seen = HashSet::new();
        for o in &proto.opset_import {
            if !seen.insert(canonical_domain(&o.domain)) {
                return Err(OnnxError::invalid(format!("opset_import lists domain {:?} twice", o.domain)));
            }
        }
        let mut walk = Walk { limits, external: ExternalReader::new(model_dir, limits.max_external_bytes), nodes: 0 };
        let graph = proto.graph.as_mut().ok_or_else(|| OnnxError::invalid("the model has no graph"))?;
        walk.graph(graph, 1)?;

        let convert = |vs: &[ValueInfoProto]| vs.iter().map(|v| value_info(v, limits)).collect::<Result<Vec<_>>>();
        let inputs = convert(&graph.input)?;
        let outputs = convert(&graph.output)?;
        let value_info = convert(&graph.value_info)?;
        let initializers = std::mem::take(&mut graph.initializer)
            .into_iter()
            .map(|t| {
                let label = t.name.clone();
                Tensor::from_proto(t, &label, limits)
            })
            .collect::<Result<Vec<_>>>()?;
        let by_name = initializers.iter().enumerate().map(|(i, t)| (t.name().to_string(), i)).collect();
        Ok(OnnxModel { proto, initializers, by_name, inputs, outputs, value_info, limits: limits.clone() })
    }

    fn graph(&self) -> &GraphProto {
        // `from_bytes_with` refuses a model without a graph.
        static EMPTY: GraphProto = GraphProto {
            node: Vec::new(),
            name: String::new(),
            initializer: Vec::new(),
            doc_string: String::new(),
            input: Vec::new(),
            output: Vec::new(),
            value_info: Vec::new(),
        };
        self.proto.graph.as_ref().unwrap_or(&EMPTY)
    }

    /// The decoded message (main-graph initializers moved to [`OnnxModel::initializers`]).
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// `ir_version` as written.
    pub fn ir_version(&self) -> i64 {
        self.proto.ir_version
    }

    /// The writer (`pytorch`, ...).
    pub fn producer_name(&self) -> &str {
        &self.proto.producer_name
    }

    /// The writer's version.
    pub fn producer_version(&self) -> &str {
        &self.proto.producer_version
    }

    /// The main graph's name.
    pub fn graph_name(&self) -> &str {
        &self.graph().name
    }

    /// The imported version of operator set `domain` (`""` and `"ai.onnx"`
    /// are the same), `None` if the model does not import it.
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let d = canonical_domain(domain);
        self.proto.opset_import.iter().find(|o| canonical_domain(&o.domain) == d).map(|o| o.version)
    }

    /// Every declared graph input, in order. Models of IR version < 4 also
    /// list each initializer here; [`OnnxModel::data_inputs`] skips those.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// The graph inputs a caller must feed: those without an initializer.
    pub fn data_inputs(&self) -> impl Iterator<Item = &ValueInfo> + '_ {
        self.inputs.iter().filter(move |v| self.initializer(&v.name).is_none())
    }

    /// The graph outputs, in order.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// The optional declared types of intermediate values (`value_info`).
    pub fn value_info(&self) -> &[ValueInfo] {
        &self.value_info
    }

    /// The main graph's initializers, checked, with external data read.
    pub fn initializers(&self) -> &[Tensor] {
        &self.initializers
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        self.by_name.get(name).and_then(|&i| self.initializers.get(i))
    }

    /// The main graph's nodes, in file (topological) order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = Node<'_>> + '_ {
        self.graph().node.iter().enumerate().map(|(i, n)| Node::new(n, i, &self.limits))
    }

    /// The limits the model was read with (attribute tensors are re-checked against them).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
