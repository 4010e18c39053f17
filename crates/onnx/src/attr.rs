//! [`Node`]: a node of a read model, with typed attribute access.
//!
//! Every accessor returns `Ok(None)` when the attribute is absent (so the
//! converter applies the operator's default), `Ok(Some(..))` when it has the
//! asked type, and an error naming the node, its operator, the attribute and
//! both types otherwise. ONNX writers must set `AttributeProto.type`; the
//! accessors go by it, never by which field happens to be non-empty, because
//! proto3 cannot tell an absent `i` from `i = 0`.

use crate::error::{OnnxError, Result};
use crate::limits::Limits;
use crate::proto::{AttributeProto, AttributeType, NodeProto};
use crate::tensor::Tensor;

/// A node of a read model's graph (a borrowed view of its `NodeProto`).
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    proto: &'a NodeProto,
    index: usize,
    limits: &'a Limits,
}

impl<'a> Node<'a> {
    pub(crate) fn new(proto: &'a NodeProto, index: usize, limits: &'a Limits) -> Self {
        Node { proto, index, limits }
    }

    /// The node's name, `""` if it has none (ONNX does not require one).
    pub fn name(&self) -> &'a str {
        &self.proto.name
    }

    /// The name used in messages: the node's name, or `#index` (its position
    /// in the graph) when it has none.
    pub fn label(&self) -> String {
        if self.proto.name.is_empty() {
            format!("#{}", self.index)
        } else {
            self.proto.name.clone()
        }
    }

    /// Its position in the graph's node list (topological order).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The operator (`Conv`).
    pub fn op_type(&self) -> &'a str {
        &self.proto.op_type
    }

    /// The operator's domain; `""` (the default `ai.onnx`) for standard operators.
    pub fn domain(&self) -> &'a str {
        &self.proto.domain
    }

    /// Input value names, in operand order; `""` marks an omitted optional input.
    pub fn inputs(&self) -> &'a [String] {
        &self.proto.input
    }

    /// Output value names.
    pub fn outputs(&self) -> &'a [String] {
        &self.proto.output
    }

    /// The underlying message.
    pub fn proto(&self) -> &'a NodeProto {
        self.proto
    }

    /// All attributes, as stored.
    pub fn attributes(&self) -> &'a [AttributeProto] {
        &self.proto.attribute
    }

    /// The attribute `name`, if present (names are unique: checked at load).
    pub fn attribute(&self, name: &str) -> Option<&'a AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    fn error(&self, attr: &AttributeProto, reason: impl Into<String>) -> OnnxError {
        OnnxError::Attribute {
            node: self.label(),
            op_type: self.proto.op_type.clone(),
            attribute: attr.name.clone(),
            reason: reason.into(),
        }
    }

    /// The attribute `name` if it has type `want`.
    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>> {
        let Some(a) = self.attribute(name) else { return Ok(None) };
        if !a.ref_attr_name.is_empty() {
            return Err(self.error(
                a,
                format!("refers to function attribute `{}`, which is only valid inside a function", a.ref_attr_name),
            ));
        }
        match AttributeType::try_from(a.r#type) {
            Ok(t) if t == want => Ok(Some(a)),
            other => Err(OnnxError::AttributeType {
                node: self.label(),
                op_type: self.proto.op_type.clone(),
                attribute: a.name.clone(),
                expected: want.proto_name(),
                actual: match other {
                    Ok(t) => t.proto_name().to_string(),
                    Err(_) => format!("unknown type {}", a.r#type),
                },
            }),
        }
    }

    /// An `INT` attribute.
    pub fn attr_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    /// An `INTS` attribute.
    pub fn attr_ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.as_slice()))
    }

    /// A `FLOAT` attribute.
    pub fn attr_float(&self, name: &str) -> Result<Option<f32>> {
        Ok(self.typed(name, AttributeType::Float)?.map(|a| a.f))
    }

    /// A `FLOATS` attribute.
    pub fn attr_floats(&self, name: &str) -> Result<Option<&'a [f32]>> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.as_slice()))
    }

    /// A `STRING` attribute, which must be UTF-8.
    pub fn attr_string(&self, name: &str) -> Result<Option<&'a str>> {
        let Some(a) = self.typed(name, AttributeType::String)? else { return Ok(None) };
        std::str::from_utf8(&a.s).map(Some).map_err(|e| self.error(a, format!("the string is not UTF-8 ({e})")))
    }

    /// A `STRINGS` attribute, each of which must be UTF-8.
    pub fn attr_strings(&self, name: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(a) = self.typed(name, AttributeType::Strings)? else { return Ok(None) };
        a.strings
            .iter()
            .enumerate()
            .map(|(i, s)| std::str::from_utf8(s).map_err(|e| self.error(a, format!("string {i} is not UTF-8 ({e})"))))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// A `TENSOR` attribute (`Constant`'s `value`, ...), checked and copied
    /// (external data was read at load). An unnamed tensor is named after the
    /// node and attribute.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(a) = self.typed(name, AttributeType::Tensor)? else { return Ok(None) };
        let Some(t) = &a.t else { return Err(self.error(a, "has type TENSOR but no tensor")) };
        let label = attr_tensor_label(t.name.as_str(), &self.label(), &a.name);
        Tensor::from_proto((**t).clone(), &label, self.limits).map(Some)
    }
}

/// The name a tensor attribute's errors use: its own name if it has one.
pub(crate) fn attr_tensor_label(tensor: &str, node: &str, attribute: &str) -> String {
    if tensor.is_empty() {
        format!("attribute `{attribute}` of node `{node}`")
    } else {
        tensor.to_string()
    }
}
