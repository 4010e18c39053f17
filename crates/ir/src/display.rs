//! The stable, diff-friendly text form users snapshot.
//!
//! One line per node in topological order (ties by id), inputs in the header,
//! output markers as the header's result list:
//!
//! ```text
//! graph decoder(%x: f32[3, 48, 5, 6]) -> (%out) {
//!   %up1 = lazy_conv_transpose2d(%x) out_channels=24 kernel=3x3 stride=2x2 padding=1x1 output_padding=1x1 : f32[?]
//! }
//! ```
//!
//! Hyper-parameters equal to PyTorch's defaults are omitted (as in PyTorch's
//! `repr`), except `kernel` and `stride` which are always shown. A
//! convolution's padding prints in PyTorch's form (`padding=`,
//! `output_padding=`) whenever that form expresses it, and as per-side
//! `pads=[top, left, bottom, right]` (ONNX's order) only otherwise.

use std::fmt::{self, Write};

use crate::graph::{Graph, NodeId};
use crate::op::{BatchNorm2dParams, Conv2dParams, ConvTranspose2dParams, Op, Pair2};
use crate::shape::Shape;
use crate::spatial::{PadMode, UpsampleSize};

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("graph")?;
        if let Some(name) = self.name() {
            write!(f, " {name}")?;
        }
        f.write_str("(")?;
        for (i, &id) in self.inputs().iter().enumerate() {
            let n = self.node(id);
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "%{}: {}", n.name(), n.shape())?;
        }
        f.write_str(") -> (")?;
        for (i, id) in self.output_values().into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "%{}", self.node(id).name())?;
        }
        f.write_str(") {\n")?;
        // A graph with a cycle still prints (in id order) so it can be debugged.
        let order = self.topo_order().unwrap_or_else(|_| self.node_ids().collect());
        for id in order {
            if !matches!(self.node(id).op(), Op::Input | Op::Output) {
                writeln!(f, "  {}", self.node_line(id))?;
            }
        }
        f.write_str("}\n")
    }
}

impl Graph {
    /// The text form of one node: `%name = op(%operands, %params) attrs : type`.
    pub fn node_line(&self, id: NodeId) -> String {
        let node = self.node(id);
        let mut s = format!("%{} = {}(", node.name(), node.op().mnemonic());
        let mut first = true;
        for o in self.operands(id) {
            if !first {
                s.push_str(", ");
            }
            first = false;
            let _ = write!(s, "%{}", self.node(o).name());
        }
        // Lazy nodes show parameters only once some are attached (e.g. loaded);
        // concrete nodes always show what they carry or declare.
        let show_declared = !node.op().is_lazy();
        for (pname, declared) in node.op().param_specs() {
            let shape = match node.param(pname) {
                Some(t) => Shape::known(t.shape()),
                None if show_declared => Shape::Ranked(declared),
                None => continue,
            };
            if !first {
                s.push_str(", ");
            }
            first = false;
            let _ = write!(s, "%{}.{}: {}", node.name(), pname, shape);
        }
        s.push(')');
        let mut attrs = attributes(node.op());
        if let Some(m) = node.module() {
            attrs.push(format!("module=%{m}"));
        }
        if !attrs.is_empty() {
            s.push(' ');
            s.push_str(&attrs.join(" "));
        }
        let _ = write!(s, " : {}", node.shape());
        s
    }
}

