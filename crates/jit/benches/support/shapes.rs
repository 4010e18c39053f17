//! The ten benchmark shapes of `shared/bench/shapes.json` (float32, no bias).
#![allow(dead_code)]

use kiln_jit::kernel_api::ConvTranspose2dGeometry;

/// name, N, C_in, H, W, C_out, k, s, p, op, d, groups.
type Row = (&'static str, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize);

/// `(name, geometry)` for every benchmark shape.
pub fn shapes() -> Vec<(&'static str, ConvTranspose2dGeometry)> {
    let raw: [Row; 10] = [
        ("dcgan1", 16, 128, 1, 1, 512, 4, 1, 0, 0, 1, 1),
        ("dcgan2", 16, 512, 4, 4, 256, 4, 2, 1, 0, 1, 1),
        ("dcgan3", 16, 256, 8, 8, 128, 4, 2, 1, 0, 1, 1),
        ("dcgan4", 16, 128, 16, 16, 64, 4, 2, 1, 0, 1, 1),
        ("dcgan5", 16, 64, 32, 32, 3, 4, 2, 1, 0, 1, 1),
        ("unet_up", 1, 256, 32, 32, 128, 2, 2, 0, 0, 1, 1),
        ("fcn8x", 1, 21, 16, 16, 21, 16, 8, 4, 0, 1, 1),
        ("dw_up", 1, 64, 64, 64, 64, 4, 2, 1, 0, 1, 64),
        ("fsrcnn", 1, 56, 64, 64, 1, 9, 3, 4, 2, 1, 1),
        ("dil", 1, 32, 32, 32, 32, 3, 2, 2, 1, 2, 1),
    ];
    raw.iter()
        .map(|&(name, n, ci, h, w, co, k, s, p, op, d, g)| {
            let geom = ConvTranspose2dGeometry::from_output_padding(
                n,
                ci,
                [h, w],
                co,
                g,
                [k, k],
                [s, s],
                [p, p],
                [op, op],
                [d, d],
            )
            .unwrap_or_else(|e| panic!("benchmark shape {name}: {e}"));
            (name, geom)
        })
        .collect()
}
