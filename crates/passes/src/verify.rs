//! `verify`: the contract a resolved graph meets before it is run or compiled.

use kiln_ir::Graph;

use crate::error::{PassError, Result};
use crate::pass::{Changed, Pass};

/// Checks that `graph` is valid, has no lazy node, every value has a fully
/// known shape, and every parameter is attached with the shape its op needs.
pub fn verify(graph: &Graph) -> Result<()> {
    graph.validate()?;
    for id in graph.node_ids() {
        let node = graph.node(id);
        let unresolved = |reason: String| PassError::Unresolved { node: node.name().into(), reason };
        if node.op().is_lazy() {
            return Err(unresolved(format!("is still a lazy {}", node.op().class_name())));
        }
        if !node.shape().is_fully_known() {
            return Err(unresolved(format!("has result type {} with unknown dims", node.shape())));
        }
        for (pname, dims) in node.op().param_specs() {
            let key = format!("{}.{}", node.name(), pname);
            let expected: Vec<usize> = dims
                .iter()
                .map(|d| d.known())
                .collect::<Option<_>>()
                .ok_or_else(|| unresolved(format!("parameter `{pname}` has an unknown shape")))?;
            match node.param(pname) {
                None => return Err(unresolved(format!("has no `{key}` attached"))),
                Some(t) if t.shape() != expected.as_slice() => {
                    return Err(PassError::ParamShape { key, expected, got: t.shape().to_vec() })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// [`verify`] as a pass, to end a pipeline.
#[derive(Clone, Copy, Debug, Default)]
pub struct Verify;

impl Pass for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }
    fn run(&mut self, graph: &mut Graph) -> Result<Changed> {
        verify(graph).map(|_| Changed::No)
    }
}
