//! Random small graphs, valid and invalid, compiled on every JIT tier at 1
//! and 2 threads and compared with the interpreter.
//!
//! The generator tracks each value's `(C, H, W)` so most graphs are valid,
//! and picks hyper-parameters from the corners: large dilation, padding
//! larger than the kernel, kernels smaller than the stride, groups, 1x1
//! inputs, `output_size`, per-side `pads`, every padding mode, concrete (non-lazy) ops with a
//! right or wrong `in_channels`, several outputs (a graph input or the same
//! value twice among them). About one graph in four gets a deliberately
//! invalid value (a wrong channel count, a mismatched `Add`, a zero, an
//! output padding too large, ...); invalid graphs must be refused with an
//! error, never a panic.
//!
//! The input of [`run`] is the generated model JSON, so every reproducer is
//! a plain model file that `kiln run` also reads.

use serde_json::{json, Map, Value};

use crate::exec::{resolve_and_compare, Plan};
use crate::mutate::below;
use crate::{Outcome, SplitMix64};

/// The graph name the generator gives a graph it built to PyTorch's rules
/// without a deliberately invalid value: Kiln must accept such a graph.
pub const VALID_NAME: &str = "fuzz_valid";

/// Parses the model JSON and checks it on every tier at 1 and 2 threads.
/// A graph named [`VALID_NAME`] that Kiln refuses is a mismatch (a PyTorch
/// configuration Kiln wrongly rejects, or a generator bug to look at).
pub fn run(input: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(input) else { return Outcome::Rejected("not UTF-8".into()) };
    let g = match kiln_ir::parse_model(text) {
        Ok(g) => g,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let valid = g.name() == Some(VALID_NAME);
    if valid {
        crate::note("graphs: valid by construction");
    }
    match resolve_and_compare(g, &Plan::all_tiers(crate::exec::hash(input) & 0xffff)) {
        Outcome::Rejected(e) if valid && !e.starts_with("too large") => {
            Outcome::Mismatch(format!("a graph valid by PyTorch's rules is refused: {e}"))
        }
        Outcome::Rejected(e) => {
            let why: String = crate::exec::squash(&e).chars().take(60).collect();
            crate::note(format!("graphs: rejected: {why}"));
            Outcome::Rejected(e)
        }
        o => o,
    }
}

fn chance(rng: &mut SplitMix64, one_in: u64) -> bool {
    rng.next_u64().is_multiple_of(one_in)
}

fn range(rng: &mut SplitMix64, lo: usize, hi: usize) -> usize {
    lo + below(rng, hi - lo + 1)
}

/// A value's shape as the generator believes it (`None` after an invalid node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Val {
    c: usize,
    h: usize,
    w: usize,
}

/// A hyper-parameter as JSON: an int, or sometimes the `[h, w]` pair.
fn pair(rng: &mut SplitMix64, h: usize, w: usize) -> Value {
    if h == w && chance(rng, 2) {
        json!(h)
    } else {
        json!([h, w])
    }
}

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

struct Gen<'a> {
    rng: &'a mut SplitMix64,
    n: usize,
    vals: Vec<(String, Option<Val>)>,
    nodes: Vec<Value>,
    invalid: bool,
    /// Set when the generator stops modelling a value (an untracked size rule).
    untracked: bool,
}