fn attributes(op: &Op) -> Vec<String> {
    let mut a = Vec::new();
    match op {
        Op::LazyConvTranspose2d { params } => conv_transpose_attrs(&mut a, params),
        Op::ConvTranspose2d { in_channels, params } => {
            a.push(format!("in_channels={in_channels}"));
            conv_transpose_attrs(&mut a, params);
        }
        Op::LazyConv2d { params } => conv_attrs(&mut a, params),
        Op::Conv2d { in_channels, params } => {
            a.push(format!("in_channels={in_channels}"));
            conv_attrs(&mut a, params);
        }
        Op::LazyBatchNorm2d { params } | Op::LazyBatchNorm1d { params } => batch_norm_attrs(&mut a, params),
        Op::BatchNorm1d { num_features, params } => {
            a.push(format!("num_features={num_features}"));
            batch_norm_attrs(&mut a, params);
        }
        Op::LazyLinear { params } | Op::Linear { params, .. } => {
            if let Op::Linear { in_features, .. } = op {
                a.push(format!("in_features={in_features}"));
            }
            a.push(format!("out_features={}", params.out_features));
            if !params.bias {
                a.push("bias=false".into());
            }
        }
        Op::LazyInstanceNorm2d { params } | Op::InstanceNorm2d { params, .. } => {
            if let Op::InstanceNorm2d { num_features, .. } = op {
                a.push(format!("num_features={num_features}"));
            }
            a.push(format!("eps={}", params.eps));
            if params.affine {
                a.push("affine".into());
            }
            if params.track_running_stats {
                a.push("track_running_stats".into());
            }
        }
        Op::GroupNorm { num_groups, num_channels, eps, affine } => {
            a.push(format!("num_groups={num_groups} num_channels={num_channels} eps={eps}"));
            if !affine {
                a.push("affine=false".into());
            }
        }
        Op::Flatten { start_dim, end_dim } => a.push(format!("start_dim={start_dim} end_dim={end_dim}")),
        Op::Unflatten { dim, sizes } => a.push(format!("dim={dim} sizes={sizes:?}")),
        Op::Reshape { shape } => a.push(format!("shape={shape:?}")),
        Op::BatchNorm2d { num_features, params } => {
            a.push(format!("num_features={num_features}"));
            batch_norm_attrs(&mut a, params);
        }
        Op::LeakyRelu { negative_slope } => a.push(format!("negative_slope={negative_slope}")),
        Op::Concat => a.push("dim=1".into()),
        Op::Cat { dim } => a.push(format!("dim={dim}")),
        Op::Narrow { dim, start, length } => a.push(format!("dim={dim} start={start} length={length}")),
        Op::Pointwise { f } => a.extend(f.attributes()),
        Op::PRelu { num_parameters, init } => {
            a.push(format!("num_parameters={num_parameters}"));
            if *init != 0.25 {
                a.push(format!("init={init}"));
            }
        }
        Op::Dropout { p } | Op::Dropout2d { p } => a.push(format!("p={p}")),
        Op::MaxPool2d { params } | Op::AvgPool2d { params, .. } => {
            a.push(format!("kernel={}", params.kernel_size));
            a.push(format!("stride={}", params.stride));
            push_if(&mut a, "padding", params.padding, 0);
            push_if(&mut a, "dilation", params.dilation, 1);
            if params.ceil_mode {
                a.push("ceil_mode".into());
            }
            if let Op::AvgPool2d { divisor, .. } = op {
                if !divisor.count_include_pad {
                    a.push("count_include_pad=false".into());
                }
                if let Some(d) = divisor.divisor_override {
                    a.push(format!("divisor_override={d}"));
                }
            }
        }
        Op::AdaptiveAvgPool2d { output_size } => {
            let d = |v: Option<usize>| v.map_or("none".to_string(), |n| n.to_string());
            a.push(format!("output_size={}x{}", d(output_size[0]), d(output_size[1])));
        }
        Op::Pad2d { padding, mode } => {
            a.push(format!("padding={padding}"));
            match mode {
                PadMode::Zero => {}
                PadMode::Constant { value } => a.push(format!("value={value}")),
                PadMode::Reflect => a.push("mode=reflect".into()),
                PadMode::Replicate => a.push("mode=replicate".into()),
            }
        }
        Op::Upsample { params } => {
            match params.size {
                UpsampleSize::Size { size } => a.push(format!("size={size}")),
                UpsampleSize::Scale { h, w } => a.push(format!("scale_factor={h}x{w}")),
            }
            a.push(format!("mode={}", params.mode.as_str()));
            if params.align_corners {
                a.push("align_corners".into());
            }
        }
        Op::PixelShuffle { factor, .. } => a.push(format!("factor={factor}")),
        Op::Scalar { other, .. } => a.push(format!("other={other}")),
        Op::Input | Op::Output | Op::Relu | Op::Tanh | Op::Sigmoid | Op::Add | Op::Sub | Op::Mul | Op::Identity => {}
    }
    a
}

fn push_if(a: &mut Vec<String>, key: &str, v: Pair2, default: usize) {
    if v != Pair2::square(default) {
        a.push(format!("{key}={v}"));
    }
}

fn conv_transpose_attrs(a: &mut Vec<String>, p: &ConvTranspose2dParams) {
    a.push(format!("out_channels={}", p.out_channels));
    a.push(format!("kernel={}", p.kernel_size));
    a.push(format!("stride={}", p.stride));
    // PyTorch's form wherever it exists (so graphs without per-side pads
    // print as they always did), else ONNX-ordered per-side pads.
    match p.pytorch_padding() {
        Some((padding, output_padding)) => {
            push_if(a, "padding", padding, 0);
            push_if(a, "output_padding", output_padding, 0);
        }
        None => {
            a.push(p.padding.attr());
            push_if(a, "output_padding", p.output_padding, 0);
        }
    }
    push_if(a, "dilation", p.dilation, 1);
    if p.groups != 1 {
        a.push(format!("groups={}", p.groups));
    }
    if !p.bias {
        a.push("bias=false".into());
    }
    if let Some(size) = &p.output_size {
        a.push(format!("output_size={size:?}"));
    }
}

