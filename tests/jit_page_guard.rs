//! Read-side bounds checking of compiled graphs: every graph input and
//! output buffer is placed directly against a `PROT_NONE` page (once ending
//! at the page, once starting at it), so a kernel that reads or writes even
//! one float outside its caller's buffers faults instead of silently reading
//! a neighbour. (The canary guards of `jit_safety.rs` only see writes.)
//! Configurations cover the classes that broke before: phases without taps,
//! pads wider than the kernel, large dilations, 4 KiB-aliased planes, many
//! input channels per group, depthwise and single-channel layers, plus a
//! seeded random sample; every tier this CPU has, 1 and 2 threads, and the
//! results must match the interpreter.

#![cfg(unix)]

mod support;

use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{tensor, Interpreter, Rng};
use kiln::{Conv2dParams, ConvTranspose2dParams, Graph, GraphBuilder, ParamSource};

const PAGE: usize = 4096;

/// `len` floats whose first (`at_start`) or last float touches a
/// `PROT_NONE` page; the other side is guarded by a page too, at a distance
/// of less than a page.
struct Guarded {
    base: *mut u8,
    total: usize,
    data: *mut f32,
    len: usize,
}

impl Guarded {
    fn new(len: usize, at_start: bool) -> Guarded {
        let bytes = (len * 4).max(4);
        let data_pages = bytes.div_ceil(PAGE);
        let total = (data_pages + 2) * PAGE;
        // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of {total} bytes failed");
        let base = base.cast::<u8>();
        // SAFETY: both ranges are whole pages inside the mapping just created.
        unsafe {
            assert_eq!(libc::mprotect(base.cast(), PAGE, libc::PROT_NONE), 0);
            assert_eq!(libc::mprotect(base.add(total - PAGE).cast(), PAGE, libc::PROT_NONE), 0);
        }
        let offset = if at_start { PAGE } else { total - PAGE - len * 4 };
        // SAFETY: `offset..offset + 4·len` lies in the read-write pages of the mapping.
        let data = unsafe { base.add(offset) }.cast::<f32>();
        Guarded { base, total, data, len }
    }

    fn slice(&self) -> &[f32] {
        // SAFETY: `data` points to `len` floats of the live, read-write, zero-initialized mapping.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    fn slice_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `slice`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no slice outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.total) };
    }
}

fn resolved(mut g: Graph) -> Graph {
    kiln::passes::resolve(&mut g, ParamSource::Init { seed: 5 }).expect("resolve");
    g
}

fn conv_transpose(input: [usize; 4], p: ConvTranspose2dParams) -> Graph {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", input).unwrap();
    let y = b.lazy_conv_transpose2d("up", x, p).unwrap();
    let y = b.relu("act", y).unwrap();
    b.output(y).unwrap();
    resolved(b.finish().unwrap())
}

fn conv(input: [usize; 4], p: Conv2dParams) -> Graph {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", input).unwrap();
    let y = b.lazy_conv2d("c", x, p).unwrap();
    b.output(y).unwrap();
    resolved(b.finish().unwrap())
}