impl Gen<'_> {
    fn last(&self) -> (String, Option<Val>) {
        self.vals.last().cloned().unwrap_or_else(|| ("x".into(), None))
    }

    /// Occasionally replaces a valid value by an invalid one (once per graph).
    fn maybe_break(&mut self, v: usize, bad: Value) -> Value {
        if !self.invalid && chance(self.rng, 24) {
            self.invalid = true;
            bad
        } else {
            json!(v)
        }
    }

    fn push(&mut self, op: &str, args: Map<String, Value>, inputs: Option<Vec<String>>, out: Option<Val>) {
        let name = format!("n{}", self.nodes.len());
        let mut node = json!({"name": name, "op": op, "args": Value::Object(args)});
        node["inputs"] = match inputs {
            Some(list) => json!(list),
            None => Value::Null,
        };
        self.nodes.push(node);
        self.vals.push((name, out));
    }

    fn operand(&mut self) -> (String, Option<Val>) {
        if self.vals.len() > 1 && chance(self.rng, 4) {
            let i = below(self.rng, self.vals.len());
            self.vals[i].clone()
        } else {
            self.last()
        }
    }

    fn conv_transpose(&mut self) {
        let (src, v) = self.operand();
        let Some(v) = v else { return self.activation() };
        let gs = divisors(v.c);
        let g = gs[below(self.rng, gs.len())];
        let out_c = g * range(self.rng, 1, 3);
        let big = |rng: &mut SplitMix64, lo, hi, far| if chance(rng, 6) { far } else { range(rng, lo, hi) };
        let (kh, kw) = (big(self.rng, 1, 4, 7), big(self.rng, 1, 4, 1));
        let (sh, sw) = (big(self.rng, 1, 3, 5), big(self.rng, 1, 3, 4));
        let (dh, dw) = (big(self.rng, 1, 2, 9), big(self.rng, 1, 2, 6));
        // Mostly paddings that keep the output positive; one in four may be
        // larger than the kernel (valid or not, depending on the rest).
        let pad = |rng: &mut SplitMix64, k: usize, d: usize, s: usize, i: usize| {
            if chance(rng, 4) {
                range(rng, 0, 2 + k)
            } else {
                below(rng, ((i - 1) * s + d * (k - 1)) / 2 + 1)
            }
        };
        let (ph, pw) = (pad(self.rng, kh, dh, sh, v.h), pad(self.rng, kw, dw, sw, v.w));
        // One in five: ONNX-style per-side pads (the end side drawn apart),
        // with an output_padding that may pass the stride.
        let per_side = chance(self.rng, 5);
        let (eh, ew) =
            if per_side { (pad(self.rng, kh, dh, sh, v.h), pad(self.rng, kw, dw, sw, v.w)) } else { (ph, pw) };
        let op_limit = |s: usize, d: usize| if per_side { 5 } else { s.max(d) };
        let mut oph = below(self.rng, op_limit(sh, dh));
        let mut opw = below(self.rng, op_limit(sw, dw));
        if chance(self.rng, 2) {
            oph = 0;
            opw = 0;
        }
        let raw_sides = |i: usize, s: usize, b: usize, e: usize, d: usize, k: usize, op: usize| {
            (i as i64 - 1) * s as i64 - b as i64 - e as i64 + (d * (k - 1)) as i64 + op as i64 + 1
        };
        let raw = |i: usize, s: usize, p: usize, d: usize, k: usize, op: usize| raw_sides(i, s, p, p, d, k, op);
        let (ho, wo) = (
            raw_sides(v.h, sh, ph, eh, dh, kh, oph).max(0) as usize,
            raw_sides(v.w, sw, pw, ew, dw, kw, opw).max(0) as usize,
        );
        let mut args = Map::new();
        let lazy = !chance(self.rng, 4);
        if !lazy {
            let ic = self.maybe_break(v.c, json!(v.c + 1));
            args.insert("in_channels".into(), ic);
        }
        args.insert("out_channels".into(), json!(out_c));
        args.insert("kernel_size".into(), pair(self.rng, kh, kw));
        if sh != 1 || sw != 1 || chance(self.rng, 3) {
            args.insert("stride".into(), pair(self.rng, sh, sw));
        }
        if per_side {
            args.insert("pads".into(), json!([ph, pw, eh, ew]));
        } else if ph != 0 || pw != 0 || chance(self.rng, 3) {
            args.insert("padding".into(), pair(self.rng, ph, pw));
        }
        if dh != 1 || dw != 1 {
            args.insert("dilation".into(), pair(self.rng, dh, dw));
        }
        if g != 1 || chance(self.rng, 4) {
            let gv = self.maybe_break(g, json!(v.c + 1));
            args.insert("groups".into(), gv);
        }
        if chance(self.rng, 3) {
            args.insert("bias".into(), json!(chance(self.rng, 2)));
        }
        let mut out = (ho > 0 && wo > 0).then_some(Val { c: out_c, h: ho, w: wo });
        let (base_h, base_w) = (raw(v.h, sh, ph, dh, kh, 0), raw(v.w, sw, pw, dw, kw, 0));
        if !per_side && chance(self.rng, 5) && base_h > 0 && base_w > 0 {
            // forward(x, output_size=...): PyTorch accepts [min, min + stride)
            // (stride only; output_padding itself may go up to max(stride, dilation) - 1).
            let (eh, ew) = (below(self.rng, sh), below(self.rng, sw));
            let (th, tw) = (base_h as usize + eh, base_w as usize + ew);
            let bad = self.maybe_break(th, json!(th + sh));
            args.insert("output_size".into(), json!([bad, tw]));
            out = Some(Val { c: out_c, h: th, w: tw });
        } else if per_side && (oph != 0 || opw != 0) {
            args.insert("output_padding".into(), json!([oph, opw]));
        } else if oph != 0 || opw != 0 || chance(self.rng, 6) {
            let bad = self.maybe_break(oph, json!(sh.max(dh)));
            args.insert("output_padding".into(), json!([bad, opw]));
        }
        let op = if lazy { "LazyConvTranspose2d" } else { "ConvTranspose2d" };
        let big_out = out.is_some_and(|o| o.c * o.h * o.w * self.n > 1 << 14);
        if out.is_none() {
            self.invalid = true;
        }
        self.untracked |= big_out;
        self.push(op, args, Some(vec![src]), if big_out { None } else { out });
    }

    fn conv(&mut self) {
        let (src, v) = self.operand();
        let Some(v) = v else { return self.activation() };
        let gs = divisors(v.c);
        let g = gs[below(self.rng, gs.len())];
        let out_c = g * range(self.rng, 1, 3);
        let big = |rng: &mut SplitMix64, lo, hi, far| if chance(rng, 6) { far } else { range(rng, lo, hi) };
        let (kh, kw) = (big(self.rng, 1, 3, 5), big(self.rng, 1, 3, 1));
        let (sh, sw) = (big(self.rng, 1, 2, 4), big(self.rng, 1, 2, 3));
        let (dh, dw) = (big(self.rng, 1, 2, 5), big(self.rng, 1, 2, 3));
        let pad = |rng: &mut SplitMix64, k: usize, d: usize, i: usize| {
            if chance(rng, 4) {
                range(rng, 0, 1 + k)
            } else {
                // Enough that the dilated kernel fits: i + 2p >= d(k-1) + 1.
                let need = (d * (k - 1) + 1).saturating_sub(i).div_ceil(2);
                range(rng, need, need + 1)
            }
        };
        let (ph, pw) = (pad(self.rng, kh, dh, v.h), pad(self.rng, kw, dw, v.w));
        // One in five: ONNX-style per-side pads, the end side drawn apart.
        let per_side = chance(self.rng, 5);
        let (eh, ew) = if per_side { (pad(self.rng, kh, dh, v.h), pad(self.rng, kw, dw, v.w)) } else { (ph, pw) };
        let mode = *["zeros", "zeros", "reflect", "replicate", "circular"].get(below(self.rng, 5)).unwrap_or(&"zeros");
        let size = |i: usize, s: usize, b: usize, e: usize, d: usize, k: usize| {
            let span = i as i64 + b as i64 + e as i64 - (d * (k - 1)) as i64 - 1;
            if span < 0 {
                0
            } else {
                (span / s as i64 + 1) as usize
            }
        };
        let (ho, wo) = (size(v.h, sh, ph, eh, dh, kh), size(v.w, sw, pw, ew, dw, kw));
        let mut args = Map::new();
        let lazy = !chance(self.rng, 4);
        if !lazy {
            let ic = self.maybe_break(v.c, json!(v.c * 2 + 1));
            args.insert("in_channels".into(), ic);
        }
        args.insert("out_channels".into(), json!(out_c));
        args.insert("kernel_size".into(), pair(self.rng, kh, kw));
        if sh != 1 || sw != 1 {
            args.insert("stride".into(), pair(self.rng, sh, sw));
        }
        if per_side {
            args.insert("pads".into(), json!([ph, pw, eh, ew]));
        } else if chance(self.rng, 8) && sh == 1 && sw == 1 {
            args.insert("padding".into(), json!(if chance(self.rng, 2) { "same" } else { "valid" }));
        } else if ph != 0 || pw != 0 {
            args.insert("padding".into(), pair(self.rng, ph, pw));
        }
        if dh != 1 || dw != 1 {
            args.insert("dilation".into(), pair(self.rng, dh, dw));
        }
        if g != 1 || chance(self.rng, 4) {
            let gv = self.maybe_break(g, json!(0));
            args.insert("groups".into(), gv);
        }
        if mode != "zeros" || chance(self.rng, 6) {
            args.insert("padding_mode".into(), json!(mode));
        }
        if chance(self.rng, 3) {
            args.insert("bias".into(), json!(chance(self.rng, 2)));
        }
        // 'same'/'valid' and non-zero padding modes change the size; the generator
        // stops tracking rather than modelling every rule.
        let simple = mode == "zeros" && !args.get("padding").is_some_and(Value::is_string);
        let out = (simple && ho > 0 && wo > 0).then_some(Val { c: out_c, h: ho, w: wo });
        if mode != "zeros" || (simple && out.is_none()) {
            // Kiln's Conv2d supports padding_mode='zeros' only.
            self.invalid = true;
        }
        self.untracked |= !simple;
        let op = if lazy { "LazyConv2d" } else { "Conv2d" };
        self.push(op, args, Some(vec![src]), out);
    }

    fn batch_norm(&mut self) {
        let (src, v) = self.operand();
        let mut args = Map::new();
        if chance(self.rng, 3) {
            let eps = *[1e-5, 1e-3, 0.5, 1e-30, 0.0].get(below(self.rng, 5)).unwrap_or(&1e-5);
            args.insert("eps".into(), json!(eps));
        }
        if chance(self.rng, 3) {
            args.insert("affine".into(), json!(chance(self.rng, 2)));
        }
        if chance(self.rng, 5) {
            args.insert("momentum".into(), json!(0.3));
        }
        let op = match v {
            Some(v) if chance(self.rng, 4) => {
                let nf = self.maybe_break(v.c, json!(v.c + 2));
                args.insert("num_features".into(), nf);
                "BatchNorm2d"
            }
            _ => "LazyBatchNorm2d",
        };
        self.push(op, args, Some(vec![src]), v);
    }

    fn activation(&mut self) {
        let (src, v) = self.operand();
        let mut args = Map::new();
        let mut v = v;
        let op = match below(self.rng, 12) {
            0 => "ReLU",
            1 => {
                if chance(self.rng, 2) {
                    let s = *[0.2, -1.0, 0.0, 1.0, 3.5, 1e-3].get(below(self.rng, 6)).unwrap_or(&0.2);
                    args.insert("negative_slope".into(), json!(s));
                }
                "LeakyReLU"
            }
            2 => "Tanh",
            3 => "Sigmoid",
            4 => {
                // One weight, or one per channel (the wrong count sometimes).
                if let Some(val) = v {
                    if chance(self.rng, 2) {
                        let n = self.maybe_break(val.c, json!(val.c + 1));
                        args.insert("num_parameters".into(), n);
                    }
                }
                "PReLU"
            }
            5 => {
                let p = *[0.0, 0.5, 1.0, 1.5, -0.1].get(below(self.rng, 5)).unwrap_or(&0.5);
                if !(0.0..=1.0).contains(&p) {
                    v = None;
                    self.invalid = true;
                }
                args.insert("p".into(), json!(p));
                if chance(self.rng, 2) {
                    "Dropout"
                } else {
                    "Dropout2d"
                }
            }
            6 => "Identity",
            7 => {
                if chance(self.rng, 2) {
                    args.insert("alpha".into(), json!(0.3));
                }
                *["ELU", "SELU", "SiLU", "Mish"].get(below(self.rng, 4)).unwrap_or(&"ELU")
            }
            8 => {
                if chance(self.rng, 2) {
                    args.insert("approximate".into(), json!("tanh"));
                }
                "GELU"
            }
            9 => {
                if chance(self.rng, 2) {
                    args.insert("min_val".into(), json!(-0.5));
                    args.insert("max_val".into(), json!(2.0));
                }
                "Hardtanh"
            }
            10 => {
                if chance(self.rng, 2) {
                    args.insert("beta".into(), json!(2.0));
                    args.insert("threshold".into(), json!(3.0));
                }
                "Softplus"
            }
            _ => *["ReLU6", "Hardsigmoid", "Hardswish"].get(below(self.rng, 3)).unwrap_or(&"ReLU6"),
        };
        // `alpha` only belongs to ELU; the other three refuse it.
        if matches!(op, "SELU" | "SiLU" | "Mish") && args.contains_key("alpha") {
            v = None;
            self.invalid = true;
        }
        self.push(op, args, Some(vec![src]), v);
    }

    /// Pooling, padding, upsampling and pixel shuffle, sized so they are
    /// usually valid (an invalid one marks the graph so).
    fn spatial(&mut self) {
        let (src, v) = self.operand();
        let Some(v) = v else { return self.activation() };
        let mut args = Map::new();
        let (op, out) = match below(self.rng, 6) {
            0 | 1 => {
                let k = range(self.rng, 1, 4);
                let s = range(self.rng, 1, 3);
                let p = below(self.rng, k / 2 + 1);
                args.insert("kernel_size".into(), json!(k));
                args.insert("stride".into(), json!(s));
                args.insert("padding".into(), json!(p));
                let ceil = chance(self.rng, 3);
                args.insert("ceil_mode".into(), json!(ceil));
                let axis = |i: usize| kiln_ir::pool_axis(i, k, s, p, 1, ceil);
                let (oh, ow) = (axis(v.h), axis(v.w));
                let out = (oh >= 1 && ow >= 1).then_some(Val { c: v.c, h: oh as usize, w: ow as usize });
                if out.is_none() {
                    self.invalid = true;
                }
                (if below(self.rng, 2) == 0 { "MaxPool2d" } else { "AvgPool2d" }, out)
            }
            2 => {
                let p = below(self.rng, 3);
                let mode = *["ZeroPad2d", "ReflectionPad2d", "ReplicationPad2d", "ConstantPad2d"]
                    .get(below(self.rng, 4))
                    .unwrap_or(&"ZeroPad2d");
                args.insert("padding".into(), json!(p));
                if mode == "ConstantPad2d" {
                    args.insert("value".into(), json!(0.5));
                }
                let ok = mode != "ReflectionPad2d" || (p < v.h && p < v.w);
                if !ok {
                    self.invalid = true;
                }
                (mode, ok.then_some(Val { c: v.c, h: v.h + 2 * p, w: v.w + 2 * p }))
            }
            3 => {
                let f = range(self.rng, 1, 3);
                args.insert("scale_factor".into(), json!(f));
                if chance(self.rng, 2) {
                    args.insert("mode".into(), json!("bilinear"));
                }
                ("Upsample", Some(Val { c: v.c, h: v.h * f, w: v.w * f }))
            }
            4 => {
                let r = range(self.rng, 1, 3);
                args.insert("upscale_factor".into(), json!(r));
                let ok = v.c.is_multiple_of(r * r);
                if !ok {
                    self.invalid = true;
                }
                ("PixelShuffle", ok.then_some(Val { c: v.c / (r * r), h: v.h * r, w: v.w * r }))
            }
            _ => {
                let o = range(self.rng, 1, 4);
                args.insert("output_size".into(), json!(o));
                ("AdaptiveAvgPool2d", Some(Val { c: v.c, h: o, w: o }))
            }
        };
        self.push(op, args, Some(vec![src]), out);
    }

    fn add(&mut self) {
        let (a, va) = self.last();
        let same: Vec<usize> =
            (0..self.vals.len()).filter(|&i| self.vals[i].1.is_some() && self.vals[i].1 == va).collect();
        let b = if !same.is_empty() && !chance(self.rng, 12) {
            self.vals[same[below(self.rng, same.len())]].0.clone()
        } else {
            self.invalid = true;
            self.vals[below(self.rng, self.vals.len())].0.clone()
        };
        self.push("Add", Map::new(), Some(vec![a, b]), va);
    }

    fn concat(&mut self) {
        let (a, va) = self.last();
        let Some(va) = va else { return self.activation() };
        let mut ins = vec![a];
        let mut c = va.c;
        let k = range(self.rng, 1, 3);
        for _ in 0..k {
            let fits: Vec<usize> =
                (0..self.vals.len()).filter(|&i| self.vals[i].1.is_some_and(|v| v.h == va.h && v.w == va.w)).collect();
            if fits.is_empty() || chance(self.rng, 16) {
                self.invalid = true;
                ins.push(self.vals[below(self.rng, self.vals.len())].0.clone());
                c = 0;
            } else {
                let i = fits[below(self.rng, fits.len())];
                c += self.vals[i].1.map_or(0, |v| v.c);
                ins.push(self.vals[i].0.clone());
            }
        }
        let mut args = Map::new();
        if chance(self.rng, 8) {
            args.insert("dim".into(), json!(1));
        }
        self.push("Concat", args, Some(ins), (c > 0).then_some(Val { c, ..va }));
    }
}

