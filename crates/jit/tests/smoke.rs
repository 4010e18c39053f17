//! Smoke test: one small kernel per family builds and runs on every tier.
mod common;
use common::*;
use kiln_jit::kernel_api::*;

#[test]
fn small_shapes() {
    let cases = [
        (1, 4, [4, 4], 8, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        (2, 3, [5, 3], 6, 3, [3, 2], [2, 3], [2, 0], [1, 2], [1, 2]),
        (1, 1, [1, 1], 1, 1, [1, 1], [1, 1], [0, 0], [0, 0], [1, 1]),
        (1, 2, [3, 3], 26, 1, [2, 3], [4, 3], [0, 1], [3, 0], [1, 1]),
        (1, 16, [20, 20], 32, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let g = ConvTranspose2dGeometry::from_output_padding(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9).unwrap();
        let x = data(g.input_len(), 1 + i as u64);
        let w = data(g.weight_len(), 100 + i as u64);
        let bias = data(g.out_channels, 7);
        let mut kb = KernelBuilder::new().unwrap();
        let id = kb
            .add_conv_transpose2d(&g, &w, &Epilogue::bias(bias.clone()).with_activation(Activation::LeakyRelu(0.1)))
            .unwrap();
        let lib = kb.finish().unwrap();
        let mut y = vec![f32::NAN; g.output_len()];
        lib.run_all(id, &[&x], &mut y).unwrap();
        let want = conv_transpose_ref(&g, &x, &w, Some(&bias), Activation::LeakyRelu(0.1));
        check_close(&y, &want, &format!("case {i} {g:?}"));
    }
}
