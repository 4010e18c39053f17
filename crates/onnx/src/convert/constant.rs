//! Constant tensors and the constant folder.
//!
//! Exporters compute shapes, pads, scales and crop bounds with small
//! sub-graphs (`Shape` → `Gather` → `Unsqueeze` → `Concat` → `Reshape`, or
//! `ConstantOfShape`/`Slice`/`Transpose`/`Cast` feeding `Pad`). Once the
//! graph inputs have concrete shapes, every such node has constant inputs,
//! and evaluating it here turns the whole sub-graph into the literal the data
//! op needs. One general evaluator rather than a list of exporter idioms: any
//! node of the ops below whose inputs are all constants is folded.

use super::error::{ImportError, Result};

/// Element kind of a constant: all floats are held as f64 (exact for the
/// f32/f16 inputs, and shape arithmetic never needs more), integers as i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Floating point (ONNX float, double, float16, bfloat16).
    Float,
    /// Integers (ONNX int64, int32, ...).
    Int,
    /// Booleans, stored as 0 and 1.
    Bool,
}

/// A constant tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub(crate) dims: Vec<usize>,
    pub(crate) kind: Kind,
    pub(crate) data: Vec<f64>,
}

/// Elements a folded constant may have: the folder evaluates shape
/// arithmetic, not data, so anything larger is a model that computes weights
/// at run time and is refused rather than expanded.
const MAX_FOLD_ELEMENTS: usize = 1 << 24;

impl Const {
    pub(crate) fn new(dims: Vec<usize>, kind: Kind, data: Vec<f64>) -> Const {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        Const { dims, kind, data }
    }

    pub(crate) fn ints(v: &[i64]) -> Const {
        Const::new(vec![v.len()], Kind::Int, v.iter().map(|&x| x as f64).collect())
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// The values as integers (floats must be integral).
    pub(crate) fn to_i64(&self, node: &str, what: &str) -> Result<Vec<i64>> {
        self.data
            .iter()
            .map(|&x| {
                // `as` saturates: INT64_MAX/MIN (Slice's "to the end"), held
                // as f64, come back as themselves.
                if x.fract() == 0.0 {
                    Ok(x as i64)
                } else {
                    Err(ImportError::invalid(node, format!("{what}: {x} is not an integer")))
                }
            })
            .collect()
    }

    /// The single value of a one-element tensor.
    pub(crate) fn scalar(&self, node: &str, what: &str) -> Result<f64> {
        match self.data.as_slice() {
            [x] => Ok(*x),
            _ => Err(ImportError::invalid(node, format!("{what} must be one value, got shape {:?}", self.dims))),
        }
    }

    pub(crate) fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }
}

fn check_size(node: &str, dims: &[usize]) -> Result<usize> {
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= MAX_FOLD_ELEMENTS => Ok(n),
        _ => Err(ImportError::invalid(node, format!("a constant of shape {dims:?} is too large to fold"))),
    }
}

/// `axis` in `-rank..rank` (or `-rank..=rank` with `inclusive`) as an index.
pub(crate) fn axis(node: &str, axis: i64, rank: usize, inclusive: bool) -> Result<usize> {
    // Negative axes count from the end (`-1` is the last axis) in both
    // forms; `inclusive` (Flatten) also allows `rank` itself.
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r + i64::from(inclusive)).contains(&a) {
        Ok(a as usize)
    } else {
        Err(ImportError::invalid(node, format!("axis {axis} is out of range for rank {rank}")))
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcasting of two shapes.
pub(crate) fn broadcast_dims(node: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (x, y) {
                _ if x == y => Ok(x),
                (1, _) => Ok(y),
                (_, 1) => Ok(x),
                _ => Err(ImportError::invalid(node, format!("shapes {a:?} and {b:?} do not broadcast"))),
            }
        })
        .collect()
}

/// The element of `c` at output index `idx` of the broadcast shape `out`.
fn broadcast_index(c: &Const, out: &[usize], idx: usize) -> usize {
    let st = strides(&c.dims);
    let off = out.len() - c.dims.len();
    let mut rem = idx;
    let mut at = 0;
    for (i, &d) in out.iter().enumerate().rev() {
        let k = rem % d;
        rem /= d;
        if i >= off && c.dims[i - off] != 1 {
            at += k * st[i - off];
        }
    }
    at
}

