//! Lowering a resolved graph to a straight-line program of kernel calls.
//!
//! Walks the graph in topological order and picks one kernel per group of
//! fused nodes: a convolution absorbs a following eval-mode BatchNorm (folded
//! into its weights and bias) and a following activation (its epilogue); an
//! `Add` or a standalone BatchNorm absorbs a following activation. A node is
//! absorbed only when it is the sole user of its producer and that producer
//! is not itself a graph output, so fusion never changes an observable value.

use std::collections::{HashMap, HashSet};

use kiln_ir::ndarray::ArrayD;
use kiln_ir::{Graph, NodeId, Op};

use super::error::CompileError;
use super::fold;
use super::region::{self, Member};
use crate::binary::BinaryKernel;
use crate::chain::{ChainKernel, Tail, TailOp, UnaryOp};
use crate::epilogue::{Activation, Epilogue};
use crate::gather::GatherMap;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::library::{KernelBuilder, KernelId};
use crate::plane::PlaneKernel;

/// Where a step reads or writes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueRef {
    /// Graph input `i` (caller's buffer; never written).
    Input(usize),
    /// Intermediate value `v`, placed by the memory plan.
    Temp(usize),
}

/// One kernel call.
#[derive(Clone, Debug)]
pub struct Step {
    /// The kernel.
    pub kernel: KernelId,
    /// Its inputs, in kernel order.
    pub inputs: Vec<ValueRef>,
    /// Its output (always a temporary).
    pub output: usize,
    /// The graph nodes this step computes, `+`-joined (`up1+bn1+act1`).
    pub nodes: String,
}

/// The lowered program.
#[derive(Debug, Default)]
pub struct Program {
    /// Kernel calls in execution order.
    pub steps: Vec<Step>,
    /// Element count of each temporary.
    pub temp_len: Vec<usize>,
    /// Graph outputs, in order: the value and its shape.
    pub outputs: Vec<(ValueRef, Vec<usize>)>,
}

fn unresolved(node: &str, reason: impl Into<String>) -> CompileError {
    CompileError::Unresolved { node: node.into(), reason: reason.into() }
}

fn known_shape(g: &Graph, id: NodeId) -> Result<Vec<usize>, CompileError> {
    let n = g.node(id);
    n.shape().as_known().ok_or_else(|| unresolved(n.name(), format!("has result type {} with unknown dims", n.shape())))
}

fn param<'g>(g: &'g Graph, id: NodeId, name: &str) -> Result<&'g ArrayD<f32>, CompileError> {
    let n = g.node(id);
    n.param(name).ok_or_else(|| unresolved(n.name(), format!("has no `{}.{name}` attached", n.name())))
}

