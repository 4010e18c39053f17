//! Regression tests for the findings of the kiln-jit soundness review (issue
//! 12), one section per finding. Each configuration is run on every JIT tier
//! this CPU has, at 1 and 2 threads, with guard zones, against the
//! reference interpreter. CI also runs this file in a debug build (overflow
//! checks on: see `.ci/run`), where finding 1 aborted the process before the
//! fix.

mod support;

use std::time::{Duration, Instant};

use kiln::jit::{compile_with, CompileError, CompileOptions};
use kiln::runtime::{tensor, Interpreter, Tensor};
use kiln::{Conv2dParams, ConvTranspose2dParams, Graph, GraphBuilder, ParamSource, Shape};

/// Resolves `g` and compares every tier and thread count with the interpreter.
fn check_all_tiers(mut g: Graph, input: &[usize], what: &str) {
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 7 }).unwrap_or_else(|e| panic!("{what}: {e}"));
    let x = tensor::random(input, 11);
    let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let scale = want.iter().flat_map(|t| t.iter()).fold(1e-6f32, |m, v| m.max(v.abs()));
    for (tier_name, tier) in support::jit_tiers() {
        for threads in [1, 2] {
            let opts = CompileOptions { threads, tier, guard_floats: 64, ..Default::default() };
            let exe = compile_with(&g, opts).unwrap_or_else(|e| panic!("{what} [{tier_name}]: {e}"));
            let got = exe.run(std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{what} [{tier_name}]: {e}"));
            for (a, b) in got.iter().zip(&want) {
                let d = tensor::max_abs_diff(a, b).unwrap_or(f32::INFINITY);
                assert!(d <= 1e-4 * scale, "{what} [{tier_name}, {threads} threads]: max diff {d} (scale {scale})");
            }
        }
    }
}

fn conv_transpose(input: [usize; 4], params: ConvTranspose2dParams) -> Graph {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", input).unwrap();
    let y = b.lazy_conv_transpose2d("up", x, params).unwrap();
    b.output(y).unwrap();
    b.finish().unwrap()
}

fn conv(input: [usize; 4], params: Conv2dParams) -> Graph {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", input).unwrap();
    let y = b.lazy_conv2d("c", x, params).unwrap();
    b.output(y).unwrap();
    b.finish().unwrap()
}

/// Finding 1: row segments without vertical taps were marked pairable, and
/// the two-row pixel tile indexed its tap table at `(0 - 1)·ntw`.
#[test]
fn finding1_phases_and_rows_without_taps() {
    check_all_tiers(conv([1, 16, 32, 32], Conv2dParams::new(1, 3).padding(4)), &[1, 16, 32, 32], "conv k3 p4");
    check_all_tiers(
        conv_transpose([1, 8, 12, 12], ConvTranspose2dParams::new(1, 5).stride(2).dilation(2)),
        &[1, 8, 12, 12],
        "convT k5 s2 d2",
    );
    // Kernel smaller than the stride: whole phases are bias-only.
    check_all_tiers(
        conv_transpose([2, 4, 7, 5], ConvTranspose2dParams::new(2, 2).stride(4).padding(1)),
        &[2, 4, 7, 5],
        "convT k2 s4",
    );
}

/// Finding 2: `compile` trusted the shapes stored on nodes. A resolved graph
/// with one wrong shape (through `set_shape`, or JSON) is now refused.
#[test]
fn finding2_inconsistent_stored_shapes_are_refused() {
    let mut g = conv_transpose([1, 4, 8, 8], ConvTranspose2dParams::new(8, 4).stride(2).padding(1));
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 1 }).unwrap();
    let up = g.find("up").expect("node up");
    // A larger output than the kernel writes: the buffer would be read past
    // what the kernel wrote; a smaller one would be written out of bounds.
    // [1, 8, 17, 16] has the right rank and channels but is not what the
    // node's arguments give (no `output_size` is stored), so the
    // interpreter refuses it, and so does the JIT.
    for bad in [[1, 8, 40, 40], [1, 8, 8, 8], [1, 4, 16, 16], [2, 8, 16, 16], [1, 8, 17, 16]] {
        let mut g2 = g.clone();
        g2.set_shape(up, Shape::known(&bad));
        let e = compile_with(&g2, CompileOptions::default()).expect_err("inconsistent shape must be refused");
        assert!(
            matches!(e, CompileError::Shape { .. } | CompileError::BufferMismatch { .. } | CompileError::Kernel { .. }),
            "{bad:?}: {e}"
        );
        assert!(Interpreter::run(&g2, &[tensor::random(&[1, 4, 8, 8], 1)]).is_err(), "{bad:?}: the oracle agrees");
        assert!(e.to_string().contains("up"), "{e}");
        // Same through the lossless JSON form (which may refuse it itself).
        if let Ok(g3) = Graph::from_json(&g2.to_json()) {
            assert!(compile_with(&g3, CompileOptions::default()).is_err(), "{bad:?} via JSON");
        }
    }
    // A graph input declared smaller than the first op expects.
    let mut g4 = g.clone();
    let x = g4.inputs()[0];
    g4.set_shape(x, Shape::known(&[1, 4, 8, 7]));
    let e = compile_with(&g4, CompileOptions::default()).expect_err("input shape mismatch");
    assert!(e.to_string().contains("up"), "{e}");
    // A rank the kernels do not take: an error, not an index panic.
    let mut g5 = g.clone();
    g5.set_shape(x, Shape::known(&[4]));
    assert!(compile_with(&g5, CompileOptions::default()).is_err());
}

