//! After its first run, a compiled graph runs without allocating: scratch
//! buffers come from the reused arena, the thread pool's workers already
//! exist, and `run_into` writes into the caller's buffers. Checked with a
//! counting global allocator (this binary holds this one test only, so no
//! other test allocates concurrently).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln::jit::{compile_with, CompileOptions};
use kiln::runtime::{tensor, RandomTensor, Rng};
use kiln::ParamSource;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn runs_after_the_first_do_not_allocate() {
    for model in ["dcgan.json", "unet_tail.json", "decoder.json"] {
        let mut g = kiln::load_model(format!("{}/examples/{model}", env!("CARGO_MANIFEST_DIR"))).expect("model");
        kiln::passes::resolve(&mut g, ParamSource::Init { seed: 1 }).expect("resolves");
        for threads in [1, 2] {
            let exe = compile_with(&g, CompileOptions { threads, ..Default::default() }).expect("compiles");
            let inputs: Vec<Vec<f32>> = g
                .inputs()
                .iter()
                .map(|&i| tensor::to_vec(&Rng::new(3).tensor(&g.node(i).shape().as_known().expect("known"))))
                .collect();
            let mut outputs: Vec<Vec<f32>> = g
                .output_values()
                .iter()
                .map(|&o| vec![0.0; g.node(o).shape().num_elements().expect("known")])
                .collect();
            let ins: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            exe.run_into(&ins, &mut outs).expect("first run");
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            for _ in 0..5 {
                exe.run_into(&ins, &mut outs).expect("run");
            }
            let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(allocated, 0, "{model} on {threads} thread(s): {allocated} allocations in 5 runs");
            // The counter does count: an ordinary run allocates its output tensors.
            let tensors: Vec<_> =
                g.inputs().iter().map(|&i| Rng::new(3).tensor(&g.node(i).shape().as_known().expect("known"))).collect();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            exe.run(&tensors).expect("run");
            assert!(ALLOCATIONS.load(Ordering::SeqCst) > before);
        }
    }
    model_hits_do_not_allocate();
}

/// A `kiln::Model` call whose versions are cached allocates nothing either,
/// also when it splits the batch into chunks (5 = 4 + 1 here). Called from
/// the one test above: this binary must run one test at a time.
fn model_hits_do_not_allocate() {
    let dir = format!("{}/tests/data/dynamic", env!("CARGO_MANIFEST_DIR"));
    let graph = kiln::load_model(format!("{dir}/decoder.json")).expect("model");
    let weights = kiln::load_weights(format!("{dir}/decoder.safetensors")).expect("weights");
    let options =
        kiln::ModelOptions { compile: CompileOptions { threads: 2, ..Default::default() }, ..Default::default() };
    let model = kiln::Model::new(graph, weights, options).expect("model");
    for shape in [[5usize, 6, 4, 5], [1, 6, 4, 5]] {
        let x = tensor::to_vec(&Rng::new(4).tensor(&shape));
        let mut y = vec![0.0; model.output_shapes(&[&shape]).expect("shapes")[0].iter().product()];
        model.run_into(&[&shape], &[&x], &mut [&mut y]).expect("first run compiles");
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..5 {
            model.run_into(&[&shape], &[&x], &mut [&mut y]).expect("run");
        }
        let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(allocated, 0, "Model::run_into at {shape:?}: {allocated} allocations in 5 cached runs");
    }
}
