//! The ONNX protobuf messages Kiln reads, written by hand with prost's derive.
//!
//! Field numbers and enum values are those of `onnx/onnx.proto3` at onnx commit
//! f7546912001bc31e92a238b17068a21b373d882e (VERSION_NUMBER 1.23.0, IR version 14),
//! checked field by field (`scripts/onnx/check_proto_tags.py` compares every tag
//! and enum value with the descriptors of the installed `onnx` package). Only the
//! fields Kiln needs are declared: prost skips every other field of the wire
//! format (sparse tensors, training info, functions, sequence/map types, ...), so
//! a model that uses them still decodes and those parts simply read as absent.
//!
//! Enum-typed fields are kept as `i32`, as prost does, because a file may carry a
//! value this version does not know; the checks turn unknown values into errors
//! (`tensor.rs` for `data_type` and `data_location`, `model.rs` for declared element
//! types, `attr.rs` for an attribute's type when it is read). The singular message
//! fields `t` and `g` of [`AttributeProto`] are boxed so that an empty attribute
//! costs a few hundred bytes of memory rather than the size of a whole tensor and
//! graph struct (see `scan.rs` on memory bounds).

/// `ModelProto`: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version the file claims (`Version` in onnx.proto).
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// The operator sets the graph uses, one entry per domain.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The tool that wrote the file (`pytorch`, `onnx.helper`, ...).
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// That tool's version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Reverse-DNS namespace of the model.
    #[prost(string, tag = "4")]
    pub domain: String,
    /// The model's own version number.
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Free text.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The main graph; required (its absence is an error after decoding).
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Free key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `OperatorSetIdProto`: one (domain, version) pair of `opset_import`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// `""` and `"ai.onnx"` both mean the default operator set.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// The operator set version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `StringStringEntryProto`: a key/value pair (metadata, external data).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `GraphProto`. `sparse_initializer` (15), `quantization_annotation` (14) and
/// `metadata_props` (16) are not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The nodes, in topological order (as ONNX requires).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights), named like the values they define.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Free text.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Graph inputs (in IR < 4 also every initializer).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Optional types of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`. `overload` (8), `metadata_props` (9) and
/// `device_configurations` (10) are not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names; `""` marks an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name (may be empty).
    #[prost(string, tag = "3")]
    pub name: String,
    /// The operator (`Conv`, ...).
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// The operator's domain; `""` is the default `ai.onnx`.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// The attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Free text.
    #[prost(string, tag = "6")]
    pub doc_string: String,
}

/// `AttributeProto`. `sparse_tensor` (22), `tp` (14), `sparse_tensors` (23) and
/// `type_protos` (15) are not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Set only inside a function body; Kiln reads no functions, so a main-graph
    /// attribute with it is refused on access.
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    /// Free text.
    #[prost(string, tag = "13")]
    pub doc_string: String,
    /// An [`AttributeType`] value.
    #[prost(enumeration = "AttributeType", tag = "20")]
    pub r#type: i32,
    /// `FLOAT` value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// `INT` value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// `STRING` value (UTF-8 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// `TENSOR` value.
    #[prost(message, optional, boxed, tag = "5")]
    pub t: Option<Box<TensorProto>>,
    /// `GRAPH` value (a subgraph, e.g. an `If` branch).
    #[prost(message, optional, boxed, tag = "6")]
    pub g: Option<Box<GraphProto>>,
    /// `FLOATS` value.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// `INTS` value.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// `STRINGS` value.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// `TENSORS` value.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// `GRAPHS` value.
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
}

/// `AttributeProto.AttributeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// `UNDEFINED`.
    Undefined = 0,
    /// `FLOAT`.
    Float = 1,
    /// `INT`.
    Int = 2,
    /// `STRING`.
    String = 3,
    /// `TENSOR`.
    Tensor = 4,
    /// `GRAPH`.
    Graph = 5,
    /// `FLOATS`.
    Floats = 6,
    /// `INTS`.
    Ints = 7,
    /// `STRINGS`.
    Strings = 8,
    /// `TENSORS`.
    Tensors = 9,
    /// `GRAPHS`.
    Graphs = 10,
    /// `SPARSE_TENSOR`.
    SparseTensor = 11,
    /// `SPARSE_TENSORS`.
    SparseTensors = 12,
    /// `TYPE_PROTO`.
    TypeProto = 13,
    /// `TYPE_PROTOS`.
    TypeProtos = 14,
}

impl AttributeType {
    /// The onnx.proto spelling (`INTS`), used in error messages.
    pub fn proto_name(self) -> &'static str {
        match self {
            AttributeType::Undefined => "UNDEFINED",
            AttributeType::Float => "FLOAT",
            AttributeType::Int => "INT",
            AttributeType::String => "STRING",
            AttributeType::Tensor => "TENSOR",
            AttributeType::Graph => "GRAPH",
            AttributeType::Floats => "FLOATS",
            AttributeType::Ints => "INTS",
            AttributeType::Strings => "STRINGS",
            AttributeType::Tensors => "TENSORS",
            AttributeType::Graphs => "GRAPHS",
            AttributeType::SparseTensor => "SPARSE_TENSOR",
            AttributeType::SparseTensors => "SPARSE_TENSORS",
            AttributeType::TypeProto => "TYPE_PROTO",
            AttributeType::TypeProtos => "TYPE_PROTOS",
        }
    }
}