fn conv_attrs(a: &mut Vec<String>, p: &Conv2dParams) {
    a.push(format!("out_channels={}", p.out_channels));
    a.push(format!("kernel={}", p.kernel_size));
    a.push(format!("stride={}", p.stride));
    match p.padding.as_symmetric() {
        Some(padding) => push_if(a, "padding", padding, 0),
        None => a.push(p.padding.attr()),
    }
    push_if(a, "dilation", p.dilation, 1);
    if p.groups != 1 {
        a.push(format!("groups={}", p.groups));
    }
    if !p.bias {
        a.push("bias=false".into());
    }
}

fn batch_norm_attrs(a: &mut Vec<String>, p: &BatchNorm2dParams) {
    a.push(format!("eps={:e}", p.eps));
    if !p.affine {
        a.push("affine=false".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_and_concrete_lines() {
        let mut g = Graph::with_name("decoder");
        let x = g.add_input("x", vec![3, 48, 5, 6]).unwrap();
        let p = ConvTranspose2dParams::new(24, 3).stride(2).padding(1).output_padding(1);
        let up = g.add_node("up1", Op::lazy_conv_transpose2d(p.clone()), &[x]).unwrap();
        g.add_output(up).unwrap();
        assert_eq!(
            g.to_string(),
            "graph decoder(%x: f32[3, 48, 5, 6]) -> (%up1) {\n  %up1 = lazy_conv_transpose2d(%x) out_channels=24 kernel=3x3 stride=2x2 padding=1x1 output_padding=1x1 : f32[?]\n}\n"
        );
        g.set_op(up, Op::ConvTranspose2d { in_channels: 48, params: p }).unwrap();
        g.set_shape(up, Shape::known(&[3, 24, 10, 12]));
        assert_eq!(
            g.node_line(up),
            "%up1 = conv_transpose2d(%x, %up1.weight: f32[48, 24, 3, 3], %up1.bias: f32[24]) in_channels=48 out_channels=24 kernel=3x3 stride=2x2 padding=1x1 output_padding=1x1 : f32[3, 24, 10, 12]"
        );
    }

    #[test]
    fn non_default_attributes_are_shown() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 4, 2, 2]).unwrap();
        let p = ConvTranspose2dParams::new(4, (3, 2)).dilation((1, 2)).groups(2).bias(false).output_size([4, 5]);
        let up = g.add_node("up", Op::lazy_conv_transpose2d(p), &[x]).unwrap();
        let act = g.add_node("act", Op::LeakyRelu { negative_slope: 0.2 }, &[up]).unwrap();
        g.add_output(act).unwrap();
        let text = g.to_string();
        assert!(text.contains("kernel=3x2 stride=1x1 dilation=1x2 groups=2 bias=false output_size=[4, 5]"), "{text}");
        assert!(text.contains("%act = leaky_relu(%up) negative_slope=0.2 : f32[?]"), "{text}");
        assert!(text.starts_with("graph(%x: f32[1, 4, 2, 2]) -> (%act) {"), "{text}");
    }

    #[test]
    fn per_side_pads_print_pytorch_form_where_it_exists() {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 4, 5, 5]).unwrap();
        let same = ConvTranspose2dParams::new(4, 3).stride(2).pads([1, 1], [0, 0]);
        let upper = ConvTranspose2dParams::new(4, 3).stride(2).pads([0, 1], [1, 2]).output_padding(3);
        let a = g.add_node("a", Op::lazy_conv_transpose2d(same), &[x]).unwrap();
        let b = g.add_node("b", Op::lazy_conv_transpose2d(upper), &[a]).unwrap();
        let c = g.add_node("c", Op::lazy_conv2d(Conv2dParams::new(4, 2).pads([0, 0], [1, 1])), &[b]).unwrap();
        let d = g.add_node("d", Op::lazy_conv2d(Conv2dParams::new(4, 3).pads([1, 2], [1, 2])), &[c]).unwrap();
        g.add_output(d).unwrap();
        let text = g.to_string();
        assert!(text.contains("kernel=3x3 stride=2x2 padding=1x1 output_padding=1x1 : f32[?]"), "{text}");
        assert!(text.contains("kernel=3x3 stride=2x2 pads=[0, 1, 1, 2] output_padding=3x3 : f32[?]"), "{text}");
        assert!(text.contains("kernel=2x2 stride=1x1 pads=[0, 0, 1, 1] : f32[?]"), "{text}");
        assert!(text.contains("kernel=3x3 stride=1x1 padding=1x2 : f32[?]"), "{text}");
        // Equal sides, but an output_padding only the per-side form allows.
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 4, 5, 5]).unwrap();
        let p = ConvTranspose2dParams::new(4, 3).stride(2).pads([1, 1], [1, 1]).output_padding(2);
        let up = g.add_node("up", Op::lazy_conv_transpose2d(p), &[x]).unwrap();
        g.add_output(up).unwrap();
        assert!(g.to_string().contains("stride=2x2 pads=[1, 1, 1, 1] output_padding=2x2 :"), "{g}");
    }
}