/// Finding 2, continued: declared shapes that are wrong but hold the right
/// number of elements, so every buffer length agrees and only comparing
/// shapes can see it. The interpreter refuses each; the JIT must too, with
/// an error naming the node, rather than compute something else.
#[test]
fn finding2_wrong_shapes_with_the_right_length_are_refused() {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", [1, 4, 8, 8]).unwrap();
    let up = b.lazy_conv_transpose2d("up", x, ConvTranspose2dParams::new(4, 4).stride(2).padding(1)).unwrap();
    let bn = b.lazy_batch_norm2d("bn", up, kiln::BatchNorm2dParams::default()).unwrap();
    let act = b.relu("act", bn).unwrap();
    let skip = b.lazy_conv2d("skip", x, Conv2dParams::new(4, 3).padding(1)).unwrap();
    let up2 = b.lazy_conv_transpose2d("up2", skip, ConvTranspose2dParams::new(4, 2).stride(2)).unwrap();
    let sum = b.add("sum", act, up2).unwrap();
    let cat = b.concat("cat", &[sum, up2]).unwrap();
    b.output(cat).unwrap();
    let mut g = b.finish().unwrap();
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 2 }).unwrap();
    let xs = [tensor::random(&[1, 4, 8, 8], 3)];
    assert!(compile_with(&g, CompileOptions::default()).is_ok());
    // Each: a node and a shape with as many elements as the true one.
    let cases: [(&str, &[usize]); 7] = [
        ("up", &[1, 4, 32, 8]),
        ("bn", &[1, 4, 8, 32]),
        ("act", &[1, 16, 8, 8]),
        ("skip", &[1, 4, 4, 16]),
        ("sum", &[1, 4, 16, 16, 1]),
        ("cat", &[1, 4, 32, 16]),
        ("up2", &[1, 2, 16, 32]),
    ];
    for (node, bad) in cases {
        let mut g2 = g.clone();
        let id = g2.find(node).expect("node");
        g2.set_shape(id, Shape::known(bad));
        assert!(Interpreter::run(&g2, &xs).is_err(), "{node} {bad:?}: the interpreter refuses it");
        for (tier_name, tier) in support::jit_tiers() {
            let e = compile_with(&g2, CompileOptions { tier, ..Default::default() })
                .expect_err(&format!("{node} {bad:?} [{tier_name}] must be refused"));
            assert!(matches!(e, CompileError::Shape { .. } | CompileError::Kernel { .. }), "{node} {bad:?}: {e}");
            // The node itself or the first user that sees the wrong shape.
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("`{node}`")) || msg.contains("`") && msg.contains(&format!("{bad:?}")),
                "{node} {bad:?}: {msg}"
            );
        }
    }
    // The graph output marker declaring a reshaped result.
    let mut g3 = g.clone();
    let out = g3.outputs()[0];
    g3.set_shape(out, Shape::known(&[1, 8, 32, 8]));
    assert!(compile_with(&g3, CompileOptions::default()).is_err());
}

/// A weight of +inf on a tap that falls outside the output (cropped by the
/// padding): PyTorch and the interpreter never multiply by it, so the output
/// is finite. The native tiers used to compute that tap against zero
/// padding (inf x 0 = NaN) and filled a row with NaN (fuzz finding jit-2).
#[test]
fn an_infinite_weight_on_a_cropped_tap_stays_finite_on_every_tier() {
    let params = ConvTranspose2dParams::new(3, [2, 4])
        .stride([2, 1])
        .padding([0, 3])
        .output_padding([0, 1])
        .dilation(2)
        .groups(3);
    let mut g = conv_transpose([1, 3, 1, 2], params);
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 5 }).unwrap();
    let up = g.find("up").expect("node up");
    let mut w = g.node(up).param("weight").expect("weight").clone();
    assert_eq!(w.shape(), &[3, 1, 2, 4]);
    // Group 2, kh 1, kw 0: lands at output columns -3 and -2.
    w[[2, 0, 1, 0]] = f32::INFINITY;
    g.set_param(up, "weight", w).unwrap();
    let x = tensor::random(&[1, 3, 1, 2], 4);
    let want = Interpreter::run(&g, std::slice::from_ref(&x)).unwrap();
    assert!(want[0].iter().all(|v| v.is_finite()), "the reference output is finite");
    for (tier_name, tier) in support::jit_tiers() {
        for threads in [1, 2] {
            let exe =
                compile_with(&g, CompileOptions { threads, tier, guard_floats: 64, ..Default::default() }).unwrap();
            let got = exe.run(std::slice::from_ref(&x)).unwrap();
            let d = tensor::max_abs_diff(&got[0], &want[0]).unwrap_or(f32::INFINITY);
            assert!(d <= 1e-5, "[{tier_name}, {threads} threads]: max diff {d}: {:?} vs {:?}", got[0], want[0]);
        }
    }
}

