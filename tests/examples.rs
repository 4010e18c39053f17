//! The example decoders of `examples/`, written from their published PyTorch
//! source by `scripts/examples/export.py` (FSRCNN, a VAE decoder with
//! `Linear` and `view`, CycleGAN's ResNet generator, pix2pix's U-Net), run
//! through `kiln run` exactly as a user would, compared with PyTorch's
//! eval-mode output saved beside them.

use std::process::Command;

use kiln::runtime::{npy, tensor};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run_example(model: &str, input: &str, extra: &[&str]) {
    let out = std::env::temp_dir().join(format!("kiln-example-{model}-{}-{}.npy", std::process::id(), extra.join("_")));
    let status = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", &example(&format!("{model}.json")), "--weights", &example(&format!("{model}.safetensors"))])
        .args(["--input", &format!("{input}={}", example(&format!("{model}.input.{input}.npy")))])
        .args(["--output", &out.display().to_string()])
        .args(extra)
        .output()
        .expect("kiln runs");
    assert!(status.status.success(), "{model}: {}", String::from_utf8_lossy(&status.stderr));
    let got = npy::read(&out).expect("output written");
    let want = npy::read(example(&format!("{model}.output.npy"))).expect("reference output");
    let _ = std::fs::remove_file(&out);
    tensor::check_close(&got, &want, 1e-4).unwrap_or_else(|e| panic!("{model} {extra:?}: {e}"));
}

#[test]
fn published_decoders_match_pytorch_through_kiln_run() {
    for (model, input) in [("fsrcnn", "x"), ("vae_decoder", "z"), ("cyclegan_resnet", "x"), ("pix2pix_unet", "x")] {
        run_example(model, input, &[]);
        run_example(model, input, &["--threads", "2"]);
        run_example(model, input, &["--backend", "interp"]);
    }
}