/// Runs `g` with page-guarded inputs and outputs on every tier and thread
/// count, both alignments, and compares with the interpreter.
fn check(g: &Graph, what: &str) {
    let shapes: Vec<Vec<usize>> = g.inputs().iter().map(|&i| g.node(i).shape().as_known().expect("known")).collect();
    let xs: Vec<_> = shapes.iter().enumerate().map(|(k, s)| tensor::random(s, 100 + k as u64)).collect();
    let want = Interpreter::run(g, &xs).unwrap_or_else(|e| panic!("{what}: {e}"));
    let scale = want.iter().flat_map(|t| t.iter()).fold(1e-6f32, |m, v| m.max(v.abs()));
    // Auto too: it differs from the forced tiers where the rules pick a
    // kernel no forced tier has (depthwise rows).
    let auto = ("auto", kiln::jit::KernelTier::Auto);
    for (tier_name, tier) in support::jit_tiers().into_iter().chain([auto]) {
        for threads in [1, 2] {
            let exe = compile_with(g, CompileOptions { threads, tier, ..Default::default() })
                .unwrap_or_else(|e| panic!("{what} [{tier_name}]: {e}"));
            for at_start in [false, true] {
                let mut ins: Vec<Guarded> = xs.iter().map(|x| Guarded::new(x.len(), at_start)).collect();
                for (buf, x) in ins.iter_mut().zip(&xs) {
                    buf.slice_mut().copy_from_slice(&tensor::to_vec(x));
                }
                let mut outs: Vec<Guarded> = want.iter().map(|t| Guarded::new(t.len(), at_start)).collect();
                {
                    let in_views: Vec<&[f32]> = ins.iter().map(Guarded::slice).collect();
                    let mut out_views: Vec<&mut [f32]> = outs.iter_mut().map(Guarded::slice_mut).collect();
                    exe.run_into(&in_views, &mut out_views).unwrap_or_else(|e| panic!("{what} [{tier_name}]: {e}"));
                }
                for (o, w) in outs.iter().zip(&want) {
                    let d = o.slice().iter().zip(w.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(d <= 1e-4 * scale, "{what} [{tier_name}, {threads} threads]: max diff {d}");
                }
            }
        }
    }
}

#[test]
fn edge_classes_stay_inside_guarded_buffers() {
    let cases: Vec<(&str, Graph)> = vec![
        ("conv k3 p4 (bias-only rows)", conv([1, 16, 32, 32], Conv2dParams::new(1, 3).padding(4))),
        (
            "convT k5 s2 d2 (tapless phases)",
            conv_transpose([1, 8, 12, 12], ConvTranspose2dParams::new(1, 5).stride(2).dilation(2)),
        ),
        ("convT k2 s4", conv_transpose([2, 4, 7, 5], ConvTranspose2dParams::new(2, 2).stride(4).padding(1))),
        (
            // Channel tiles with hole rows: the last row's masked block ends at the buffer's end.
            "convT k1 s4 op3 (hole fills)",
            conv_transpose([1, 24, 6, 5], ConvTranspose2dParams::new(20, 1).stride(4).output_padding(3)),
        ),
        (
            "convT k3 s4 (holes, partial block)",
            conv_transpose([2, 19, 9, 11], ConvTranspose2dParams::new(40, 3).stride(4).padding(1).output_padding(1)),
        ),
        ("convT d9 aliased", conv_transpose([1, 32, 32, 32], ConvTranspose2dParams::new(32, 3).dilation(9).padding(9))),
        ("convT dcgan-like", conv_transpose([2, 64, 8, 8], ConvTranspose2dParams::new(32, 4).stride(2).padding(1))),
        (
            "convT depthwise 2x",
            conv_transpose([1, 8, 16, 32], ConvTranspose2dParams::new(8, 4).stride(2).padding(1).groups(8)),
        ),
        (
            "convT s3 k9 (fsrcnn)",
            conv_transpose([1, 8, 6, 32], ConvTranspose2dParams::new(1, 9).stride(3).padding(4).output_padding(2)),
        ),
        ("convT 1x1 input", conv_transpose([4, 16, 1, 1], ConvTranspose2dParams::new(40, 4))),
        // GEMM + col2im (Auto tier): few output channels, large kernels.
        (
            "convT k9 s2 one channel (fsrcnn x2, col2im)",
            conv_transpose([2, 12, 9, 11], ConvTranspose2dParams::new(1, 9).stride(2).padding(4).output_padding(1)),
        ),
        (
            "convT k6 s2 two channels, dilated (col2im)",
            conv_transpose([1, 8, 7, 5], ConvTranspose2dParams::new(2, 6).stride(2).padding(3).dilation(2)),
        ),
        ("convT k3 s1 grouped (col2im)", conv_transpose([3, 16, 6, 8], ConvTranspose2dParams::new(4, 3).groups(2))),
        (
            "convT k3 s4 holes (col2im)",
            conv_transpose([1, 9, 5, 4], ConvTranspose2dParams::new(1, 3).stride(4).output_padding(2)),
        ),
        (
            // Depthwise rows (Auto tier): the last row's partial block ends at the buffer's end.
            "convT depthwise k64 s32 (fcn32)",
            conv_transpose([1, 3, 3, 2], ConvTranspose2dParams::new(3, 64).stride(32).padding(16).groups(3)),
        ),
        ("conv p4 d2 aliased out", conv([2, 16, 40, 40], Conv2dParams::new(20, 3).padding(4).dilation(2))),
        ("conv stride 2", conv([1, 20, 17, 13], Conv2dParams::new(24, 3).stride(2).padding(1))),
    ];
    for (what, g) in &cases {
        check(g, what);
    }
}

#[test]
fn random_configurations_stay_inside_guarded_buffers() {
    let mut rng = Rng::new(2026);
    let mut pick = |lo: usize, hi: usize| lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
    let mut done = 0;
    while done < 24 {
        let groups = [1, 1, 2, 4][pick(0, 3)];
        let cin = groups * pick(1, 20);
        let cout = groups * pick(1, 12);
        let (h, w) = (pick(1, 12), pick(1, 20));
        let (k, s, d) = (pick(1, 5), pick(1, 4), pick(1, 3));
        let pad = pick(0, 5);
        let op = pick(0, s.max(d) - 1);
        let params =
            ConvTranspose2dParams::new(cout, k).stride(s).padding(pad).dilation(d).output_padding(op).groups(groups);
        let mut b = GraphBuilder::new("r");
        let Ok(x) = b.input("x", [pick(1, 3), cin, h, w]) else { continue };
        let Ok(y) = b.lazy_conv_transpose2d("up", x, params) else { continue };
        if b.output(y).is_err() {
            continue;
        }
        let Ok(mut g) = b.finish() else { continue };
        // Configurations PyTorch refuses (output smaller than 1) are skipped.
        if kiln::passes::resolve(&mut g, ParamSource::Init { seed: done as u64 }).is_err() {
            continue;
        }
        check(&g, &format!("random #{done}: cin {cin} cout {cout} g {groups} {h}x{w} k{k} s{s} p{pad} d{d} op{op}"));
        done += 1;
    }
}