/// Elementwise `f` over broadcast inputs.
fn zip_with(node: &str, xs: &[&Const], kind: Kind, f: impl Fn(&[f64]) -> f64) -> Result<Const> {
    let mut dims: Vec<usize> = Vec::new();
    for x in xs {
        dims = broadcast_dims(node, &dims, &x.dims)?;
    }
    let n = check_size(node, &dims)?;
    let mut args = vec![0.0; xs.len()];
    let data = (0..n)
        .map(|i| {
            for (a, x) in args.iter_mut().zip(xs) {
                *a = x.data[broadcast_index(x, &dims, i)];
            }
            f(&args)
        })
        .collect();
    Ok(Const::new(dims, kind, data))
}

/// Integer `Div` as `onnx.reference` computes it (`np.divide`, then a cast
/// back to the integer type: truncation toward zero).
fn int_div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a / b).trunc()
    }
}

/// Evaluates `op` on constant inputs, or `None` when `op` is not one the
/// folder knows (the caller then treats the node as a data op).
pub(crate) fn fold(node: &super::NodeRef<'_>, inputs: &[Option<&Const>]) -> Result<Option<Vec<Const>>> {
    let name = node.label.as_str();
    let arg = |i: usize| -> Result<&Const> {
        inputs.get(i).copied().flatten().ok_or_else(|| ImportError::invalid(name, format!("input {i} is missing")))
    };
    let ints_input = |i: usize, what: &str| -> Result<Option<Vec<i64>>> {
        match inputs.get(i).copied().flatten() {
            Some(c) => c.to_i64(name, what).map(Some),
            None => Ok(None),
        }
    };
    let out = match node.op_type {
        "Identity" => arg(0)?.clone(),
        "Cast" => {
            let to = node.attr_int("to")?.unwrap_or(1);
            let x = arg(0)?;
            let kind = match to {
                1 | 10 | 11 | 16 => Kind::Float,
                9 => Kind::Bool,
                2..=7 | 12 | 13 => Kind::Int,
                _ => return Err(ImportError::invalid(name, format!("Cast to type {to} is not supported"))),
            };
            let data = x
                .data
                .iter()
                .map(|&v| match kind {
                    Kind::Float if to == 1 => f64::from(v as f32),
                    Kind::Float => v,
                    Kind::Int => v.trunc(),
                    Kind::Bool => f64::from(u8::from(v != 0.0)),
                })
                .collect();
            Const::new(x.dims.clone(), kind, data)
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Mod" => {
            let (a, b) = (arg(0)?, arg(1)?);
            let kind = if a.kind == Kind::Float || b.kind == Kind::Float { Kind::Float } else { Kind::Int };
            let op = node.op_type;
            zip_with(name, &[a, b], kind, |v| match op {
                "Add" => v[0] + v[1],
                "Sub" => v[0] - v[1],
                "Mul" => v[0] * v[1],
                "Div" if kind == Kind::Int => int_div(v[0], v[1]),
                "Div" => v[0] / v[1],
                "Pow" => v[0].powf(v[1]),
                "Max" => v[0].max(v[1]),
                "Min" => v[0].min(v[1]),
                // "Mod" (fmod=0: the sign of the divisor, as Python).
                _ => {
                    if v[1] == 0.0 {
                        0.0
                    } else {
                        v[0] - (v[0] / v[1]).floor() * v[1]
                    }
                }
            })?
        }
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            let op = node.op_type;
            zip_with(name, &[arg(0)?, arg(1)?], Kind::Bool, |v| {
                let r = match op {
                    "Equal" => v[0] == v[1],
                    "Less" => v[0] < v[1],
                    "Greater" => v[0] > v[1],
                    "LessOrEqual" => v[0] <= v[1],
                    _ => v[0] >= v[1],
                };
                f64::from(u8::from(r))
            })?
        }
        "Not" => {
            let x = arg(0)?;
            Const::new(x.dims.clone(), Kind::Bool, x.data.iter().map(|&v| f64::from(u8::from(v == 0.0))).collect())
        }
        "Neg" | "Abs" | "Floor" | "Ceil" | "Sqrt" | "Reciprocal" | "Round" => {
            let x = arg(0)?;
            let op = node.op_type;
            let data = x
                .data
                .iter()
                .map(|&v| match op {
                    "Neg" => -v,
                    "Abs" => v.abs(),
                    "Floor" => v.floor(),
                    "Ceil" => v.ceil(),
                    "Sqrt" => v.sqrt(),
                    "Round" => v.round_ties_even(),
                    _ => 1.0 / v,
                })
                .collect();
            Const::new(x.dims.clone(), x.kind, data)
        }
        "Where" => {
            let (c, a, b) = (arg(0)?, arg(1)?, arg(2)?);
            zip_with(name, &[c, a, b], a.kind, |v| if v[0] != 0.0 { v[1] } else { v[2] })?
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = arg(0)?
                .to_i64(name, "shape")?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| ImportError::invalid(name, format!("negative dim {d}"))))
                .collect::<Result<_>>()?;
            let n = check_size(name, &dims)?;
            let (kind, v) = match node.attr_tensor("value")? {
                Some(t) => {
                    let c = super::tensor_const(&t, name)?;
                    (c.kind, c.data.first().copied().unwrap_or(0.0))
                }
                None => (Kind::Float, 0.0),
            };
            Const::new(dims, kind, vec![v; n])
        }
        "Range" => {
            let (s, l, d) =
                (arg(0)?.scalar(name, "start")?, arg(1)?.scalar(name, "limit")?, arg(2)?.scalar(name, "delta")?);
            if d == 0.0 {
                return Err(ImportError::invalid(name, "Range with delta 0"));
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if n > MAX_FOLD_ELEMENTS as f64 {
                return Err(ImportError::invalid(name, "Range is too long to fold"));
            }
            let n = n as usize;
            Const::new(vec![n], arg(0)?.kind, (0..n).map(|i| s + i as f64 * d).collect())
        }
        "Gather" => {
            let (x, idx) = (arg(0)?, arg(1)?);
            let r = x.dims.len();
            if r == 0 {
                return Err(ImportError::invalid(name, "Gather on a scalar"));
            }
            let ax = axis(name, node.attr_int("axis")?.unwrap_or(0), r, false)?;
            let n_ax = x.dims[ax];
            let idx_v: Vec<usize> =
                idx.to_i64(name, "indices")?
                    .iter()
                    .map(|&i| {
                        let j = if i < 0 { i + n_ax as i64 } else { i };
                        usize::try_from(j).ok().filter(|&j| j < n_ax).ok_or_else(|| {
                            ImportError::invalid(name, format!("index {i} out of range for size {n_ax}"))
                        })
                    })
                    .collect::<Result<_>>()?;
            let outer: usize = x.dims[..ax].iter().product();
            let inner: usize = x.dims[ax + 1..].iter().product();
            let mut dims = x.dims[..ax].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&x.dims[ax + 1..]);
            check_size(name, &dims)?;
            let mut data = Vec::new();
            for o in 0..outer {
                for &j in &idx_v {
                    data.extend_from_slice(&x.data[(o * n_ax + j) * inner..][..inner]);
                }
            }
            Const::new(dims, x.kind, data)
        }
        "Unsqueeze" => {
            let x = arg(0)?;
            let axes = match ints_input(1, "axes")? {
                Some(a) => a,
                None => node.attr_ints("axes")?.map(<[i64]>::to_vec).unwrap_or_default(),
            };
            Const::new(unsqueeze_dims(name, &x.dims, &axes)?, x.kind, x.data.clone())
        }
        "Squeeze" => {
            let x = arg(0)?;
            let axes = match ints_input(1, "axes")? {
                Some(a) => Some(a),
                None => node.attr_ints("axes")?.map(<[i64]>::to_vec),
            };
            let dims = squeeze_dims(name, &x.dims, axes.as_deref())?;
            Const::new(dims, x.kind, x.data.clone())
        }
        "Reshape" => {
            let x = arg(0)?;
            let shape = arg(1)?.to_i64(name, "shape")?;
            let allow_zero = node.attr_int("allowzero")?.unwrap_or(0) != 0;
            let dims = reshape_dims(name, &x.dims, &shape, allow_zero)?;
            Const::new(dims, x.kind, x.data.clone())
        }
        "Flatten" => {
            let x = arg(0)?;
            let ax = axis(name, node.attr_int("axis")?.unwrap_or(1), x.dims.len(), true)?;
            let a: usize = x.dims[..ax].iter().product();
            Const::new(vec![a, x.len() / a.max(1)], x.kind, x.data.clone())
        }
        "Concat" => {
            let xs: Vec<&Const> = (0..inputs.len()).map(arg).collect::<Result<_>>()?;
            let first = xs.first().ok_or_else(|| ImportError::invalid(name, "Concat of nothing"))?;
            let r = first.dims.len();
            let ax = axis(name, node.attr_int("axis")?.unwrap_or(0), r, false)?;
            let mut dims = first.dims.clone();
            dims[ax] = 0;
            for x in &xs {
                if x.dims.len() != r || x.dims.iter().enumerate().any(|(i, &d)| i != ax && d != first.dims[i]) {
                    return Err(ImportError::invalid(
                        name,
                        format!("Concat of shapes {:?} and {:?}", first.dims, x.dims),
                    ));
                }
                dims[ax] += x.dims[ax];
            }
            check_size(name, &dims)?;
            let outer: usize = first.dims[..ax].iter().product();
            let kind = if xs.iter().any(|x| x.kind == Kind::Float) { Kind::Float } else { first.kind };
            let mut data = Vec::new();
            for o in 0..outer {
                for x in &xs {
                    let chunk: usize = x.dims[ax..].iter().product();
                    data.extend_from_slice(&x.data[o * chunk..][..chunk]);
                }
            }
            Const::new(dims, kind, data)
        }
        "Slice" => {
            let x = arg(0)?;
            let spec = slice_spec(node, inputs, &x.dims)?;
            let mut dims = x.dims.clone();
            for s in &spec {
                dims[s.axis] = s.len;
            }
            let n = check_size(name, &dims)?;
            let st = strides(&x.dims);
            let mut data = Vec::with_capacity(n);
            for i in 0..n {
                let mut rem = i;
                let mut at = 0usize;
                for (a, &d) in dims.iter().enumerate().rev() {
                    let k = rem % d;
                    rem /= d;
                    let src = match spec.iter().find(|s| s.axis == a) {
                        Some(s) => (s.start + k as i64 * s.step) as usize,
                        None => k,
                    };
                    at += src * st[a];
                }
                data.push(x.data[at]);
            }
            Const::new(dims, x.kind, data)
        }
        "Transpose" => {
            let x = arg(0)?;
            let r = x.dims.len();
            let perm: Vec<usize> = match node.attr_ints("perm")? {
                Some(p) => p.iter().map(|&a| axis(name, a, r, false)).collect::<Result<_>>()?,
                None => (0..r).rev().collect(),
            };
            let mut seen = vec![false; r];
            if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
                return Err(ImportError::invalid(name, format!("perm {perm:?} is not a permutation of rank {r}")));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let st = strides(&x.dims);
            let data = (0..x.len())
                .map(|i| {
                    let mut rem = i;
                    let mut at = 0;
                    for (a, &d) in dims.iter().enumerate().rev() {
                        at += (rem % d) * st[perm[a]];
                        rem /= d;
                    }
                    x.data[at]
                })
                .collect();
            Const::new(dims, x.kind, data)
        }
        "Expand" => {
            let x = arg(0)?;
            let shape: Vec<usize> = arg(1)?
                .to_i64(name, "shape")?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| ImportError::invalid(name, format!("negative dim {d}"))))
                .collect::<Result<_>>()?;
            let target = Const::new(shape.clone(), x.kind, vec![0.0; check_size(name, &shape)?]);
            zip_with(name, &[x, &target], x.kind, |v| v[0])?
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let x = arg(0)?;
            let axes = match ints_input(1, "axes")? {
                Some(a) => Some(a),
                None => node.attr_ints("axes")?.map(<[i64]>::to_vec),
            };
            let keep = node.attr_int("keepdims")?.unwrap_or(1) != 0;
            if axes.as_ref().is_some_and(|a| !a.is_empty()) || keep {
                // Only the full reduction to a scalar is used in shape code.
                if x.dims.len() > 1 || keep && !x.dims.is_empty() {
                    return Ok(None);
                }
            }
            let op = node.op_type;
            let v = x.data.iter().copied().reduce(|a, b| match op {
                "ReduceProd" => a * b,
                "ReduceSum" => a + b,
                "ReduceMax" => a.max(b),
                _ => a.min(b),
            });
            let empty = if op == "ReduceProd" { 1.0 } else { 0.0 };
            Const::new(vec![], x.kind, vec![v.unwrap_or(empty)])
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![out]))
}

