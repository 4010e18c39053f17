//! The hand-writable JSON model format, as a PyTorch user would write it from
//! an `nn.Sequential` by eye (the form of the golden `model` cases):
//!
//! ```json
//! {"inputs": {"z": [2, 32, 1, 1]},
//!  "nodes": [
//!    {"name": "up1", "op": "LazyConvTranspose2d", "args": {"out_channels": 64, "kernel_size": 4, "bias": false}, "inputs": null},
//!    {"name": "act1", "op": "ReLU", "args": {}, "inputs": null}],
//!  "outputs": ["act1"]}
//! ```
//!
//! `op` is a `torch.nn` class name (or `Add` / `Concat`), `args` that class's
//! keyword arguments spelled as PyTorch spells them (int or `[h, w]` pair),
//! `inputs` a list of node or graph-input names, or `null` for "the previous
//! node" (for the first node: the first graph input). `outputs` defaults to the
//! last node; `name` optionally names the graph. Unknown fields and arguments
//! are errors; every error names the node and the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{IrError, Result};
use crate::graph::{Graph, RESERVED_PREFIX};
use crate::op::{
    ArithOp, BatchNorm2dParams, Conv2dParams, ConvPadding, ConvTranspose2dParams, InstanceNormParams, LinearParams, Op,
    PaddingMode, Pair2,
};
use crate::pointwise::{ArgValue, GeluApproximate, Pointwise};
use crate::shape::{Dim, Shape};
use crate::spatial::{
    AvgDivisor, PadMode, Pool2dParams, ShuffleDirection, Sides, UpsampleClass, UpsampleMode, UpsampleParams,
    UpsampleSize,
};

/// The op class names the model format accepts.
pub const SUPPORTED_OPS: &[&str] = &[
    "LazyConvTranspose2d",
    "ConvTranspose2d",
    "LazyConv2d",
    "Conv2d",
    "LazyBatchNorm2d",
    "BatchNorm2d",
    "ReLU",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "ELU",
    "SELU",
    "SiLU",
    "GELU",
    "Hardtanh",
    "ReLU6",
    "Softplus",
    "Hardsigmoid",
    "Hardswish",
    "Mish",
    "PReLU",
    "LazyLinear",
    "Linear",
    "LazyBatchNorm1d",
    "BatchNorm1d",
    "LazyInstanceNorm2d",
    "InstanceNorm2d",
    "GroupNorm",
    "Flatten",
    "Unflatten",
    "Reshape",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ZeroPad2d",
    "ConstantPad2d",
    "ReflectionPad2d",
    "ReplicationPad2d",
    "Upsample",
    "UpsamplingNearest2d",
    "UpsamplingBilinear2d",
    "PixelShuffle",
    "PixelUnshuffle",
    "Identity",
    "Dropout",
    "Dropout2d",
    "Add",
    "Sub",
    "Mul",
    "Concat",
    "Pad",
    "Narrow",
];

const CONV_TRANSPOSE_ARGS: &[&str] = &[
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "pads",
    "output_padding",
    "groups",
    "bias",
    "dilation",
    "padding_mode",
    "output_size",
];
const CONCRETE_CONV_TRANSPOSE_ARGS: &[&str] = &[
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "pads",
    "output_padding",
    "groups",
    "bias",
    "dilation",
    "padding_mode",
    "output_size",
];
const CONV_ARGS: &[&str] =
    &["out_channels", "kernel_size", "stride", "padding", "pads", "dilation", "groups", "bias", "padding_mode"];
const CONCRETE_CONV_ARGS: &[&str] = &[
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "pads",
    "dilation",
    "groups",
    "bias",
    "padding_mode",
];
const BATCH_NORM_ARGS: &[&str] = &["eps", "momentum", "affine", "track_running_stats"];
const CONCRETE_BATCH_NORM_ARGS: &[&str] = &["num_features", "eps", "momentum", "affine", "track_running_stats"];

/// The `args` keys an op class of the model format accepts (PyTorch's
/// keyword-argument names), or `None` for an unknown class.
pub fn accepted_args(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "LazyConvTranspose2d" => CONV_TRANSPOSE_ARGS,
        "ConvTranspose2d" => CONCRETE_CONV_TRANSPOSE_ARGS,
        "LazyConv2d" => CONV_ARGS,
        "Conv2d" => CONCRETE_CONV_ARGS,
        "LazyBatchNorm2d" => BATCH_NORM_ARGS,
        "BatchNorm2d" => CONCRETE_BATCH_NORM_ARGS,
        "ReLU" => &["inplace"],
        "LeakyReLU" => &["negative_slope", "inplace"],
        "Tanh" | "Sigmoid" | "Identity" => &[],
        "Add" | "Sub" | "Mul" => &["other"],
        "ELU" => &["alpha", "inplace"],
        "SELU" | "SiLU" | "Hardsigmoid" | "Hardswish" | "ReLU6" | "Mish" => &["inplace"],
        "GELU" => &["approximate"],
        "Hardtanh" => &["min_val", "max_val", "inplace"],
        "Softplus" => &["beta", "threshold"],
        "PReLU" => &["num_parameters", "init"],
        "Dropout" | "Dropout2d" => &["p", "inplace"],
        "LazyLinear" => &["out_features", "bias"],
        "Linear" => &["in_features", "out_features", "bias"],
        "LazyBatchNorm1d" => BATCH_NORM_ARGS,
        "BatchNorm1d" => CONCRETE_BATCH_NORM_ARGS,
        "LazyInstanceNorm2d" => &["eps", "momentum", "affine", "track_running_stats"],
        "InstanceNorm2d" => &["num_features", "eps", "momentum", "affine", "track_running_stats"],
        "GroupNorm" => &["num_groups", "num_channels", "eps", "affine"],
        "Flatten" => &["start_dim", "end_dim"],
        "Unflatten" => &["dim", "unflattened_size"],
        "Reshape" => &["shape"],
        "MaxPool2d" => &["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"],
        "AvgPool2d" => &["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
        "AdaptiveAvgPool2d" => &["output_size"],
        "ZeroPad2d" | "ReflectionPad2d" | "ReplicationPad2d" => &["padding"],
        "ConstantPad2d" => &["padding", "value"],
        "Upsample" => &["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"],
        "UpsamplingNearest2d" | "UpsamplingBilinear2d" => &["size", "scale_factor"],
        "PixelShuffle" => &["upscale_factor"],
        "PixelUnshuffle" => &["downscale_factor"],
        "Concat" => &["dim"],
        "Pad" => &["pad", "mode", "value"],
        "Narrow" => &["dim", "start", "length"],
        _ => return None,
    })
}

