//! `ResolveLazy`: rewrites every lazy op into its concrete op, keeping node
//! names, ids and edges, and materializes every parameter, either from a
//! state dict keyed like PyTorch's (`up1.weight`) or from PyTorch's default
//! initialization driven by a seed.
//!
//! It also canonicalizes transposed convolutions: an `output_size` becomes the
//! output padding it implies (as `torch.export` does), so a resolved node
//! carries everything its kernel needs: per-side padding
//! (`params.padding.begin()` / `.end()`, equal for PyTorch's symmetric form)
//! and an `output_padding` added at the end side, never an `output_size`.
//! Requires [`crate::ShapeInference`] to have run.

use std::collections::BTreeMap;

use kiln_ir::ndarray::ArrayD;
use kiln_ir::{Graph, NodeId, Op};

use crate::error::{PassError, Result};
use crate::init::init_params;
use crate::pass::{Changed, Pass};
use crate::shape_fns;
use crate::shape_inference::operand_shape;

/// Where parameters come from.
#[derive(Clone, Debug)]
pub enum ParamSource {
    /// PyTorch's default initialization, one deterministic stream per node.
    Init {
        /// The seed.
        seed: u64,
    },
    /// A state dict keyed `<node>.<param>` (strict: missing, unexpected or
    /// mis-shaped keys are errors).
    StateDict(BTreeMap<String, ArrayD<f32>>),
}

/// The lazy→concrete rewrite with parameter materialization.
#[derive(Clone, Debug)]
pub struct ResolveLazy {
    source: ParamSource,
}

/// BatchNorm buffers PyTorch saves that do not affect eval-mode inference.
const IGNORED_BATCH_NORM_KEYS: &[&str] = &["num_batches_tracked"];

impl ResolveLazy {
    /// Initializes parameters from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        ResolveLazy { source: ParamSource::Init { seed } }
    }

    /// Loads parameters from a state dict.
    pub fn with_state_dict(state: BTreeMap<String, ArrayD<f32>>) -> Self {
        ResolveLazy { source: ParamSource::StateDict(state) }
    }

    /// From any source.
    pub fn new(source: ParamSource) -> Self {
        ResolveLazy { source }
    }

    fn materialize(
        &mut self,
        graph: &mut Graph,
        id: NodeId,
        missing: &mut Vec<(String, Vec<usize>)>,
    ) -> Result<Changed> {
        let node = graph.node(id);
        let name = node.name().to_string();
        let specs = node.op().param_specs();
        let mut changed = Changed::No;
        let mut init: Option<Vec<(&'static str, ArrayD<f32>)>> = None;
        for (pname, dims) in specs {
            let key = format!("{name}.{pname}");
            let expected: Vec<usize> =
                dims.iter().map(|d| d.known()).collect::<Option<_>>().ok_or_else(|| PassError::Unresolved {
                    node: name.clone(),
                    reason: format!("parameter `{pname}` has an unknown shape"),
                })?;
            let given = match &mut self.source {
                ParamSource::StateDict(map) => map.remove(&key),
                ParamSource::Init { .. } => None,
            };
            let value = match given {
                Some(v) => v,
                None => {
                    if let Some(existing) = graph.node(id).param(pname) {
                        check_shape(&key, &expected, existing.shape())?;
                        continue;
                    }
                    match &self.source {
                        ParamSource::StateDict(_) => {
                            // Collected, not returned: a renamed or prefixed state dict
                            // misses every key, and one report should say so.
                            missing.push((key, expected));
                            continue;
                        }
                        ParamSource::Init { seed } => {
                            let seed = *seed;
                            let values = init.get_or_insert_with(|| init_params(graph.node(id).op(), &name, seed));
                            match values.iter().position(|(n, _)| *n == pname) {
                                Some(i) => values.swap_remove(i).1,
                                None => return Err(PassError::MissingParam { key, expected }),
                            }
                        }
                    }
                }
            };
            check_shape(&key, &expected, value.shape())?;
            graph.set_param(id, pname, value)?;
            changed = Changed::Yes;
        }
        Ok(changed)
    }

    /// Keys left in the state dict after every node took its own, reported
    /// together with the `missing` keys as one [`PassError::StateDictMismatch`].
    fn check_leftovers(&mut self, graph: &Graph, missing: Vec<(String, Vec<usize>)>) -> Result<()> {
        let ParamSource::StateDict(map) = &mut self.source else { return Ok(()) };
        let leftovers = std::mem::take(map);
        let mut unexpected = Vec::new();
        for (key, tensor) in leftovers {
            let (node, param) = key.rsplit_once('.').unwrap_or((key.as_str(), ""));
            let note = match graph.find(node) {
                None => String::new(),
                Some(id) => {
                    let op = graph.node(id).op();
                    if matches!(op, Op::BatchNorm2d { .. }) && IGNORED_BATCH_NORM_KEYS.contains(&param) {
                        continue;
                    }
                    let has: Vec<&str> = op.param_specs().iter().map(|(n, _)| *n).collect();
                    format!(
                        "node `{node}` ({}) has no parameter `{param}`; it has: {}",
                        op.class_name(),
                        if has.is_empty() { "none".into() } else { has.join(", ") }
                    )
                }
            };
            unexpected.push(UnexpectedKey { key, shape: tensor.shape().to_vec(), note });
        }
        if missing.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let hint = mismatch_hint(&missing, &unexpected);
        Err(PassError::StateDictMismatch { missing, unexpected, hint })
    }
}

