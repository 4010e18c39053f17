//! Out-of-bounds safety and concurrency of compiled graphs.
//!
//! For every golden case, the compiled graph runs with guard zones around its
//! scratch buffers and with caller buffers embedded in canary-filled memory:
//! no canary may change, inputs must be left intact, and the result must
//! still match PyTorch. One compiled graph run from several threads at once
//! must give the same results as sequential runs.

mod support;

use kiln::ir::model_from_value;
use kiln::jit::CANARY;
use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{tensor, RandomTensor, Rng, Tensor, WeightStore};
use kiln::{Graph, ParamSource};

const GUARD: usize = 64;

fn guarded(data: &[f32]) -> Vec<f32> {
    let mut v = vec![CANARY; data.len() + 2 * GUARD];
    v[GUARD..GUARD + data.len()].copy_from_slice(data);
    v
}

fn canaries_intact(v: &[f32]) -> bool {
    let n = v.len() - 2 * GUARD;
    v[..GUARD].iter().chain(&v[GUARD + n..]).all(|x| x.to_bits() == CANARY.to_bits())
}

/// Resolves `g`, runs it guarded on 1 and 2 threads, and returns the output.
fn run_guarded(mut g: Graph, source: ParamSource, inputs: &[Tensor], what: &str) -> Vec<Tensor> {
    kiln::passes::resolve(&mut g, source).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut results = Vec::new();
    let tiers = support::jit_tiers();
    for (threads, (tier_name, tier)) in [1, 2].into_iter().flat_map(|t| tiers.iter().map(move |x| (t, x))) {
        let what = format!("{what} [{tier_name}]");
        let what = what.as_str();
        let exe = compile_with(&g, CompileOptions { threads, tier: *tier, guard_floats: GUARD, ..Default::default() })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut ins: Vec<Vec<f32>> = inputs.iter().map(|t| guarded(&tensor::to_vec(t))).collect();
        let out_shapes: Vec<Vec<usize>> =
            g.output_values().iter().map(|&o| g.node(o).shape().as_known().expect("resolved")).collect();
        let mut outs: Vec<Vec<f32>> = out_shapes.iter().map(|s| guarded(&vec![0.0; s.iter().product()])).collect();
        {
            let in_views: Vec<&[f32]> = ins.iter().map(|v| &v[GUARD..v.len() - GUARD]).collect();
            let mut out_views: Vec<&mut [f32]> = outs
                .iter_mut()
                .map(|v| {
                    let n = v.len();
                    &mut v[GUARD..n - GUARD]
                })
                .collect();
            exe.run_into(&in_views, &mut out_views).unwrap_or_else(|e| panic!("{what} ({threads} threads): {e}"));
        }
        for (v, t) in ins.iter_mut().zip(inputs) {
            assert!(canaries_intact(v), "{what}: input canary overwritten");
            assert_eq!(&v[GUARD..v.len() - GUARD], tensor::to_vec(t).as_slice(), "{what}: input modified");
        }
        for v in &outs {
            assert!(canaries_intact(v), "{what} ({threads} threads): output canary overwritten");
        }
        results = outs
            .iter()
            .zip(&out_shapes)
            .map(|(v, s)| Tensor::from_shape_vec(s.clone(), v[GUARD..v.len() - GUARD].to_vec()).expect("shape"))
            .collect();
    }
    results
}

#[test]
fn every_golden_case_stays_in_bounds() {
    let golden = WeightStore::load(support::golden_dir().join("tensors.safetensors")).expect("golden tensors");
    let get = |k: &str| golden.get(k).cloned().unwrap_or_else(|| panic!("missing {k}"));
    let mut checked = 0;
    for case in support::cases() {
        let id = case["id"].as_str().expect("id").to_string();
        match case["kind"].as_str() {
            Some("layer") if case.get("error").is_none() => {
                let g = model_from_value(support::layer_model_json(&case)).expect("builds");
                let mut sd = std::collections::BTreeMap::new();
                sd.insert("up.weight".to_string(), get(&format!("{id}/weight")));
                if let Some(b) = golden.get(&format!("{id}/bias")) {
                    sd.insert("up.bias".to_string(), b.clone());
                }
                let out = run_guarded(g, ParamSource::StateDict(sd), &[get(&format!("{id}/input"))], &id);
                tensor::check_close(&out[0], &get(&format!("{id}/output_f64")), 1e-4)
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
            }
            Some("model") => {
                let g = model_from_value(support::model_json(&case)).expect("builds");
                let inputs: Vec<Tensor> =
                    g.inputs().iter().map(|&i| get(&format!("{id}/input.{}", g.node(i).name()))).collect();
                let sd = golden
                    .with_prefix(&format!("{id}/"))
                    .into_tensors()
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with("input.") && k != "output")
                    .collect();
                let out = run_guarded(g, ParamSource::StateDict(sd), &inputs, &id);
                tensor::check_close(&out[0], &get(&format!("{id}/output")), 1e-4)
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
            }
            _ => continue,
        }
        checked += 1;
    }
    assert!(checked > 0, "no golden case checked");
}