/// Levenshtein edit distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The accepted name `given` most likely means: a close edit distance
/// (case-insensitive), or a name it abbreviates (`kernel` for `kernel_size`).
pub fn did_you_mean<'a>(given: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let given = given.to_ascii_lowercase();
    let limit = (given.chars().count() / 3).max(1);
    accepted
        .iter()
        .filter_map(|&name| {
            let lower = name.to_ascii_lowercase();
            let d = edit_distance(&given, &lower);
            let abbreviates = given.len() >= 3 && (lower.starts_with(&given) || given.starts_with(&lower));
            (d <= limit || abbreviates).then_some((d, name))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

fn hint(suggestion: Option<&str>) -> String {
    suggestion.map_or(String::new(), |s| format!("; did you mean `{s}`?"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    #[serde(default)]
    name: Option<String>,
    inputs: Map<String, Value>,
    nodes: Vec<NodeSpec>,
    #[serde(default)]
    outputs: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: String,
    /// The op class; absent when `module` names the node whose module this
    /// one calls again.
    #[serde(default)]
    op: String,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    inputs: Option<Vec<String>>,
}

/// Parses a model file into a (lazy) graph. Malformed JSON reports line and
/// column; a bad node reports its name and the field.
pub fn parse_model(text: &str) -> Result<Graph> {
    let mut de = serde_json::Deserializer::from_str(text);
    let file = ModelFile::deserialize(&mut de).map_err(|e| json_error(text, &e))?;
    de.end().map_err(|e| IrError::from_json(&e))?;
    build(file)
}

/// A JSON error, with the node and field named when the JSON is well formed
/// but a node's field has the wrong type (`"inputs": "act3"`): serde's own
/// message gives only a position.
fn json_error(text: &str, e: &serde_json::Error) -> IrError {
    let mut err = IrError::from_json(e);
    if e.classify() == serde_json::error::Category::Data {
        if let (IrError::Json { message, .. }, Some(located)) = (&mut err, locate_node_error(text)) {
            *message = located;
        }
    }
    err
}

/// Finds the first node whose fields have the wrong JSON type and says which.
fn locate_node_error(text: &str) -> Option<String> {
    let root: Value = serde_json::from_str(text).ok()?;
    match root.get("inputs") {
        Some(Value::Object(_)) | None => {}
        Some(other) => {
            return Some(format!(
                "field `inputs`: expected an object of graph-input names and shapes, e.g. {{\"x\": [1, 3, 8, 8]}}, got {other}"
            ))
        }
    }
    match root.get("outputs") {
        Some(Value::String(s)) => {
            return Some(format!(
                "field `outputs`: expected a list of node names, got the string \"{s}\" (write [\"{s}\"])"
            ))
        }
        Some(Value::Array(items)) if !items.iter().all(Value::is_string) => {
            return Some(format!("field `outputs`: expected a list of node names, got {}", Value::Array(items.clone())))
        }
        _ => {}
    }
    let nodes = root.get("nodes")?.as_array()?;
    for (i, node) in nodes.iter().enumerate() {
        let Some(fields) = node.as_object() else {
            return Some(format!("nodes[{i}] must be an object with `name`, `op`, `args` and `inputs`, got {node}"));
        };
        let who = match fields.get("name").and_then(Value::as_str) {
            Some(name) => format!("node `{name}`"),
            None => format!("nodes[{i}]"),
        };
        for (field, value) in fields {
            let wrong = match (field.as_str(), value) {
                ("name" | "op", Value::String(_)) => None,
                ("name" | "op", _) => Some("a string"),
                ("args", Value::Object(_)) => None,
                ("args", _) => Some("an object of keyword arguments, e.g. {\"out_channels\": 8}"),
                ("inputs", Value::Null) => None,
                ("inputs", Value::Array(items)) if items.iter().all(Value::is_string) => None,
                ("inputs", Value::String(s)) => {
                    return Some(format!(
                        "{who} field `inputs`: expected a list of node names or null, got the string \"{s}\" (write [\"{s}\"])"
                    ))
                }
                ("inputs", _) => Some("a list of node names, or null for the previous node"),
                (other, _) => {
                    let known = ["name", "op", "args", "inputs"];
                    return Some(format!(
                        "{who}: unknown field `{other}`{} (fields: name, op, args, inputs)",
                        hint(did_you_mean(other, &known))
                    ));
                }
            };
            if let Some(expected) = wrong {
                return Some(format!("{who} field `{field}`: expected {expected}, got {value}"));
            }
        }
        for required in ["name", "op"] {
            if !fields.contains_key(required) {
                return Some(format!("{who}: missing field `{required}`"));
            }
        }
    }
    None
}

/// Builds a graph from an already-parsed JSON value of the model format (for
/// example a golden case, whose extra fields the caller strips).
pub fn model_from_value(value: Value) -> Result<Graph> {
    let file: ModelFile = serde_json::from_value(value)
        .map_err(|e| IrError::Model { context: "model".into(), message: e.to_string() })?;
    build(file)
}

fn build(file: ModelFile) -> Result<Graph> {
    let mut nodes = Vec::new();
    let mut operands = Vec::new();
    let mut input_names = Vec::new();
    for (name, shape) in &file.inputs {
        let dims = parse_shape(shape).ok_or_else(|| IrError::Model {
            context: format!("input `{name}`"),
            message: format!("shape must be a list of positive integers or null (an open dim), got {shape}"),
        })?;
        nodes.push((name.clone(), Op::Input, Shape::Ranked(dims), BTreeMap::new()));
        operands.push(Vec::new());
        input_names.push(name.clone());
    }
    if file.nodes.is_empty() {
        return Err(IrError::Model { context: "model".into(), message: "`nodes` is empty".into() });
    }
    let mut previous = input_names.first().cloned();
    let mut reuses = Vec::new();
    for spec in &file.nodes {
        let op = match &spec.module {
            None => parse_op(spec)?,
            Some(m) => {
                // `{"name": "conv_2", "module": "conv", "inputs": [...]}`: op and
                // arguments are the defining node's; it owns the parameters.
                if !spec.op.is_empty() || !spec.args.is_empty() {
                    return Err(IrError::Model {
                        context: format!("node `{}` field `module`", spec.name),
                        message: format!("calls module `{m}` again, so it takes no `op` or `args` of its own"),
                    });
                }
                let def =
                    file.nodes.iter().find(|n| &n.name == m && n.module.is_none()).ok_or_else(|| IrError::Model {
                        context: format!("node `{}` field `module`", spec.name),
                        message: format!("`{m}` is not a node that defines a module (with `op` and `args`)"),
                    })?;
                reuses.push((spec.name.clone(), m.clone()));
                parse_op(def)?
            }
        };
        let ins = match &spec.inputs {
            Some(list) => list.clone(),
            None if matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Concat | Op::Cat { .. }) => {
                return Err(IrError::Model {
                    context: format!("node `{}` field `inputs`", spec.name),
                    message: format!(
                        "is null (\"the previous node\"), but {} combines several operands: list them, e.g. \"inputs\": [\"a\", \"b\"]",
                        spec.op
                    ),
                })
            }
            None => match &previous {
                Some(p) => vec![p.clone()],
                None => {
                    return Err(IrError::Model {
                        context: format!("node `{}` field `inputs`", spec.name),
                        message: "is null (\"the previous node\") but the model has no graph input".into(),
                    })
                }
            },
        };
        op.check_arity(&spec.name, ins.len())?;
        nodes.push((spec.name.clone(), op, Shape::Unranked, BTreeMap::new()));
        operands.push(ins);
        previous = Some(spec.name.clone());
    }
    let outputs = match file.outputs {
        Some(o) if o.is_empty() => {
            return Err(IrError::Model { context: "field `outputs`".into(), message: "is empty".into() })
        }
        Some(o) => o,
        None => previous.into_iter().collect(),
    };
    let mut output_names = Vec::new();
    for (i, value) in outputs.into_iter().enumerate() {
        let name = format!("{RESERVED_PREFIX}out{i}");
        nodes.push((name.clone(), Op::Output, Shape::Unranked, BTreeMap::new()));
        operands.push(vec![value]);
        output_names.push(name);
    }
    let mut g = Graph::from_parts(file.name, nodes, operands, &input_names, &output_names)?;
    for (node, module) in reuses {
        let id = g.lookup(&node)?;
        g.set_module(id, &module)?;
    }
    Ok(g)
}

/// An input shape: positive sizes, and `null` for a dim left open (bound
/// when the model runs, as PyTorch's modules take any batch).
fn parse_shape(v: &Value) -> Option<Vec<Dim>> {
    v.as_array()?
        .iter()
        .map(|d| match d {
            Value::Null => Some(Dim::Unknown),
            _ => d.as_u64().filter(|&n| n > 0).and_then(|n| usize::try_from(n).ok()).map(Dim::Known),
        })
        .collect()
}

/// Reads a node's `args`, tracking which keys were used so leftovers are errors.
struct Args<'a> {
    node: &'a str,
    op: &'a str,
    map: Map<String, Value>,
    accepted: Vec<&'static str>,
}

impl<'a> Args<'a> {
    fn err(&self, key: &str, message: impl Into<String>) -> IrError {
        IrError::Model { context: format!("node `{}` field `args.{key}`", self.node), message: message.into() }
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.accepted.push(key);
        self.map.remove(key)
    }

    fn int_value(&self, key: &str, v: &Value, min: u64) -> Result<usize> {
        let n = v.as_i64().ok_or_else(|| self.err(key, format!("expected an integer, got {v}")))?;
        if n < min as i64 {
            let what = if min == 0 { "non-negative" } else { "positive" };
            return Err(self.err(key, format!("must be {what}, got {n}")));
        }
        usize::try_from(n).map_err(|_| self.err(key, format!("{n} is too large")))
    }

    fn int(&mut self, key: &'static str, min: u64) -> Result<Option<usize>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.int_value(key, &v, min).map(Some),
        }
    }

    fn required_int(&mut self, key: &'static str, min: u64) -> Result<usize> {
        self.int(key, min)?.ok_or_else(|| self.err(key, format!("is required for {}", self.op)))
    }

    /// An int or a 2-element list of ints. `min` is 0 for paddings; positivity
    /// of kernel/stride/dilation is left to op validation so zero gets the
    /// same message from every front end.
    fn pair(&mut self, key: &'static str) -> Result<Option<Pair2>> {
        let v = match self.take(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        match &v {
            Value::Array(items) if items.len() == 2 => {
                Ok(Some(Pair2 { h: self.int_value(key, &items[0], 0)?, w: self.int_value(key, &items[1], 0)? }))
            }
            Value::Array(items) => {
                Err(self.err(key, format!("expected an int or a pair [h, w], got {} values", items.len())))
            }
            _ => Ok(Some(Pair2::square(self.int_value(key, &v, 0)?))),
        }
    }

    fn required_pair(&mut self, key: &'static str) -> Result<Pair2> {
        self.pair(key)?.ok_or_else(|| self.err(key, format!("is required for {}", self.op)))
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(key, format!("expected true or false, got {v}"))),
        }
    }

    fn float(&mut self, key: &'static str) -> Result<Option<f32>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => Err(self.err(key, format!("expected a finite number, got {v}"))),
            },
        }
    }

    fn padding_mode(&mut self) -> Result<Option<PaddingMode>> {
        match self.take("padding_mode") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => PaddingMode::parse(&s).map(Some).ok_or_else(|| {
                self.err(
                    "padding_mode",
                    format!("expected one of 'zeros', 'reflect', 'replicate', 'circular', got '{s}'"),
                )
            }),
            Some(v) => Err(self.err("padding_mode", format!("expected a string, got {v}"))),
        }
    }

    /// `pads`, a Kiln extension beyond PyTorch: explicit per-side padding
    /// `[top, left, bottom, right]` (ONNX's order). Refused next to `padding`,
    /// which it replaces.
    fn pads(&mut self) -> Result<Option<ConvPadding>> {
        let v = match self.take("pads") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        if self.map.get("padding").is_some_and(|p| !p.is_null()) {
            return Err(self.err("pads", "give either `padding` or `pads`, not both"));
        }
        match &v {
            Value::Array(items) if items.len() == 4 => {
                let mut pads = [0usize; 4];
                for (p, item) in pads.iter_mut().zip(items) {
                    *p = self.int_value("pads", item, 0)?;
                }
                Ok(Some(ConvPadding::from_onnx(pads)))
            }
            _ => Err(self.err("pads", format!("expected a list [top, left, bottom, right] of 4 ints, got {v}"))),
        }
    }

    fn output_size(&mut self) -> Result<Option<Vec<usize>>> {
        match self.take("output_size") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                items.iter().map(|v| self.int_value("output_size", v, 1)).collect::<Result<Vec<_>>>().map(Some)
            }
            Some(v) => Err(self.err("output_size", format!("expected a list of 2, 3 or 4 ints, got {v}"))),
        }
    }

    /// A signed int (a dim index, which may count from the end).
    fn signed(&mut self, key: &'static str) -> Result<Option<i64>> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.err(key, format!("expected an integer, got {v}"))),
        }
    }

    /// A required list of signed ints (a shape with a possible -1).
    fn signed_list(&mut self, key: &'static str) -> Result<Vec<i64>> {
        match self.take(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| self.err(key, format!("expected a list of integers, got {v}"))))
                .collect(),
            None | Some(Value::Null) => Err(self.err(key, format!("is required for {}", self.op))),
            Some(v) => Err(self.err(key, format!("expected a list of integers, got {v}"))),
        }
    }

    /// Accepts and ignores a flag that changes nothing at inference (`inplace`).
    fn ignore(&mut self, key: &'static str) -> Result<()> {
        self.bool(key).map(|_| ())
    }

    fn finish(self) -> Result<()> {
        if let Some(key) = self.map.keys().next() {
            let accepted = if self.accepted.is_empty() { "none".to_string() } else { self.accepted.join(", ") };
            return Err(IrError::Model {
                context: format!("node `{}` field `args.{key}`", self.node),
                message: format!("unknown argument for {} (accepted: {accepted})", self.op),
            });
        }
        Ok(())
    }
}