/// A state-dict key no node takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedKey {
    /// The key.
    pub key: String,
    /// Its tensor's shape.
    pub shape: Vec<usize>,
    /// Why the node it names does not take it (empty when no node has that name).
    pub note: String,
}

/// The longest prefix ending in `.` shared by every key.
fn common_prefix<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut prefix: Option<&str> = None;
    for key in keys {
        prefix = Some(match prefix {
            None => key,
            Some(p) => {
                let n = p.bytes().zip(key.bytes()).take_while(|(a, b)| a == b).count();
                &p[..n]
            }
        });
    }
    let p = prefix.unwrap_or("");
    p.rfind('.').map_or(String::new(), |i| p[..=i].to_string())
}

/// The node part of a key: everything before the last `.`.
fn node_of(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(n, _)| n)
}

/// Keys grouped by node (first-seen order), each node's `(param, shape)` list sorted.
type NodeParams = Vec<(String, Vec<(String, Vec<usize>)>)>;

fn group_by_node<'a>(keys: impl Iterator<Item = (&'a str, &'a [usize])>) -> NodeParams {
    let mut groups: NodeParams = Vec::new();
    for (key, shape) in keys {
        let node = node_of(key);
        let param = key[node.len()..].trim_start_matches('.').to_string();
        match groups.iter_mut().find(|(n, _)| n == node) {
            Some((_, params)) => params.push((param, shape.to_vec())),
            None => groups.push((node.to_string(), vec![(param, shape.to_vec())])),
        }
    }
    for (_, params) in &mut groups {
        params.sort();
    }
    groups
}

/// How to fix a state dict whose keys do not match the node names, when the
/// keys show it: a prefix every key shares (`module.`, from a wrapper), or
/// keys whose parameters have exactly the shapes a missing node needs (a
/// differently named attribute, an `nn.Sequential`'s `0.weight`).
fn mismatch_hint(missing: &[(String, Vec<usize>)], unexpected: &[UnexpectedKey]) -> Option<String> {
    if missing.is_empty() || unexpected.is_empty() {
        return None;
    }
    let prefix = common_prefix(unexpected.iter().map(|u| u.key.as_str()));
    if !prefix.is_empty() {
        let stripped_matches =
            unexpected.iter().any(|u| missing.iter().any(|(k, _)| u.key.strip_prefix(&prefix) == Some(k.as_str())));
        if stripped_matches {
            return Some(format!(
                "every unexpected key starts with `{prefix}` (saved from a wrapper module?): strip it with \
                 `--weights-prefix {prefix}` (Rust: `kiln::load_weights_with_prefix(path, \"{prefix}\")`), or save \
                 the inner module's state_dict()"
            ));
        }
    }
    // Group both sides by node, parameters sorted, and pair missing nodes with
    // unexpected ones that hold exactly the same parameter names and shapes.
    let wanted = group_by_node(missing.iter().map(|(k, s)| (k.as_str(), s.as_slice())));
    let offered = group_by_node(unexpected.iter().map(|u| (u.key.as_str(), u.shape.as_slice())));
    let mut used = vec![false; offered.len()];
    let mut renames = Vec::new();
    for (node, params) in &wanted {
        if let Some(i) = (0..offered.len()).find(|&i| !used[i] && offered[i].1 == *params) {
            used[i] = true;
            renames.push(format!("`{node}` -> `{}`", offered[i].0));
        }
    }
    if renames.is_empty() {
        return None;
    }
    const SHOWN: usize = 4;
    let more = if renames.len() > SHOWN { format!(", ... ({} in all)", renames.len()) } else { String::new() };
    renames.truncate(SHOWN);
    Some(format!(
        "node names are the state-dict key prefixes, and these keys have exactly the shapes the nodes need: \
         rename {}{more} in the model (dots and digits are allowed: a node `main.0` loads `main.0.weight`)",
        renames.join(", ")
    ))
}

fn check_shape(key: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(PassError::ParamShape { key: key.into(), expected: expected.to_vec(), got: got.to_vec() });
    }
    Ok(())
}

