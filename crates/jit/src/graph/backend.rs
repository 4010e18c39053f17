//! The JIT as a [`kiln_runtime::Backend`], so the golden harness and the CLI
//! run it exactly like the interpreter.

use kiln_ir::Graph;
use kiln_runtime::backend::{Backend, Executable};
use kiln_runtime::{RuntimeError, Tensor};

use super::compiled::{compile_with, CompileOptions, CompiledGraph};

/// Compiles graphs with Cranelift.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitBackend {
    /// Compile options (threads, opt level).
    pub options: CompileOptions,
}

impl Executable for CompiledGraph {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        CompiledGraph::run(self, inputs)
    }
}

impl Backend for JitBackend {
    fn name(&self) -> &'static str {
        "jit"
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Box::new(compile_with(graph, self.options)?))
    }
}
