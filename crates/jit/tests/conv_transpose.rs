//! Differential, canary, sub-range and concurrency tests of the
//! conv-transpose kernels against the naive scatter reference.

mod common;

use common::*;
use kiln_jit::kernel_api::*;
use kiln_jit::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    g: ConvTranspose2dGeometry,
    bias: bool,
    act: Activation,
    seed: u64,
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        (-1.0f32..2.0).prop_map(Activation::LeakyRelu),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
    ]
}

prop_compose! {
    fn geometry()(
        batch in 1usize..=3,
        groups in 1usize..=4,
        cin_mul in 1usize..=3,
        cout_mul in 1usize..=3,
        in_h in 1usize..=7, in_w in 1usize..=7,
        k in [1usize..=5, 1usize..=5],
        s in [1usize..=4, 1usize..=4],
        p in [0usize..=5, 0usize..=5],
        d in [1usize..=3, 1usize..=3],
        opf in [0.0f64..1.0, 0.0f64..1.0],
        // ONNX-style per-side pads, with an output_padding of any size.
        per_side in prop::option::of(([0usize..=5, 0usize..=5], [0usize..=6, 0usize..=6])),
    ) -> Option<ConvTranspose2dGeometry> {
        let (cin, cout) = (groups * cin_mul, groups * cout_mul);
        match per_side {
            Some((end, op)) => ConvTranspose2dGeometry::from_pads(batch, cin, [in_h, in_w], cout, groups, k, s, p, end, op, d).ok(),
            None => {
                let op = [0, 1].map(|a| ((s[a].max(d[a])) as f64 * opf[a]) as usize);
                ConvTranspose2dGeometry::from_output_padding(batch, cin, [in_h, in_w], cout, groups, k, s, p, op, d).ok()
            }
        }
    }
}

prop_compose! {
    fn case()(g in geometry().prop_filter("valid output size", |g| g.is_some()),
              bias in any::<bool>(), act in activation(), seed in any::<u64>()) -> Case {
        Case { g: g.unwrap_or_else(|| unreachable!()), bias, act, seed }
    }
}

// Wide-channel configurations too (channels up to 12 with groups dividing both).
prop_compose! {
    fn wide_case()(groups in prop::sample::select(vec![1usize, 2, 3, 4, 6, 12]),
                   ci in 1usize..=12, co in 1usize..=12, k in 1usize..=5, s in 1usize..=4,
                   p in 0usize..=3, d in 1usize..=3, in_hw in 1usize..=9, batch in 1usize..=3,
                   act in activation(), seed in any::<u64>()) -> Option<Case> {
        let cin = (ci.div_ceil(groups)) * groups;
        let cout = (co.div_ceil(groups)) * groups;
        if cin > 12 || cout > 12 { return None; }
        ConvTranspose2dGeometry::from_output_padding(batch, cin, [in_hw, in_hw + 1], cout, groups, [k, k.max(2) - 1], [s, (s % 4) + 1], [p, p / 2], [0, 0], [d, 1])
            .ok().map(|g| Case { g, bias: true, act, seed })
    }
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let g = &c.g;
    let x = data(g.input_len(), c.seed);
    let w = data(g.weight_len(), c.seed ^ 0xABCD);
    let bias = c.bias.then(|| data(g.out_channels, c.seed ^ 0x1234));
    let ep = Epilogue { bias: bias.clone(), activation: c.act };
    let want = conv_transpose_ref(g, &x, &w, bias.as_deref(), c.act);
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    // Every tier this CPU has, so native tiles and Cranelift edges are both covered.
    for tier in tiers() {
        let mut kb = builder(tier);
        let id = kb.add_conv_transpose2d(g, &w, &ep).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lib = kb.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut y = vec![f32::NAN; g.output_len()];
        lib.run_all(id, &[&x], &mut y).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let err = y
            .iter()
            .zip(&want)
            .map(|(a, b)| if (a - b).is_nan() { f32::INFINITY } else { (a - b).abs() })
            .fold(0f32, f32::max);
        prop_assert!(
            err <= 1e-4 * scale,
            "{tier:?} ({:?}): max abs err {err} (scale {scale}) for {c:?}",
            lib.strategy(id)
        );
    }
    Ok(())
}