/// The concrete op a (possibly lazy) op becomes given its input shape, or
/// `None` if it is already concrete and canonical.
fn concrete_op(graph: &Graph, id: NodeId) -> Result<Option<Op>> {
    let node = graph.node(id);
    let name = node.name();
    let class = node.op().class_name();
    let input = || -> Result<Vec<usize>> {
        let o = graph.operands(id).first().copied().ok_or_else(|| kiln_ir::IrError::OperandCount {
            node: name.into(),
            op: class,
            expected: "1",
            got: 0,
        })?;
        operand_shape(graph, id, o)
    };
    Ok(match node.op() {
        Op::LazyConvTranspose2d { params } | Op::ConvTranspose2d { params, .. } => {
            let declared =
                if let Op::ConvTranspose2d { in_channels, .. } = node.op() { Some(*in_channels) } else { None };
            if declared.is_some() && params.output_size.is_none() {
                return Ok(None);
            }
            let s = shape_fns::conv_transpose2d(name, class, &input()?, declared, params)?;
            let mut params = params.clone();
            params.output_padding = s.output_padding;
            params.output_size = None;
            Some(Op::ConvTranspose2d { in_channels: s.in_channels, params })
        }
        Op::LazyConv2d { params } => {
            let (in_channels, _) = shape_fns::conv2d(name, class, &input()?, None, params)?;
            Some(Op::Conv2d { in_channels, params: params.clone() })
        }
        Op::LazyBatchNorm2d { params } => {
            let num_features = shape_fns::batch_norm2d(name, class, &input()?, None)?;
            Some(Op::BatchNorm2d { num_features, params: *params })
        }
        Op::LazyLinear { params } => {
            let (in_features, _) = shape_fns::linear(name, class, &input()?, None, params.out_features)?;
            Some(Op::Linear { in_features, params: *params })
        }
        Op::LazyBatchNorm1d { params } => {
            let num_features = shape_fns::batch_norm1d(name, class, &input()?, None)?;
            Some(Op::BatchNorm1d { num_features, params: *params })
        }
        Op::LazyInstanceNorm2d { params } => {
            let num_features = shape_fns::instance_norm2d(name, class, &input()?, None, false)?;
            Some(Op::InstanceNorm2d { num_features, params: *params })
        }
        // Concrete ops need no rewrite; listed one by one so that a new lazy
        // op cannot silently fall through here.
        Op::Input
        | Op::Output
        | Op::Conv2d { .. }
        | Op::BatchNorm2d { .. }
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Tanh
        | Op::Sigmoid
        | Op::Pointwise { .. }
        | Op::Linear { .. }
        | Op::BatchNorm1d { .. }
        | Op::InstanceNorm2d { .. }
        | Op::GroupNorm { .. }
        | Op::Flatten { .. }
        | Op::Unflatten { .. }
        | Op::Reshape { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::Pad2d { .. }
        | Op::Upsample { .. }
        | Op::PixelShuffle { .. }
        | Op::PRelu { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Dropout2d { .. }
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Scalar { .. }
        | Op::Cat { .. }
        | Op::Narrow { .. }
        | Op::Concat => None,
    })
}

/// What a lazy op learned from its input, for messages (`in_channels=4`).
fn resolved_input(op: &Op) -> String {
    match op {
        Op::ConvTranspose2d { in_channels, .. } | Op::Conv2d { in_channels, .. } => {
            format!("in_channels={in_channels}")
        }
        Op::BatchNorm2d { num_features, .. }
        | Op::BatchNorm1d { num_features, .. }
        | Op::InstanceNorm2d { num_features, .. } => {
            format!("num_features={num_features}")
        }
        Op::Linear { in_features, .. } => format!("in_features={in_features}"),
        other => other.class_name().to_string(),
    }
}

impl Pass for ResolveLazy {
    fn name(&self) -> &'static str {
        "resolve-lazy"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<Changed> {
        let order = graph.topo_order()?;
        // Collect the rewrites first, then apply them: never mutate while walking.
        let mut rewrites = Vec::new();
        for &id in &order {
            if let Some(op) = concrete_op(graph, id)? {
                rewrites.push((id, op));
            }
        }
        let mut changed = Changed::from(!rewrites.is_empty());
        for (id, op) in rewrites {
            graph.set_op(id, op)?;
        }
        // A module called again resolves once: every call must have resolved
        // to the same concrete op (the same input channels), as PyTorch's
        // second call fails on a shape mismatch otherwise.
        let reuses: Vec<(NodeId, NodeId)> = order
            .iter()
            .filter_map(|&id| graph.node(id).module().and_then(|m| graph.find(m)).map(|m| (id, m)))
            .collect();
        for &(id, m) in &reuses {
            let (call, def) = (graph.node(id), graph.node(m));
            if call.op() != def.op() {
                return Err(PassError::ShapeMismatch {
                    node: call.name().into(),
                    op: call.op().class_name(),
                    message: format!(
                        "calls module `{}` again, but with an input that resolves it differently ({} here, {} at `{}`)",
                        def.name(),
                        resolved_input(call.op()),
                        resolved_input(def.op()),
                        def.name()
                    ),
                });
            }
        }
        let mut missing = Vec::new();
        for &id in &order {
            if graph.node(id).module().is_none() {
                changed = changed.or(self.materialize(graph, id, &mut missing)?);
            }
        }
        self.check_leftovers(graph, missing)?;
        // Calls share the defining node's parameters.
        for (id, m) in reuses {
            let params: Vec<(String, _)> = graph.node(m).params().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            for (k, v) in params {
                if graph.node(id).param(&k) != Some(&v) {
                    graph.set_param(id, &k, v)?;
                    changed = Changed::Yes;
                }
            }
        }
        Ok(changed)
    }
}