fn parse_op(spec: &NodeSpec) -> Result<Op> {
    // Unknown arguments first: a misspelt `kernel` would otherwise be reported
    // as a missing `kernel_size`, hiding the real mistake.
    if let Some(accepted) = accepted_args(&spec.op) {
        if let Some(key) = spec.args.keys().find(|k| !accepted.contains(&k.as_str())) {
            let list = if accepted.is_empty() { "none".to_string() } else { accepted.join(", ") };
            return Err(IrError::Model {
                context: format!("node `{}` field `args.{key}`", spec.name),
                message: format!(
                    "unknown argument for {}{} (accepted: {list})",
                    spec.op,
                    hint(did_you_mean(key, accepted))
                ),
            });
        }
    }
    let mut a = Args { node: &spec.name, op: &spec.op, map: spec.args.clone(), accepted: Vec::new() };
    let op = match spec.op.as_str() {
        "LazyConvTranspose2d" => Op::LazyConvTranspose2d { params: conv_transpose_params(&mut a)? },
        "ConvTranspose2d" => {
            let in_channels = a.required_int("in_channels", 1)?;
            Op::ConvTranspose2d { in_channels, params: conv_transpose_params(&mut a)? }
        }
        "LazyConv2d" => Op::LazyConv2d { params: conv_params(&mut a)? },
        "Conv2d" => {
            let in_channels = a.required_int("in_channels", 1)?;
            Op::Conv2d { in_channels, params: conv_params(&mut a)? }
        }
        "LazyBatchNorm2d" => Op::LazyBatchNorm2d { params: batch_norm_params(&mut a)? },
        "BatchNorm2d" => {
            let num_features = a.required_int("num_features", 1)?;
            Op::BatchNorm2d { num_features, params: batch_norm_params(&mut a)? }
        }
        "ReLU" => {
            a.ignore("inplace")?;
            Op::Relu
        }
        "LeakyReLU" => {
            let negative_slope = a.float("negative_slope")?.unwrap_or(0.01);
            a.ignore("inplace")?;
            Op::LeakyRelu { negative_slope }
        }
        "Tanh" => Op::Tanh,
        "Sigmoid" => Op::Sigmoid,
        "ELU" => {
            let alpha = a.float("alpha")?.unwrap_or(1.0);
            a.ignore("inplace")?;
            Op::Pointwise { f: Pointwise::Elu { alpha } }
        }
        "SELU" | "SiLU" | "Hardsigmoid" | "Hardswish" | "ReLU6" | "Mish" => {
            a.ignore("inplace")?;
            let f = match spec.op.as_str() {
                "SELU" => Pointwise::Selu,
                "SiLU" => Pointwise::Silu,
                "Hardsigmoid" => Pointwise::Hardsigmoid,
                "Hardswish" => Pointwise::Hardswish,
                "ReLU6" => Pointwise::Relu6,
                _ => Pointwise::Mish,
            };
            Op::Pointwise { f }
        }
        "GELU" => {
            let approximate = match a.take("approximate") {
                None | Some(Value::Null) => GeluApproximate::None,
                Some(Value::String(s)) => GeluApproximate::parse(&s)
                    .ok_or_else(|| a.err("approximate", format!("expected 'none' or 'tanh', got '{s}'")))?,
                Some(v) => return Err(a.err("approximate", format!("expected 'none' or 'tanh', got {v}"))),
            };
            Op::Pointwise { f: Pointwise::Gelu { approximate } }
        }
        "Hardtanh" => {
            let min_val = a.float("min_val")?.unwrap_or(-1.0);
            let max_val = a.float("max_val")?.unwrap_or(1.0);
            a.ignore("inplace")?;
            Op::Pointwise { f: Pointwise::Hardtanh { min_val, max_val } }
        }
        "Softplus" => {
            let beta = a.float("beta")?.unwrap_or(1.0);
            let threshold = a.float("threshold")?.unwrap_or(20.0);
            Op::Pointwise { f: Pointwise::Softplus { beta, threshold } }
        }
        "PReLU" => {
            let num_parameters = a.int("num_parameters", 1)?.unwrap_or(1);
            let init = a.float("init")?.unwrap_or(0.25);
            Op::PRelu { num_parameters, init }
        }
        "Identity" => Op::Identity,
        "LazyLinear" | "Linear" => {
            let in_features = if spec.op == "Linear" { Some(a.required_int("in_features", 1)?) } else { None };
            let mut params = LinearParams::new(a.required_int("out_features", 0)?);
            if let Some(b) = a.bool("bias")? {
                params.bias = b;
            }
            match in_features {
                Some(in_features) => Op::Linear { in_features, params },
                None => Op::LazyLinear { params },
            }
        }
        "LazyBatchNorm1d" => Op::LazyBatchNorm1d { params: batch_norm_params(&mut a)? },
        "BatchNorm1d" => {
            let num_features = a.required_int("num_features", 1)?;
            Op::BatchNorm1d { num_features, params: batch_norm_params(&mut a)? }
        }
        "LazyInstanceNorm2d" | "InstanceNorm2d" => {
            let num_features =
                if spec.op == "InstanceNorm2d" { Some(a.required_int("num_features", 1)?) } else { None };
            // PyTorch's LazyInstanceNorm2d defaults to affine=True and
            // track_running_stats=True (its parameters are what is lazy);
            // InstanceNorm2d to neither.
            let lazy = num_features.is_none();
            let mut params =
                InstanceNormParams { affine: lazy, track_running_stats: lazy, ..InstanceNormParams::default() };
            if let Some(v) = a.float("eps")? {
                params.eps = v;
            }
            if let Some(v) = a.float("momentum")? {
                params.momentum = v;
            }
            if let Some(v) = a.bool("affine")? {
                params.affine = v;
            }
            if let Some(v) = a.bool("track_running_stats")? {
                params.track_running_stats = v;
            }
            match num_features {
                Some(num_features) => Op::InstanceNorm2d { num_features, params },
                None => Op::LazyInstanceNorm2d { params },
            }
        }
        "GroupNorm" => {
            let num_groups = a.required_int("num_groups", 0)?;
            let num_channels = a.required_int("num_channels", 0)?;
            let eps = a.float("eps")?.unwrap_or(1e-5);
            let affine = a.bool("affine")?.unwrap_or(true);
            Op::GroupNorm { num_groups, num_channels, eps, affine }
        }
        "Flatten" => {
            let start_dim = a.signed("start_dim")?.unwrap_or(1);
            let end_dim = a.signed("end_dim")?.unwrap_or(-1);
            Op::Flatten { start_dim, end_dim }
        }
        "Unflatten" => {
            let dim = a.signed("dim")?.ok_or_else(|| a.err("dim", "is required for Unflatten"))?;
            let sizes = a.signed_list("unflattened_size")?;
            Op::Unflatten { dim, sizes }
        }
        "Reshape" => Op::Reshape { shape: a.signed_list("shape")? },
        "MaxPool2d" => {
            if a.bool("return_indices")? == Some(true) {
                return Err(a.err(
                    "return_indices",
                    "is not supported: Kiln computes the pooled values only (use MaxUnpool-free decoders, or drop the indices)",
                ));
            }
            let params = pool_params(&mut a, true)?;
            Op::MaxPool2d { params }
        }
        "AvgPool2d" => {
            let params = pool_params(&mut a, false)?;
            let mut divisor = AvgDivisor::default();
            if let Some(v) = a.bool("count_include_pad")? {
                divisor.count_include_pad = v;
            }
            divisor.divisor_override = a.int("divisor_override", 0)?;
            Op::AvgPool2d { params, divisor }
        }
        "AdaptiveAvgPool2d" => {
            let v = a.take("output_size").ok_or_else(|| a.err("output_size", "is required for AdaptiveAvgPool2d"))?;
            let one = |a: &Args, v: &Value| -> Result<Option<usize>> {
                if v.is_null() {
                    Ok(None)
                } else {
                    a.int_value("output_size", v, 0).map(Some)
                }
            };
            let output_size = match &v {
                Value::Array(items) if items.len() == 2 => [one(&a, &items[0])?, one(&a, &items[1])?],
                Value::Array(items) => {
                    return Err(a.err("output_size", format!("expected an int or a pair, got {} values", items.len())))
                }
                _ => {
                    let n = one(&a, &v)?;
                    [n, n]
                }
            };
            Op::AdaptiveAvgPool2d { output_size }
        }
        "ZeroPad2d" | "ConstantPad2d" | "ReflectionPad2d" | "ReplicationPad2d" => {
            let padding = sides(&mut a)?;
            let mode = match spec.op.as_str() {
                "ZeroPad2d" => PadMode::Zero,
                "ConstantPad2d" => {
                    let value = a.float("value")?.ok_or_else(|| a.err("value", "is required for ConstantPad2d"))?;
                    PadMode::Constant { value }
                }
                "ReflectionPad2d" => PadMode::Reflect,
                _ => PadMode::Replicate,
            };
            Op::Pad2d { padding, mode }
        }
        "Upsample" | "UpsamplingNearest2d" | "UpsamplingBilinear2d" => {
            Op::Upsample { params: upsample_params(&mut a, &spec.op)? }
        }
        "PixelShuffle" => {
            Op::PixelShuffle { factor: a.required_int("upscale_factor", 0)?, direction: ShuffleDirection::Shuffle }
        }
        "PixelUnshuffle" => {
            Op::PixelShuffle { factor: a.required_int("downscale_factor", 0)?, direction: ShuffleDirection::Unshuffle }
        }
        "Dropout" | "Dropout2d" => {
            let p = a.float("p")?.unwrap_or(0.5);
            a.ignore("inplace")?;
            if spec.op == "Dropout" {
                Op::Dropout { p }
            } else {
                Op::Dropout2d { p }
            }
        }
        "Add" | "Sub" | "Mul" => match a.float("other")? {
            // The scalar form: one operand and a constant.
            Some(other) => {
                let op = match spec.op.as_str() {
                    "Add" => ArithOp::Add,
                    "Sub" => ArithOp::Sub,
                    _ => ArithOp::Mul,
                };
                Op::Scalar { op, other }
            }
            None => match spec.op.as_str() {
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                _ => Op::Mul,
            },
        },
        "Concat" => match a.signed("dim")? {
            None | Some(1) => Op::Concat,
            Some(dim) => Op::Cat { dim },
        },
        "Pad" => functional_pad(&mut a)?,
        "Narrow" => {
            let dim = a.signed("dim")?.ok_or_else(|| a.err("dim", "is required for Narrow"))?;
            let start = a.required_int("start", 0)?;
            let length = a.required_int("length", 0)?;
            Op::Narrow { dim, start, length }
        }
        other => {
            return Err(IrError::Model {
                context: format!("node `{}` field `op`", spec.name),
                message: format!(
                    "unknown op `{other}`{} (supported: {})",
                    hint(did_you_mean(other, SUPPORTED_OPS)),
                    SUPPORTED_OPS.join(", ")
                ),
            })
        }
    };
    a.finish()?;
    op.validate(&spec.name)?;
    Ok(op)
}

