//! One module per fuzz target; each has `run(&[u8]) -> Outcome` and,
//! except [`graphs`], `seeds()` built with Kiln's own writers.

pub mod graph_json;
pub mod graphs;
pub mod model_json;
pub mod npy;
pub mod onnx;
pub mod safetensors;
