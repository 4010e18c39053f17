//! Property tests: for random valid configurations the inferred shape is
//! PyTorch's formula; random invalid ones are errors, never panics.

use kiln_ir::{ConvTranspose2dParams, GraphBuilder};
use kiln_passes::{resolve, ParamSource};
use proptest::prelude::*;

fn run(input: Vec<usize>, p: ConvTranspose2dParams) -> Result<Vec<usize>, String> {
    let mut b = GraphBuilder::new("p");
    let x = b.input("x", &input).map_err(|e| e.to_string())?;
    b.lazy_conv_transpose2d("up", x, p).map_err(|e| e.to_string())?;
    let mut g = b.finish().map_err(|e| e.to_string())?;
    resolve(&mut g, ParamSource::Init { seed: 0 }).map_err(|e| e.to_string())?;
    let up = g.lookup("up").map_err(|e| e.to_string())?;
    g.node(up).shape().as_known().ok_or_else(|| "unknown".to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn valid_configs_follow_the_formula(
        batched in any::<bool>(), n in 1..4usize, g in 1..4usize, cin_mult in 1..4usize, cout_mult in 1..4usize,
        h in 1..9usize, w in 1..9usize, k in (1..6usize, 1..6usize), s in (1..5usize, 1..5usize),
        d in (1..4usize, 1..4usize), pad in (0..4usize, 0..4usize), op_seed in (0..16usize, 0..16usize),
    ) {
        let op = (op_seed.0 % s.0.max(d.0), op_seed.1 % s.1.max(d.1));
        let p = ConvTranspose2dParams::new(g * cout_mult, k).stride(s).dilation(d).padding(pad).output_padding(op).groups(g);
        let cin = g * cin_mult;
        let input = if batched { vec![n, cin, h, w] } else { vec![cin, h, w] };
        let size = |i: usize, k: usize, s: usize, p: usize, d: usize, o: usize| {
            (i as i64 - 1) * s as i64 - 2 * p as i64 + d as i64 * (k as i64 - 1) + o as i64 + 1
        };
        let (oh, ow) = (size(h, k.0, s.0, pad.0, d.0, op.0), size(w, k.1, s.1, pad.1, d.1, op.1));
        let got = run(input, p);
        if oh >= 1 && ow >= 1 {
            let mut want = if batched { vec![n] } else { vec![] };
            want.extend([g * cout_mult, oh as usize, ow as usize]);
            prop_assert_eq!(got, Ok(want));
        } else {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn per_side_pads_follow_onnx_formula(
        n in 1..4usize, g in 1..4usize, cin_mult in 1..4usize, cout_mult in 1..4usize,
        h in 1..9usize, w in 1..9usize, k in (1..6usize, 1..6usize), s in (1..5usize, 1..5usize),
        d in (1..4usize, 1..4usize), begin in (0..5usize, 0..5usize), end in (0..5usize, 0..5usize),
        op in (0..9usize, 0..9usize),
    ) {
        let p = ConvTranspose2dParams::new(g * cout_mult, k).stride(s).dilation(d).groups(g)
            .pads([begin.0, begin.1], [end.0, end.1]).output_padding(op);
        // s·(in − 1) + d·(k − 1) + 1 − begin − end + output_padding (ONNX), any output_padding.
        let size = |i: usize, k: usize, s: usize, b: usize, e: usize, d: usize, o: usize| {
            s as i64 * (i as i64 - 1) + d as i64 * (k as i64 - 1) + 1 - b as i64 - e as i64 + o as i64
        };
        let oh = size(h, k.0, s.0, begin.0, end.0, d.0, op.0);
        let ow = size(w, k.1, s.1, begin.1, end.1, d.1, op.1);
        let got = run(vec![n, g * cin_mult, h, w], p);
        if oh >= 1 && ow >= 1 {
            prop_assert_eq!(got, Ok(vec![n, g * cout_mult, oh as usize, ow as usize]));
        } else {
            prop_assert!(got.is_err());
        }
    }

    #[test]
    fn arbitrary_configs_never_panic(
        input in prop::collection::vec(0..12usize, 0..6),
        out in 0..10usize, g in 0..5usize, k in (0..6usize, 0..6usize), s in (0..5usize, 0..5usize),
        d in (0..4usize, 0..4usize), pad in (0..6usize, 0..6usize), op in (0..6usize, 0..6usize),
        size in prop::option::of(prop::collection::vec(0..30usize, 0..6)),
    ) {
        let mut p = ConvTranspose2dParams::new(out, k).stride(s).dilation(d).padding(pad).output_padding(op).groups(g);
        p.output_size = size;
        let valid_params = out > 0 && g > 0 && out % g == 0 && k.0 * k.1 * s.0 * s.1 * d.0 * d.1 > 0;
        let r = run(input, p);
        if !valid_params {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn huge_values_are_errors_not_overflows(
        big in (usize::MAX / 4)..usize::MAX, which in 0..6usize,
    ) {
        let mut p = ConvTranspose2dParams::new(2, 3);
        let mut input = vec![1, 2, 4, 4];
        match which {
            0 => p = p.stride(big),
            1 => p = p.dilation(big),
            2 => p = ConvTranspose2dParams::new(2, big),
            3 => p = p.pads([0, 0], [big, 0]),
            4 => p = p.pads([0, 0], [0, 0]).output_padding(big),
            _ => input[2] = big,
        }
        prop_assert!(run(input, p).is_err());
    }
}