/// Generates one model as JSON bytes.
pub fn generate(rng: &mut SplitMix64) -> Vec<u8> {
    let n = if chance(rng, 3) { 2 } else { 1 };
    let one = chance(rng, 4);
    let c = range(rng, 1, 8);
    let (h, w) = if one { (1, 1) } else { (range(rng, 1, 7), range(rng, 1, 7)) };
    let mut inputs = Map::new();
    inputs.insert("x".into(), json!([n, c, h, w]));
    let mut vals = vec![("x".to_string(), Some(Val { c, h, w }))];
    if chance(rng, 4) {
        let c2 = range(rng, 1, 4);
        inputs.insert("y".into(), json!([n, c2, h, w]));
        vals.push(("y".into(), Some(Val { c: c2, h, w })));
    }
    let mut gen = Gen { rng, n, vals, nodes: Vec::new(), invalid: false, untracked: false };
    let count = range(gen.rng, 1, 5);
    for _ in 0..count {
        match below(gen.rng, 12) {
            0..=2 => gen.conv_transpose(),
            3 | 4 => gen.conv(),
            5 => gen.batch_norm(),
            6 | 7 => gen.activation(),
            8 => gen.add(),
            9 => gen.spatial(),
            _ => gen.concat(),
        }
    }
    let believed_valid = !gen.invalid && !gen.untracked;
    let name = if believed_valid { VALID_NAME } else { "fuzz" };
    let mut model = json!({"name": name, "inputs": Value::Object(inputs), "nodes": gen.nodes});
    if chance(gen.rng, 4) {
        let mut outs = vec![gen.last().0];
        let extra = gen.vals[below(gen.rng, gen.vals.len())].0.clone();
        outs.push(extra);
        if chance(gen.rng, 3) {
            outs.push(outs[0].clone());
        }
        model["outputs"] = json!(outs);
    }
    let mut bytes = serde_json::to_vec(&model).unwrap_or_default();
    // A few generated graphs get a structural mutation on top (and lose the
    // "valid" name: the mutation may have broken them).
    if chance(gen.rng, 8) {
        if believed_valid {
            model["name"] = json!("fuzz");
            bytes = serde_json::to_vec(&model).unwrap_or_default();
        }
        bytes = crate::mutate::mutate(gen.rng, bytes, &[]);
    }
    bytes
}