/// `kernel_size`, `stride` (default: the kernel), `padding`, `ceil_mode`,
/// and `dilation` for max pooling.
fn pool_params(a: &mut Args, dilation: bool) -> Result<Pool2dParams> {
    let mut p = Pool2dParams::new(a.required_pair("kernel_size")?);
    if let Some(v) = a.pair("stride")? {
        p.stride = v;
    }
    if let Some(v) = a.pair("padding")? {
        p.padding = v;
    }
    if dilation {
        if let Some(v) = a.pair("dilation")? {
            p.dilation = v;
        }
    }
    if let Some(v) = a.bool("ceil_mode")? {
        p.ceil_mode = v;
    }
    Ok(p)
}

/// `F.pad(x, pad, mode, value)` with a `pad` of 2 (last dim) or 4 (last two
/// dims) non-negative values: the matching `*Pad2d`.
fn functional_pad(a: &mut Args) -> Result<Op> {
    let pad = a.signed_list("pad")?;
    if pad.iter().any(|&p| p < 0) {
        return Err(
            a.err("pad", format!("negative padding (cropping) is not supported, got {pad:?}; use Narrow to crop"))
        );
    }
    let p = |i: usize| pad.get(i).map_or(0, |&v| v as usize);
    let padding = match pad.len() {
        2 | 4 => Sides { left: p(0), right: p(1), top: p(2), bottom: p(3) },
        n => return Err(a.err("pad", format!("Kiln pads the last one or two dims: give 2 or 4 values, got {n}"))),
    };
    let value = a.float("value")?.unwrap_or(0.0);
    let mode = match a.take("mode") {
        None | Some(Value::Null) => "constant".to_string(),
        Some(Value::String(m)) => m,
        Some(v) => return Err(a.err("mode", format!("expected a string, got {v}"))),
    };
    let mode = match mode.as_str() {
        "constant" => PadMode::Constant { value },
        "reflect" => PadMode::Reflect,
        "replicate" => PadMode::Replicate,
        other => return Err(a.err("mode", format!("'{other}' is not supported (constant, reflect, replicate)"))),
    };
    if pad.len() == 2 && mode != (PadMode::Constant { value }) {
        // PyTorch reads 2 values in these modes as 1-D padding, which it refuses
        // on 4-D input; Kiln has 2-D padding only.
        return Err(a.err(
            "pad",
            "2 values in reflect/replicate mode are 1-D padding, which Kiln does not have; give 4 values (left, right, 0, 0)",
        ));
    }
    Ok(Op::Pad2d { padding, mode })
}

/// `padding` of the `*Pad2d` classes: an int or `(left, right, top, bottom)`.
fn sides(a: &mut Args) -> Result<Sides> {
    let v = a.take("padding").ok_or_else(|| a.err("padding", format!("is required for {}", a.op)))?;
    let side = |a: &Args, v: &Value| -> Result<usize> {
        if v.as_i64().is_some_and(|n| n < 0) {
            return Err(a.err(
                "padding",
                format!("negative padding (cropping) is not supported, got {v}; crop with a smaller output instead"),
            ));
        }
        a.int_value("padding", v, 0)
    };
    match &v {
        Value::Array(items) if items.len() == 4 => Ok(Sides {
            left: side(a, &items[0])?,
            right: side(a, &items[1])?,
            top: side(a, &items[2])?,
            bottom: side(a, &items[3])?,
        }),
        Value::Array(items) => {
            Err(a.err("padding", format!("expected an int or (left, right, top, bottom), got {} values", items.len())))
        }
        _ => Ok(Sides::all(side(a, &v)?)),
    }
}

