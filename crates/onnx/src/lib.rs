//! `kiln-onnx`: a bounded, safe reader for ONNX `ModelProto` files.
//!
//! This is the first half of Kiln's ONNX front end: it decodes a model,
//! checks it, reads its external data and gives typed access to its graph;
//! a converter (not here) maps the result into `kiln_ir::Graph`.
//!
//! ```no_run
//! let model = kiln_onnx::read_model(std::path::Path::new("model.onnx"))?;
//! assert!(model.opset("").unwrap_or(0) >= 13);
//! for input in model.data_inputs() {
//!     println!("{}: {:?}", input.name, input.shape);
//! }
//! for node in model.nodes() {
//!     if node.op_type() == "Conv" {
//!         let strides = node.attr_ints("strides")?.unwrap_or(&[1, 1]);
//!         let weight = model.initializer(&node.inputs()[1]).map(|w| w.to_f32_vec()).transpose()?;
//!         println!("{} strides {strides:?}, {} weights", node.label(), weight.map_or(0, |w| w.len()));
//!     }
//! }
//! # Ok::<(), kiln_onnx::OnnxError>(())
//! ```
//!
//! The input is untrusted. A malformed, truncated or hostile file is an
//! [`OnnxError`], never a panic, and costs bounded memory ([`Limits`]): the
//! file size is checked before reading, the protobuf structure before
//! decoding, every tensor's byte size (checked arithmetic) before its data is
//! used, and external data paths may not leave the model's directory.
//!
//! Modules, one concept each: `proto` (the messages), `scan` (the pre-decode
//! structure bound), `model` (reading and checking, [`OnnxModel`]), `tensor`
//! ([`Tensor`] and the shape/data checks), `external` (external data files),
//! `attr` ([`Node`] and typed attributes), `limits`, `error`.

// No `unsafe` in this crate: it reads untrusted bytes.
#![forbid(unsafe_code)]

mod attr;
pub mod convert;
mod error;
mod external;
mod limits;
mod model;
pub mod proto;
mod scan;
mod tensor;

pub use attr::Node;
pub use convert::{import, to_graph, ImportError, ImportOptions, ShapeFn};
pub use error::{OnnxError, Result};
pub use limits::Limits;
pub use model::{read_model, read_model_with, Dim, OnnxModel, ValueInfo};
pub use proto::{AttributeType, DataLocation, DataType};
pub use tensor::{bf16_to_f32, f16_to_f32, Tensor};
