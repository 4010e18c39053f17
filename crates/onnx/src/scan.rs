//! A structure scan of the protobuf wire format, run before prost decodes it.
//!
//! prost bounds its recursion (depth 100) and every length prefix against the
//! buffer, but not the memory a small input can ask for: an empty `NodeProto`
//! is two bytes on the wire and a ~170-byte struct in memory, a packed `int64`
//! of one-byte varints is eight times its wire size. This scan walks the same
//! messages prost will build (the schema of `proto.rs`), adds up the struct
//! and element sizes the decode will allocate beyond the payload bytes, and
//! refuses the input if that exceeds [`Limits::max_struct_bytes`]. It also
//! applies the graph-depth and node-count limits early, so a deeply nested or
//! node-flooded file is refused before any of it is decoded. The same limits
//! are checked again on the decoded model (`model.rs`), so the scan only has to
//! be an upper bound, never exact.
//!
//! Groups (the deprecated wire types 3 and 4, which no ONNX writer emits) are
//! refused here, although prost would skip them as unknown fields.
//!
//! The scan never allocates and recurses only into declared message fields,
//! at most `3 · max_graph_depth + 4` levels (Model → Graph → Node → Attribute →
//! Graph ..., and ValueInfo → Type → Tensor type → Shape → Dimension).

use std::mem::size_of;

