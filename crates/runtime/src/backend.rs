//! The backend abstraction shared by the interpreter and the JIT, so one
//! golden harness can run every case through every backend: a [`Backend`]
//! prepares a resolved [`Graph`] once into an [`Executable`], which then runs
//! on inputs any number of times, from any thread.
//!
//! Also [`check_inputs`], the input validation every backend should use so
//! that wrong inputs get the same message whichever backend runs. This module
//! does not compile anything; [`InterpreterBackend`] is its only implementation
//! here (the JIT's lives in `kiln-jit`).

use std::borrow::Borrow;

use kiln_ir::Graph;

use crate::error::{fmt_shape, Result, RuntimeError};
use crate::interpreter::{execute, Interpreter};
use crate::tensor::Tensor;

/// A prepared graph: runs on inputs in [`Graph::inputs`] order and returns
/// outputs in [`Graph::outputs`] order.
pub trait Executable: Send + Sync {
    /// Runs once. Implementations check the inputs (see [`check_inputs`]).
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError>;
}

/// Something that turns a resolved graph into an [`Executable`].
pub trait Backend {
    /// A short name for reports (`interpreter`, `jit`).
    fn name(&self) -> &'static str;
    /// Validates and prepares `graph` (compiles it, for a JIT). Fails for
    /// graphs the backend cannot run, with the backend's own error type.
    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Box<dyn std::error::Error + Send + Sync>>;
}

/// The reference interpreter as a [`Backend`]: `prepare` validates the graph
/// ([`Interpreter::validate`]) and keeps a copy of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpreterBackend;

impl Backend for InterpreterBackend {
    fn name(&self) -> &'static str {
        "interpreter"
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Box<dyn std::error::Error + Send + Sync>> {
        Interpreter::validate(graph)?;
        Ok(Box::new(PreparedGraph { graph: graph.clone() }))
    }
}

/// A validated graph the interpreter runs.
struct PreparedGraph {
    graph: Graph,
}

impl Executable for PreparedGraph {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        // Validated once in prepare(); the graph is immutable since.
        check_inputs(&self.graph, inputs)?;
        execute(&self.graph, inputs)
    }
}

/// Checks that `inputs` match the graph's inputs: their count, then each
/// shape against the declared one. Errors name the input and give expected
/// and actual shapes. Accepts `&[Tensor]` and `&[&Tensor]`.
pub fn check_inputs<T: Borrow<Tensor>>(graph: &Graph, inputs: &[T]) -> Result<()> {
    let ids = graph.inputs();
    if inputs.len() != ids.len() {
        let names: Vec<&str> = ids.iter().map(|&id| graph.node(id).name()).collect();
        return Err(RuntimeError::InputCount { expected: ids.len(), got: inputs.len(), names: names.join(", ") });
    }
    for (&id, given) in ids.iter().zip(inputs) {
        let node = graph.node(id);
        let given = given.borrow();
        let Some(expected) = node.shape().as_known() else {
            return Err(RuntimeError::Unresolved {
                node: node.name().into(),
                reason: format!("input shape {} has unknown dimensions", node.shape()),
            });
        };
        if given.shape() != expected.as_slice() {
            return Err(RuntimeError::InputShape {
                input: node.name().into(),
                expected: fmt_shape(&expected),
                got: fmt_shape(given.shape()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;
    use kiln_ir::{ConvTranspose2dParams, Op, Shape};

    fn graph() -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("x", vec![1, 2, 2, 2]).unwrap();
        let s = g.add_input("s", vec![1, 3, 4, 4]).unwrap();
        let up = g
            .add_node(
                "up",
                Op::ConvTranspose2d { in_channels: 2, params: ConvTranspose2dParams::new(3, 2).stride(2) },
                &[x],
            )
            .unwrap();
        g.set_shape(up, Shape::known(&[1, 3, 4, 4]));
        g.set_param(up, "weight", random(&[2, 3, 2, 2], 1)).unwrap();
        g.set_param(up, "bias", random(&[3], 2)).unwrap();
        let a = g.add_node("a", Op::Add, &[up, s]).unwrap();
        g.set_shape(a, Shape::known(&[1, 3, 4, 4]));
        g.add_output(a).unwrap();
        g
    }

    #[test]
    fn interpreter_backend_matches_interpreter() {
        let g = graph();
        let exe = InterpreterBackend.prepare(&g).unwrap();
        assert_eq!(InterpreterBackend.name(), "interpreter");
        let inputs = [random(&[1, 2, 2, 2], 3), random(&[1, 3, 4, 4], 4)];
        assert_eq!(exe.run(&inputs).unwrap(), Interpreter::run(&g, &inputs).unwrap());
        // Executables are shared across threads.
        let exe: std::sync::Arc<dyn Executable> = exe.into();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (exe, inputs) = (exe.clone(), inputs.clone());
                std::thread::spawn(move || exe.run(&inputs).unwrap())
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Interpreter::run(&g, &inputs).unwrap());
        }
        let e = exe.run(&inputs[..1]).unwrap_err();
        assert_eq!(e.to_string(), "graph takes 2 input(s) (x, s), got 1");
    }

    #[test]
    fn prepare_refuses_unresolved_graphs() {
        let mut g = graph();
        let up = g.find("up").unwrap();
        g.take_param(up, "weight");
        let e = InterpreterBackend.prepare(&g).err().unwrap();
        assert!(e.to_string().contains("`up.weight`"), "{e}");
        assert!(e.downcast_ref::<RuntimeError>().is_some());
    }

    #[test]
    fn check_inputs_names_the_input() {
        let g = graph();
        let ok = [random(&[1, 2, 2, 2], 1), random(&[1, 3, 4, 4], 2)];
        assert!(check_inputs(&g, &ok).is_ok());
        assert!(check_inputs(&g, &[&ok[0], &ok[1]]).is_ok());
        let bad = [random(&[1, 2, 2, 2], 1), random(&[3, 4, 4], 2)];
        let e = check_inputs(&g, &bad).unwrap_err();
        assert_eq!(e.to_string(), "input `s`: expected shape [1, 3, 4, 4], got [3, 4, 4]");
    }
}
