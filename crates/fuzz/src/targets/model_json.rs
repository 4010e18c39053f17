//! The model JSON format: `kiln_ir::parse_model`, then (if it parses) the
//! text form and a lossless JSON round trip of the lazy graph, resolution
//! with seeded initialization (after a size check), and for small graphs a
//! compile and run on one JIT configuration (picked from the input's hash)
//! compared with the interpreter.

use kiln_ir::Graph;

use crate::exec::{hash, resolve_and_compare, Plan};
use crate::{Outcome, SplitMix64};

/// Runs the target on one input.
pub fn run(input: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(input) else { return Outcome::Rejected("not UTF-8".into()) };
    let g = match kiln_ir::parse_model(text) {
        Ok(g) => g,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    if let Err(o) = round_trip(&g) {
        return o;
    }
    let h = hash(input);
    resolve_and_compare(g, &Plan::one(h, h >> 32))
}

/// The text form must render and the graph JSON must read back equal.
pub fn round_trip(g: &Graph) -> Result<(), Outcome> {
    let _ = g.to_string();
    let json = g.to_json();
    match Graph::from_json(&json) {
        Ok(back) if back == *g => Ok(()),
        Ok(_) => Err(Outcome::Mismatch("Graph::from_json(g.to_json()) differs from g".into())),
        Err(e) => Err(Outcome::Mismatch(format!("Graph::from_json(g.to_json()) fails: {e}"))),
    }
}

/// The examples shipped with Kiln and a few generated graphs.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut rng = SplitMix64::new(0x5eed);
    for _ in 0..8 {
        out.push(crate::targets::graphs::generate(&mut rng));
    }
    out
}