/// Pixel tiles with many taps per row segment (k9 and k11 at stride 1, up to
/// 121 taps) and few output channels, on every tier, with odd sizes so the
/// edge segments differ from the interior.
#[test]
fn many_tap_pixel_tiles_match_naive() {
    // (batch, cin, [h, w], cout, kernel, stride, padding)
    #[allow(clippy::type_complexity)]
    let layers: &[(usize, usize, [usize; 2], usize, usize, usize, usize)] = &[
        (1, 5, [13, 17], 3, 9, 1, 4), // SRGAN's output layer, small
        (2, 3, [9, 11], 1, 11, 1, 5), // 121 taps
        (1, 4, [7, 23], 2, 9, 2, 4),  // k9 s2 (FSRCNN x2)
        (1, 2, [6, 10], 4, 8, 1, 3),  // even kernel, 64 taps
    ];
    for (i, &(n, ci, hw, co, k, st, p)) in layers.iter().enumerate() {
        let g = ConvTranspose2dGeometry::from_output_padding(
            n,
            ci,
            hw,
            co,
            1,
            [k, k],
            [st, st],
            [p, p],
            [st - 1, 0],
            [1, 1],
        )
        .expect("valid geometry");
        run_case(&Case { g, bias: true, act: Activation::LeakyRelu(0.1), seed: 40 + i as u64 }).expect("matches");
    }
}

/// Kernels smaller than their stride leave output pixels no tap reaches
/// (holes, which channel-tile plans fill with masked row stores): the
/// suite's classes (k3 s4, k1 s4 op3, grouped k2 s3) with bias and every
/// activation, on every tier, with widths whose last 16-column block is
/// partial.
#[test]
fn layers_with_holes_match_naive() {
    // (batch, cin, [h, w], cout, groups, kernel, stride, padding, output_padding)
    #[allow(clippy::type_complexity)]
    let layers: &[(usize, usize, [usize; 2], usize, usize, usize, usize, usize, usize)] = &[
        (2, 19, [9, 11], 40, 1, 3, 4, 1, 1), // rand01-like: out 34x42
        (1, 24, [6, 5], 20, 1, 1, 4, 0, 3),  // rand02-like: 15 of 16 pixels are holes
        (1, 36, [5, 11], 36, 6, 2, 3, 0, 1), // rand09-like, grouped
        (3, 8, [4, 9], 33, 1, 2, 5, 0, 4),   // a partial panel, 3 items
    ];
    let acts =
        [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2), Activation::Tanh, Activation::Sigmoid];
    for (i, &(n, ci, hw, co, g, k, st, p, op)) in layers.iter().enumerate() {
        let g =
            ConvTranspose2dGeometry::from_output_padding(n, ci, hw, co, g, [k, k], [st, st], [p, p], [op, op], [1, 1])
                .expect("valid geometry");
        for (j, &act) in acts.iter().enumerate() {
            run_case(&Case { g: g.clone(), bias: true, act, seed: 70 + (i * 5 + j) as u64 }).expect("matches");
        }
    }
}

