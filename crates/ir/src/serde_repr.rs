//! Lossless JSON (de)serialization of a [`Graph`]: ops, operands, shapes
//! (unknown dims as `null`) and attached parameters (shape and data).
//!
//! This is Kiln's own interchange form; the hand-writable model format that
//! mirrors PyTorch lives in [`crate::model`].

use std::collections::BTreeMap;

use ndarray::ArrayD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::IrError;
use crate::graph::Graph;
use crate::op::Op;
use crate::shape::Shape;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphRepr {
    name: Option<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    nodes: Vec<NodeRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRepr {
    name: String,
    op: Op,
    operands: Vec<String>,
    shape: Shape,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, TensorRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorRepr {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Graph {
    /// The graph as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a graph written by [`Graph::to_json`], validating it.
    pub fn from_json(text: &str) -> Result<Graph, IrError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let repr = GraphRepr::deserialize(&mut de).map_err(|e| IrError::from_json(&e))?;
        de.end().map_err(|e| IrError::from_json(&e))?;
        repr.into_graph()
    }

    fn to_repr(&self) -> GraphRepr {
        let name_of = |id| self.node(id).name().to_string();
        GraphRepr {
            name: self.name().map(str::to_string),
            inputs: self.inputs().iter().map(|&i| name_of(i)).collect(),
            outputs: self.outputs().iter().map(|&i| name_of(i)).collect(),
            nodes: self
                .node_ids()
                .map(|id| {
                    let n = self.node(id);
                    NodeRepr {
                        name: n.name().to_string(),
                        op: n.op().clone(),
                        operands: self.operands(id).into_iter().map(name_of).collect(),
                        shape: n.shape().clone(),
                        params: n
                            .params()
                            .iter()
                            .map(|(k, t)| {
                                (k.clone(), TensorRepr { shape: t.shape().to_vec(), data: t.iter().copied().collect() })
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

impl GraphRepr {
    fn into_graph(self) -> Result<Graph, IrError> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut operands = Vec::with_capacity(self.nodes.len());
        for n in self.nodes {
            let mut params = BTreeMap::new();
            for (k, t) in n.params {
                let len = t.data.len();
                let array = ArrayD::from_shape_vec(t.shape.clone(), t.data).map_err(|_| IrError::Model {
                    context: format!("node `{}` parameter `{k}`", n.name),
                    message: format!("shape {:?} does not match {len} values", t.shape),
                })?;
                params.insert(k, array);
            }
            nodes.push((n.name, n.op, n.shape, params));
            operands.push(n.operands);
        }
        Graph::from_parts(self.name, nodes, operands, &self.inputs, &self.outputs)
    }
}

impl Serialize for Graph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_repr().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Graph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GraphRepr::deserialize(d)?.into_graph().map_err(serde::de::Error::custom)
    }
}