use crate::error::{OnnxError, Result};
use crate::limits::Limits;
use crate::proto::{
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    Segment, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The messages of `proto.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Model,
    Opset,
    Entry,
    Graph,
    Node,
    Attribute,
    Tensor,
    Segment,
    ValueInfo,
    Type,
    TypeTensor,
    Shape,
    Dim,
}

impl Kind {
    /// Bytes of the struct prost allocates for one instance (boxed or in a `Vec`).
    fn size(self) -> u64 {
        (match self {
            Kind::Model => size_of::<ModelProto>(),
            Kind::Opset => size_of::<OperatorSetIdProto>(),
            Kind::Entry => size_of::<StringStringEntryProto>(),
            Kind::Graph => size_of::<GraphProto>(),
            Kind::Node => size_of::<NodeProto>(),
            Kind::Attribute => size_of::<AttributeProto>(),
            Kind::Tensor => size_of::<TensorProto>(),
            Kind::Segment => size_of::<Segment>(),
            Kind::ValueInfo => size_of::<ValueInfoProto>(),
            Kind::Type => size_of::<TypeProto>(),
            Kind::TypeTensor => size_of::<type_proto::Tensor>(),
            Kind::Shape => size_of::<TensorShapeProto>(),
            Kind::Dim => size_of::<Dimension>(),
        }) as u64
    }

    /// The message kind of a length-delimited field, if it is a declared message.
    fn child(self, field: u64) -> Option<Kind> {
        Some(match (self, field) {
            (Kind::Model, 7) => Kind::Graph,
            (Kind::Model, 8) => Kind::Opset,
            (Kind::Model, 14) => Kind::Entry,
            (Kind::Graph, 1) => Kind::Node,
            (Kind::Graph, 5) => Kind::Tensor,
            (Kind::Graph, 11..=13) => Kind::ValueInfo,
            (Kind::Node, 5) => Kind::Attribute,
            (Kind::Attribute, 5 | 10) => Kind::Tensor,
            (Kind::Attribute, 6 | 11) => Kind::Graph,
            (Kind::Tensor, 3) => Kind::Segment,
            (Kind::Tensor, 13) => Kind::Entry,
            (Kind::ValueInfo, 2) => Kind::Type,
            (Kind::Type, 1) => Kind::TypeTensor,
            (Kind::TypeTensor, 2) => Kind::Shape,
            (Kind::Shape, 1) => Kind::Dim,
            _ => return None,
        })
    }

    /// In-memory bytes of one element of a repeated varint field (`dims`,
    /// `int32_data`, `ints`, ...), 0 for other fields. A varint takes at least
    /// one wire byte, so `len` packed bytes decode to at most `len` elements.
    fn varint_element(self, field: u64) -> u64 {
        match (self, field) {
            (Kind::Tensor, 1 | 7 | 11) | (Kind::Attribute, 8) => 8,
            (Kind::Tensor, 5) => 4,
            _ => 0,
        }
    }

    /// Whether a length-delimited field is a repeated string or bytes field,
    /// each entry of which is a `String`/`Vec<u8>` header besides its payload.
    fn repeated_bytes(self, field: u64) -> bool {
        matches!((self, field), (Kind::Node, 1 | 2) | (Kind::Attribute, 9) | (Kind::Tensor, 6))
    }
}

struct Scan<'l> {
    limits: &'l Limits,
    cost: u64,
    nodes: u64,
}

fn decode_error(reason: impl Into<String>) -> OnnxError {
    OnnxError::Decode { reason: reason.into() }
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else { return Err(decode_error("truncated varint")) };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(decode_error("varint longer than 10 bytes"))
}

fn skip(buf: &[u8], pos: &mut usize, n: u64) -> Result<()> {
    let end = u64::try_from(*pos).ok().and_then(|p| p.checked_add(n)).filter(|&e| e <= buf.len() as u64);
    match end {
        // `e <= buf.len()`, so it fits `usize`.
        Some(e) => {
            *pos = e as usize;
            Ok(())
        }
        None => Err(decode_error("a field runs past the end of its message")),
    }
}

impl Scan<'_> {
    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.cost = self.cost.saturating_add(bytes);
        if self.cost > self.limits.max_struct_bytes {
            return Err(OnnxError::limit(
                "estimated memory of the decoded message structure",
                self.cost,
                self.limits.max_struct_bytes,
            ));
        }
        Ok(())
    }

    fn message(&mut self, buf: &[u8], kind: Kind, graph_depth: usize) -> Result<()> {
        self.charge(kind.size())?;
        let mut pos = 0;
        while pos < buf.len() {
            let key = varint(buf, &mut pos)?;
            let field = key >> 3;
            if field == 0 || field > (1 << 29) - 1 {
                return Err(decode_error(format!("invalid field number {field}")));
            }
            match key & 7 {
                0 => {
                    varint(buf, &mut pos)?;
                    self.charge(kind.varint_element(field))?;
                }
                1 => skip(buf, &mut pos, 8)?,
                5 => skip(buf, &mut pos, 4)?,
                2 => {
                    let len = varint(buf, &mut pos)?;
                    let start = pos;
                    skip(buf, &mut pos, len)?;
                    let body = &buf[start..pos];
                    if let Some(child) = kind.child(field) {
                        let depth = if child == Kind::Graph { graph_depth + 1 } else { graph_depth };
                        if depth > self.limits.max_graph_depth {
                            return Err(OnnxError::limit(
                                "graph nesting depth",
                                depth as u64,
                                self.limits.max_graph_depth as u64,
                            ));
                        }
                        if child == Kind::Node {
                            self.nodes += 1;
                            if self.nodes > self.limits.max_nodes as u64 {
                                return Err(OnnxError::limit(
                                    "node count (all graphs)",
                                    self.nodes,
                                    self.limits.max_nodes as u64,
                                ));
                            }
                        }
                        self.message(body, child, depth)?;
                    } else if kind.repeated_bytes(field) {
                        self.charge(size_of::<Vec<u8>>() as u64)?;
                    } else {
                        self.charge(len.saturating_mul(kind.varint_element(field)))?;
                    }
                }
                w => return Err(decode_error(format!("unsupported wire type {w} (field {field})"))),
            }
        }
        Ok(())
    }
}

/// Refuses `bytes` if decoding it as a `ModelProto` would exceed the
/// structural limits (see the module docs).
pub(crate) fn scan(bytes: &[u8], limits: &Limits) -> Result<()> {
    Scan { limits, cost: 0, nodes: 0 }.message(bytes, Kind::Model, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_empty_nodes_is_refused_before_decoding() {
        // graph { node {} node {} ... }: two bytes per node on the wire.
        let nodes: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 100_000).flatten().collect();
        let mut model = vec![0x3a];
        let mut len = nodes.len();
        while len >= 0x80 {
            model.push((len as u8) | 0x80);
            len >>= 7;
        }
        model.push(len as u8);
        model.extend_from_slice(&nodes);
        let limits = Limits { max_struct_bytes: 1 << 20, ..Limits::default() };
        let err = scan(&model, &limits).unwrap_err();
        assert!(err.to_string().contains("estimated memory"), "{err}");
        let limits = Limits { max_nodes: 1000, ..Limits::default() };
        assert!(scan(&model, &limits).unwrap_err().to_string().contains("node count"));
        scan(&model, &Limits::default()).expect("within the default limits");
    }

    #[test]
    fn truncated_and_invalid_wire_data_is_an_error() {
        assert!(scan(&[0x3a, 0x05, 0x0a], &Limits::default()).is_err());
        assert!(scan(&[0x08], &Limits::default()).is_err());
        assert!(scan(&[0x00, 0x00], &Limits::default()).is_err());
        assert!(scan(&[0x0b], &Limits::default()).is_err(), "groups are refused");
        assert!(scan(&[0x08, 0x0e], &Limits::default()).is_ok());
    }
}