/// `TensorProto`. `doc_string` (12) and `metadata_props` (16) are not declared.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The shape; every entry must be >= 0.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// A [`DataType`] value (declared `int32` in onnx.proto, not as the enum).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Segmented tensors are refused by the checks: Kiln reads whole tensors only.
    #[prost(message, optional, tag = "3")]
    pub segment: Option<Segment>,
    /// Typed data of `FLOAT` (and `COMPLEX64`, two per element).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Typed data of `INT32` and of every narrower type: int8/16, uint8/16, bool, and the bits of float16/bfloat16/float8.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Typed data of `STRING`.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// Typed data of `INT64`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// The tensor's name (the value it defines, for an initializer).
    #[prost(string, tag = "8")]
    pub name: String,
    /// The elements as little-endian bytes; excludes the typed fields.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// Typed data of `DOUBLE` (and `COMPLEX128`, two per element).
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Typed data of `UINT32` and `UINT64`.
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// `location`, `offset`, `length` (and `checksum`) of external data.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// A [`DataLocation`] value.
    #[prost(enumeration = "DataLocation", tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.Segment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {
    /// First element.
    #[prost(int64, tag = "1")]
    pub begin: i64,
    /// One past the last element.
    #[prost(int64, tag = "2")]
    pub end: i64,
}

/// `TensorProto.DataType`: element types, with the onnx.proto values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set (invalid in a tensor).
    Undefined = 0,
    /// f32.
    Float = 1,
    /// u8.
    Uint8 = 2,
    /// i8.
    Int8 = 3,
    /// u16.
    Uint16 = 4,
    /// i16.
    Int16 = 5,
    /// i32.
    Int32 = 6,
    /// i64.
    Int64 = 7,
    /// Byte strings (UTF-8 by convention).
    String = 8,
    /// One byte, 0 or 1.
    Bool = 9,
    /// IEEE 754 binary16.
    Float16 = 10,
    /// f64.
    Double = 11,
    /// u32.
    Uint32 = 12,
    /// u64.
    Uint64 = 13,
    /// Two f32 (real, imaginary).
    Complex64 = 14,
    /// Two f64 (real, imaginary).
    Complex128 = 15,
    /// The upper half of an f32.
    Bfloat16 = 16,
    /// 8-bit float, 4 exponent bits, no infinities.
    Float8e4m3fn = 17,
    /// 8-bit float, 4 exponent bits, no infinities, no negative zero.
    Float8e4m3fnuz = 18,
    /// 8-bit float, 5 exponent bits.
    Float8e5m2 = 19,
    /// 8-bit float, 5 exponent bits, no infinities, no negative zero.
    Float8e5m2fnuz = 20,
    /// 4-bit unsigned, two per byte.
    Uint4 = 21,
    /// 4-bit signed, two per byte.
    Int4 = 22,
    /// 4-bit float, two per byte.
    Float4e2m1 = 23,
    /// 8-bit exponent-only scale.
    Float8e8m0 = 24,
    /// 2-bit unsigned, four per byte.
    Uint2 = 25,
    /// 2-bit signed, four per byte.
    Int2 = 26,
}

impl DataType {
    /// The onnx.proto spelling (`FLOAT16`), used in error messages.
    pub fn proto_name(self) -> &'static str {
        match self {
            DataType::Undefined => "UNDEFINED",
            DataType::Float => "FLOAT",
            DataType::Uint8 => "UINT8",
            DataType::Int8 => "INT8",
            DataType::Uint16 => "UINT16",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::String => "STRING",
            DataType::Bool => "BOOL",
            DataType::Float16 => "FLOAT16",
            DataType::Double => "DOUBLE",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Complex64 => "COMPLEX64",
            DataType::Complex128 => "COMPLEX128",
            DataType::Bfloat16 => "BFLOAT16",
            DataType::Float8e4m3fn => "FLOAT8E4M3FN",
            DataType::Float8e4m3fnuz => "FLOAT8E4M3FNUZ",
            DataType::Float8e5m2 => "FLOAT8E5M2",
            DataType::Float8e5m2fnuz => "FLOAT8E5M2FNUZ",
            DataType::Uint4 => "UINT4",
            DataType::Int4 => "INT4",
            DataType::Float4e2m1 => "FLOAT4E2M1",
            DataType::Float8e8m0 => "FLOAT8E8M0",
            DataType::Uint2 => "UINT2",
            DataType::Int2 => "INT2",
        }
    }
}

/// `TensorProto.DataLocation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataLocation {
    /// In the message: `raw_data` or a typed field.
    Default = 0,
    /// In a file named by `external_data`.
    External = 1,
}

/// `ValueInfoProto`: a graph input, output or intermediate value with its type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type; absent when unknown.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Free text.
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// `TypeProto`. Only the `tensor_type` arm of the `value` oneof is declared; a
/// sequence, map, optional, sparse or opaque type reads as `value: None`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// Which kind of type; `None` for the kinds not declared here.
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    /// Optional semantic tag (`IMAGE`, ...).
    #[prost(string, tag = "6")]
    pub denotation: String,
}

/// The nested messages of `TypeProto`.
pub mod type_proto {
    /// `TypeProto.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `tensor_type = 1`.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }

    /// `TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// A `DataType` value; 0 when the element type is not given.
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// Absent when even the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// One entry per axis.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// The nested messages of `TensorShapeProto`.
pub mod tensor_shape_proto {
    /// `TensorShapeProto.Dimension`: a size, a symbolic name, or neither.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size, a symbolic name, or neither (unknown).
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Optional semantic tag of the axis (`DATA_BATCH`, ...).
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    /// The oneof of `Dimension`.
    pub mod dimension {
        /// `Dimension.value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// `dim_value = 1`.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// `dim_param = 2`.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}
