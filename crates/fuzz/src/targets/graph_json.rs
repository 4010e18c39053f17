//! The lossless graph JSON (`Graph::from_json`): if it parses, the text form
//! renders and a second round trip reproduces the same JSON; if the graph is
//! resolved and small it runs on the interpreter and on one JIT configuration,
//! guarded. Graph JSON is untrusted: its declared shapes and parameters may
//! disagree with its ops. The interpreter must then refuse it (it checks
//! every result against the declared shape), and the JIT must refuse it too
//! or run it without writing out of bounds. An unresolved
//! (lazy) graph is resolved first, as a model file would be.

use kiln_ir::Graph;

use crate::exec::{compare_resolved, hash, resolve_and_compare, Plan};
use crate::{Outcome, SplitMix64};

/// Whether every node's declared shape is what shape inference gives from
/// its operands' declared shapes (`Err` names the first node that differs).
pub fn consistent(g: &Graph) -> Result<(), String> {
    let order = g.topo_order().map_err(|e| e.to_string())?;
    for id in order {
        let node = g.node(id);
        let inferred = kiln_passes::infer_node(g, id).map_err(|e| e.to_string())?;
        if node.shape().as_known().as_deref() != Some(inferred.as_slice()) {
            return Err(format!("node `{}` declares {} but its op gives {inferred:?}", node.name(), node.shape()));
        }
    }
    Ok(())
}

/// Runs the target on one input.
pub fn run(input: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(input) else { return Outcome::Rejected("not UTF-8".into()) };
    let g = match Graph::from_json(text) {
        Ok(g) => g,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let _ = g.to_string();
    let once = g.to_json();
    match Graph::from_json(&once) {
        Ok(back) => {
            if back.to_json() != once {
                return Outcome::Mismatch("graph JSON round trip is not stable".into());
            }
        }
        Err(e) => return Outcome::Mismatch(format!("Graph::from_json(g.to_json()) fails: {e}")),
    }
    let h = hash(input);
    let plan = Plan::one(h, h >> 32);
    // The size functions must cope with any declared shapes.
    let _ = kiln_passes::footprint(&g);
    let _ = kiln_passes::flops(&g);
    if kiln_passes::verify(&g).is_ok() {
        if let Err(why) = consistent(&g) {
            // The interpreter checks every result against its declared shape,
            // so it must refuse such a graph; the JIT must refuse it too, or
            // run it without writing out of bounds.
            return match compare_resolved(&g, &plan, false) {
                Outcome::Ok if !crate::exec::too_large(&g, &plan) => {
                    Outcome::Mismatch(format!("the interpreter runs a graph whose shapes disagree with its ops: {why}"))
                }
                Outcome::Mismatch(m) => Outcome::Mismatch(m),
                _ => Outcome::Rejected(why),
            };
        }
        compare_resolved(&g, &plan, false)
    } else if g.has_lazy_nodes() {
        resolve_and_compare(g, &plan)
    } else {
        Outcome::Rejected("not a resolved graph".into())
    }
}

/// Small generated graphs, lazy and resolved, as graph JSON.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rng = SplitMix64::new(0x6a50);
    let mut tries = 0;
    while out.len() < 12 && tries < 400 {
        tries += 1;
        let model = crate::targets::graphs::generate(&mut rng);
        let Ok(text) = std::str::from_utf8(&model) else { continue };
        let Ok(mut g) = kiln_ir::parse_model(text) else { continue };
        if out.len() % 3 == 0 {
            out.push(g.to_json().into_bytes());
            continue;
        }
        if kiln_passes::resolve(&mut g, kiln_passes::ParamSource::Init { seed: 1 }).is_ok() {
            let json = g.to_json();
            if json.len() < 16 * 1024 {
                out.push(json.into_bytes());
            }
        }
    }
    out
}