#[test]
fn concurrent_runs_of_one_compiled_graph_agree() {
    let mut g = kiln::load_model(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/unet_tail.json")).expect("model");
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 7 }).expect("resolves");
    for (name, tier) in support::jit_tiers() {
        concurrent_runs_agree(&g, tier, name);
    }
}

fn concurrent_runs_agree(g: &Graph, tier: kiln::jit::KernelTier, name: &str) {
    let exe = compile_with(g, CompileOptions { threads: 2, tier, ..Default::default() }).expect("compiles");
    let inputs: Vec<Vec<Tensor>> = (0..6)
        .map(|k| {
            g.inputs().iter().map(|&i| Rng::new(k).tensor(&g.node(i).shape().as_known().expect("known"))).collect()
        })
        .collect();
    let sequential: Vec<Vec<Tensor>> = inputs.iter().map(|x| exe.run(x).expect("runs")).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|x| {
                let exe = &exe;
                s.spawn(move || (0..20).map(|_| exe.run(x).expect("runs")).collect::<Vec<_>>())
            })
            .collect();
        for (h, want) in handles.into_iter().zip(&sequential) {
            for got in h.join().expect("thread") {
                assert_eq!(&got, want, "{name}: concurrent run differs from sequential");
            }
        }
    });
}

#[test]
fn compiled_graphs_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<kiln::jit::CompiledGraph>();
}

#[test]
fn unresolved_graphs_and_bad_inputs_are_refused() {
    let g = kiln::load_model(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/decoder.json")).expect("model");
    let e = kiln::jit::compile(&g).unwrap_err().to_string();
    assert!(e.contains("node `up1`") && e.contains("lazy"), "{e}");
    let mut g = g;
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 0 }).expect("resolves");
    let exe = kiln::jit::compile(&g).expect("compiles");
    let e = exe.run(&[Tensor::zeros(vec![3, 48, 5, 5])]).unwrap_err().to_string();
    assert!(e.contains("`x`") && e.contains("[3, 48, 5, 6]"), "{e}");
    assert!(exe.run(&[]).is_err());
}

#[test]
fn awkward_outputs_match_the_interpreter() {
    use kiln::{ConvTranspose2dParams, GraphBuilder};
    // up1 is an output and also feeds up2; up2 is returned twice; the input x is returned as is.
    let mut b = GraphBuilder::new("outs");
    let x = b.input("x", [2, 4, 3, 3]).expect("input");
    let up1 = b.lazy_conv_transpose2d("up1", x, ConvTranspose2dParams::new(6, 2).stride(2)).expect("up1");
    let act = b.relu("act", up1).expect("act");
    let up2 = b.lazy_conv_transpose2d("up2", act, ConvTranspose2dParams::new(3, 3).padding(1)).expect("up2");
    for v in [up2, up1, up2, x] {
        b.output(v).expect("output");
    }
    let mut g = b.finish().expect("graph");
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 5 }).expect("resolves");
    let input = Rng::new(9).tensor(&[2, 4, 3, 3]);
    let want = kiln::runtime::Interpreter::run(&g, std::slice::from_ref(&input)).expect("interpreter");
    assert_eq!(want.len(), 4);
    for (name, tier) in support::jit_tiers() {
        for threads in [1, 2] {
            let exe = compile_with(&g, CompileOptions { threads, tier, guard_floats: GUARD, ..Default::default() })
                .expect("compiles");
            let got = exe.run(std::slice::from_ref(&input)).expect("runs");
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                tensor::check_close(a, b, 1e-4)
                    .unwrap_or_else(|e| panic!("{name}, {threads} threads, output {k}: {e}"));
            }
        }
    }
}