/// A valid layer whose Cranelift kernel would be over a million
/// instructions took 81 s to compile (fuzz finding jit-3). The Cranelift tier
/// now refuses it in well under a second with `TooLarge`; the native tiers,
/// which do not unroll over the kernel, still compile it.
#[test]
fn an_oversized_cranelift_kernel_is_refused_quickly() {
    let params =
        ConvTranspose2dParams::new(1, 40).stride([1, 2]).padding([4, 5]).dilation([2, 6]).output_padding([1, 3]);
    let mut g = conv_transpose([1, 3, 16, 27], params);
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 6 }).unwrap();
    for (tier_name, tier) in support::jit_tiers() {
        let t = Instant::now();
        let r = compile_with(&g, CompileOptions { tier, threads: 1, ..Default::default() });
        let took = t.elapsed();
        assert!(took < Duration::from_secs(10), "[{tier_name}] took {took:?}");
        match (tier_name, r) {
            ("cranelift", Err(CompileError::Kernel { source: kiln::jit::JitError::TooLarge { what, .. }, .. })) => {
                assert_eq!(what, "estimated instructions")
            }
            ("cranelift", r) => panic!("the Cranelift tier must refuse it: {:?}", r.err().map(|e| e.to_string())),
            (_, r) => {
                r.unwrap_or_else(|e| panic!("[{tier_name}]: {e}"));
            }
        }
    }
}

/// Finding 3 is covered by the pool's unit tests (panics contained, absurd
/// thread counts refused); here the public face of the cap.
#[test]
fn finding3_absurd_thread_counts_are_an_error() {
    let mut g = conv_transpose([1, 2, 3, 3], ConvTranspose2dParams::new(2, 2));
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 1 }).unwrap();
    for threads in [kiln::jit::MAX_THREADS + 1, usize::MAX] {
        let e = compile_with(&g, CompileOptions { threads, ..Default::default() }).expect_err("refused");
        assert!(matches!(e, CompileError::Threads { .. }), "{e}");
    }
}

/// Finding 4: the packed-input stack buffer grew with the dilation. Large
/// dilations on 4 KiB-aliased planes with many input channels now compile
/// with a bounded frame (or without packing) and match the interpreter.
#[test]
fn finding4_large_dilation_on_aliased_planes() {
    for (d, c) in [(9, 32), (15, 16), (31, 64)] {
        let what = format!("convT k3 d{d} c{c}");
        check_all_tiers(
            conv_transpose([1, c, 32, 32], ConvTranspose2dParams::new(32, 3).dilation(d).padding(d)),
            &[1, c, 32, 32],
            &what,
        );
    }
    // Pads larger than the kernel, output planes 4 KiB apart.
    check_all_tiers(
        conv([2, 16, 40, 40], Conv2dParams::new(20, 3).padding(4).dilation(2)),
        &[2, 16, 40, 40],
        "conv p4 d2",
    );
}

/// Finding 5: a stride of 16384 on a 2x2 input (a 1 GiB output, under the
/// default memory limit) made the planner allocate gigabytes of phase
/// pairs. It is refused quickly with a clear error.
#[test]
fn finding5_huge_strides_compile_in_bounded_time() {
    let mut g = conv_transpose([1, 1, 2, 2], ConvTranspose2dParams::new(1, 1).stride(16384));
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 1 }).unwrap();
    let t = Instant::now();
    let e = compile_with(&g, CompileOptions { threads: 1, ..Default::default() }).expect_err("refused");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(e.to_string().contains("phase pairs"), "{e}");
    // The compile-time memory budget: packed weights and tables count.
    let mut g = conv_transpose([1, 64, 8, 8], ConvTranspose2dParams::new(64, 4).stride(2).padding(1));
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 1 }).unwrap();
    let e =
        compile_with(&g, CompileOptions { max_memory_bytes: Some(1024), ..Default::default() }).expect_err("budget");
    assert!(e.to_string().contains("compile-time memory"), "{e}");
    assert!(compile_with(&g, CompileOptions { max_memory_bytes: Some(64 << 20), ..Default::default() }).is_ok());
}

/// A graph whose tensors all fit, run twice through one compiled graph: the
/// second run must not depend on state the first left (arena reuse after
/// the soundness changes).
#[test]
fn repeated_runs_agree() {
    let mut g = conv_transpose([2, 8, 9, 9], ConvTranspose2dParams::new(3, 4).stride(2).padding(1));
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 3 }).unwrap();
    let exe = compile_with(&g, CompileOptions { threads: 2, ..Default::default() }).unwrap();
    let x: Tensor = tensor::random(&[2, 8, 9, 9], 5);
    let a = exe.run(std::slice::from_ref(&x)).unwrap();
    let b = exe.run(std::slice::from_ref(&x)).unwrap();
    assert_eq!(tensor::to_vec(&a[0]), tensor::to_vec(&b[0]));
}
