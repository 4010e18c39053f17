//! Text form of the golden models as built from `cases.json`, before any pass.
//! Reviewed snapshots: lazy nodes show `f32[?]` results and no `in_channels`.

mod support;

#[test]
fn golden_models_before_passes() {
    let models = support::cases_of("model");
    assert!(!models.is_empty(), "no model case in {}", support::golden_dir().display());
    for case in models {
        let name = case["model"].as_str().expect("model name").to_string();
        let graph = kiln::ir::model_from_value(support::model_json(&case)).expect("golden model builds");
        insta::assert_snapshot!(format!("{name}_lazy"), graph.to_string());
    }
}