/// The activation an op computes, if it is one (and so can be fused into an
/// epilogue). Every op is listed: a new activation must decide here.
fn activation_of(op: &Op) -> Option<Activation> {
    match op {
        Op::Relu => Some(Activation::Relu),
        Op::LeakyRelu { negative_slope } => Some(Activation::LeakyRelu(*negative_slope)),
        Op::Tanh => Some(Activation::Tanh),
        Op::Sigmoid => Some(Activation::Sigmoid),
        Op::Input
        | Op::Output
        | Op::LazyConvTranspose2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::LazyConv2d { .. }
        | Op::Conv2d { .. }
        | Op::LazyBatchNorm2d { .. }
        | Op::BatchNorm2d { .. }
        // Computed by a helper or per channel; not (yet) an epilogue.
        | Op::Pointwise { .. }
        | Op::PRelu { .. }
        | Op::LazyLinear { .. }
        | Op::Linear { .. }
        | Op::LazyBatchNorm1d { .. }
        | Op::BatchNorm1d { .. }
        | Op::LazyInstanceNorm2d { .. }
        | Op::InstanceNorm2d { .. }
        | Op::GroupNorm { .. }
        | Op::Sub
        | Op::Mul
        | Op::Scalar { .. }
        | Op::Cat { .. }
        | Op::Narrow { .. }
        | Op::Flatten { .. }
        | Op::Unflatten { .. }
        | Op::Reshape { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::Pad2d { .. }
        | Op::Upsample { .. }
        | Op::PixelShuffle { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Dropout2d { .. }
        | Op::Add
        | Op::Concat => None,
    }
}

/// The two resolved convolutions, as lowering needs them.
#[derive(Clone, Copy)]
enum Conv<'a> {
    /// `ConvTranspose2d`: weight `[C_in, C_out/g, kH, kW]`.
    Transpose { params: &'a kiln_ir::ConvTranspose2dParams, in_channels: usize },
    /// `Conv2d`: weight `[C_out, C_in/g, kH, kW]`.
    Forward { params: &'a kiln_ir::Conv2dParams },
}

impl Conv<'_> {
    fn out_channels(self) -> usize {
        match self {
            Conv::Transpose { params, .. } => params.out_channels,
            Conv::Forward { params } => params.out_channels,
        }
    }

    fn bias(self) -> bool {
        match self {
            Conv::Transpose { params, .. } => params.bias,
            Conv::Forward { params } => params.bias,
        }
    }
}

/// `[N?, C, H, W]` → `(N, C, H·W)`; other ranks are an error naming the node
/// (a resolved graph only has them if its stored shapes were edited).
fn image_dims(node: &str, shape: &[usize]) -> Result<(usize, usize, usize), CompileError> {
    match *shape {
        [n, c, h, w] => Ok((n, c, h.saturating_mul(w))),
        [c, h, w] => Ok((1, c, h.saturating_mul(w))),
        _ => Err(CompileError::Shape {
            node: node.to_string(),
            reason: format!("has a value of shape {shape:?}; the JIT expects [N, C, H, W] or [C, H, W] here"),
        }),
    }
}

/// `[N, C, H, W]` of a 4-D shape, or of a 3-D `[C, H, W]` with `N = 1`.
fn nchw(node: &str, shape: &[usize]) -> Result<[usize; 4], CompileError> {
    match *shape {
        [n, c, h, w] => Ok([n, c, h, w]),
        [c, h, w] => Ok([1, c, h, w]),
        _ => Err(CompileError::Shape {
            node: node.to_string(),
            reason: format!("has a value of shape {shape:?}; the JIT expects [N, C, H, W] or [C, H, W] here"),
        }),
    }
}

/// Most members of one fused elementwise region (its search is quadratic).
const MAX_REGION: usize = 32;

/// The arithmetic of a binary `Add`, `Sub` or `Mul` node.
fn arith_of(op: &Op) -> Option<kiln_ir::ArithOp> {
    match op {
        Op::Add => Some(kiln_ir::ArithOp::Add),
        Op::Sub => Some(kiln_ir::ArithOp::Sub),
        Op::Mul => Some(kiln_ir::ArithOp::Mul),
        _ => None,
    }
}

/// The spatial gather node `id` computes, as `(planes, map)`: a pad, a
/// nearest upsampling, or a `narrow` of one of the two last dims (any rank
/// of at least 2; the planes are the product of the leading dims). `None`
/// for every other node, and for a `narrow` of a leading dim.
fn gather_map(g: &Graph, id: NodeId) -> Result<Option<(usize, GatherMap)>, CompileError> {
    let node = g.node(id);
    let name = node.name();
    let Some(&x) = g.operands(id).first() else { return Ok(None) };
    let kernel_err = |source| CompileError::Kernel { node: name.to_string(), source };
    match node.op() {
        Op::Pad2d { padding, mode } => {
            let [n, c, h, w] = nchw(name, &known_shape(g, x)?)?;
            Ok(Some((n * c, GatherMap::pad([h, w], *padding, *mode).map_err(kernel_err)?)))
        }
        Op::Upsample { params } if params.mode == kiln_ir::UpsampleMode::Nearest => {
            let [n, c, h, w] = nchw(name, &known_shape(g, x)?)?;
            let out = params.output_hw([h, w]).ok_or_else(|| {
                shape_error(g, id, format!("{:?} gives an empty output for {h}x{w} planes", params.size))
            })?;
            Ok(Some((n * c, GatherMap::nearest([h, w], out, [params.size.factor(0), params.size.factor(1)]))))
        }
        Op::Narrow { dim, start, length } => {
            let s = known_shape(g, x)?;
            let d = kiln_ir::reshape::wrap_dim(*dim, s.len()).map_err(|m| shape_error(g, id, m))?;
            if s.len() < 2 || d + 2 < s.len() {
                return Ok(None);
            }
            let r = s.len() - 2;
            let map = GatherMap::crop([s[r], s[r + 1]], d - r, *start, *length).map_err(kernel_err)?;
            Ok(Some((s[..r].iter().product(), map)))
        }
        _ => Ok(None),
    }
}

/// The plane kernel of a pooling, padding, upsampling or shuffle node, built
/// from its operand's shape and its arguments alone (not from its declared
/// shape, which [`check_declared_shape`] compares with the kernel's).
fn plane_kernel(g: &Graph, id: NodeId) -> Result<(&'static str, PlaneKernel), CompileError> {
    let node = g.node(id);
    let name = node.name();
    let x = g.operands(id).first().copied().ok_or_else(|| unresolved(name, "has no operand"))?;
    let [n, c, h, w] = nchw(name, &known_shape(g, x)?)?;
    let kernel_err = |source| CompileError::Kernel { node: name.to_string(), source };
    let pooled = |p: &kiln_ir::Pool2dParams| -> Result<[usize; 2], CompileError> {
        match p.output_hw([h, w]) {
            [oh, ow] if oh >= 1 && ow >= 1 => Ok([oh as usize, ow as usize]),
            out => Err(shape_error(g, id, format!("pools {h}x{w} planes to {out:?}, which is empty"))),
        }
    };
    let (op, k) = match node.op() {
        Op::MaxPool2d { params } => ("max_pool2d", PlaneKernel::max_pool(n, c, [h, w], pooled(params)?, params)),
        Op::AvgPool2d { params, divisor } => {
            ("avg_pool2d", PlaneKernel::avg_pool(n, c, [h, w], pooled(params)?, params, *divisor))
        }
        Op::AdaptiveAvgPool2d { output_size } => {
            let out = [output_size[0].unwrap_or(h), output_size[1].unwrap_or(w)];
            ("adaptive_avg_pool2d", PlaneKernel::adaptive_avg(n, c, [h, w], out))
        }
        Op::Pad2d { padding, mode } => ("pad2d", PlaneKernel::pad(n, c, [h, w], *padding, *mode)),
        Op::Upsample { params } => {
            let out = params.output_hw([h, w]).ok_or_else(|| {
                shape_error(g, id, format!("{:?} gives an empty output for {h}x{w} planes", params.size))
            })?;
            ("upsample", PlaneKernel::upsample(n, c, [h, w], out, params))
        }
        Op::PixelShuffle { factor, direction } => {
            ("pixel_shuffle", PlaneKernel::shuffle(n, c, [h, w], *factor, *direction))
        }
        other => return Err(unresolved(name, format!("is not a plane op ({})", other.class_name()))),
    };
    Ok((op, k.map_err(kernel_err)?))
}

/// Eval-mode BatchNorm as per-channel `(scale, shift)` with
/// `y = x·scale + shift`, computed in f64.
fn batch_norm_affine(g: &Graph, id: NodeId) -> Result<(Vec<f64>, Vec<f64>), CompileError> {
    let (Op::BatchNorm2d { params, num_features } | Op::BatchNorm1d { params, num_features }) = g.node(id).op() else {
        return Err(unresolved(g.node(id).name(), "is not a BatchNorm2d or BatchNorm1d"));
    };
    let mean = param(g, id, "running_mean")?;
    let var = param(g, id, "running_var")?;
    let (gamma, beta) =
        if params.affine { (Some(param(g, id, "weight")?), Some(param(g, id, "bias")?)) } else { (None, None) };
    let mut scale = Vec::with_capacity(*num_features);
    let mut shift = Vec::with_capacity(*num_features);
    for c in 0..*num_features {
        let at = |t: &ArrayD<f32>| t.as_slice().and_then(|s| s.get(c)).map(|&v| f64::from(v));
        let (m, v) = (at(mean), at(var));
        let (Some(m), Some(v)) = (m, v) else {
            return Err(unresolved(g.node(id).name(), format!("has running statistics shorter than {num_features}")));
        };
        let s = gamma.and_then(at).unwrap_or(1.0) / (v + f64::from(params.eps)).sqrt();
        scale.push(s);
        shift.push(beta.and_then(at).unwrap_or(0.0) - m * s);
    }
    Ok((scale, shift))
}

fn shape_error(g: &Graph, id: NodeId, reason: String) -> CompileError {
    CompileError::Shape { node: g.node(id).name().to_string(), reason }
}

/// The node's declared shape must be the one its op computes from its
/// operands' declared shapes, as the interpreter checks at run time: kernels
/// are sized from both, and a graph read from JSON or edited with `set_shape`
/// can make them disagree. Buffer lengths are checked again per step
/// (`check_buffers`); this check makes a wrong shape an error even where the
/// lengths happen to agree, so compiled and interpreted graphs accept the
/// same graphs. Every op is listed: a new op must say what it computes.
fn check_declared_shape(g: &Graph, id: NodeId) -> Result<(), CompileError> {
    let node = g.node(id);
    let operands = g.operands(id);
    let operand = |i: usize| -> Result<Vec<usize>, CompileError> {
        let o = operands.get(i).copied().ok_or_else(|| unresolved(node.name(), format!("has no operand {i}")))?;
        known_shape(g, o)
    };
    let same_as_operand = |declared: &[usize]| -> Result<(), CompileError> {
        let x = operand(0)?;
        if x != declared {
            return Err(shape_error(g, id, format!("declares shape {declared:?} but its operand has shape {x:?}")));
        }
        Ok(())
    };
    match node.op() {
        Op::Input => Ok(()),
        Op::Output => {
            // Output markers may keep an unranked shape: they only forward a value.
            match node.shape().as_known() {
                Some(declared) => same_as_operand(&declared),
                None => Ok(()),
            }
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Tanh
        | Op::Sigmoid
        | Op::Pointwise { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Dropout2d { .. } => same_as_operand(&known_shape(g, id)?),
        Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::Pad2d { .. }
        | Op::Upsample { .. }
        | Op::PixelShuffle { .. } => {
            let declared = known_shape(g, id)?;
            let x = operand(0)?;
            let (_, k) = plane_kernel(g, id)?;
            let [n, c, h, w] = k.out_shape();
            let want = if x.len() == 3 { vec![c, h, w] } else { vec![n, c, h, w] };
            if declared != want {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but its operand of shape {x:?} gives {want:?}"),
                ));
            }
            Ok(())
        }
        Op::Linear { in_features, params } => {
            let (declared, x) = (known_shape(g, id)?, operand(0)?);
            let mut want = x.clone();
            match want.last_mut() {
                Some(last) if *last == *in_features => *last = params.out_features,
                _ => {
                    return Err(shape_error(
                        g,
                        id,
                        format!("has in_features={in_features}, but its operand has shape {x:?}"),
                    ))
                }
            }
            if declared != want {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but its operand of shape {x:?} gives {want:?}"),
                ));
            }
            Ok(())
        }
        Op::BatchNorm1d { num_features, .. } => {
            let declared = known_shape(g, id)?;
            same_as_operand(&declared)?;
            if !(declared.len() == 2 || declared.len() == 3) || declared[1] != *num_features {
                return Err(shape_error(g, id, format!("has shape {declared:?}; BatchNorm1d({num_features}) needs [N, {num_features}] or [N, {num_features}, L]")));
            }
            Ok(())
        }
        Op::InstanceNorm2d { num_features, params } => {
            let declared = known_shape(g, id)?;
            same_as_operand(&declared)?;
            let [_, c, _, _] = nchw(node.name(), &declared)?;
            if (params.affine || params.track_running_stats) && c != *num_features {
                return Err(shape_error(g, id, format!("has {c} channels but num_features is {num_features}")));
            }
            Ok(())
        }
        Op::GroupNorm { num_channels, .. } => {
            let declared = known_shape(g, id)?;
            same_as_operand(&declared)?;
            if declared.len() < 2 || declared[1] != *num_channels {
                return Err(shape_error(g, id, format!("has shape {declared:?} but num_channels is {num_channels}")));
            }
            Ok(())
        }
        Op::Flatten { .. } | Op::Unflatten { .. } | Op::Reshape { .. } => {
            let (declared, x) = (known_shape(g, id)?, operand(0)?);
            let want = match node.op() {
                Op::Flatten { start_dim, end_dim } => kiln_ir::reshape::flatten(&x, *start_dim, *end_dim),
                Op::Unflatten { dim, sizes } => kiln_ir::reshape::unflatten(&x, *dim, sizes),
                Op::Reshape { shape } => kiln_ir::reshape::reshape(&x, shape),
                other => Err(format!("{} is not a reshape", other.class_name())),
            }
            .map_err(|m| shape_error(g, id, m))?;
            if declared != want {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but its operand of shape {x:?} gives {want:?}"),
                ));
            }
            Ok(())
        }
        Op::PRelu { num_parameters, .. } => {
            let declared = known_shape(g, id)?;
            same_as_operand(&declared)?;
            let channels = if declared.len() >= 2 { declared[1] } else { 1 };
            if declared.is_empty() || (*num_parameters != 1 && *num_parameters != channels) {
                return Err(shape_error(g, id, format!("has {num_parameters} weights for shape {declared:?}")));
            }
            Ok(())
        }
        Op::BatchNorm2d { num_features, .. } => {
            let declared = known_shape(g, id)?;
            same_as_operand(&declared)?;
            let (_, c, _) = image_dims(node.name(), &declared)?;
            if c != *num_features {
                return Err(shape_error(g, id, format!("has {c} channels but num_features is {num_features}")));
            }
            Ok(())
        }
        Op::Add | Op::Sub | Op::Mul => {
            let (declared, a, b) = (known_shape(g, id)?, operand(0)?, operand(1)?);
            match crate::binary::broadcast_shape(&a, &b) {
                Some(want) if want == declared => Ok(()),
                Some(want) => Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but operands {a:?} and {b:?} give {want:?}"),
                )),
                None => Err(shape_error(g, id, format!("has operands {a:?} and {b:?}, which do not broadcast"))),
            }
        }
        Op::Scalar { .. } => same_as_operand(&known_shape(g, id)?),
        Op::Cat { .. } | Op::Narrow { .. } => {
            let declared = known_shape(g, id)?;
            let shapes = (0..operands.len()).map(operand).collect::<Result<Vec<_>, _>>()?;
            let want = match node.op() {
                Op::Cat { dim } => kiln_ir::reshape::cat(&shapes.iter().map(Vec::as_slice).collect::<Vec<_>>(), *dim),
                Op::Narrow { dim, start, length } => kiln_ir::reshape::narrow(&shapes[0], *dim, *start, *length),
                other => Err(format!("{} is not a cat or narrow", other.class_name())),
            }
            .map_err(|m| shape_error(g, id, m))?;
            if declared != want {
                return Err(shape_error(g, id, format!("declares shape {declared:?}, but its operands give {want:?}")));
            }
            Ok(())
        }
        Op::Concat => {
            let declared = known_shape(g, id)?;
            image_dims(node.name(), &declared)?;
            let c = declared.len() - 3;
            let mut channels = 0usize;
            for i in 0..operands.len() {
                let x = operand(i)?;
                let same_rest = x.len() == declared.len()
                    && x.iter().zip(&declared).enumerate().all(|(d, (a, b))| d == c || a == b);
                if !same_rest {
                    return Err(shape_error(
                        g,
                        id,
                        format!("declares shape {declared:?} but operand {i} has shape {x:?}, which differs outside the channel dim"),
                    ));
                }
                channels = channels.saturating_add(x[c]);
            }
            if channels != declared[c] {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares {} channels but its operands have {channels} in all", declared[c]),
                ));
            }
            Ok(())
        }
        Op::ConvTranspose2d { params, .. } => {
            let (declared, x) = (known_shape(g, id)?, operand(0)?);
            let out_channels = params.out_channels;
            let (n, c, _) = image_dims(node.name(), &declared)?;
            let (xn, _, _) = image_dims(node.name(), &x)?;
            let r = x.len();
            // The reference's own output-size rule (output_padding or
            // output_size), so both accept exactly the same graphs.
            let hw = conv_transpose_hw(node.name(), [x[r - 2], x[r - 1]], params)?;
            let mut want = x.clone();
            want[r - 3] = out_channels;
            want[r - 2] = hw[0];
            want[r - 1] = hw[1];
            if declared != want || n != xn || c != out_channels {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but its operand of shape {x:?} gives {want:?}"),
                ));
            }
            Ok(())
        }
        Op::Conv2d { params: kiln_ir::Conv2dParams { out_channels, .. }, .. } => {
            // Spatial sizes are checked against the op's arithmetic by the
            // kernel geometry; batch, rank and channels here.
            let (declared, x) = (known_shape(g, id)?, operand(0)?);
            let (n, c, _) = image_dims(node.name(), &declared)?;
            let (xn, _, _) = image_dims(node.name(), &x)?;
            if declared.len() != x.len() || n != xn || c != *out_channels {
                return Err(shape_error(
                    g,
                    id,
                    format!("declares shape {declared:?}, but an input of shape {x:?} with {out_channels} output channels gives rank {}, batch {xn}", x.len()),
                ));
            }
            Ok(())
        }
        // Named here, before its users complain of unknown shapes.
        Op::LazyConvTranspose2d { .. }
        | Op::LazyConv2d { .. }
        | Op::LazyBatchNorm2d { .. }
        | Op::LazyLinear { .. }
        | Op::LazyBatchNorm1d { .. }
        | Op::LazyInstanceNorm2d { .. } => Err(unresolved(node.name(), "is still lazy")),
    }
}