fn upsample_params(a: &mut Args, class: &str) -> Result<UpsampleParams> {
    let class = match class {
        "Upsample" => UpsampleClass::Upsample,
        "UpsamplingNearest2d" => UpsampleClass::Nearest2d,
        _ => UpsampleClass::Bilinear2d,
    };
    let size = a.pair("size")?;
    let scale = match a.take("scale_factor") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let f = |x: &Value| x.as_f64().ok_or_else(|| a.err("scale_factor", format!("expected a number, got {x}")));
            Some(match &v {
                Value::Array(items) if items.len() == 2 => (f(&items[0])?, f(&items[1])?),
                Value::Array(items) => {
                    return Err(
                        a.err("scale_factor", format!("expected a number or a pair, got {} values", items.len()))
                    )
                }
                x => {
                    let s = f(x)?;
                    (s, s)
                }
            })
        }
    };
    let size = match (size, scale) {
        (Some(size), None) => UpsampleSize::Size { size },
        (None, Some((h, w))) => UpsampleSize::Scale { h, w },
        // PyTorch's wording for both.
        (Some(_), Some(_)) => return Err(a.err("scale_factor", "only one of size or scale_factor should be defined")),
        (None, None) => return Err(a.err("size", "either size or scale_factor should be defined")),
    };
    let (mode, align_corners) = match class {
        UpsampleClass::Nearest2d => (UpsampleMode::Nearest, false),
        UpsampleClass::Bilinear2d => (UpsampleMode::Bilinear, true),
        UpsampleClass::Upsample => {
            let mode = match a.take("mode") {
                None | Some(Value::Null) => UpsampleMode::Nearest,
                Some(Value::String(m)) => match m.as_str() {
                    "nearest" => UpsampleMode::Nearest,
                    "bilinear" => UpsampleMode::Bilinear,
                    other => {
                        return Err(a.err(
                            "mode",
                            format!("'{other}' is not supported for 4-D inputs (Kiln has 'nearest' and 'bilinear')"),
                        ))
                    }
                },
                Some(v) => return Err(a.err("mode", format!("expected a string, got {v}"))),
            };
            let align = a.bool("align_corners")?;
            if a.bool("recompute_scale_factor")? == Some(true) {
                return Err(a.err(
                    "recompute_scale_factor",
                    "true is not supported; give `size` instead (it is what recomputing the scale means)",
                ));
            }
            (mode, align.unwrap_or(false))
        }
    };
    Ok(UpsampleParams { size, mode, align_corners, class })
}

fn conv_transpose_params(a: &mut Args) -> Result<ConvTranspose2dParams> {
    let out_channels = a.required_int("out_channels", 1)?;
    let mut p = ConvTranspose2dParams::new(out_channels, a.required_pair("kernel_size")?);
    if let Some(v) = a.pair("stride")? {
        p.stride = v;
    }
    if let Some(v) = a.pads()? {
        p.padding = v;
    } else if let Some(v) = a.pair("padding")? {
        p.padding = ConvPadding::Symmetric(v);
    }
    if let Some(v) = a.pair("output_padding")? {
        p.output_padding = v;
    }
    if let Some(v) = a.int("groups", 0)? {
        p.groups = v;
    }
    if let Some(v) = a.bool("bias")? {
        p.bias = v;
    }
    if let Some(v) = a.pair("dilation")? {
        p.dilation = v;
    }
    if let Some(v) = a.padding_mode()? {
        p.padding_mode = v;
    }
    p.output_size = a.output_size()?;
    Ok(p)
}

fn conv_params(a: &mut Args) -> Result<Conv2dParams> {
    let out_channels = a.required_int("out_channels", 1)?;
    let mut p = Conv2dParams::new(out_channels, a.required_pair("kernel_size")?);
    if let Some(v) = a.pair("stride")? {
        p.stride = v;
    }
    if let Some(v) = a.pair("dilation")? {
        p.dilation = v;
    }
    let pads = a.pads()?;
    // padding may be an int, a pair, or PyTorch's 'valid' / 'same'.
    let same = match a.map.get("padding") {
        Some(Value::String(s)) => {
            let s = s.clone();
            a.take("padding");
            match s.as_str() {
                "valid" => false,
                "same" => true,
                other => {
                    return Err(a.err("padding", format!("expected an int, a pair, 'valid' or 'same', got '{other}'")))
                }
            }
        }
        _ => {
            if let Some(v) = a.pair("padding")? {
                p.padding = ConvPadding::Symmetric(v);
            }
            false
        }
    };
    if let Some(v) = pads {
        p.padding = v;
    }
    if same {
        let total = |k: usize, d: usize| d.checked_mul(k.saturating_sub(1));
        let (th, tw) = (total(p.kernel_size.h, p.dilation.h), total(p.kernel_size.w, p.dilation.w));
        match (th, tw) {
            (Some(th), Some(tw)) if p.stride == Pair2::square(1) => {
                // PyTorch puts the odd extra row/column of 'same' at the end side.
                let begin = Pair2 { h: th / 2, w: tw / 2 };
                let end = Pair2 { h: th - begin.h, w: tw - begin.w };
                p.padding =
                    if begin == end { ConvPadding::Symmetric(begin) } else { ConvPadding::PerSide { begin, end } };
            }
            _ => return Err(a.err("padding", "'same' is supported for stride 1 only (as in PyTorch)")),
        }
    }
    if let Some(v) = a.int("groups", 0)? {
        p.groups = v;
    }
    if let Some(v) = a.bool("bias")? {
        p.bias = v;
    }
    if let Some(v) = a.padding_mode()? {
        p.padding_mode = v;
    }
    Ok(p)
}

fn batch_norm_params(a: &mut Args) -> Result<BatchNorm2dParams> {
    let mut p = BatchNorm2dParams::default();
    if let Some(v) = a.float("eps")? {
        p.eps = v;
    }
    if let Some(v) = a.float("momentum")? {
        p.momentum = v;
    }
    if let Some(v) = a.bool("affine")? {
        p.affine = v;
    }
    if a.bool("track_running_stats")? == Some(false) {
        return Err(a.err(
            "track_running_stats",
            "false is not supported: Kiln runs BatchNorm in eval mode with running statistics",
        ));
    }
    Ok(p)
}

/// Writes `graph` in the model format, the inverse of [`parse_model`]: lazy
/// ops as their `Lazy*` class, resolved ops as the concrete class with
/// `in_channels` / `num_features`. Parameters are not written (save them with
/// a `WeightStore` as a safetensors state dict: the keys are `<node>.<param>`).
///
/// Open input dims are written as `null`; an unranked input is an error.
pub fn to_model_json(graph: &Graph) -> Result<String> {
    let mut inputs = Map::new();
    for &id in graph.inputs() {
        let node = graph.node(id);
        let dims = node
            .shape()
            .dims()
            .ok_or_else(|| IrError::InvalidInputShape { node: node.name().into(), shape: node.shape().to_string() })?;
        let dims: Vec<Value> = dims.iter().map(|d| d.known().map_or(Value::Null, Value::from)).collect();
        inputs.insert(node.name().into(), Value::Array(dims));
    }
    let mut nodes = Vec::new();
    for id in graph.topo_order()? {
        let node = graph.node(id);
        if matches!(node.op(), Op::Input | Op::Output) {
            continue;
        }
        let operands: Vec<Value> = graph.operands(id).iter().map(|&o| Value::from(graph.node(o).name())).collect();
        let mut spec = Map::new();
        spec.insert("name".into(), node.name().into());
        match node.module() {
            Some(m) => {
                spec.insert("module".into(), m.into());
            }
            None => {
                spec.insert("op".into(), node.op().class_name().into());
                spec.insert("args".into(), Value::Object(op_args(node.op())));
            }
        }
        spec.insert("inputs".into(), Value::Array(operands));
        nodes.push(Value::Object(spec));
    }
    let outputs: Vec<Value> = graph.output_values().iter().map(|&o| Value::from(graph.node(o).name())).collect();
    let mut file = Map::new();
    if let Some(name) = graph.name() {
        file.insert("name".into(), name.into());
    }
    file.insert("inputs".into(), Value::Object(inputs));
    file.insert("nodes".into(), Value::Array(nodes));
    file.insert("outputs".into(), Value::Array(outputs));
    // One node per line: readable, and diffs show one changed node.
    let mut text = String::from("{\n");
    for (i, (key, value)) in file.iter().enumerate() {
        let comma = if i + 1 < file.len() { "," } else { "" };
        match value {
            Value::Array(items) if key == "nodes" => {
                text.push_str("  \"nodes\": [\n");
                for (j, item) in items.iter().enumerate() {
                    let sep = if j + 1 < items.len() { "," } else { "" };
                    text.push_str(&format!("    {item}{sep}\n"));
                }
                text.push_str(&format!("  ]{comma}\n"));
            }
            _ => text.push_str(&format!("  {}: {value}{comma}\n", Value::from(key.as_str()))),
        }
    }
    text.push('}');
    Ok(text)
}

