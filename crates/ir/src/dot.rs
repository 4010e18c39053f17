//! Graphviz export via `petgraph::dot::Dot`: one box per node labelled with
//! its op, key hyper-parameters and result type; lazy nodes are dashed and
//! grey so a picture of an unresolved graph shows what is still open.

use petgraph::dot::{Config, Dot};

use crate::graph::Graph;
use crate::op::Op;

impl Graph {
    /// The graph in Graphviz `dot` syntax.
    pub fn to_dot(&self) -> String {
        let edge_attrs = |_, e: petgraph::stable_graph::EdgeReference<'_, usize>| format!("label=\"{}\"", e.weight());
        let node_attrs = |_, (id, node): (crate::NodeId, &crate::Node)| {
            let style = match node.op() {
                op if op.is_lazy() => "shape=box, style=dashed, color=gray40, fontcolor=gray25",
                Op::Input | Op::Output => "shape=oval",
                _ => "shape=box",
            };
            let label = match node.op() {
                Op::Output => "output".to_string(),
                Op::Input => format!("{}\\n{}", node.name(), node.shape()),
                _ => {
                    // The text-form line minus the operand list, split for readability.
                    let line = self.node_line(id);
                    let attrs = line.rsplit_once(") ").map_or("", |(_, a)| a);
                    let attrs = attrs.strip_prefix(": ").unwrap_or(attrs).replace(" : ", "\\n");
                    format!("{} = {}\\n{}", node.name(), node.op().mnemonic(), attrs)
                }
            };
            format!("label=\"{}\", {style}", label.replace('"', "\\\""))
        };
        let dot =
            Dot::with_attr_getters(&self.g, &[Config::EdgeNoLabel, Config::NodeNoLabel], &edge_attrs, &node_attrs);
        format!("{dot:?}")
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConvTranspose2dParams, GraphBuilder};

    #[test]
    fn dot_labels_ops_and_marks_lazy_nodes() {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", [1, 2, 3, 3]).unwrap();
        let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(4, 3).stride(2)).unwrap();
        b.relu("act", up).unwrap();
        let dot = b.finish().unwrap().to_dot();
        assert!(dot.starts_with("digraph {"), "{dot}");
        assert!(dot.contains("up = lazy_conv_transpose2d\\nout_channels=4 kernel=3x3 stride=2x2\\nf32[?]"), "{dot}");
        assert!(dot.contains("style=dashed"), "{dot}");
        assert!(dot.contains("act = relu\\nf32[?]"), "{dot}");
    }
}