/// A transposed convolution's output height and width by the reference
/// interpreter's rule.
fn conv_transpose_hw(
    node: &str,
    in_hw: [usize; 2],
    p: &kiln_ir::ConvTranspose2dParams,
) -> Result<[usize; 2], CompileError> {
    kiln_runtime::ops::conv_transpose2d_output_hw(node, in_hw, p)
        .map_err(|e| CompileError::Shape { node: node.to_string(), reason: e.to_string() })
}

/// A producer a `Conv2d` absorbs (see [`fold`]): the producer's node and
/// what it contributes.
#[derive(Clone, Copy, Debug)]
enum Producer {
    /// A zero pad of `begin` (`[top, left]`) and `end` (`[bottom, right]`),
    /// added to the convolution's per-side padding.
    ZeroPad { node: NodeId, begin: [usize; 2], end: [usize; 2] },
    /// A nearest upsampling by integer `[sH, sW]`: the pair is one transposed convolution.
    Nearest { node: NodeId, factors: [usize; 2] },
}

impl Producer {
    fn node(self) -> NodeId {
        match self {
            Producer::ZeroPad { node, .. } | Producer::Nearest { node, .. } => node,
        }
    }
}

struct Lowering<'g> {
    g: &'g Graph,
    kb: &'g mut KernelBuilder,
    program: Program,
    values: HashMap<NodeId, ValueRef>,
    absorbed: HashMap<NodeId, NodeId>,
    /// Per `Conv2d`, the producer it absorbs; the producers are in `deferred`
    /// and lowered by their convolution (fused, or alone if the fold fails).
    folds: HashMap<NodeId, Producer>,
    deferred: HashSet<NodeId>,
}

impl<'g> Lowering<'g> {
    /// The single non-output user of `id`, if `id` has exactly one user and is
    /// not a graph output.
    fn sole_user(&self, id: NodeId) -> Option<NodeId> {
        match self.g.users(id).as_slice() {
            [u] if !matches!(self.g.node(*u).op(), Op::Output) => Some(*u),
            _ => None,
        }
    }

    /// Which producers each `Conv2d` absorbs. Decided before lowering
    /// because the producer comes first in topological order; only the sole,
    /// non-output use of a pad or upsampling by a zero-padded, finite-weight
    /// `Conv2d` qualifies (and for upsampling, stride and dilation 1), so
    /// the fold never changes an observable value.
    fn plan_folds(&mut self, order: &[NodeId]) -> Result<(), CompileError> {
        let g = self.g;
        for &id in order {
            let Op::Conv2d { params, .. } = g.node(id).op() else { continue };
            let Some(&x) = g.operands(id).first() else { continue };
            if self.sole_user(x) != Some(id) || params.padding_mode != kiln_ir::PaddingMode::Zeros {
                continue;
            }
            let producer = if let Op::Pad2d { padding, mode } = g.node(x).op() {
                fold::zero_pad_as_padding(*padding, *mode).map(|(begin, end)| Producer::ZeroPad { node: x, begin, end })
            } else if let Op::Upsample { params: up } = g.node(x).op() {
                {
                    let plain = params.stride.to_array() == [1, 1] && params.dilation.to_array() == [1, 1];
                    // The transposed form of the pair needs symmetric padding narrower than the kernel.
                    let narrow_pad = params
                        .padding
                        .as_symmetric()
                        .is_some_and(|p| p.h < params.kernel_size.h && p.w < params.kernel_size.w);
                    let finite = param(g, id, "weight")?.iter().all(|v| v.is_finite());
                    let source = g.operands(x).first().copied();
                    match (plain && narrow_pad && finite, source) {
                        (true, Some(src)) => {
                            let (a, b) = (known_shape(g, src)?, known_shape(g, x)?);
                            let hw = |s: &[usize]| [s[s.len().saturating_sub(2)], s[s.len().saturating_sub(1)]];
                            (a.len() >= 2 && b.len() >= 2)
                                .then(|| fold::nearest_factors(hw(&a), hw(&b), up))
                                .flatten()
                                .map(|factors| Producer::Nearest { node: x, factors })
                        }
                        _ => None,
                    }
                }
            } else {
                None
            };
            if let Some(p) = producer {
                self.deferred.insert(p.node());
                self.folds.insert(id, p);
            }
        }
        Ok(())
    }