/// An f32 as the shortest decimal that reads back to the same f32 (`1e-5`,
/// not `9.999999747378752e-6`).
fn f32_value(x: f32) -> Value {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    Value::from(shortest)
}

fn pair_value(p: Pair2) -> Value {
    if p.h == p.w {
        Value::from(p.h)
    } else {
        Value::from(vec![p.h, p.w])
    }
}

/// The model-format `args` of an op, every hyper-parameter spelled out.
fn op_args(op: &Op) -> Map<String, Value> {
    let mut args = Map::new();
    let mut put = |k: &str, v: Value| {
        args.insert(k.to_string(), v);
    };
    match op {
        Op::LazyConvTranspose2d { params } | Op::ConvTranspose2d { params, .. } => {
            if let Op::ConvTranspose2d { in_channels, .. } = op {
                put("in_channels", Value::from(*in_channels));
            }
            put("out_channels", Value::from(params.out_channels));
            put("kernel_size", pair_value(params.kernel_size));
            put("stride", pair_value(params.stride));
            // PyTorch's form wherever it exists, else the `pads` extension.
            match params.pytorch_padding() {
                Some((padding, output_padding)) => {
                    put("padding", pair_value(padding));
                    put("output_padding", pair_value(output_padding));
                }
                None => {
                    put("pads", Value::from(params.padding.to_onnx().to_vec()));
                    put("output_padding", pair_value(params.output_padding));
                }
            }
            put("groups", Value::from(params.groups));
            put("bias", Value::from(params.bias));
            put("dilation", pair_value(params.dilation));
            if params.padding_mode != PaddingMode::Zeros {
                put("padding_mode", params.padding_mode.as_str().into());
            }
            if let Some(size) = &params.output_size {
                put("output_size", Value::from(size.clone()));
            }
        }
        Op::LazyConv2d { params } | Op::Conv2d { params, .. } => {
            if let Op::Conv2d { in_channels, .. } = op {
                put("in_channels", Value::from(*in_channels));
            }
            put("out_channels", Value::from(params.out_channels));
            put("kernel_size", pair_value(params.kernel_size));
            put("stride", pair_value(params.stride));
            match params.padding.as_symmetric() {
                Some(padding) => put("padding", pair_value(padding)),
                None => put("pads", Value::from(params.padding.to_onnx().to_vec())),
            }
            put("dilation", pair_value(params.dilation));
            put("groups", Value::from(params.groups));
            put("bias", Value::from(params.bias));
            if params.padding_mode != PaddingMode::Zeros {
                put("padding_mode", params.padding_mode.as_str().into());
            }
        }
        Op::LazyBatchNorm2d { params }
        | Op::BatchNorm2d { params, .. }
        | Op::LazyBatchNorm1d { params }
        | Op::BatchNorm1d { params, .. } => {
            if let Op::BatchNorm2d { num_features, .. } | Op::BatchNorm1d { num_features, .. } = op {
                put("num_features", Value::from(*num_features));
            }
            put("eps", f32_value(params.eps));
            put("momentum", f32_value(params.momentum));
            put("affine", Value::from(params.affine));
        }
        Op::LeakyRelu { negative_slope } => put("negative_slope", f32_value(*negative_slope)),
        Op::Concat => put("dim", Value::from(1)),
        Op::Cat { dim } => put("dim", Value::from(*dim)),
        Op::Narrow { dim, start, length } => {
            put("dim", Value::from(*dim));
            put("start", Value::from(*start));
            put("length", Value::from(*length));
        }
        Op::Pointwise { f } => {
            for (key, v) in f.args() {
                match v {
                    ArgValue::Float(x) => put(key, f32_value(x)),
                    ArgValue::Str(s) => put(key, Value::from(s)),
                }
            }
        }
        Op::PRelu { num_parameters, init } => {
            put("num_parameters", Value::from(*num_parameters));
            put("init", f32_value(*init));
        }
        Op::Dropout { p } | Op::Dropout2d { p } => put("p", f32_value(*p)),
        Op::LazyLinear { params } | Op::Linear { params, .. } => {
            if let Op::Linear { in_features, .. } = op {
                put("in_features", Value::from(*in_features));
            }
            put("out_features", Value::from(params.out_features));
            put("bias", Value::from(params.bias));
        }
        Op::LazyInstanceNorm2d { params } | Op::InstanceNorm2d { params, .. } => {
            if let Op::InstanceNorm2d { num_features, .. } = op {
                put("num_features", Value::from(*num_features));
            }
            put("eps", f32_value(params.eps));
            put("momentum", f32_value(params.momentum));
            put("affine", Value::from(params.affine));
            put("track_running_stats", Value::from(params.track_running_stats));
        }
        Op::GroupNorm { num_groups, num_channels, eps, affine } => {
            put("num_groups", Value::from(*num_groups));
            put("num_channels", Value::from(*num_channels));
            put("eps", f32_value(*eps));
            put("affine", Value::from(*affine));
        }
        Op::Flatten { start_dim, end_dim } => {
            put("start_dim", Value::from(*start_dim));
            put("end_dim", Value::from(*end_dim));
        }
        Op::Unflatten { dim, sizes } => {
            put("dim", Value::from(*dim));
            put("unflattened_size", Value::from(sizes.clone()));
        }
        Op::Reshape { shape } => put("shape", Value::from(shape.clone())),
        Op::MaxPool2d { params } | Op::AvgPool2d { params, .. } => {
            put("kernel_size", pair_value(params.kernel_size));
            put("stride", pair_value(params.stride));
            put("padding", pair_value(params.padding));
            if let Op::MaxPool2d { .. } = op {
                put("dilation", pair_value(params.dilation));
            }
            put("ceil_mode", Value::from(params.ceil_mode));
            if let Op::AvgPool2d { divisor, .. } = op {
                put("count_include_pad", Value::from(divisor.count_include_pad));
                if let Some(d) = divisor.divisor_override {
                    put("divisor_override", Value::from(d));
                }
            }
        }
        Op::AdaptiveAvgPool2d { output_size } => put(
            "output_size",
            Value::from(output_size.iter().map(|d| d.map_or(Value::Null, Value::from)).collect::<Vec<_>>()),
        ),
        Op::Pad2d { padding, mode } => {
            put("padding", Value::from(vec![padding.left, padding.right, padding.top, padding.bottom]));
            if let PadMode::Constant { value } = mode {
                put("value", f32_value(*value));
            }
        }
        Op::Upsample { params } => {
            match params.size {
                UpsampleSize::Size { size } => put("size", pair_value(size)),
                UpsampleSize::Scale { h, w } => put("scale_factor", Value::from(vec![h, w])),
            }
            if params.class == UpsampleClass::Upsample {
                put("mode", Value::from(params.mode.as_str()));
                if params.mode == UpsampleMode::Bilinear {
                    put("align_corners", Value::from(params.align_corners));
                }
            }
        }
        Op::PixelShuffle { factor, direction } => match direction {
            ShuffleDirection::Shuffle => put("upscale_factor", Value::from(*factor)),
            ShuffleDirection::Unshuffle => put("downscale_factor", Value::from(*factor)),
        },
        Op::Scalar { other, .. } => put("other", f32_value(*other)),
        Op::Input | Op::Output | Op::Relu | Op::Tanh | Op::Sigmoid | Op::Add | Op::Sub | Op::Mul | Op::Identity => {}
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    const DCGAN_HEAD: &str = r#"{"inputs": {"z": [2, 32, 1, 1]}, "nodes": [
        {"name": "up1", "op": "LazyConvTranspose2d", "args": {"out_channels": 64, "kernel_size": 4, "stride": 1, "padding": 0, "bias": false}, "inputs": null},
        {"name": "bn1", "op": "LazyBatchNorm2d", "args": {}, "inputs": null},
        {"name": "act1", "op": "ReLU", "args": {}, "inputs": null}]}"#;

    #[test]
    fn null_input_dims_are_open_and_round_trip() {
        let g = parse_model(
            r#"{"inputs": {"x": [null, null, 4, 5]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3}}]}"#,
        )
        .expect("open dims parse");
        let x = g.node(g.inputs()[0]);
        assert_eq!(x.shape(), &Shape::Ranked(vec![Dim::Unknown, Dim::Unknown, Dim::Known(4), Dim::Known(5)]));
        assert!(g.has_open_inputs());
        assert!(g.to_string().contains("%x: f32[?, ?, 4, 5]"), "{g}");
        let json = to_model_json(&g).expect("writes");
        assert!(json.contains("null"), "open dims are written as null: {json}");
        assert_eq!(parse_model(&json).expect("reads back"), g);
        // Bind: rank and declared dims are checked, open ones take any size.
        let mut bound = g.clone();
        bound.bind_inputs(&[&[2, 7, 4, 5]]).expect("binds");
        assert!(!bound.has_open_inputs());
        let e = g.clone().bind_inputs(&[&[2, 7, 4, 6]]).unwrap_err().to_string();
        assert_eq!(e, "input `x`: got shape [2, 7, 4, 6], but the model declares f32[?, ?, 4, 5] (dim 3 is 6, not 5)");
        let e = g.clone().bind_inputs(&[&[2, 7, 4]]).unwrap_err().to_string();
        assert!(e.contains("(rank 3 instead of 4)"), "{e}");
        let e = g.clone().bind_inputs(&[&[0, 7, 4, 5]]).unwrap_err().to_string();
        assert!(e.contains("dim 0 is 0"), "{e}");
        let e = g.clone().bind_inputs(&[]).unwrap_err().to_string();
        assert_eq!(e, "the model has 1 input(s) (x), got 0 shape(s)");
        for bad in ["[0, 3]", "[-1, 3]", "[1.5, 3]", "[\"N\", 3]", "3"] {
            let text = format!(r#"{{"inputs": {{"x": {bad}}}, "nodes": [{{"name": "r", "op": "ReLU"}}]}}"#);
            let e = parse_model(&text).expect_err(bad).to_string();
            assert!(e.contains("positive integers or null"), "{bad}: {e}");
        }
    }

    #[test]
    fn sequential_chain_with_null_inputs() {
        let g = parse_model(DCGAN_HEAD).unwrap();
        let up1 = g.lookup("up1").unwrap();
        assert_eq!(g.operands(up1), [g.lookup("z").unwrap()]);
        assert_eq!(g.operands(g.lookup("act1").unwrap()), [g.lookup("bn1").unwrap()]);
        assert_eq!(g.output_values(), [g.lookup("act1").unwrap()]);
        match g.node(up1).op() {
            Op::LazyConvTranspose2d { params } => {
                assert_eq!(params.out_channels, 64);
                assert_eq!(params.kernel_size, Pair2::square(4));
                assert!(!params.bias);
            }
            op => panic!("{op:?}"),
        }
        assert_eq!(g.node(g.lookup("z").unwrap()).shape().dims().unwrap()[0], Dim::Known(2));
    }

    #[test]
    fn explicit_inputs_outputs_and_pairs() {
        let text = r#"{"name": "u", "inputs": {"x": [1, 4, 4, 4], "skip": [1, 2, 8, 8]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": [2, 3], "stride": [2, 1], "output_size": [8, 8]}, "inputs": ["x"]},
            {"name": "cat", "op": "Concat", "args": {"dim": 1}, "inputs": ["up", "skip"]}],
            "outputs": ["cat", "up"]}"#;
        let g = parse_model(text).unwrap();
        assert_eq!(g.name(), Some("u"));
        assert_eq!(g.output_values().len(), 2);
        assert_eq!(g.inputs().len(), 2);
        assert_eq!(g.node(g.inputs()[0]).name(), "x");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let e = parse_model("{\"inputs\": {},\n \"nodes\": [,]}").unwrap_err();
        match e {
            IrError::Json { line: 2, column, .. } => assert!(column > 1),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = parse_model(r#"{"inputs": {"x": [1,1,1,1]}, "nodes": [], "extra": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e = parse_model(
            r#"{"inputs": {"x": [1,1,1,1]}, "nodes": [{"name": "a", "op": "ReLU", "inputs": null, "bogus": 1}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn bad_argument_names_node_and_field() {
        let e = parse_model(
            r#"{"inputs": {"x": [1,1,4,4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "strides": 2}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("node `up` field `args.strides`: unknown argument for LazyConvTranspose2d"),
            "{e}"
        );
        let e = parse_model(
            r#"{"inputs": {"x": [1,1,4,4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "padding": -1}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "node `up` field `args.padding`: must be non-negative, got -1");
        let e = parse_model(
            r#"{"inputs": {"x": [1,1,4,4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": [3, 3, 3]}}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("args.kernel_size"), "{e}");
        let e = parse_model(
            r#"{"inputs": {"x": [1,1,4,4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"kernel_size": 3}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "node `up` field `args.out_channels`: is required for LazyConvTranspose2d");
    }

    #[test]
    fn construction_rules_apply() {
        let e = parse_model(
            r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "padding_mode": "reflect"}}]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, IrError::UnsupportedPaddingMode { .. }), "{e}");
    }

    #[test]
    fn unknown_op_and_operand() {
        let e = parse_model(r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "p", "op": "LSTM"}]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown op `LSTM`"), "{e}");
        let e = parse_model(r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "r", "op": "ReLU", "inputs": ["y"]}]}"#)
            .unwrap_err();
        assert!(matches!(e, IrError::UnknownOperand { .. }), "{e}");
    }

    #[test]
    fn cycles_through_forward_references_are_reported() {
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [
            {"name": "a", "op": "Add", "inputs": ["x", "b"]},
            {"name": "b", "op": "ReLU", "inputs": ["a"]}]}"#;
        assert_eq!(parse_model(text).unwrap_err(), IrError::Cycle(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn input_shapes_must_be_positive_ints() {
        for bad in ["[1, 0, 4]", "[1, -2]", "[1.5]", "7"] {
            let text = format!(r#"{{"inputs": {{"x": {bad}}}, "nodes": [{{"name": "r", "op": "ReLU"}}]}}"#);
            let e = parse_model(&text).unwrap_err();
            assert!(e.to_string().starts_with("input `x`: shape must be"), "{e}");
        }
    }

    #[test]
    fn conv2d_padding_strings() {
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "c", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel_size": 3, "padding": "same"}}]}"#;
        let g = parse_model(text).unwrap();
        match g.node(g.lookup("c").unwrap()).op() {
            Op::LazyConv2d { params } => assert_eq!(params.padding, ConvPadding::Symmetric(Pair2::square(1))),
            op => panic!("{op:?}"),
        }
        // An odd total: PyTorch pads the extra row and column at the end.
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "c", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel_size": [2, 4], "padding": "same"}}]}"#;
        let g = parse_model(text).unwrap();
        match g.node(g.lookup("c").unwrap()).op() {
            Op::LazyConv2d { params } => assert_eq!(params.padding.to_onnx(), [0, 1, 1, 2]),
            op => panic!("{op:?}"),
        }
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "c", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel_size": 2, "stride": 2, "padding": "same"}}]}"#;
        assert!(parse_model(text).is_err());
    }

    #[test]
    fn pads_argument() {
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "stride": 2, "pads": [0, 1, 1, 2], "output_padding": 3}},
            {"name": "same", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": 3, "stride": 2, "pads": [1, 1, 0, 0]}},
            {"name": "c", "op": "LazyConv2d", "args": {"out_channels": 2, "kernel_size": 2, "pads": [0, 0, 1, 1]}},
            {"name": "d", "op": "Conv2d", "args": {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "pads": [1, 1, 1, 1]}}]}"#;
        let g = parse_model(text).unwrap();
        let params = |name: &str| match g.node(g.lookup(name).unwrap()).op() {
            Op::LazyConvTranspose2d { params } => (params.padding, params.output_padding),
            Op::LazyConv2d { params } | Op::Conv2d { params, .. } => (params.padding, Pair2::square(0)),
            op => panic!("{op:?}"),
        };
        assert_eq!(params("up"), (ConvPadding::from_onnx([0, 1, 1, 2]), Pair2::square(3)));
        assert_eq!(params("c").0, ConvPadding::from_onnx([0, 0, 1, 1]));
        // Written back in PyTorch's form where there is one, `pads` elsewhere.
        let json = to_model_json(&g).unwrap();
        let written: Value = serde_json::from_str(&json).unwrap();
        let args = |i: usize| &written["nodes"][i]["args"];
        assert_eq!(args(0)["pads"], serde_json::json!([0, 1, 1, 2]));
        assert_eq!((&args(1)["padding"], &args(1)["output_padding"]), (&Value::from(1), &Value::from(1)));
        assert_eq!(args(2)["pads"], serde_json::json!([0, 0, 1, 1]));
        assert_eq!(args(3)["padding"], Value::from(1));
        let back = parse_model(&json).unwrap();
        for (a, b) in g.node_ids().zip(back.node_ids()) {
            assert_eq!(g.node_line(a), back.node_line(b));
        }
        let e = one_node("LazyConv2d", r#"{"out_channels": 2, "kernel_size": 2, "padding": 1, "pads": [0, 0, 1, 1]}"#);
        assert_eq!(e.to_string(), "node `up` field `args.pads`: give either `padding` or `pads`, not both");
        let e = one_node("LazyConv2d", r#"{"out_channels": 2, "kernel_size": 2, "pads": [0, 1]}"#);
        assert!(e.to_string().contains("expected a list [top, left, bottom, right] of 4 ints"), "{e}");
        let e = one_node("LazyConv2d", r#"{"out_channels": 2, "kernel_size": 2, "pads": [0, -1, 0, 0]}"#);
        assert_eq!(e.to_string(), "node `up` field `args.pads`: must be non-negative, got -1");
        let e = one_node(
            "LazyConvTranspose2d",
            r#"{"out_channels": 2, "kernel_size": 2, "pads": [0, 0, 1, 1], "output_size": [4, 4]}"#,
        );
        assert!(matches!(e, IrError::PadsWithOutputSize { .. }), "{e}");
    }

    fn one_node(op: &str, args: &str) -> IrError {
        let text =
            format!(r#"{{"inputs": {{"x": [1,2,4,4]}}, "nodes": [{{"name": "up", "op": "{op}", "args": {args}}}]}}"#);
        parse_model(&text).unwrap_err()
    }

    #[test]
    fn unknown_argument_is_reported_before_a_missing_one() {
        // `kernel` for `kernel_size`: the misspelling is the error, not the absence.
        let e = one_node("LazyConvTranspose2d", r#"{"out_channels": 8, "kernel": 4}"#);
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "node `up` field `args.kernel`: unknown argument for LazyConvTranspose2d; did you mean `kernel_size`?"
            ),
            "{msg}"
        );
        assert!(!msg.contains("is required"), "{msg}");
        let e = one_node("LazyConv2d", r#"{"out_channels": 8, "kernel_size": 3, "strides": 2}"#);
        assert!(
            e.to_string().contains("`args.strides`: unknown argument for LazyConv2d; did you mean `stride`?"),
            "{e}"
        );
        let e = one_node("LazyBatchNorm2d", r#"{"epsilon": 0.001}"#);
        assert!(e.to_string().contains("did you mean `eps`?"), "{e}");
        // Nothing close: no guess, but the accepted names.
        let e = one_node("LeakyReLU", r#"{"alpha": 0.2}"#);
        assert_eq!(
            e.to_string(),
            "node `up` field `args.alpha`: unknown argument for LeakyReLU (accepted: negative_slope, inplace)"
        );
        let e = one_node("Tanh", r#"{"inplace": true}"#);
        assert!(e.to_string().contains("unknown argument for Tanh (accepted: none)"), "{e}");
    }

    #[test]
    fn unknown_op_suggests_the_closest_class() {
        let e = one_node("ConvTranspose2D", "{}");
        assert!(e.to_string().contains("unknown op `ConvTranspose2D`; did you mean `ConvTranspose2d`?"), "{e}");
        let e = one_node("LSTM", "{}");
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("stride", "stride"), 0);
        assert_eq!(did_you_mean("paddign", CONV_ARGS), Some("padding"));
        assert_eq!(did_you_mean("out_channel", CONV_ARGS), Some("out_channels"));
        assert_eq!(did_you_mean("xyz", CONV_ARGS), None);
    }

    #[test]
    fn every_accepted_argument_is_really_read() {
        // The up-front list must agree with what parse_op reads: with every
        // accepted argument given a valid value, parsing succeeds (and
        // Args::finish, which refuses leftovers, saw them all taken).
        let value = |k: &str| -> Value {
            match k {
                "bias" | "affine" | "track_running_stats" | "inplace" => Value::Bool(true),
                "padding_mode" => "zeros".into(),
                "output_size" => serde_json::json!([4, 4]),
                "eps" | "momentum" | "negative_slope" | "p" | "other" => serde_json::json!(0.1),
                "approximate" => "tanh".into(),
                "return_indices" => Value::Bool(false),
                "align_corners" => Value::Bool(true),
                "ceil_mode" | "count_include_pad" => Value::Bool(true),
                "mode" => "bilinear".into(),
                "recompute_scale_factor" => Value::Bool(false),
                "value" => serde_json::json!(0.5),
                "start_dim" | "end_dim" | "dim" | "num_groups" | "num_channels" => 1.into(),
                "unflattened_size" | "shape" => serde_json::json!([-1]),
                "pad" => serde_json::json!([1, 1, 0, 0]),
                "start" => 0.into(),
                "min_val" => serde_json::json!(-1.0),
                "padding" | "output_padding" => 0.into(),
                _ => 1.into(),
            }
        };
        for op in SUPPORTED_OPS {
            // Upsampling takes `size` or `scale_factor`, not both; a
            // convolution `padding` or `pads`, the latter without `output_size`.
            let conv = op.contains("Conv");
            for pads in [false, true].into_iter().filter(|&p| conv || !p) {
                let exclusive = |k: &str| {
                    (op.starts_with("Upsampl") && k == "size")
                        || (conv && !pads && k == "pads")
                        || (pads && (k == "padding" || k == "output_size"))
                };
                let args: Map<String, Value> = accepted_args(op)
                    .unwrap()
                    .iter()
                    .filter(|k| !exclusive(k))
                    .map(|&k| (k.to_string(), if k == "pads" { serde_json::json!([0, 0, 1, 1]) } else { value(k) }))
                    .collect();
                let mut args = args;
                if *op == "Pad" {
                    args.insert("mode".into(), "reflect".into());
                }
                let spec = NodeSpec { name: "n".into(), op: op.to_string(), module: None, args, inputs: None };
                parse_op(&spec).unwrap_or_else(|e| panic!("{op}: {e}"));
            }
        }
    }

    #[test]
    fn multi_operand_ops_need_an_explicit_input_list() {
        for op in ["Add", "Concat"] {
            let text = format!(
                r#"{{"inputs": {{"x": [1,2,4,4]}}, "nodes": [{{"name": "r", "op": "ReLU"}}, {{"name": "m", "op": "{op}", "inputs": null}}]}}"#
            );
            let e = parse_model(&text).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "node `m` field `inputs`: is null (\"the previous node\"), but {op} combines several operands"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn json_type_errors_name_the_node_and_field() {
        let text = "{\"inputs\": {\"x\": [1,2,4,4]}, \"nodes\": [\n  {\"name\": \"act3\", \"op\": \"ReLU\"},\n  {\"name\": \"cat\", \"op\": \"Concat\", \"inputs\": \"act3\"}]}";
        match parse_model(text).unwrap_err() {
            IrError::Json { line: 3, message, .. } => assert_eq!(
                message,
                "node `cat` field `inputs`: expected a list of node names or null, got the string \"act3\" (write [\"act3\"])"
            ),
            e => panic!("{e}"),
        }
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "up", "op": "LazyConv2d", "args": [8, 3]}]}"#;
        let e = parse_model(text).unwrap_err();
        assert!(e.to_string().contains("node `up` field `args`: expected an object of keyword arguments"), "{e}");
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": 3, "op": "ReLU"}]}"#;
        let e = parse_model(text).unwrap_err();
        assert!(e.to_string().contains("nodes[0] field `name`: expected a string, got 3"), "{e}");
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "r", "op": "ReLU", "input": ["x"]}]}"#;
        let e = parse_model(text).unwrap_err();
        assert!(e.to_string().contains("node `r`: unknown field `input`; did you mean `inputs`?"), "{e}");
        let text = r#"{"inputs": {"x": [1,2,4,4]}, "nodes": [{"name": "r", "op": "ReLU"}], "outputs": "r"}"#;
        let e = parse_model(text).unwrap_err();
        assert!(e.to_string().contains("field `outputs`: expected a list of node names, got the string \"r\""), "{e}");
        let text = r#"{"inputs": [[1,2,4,4]], "nodes": [{"name": "r", "op": "ReLU"}]}"#;
        let e = parse_model(text).unwrap_err();
        assert!(e.to_string().contains("field `inputs`: expected an object of graph-input names and shapes"), "{e}");
    }

    #[test]
    fn written_models_parse_back_to_the_same_graph() {
        let text = r#"{"name": "u", "inputs": {"x": [1, 4, 4, 4], "skip": [1, 2, 8, 8]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 2, "kernel_size": [2, 3], "stride": [2, 1], "output_size": [8, 8], "bias": false}, "inputs": ["x"]},
            {"name": "cat", "op": "Concat", "args": {"dim": 1}, "inputs": ["up", "skip"]},
            {"name": "main.0", "op": "LazyBatchNorm2d", "args": {"eps": 0.001, "affine": false}},
            {"name": "c", "op": "Conv2d", "args": {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": "same", "groups": 2}},
            {"name": "a", "op": "LeakyReLU", "args": {"negative_slope": 0.2}},
            {"name": "s", "op": "Add", "inputs": ["a", "c"]},
            {"name": "t", "op": "Tanh"}],
            "outputs": ["t", "cat"]}"#;
        let g = parse_model(text).unwrap();
        let written = to_model_json(&g).unwrap();
        let back = parse_model(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(back.to_string(), g.to_string(), "{written}");
        assert!(written.contains(r#""eps":0.001"#), "shortest float spelling: {written}");
        assert!(written.contains(r#""kernel_size":[2,3]"#), "{written}");
        assert!(written.lines().any(|l| l.trim_start().starts_with(r#"{"name":"main.0""#)), "{written}");
    }
}