/// ONNX `Squeeze`: the listed axes (each of size 1), or every size-1 axis.
pub(crate) fn squeeze_dims(node: &str, dims: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    match axes {
        None => Ok(dims.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let ax: Vec<usize> = axes.iter().map(|&a| axis(node, a, dims.len(), false)).collect::<Result<_>>()?;
            if let Some(&a) = ax.iter().find(|&&a| dims[a] != 1) {
                return Err(ImportError::invalid(node, format!("cannot squeeze axis {a} of size {}", dims[a])));
            }
            Ok(dims.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect())
        }
    }
}

/// ONNX `Unsqueeze`: size-1 axes inserted at `axes` of the output.
pub(crate) fn unsqueeze_dims(node: &str, dims: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = dims.len() + axes.len();
    let mut ax: Vec<usize> = axes.iter().map(|&a| axis(node, a, r, false)).collect::<Result<_>>()?;
    ax.sort_unstable();
    ax.dedup();
    if ax.len() != axes.len() {
        return Err(ImportError::invalid(node, format!("repeated axes in {axes:?}")));
    }
    let mut out = dims.to_vec();
    for a in ax {
        out.insert(a, 1);
    }
    Ok(out)
}

/// ONNX `Reshape`'s target: `0` copies the input dim (unless `allowzero`),
/// one `-1` is inferred.
pub(crate) fn reshape_dims(node: &str, input: &[usize], shape: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*input.get(i).ok_or_else(|| {
                ImportError::invalid(node, format!("shape {shape:?} copies dim {i} of a rank-{} input", input.len()))
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(ImportError::invalid(node, format!("invalid target shape {shape:?}"))),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match (infer, known) {
        (Some(i), Some(k)) if k > 0 && total.is_multiple_of(k) => out[i] = total / k,
        (None, Some(k)) if k == total => {}
        _ => {
            return Err(ImportError::invalid(
                node,
                format!("cannot reshape {input:?} ({total} elements) into {shape:?}"),
            ))
        }
    }
    Ok(out)
}

/// One sliced axis: `len` elements from `start` by `step`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SliceAxis {
    pub(crate) axis: usize,
    pub(crate) start: i64,
    pub(crate) step: i64,
    pub(crate) len: usize,
}

/// ONNX `Slice` (opset 10+: starts, ends, axes, steps as inputs; opset 1–9:
/// attributes), with numpy's clamping.
pub(crate) fn slice_spec(
    node: &super::NodeRef<'_>,
    inputs: &[Option<&Const>],
    dims: &[usize],
) -> Result<Vec<SliceAxis>> {
    let name = node.label.as_str();
    let get = |i: usize, attr: &str| -> Result<Option<Vec<i64>>> {
        if node.opset >= 10 {
            match inputs.get(i).copied().flatten() {
                Some(c) => c.to_i64(name, attr).map(Some),
                None if i < node.inputs.len() && !node.inputs[i].is_empty() => {
                    Err(ImportError::invalid(name, format!("Slice `{attr}` must be a constant")))
                }
                None => Ok(None),
            }
        } else {
            Ok(node.attr_ints(attr)?.map(<[i64]>::to_vec))
        }
    };
    let starts = get(1, "starts")?.ok_or_else(|| ImportError::invalid(name, "Slice without starts"))?;
    let ends = get(2, "ends")?.ok_or_else(|| ImportError::invalid(name, "Slice without ends"))?;
    let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(ImportError::invalid(name, "Slice starts, ends, axes and steps differ in length"));
    }
    let mut out: Vec<SliceAxis> = Vec::new();
    for k in 0..starts.len() {
        let a = axis(name, axes[k], dims.len(), false)?;
        if out.iter().any(|s| s.axis == a) {
            return Err(ImportError::invalid(name, format!("axis {a} sliced twice")));
        }
        let n = dims[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(ImportError::invalid(name, "Slice step 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
        let (start, end) = if step > 0 {
            (norm(starts[k]).clamp(0, n), norm(ends[k]).clamp(0, n))
        } else {
            (norm(starts[k]).clamp(-1, n - 1), norm(ends[k]).clamp(-1, n - 1))
        };
        let len = if step > 0 {
            if end > start {
                (end - start + step - 1) / step
            } else {
                0
            }
        } else if start > end {
            (start - end + (-step) - 1) / (-step)
        } else {
            0
        };
        out.push(SliceAxis { axis: a, start, step, len: len as usize });
    }
    Ok(out)
}
