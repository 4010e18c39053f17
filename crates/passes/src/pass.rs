//! The `Pass` trait and the `PassManager` that runs a pipeline.

use kiln_ir::Graph;

use crate::error::Result;

/// Whether a pass changed the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The graph is different.
    Yes,
    /// Nothing changed.
    No,
}

impl Changed {
    /// `Yes` if either is.
    pub fn or(self, other: Changed) -> Changed {
        if self == Changed::Yes || other == Changed::Yes {
            Changed::Yes
        } else {
            Changed::No
        }
    }
}

impl From<bool> for Changed {
    fn from(b: bool) -> Self {
        if b {
            Changed::Yes
        } else {
            Changed::No
        }
    }
}

/// A graph-to-graph transformation.
pub trait Pass {
    /// A short name for reports (`shape-inference`).
    fn name(&self) -> &'static str;
    /// Runs the pass. On error the graph may be partially updated but stays
    /// structurally valid.
    fn run(&mut self, graph: &mut Graph) -> Result<Changed>;
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRecord {
    /// The pass's name.
    pub pass: &'static str,
    /// Whether it changed the graph.
    pub changed: Changed,
    /// The text form after the pass, when recording (`-print-after-all`).
    pub ir_after: Option<String>,
}

/// Runs passes in order and reports what each did.
#[derive(Default)]
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    record_ir: bool,
}

impl PassManager {
    /// An empty pipeline.
    pub fn new() -> Self {
        PassManager::default()
    }

    /// Appends a pass.
    pub fn then(mut self, pass: impl Pass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    /// Records the text form after every pass (for debugging and snapshots).
    pub fn record_ir(mut self, on: bool) -> Self {
        self.record_ir = on;
        self
    }

    /// Runs every pass once, in order, stopping at the first error.
    pub fn run(&mut self, graph: &mut Graph) -> Result<Vec<PassRecord>> {
        let mut records = Vec::with_capacity(self.passes.len());
        for pass in &mut self.passes {
            let changed = pass.run(graph)?;
            records.push(PassRecord {
                pass: pass.name(),
                changed,
                ir_after: self.record_ir.then(|| graph.to_string()),
            });
        }
        Ok(records)
    }
}