    fn value(&self, id: NodeId) -> Result<ValueRef, CompileError> {
        let id = self.absorbed.get(&id).copied().unwrap_or(id);
        self.values.get(&id).copied().ok_or_else(|| unresolved(self.g.node(id).name(), "is used before it is computed"))
    }

    fn temp(&mut self, len: usize) -> usize {
        self.program.temp_len.push(len);
        self.program.temp_len.len() - 1
    }

    /// Absorbs a following activation into `last` if allowed; returns it and the new chain end.
    fn fuse_activation(&self, last: NodeId) -> (Activation, NodeId) {
        match self.sole_user(last).and_then(|u| activation_of(self.g.node(u).op()).map(|a| (a, u))) {
            Some((a, u)) => (a, u),
            None => (Activation::Identity, last),
        }
    }

    /// The unary elementwise op `id` computes, for a fused chain; `None`
    /// for every other op. Every op is listed: a new elementwise op must
    /// decide here whether it can join a chain.
    fn unary_op(&self, id: NodeId) -> Result<Option<UnaryOp>, CompileError> {
        let g = self.g;
        let node = g.node(id);
        let shape = known_shape(g, id)?;
        let len: usize = shape.iter().product();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        Ok(match node.op() {
            Op::Relu | Op::LeakyRelu { .. } | Op::Tanh | Op::Sigmoid => {
                activation_of(node.op()).map(UnaryOp::Activation)
            }
            Op::Pointwise { f } => Some(UnaryOp::Pointwise(*f)),
            // A bilinear resize to the size it already has (`interpolate(x,
            // size=skip.shape[-2:])` where the sizes match): every source
            // index is the pixel itself with weights (1, 0), elementwise.
            Op::Upsample { params }
                if params.mode == kiln_ir::UpsampleMode::Bilinear
                    && g.operands(id).first().is_some_and(|&x| known_shape(g, x).ok().as_ref() == Some(&shape)) =>
            {
                Some(UnaryOp::SameSizeBilinear)
            }
            Op::PRelu { .. } => {
                let weight: Vec<f32> = param(g, id, "weight")?.iter().copied().collect();
                // PyTorch's channel dim is 1 (none below rank 2): one weight then.
                let inner = if weight.len() == 1 { len } else { shape.get(2..).map_or(1, |s| s.iter().product()) };
                Some(UnaryOp::PRelu { weight, inner })
            }
            Op::BatchNorm2d { .. } | Op::BatchNorm1d { .. } => {
                let inner = match (node.op(), shape.as_slice()) {
                    (Op::BatchNorm1d { .. }, &[_, _]) => 1,
                    (Op::BatchNorm1d { .. }, &[_, _, l]) => l,
                    (Op::BatchNorm1d { .. }, _) => return Ok(None),
                    _ => image_dims(node.name(), &shape)?.2,
                };
                let (scale, shift) = batch_norm_affine(g, id)?;
                Some(UnaryOp::Affine { scale: f32s(scale), shift: f32s(shift), inner })
            }
            Op::Scalar { op, other } => {
                let (scale, shift) = match op {
                    kiln_ir::ArithOp::Add => (1.0, *other),
                    kiln_ir::ArithOp::Sub => (1.0, -*other),
                    kiln_ir::ArithOp::Mul => (*other, 0.0),
                };
                Some(UnaryOp::Affine { scale: vec![scale], shift: vec![shift], inner: len })
            }
            Op::InstanceNorm2d { params, .. } if params.track_running_stats => {
                let [_, _, h, w] = nchw(node.name(), &shape)?;
                let (scale, shift) = self.instance_norm_running_affine(id)?;
                Some(UnaryOp::Affine { scale, shift, inner: h * w })
            }
            // Reductions, data movement and the rest: not elementwise.
            Op::InstanceNorm2d { .. }
            | Op::Input
            | Op::Output
            | Op::LazyConvTranspose2d { .. }
            | Op::ConvTranspose2d { .. }
            | Op::LazyConv2d { .. }
            | Op::Conv2d { .. }
            | Op::LazyBatchNorm2d { .. }
            | Op::LazyLinear { .. }
            | Op::Linear { .. }
            | Op::LazyBatchNorm1d { .. }
            | Op::LazyInstanceNorm2d { .. }
            | Op::GroupNorm { .. }
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Cat { .. }
            | Op::Concat
            | Op::Narrow { .. }
            | Op::Flatten { .. }
            | Op::Unflatten { .. }
            | Op::Reshape { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. }
            | Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. } => None,
        })
    }

    /// The elementwise region after `id` (see [`region`]) as a [`Tail`]
    /// program and its nodes: the unary ops and same-shape `Add`/`Sub`/`Mul`
    /// whose operands are all `id` or in the region, every value of which but
    /// the last is used only inside it (so fusing changes no observable
    /// value). For a chain of unary ops, each the sole use of the one before,
    /// that chain.
    fn tail_after(&self, id: NodeId) -> Result<(Vec<TailOp>, Vec<NodeId>), CompileError> {
        let g = self.g;
        let shape = known_shape(g, id)?;
        let mut nodes = vec![id];
        let mut index: HashMap<NodeId, usize> = HashMap::from([(id, 0)]);
        let mut members = Vec::new();
        let mut grew = true;
        while grew && members.len() < MAX_REGION {
            grew = false;
            for v in 0..nodes.len() {
                for u in g.users(nodes[v]) {
                    if index.contains_key(&u)
                        || self.deferred.contains(&u)
                        || self.absorbed.contains_key(&u)
                        || members.len() >= MAX_REGION
                        || known_shape(g, u)? != shape
                    {
                        continue;
                    }
                    let ops: Vec<Option<usize>> = g.operands(u).iter().map(|o| index.get(o).copied()).collect();
                    let member = match (arith_of(g.node(u).op()), ops.as_slice()) {
                        (Some(arith), &[Some(a), Some(b)]) => {
                            if g.operands(u).iter().any(|&o| known_shape(g, o).ok().as_ref() != Some(&shape)) {
                                continue;
                            }
                            Member::Binary(arith, a, b)
                        }
                        (_, &[Some(a)]) => match self.unary_op(u)? {
                            Some(op) => Member::Unary(op, a),
                            None => continue,
                        },
                        _ => continue,
                    };
                    index.insert(u, nodes.len());
                    nodes.push(u);
                    members.push(member);
                    grew = true;
                }
            }
        }
        let escapes: Vec<bool> = nodes.iter().map(|&v| g.users(v).iter().any(|u| !index.contains_key(u))).collect();
        let chosen = region::choose(&members, &escapes);
        // Renumber the chosen members' operands: root 0, the k-th chosen k + 1.
        let mut renumber = HashMap::from([(0usize, 0usize)]);
        for (k, &m) in chosen.iter().enumerate() {
            renumber.insert(m + 1, k + 1);
        }
        let at = |v: &usize| renumber.get(v).copied();
        let renumbered: Option<Vec<Member>> = chosen
            .iter()
            .map(|&m| match &members[m] {
                Member::Unary(op, a) => Some(Member::Unary(op.clone(), at(a)?)),
                Member::Binary(op, a, b) => Some(Member::Binary(*op, at(a)?, at(b)?)),
            })
            .collect();
        if let Some(ops) = renumbered.as_deref().and_then(region::program) {
            return Ok((ops, chosen.iter().map(|&m| nodes[m + 1]).collect()));
        }
        // More live values than slots: the linear chain.
        let (mut ops, mut nodes, mut at) = (Vec::new(), Vec::new(), id);
        while let Some(u) = self.sole_user(at) {
            let Some(op) = self.unary_op(u)? else { break };
            ops.push(TailOp::Unary(op));
            nodes.push(u);
            at = u;
        }
        Ok((ops, nodes))
    }

    /// After `id` is lowered: an elementwise region after its value that
    /// is more than a chain (it combines values) becomes one chain kernel.
    /// Chains are left to the kernels that fuse them into their own pass.
    fn lower_region_after(&mut self, id: NodeId) -> Result<(), CompileError> {
        let end = self.absorbed.get(&id).copied().unwrap_or(id);
        if !self.values.contains_key(&end) {
            return Ok(());
        }
        let (ops, nodes) = self.tail_after(end)?;
        if !ops.iter().any(|o| matches!(o, TailOp::Combine { .. })) {
            return Ok(());
        }
        let len = known_shape(self.g, end)?.iter().product();
        let k = Tail::program(ops, len).and_then(|t| self.kb.add_chain(ChainKernel::new(t)));
        let input = self.value(end)?;
        self.emit(&nodes, k, vec![input])
    }

    /// InstanceNorm2d with running statistics as a per-channel `(scale, shift)`.
    fn instance_norm_running_affine(&self, id: NodeId) -> Result<(Vec<f32>, Vec<f32>), CompileError> {
        let g = self.g;
        let Op::InstanceNorm2d { params, num_features } = g.node(id).op() else {
            return Err(unresolved(g.node(id).name(), "is not an InstanceNorm2d"));
        };
        let vec = |key: &str| -> Result<Vec<f32>, CompileError> { Ok(param(g, id, key)?.iter().copied().collect()) };
        let (weight, bias) = if params.affine { (Some(vec("weight")?), Some(vec("bias")?)) } else { (None, None) };
        let (mean, var) = (vec("running_mean")?, vec("running_var")?);
        let c = *num_features;
        if mean.len() < c
            || var.len() < c
            || weight.as_ref().is_some_and(|w| w.len() < c)
            || bias.as_ref().is_some_and(|b| b.len() < c)
        {
            return Err(unresolved(g.node(id).name(), format!("has parameters shorter than {c}")));
        }
        let (mut scale, mut shift) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for ch in 0..c {
            let gm = weight.as_ref().map_or(1.0, |w| f64::from(w[ch]));
            let b = bias.as_ref().map_or(0.0, |b| f64::from(b[ch]));
            let s = gm / (f64::from(var[ch]) + f64::from(params.eps)).sqrt();
            scale.push(s as f32);
            shift.push((b - f64::from(mean[ch]) * s) as f32);
        }
        Ok((scale, shift))
    }

    /// Lowers a unary elementwise node as one [`ChainKernel`] with the ops
    /// that follow it, if that is more than the dedicated kernels fuse (one
    /// op, or an affine and one activation). Returns false if not.
    fn lower_chain(&mut self, id: NodeId) -> Result<bool, CompileError> {
        let Some(first) = self.unary_op(id)? else { return Ok(false) };
        let (mut ops, mut nodes) = self.tail_after(id)?;
        let dedicated = match (&first, ops.as_slice()) {
            // The plane kernel would interpolate; the chain kernel is one pass.
            (UnaryOp::SameSizeBilinear, _) => false,
            (_, []) => true,
            (UnaryOp::Affine { .. }, [TailOp::Unary(UnaryOp::Activation(_))]) => true,
            (UnaryOp::Affine { .. } | UnaryOp::Activation(_) | UnaryOp::Pointwise(_) | UnaryOp::PRelu { .. }, _) => {
                false
            }
        };
        if dedicated {
            return Ok(false);
        }
        ops.insert(0, TailOp::Unary(first));
        nodes.insert(0, id);
        let len = known_shape(self.g, id)?.iter().product();
        let k = Tail::program(ops, len).and_then(|t| self.kb.add_chain(ChainKernel::new(t)));
        let input = self.value(self.g.operands(id)[0])?;
        self.emit(&nodes, k, vec![input])?;
        Ok(true)
    }

    fn emit(
        &mut self,
        chain: &[NodeId],
        kernel: Result<KernelId, crate::JitError>,
        inputs: Vec<ValueRef>,
    ) -> Result<(), CompileError> {
        let nodes = chain.iter().map(|&n| self.g.node(n).name()).collect::<Vec<_>>().join("+");
        let kernel = kernel.map_err(|source| CompileError::Kernel { node: nodes.clone(), source })?;
        let last = *chain.last().unwrap_or(&chain[0]);
        let len = known_shape(self.g, last)?.iter().product();
        self.check_buffers(&nodes, kernel, &inputs, len)?;
        let output = self.temp(len);
        for &n in chain {
            self.absorbed.insert(n, last);
        }
        self.values.insert(last, ValueRef::Temp(output));
        self.program.steps.push(Step { kernel, inputs, output, nodes });
        Ok(())
    }

    /// Floats in the buffer that holds `v`.
    fn buffer_len(&self, v: ValueRef) -> Result<usize, CompileError> {
        match v {
            ValueRef::Input(i) => {
                let id = self.g.inputs()[i];
                Ok(known_shape(self.g, id)?.iter().product())
            }
            ValueRef::Temp(t) => Ok(self.program.temp_len[t]),
        }
    }

    /// The kernel was sized from the node's own attributes and shape, the
    /// buffers from its operands' shapes: they must agree, or the kernel
    /// would read or write outside its buffers. Resolved graphs from the
    /// passes always agree; a graph read from JSON or edited with `set_shape`
    /// need not, and is refused here (invariant: every step's kernel lengths
    /// equal its buffers' lengths, which is what `CompiledGraph::execute`
    /// relies on when it calls kernels on raw pointers).
    fn check_buffers(
        &self,
        nodes: &str,
        kernel: KernelId,
        inputs: &[ValueRef],
        out_len: usize,
    ) -> Result<(), CompileError> {
        let info = self.kb.info(kernel).ok_or_else(|| CompileError::Internal {
            node: nodes.to_string(),
            reason: "kernel id not in the builder".into(),
        })?;
        if info.input_lens.len() != inputs.len() {
            return Err(CompileError::Internal {
                node: nodes.to_string(),
                reason: format!("kernel takes {} inputs, the step has {}", info.input_lens.len(), inputs.len()),
            });
        }
        for (i, (&v, &want)) in inputs.iter().zip(&info.input_lens).enumerate() {
            let have = self.buffer_len(v)?;
            if have != want {
                return Err(CompileError::BufferMismatch {
                    node: nodes.to_string(),
                    which: format!("input {i}"),
                    kernel: want,
                    buffer: have,
                });
            }
        }
        if info.output_len != out_len {
            return Err(CompileError::BufferMismatch {
                node: nodes.to_string(),
                which: "output".into(),
                kernel: info.output_len,
                buffer: out_len,
            });
        }
        Ok(())
    }

    /// `Linear` on `[*, F]` as a 1x1 convolution of `M = ∏ leading dims`
    /// single-pixel images with `F` channels (the same memory layout), so it
    /// runs on the convolution kernels and fuses a following activation.
    fn lower_linear(
        &mut self,
        id: NodeId,
        in_features: usize,
        params: &kiln_ir::LinearParams,
    ) -> Result<(), CompileError> {
        let g = self.g;
        let node = g.node(id);
        let operand = g.operands(id).first().copied().ok_or_else(|| unresolved(node.name(), "has no operand"))?;
        let in_shape = known_shape(g, operand)?;
        let rows: usize = in_shape[..in_shape.len().saturating_sub(1)].iter().product();
        let w: Vec<f32> = param(g, id, "weight")?.iter().copied().collect();
        let bias = if params.bias { Some(param(g, id, "bias")?.iter().copied().collect()) } else { None };
        let (act, end) = self.fuse_activation(id);
        let chain = if end == id { vec![id] } else { vec![id, end] };
        let epilogue = Epilogue { bias, activation: act };
        let kernel =
            Conv2dGeometry::new(rows, in_features, [1, 1], params.out_features, 1, [1, 1], [1, 1], [0, 0], [1, 1])
                .and_then(|geom| self.kb.add_conv2d(&geom, &w, &epilogue));
        let input = self.value(operand)?;
        self.emit(&chain, kernel, vec![input])
    }

    /// A few-channel transposed convolution as two steps (see
    /// [`crate::col2im`]): the 1×1 GEMM `gemm` into a temporary, then its
    /// col2im into the output with the bias and activation of `epilogue`.
    fn lower_col2im(
        &mut self,
        chain: &[NodeId],
        operand: NodeId,
        geom: &ConvTranspose2dGeometry,
        gemm: &ConvTranspose2dGeometry,
        w: &[f32],
        epilogue: &Epilogue,
    ) -> Result<(), CompileError> {
        let nodes = chain.iter().map(|&n| self.g.node(n).name()).collect::<Vec<_>>().join("+");
        let input = self.value(operand)?;
        let gemm_kernel = if crate::gemm::applies(gemm) {
            PlaneKernel::gemm(gemm, w).and_then(|k| self.kb.add_plane("gemm", k))
        } else {
            self.kb.add_conv_transpose2d(gemm, w, &Epilogue::none())
        }
        .map_err(|source| CompileError::Kernel { node: nodes.clone(), source })?;
        let len = gemm.output_len();
        self.check_buffers(&nodes, gemm_kernel, &[input], len)?;
        let columns = self.temp(len);
        self.program.steps.push(Step {
            kernel: gemm_kernel,
            inputs: vec![input],
            output: columns,
            nodes: format!("{nodes} (columns)"),
        });
        let kernel = PlaneKernel::col2im(geom, epilogue).and_then(|k| self.kb.add_plane("col2im", k));
        self.emit(chain, kernel, vec![ValueRef::Temp(columns)])
    }

    fn lower_conv(&mut self, id: NodeId, conv: Conv<'_>) -> Result<(), CompileError> {
        let g = self.g;
        let node = g.node(id);
        let operand = g.operands(id).first().copied().ok_or_else(|| unresolved(node.name(), "has no operand"))?;
        let in_shape = known_shape(g, operand)?;
        let out_shape = known_shape(g, id)?;
        let (n, cin, _) = image_dims(node.name(), &in_shape)?;
        image_dims(node.name(), &out_shape)?;
        let r = in_shape.len();
        let in_hw = [in_shape[r - 2], in_shape[r - 1]];
        let weight = param(g, id, "weight")?;
        // One memcpy for the (usual) contiguous parameter.
        let mut w: Vec<f32> = weight.as_slice().map_or_else(|| weight.iter().copied().collect(), <[f32]>::to_vec);
        let (out_channels, has_bias) = (conv.out_channels(), conv.bias());
        let mut bias: Option<Vec<f64>> =
            if has_bias { Some(param(g, id, "bias")?.iter().map(|&v| f64::from(v)).collect()) } else { None };

        // Fold a following BatchNorm into weights and bias.
        let mut chain = vec![id];
        if let Some(bn) = self.sole_user(id).filter(|&u| matches!(g.node(u).op(), Op::BatchNorm2d { .. })) {
            let (scale, shift) = batch_norm_affine(g, bn)?;
            let per_out = w.len() / out_channels.max(1);
            match conv {
                Conv::Transpose { params, in_channels } => {
                    // weight [C_in, C_out/g, kH, kW]: output channel of (ci, j) is group(ci)·(C_out/g) + j.
                    let opg = out_channels / params.groups;
                    let ipg = in_channels / params.groups;
                    let khw = params.kernel_size.h * params.kernel_size.w;
                    // Row by row, not index by index: three divisions per
                    // weight were most of DCGAN ngf=64's lowering.
                    for (ci, rows) in w.chunks_mut((opg * khw).max(1)).enumerate() {
                        let first = (ci / ipg.max(1)) * opg;
                        for (j, taps) in rows.chunks_mut(khw.max(1)).enumerate() {
                            let s = scale[first + j];
                            taps.iter_mut().for_each(|v| *v = (f64::from(*v) * s) as f32);
                        }
                    }
                }
                Conv::Forward { .. } => {
                    // weight [C_out, C_in/g, kH, kW]
                    for (c, row) in w.chunks_mut(per_out.max(1)).enumerate() {
                        let s = scale[c];
                        row.iter_mut().for_each(|v| *v = (f64::from(*v) * s) as f32);
                    }
                }
            }
            let b = bias.take().unwrap_or_else(|| vec![0.0; out_channels]);
            bias = Some(b.iter().zip(scale.iter().zip(&shift)).map(|(b, (s, t))| b * s + t).collect());
            chain.push(bn);
        }
        let (act, end) = self.fuse_activation(*chain.last().unwrap_or(&id));
        if end != *chain.last().unwrap_or(&id) {
            chain.push(end);
        }
        let epilogue = Epilogue { bias: bias.map(|b| b.into_iter().map(|v| v as f32).collect()), activation: act };
        let kernel = match conv {
            Conv::Transpose { params, .. } => {
                let geom = ConvTranspose2dGeometry {
                    batch: n,
                    in_channels: cin,
                    in_h: in_hw[0],
                    in_w: in_hw[1],
                    out_channels,
                    groups: params.groups,
                    kernel: params.kernel_size.to_array(),
                    stride: params.stride.to_array(),
                    // Only the begin side is a parameter: the end side (and
                    // output_padding) is in the output size, checked above
                    // against the reference's rule.
                    padding: params.padding.begin().to_array(),
                    dilation: params.dilation.to_array(),
                    out_h: out_shape[out_shape.len() - 2],
                    out_w: out_shape[out_shape.len() - 1],
                };
                let col2im = self.kb.native_rules() && !self.kb.has_dedicated_kernel(&geom);
                if let Some(gemm) = crate::col2im::gemm_geometry(&geom).filter(|_| col2im) {
                    return self.lower_col2im(&chain, operand, &geom, &gemm, &w, &epilogue);
                }
                self.kb.add_conv_transpose2d(&geom, &w, &epilogue)
            }
            Conv::Forward { params } if self.folds.contains_key(&id) => {
                let producer = self.folds[&id];
                if self.lower_folded_conv(id, producer, params, &w, &epilogue, &chain)? {
                    return Ok(());
                }
                // The fold did not apply after all: the producer alone, then the convolution.
                self.lower_node(producer.node())?;
                self.folds.remove(&id);
                return self.lower_conv(id, conv);
            }
            Conv::Forward { params } => {
                // A 1×1, stride-1, unpadded convolution is pointwise: the
                // planes as one row of h·w pixels give its tiles long
                // contiguous runs instead of short rows and their remainders
                // (the op zoo's 12 → 3 head on 26×22 planes: 22-pixel rows).
                let pointwise = params.kernel_size.to_array() == [1, 1]
                    && params.stride.to_array() == [1, 1]
                    && params.padding.begin().to_array() == [0, 0]
                    && params.padding.end().to_array() == [0, 0];
                let declared = match out_shape.len() {
                    l if l >= 2 => [out_shape[l - 2], out_shape[l - 1]],
                    _ => [0, 0],
                };
                let (geom_hw, want) = if pointwise && declared == in_hw {
                    ([1, in_hw[0] * in_hw[1]], [1, declared[0] * declared[1]])
                } else {
                    (in_hw, declared)
                };
                Conv2dGeometry::with_pads(
                    n,
                    cin,
                    geom_hw,
                    out_channels,
                    params.groups,
                    params.kernel_size.to_array(),
                    params.stride.to_array(),
                    params.padding.begin().to_array(),
                    params.padding.end().to_array(),
                    params.dilation.to_array(),
                )
                .and_then(|geom| {
                    if [geom.out_h, geom.out_w] != want {
                        return Err(crate::JitError::geometry(
                            "conv2d",
                            format!(
                                "the node declares output size {declared:?}, its arguments give {:?}",
                                [geom.out_h, geom.out_w]
                            ),
                        ));
                    }
                    self.kb.add_conv2d(&geom, &w, &epilogue)
                })
            }
        };
        let input = self.value(operand)?;
        self.emit(&chain, kernel, vec![input])
    }

    /// `Conv2d` `id` with its absorbed `producer`, weights `w` and epilogue
    /// already folded (BatchNorm, activation); `chain` is the convolution's
    /// group. Returns false, having emitted nothing, if the fold turns out
    /// not to apply (a sum of weights overflowed, or the combined geometry
    /// is refused), so the caller lowers both nodes unfused.
    fn lower_folded_conv(
        &mut self,
        id: NodeId,
        producer: Producer,
        params: &kiln_ir::Conv2dParams,
        w: &[f32],
        epilogue: &Epilogue,
        chain: &[NodeId],
    ) -> Result<bool, CompileError> {
        let g = self.g;
        let name = g.node(id).name();
        let src = g.operands(producer.node()).first().copied().ok_or_else(|| unresolved(name, "has no operand"))?;
        let [n, cin, h, wd] = nchw(name, &known_shape(g, src)?)?;
        let out_shape = known_shape(g, id)?;
        let declared = [out_shape[out_shape.len() - 2], out_shape[out_shape.len() - 1]];
        let kernel = match producer {
            Producer::ZeroPad { begin, end, .. } => {
                let add = |conv: kiln_ir::Pair2, pad: [usize; 2]| {
                    Some([conv.h.checked_add(pad[0])?, conv.w.checked_add(pad[1])?])
                };
                let (Some(begin), Some(end)) = (add(params.padding.begin(), begin), add(params.padding.end(), end))
                else {
                    return Ok(false);
                };
                Conv2dGeometry::with_pads(
                    n,
                    cin,
                    [h, wd],
                    params.out_channels,
                    params.groups,
                    params.kernel_size.to_array(),
                    params.stride.to_array(),
                    begin,
                    end,
                    params.dilation.to_array(),
                )
                .ok()
                .filter(|geom| [geom.out_h, geom.out_w] == declared)
                .map(|geom| self.kb.add_conv2d(&geom, w, epilogue))
            }
            Producer::Nearest { factors, .. } => params
                .padding
                .as_symmetric()
                .and_then(|pad| {
                    fold::upsampled_conv(
                        w,
                        params.out_channels,
                        cin,
                        params.groups,
                        params.kernel_size.to_array(),
                        pad.to_array(),
                        factors,
                    )
                })
                .map(|f| {
                    let geom = ConvTranspose2dGeometry {
                        batch: n,
                        in_channels: cin,
                        in_h: h,
                        in_w: wd,
                        out_channels: params.out_channels,
                        groups: params.groups,
                        kernel: f.kernel,
                        stride: f.stride,
                        padding: f.padding,
                        dilation: [1, 1],
                        out_h: declared[0],
                        out_w: declared[1],
                    };
                    // The pair equals this transposed convolution only when the
                    // declared size is its full output cropped by `padding` on
                    // both ends (geometry validation accepts any size).
                    if geom.end_crop() != f.padding.map(|p| p as i128) {
                        return Err(crate::JitError::geometry(
                            "conv_transpose2d",
                            format!(
                                "the folded upsampling crops {:?} at the end, not {:?}",
                                geom.end_crop(),
                                f.padding
                            ),
                        ));
                    }
                    self.kb.add_conv_transpose2d(&geom, &f.weight, epilogue)
                }),
        };
        let Some(Ok(kernel)) = kernel else { return Ok(false) };
        let mut nodes = vec![producer.node()];
        nodes.extend_from_slice(chain);
        let input = self.value(src)?;
        self.emit(&nodes, Ok(kernel), vec![input])?;
        Ok(true)
    }

    /// `kernel` with the elementwise chain after `id` fused, and the nodes
    /// the kernel then computes.
    fn plane_with_tail(
        &self,
        id: NodeId,
        kernel: Result<PlaneKernel, crate::JitError>,
    ) -> Result<(Result<PlaneKernel, crate::JitError>, Vec<NodeId>), CompileError> {
        let (ops, mut nodes) = self.tail_after(id)?;
        nodes.insert(0, id);
        if ops.is_empty() {
            return Ok((kernel, nodes));
        }
        let len = known_shape(self.g, id)?.iter().product();
        Ok((kernel.and_then(|k| Tail::program(ops, len).and_then(|t| k.with_tail(t))), nodes))
    }

    /// A spatial gather with the gathers after it (each the sole user of
    /// the one before, none folded into a convolution) composed into one
    /// plane kernel, and the elementwise chain after that fused. A chain
    /// that composes to the identity, with nothing after it, is no kernel.
    /// Returns false, having emitted nothing, if `id` is not a gather.
    fn lower_gather(&mut self, id: NodeId) -> Result<bool, CompileError> {
        let g = self.g;
        let Some((planes, mut map)) = gather_map(g, id)? else { return Ok(false) };
        let mut chain = vec![id];
        while let Some(u) = self.sole_user(*chain.last().unwrap_or(&id)) {
            if self.deferred.contains(&u) {
                break;
            }
            let Some((p, next)) = gather_map(g, u)? else { break };
            let Some(composed) = map.then(&next).filter(|_| p == planes) else { break };
            map = composed;
            chain.push(u);
        }
        let last = *chain.last().unwrap_or(&id);
        let input = self.value(g.operands(id)[0])?;
        if map.is_identity() && self.tail_after(last)?.0.is_empty() {
            for &n in &chain {
                self.absorbed.insert(n, last);
            }
            self.values.insert(last, input);
            return Ok(true);
        }
        let (k, tail) = self.plane_with_tail(last, PlaneKernel::gather(planes, 1, &map))?;
        chain.extend(&tail[1..]);
        let k = k.and_then(|k| self.kb.add_plane(g.node(id).op().mnemonic(), k));
        self.emit(&chain, k, vec![input])?;
        Ok(true)
    }

    /// Broadcasting `a op b` with the elementwise chain after it fused.
    fn lower_binary(
        &mut self,
        id: NodeId,
        arith: kiln_ir::ArithOp,
        (ops, mut nodes): (Vec<TailOp>, Vec<NodeId>),
    ) -> Result<(), CompileError> {
        let g = self.g;
        let operands = g.operands(id);
        let (a, b, out) = (known_shape(g, operands[0])?, known_shape(g, operands[1])?, known_shape(g, id)?);
        nodes.insert(0, id);
        let len = out.iter().product();
        let k = BinaryKernel::new(arith, &a, &b, &out)
            .and_then(|k| if ops.is_empty() { Ok(k) } else { Tail::program(ops, len).and_then(|t| k.with_tail(t)) })
            .and_then(|k| self.kb.add_binary(g.node(id).op().mnemonic(), k));
        let inputs = operands.iter().map(|&o| self.value(o)).collect::<Result<_, _>>()?;
        self.emit(&nodes, k, inputs)
    }

    fn lower_node(&mut self, id: NodeId) -> Result<(), CompileError> {
        let g = self.g;
        let node = g.node(id);
        if node.op().is_lazy() {
            return Err(unresolved(node.name(), format!("is still a lazy {}", node.op().class_name())));
        }
        let operands = g.operands(id);
        // Pads, crops and nearest upsamplings (with the gathers after them),
        // and unary chains: lowered ahead of the per-op kernels below.
        if self.lower_chain(id)? || self.lower_gather(id)? {
            return Ok(());
        }
        match node.op() {
            Op::Input | Op::Output => Ok(()),
            Op::ConvTranspose2d { params, in_channels } => {
                self.lower_conv(id, Conv::Transpose { params, in_channels: *in_channels })
            }
            Op::Conv2d { params, .. } => self.lower_conv(id, Conv::Forward { params }),
            Op::BatchNorm2d { .. } | Op::BatchNorm1d { .. } => {
                // Both are a per-channel affine over [N, C, inner].
                let shape = known_shape(g, id)?;
                let (n, c, inner) = match (node.op(), shape.as_slice()) {
                    (Op::BatchNorm1d { .. }, &[n, c]) => (n, c, 1),
                    (Op::BatchNorm1d { .. }, &[n, c, l]) => (n, c, l),
                    (Op::BatchNorm1d { .. }, _) => {
                        return Err(shape_error(g, id, format!("has shape {shape:?}; BatchNorm1d needs 2-D or 3-D")))
                    }
                    _ => image_dims(node.name(), &shape)?,
                };
                let (scale, shift) = batch_norm_affine(g, id)?;
                let (act, end) = self.fuse_activation(id);
                let chain = if end == id { vec![id] } else { vec![id, end] };
                let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
                let k = self.kb.add_batch_norm(n, c, inner, &f32s(scale), &f32s(shift), act);
                let input = self.value(operands[0])?;
                self.emit(&chain, k, vec![input])
            }
            Op::Linear { in_features, params } => self.lower_linear(id, *in_features, params),
            Op::InstanceNorm2d { params, .. } => {
                let shape = known_shape(g, id)?;
                let [n, c, h, w] = nchw(node.name(), &shape)?;
                let input = self.value(operands[0])?;
                if params.track_running_stats {
                    // Running statistics: a per-channel affine, the BatchNorm kernel.
                    let (scale, shift) = self.instance_norm_running_affine(id)?;
                    let (act, end) = self.fuse_activation(id);
                    let chain = if end == id { vec![id] } else { vec![id, end] };
                    let k = self.kb.add_batch_norm(n, c, h * w, &scale, &shift, act);
                    return self.emit(&chain, k, vec![input]);
                }
                let vec =
                    |key: &str| -> Result<Vec<f32>, CompileError> { Ok(param(g, id, key)?.iter().copied().collect()) };
                let (weight, bias) =
                    if params.affine { (Some(vec("weight")?), Some(vec("bias")?)) } else { (None, None) };
                let kernel = PlaneKernel::instance_norm(n, c, [h, w], params.eps, weight, bias);
                let (k, chain) = self.plane_with_tail(id, kernel)?;
                let k = k.and_then(|k| self.kb.add_plane("instance_norm2d", k));
                self.emit(&chain, k, vec![input])
            }
            Op::GroupNorm { num_groups, num_channels, eps, affine } => {
                let shape = known_shape(g, id)?;
                let n = shape[0];
                let inner = shape[2..].iter().product();
                let vec =
                    |key: &str| -> Result<Vec<f32>, CompileError> { Ok(param(g, id, key)?.iter().copied().collect()) };
                let (weight, bias) = if *affine { (Some(vec("weight")?), Some(vec("bias")?)) } else { (None, None) };
                let k = PlaneKernel::group_norm(n, *num_channels, inner, *num_groups, *eps, weight, bias);
                let (k, chain) = self.plane_with_tail(id, k)?;
                let k = k.and_then(|k| self.kb.add_plane("group_norm", k));
                let input = self.value(operands[0])?;
                self.emit(&chain, k, vec![input])
            }
            // Contiguous buffers: a reshape is the same floats under a new shape.
            Op::Flatten { .. } | Op::Unflatten { .. } | Op::Reshape { .. } => {
                let v = self.value(operands[0])?;
                self.values.insert(id, v);
                Ok(())
            }
            Op::Relu | Op::LeakyRelu { .. } | Op::Tanh | Op::Sigmoid => {
                let act = activation_of(node.op()).unwrap_or(Activation::Identity);
                let len = known_shape(g, id)?.iter().product();
                let k = self.kb.add_activation(len, act);
                let input = self.value(operands[0])?;
                self.emit(&[id], k, vec![input])
            }
            Op::Pointwise { f } => {
                let len = known_shape(g, id)?.iter().product();
                let k = self.kb.add_pointwise(len, *f);
                let input = self.value(operands[0])?;
                self.emit(&[id], k, vec![input])
            }
            Op::PRelu { .. } => {
                let shape = known_shape(g, id)?;
                let w = param(g, id, "weight")?;
                let w: Vec<f32> = w.iter().copied().collect();
                let k = match w.as_slice() {
                    // One shared weight is exactly a LeakyReLU with that slope.
                    [a] => self.kb.add_activation(shape.iter().product(), Activation::LeakyRelu(*a)),
                    _ => {
                        let (outer, inner) = (shape[0], shape[2..].iter().product());
                        self.kb.add_prelu(outer, &w, inner)
                    }
                };
                let input = self.value(operands[0])?;
                self.emit(&[id], k, vec![input])
            }
            Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::Pad2d { .. }
            | Op::Upsample { .. }
            | Op::PixelShuffle { .. } => {
                let (op, kernel) = plane_kernel(g, id)?;
                let (k, chain) = self.plane_with_tail(id, Ok(kernel))?;
                let k = k.and_then(|k| self.kb.add_plane(op, k));
                let input = self.value(operands[0])?;
                self.emit(&chain, k, vec![input])
            }
            Op::Cat { dim } => {
                let out = known_shape(g, id)?;
                let d = kiln_ir::reshape::wrap_dim(*dim, out.len()).map_err(|m| shape_error(g, id, m))?;
                let (outer, inner) = (out[..d].iter().product(), out[d + 1..].iter().product());
                let sizes: Vec<usize> =
                    operands.iter().map(|&o| known_shape(g, o).map(|s| s[d])).collect::<Result<_, _>>()?;
                let k = self.kb.add_concat(outer, &sizes, inner);
                let inputs = operands.iter().map(|&o| self.value(o)).collect::<Result<_, _>>()?;
                self.emit(&[id], k, inputs)
            }
            Op::Narrow { dim, start, length } => {
                let x = known_shape(g, operands[0])?;
                let d = kiln_ir::reshape::wrap_dim(*dim, x.len()).map_err(|m| shape_error(g, id, m))?;
                let (outer, inner) = (x[..d].iter().product(), x[d + 1..].iter().product());
                let (k, chain) = self.plane_with_tail(id, PlaneKernel::narrow(outer, x[d], *start, *length, inner))?;
                let k = k.and_then(|k| self.kb.add_plane("narrow", k));
                let input = self.value(operands[0])?;
                self.emit(&chain, k, vec![input])
            }
            // Eval-mode identities: the value is the operand's, no kernel.
            Op::Identity | Op::Dropout { .. } | Op::Dropout2d { .. } => {
                let v = self.value(operands[0])?;
                self.values.insert(id, v);
                Ok(())
            }
            Op::Scalar { op, other } => {
                // `x·s + t` on the BatchNorm kernel: exact for one add or one multiply.
                let len: usize = known_shape(g, id)?.iter().product();
                let (scale, shift) = match op {
                    kiln_ir::ArithOp::Add => (1.0, *other),
                    kiln_ir::ArithOp::Sub => (1.0, -*other),
                    kiln_ir::ArithOp::Mul => (*other, 0.0),
                };
                let (act, end) = self.fuse_activation(id);
                let chain = if end == id { vec![id] } else { vec![id, end] };
                let k = self.kb.add_batch_norm(1, 1, len, &[scale], &[shift], act);
                let input = self.value(operands[0])?;
                self.emit(&chain, k, vec![input])
            }
            Op::Add | Op::Sub | Op::Mul => {
                let arith = arith_of(node.op()).ok_or_else(|| unresolved(node.name(), "is not Add, Sub or Mul"))?;
                let broadcast = operands.iter().any(|&o| g.node(o).shape() != node.shape());
                let tail = self.tail_after(id)?;
                // Broadcasting, Sub/Mul, or a longer chain after a same-shape
                // Add: the native broadcasting kernel, carrying the chain.
                if broadcast
                    || arith != kiln_ir::ArithOp::Add
                    || !matches!(tail.0.as_slice(), [] | [TailOp::Unary(UnaryOp::Activation(_))])
                {
                    return self.lower_binary(id, arith, tail);
                }
                let len = known_shape(g, id)?.iter().product();
                let (act, end) = self.fuse_activation(id);
                let chain = if end == id { vec![id] } else { vec![id, end] };
                let k = self.kb.add_add(len, act);
                let inputs = operands.iter().map(|&o| self.value(o)).collect::<Result<_, _>>()?;
                self.emit(&chain, k, inputs)
            }
            Op::Concat => {
                let shape = known_shape(g, id)?;
                let (n, _, hw) = image_dims(node.name(), &shape)?;
                let channels: Vec<usize> = operands
                    .iter()
                    .map(|&o| known_shape(g, o).and_then(|s| image_dims(g.node(o).name(), &s).map(|d| d.1)))
                    .collect::<Result<_, _>>()?;
                let k = self.kb.add_concat(n, &channels, hw);
                let inputs = operands.iter().map(|&o| self.value(o)).collect::<Result<_, _>>()?;
                self.emit(&[id], k, inputs)
            }
            Op::LazyConvTranspose2d { .. }
            | Op::LazyConv2d { .. }
            | Op::LazyBatchNorm2d { .. }
            | Op::LazyLinear { .. }
            | Op::LazyBatchNorm1d { .. }
            | Op::LazyInstanceNorm2d { .. } => Err(unresolved(node.name(), "is still lazy")),
        }
    }
}

/// Lowers `g` into kernels added to `kb`.
pub fn lower(g: &Graph, kb: &mut KernelBuilder) -> Result<Program, CompileError> {
    g.validate()?;
    let mut l = Lowering {
        g,
        kb,
        program: Program::default(),
        values: HashMap::new(),
        absorbed: HashMap::new(),
        folds: HashMap::new(),
        deferred: HashSet::new(),
    };
    for (i, &input) in g.inputs().iter().enumerate() {
        known_shape(g, input)?;
        l.values.insert(input, ValueRef::Input(i));
    }
    let order = g.topo_order()?;
    // All shapes first, fused nodes included, before any kernel is built.
    for &id in &order {
        check_declared_shape(g, id)?;
    }
    l.plan_folds(&order)?;
    for id in order {
        if !l.absorbed.contains_key(&id) && !l.deferred.contains(&id) {
            l.lower_node(id)?;
            l.lower_region_after(id)?;
        }
    }
    for &out in g.outputs() {
        let value_node =
            g.operands(out).first().copied().ok_or_else(|| unresolved(g.node(out).name(), "has no operand"))?;
        let v = l.value(value_node)?;
        l.program.outputs.push((v, known_shape(g, value_node)?));
    }
    Ok(l.program)
}
