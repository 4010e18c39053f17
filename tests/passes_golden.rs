//! Every golden case through the shape pass and the lazy rewrite alone:
//! resolved `in_channels`, weight shape and output shape equal PyTorch's, and
//! every error case is rejected with a message naming the node and the values.

mod support;

use kiln::ir::{model_from_value, Op};
use kiln::passes::{resolve, ParamSource};
use serde_json::Value;

/// Builds and resolves a layer case; `Err` carries the message.
fn resolve_layer(case: &Value) -> Result<kiln::Graph, String> {
    let mut g = model_from_value(support::layer_model_json(case)).map_err(|e| e.to_string())?;
    resolve(&mut g, ParamSource::Init { seed: 0 }).map_err(|e| e.to_string())?;
    Ok(g)
}

#[test]
fn layer_shapes_match_pytorch() {
    let mut checked = 0;
    for case in support::cases_of("layer").iter().filter(|c| c.get("error").is_none()) {
        let id = case["id"].as_str().unwrap_or("?");
        let g = resolve_layer(case).unwrap_or_else(|e| panic!("{id}: {e}"));
        let up = g.lookup("up").expect("node up");
        match g.node(up).op() {
            Op::ConvTranspose2d { in_channels, .. } => {
                assert_eq!(*in_channels as u64, case["in_channels"].as_u64().expect("in_channels"), "{id}");
            }
            op => panic!("{id}: not rewritten: {op:?}"),
        }
        let weight = g.node(up).param("weight").expect("weight");
        assert_eq!(weight.shape(), support::usizes(&case["weight_shape"]).as_slice(), "{id} weight");
        assert_eq!(g.node(up).param("bias").is_some(), case["config"]["bias"].as_bool().unwrap_or(true), "{id} bias");
        let out = g.node(up).shape().as_known().expect("known");
        assert_eq!(out, support::usizes(&case["output_shape"]), "{id} output shape");
        checked += 1;
    }
    assert!(checked > 0, "no valid layer case found");
}

#[test]
fn error_cases_are_rejected_clearly() {
    let mut report = String::new();
    let errors: Vec<Value> = support::cases_of("layer").into_iter().filter(|c| c.get("error").is_some()).collect();
    assert!(!errors.is_empty(), "no error case found");
    for case in &errors {
        let id = case["id"].as_str().unwrap_or("?");
        let msg = match resolve_layer(case) {
            Ok(_) => panic!("{id}: accepted, but PyTorch says: {}", case["error"]["message"]),
            Err(m) => m,
        };
        assert!(msg.contains("`up`"), "{id}: message does not name the node: {msg}");
        report.push_str(&format!(
            "{id}\n  pytorch: {}\n  kiln:    {msg}\n",
            case["error"]["message"].as_str().unwrap_or("")
        ));
    }
    // The snapshot is per golden directory: other case sets have other ids.
    if support::golden_dir().ends_with("shared/golden") {
        insta::assert_snapshot!("golden_error_messages", report);
    }
}
