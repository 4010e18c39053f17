//! The text form after every pass of the standard pipeline for the golden
//! models (recorded by the PassManager), and idempotency of the pipeline.

mod support;

use kiln::ir::model_from_value;
use kiln::passes::{pipeline, verify, Changed, ParamSource};

#[test]
fn golden_models_after_each_pass() {
    let models = support::cases_of("model");
    assert!(!models.is_empty());
    for case in models {
        let name = case["model"].as_str().expect("name").to_string();
        let mut g = model_from_value(support::model_json(&case)).expect("builds");
        let records = pipeline(ParamSource::Init { seed: 1 }).record_ir(true).run(&mut g).expect("resolves");
        let mut text = String::new();
        for r in &records {
            text.push_str(&format!("// after {} (changed: {:?})\n", r.pass, r.changed));
            text.push_str(r.ir_after.as_deref().unwrap_or(""));
        }
        insta::assert_snapshot!(format!("{name}_pipeline"), text);
        // The resolved output shape is PyTorch's.
        let out = g.output_values()[0];
        assert_eq!(g.node(out).shape().as_known().expect("known"), support::usizes(&case["output_shape"]), "{name}");
        verify(&g).expect("verified");
        // Idempotent: a second run changes nothing.
        let before = g.clone();
        let again = pipeline(ParamSource::Init { seed: 99 }).run(&mut g).expect("second run");
        assert!(again.iter().all(|r| r.changed == Changed::No), "{name}: {again:?}");
        assert_eq!(g, before, "{name}: second run changed the graph");
    }
}
