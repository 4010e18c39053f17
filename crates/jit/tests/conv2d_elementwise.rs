//! Forward conv2d against the naive reference, and the elementwise kernels.

mod common;

use common::*;
use kiln_jit::kernel_api::*;
use proptest::prelude::*;

prop_compose! {
    fn conv_case()(batch in 1usize..=2, groups in 1usize..=3, cim in 1usize..=3, com in 1usize..=4,
                   in_h in 1usize..=9, in_w in 1usize..=9, k in [1usize..=5, 1usize..=5], s in [1usize..=3, 1usize..=3],
                   p in [0usize..=3, 0usize..=3], d in [1usize..=3, 1usize..=3], bias in any::<bool>(),
                   act in prop_oneof![Just(Activation::Identity), Just(Activation::Relu), Just(Activation::Sigmoid)],
                   // Per-side: the end padding, when drawn, differs from `p`.
                   end in prop::option::of([0usize..=4, 0usize..=4]),
                   seed in any::<u64>())
        -> Option<(Conv2dGeometry, bool, Activation, u64)> {
        let end = end.unwrap_or(p);
        Conv2dGeometry::with_pads(batch, groups * cim, [in_h, in_w], groups * com, groups, k, s, p, end, d).ok().map(|g| (g, bias, act, seed))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_matches_naive(c in conv_case().prop_filter("valid", |c| c.is_some())) {
        let Some((g, bias, act, seed)) = c else { return Ok(()) };
        let x = data(g.input_len(), seed);
        let w = data(g.weight_len(), seed ^ 77);
        let b = bias.then(|| data(g.out_channels, seed ^ 5));
        let mut kb = KernelBuilder::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let id = kb.add_conv2d(&g, &w, &Epilogue { bias: b.clone(), activation: act }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lib = kb.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut y = vec![f32::NAN; g.output_len()];
        lib.run_all(id, &[&x], &mut y).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = conv_ref(&g, &x, &w, b.as_deref(), act);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = y.iter().zip(&want).map(|(a, b)| if (a - b).is_nan() { f32::INFINITY } else { (a - b).abs() }).fold(0f32, f32::max);
        prop_assert!(err <= 1e-4 * scale, "err {err} for {g:?}");
    }
}

const LENS: [usize; 7] = [1, 3, 4, 17, 64, 32 * 1024, 2 * 32 * 1024 + 21];

#[test]
fn activation_and_add() {
    let acts =
        [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2), Activation::Tanh, Activation::Sigmoid];
    let mut kb = KernelBuilder::new().unwrap();
    let mut ids = Vec::new();
    for &len in &LENS {
        for &act in &acts {
            ids.push((len, act, kb.add_activation(len, act).unwrap(), kb.add_add(len, act).unwrap()));
        }
    }
    let lib = kb.finish().unwrap();
    for (len, act, a_id, add_id) in ids {
        let mut a = data(len, 1);
        a.iter_mut().for_each(|v| *v *= 6.0);
        if len > 2 {
            a[1] = f32::NAN;
        }
        let b = data(len, 2);
        let mut y = vec![0.0; len];
        lib.run_all(a_id, &[&a], &mut y).unwrap();
        for i in 0..len {
            let want = act.apply(a[i]);
            assert!(
                want.to_bits() == y[i].to_bits()
                    || (want.is_nan() && y[i].is_nan())
                    || (want - y[i]).abs() <= 1e-6 * want.abs().max(1.0),
                "{act:?} len {len} at {i}: {} vs {want}",
                y[i]
            );
        }
        lib.run_all(add_id, &[&a, &b], &mut y).unwrap();
        for i in 0..len {
            let want = act.apply(a[i] + b[i]);
            assert!(
                want.to_bits() == y[i].to_bits()
                    || (want.is_nan() && y[i].is_nan())
                    || (want - y[i]).abs() <= 1e-6 * want.abs().max(1.0),
                "add {act:?} len {len} at {i}"
            );
        }
        // In place through the raw entry point.
        let mut z = a.clone();
        // SAFETY: `z` has the kernel's length and the activation kernel allows `output == inputs[0]`.
        unsafe { lib.run(a_id, &[z.as_ptr()], z.as_mut_ptr(), 0..lib.work_items(a_id)).unwrap() };
        lib.run_all(a_id, &[&a], &mut y).unwrap();
        assert!(z.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}

#[test]
fn batch_norm() {
    for (batch, channels, hw) in [(1, 1, 1), (2, 3, 5), (3, 7, 64), (1, 2, 1000)] {
        let scale = data(channels, 3);
        let shift = data(channels, 4);
        for act in [Activation::Identity, Activation::Relu, Activation::Tanh] {
            let mut kb = KernelBuilder::new().unwrap();
            let id = kb.add_batch_norm(batch, channels, hw, &scale, &shift, act).unwrap();
            let lib = kb.finish().unwrap();
            let x = data(batch * channels * hw, 9);
            let mut y = vec![0.0; x.len()];
            lib.run_all(id, &[&x], &mut y).unwrap();
            for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
                let c = (i / hw) % channels;
                let want = act.apply(xv.mul_add(scale[c], shift[c]));
                assert!((want - yv).abs() <= 1e-6, "bn {batch}x{channels}x{hw} {act:?} at {i}: {yv} vs {want}");
            }
        }
    }
    let mut kb = KernelBuilder::new().unwrap();
    assert!(kb.add_batch_norm(1, 2, 3, &[1.0], &[1.0, 2.0], Activation::Identity).is_err());
    assert!(kb.add_batch_norm(0, 2, 3, &[1.0, 1.0], &[1.0, 2.0], Activation::Identity).is_err());
}

#[test]
fn concat() {
    let (batch, hw) = (3, 7);
    let parts = [2usize, 1, 5];
    let mut kb = KernelBuilder::new().unwrap();
    let id = kb.add_concat(batch, &parts, hw).unwrap();
    assert!(kb.add_concat(batch, &[], hw).is_err());
    assert!(kb.add_concat(batch, &[1, 0], hw).is_err());
    let lib = kb.finish().unwrap();
    let ins: Vec<Vec<f32>> = parts.iter().enumerate().map(|(i, &c)| data(batch * c * hw, i as u64)).collect();
    let refs: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
    let total: usize = parts.iter().sum();
    let mut y = vec![f32::NAN; batch * total * hw];
    lib.run_all(id, &refs, &mut y).unwrap();
    let mut want = Vec::new();
    for n in 0..batch {
        for (i, &c) in parts.iter().enumerate() {
            want.extend_from_slice(&ins[i][n * c * hw..(n + 1) * c * hw]);
        }
    }
    assert_eq!(y, want);
}

/// Several kernels of different kinds in one library, run in any order.
#[test]
fn mixed_library() {
    let g = ConvTranspose2dGeometry::from_output_padding(2, 8, [5, 5], 12, 4, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1])
        .unwrap();
    let c = Conv2dGeometry::new(2, 12, [g.out_h, g.out_w], 6, 3, [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    let (wt, wc) = (data(g.weight_len(), 1), data(c.weight_len(), 2));
    let mut kb = KernelBuilder::new().unwrap();
    let k1 = kb.add_conv_transpose2d(&g, &wt, &Epilogue::none()).unwrap();
    let k2 = kb.add_activation(g.output_len(), Activation::Relu).unwrap();
    let k3 = kb.add_conv2d(&c, &wc, &Epilogue::none().with_activation(Activation::Tanh)).unwrap();
    let lib = kb.finish().unwrap();
    let x = data(g.input_len(), 3);
    let mut y1 = vec![0.0; g.output_len()];
    let mut y2 = vec![0.0; g.output_len()];
    let mut y3 = vec![0.0; c.output_len()];
    lib.run_all(k1, &[&x], &mut y1).unwrap();
    lib.run_all(k2, &[&y1], &mut y2).unwrap();
    lib.run_all(k3, &[&y2], &mut y3).unwrap();
    let r1 = conv_transpose_ref(&g, &x, &wt, None, Activation::Relu);
    check_close(&y2, &r1, "convT+relu");
    check_close(&y3, &conv_ref(&c, &r1, &wc, None, Activation::Tanh), "conv");
}
