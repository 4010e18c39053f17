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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorRepr {
    shape: Vec<usize>,
    #[serde(serialize_with = "floats::serialize", deserialize_with = "floats::deserialize")]
    data: Vec<f32>,
}

/// Parameter data: finite values as JSON numbers, and the values JSON has no
/// number for as the strings `"NaN"`, `"inf"` and `"-inf"` (serde_json would
/// write them as `null`, which does not read back), so a graph whose weights
/// hold an infinity (say, from a safetensors file) still round-trips.
mod floats {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for &x in v {
            if x.is_finite() {
                seq.serialize_element(&x)?;
            } else if x.is_nan() {
                seq.serialize_element("NaN")?;
            } else if x > 0.0 {
                seq.serialize_element("inf")?;
            } else {
                seq.serialize_element("-inf")?;
            }
        }
        seq.end()
    }

    struct Float(f32);

    impl<'de> de::Deserialize<'de> for Float {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Float;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a number or one of \"NaN\", \"inf\", \"-inf\"")
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Float, E> {
                    Ok(Float(v as f32))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Float, E> {
                    Ok(Float(v as f32))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Float, E> {
                    Ok(Float(v as f32))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Float, E> {
                    match v {
                        "NaN" => Ok(Float(f32::NAN)),
                        "inf" => Ok(Float(f32::INFINITY)),
                        "-inf" => Ok(Float(f32::NEG_INFINITY)),
                        _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                    }
                }
            }
            d.deserialize_any(V)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        struct S;
        impl<'de> Visitor<'de> for S {
            type Value = Vec<f32>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
                // No size hint: the list's length is not trusted for allocation.
                let mut out = Vec::new();
                while let Some(Float(x)) = seq.next_element()? {
                    out.push(x);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(S)
    }
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
                        module: n.module().map(str::to_string),
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
        let mut modules = Vec::new();
        for n in self.nodes {
            if let Some(m) = n.module {
                modules.push((n.name.clone(), m));
            }
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
        let mut g = Graph::from_parts(self.name, nodes, operands, &self.inputs, &self.outputs)?;
        for (node, module) in modules {
            let id = g.lookup(&node)?;
            g.set_module(id, &module)?;
        }
        Ok(g)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_parameters_round_trip() {
        // Found by kiln-fuzz (graph-json): a parameter value of 1e39 reads as
        // f32 infinity, which to_json wrote as `null`, which from_json refused.
        let json = r#"{"name": "g", "inputs": ["x"], "outputs": ["@out0"], "nodes": [
            {"name": "x", "op": {"kind": "input"}, "operands": [], "shape": [1, 2, 1, 1]},
            {"name": "bn", "op": {"kind": "lazy_batch_norm2d", "params": {"eps": 1e-5, "momentum": 0.1, "affine": true}},
             "operands": ["x"], "shape": null,
             "params": {"weight": {"shape": [3], "data": [1e39, -1e39, 2]}}},
            {"name": "@out0", "op": {"kind": "output"}, "operands": ["bn"], "shape": null}]}"#;
        let g = match Graph::from_json(json) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        let text = g.to_json();
        assert!(text.contains("\"inf\"") && text.contains("\"-inf\""), "{text}");
        let back = Graph::from_json(&text).map_err(|e| e.to_string());
        assert_eq!(back.as_ref().map(|b| b.to_json()), Ok(text.clone()));
        // NaN has no JSON number either.
        let nan = text.replacen("\"inf\"", "\"NaN\"", 1);
        let g = Graph::from_json(&nan).map_err(|e| e.to_string());
        assert!(g.as_ref().is_ok_and(|g| g.to_json() == nan), "{g:?}");
        assert!(Graph::from_json(&text.replacen("\"inf\"", "\"infinity\"", 1)).is_err());
    }

    #[test]
    fn non_finite_momentum_is_refused_on_read() {
        // Found by kiln-fuzz reasoning about the same bug: a momentum of 1e39
        // read as infinity, and `to_json` then wrote `null`.
        let json = r#"{"name": "g", "inputs": ["x"], "outputs": ["@out0"], "nodes": [
            {"name": "x", "op": {"kind": "input"}, "operands": [], "shape": [1, 2, 1, 1]},
            {"name": "bn", "op": {"kind": "lazy_batch_norm2d", "params": {"eps": 1e-5, "momentum": 1e39, "affine": true}},
             "operands": ["x"], "shape": null},
            {"name": "@out0", "op": {"kind": "output"}, "operands": ["bn"], "shape": null}]}"#;
        let e = Graph::from_json(json).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|e| e.contains("momentum")), "{e:?}");
        assert!(Graph::from_json(&json.replace("1e39", "0.5")).is_ok());
    }

    #[test]
    fn conv_padding_forms_round_trip() {
        use crate::op::{Conv2dParams, ConvTranspose2dParams};
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2, 5, 5]).unwrap();
        let a = g.add_node("a", Op::lazy_conv2d(Conv2dParams::new(2, 3).padding(1)), &[x]).unwrap();
        let b = g.add_node("b", Op::lazy_conv2d(Conv2dParams::new(2, 2).pads([0, 0], [1, 1])), &[a]).unwrap();
        let p = ConvTranspose2dParams::new(2, 3).stride(2).pads([0, 1], [1, 2]).output_padding(3);
        let c = g.add_node("c", Op::lazy_conv_transpose2d(p), &[b]).unwrap();
        g.add_output(c).unwrap();
        let text = g.to_json();
        // Symmetric padding keeps the plain pair form graphs always had.
        let squeezed: String = text.split_whitespace().collect();
        assert!(squeezed.contains(r#""padding":{"h":1,"w":1}"#), "{text}");
        assert!(squeezed.contains(r#""padding":{"begin":{"h":0,"w":1},"end":{"h":1,"w":2}}"#), "{text}");
        assert!(text.contains("\"begin\""), "{text}");
        let back = Graph::from_json(&text).map_err(|e| e.to_string());
        assert_eq!(back.as_ref().map(|b| b.to_json()), Ok(text.clone()));
        assert_eq!(back.as_ref().map(|b| b.node(b.lookup("c").unwrap()).op().clone()), Ok(g.node(c).op().clone()));
    }
}