/// Depthwise large-stride layers (FCN-32s' bilinear upsampler class) run as
/// depthwise rows under the Auto tier: against the naive reference with
/// bias and every activation, multipliers, two channels per group,
/// dilation, strides whose kernel runs do not divide the row evenly, and
/// an infinite input (which must reach only its own taps).
#[test]
fn depthwise_rows_match_naive() {
    // (batch, cin, [h, w], cout, groups, [k], [s], [p], [op], [d])
    #[allow(clippy::type_complexity)]
    let layers: &[(
        usize,
        usize,
        [usize; 2],
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
    )] = &[
        (1, 3, [3, 4], 3, 3, [64, 64], [32, 32], [16, 16], [0, 0], [1, 1]),
        (2, 2, [2, 3], 6, 2, [40, 70], [20, 35], [3, 9], [1, 4], [1, 1]),
        (1, 4, [3, 2], 2, 2, [9, 12], [33, 40], [0, 5], [2, 7], [2, 3]),
    ];
    let acts =
        [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2), Activation::Tanh, Activation::Sigmoid];
    for (i, c) in layers.iter().enumerate() {
        let g = ConvTranspose2dGeometry::from_output_padding(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9)
            .expect("valid geometry");
        for (j, &act) in acts.iter().enumerate() {
            let seed = 90 + (i * 5 + j) as u64;
            let mut x = data(g.input_len(), seed);
            if j == 0 {
                x[g.input_len() / 2] = f32::INFINITY;
            }
            let w = data(g.weight_len(), seed ^ 0xABCD);
            let bias = data(g.out_channels, seed ^ 0x1234);
            let ep = Epilogue { bias: Some(bias.clone()), activation: act };
            let want = conv_transpose_ref(&g, &x, &w, Some(&bias), act);
            let mut kb = builder(KernelTier::Auto);
            let id = kb.add_conv_transpose2d(&g, &w, &ep).expect("compiles");
            let lib = kb.finish().expect("finishes");
            assert_eq!(lib.strategy(id), Some(KernelStrategy::DepthwiseRows), "layer {i}");
            let mut y = vec![f32::NAN; g.output_len()];
            lib.run_all(id, &[&x], &mut y).expect("runs");
            let scale = want.iter().filter(|v| v.is_finite()).fold(1f32, |m, v| m.max(v.abs()));
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                let ok = if b.is_finite() {
                    (a - b).abs() <= 1e-4 * scale
                } else {
                    a.is_nan() == b.is_nan() && (b.is_nan() || a == b)
                };
                assert!(ok, "layer {i} {act:?}: output {k} is {a}, want {b}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn matches_naive(c in case()) {
        run_case(&c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn matches_naive_wide(c in wide_case().prop_filter("valid", |c| c.is_some())) {
        if let Some(c) = c { run_case(&c)?; }
    }

    /// Arbitrary, mostly invalid geometries are rejected with an error, never a panic.
    #[test]
    fn invalid_geometry_errors(batch in 0usize..3, cin in 0usize..5, cout in 0usize..5, groups in 0usize..4,
                              hw in [0usize..4, 0usize..4], k in [0usize..4, 0usize..4], s in [0usize..4, 0usize..4],
                              p in [0usize..6, 0usize..6], d in [0usize..3, 0usize..3], out in [0usize..12, 0usize..12],
                              wlen in 0usize..200) {
        let g = ConvTranspose2dGeometry { batch, in_channels: cin, in_h: hw[0], in_w: hw[1], out_channels: cout, groups,
            kernel: k, stride: s, padding: p, dilation: d, out_h: out[0], out_w: out[1] };
        let mut kb = KernelBuilder::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let r = kb.add_conv_transpose2d(&g, &vec![0.5; wlen], &Epilogue::none());
        if g.validate().is_err() || wlen != g.weight_len() {
            prop_assert!(r.is_err());
        } else {
            prop_assert!(r.is_ok(), "{r:?}");
        }
    }
}

const CANARY: u32 = 0x7FC0_DEAD;
const PAD: usize = 37;

fn canary_buf(len: usize) -> Vec<f32> {
    vec![f32::from_bits(CANARY); len + 2 * PAD]
}

fn is_canary(v: f32) -> bool {
    v.to_bits() == CANARY
}

/// N, C_in, [H, W], C_out, groups, kernel, stride, padding, output_padding, dilation.
type Row = (usize, usize, [usize; 2], usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], [usize; 2]);

fn geometries() -> Vec<ConvTranspose2dGeometry> {
    let raw: &[Row] = &[
        (2, 16, [4, 4], 32, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        (1, 3, [9, 17], 5, 1, [3, 5], [3, 2], [2, 1], [2, 1], [1, 2]),
        (1, 8, [1, 1], 24, 2, [4, 3], [1, 1], [0, 0], [0, 0], [1, 1]),
        (3, 6, [5, 5], 6, 6, [4, 4], [2, 2], [1, 1], [1, 0], [1, 1]),
        (1, 4, [12, 40], 20, 1, [2, 2], [2, 2], [0, 0], [0, 0], [1, 1]),
        (2, 2, [3, 4], 2, 2, [1, 2], [4, 5], [0, 0], [3, 4], [1, 1]),
        (1, 21, [6, 6], 21, 1, [16, 16], [8, 8], [4, 4], [0, 0], [1, 1]),
        (1, 5, [30, 30], 1, 1, [9, 9], [3, 3], [4, 4], [2, 2], [1, 1]),
        (1, 4, [3, 3], 4, 1, [2, 2], [1, 1], [2, 3], [0, 2], [3, 3]),
        // Native-tier shapes: batch folded into tiles with a partial panel,
        // pixel tiles with masked edges and three channels.
        (16, 8, [1, 1], 40, 1, [4, 4], [1, 1], [0, 0], [0, 0], [1, 1]),
        (2, 6, [11, 37], 3, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        // Input channel planes 4 KiB apart (AVX2 packs the input per group of
        // tiles, AVX-512 runs tiles grouped by input position); output planes
        // 16 KiB apart (channel-major tile stores).
        (1, 16, [32, 32], 20, 1, [2, 2], [2, 2], [0, 0], [0, 0], [1, 1]),
        // Packing with multi-tap classes across two batch items, and per group.
        (2, 40, [16, 16], 24, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        (1, 64, [32, 32], 32, 2, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1]),
        // Two-row pixel tiles (one channel, odd row counts per segment).
        (1, 3, [13, 40], 1, 1, [5, 5], [2, 2], [2, 2], [1, 1], [1, 1]),
        // Depthwise 2x upsamplers (AVX-512 dw2x kernel): two column chunks
        // across two batch items, and a single chunk with one input row.
        (2, 8, [5, 32], 8, 8, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        (1, 3, [1, 16], 3, 3, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]),
        // Single-output-channel k9 s3 (AVX-512 s3k9 kernel): two batch items
        // and groups with a partial last row block, and one input row.
        (2, 6, [10, 64], 2, 2, [9, 9], [3, 3], [4, 4], [2, 2], [1, 1]),
        (1, 3, [1, 32], 1, 1, [9, 9], [3, 3], [4, 4], [2, 2], [1, 1]),
        // Holes (kernel smaller than the stride): masked row fills next to
        // tiles, in bands, split across work items.
        (2, 19, [9, 11], 40, 1, [3, 3], [4, 4], [1, 1], [1, 1], [1, 1]),
        (1, 24, [6, 5], 20, 1, [1, 2], [4, 3], [0, 0], [3, 1], [1, 1]),
    ];
    raw.iter()
        .map(|c| {
            ConvTranspose2dGeometry::from_output_padding(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8, c.9).unwrap()
        })
        .collect()
}

/// Canaries around input and output survive, and sub-ranges of work items
/// partition the output: every element is written by exactly one sub-range,
/// with the same value as a full run.
#[test]
fn canaries_and_subranges() {
    for tier in tiers() {
        for (gi, g) in geometries().iter().enumerate() {
            canaries_and_subranges_for(tier, &format!("{tier:?} geometry {gi}"), gi, g);
        }
    }
}

fn canaries_and_subranges_for(tier: KernelTier, gi: &str, seed: usize, g: &ConvTranspose2dGeometry) {
    {
        let w = data(g.weight_len(), seed as u64);
        let bias = data(g.out_channels, 99);
        let mut kb = builder(tier);
        let id =
            kb.add_conv_transpose2d(g, &w, &Epilogue::bias(bias.clone()).with_activation(Activation::Relu)).unwrap();
        let lib = kb.finish().unwrap();
        let mut xb = canary_buf(g.input_len());
        xb[PAD..PAD + g.input_len()].copy_from_slice(&data(g.input_len(), 5));
        let x = &xb[PAD..PAD + g.input_len()];
        let want = conv_transpose_ref(g, x, &w, Some(&bias), Activation::Relu);

        let items = lib.work_items(id);
        let mut full = canary_buf(g.output_len());
        // SAFETY: `x` and `full[PAD..]` hold at least the kernel's input and output lengths.
        unsafe { lib.run(id, &[x.as_ptr()], full[PAD..].as_mut_ptr(), 0..items).unwrap() };
        assert!(
            full[..PAD].iter().chain(&full[PAD + g.output_len()..]).all(|&v| is_canary(v)),
            "geometry {gi}: output canary"
        );
        assert!(
            xb[..PAD].iter().chain(&xb[PAD + g.input_len()..]).all(|&v| is_canary(v)),
            "geometry {gi}: input canary"
        );
        check_close(&full[PAD..PAD + g.output_len()], &want, &format!("geometry {gi}"));

        // Partition 0..items into irregular sub-ranges.
        let mut cuts = vec![0];
        let mut at = 0;
        let mut step = 1;
        while at < items {
            at = (at + step).min(items);
            cuts.push(at);
            step = step % 3 + 1;
        }
        let mut writes = vec![0u32; g.output_len()];
        for r in cuts.windows(2) {
            let mut y = canary_buf(g.output_len());
            // SAFETY: as above; one range at a time.
            unsafe { lib.run(id, &[x.as_ptr()], y[PAD..].as_mut_ptr(), r[0]..r[1]).unwrap() };
            assert!(y[..PAD].iter().chain(&y[PAD + g.output_len()..]).all(|&v| is_canary(v)));
            for (i, &v) in y[PAD..PAD + g.output_len()].iter().enumerate() {
                if !is_canary(v) {
                    writes[i] += 1;
                    assert_eq!(v.to_bits(), full[PAD + i].to_bits(), "geometry {gi} range {r:?} element {i}");
                }
            }
        }
        assert!(writes.iter().all(|&c| c == 1), "geometry {gi}: sub-ranges must write each element exactly once");
    }
}

#[test]
fn concurrent_runs_match() {
    for tier in tiers() {
        // Channel tiles (48 channels: one full and one partial panel per group) and pixel tiles (2 per group).
        for cout in [96, 4] {
            let g = ConvTranspose2dGeometry::from_output_padding(
                4,
                32,
                [8, 8],
                cout,
                2,
                [4, 4],
                [2, 2],
                [1, 1],
                [0, 0],
                [1, 1],
            )
            .unwrap();
            concurrent_runs_match_for(tier, &g);
        }
        // Packed input (each run's buffer is on its own stack).
        let g = ConvTranspose2dGeometry::from_output_padding(
            2,
            32,
            [32, 32],
            40,
            1,
            [4, 4],
            [2, 2],
            [1, 1],
            [0, 0],
            [1, 1],
        )
        .unwrap();
        concurrent_runs_match_for(tier, &g);
    }
}

fn concurrent_runs_match_for(tier: KernelTier, g: &ConvTranspose2dGeometry) {
    struct SendPtr(*mut f32);
    // SAFETY: the threads write disjoint work ranges of the buffer it points to.
    unsafe impl Send for SendPtr {}
    // SAFETY: as above.
    unsafe impl Sync for SendPtr {}
    let g = g.clone();
    let w = data(g.weight_len(), 3);
    let x = data(g.input_len(), 4);
    let mut kb = builder(tier);
    let id = kb
        .add_conv_transpose2d(&g, &w, &Epilogue::bias(data(g.out_channels, 1)).with_activation(Activation::Tanh))
        .unwrap();
    let lib = kb.finish().unwrap();
    let mut single = vec![0f32; g.output_len()];
    lib.run_all(id, &[&x], &mut single).unwrap();
    let items = lib.work_items(id);
    for threads in [2, 3, 4, 7] {
        let mut y = vec![f32::NAN; g.output_len()];
        let out = SendPtr(y.as_mut_ptr());
        std::thread::scope(|s| {
            for t in 0..threads {
                let (lib, x, out) = (&lib, &x, &out);
                s.spawn(move || {
                    let r = items * t / threads..items * (t + 1) / threads;
                    // SAFETY: disjoint work ranges write disjoint output elements.
                    unsafe { lib.run(id, &[x.as_ptr()], out.0, r).unwrap() };
                });
            }
        });
        assert!(y.iter().zip(&single).all(|(a, b)| a.to_bits() == b.to_bits()), "{tier:?}: {threads} threads");
    }
}

#[test]
fn library_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KernelLibrary>();
}

#[test]
fn run_checks_arguments() {
    let g = ConvTranspose2dGeometry::from_output_padding(1, 2, [3, 3], 2, 1, [3, 3], [2, 2], [1, 1], [0, 0], [1, 1])
        .unwrap();
    let mut kb = KernelBuilder::new().unwrap();
    let id = kb.add_conv_transpose2d(&g, &vec![1.0; g.weight_len()], &Epilogue::none()).unwrap();
    assert!(matches!(
        kb.add_conv_transpose2d(&g, &[1.0; 3], &Epilogue::none()),
        Err(JitError::ParameterLength { what: "weight", .. })
    ));
    assert!(matches!(
        kb.add_conv_transpose2d(&g, &vec![1.0; g.weight_len()], &Epilogue::bias(vec![0.0; 3])),
        Err(JitError::ParameterLength { what: "bias", .. })
    ));
    let lib = kb.finish().unwrap();
    let x = vec![1.0; g.input_len()];
    let mut y = vec![0.0; g.output_len()];
    assert!(matches!(lib.run_all(id, &[&x[1..]], &mut y), Err(JitError::BufferLength { .. })));
    assert!(matches!(lib.run_all(id, &[], &mut y), Err(JitError::InputCount { .. })));
    assert!(matches!(lib.run_slices(id, &[&x], &mut y, 0..99), Err(JitError::WorkRange { .. })));
    assert!(!lib.clif(id).is_empty());
    // The Cranelift tier computes with `fma`; native kernels call micro-kernels.
    let mut kb = builder(KernelTier::Cranelift);
    let id = kb.add_conv_transpose2d(&g, &vec![1.0; g.weight_len()], &Epilogue::none()).unwrap();
    let lib = kb.finish().unwrap();
    assert!(lib.clif(id).contains("fma"));
}

/// Each tier is selected by configuration alone, and the strategy matches the shape.
#[test]
fn tiers_are_forced_by_configuration() {
    let wide =
        ConvTranspose2dGeometry::from_output_padding(2, 16, [6, 6], 40, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1])
            .unwrap();
    let narrow =
        ConvTranspose2dGeometry::from_output_padding(1, 8, [20, 20], 1, 1, [9, 9], [3, 3], [4, 4], [2, 2], [1, 1])
            .unwrap();
    for tier in tiers() {
        let mut kb = builder(tier);
        let a = kb.add_conv_transpose2d(&wide, &data(wide.weight_len(), 1), &Epilogue::none()).unwrap();
        let b = kb.add_conv_transpose2d(&narrow, &data(narrow.weight_len(), 2), &Epilogue::none()).unwrap();
        let lib = kb.finish().unwrap();
        let (sa, sb) = (lib.strategy(a).unwrap(), lib.strategy(b).unwrap());
        match tier {
            KernelTier::Native(isa) => {
                assert_eq!(sa, KernelStrategy::NativeChannelTiles(isa));
                assert_eq!(sb, KernelStrategy::NativePixelTiles(isa));
                assert!(lib.clif(a).contains("call"));
            }
            _ => assert_eq!((sa, sb), (KernelStrategy::Cranelift, KernelStrategy::Cranelift)),
        }
    }
    // Auto picks the best native ISA when there is one.
    let mut kb = KernelBuilder::new().unwrap();
    let a = kb.add_conv_transpose2d(&wide, &data(wide.weight_len(), 1), &Epilogue::none()).unwrap();
    let lib = kb.finish().unwrap();
    let want = NativeIsa::Best.resolve().map_or(KernelStrategy::Cranelift, KernelStrategy::NativeChannelTiles);
    assert_eq!(lib.strategy(a), Some(want));
    // Auto narrows to AVX2 for multi-tap channel tiles whose output planes are
    // a multiple of 4 KiB apart on AMD CPUs (measured faster on Zen 4, slower
    // on an Intel Xeon); a forced ISA stays.
    let amd = {
        let r = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    };
    let cm =
        ConvTranspose2dGeometry::from_output_padding(1, 16, [16, 16], 32, 1, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1])
            .unwrap();
    let mut kb = KernelBuilder::new().unwrap();
    let a = kb.add_conv_transpose2d(&cm, &data(cm.weight_len(), 1), &Epilogue::none()).unwrap();
    let lib = kb.finish().unwrap();
    let want = match NativeIsa::Best.resolve() {
        Some(NativeIsa::Avx512) if amd && NativeIsa::Avx2.resolve().is_some() => {
            KernelStrategy::NativeChannelTiles(NativeIsa::Avx2)
        }
        Some(isa) => KernelStrategy::NativeChannelTiles(isa),
        None => KernelStrategy::Cranelift,
    };
    assert_eq!(lib.strategy(a), Some(want));
    if NativeIsa::Avx512.resolve().is_some() {
        let mut kb = builder(KernelTier::Native(NativeIsa::Avx512));
        let a = kb.add_conv_transpose2d(&cm, &data(cm.weight_len(), 1), &Epilogue::none()).unwrap();
        let lib = kb.finish().unwrap();
        assert_eq!(lib.strategy(a), Some(KernelStrategy::NativeChannelTiles(NativeIsa::Avx512)));
    }
    // A forced ISA the CPU lacks is an error, not a silent fallback.
    for isa in [NativeIsa::Avx2, NativeIsa::Avx512] {
        let r = KernelBuilder::with_options(Options { tier: KernelTier::Native(isa), ..Options::default() });
        assert_eq!(r.is_ok(), isa.resolve().is_some());
    }
}

/// Single-output-channel k9 s3 p4 op2 layers (AVX-512 s3k9 kernel on AVX-512
/// machines; FSRCNN's last layer) with and without bias / activation, against
/// the reference; the kernel is chosen there.
#[test]
fn stride3_single_channel_matches_reference() {
    for tier in tiers() {
        for (n, c, h, w, groups) in [(1, 5, 7, 32, 1), (2, 3, 3, 64, 1), (1, 4, 5, 32, 2)] {
            let g = ConvTranspose2dGeometry::from_output_padding(
                n,
                c,
                [h, w],
                groups,
                groups,
                [9, 9],
                [3, 3],
                [4, 4],
                [2, 2],
                [1, 1],
            )
            .unwrap();
            let wt = data(g.weight_len(), 9);
            let x = data(g.input_len(), 10);
            for (bias, act) in [(None, Activation::Identity), (Some(data(groups, 11)), Activation::Relu)] {
                let mut kb = builder(tier);
                let ep = Epilogue { bias: bias.clone(), activation: act };
                let id = kb.add_conv_transpose2d(&g, &wt, &ep).unwrap();
                let lib = kb.finish().unwrap();
                if tier == KernelTier::Native(NativeIsa::Avx512) {
                    assert!(lib.clif(id).contains("call"));
                }
                let mut y = vec![0f32; g.output_len()];
                lib.run_all(id, &[&x], &mut y).unwrap();
                let want = conv_transpose_ref(&g, &x, &wt, bias.as_deref(), act);
                check_close(&y, &want, &format!("{tier:?} s3k9 {n}x{c}x{h}x{w} g{groups}"));
            }
        }
    }
}

/// Depthwise 2x upsamplers (AVX-512 dw2x kernel on AVX-512 machines) without
/// bias or activation, against the reference; the kernel is chosen there.
#[test]
fn depthwise_upsampler_matches_reference() {
    for tier in tiers() {
        for (n, c, h, w) in [(1, 4, 7, 48), (2, 2, 2, 16)] {
            let g = ConvTranspose2dGeometry::from_output_padding(
                n,
                c,
                [h, w],
                c,
                c,
                [4, 4],
                [2, 2],
                [1, 1],
                [0, 0],
                [1, 1],
            )
            .unwrap();
            let wt = data(g.weight_len(), 7);
            let x = data(g.input_len(), 8);
            let mut kb = builder(tier);
            let id = kb.add_conv_transpose2d(&g, &wt, &Epilogue::none()).unwrap();
            let lib = kb.finish().unwrap();
            if tier == KernelTier::Native(NativeIsa::Avx512) {
                assert_eq!(lib.strategy(id), Some(KernelStrategy::NativePixelTiles(NativeIsa::Avx512)));
                assert!(lib.clif(id).contains("call"));
            }
            let mut y = vec![0f32; g.output_len()];
            lib.run_all(id, &[&x], &mut y).unwrap();
            let want = conv_transpose_ref(&g, &x, &wt, None, Activation::Identity);
            check_close(&y, &want, &format!("{tier:?} dw2x {n}x{c}x{h}x{w}"));
        }
    }
}
