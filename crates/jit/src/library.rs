//! [`KernelBuilder`] compiles kernels into one Cranelift JIT module;
//! [`KernelLibrary`] owns the finished code and packed parameters and runs
//! kernels over work ranges.
//!
//! This is the crate's public face for the graph executor: it validates every
//! request before generating code, packs parameters once, and checks buffer
//! lengths on the safe run path. It does not schedule threads; callers split
//! `0..work_items(id)` among their workers.

use std::ops::Range;
use std::sync::Arc;

use cranelift_codegen::ir::InstBuilder;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::FuncId;

use crate::binary::BinaryKernel;
use crate::chain::ChainKernel;
use crate::codegen::activation::Helpers;
use crate::codegen::conv::{self, ConvKernel};
use crate::codegen::elementwise::{self, CHUNK};
use crate::codegen::native_tier::{self as native_cg, NativeParams};
use crate::codegen::{ConstData, FnCompiler, PTR};
use crate::dwrows::DwRows;
use crate::epilogue::{helper_sigmoid, helper_tanh, Activation, Epilogue, SIGMOID_SYMBOL, TANH_SYMBOL};
use crate::error::JitError;
use crate::geometry::{checked_len, Conv2dGeometry, ConvTranspose2dGeometry};
use crate::microkernel::NativeIsa;
use crate::pack::{block_stride, pack_bias, AlignedBuf};
use crate::plane::PlaneKernel;
use crate::schedule::{block_cost, phase_regions, Blocking, ConvSpec};
use crate::strategy::{self, Native, Pick};
use crate::weight_cache::WeightCache;

/// Largest estimated CLIF instruction count ([`block_cost`] summed) of one
/// Cranelift-tier kernel; beyond it the kernel is refused with
/// [`JitError::TooLarge`]. Measured (release, one core, functions split at
/// `codegen::conv::MAX_FUNCTION_INSTRUCTIONS`): about 9 µs per estimated
/// instruction at the top of the range (a 1.14 M estimate compiled in
/// 9.7 s), 3 µs for the example models (34 k in 95 ms); the largest of the
/// ten benchmark layers is 103 k. The cap keeps any accepted kernel to a few
/// seconds of compile time.
pub const MAX_KERNEL_INSTRUCTIONS: u64 = 400_000;

/// Handle to a kernel of a [`KernelLibrary`] (also valid on the builder that made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelId(usize);

impl KernelId {
    /// Position of the kernel in its library.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Cranelift optimization level for generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// No optimization (fastest compile).
    None,
    /// Optimize for speed (default).
    #[default]
    Speed,
}

/// Which code computes convolution register tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelTier {
    /// Native micro-kernels when the CPU has AVX-512F or AVX2+FMA, else Cranelift.
    #[default]
    Auto,
    /// Pure Cranelift `f32x4` code (portable; the reference tier).
    Cranelift,
    /// Native micro-kernels of the given ISA; building fails if the CPU lacks it.
    /// `Native(NativeIsa::Avx2)` forces 256-bit kernels even on AVX-512 machines.
    Native(NativeIsa),
}

/// Builder configuration; `Options::default()` is what [`KernelBuilder::new`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Cranelift optimization level.
    pub opt_level: OptLevel,
    /// Kernel tier for convolutions (elementwise kernels are always Cranelift).
    pub tier: KernelTier,
    /// Most bytes of compile-time data (packed weights and biases, tile and
    /// tap tables, argument blocks) the library may hold; `None` = no limit
    /// beyond the fixed per-kernel caps. A kernel that would exceed it is
    /// refused with [`JitError::TooLarge`] before the data is allocated.
    pub memory_budget: Option<u64>,
    /// Autotuning: time every strategy that can compute a convolution
    /// (`strategy::candidates`) on this machine and keep the fastest, within
    /// this much compile time per builder (layers after the budget is spent
    /// use the rules). Results are remembered per layer signature for the
    /// life of the process, so a later compile of the same layer costs
    /// nothing, and in the file `$KILN_AUTOTUNE_CACHE` names, if set, for
    /// later processes. `None` (the default): the rules alone.
    pub autotune: Option<std::time::Duration>,
}

/// How a compiled kernel computes its output (see [`KernelLibrary::strategy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelStrategy {
    /// Cranelift code only.
    Cranelift,
    /// Native channel tiles (lanes = output channels; pixels of the whole batch
    /// grouped by tap class; a smaller tile for each class's remainder).
    NativeChannelTiles(NativeIsa),
    /// Native pixel tiles (lanes = output pixels of a phase row), for few
    /// output channels per group.
    NativePixelTiles(NativeIsa),
    /// Depthwise rows: a depthwise transposed convolution with a large
    /// stride, one output row at a time, an axpy of a kernel row per input
    /// pixel (safe Rust, compiled for the baseline ISA, AVX2 and AVX-512;
    /// see `dwrows`).
    DepthwiseRows,
}

/// What a native kernel's entry receives as its second argument.
#[derive(Clone, Copy)]
enum NativeInputs {
    /// The first input's pointer (single-input kernels).
    First,
    /// The array of input pointers.
    All,
}

/// Checks a convolution's weight count and, if it has one, its bias
/// length (`cout` values) before anything is packed; errors name `kernel`.
fn check_parameter_lengths(
    kernel: &str,
    weights: &[f32],
    want_weights: usize,
    epilogue: &Epilogue,
    cout: usize,
) -> Result<(), JitError> {
    if weights.len() != want_weights {
        return Err(JitError::ParameterLength {
            kernel: kernel.to_string(),
            what: "weight",
            expected: want_weights,
            actual: weights.len(),
        });
    }
    match &epilogue.bias {
        Some(bias) if bias.len() != cout => Err(JitError::ParameterLength {
            kernel: kernel.to_string(),
            what: "bias",
            expected: cout,
            actual: bias.len(),
        }),
        _ => Ok(()),
    }
}

/// Static description of a compiled kernel.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// Unique name (also the entry symbol).
    pub name: String,
    /// Number of work items; a run covers a sub-range of `0..work_items`.
    pub work_items: usize,
    /// Required length (floats) of each input.
    pub input_lens: Vec<usize>,
    /// Required length (floats) of the output.
    pub output_len: usize,
    /// Whether the output may be the same buffer as input 0 (elementwise kernels).
    pub in_place: bool,
    /// Arithmetic work of the whole kernel (multiply-adds count 2).
    pub flops: u64,
}

/// The buffer lengths and work of a single-input kernel (every convolution),
/// from which its [`KernelInfo`] is made in one place.
#[derive(Clone, Copy)]
struct KernelIo {
    in_len: usize,
    out_len: usize,
    flops: u64,
}

impl KernelIo {
    fn info(self, name: &str, work_items: usize, in_place: bool) -> KernelInfo {
        KernelInfo {
            name: name.to_string(),
            work_items,
            input_lens: vec![self.in_len],
            output_len: self.out_len,
            in_place,
            flops: self.flops,
        }
    }
}

struct Pending {
    info: KernelInfo,
    entry: FuncId,
    clif: String,
    strategy: KernelStrategy,
}

/// Compiles kernels into one JIT module. See the crate docs for an example.
pub struct KernelBuilder {
    module: Option<JITModule>,
    fc: FnCompiler,
    helpers: Helpers,
    kernels: Vec<Pending>,
    buffers: Vec<AlignedBuf>,
    /// Packed weights, possibly shared with other libraries (see `weights`).
    packed: Vec<Arc<AlignedBuf>>,
    /// Where packed weights come from: a fresh cache per builder, or one
    /// shared by every graph of a `Shared` (see `use_weight_cache`).
    weights: WeightCache,
    tables: Vec<ConstData>,
    // Boxed: generated code holds each kernel's address, which must not move
    // when the vector grows.
    #[allow(clippy::vec_box)]
    planes: Vec<Box<PlaneKernel>>,
    #[allow(clippy::vec_box)]
    binaries: Vec<Box<BinaryKernel>>,
    /// The fused elementwise chains generated code points into.
    #[allow(clippy::vec_box)]
    chains: Vec<Box<ChainKernel>>,
    native: Option<NativeIsa>,
    /// The options it was made with (candidate builders copy them; the
    /// memory budget and whether the tier is `Auto` are read from here).
    options: Options,
    /// A strategy every convolution must use (candidate builders only).
    forced: Option<Pick>,
    /// Compile time spent autotuning so far.
    tuning_spent: std::time::Duration,
    /// Bytes of compile-time data charged so far.
    used: u64,
}

/// Signature of every kernel entry point.
type KernelFn = unsafe extern "C" fn(*const *const f32, *mut f32, usize, usize);

struct Compiled {
    info: KernelInfo,
    clif: String,
    func: KernelFn,
    strategy: KernelStrategy,
}

/// Owner of the finalized JIT module.
///
/// `JITModule` is `Send` but not `Sync`. After finalization the library never
/// touches the module through `&self` (kernels are called through plain
/// function pointers), and `Drop` has exclusive access, so sharing the owner
/// between threads cannot race.
struct ModuleOwner(Option<JITModule>);

// SAFETY: see the type's docs: the module is only accessed through `&mut self` (Drop).
unsafe impl Sync for ModuleOwner {}

impl Drop for ModuleOwner {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the library is being dropped, so no kernel can run anymore and
            // no function pointer obtained from it outlives it.
            unsafe { m.free_memory() };
        }
    }
}

/// Compiled kernels with their packed parameters; `Send + Sync`.
///
/// Running never compiles or allocates. Kernels called with disjoint work
/// ranges write disjoint parts of the output, so one library can serve many
/// threads at once.
pub struct KernelLibrary {
    kernels: Vec<Compiled>,
    // Field order: code is freed before the parameter buffers it points into.
    _module: ModuleOwner,
    _buffers: Vec<AlignedBuf>,
    _packed: Vec<Arc<AlignedBuf>>,
    _tables: Vec<ConstData>,
    #[allow(clippy::vec_box)]
    _planes: Vec<Box<PlaneKernel>>,
    #[allow(clippy::vec_box)]
    _binaries: Vec<Box<BinaryKernel>>,
    #[allow(clippy::vec_box)]
    _chains: Vec<Box<ChainKernel>>,
}

impl KernelBuilder {
    /// Builder for the host ISA at [`OptLevel::Speed`].
    pub fn new() -> Result<Self, JitError> {
        Self::with_opt_level(OptLevel::Speed)
    }

    /// Builder for the host ISA (features such as FMA and AVX detected at run time).
    pub fn with_opt_level(opt: OptLevel) -> Result<Self, JitError> {
        Self::with_options(Options { opt_level: opt, ..Options::default() })
    }

    /// Builder with explicit options (optimization level, kernel tier).
    ///
    /// Fails if `options.tier` forces a native ISA this CPU does not have.
    pub fn with_options(options: Options) -> Result<Self, JitError> {
        let native = match options.tier {
            KernelTier::Cranelift => None,
            KernelTier::Auto => NativeIsa::Best.resolve(),
            KernelTier::Native(isa) => Some(isa.resolve().ok_or_else(|| {
                JitError::codegen("host-isa", format!("native tier {isa:?} is not supported by this CPU"))
            })?),
        };
        let opt = options.opt_level;
        let isa_err = |e: &dyn std::fmt::Display| JitError::codegen("host-isa", e);
        let mut flags = settings::builder();
        let level = match opt {
            OptLevel::None => "none",
            OptLevel::Speed => "speed",
        };
        // Stack probes: channel-tile kernels that pack their input keep a
        // buffer of up to ~25 KiB in their frame; probing touches every page so
        // a deep stack faults on its guard page instead of skipping it.
        for (k, v) in [
            ("opt_level", level),
            ("use_colocated_libcalls", "false"),
            ("is_pic", "false"),
            ("enable_probestack", "true"),
            ("probestack_strategy", "inline"),
        ] {
            flags.set(k, v).map_err(|e| isa_err(&e))?;
        }
        let isa_builder = cranelift_native::builder().map_err(|e| isa_err(&e))?;
        let isa = isa_builder.finish(settings::Flags::new(flags)).map_err(|e| isa_err(&e))?;
        if isa.pointer_type() != PTR {
            return Err(JitError::codegen("host-isa", "only 64-bit hosts are supported"));
        }
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        jb.symbol(TANH_SYMBOL, helper_tanh as *const u8);
        jb.symbol(SIGMOID_SYMBOL, helper_sigmoid as *const u8);
        jb.symbol(crate::pointwise::POINTWISE_SYMBOL, crate::pointwise::helper_pointwise as *const u8);
        let mut module = JITModule::new(jb);
        let helpers = Helpers::declare(&mut module)?;
        Ok(Self {
            module: Some(module),
            fc: FnCompiler::new(),
            helpers,
            kernels: Vec::new(),
            buffers: Vec::new(),
            packed: Vec::new(),
            weights: WeightCache::new(),
            tables: Vec::new(),
            planes: Vec::new(),
            binaries: Vec::new(),
            chains: Vec::new(),
            native,
            options,
            forced: None,
            tuning_spent: std::time::Duration::ZERO,
            used: 0,
        })
    }

    /// Charges `bytes` of compile-time data to the budget before it is
    /// allocated; an error names the kernel and the totals.
    fn charge(&mut self, kernel: &str, bytes: usize) -> Result<(), JitError> {
        let used = self.used.saturating_add(bytes as u64);
        if let Some(limit) = self.options.memory_budget {
            if used > limit {
                return Err(JitError::TooLarge {
                    kernel: kernel.to_string(),
                    what: "compile-time memory (packed weights, tile tables) in bytes",
                    value: used,
                    limit,
                });
            }
        }
        self.used = used;
        Ok(())
    }

    /// Bytes of compile-time data held so far (packed weights, tables).
    pub fn memory_used(&self) -> u64 {
        self.used
    }

    fn module(&mut self) -> Result<&mut JITModule, JitError> {
        self.module.as_mut().ok_or_else(|| JitError::codegen("builder", "module already finalized"))
    }

    fn next_name(&self, kind: &str) -> String {
        format!("k{}_{}", self.kernels.len(), kind)
    }

    /// Takes packed weights from `cache` (and adds new packings to it), so
    /// libraries built with one cache share the buffers of equal weights in
    /// equal layouts (see [`WeightCache`]).
    pub fn use_weight_cache(&mut self, cache: WeightCache) {
        self.weights = cache;
    }

    /// Adds a transposed convolution. `weights` has PyTorch layout
    /// `[C_in, C_out/groups, kH, kW]`; the bias (if any) has `C_out` values.
    /// Input 0 is `[N, C_in, H_in, W_in]`, the output `[N, C_out, H_out, W_out]`.
    /// Work items are `(n, group, channel block)`.
    pub fn add_conv_transpose2d(
        &mut self,
        geom: &ConvTranspose2dGeometry,
        weights: &[f32],
        epilogue: &Epilogue,
    ) -> Result<KernelId, JitError> {
        geom.validate()?;
        let (xl, wl, yl) = geom.sizes()?;
        // Depthwise large-stride layers (bilinear upsamplers) run as rows
        // under the Auto tier; a forced tier or strategy keeps its kernels.
        if self.follows_rules() && DwRows::applies(geom) {
            check_parameter_lengths(&self.next_name("conv_transpose2d"), weights, wl, epilogue, geom.out_channels)?;
            let kernel = PlaneKernel::depthwise_rows(geom, weights, epilogue)?;
            let id = self.add_plane("conv_transpose2d", kernel)?;
            if let Some(k) = self.kernels.get_mut(id.index()) {
                k.strategy = KernelStrategy::DepthwiseRows;
            }
            return Ok(id);
        }
        let spec = ConvSpec::conv_transpose(geom)?;
        let (cig, cog, kk) = (spec.cig, spec.cog, geom.kernel);
        let weight = |g: usize, ci: usize, co: usize, kh: usize, kw: usize| {
            weights[(((g * cig + ci) * cog + co) * kk[0] + kh) * kk[1] + kw]
        };
        let finite = weights.iter().all(|w| w.is_finite());
        self.add_conv(spec, weights, wl, weight, finite, epilogue, xl, yl, geom.flops())
    }

    /// Adds a forward convolution with zero padding. `weights` has PyTorch
    /// layout `[C_out, C_in/groups, kH, kW]`.
    pub fn add_conv2d(
        &mut self,
        geom: &Conv2dGeometry,
        weights: &[f32],
        epilogue: &Epilogue,
    ) -> Result<KernelId, JitError> {
        geom.validate()?;
        let (xl, wl, yl) = geom.sizes()?;
        let spec = ConvSpec::conv(geom)?;
        let (cig, cog, kk) = (spec.cig, spec.cog, geom.kernel);
        let weight = |g: usize, ci: usize, co: usize, kh: usize, kw: usize| {
            weights[(((g * cog + co) * cig + ci) * kk[0] + kh) * kk[1] + kw]
        };
        let finite = weights.iter().all(|w| w.is_finite());
        self.add_conv(spec, weights, wl, weight, finite, epilogue, xl, yl, geom.flops())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_conv(
        &mut self,
        spec: ConvSpec,
        source: &[f32],
        want_weights: usize,
        weight: impl Fn(usize, usize, usize, usize, usize) -> f32,
        weights_finite: bool,
        epilogue: &Epilogue,
        in_len: usize,
        out_len: usize,
        flops: u64,
    ) -> Result<KernelId, JitError> {
        let name = self.next_name(spec.op);
        check_parameter_lengths(&name, source, want_weights, epilogue, spec.groups * spec.cog)?;
        // The native tiers read zero padding for taps that fall outside the
        // input or output and multiply it by the tap's weight, which is
        // exact only for finite weights (0 x inf is NaN, where PyTorch and the
        // interpreter skip the tap). A non-finite weight is rare enough that
        // the Cranelift kernel, which skips such taps, is the right answer.
        if let Some(isa) = self.native.filter(|_| weights_finite) {
            let activation = epilogue.activation;
            let (choice, note) = match self.forced {
                Some(pick) => (strategy::realize(&spec, pick, activation), None),
                None => match self.options.autotune {
                    Some(budget) => {
                        let io = KernelIo { in_len, out_len, flops };
                        let (pick, note) =
                            self.autotune(&spec, isa, budget, source, want_weights, &weight, epilogue, io);
                        (strategy::realize(&spec, pick, activation), note)
                    }
                    None => (self.rule_choice(&spec, isa, activation), None),
                },
            };
            // The rules may keep a layer on the Cranelift tier (tiny
            // reductions) whose unrolled code would exceed its size cap
            // (FCN-32s' depthwise k64 s32): any native plan beats refusing.
            let choice = match choice {
                None if self.forced.is_none()
                    && estimate_cost(&spec, &Blocking::new(spec.cog)) > MAX_KERNEL_INSTRUCTIONS =>
                {
                    strategy::candidates(&spec, isa, activation)
                        .into_iter()
                        .find_map(|p| strategy::realize(&spec, p, activation))
                }
                c => c,
            };
            let native = self.add_native(&name, &spec, choice, source, &weight, epilogue, in_len, out_len, flops)?;
            let id = match native {
                Some(id) => id,
                None => self.add_cranelift_conv(name, spec, source, weight, epilogue, in_len, out_len, flops)?,
            };
            self.annotate(id, note);
            return Ok(id);
        }
        self.add_cranelift_conv(name, spec, source, weight, epilogue, in_len, out_len, flops)
    }

    /// The Cranelift kernel of a convolution (the portable tier).
    #[allow(clippy::too_many_arguments)]
    fn add_cranelift_conv(
        &mut self,
        name: String,
        spec: ConvSpec,
        source: &[f32],
        weight: impl Fn(usize, usize, usize, usize, usize) -> f32,
        epilogue: &Epilogue,
        in_len: usize,
        out_len: usize,
        flops: u64,
    ) -> Result<KernelId, JitError> {
        let blocking = Blocking::new(spec.cog);
        let cost = estimate_cost(&spec, &blocking);
        if cost > MAX_KERNEL_INSTRUCTIONS {
            return Err(JitError::TooLarge {
                kernel: name,
                what: "estimated instructions",
                value: cost,
                limit: MAX_KERNEL_INSTRUCTIONS,
            });
        }
        self.charge(&name, packed_bytes(&spec, &blocking))?;
        let packed = self.weights.packed(&spec, &blocking, source, weight);
        checked_len(spec.op, "packed weights", &[packed.as_slice().len()])?;
        let bias = pack_bias(&spec, &blocking, epilogue.bias.as_deref());
        let kernel = ConvKernel {
            name: &name,
            spec: &spec,
            blocking: &blocking,
            weights_addr: packed.addr(),
            bias_addr: bias.addr(),
            activation: epilogue.activation,
        };
        let helpers = self.helpers;
        let module = self.module.as_mut().ok_or_else(|| JitError::codegen(&name, "module already finalized"))?;
        let emitted = conv::emit(&mut self.fc, module, &helpers, &kernel)?;
        self.packed.push(packed);
        self.buffers.push(bias);
        let info = KernelIo { in_len, out_len, flops }.info(&name, spec.batch * spec.groups * blocking.blocks(), false);
        Ok(self.push(info, emitted.entry, emitted.clif))
    }

    /// The measured rules' strategy for `spec` (the narrower channel-tile ISA
    /// allowed under the `Auto` tier only).
    fn rule_choice(&self, spec: &ConvSpec, isa: NativeIsa, activation: Activation) -> Option<Native> {
        let auto = self.options.tier == KernelTier::Auto;
        strategy::choose(spec, isa, activation, auto, crate::microkernel::prefers_avx2_on_aliased_planes())
    }

    /// Prepends an autotuning report to a kernel's CLIF (what `--emit clif` shows).
    fn annotate(&mut self, id: KernelId, note: Option<String>) {
        if let (Some(note), Some(k)) = (note, self.kernels.get_mut(id.0)) {
            k.clif.insert_str(0, &note);
        }
    }

    /// The fastest strategy for `spec` among [`strategy::candidates`], each
    /// compiled alone and timed on this machine (one warm-up, best of three
    /// single-threaded runs over every work item), and a CLIF comment saying
    /// what was measured. A signature tuned before in this process is not
    /// timed again; once `budget` is spent, the rules decide. A candidate
    /// that fails to build is skipped (the rules' choice never fails where
    /// they would not).
    #[allow(clippy::too_many_arguments)]
    fn autotune(
        &mut self,
        spec: &ConvSpec,
        isa: NativeIsa,
        budget: std::time::Duration,
        source: &[f32],
        want_weights: usize,
        weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
        epilogue: &Epilogue,
        io: KernelIo,
    ) -> (Pick, Option<String>) {
        let activation = epilogue.activation;
        let rule = strategy::pick_of(&self.rule_choice(spec, isa, activation));
        let candidates = strategy::candidates(spec, isa, activation);
        if candidates.len() < 2 {
            return (rule, None);
        }
        let key = tuning_key(spec, isa, epilogue, self.options.opt_level);
        if let Some(&pick) = tuned().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return (pick, Some(format!("; autotuned (remembered): {pick}; the rules pick {rule}\n")));
        }
        if self.tuning_spent >= budget {
            return (rule, Some(format!("; autotuning budget spent: the rules pick {rule}\n")));
        }
        let start = std::time::Instant::now();
        let mut times = Vec::new();
        // The rules' pick first, so that a budget running out mid-layer still
        // leaves it timed against whatever came next.
        let order = std::iter::once(rule).chain(candidates.iter().copied().filter(|&p| p != rule));
        for pick in order {
            if self.tuning_spent + start.elapsed() >= budget && times.len() >= 2 {
                break;
            }
            if let Ok(t) = self.time_candidate(pick, spec, source, want_weights, weight, epilogue, io) {
                times.push((pick, t));
            }
        }
        self.tuning_spent += start.elapsed();
        let Some(&(fastest, t_fast)) = times.iter().min_by_key(|(_, t)| *t) else { return (rule, None) };
        // Timings on a busy machine jitter by a few percent: overrule the
        // measured rules only for a clear win.
        let rule_time = times.iter().find(|(p, _)| *p == rule).map(|&(_, t)| t);
        let best = match rule_time {
            Some(t) if t.as_secs_f64() <= 1.05 * t_fast.as_secs_f64() => rule,
            _ => fastest,
        };
        tuned().lock().unwrap_or_else(|p| p.into_inner()).insert(key, best);
        remember_on_disk(key, best);
        let list: Vec<String> = times.iter().map(|(p, t)| format!("{p} {:.3} ms", t.as_secs_f64() * 1e3)).collect();
        (best, Some(format!("; autotuned: {best} (timed {}; the rules pick {rule})\n", list.join(", "))))
    }

    /// Compiles `spec` alone with strategy `pick` and times it.
    #[allow(clippy::too_many_arguments)]
    fn time_candidate(
        &self,
        pick: Pick,
        spec: &ConvSpec,
        source: &[f32],
        want_weights: usize,
        weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
        epilogue: &Epilogue,
        io: KernelIo,
    ) -> Result<std::time::Duration, JitError> {
        let mut tmp = KernelBuilder::with_options(Options { autotune: None, ..self.options })?;
        tmp.forced = Some(pick);
        // The winner's packing is then found in the cache, not redone.
        tmp.weights = self.weights.clone();
        let finite = true;
        let id = tmp.add_conv(
            spec.clone(),
            source,
            want_weights,
            weight,
            finite,
            epilogue,
            io.in_len,
            io.out_len,
            io.flops,
        )?;
        let lib = tmp.finish()?;
        let x = vec![0.25f32; io.in_len];
        let mut y = vec![0.0f32; io.out_len];
        let items = lib.work_items(id);
        // One warm-up run, then the best of up to three, fewer for slow
        // layers (a 50 ms layer is timed once): timing stays near the budget.
        let warm = std::time::Instant::now();
        lib.run_slices(id, &[&x], &mut y, 0..items)?;
        let runs = if warm.elapsed() > std::time::Duration::from_millis(20) { 1 } else { 3 };
        let mut best = std::time::Duration::MAX;
        for _ in 0..runs {
            let t = std::time::Instant::now();
            lib.run_slices(id, &[&x], &mut y, 0..items)?;
            best = best.min(t.elapsed());
        }
        Ok(best)
    }

    /// Compiles a convolution for the native tier, or returns `None` when no
    /// native strategy applies (the caller then emits the Cranelift kernel).
    #[allow(clippy::too_many_arguments)]
    fn add_native(
        &mut self,
        name: &str,
        spec: &ConvSpec,
        choice: Option<Native>,
        source: &[f32],
        weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
        epilogue: &Epilogue,
        in_len: usize,
        out_len: usize,
        flops: u64,
    ) -> Result<Option<KernelId>, JitError> {
        let io = KernelIo { in_len, out_len, flops };
        // The dedicated kernels are AVX-512 only (`strategy::realize` and
        // `choose` check the CPU).
        let isa = NativeIsa::Avx512;
        match choice {
            None => Ok(None),
            Some(Native::Dw2x) => {
                let module = self.module.as_mut().ok_or_else(|| JitError::codegen(name, "module already finalized"))?;
                let emitted = native_cg::emit_dw2x(
                    &mut self.fc,
                    module,
                    name,
                    spec,
                    weight,
                    epilogue.bias.as_deref(),
                    epilogue.activation,
                )?;
                let items = spec.batch * spec.groups;
                self.push_native(name, emitted, io, items, KernelStrategy::NativePixelTiles(isa)).map(Some)
            }
            Some(Native::S3k9) => {
                let module = self.module.as_mut().ok_or_else(|| JitError::codegen(name, "module already finalized"))?;
                let (emitted, blocks) = native_cg::emit_s3k9(
                    &mut self.fc,
                    module,
                    name,
                    spec,
                    weight,
                    epilogue.bias.as_deref(),
                    epilogue.activation,
                )?;
                let items = spec.batch * spec.groups * blocks;
                self.push_native(name, emitted, io, items, KernelStrategy::NativePixelTiles(isa)).map(Some)
            }
            Some(Native::Pixel(p)) => {
                crate::verify::verify_pv(name, spec, &p)?;
                let (blocking, items, isa) = (p.blocking.clone(), p.work_items(spec), p.isa);
                self.finish_native(
                    name,
                    spec,
                    blocking,
                    source,
                    weight,
                    epilogue,
                    io,
                    items,
                    KernelStrategy::NativePixelTiles(isa),
                    |fc, m, params| native_cg::emit_pv(fc, m, params, &p),
                )
                .map(Some)
            }
            Some(Native::Channel(p)) => {
                crate::verify::verify_cv(name, spec, &p)?;
                // Constant code size: one entry function walks a call list.
                let (blocking, items, strategy) =
                    (p.blocking.clone(), p.work_items(spec), KernelStrategy::NativeChannelTiles(p.isa));
                self.finish_native(
                    name,
                    spec,
                    blocking,
                    source,
                    weight,
                    epilogue,
                    io,
                    items,
                    strategy,
                    |fc, m, params| native_cg::emit_cv(fc, m, params, &p),
                )
                .map(Some)
            }
        }
    }

    /// Records a finished native kernel: charges its constant data, keeps it
    /// alive with the code, and adds the kernel's description.
    fn push_native(
        &mut self,
        name: &str,
        emitted: native_cg::NativeEmitted,
        io: KernelIo,
        work_items: usize,
        strategy: KernelStrategy,
    ) -> Result<KernelId, JitError> {
        self.charge(name, tables_bytes(&emitted.tables))?;
        self.tables.extend(emitted.tables);
        let info = io.info(name, work_items, false);
        self.kernels.push(Pending { info, entry: emitted.entry, clif: emitted.clif, strategy });
        Ok(KernelId(self.kernels.len() - 1))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_native(
        &mut self,
        name: &str,
        spec: &ConvSpec,
        blocking: Blocking,
        source: &[f32],
        weight: &dyn Fn(usize, usize, usize, usize, usize) -> f32,
        epilogue: &Epilogue,
        io: KernelIo,
        work_items: usize,
        strategy: KernelStrategy,
        emit: impl FnOnce(&mut FnCompiler, &mut JITModule, &NativeParams<'_>) -> Result<native_cg::NativeEmitted, JitError>,
    ) -> Result<KernelId, JitError> {
        self.charge(name, packed_bytes(spec, &blocking))?;
        let packed = self.weights.packed(spec, &blocking, source, weight);
        checked_len(spec.op, "packed weights", &[packed.as_slice().len()])?;
        let bias = pack_bias(spec, &blocking, epilogue.bias.as_deref());
        let params = NativeParams {
            name,
            spec,
            weights_addr: packed.addr(),
            bias_addr: bias.addr(),
            activation: epilogue.activation,
        };
        let module = self.module.as_mut().ok_or_else(|| JitError::codegen(name, "module already finalized"))?;
        let emitted = emit(&mut self.fc, module, &params)?;
        self.packed.push(packed);
        self.buffers.push(bias);
        self.push_native(name, emitted, io, work_items, strategy)
    }

    fn push(&mut self, info: KernelInfo, entry: FuncId, clif: String) -> KernelId {
        self.kernels.push(Pending { info, entry, clif, strategy: KernelStrategy::Cranelift });
        KernelId(self.kernels.len() - 1)
    }

    fn elementwise_len(&self, op: &'static str, len: usize) -> Result<(), JitError> {
        if len == 0 {
            return Err(JitError::geometry(op, "length must be positive, got 0"));
        }
        checked_len(op, "tensor", &[len]).map(|_| ())
    }

    /// Adds `out = act(x)` over `len` floats (in place allowed).
    pub fn add_activation(&mut self, len: usize, act: Activation) -> Result<KernelId, JitError> {
        self.add_map("activation", len, 1, act)
    }

    /// Adds `out = act(a + b)` over `len` floats (output may alias input 0 or 1).
    pub fn add_add(&mut self, len: usize, act: Activation) -> Result<KernelId, JitError> {
        self.add_map("add", len, 2, act)
    }

    /// Adds `out = f(x)` over `len` floats for a pointwise activation
    /// computed by the native helper (output may alias the input).
    pub fn add_pointwise(&mut self, len: usize, f: kiln_ir::Pointwise) -> Result<KernelId, JitError> {
        const OP: &str = "pointwise";
        self.elementwise_len(OP, len)?;
        let name = self.next_name(f.mnemonic());
        let helpers = self.helpers;
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(OP, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let x = elementwise::input_ptr(b, p[0], 0);
                let out = p[1];
                elementwise::item_loop(b, m, p, &mut |b, m, item| {
                    elementwise::chunked(b, item, len, &mut |b, count, off| {
                        let (o, i) = (b.ins().iadd(out, off), b.ins().iadd(x, off));
                        helpers.call_pointwise(b, m, f, o, i, count);
                        Ok(())
                    })
                })
            },
        )?;
        let info = KernelInfo {
            name,
            work_items: len.div_ceil(CHUNK),
            input_lens: vec![len],
            output_len: len,
            in_place: true,
            flops: len as u64,
        };
        Ok(self.push(info, id, clif))
    }

    /// Adds `nn.PReLU` with one weight per channel over `[outer, channels,
    /// inner]`: `out = x ≥ 0 ? x : weight[c]·x` (in place allowed). Work items
    /// are channel planes. (A single shared weight is a LeakyReLU.)
    pub fn add_prelu(&mut self, outer: usize, weight: &[f32], inner: usize) -> Result<KernelId, JitError> {
        const OP: &str = "prelu";
        let channels = weight.len();
        for (what, v) in [("outer", outer), ("channels", channels), ("inner", inner)] {
            if v == 0 {
                return Err(JitError::geometry(OP, format!("{what} must be positive, got 0")));
            }
        }
        let len = checked_len(OP, "tensor", &[outer, channels, inner])?;
        let name = self.next_name(OP);
        let mut params = AlignedBuf::zeros(channels);
        params.as_mut_slice().copy_from_slice(weight);
        let addr = params.addr();
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(OP, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let x = elementwise::input_ptr(b, p[0], 0);
                let out = p[1];
                elementwise::item_loop(b, m, p, &mut |b, _m, item| {
                    let c = b.ins().urem_imm_u(item, channels as i64);
                    let c4 = b.ins().imul_imm_s(c, 4);
                    let wa = b.ins().iadd_imm_s(c4, addr);
                    let off = b.ins().imul_imm_s(item, (inner * 4) as i64);
                    let ptrs = [b.ins().iadd(out, off), b.ins().iadd(x, off)];
                    elementwise::prelu_plane(b, inner, &ptrs, wa)
                })
            },
        )?;
        self.buffers.push(params);
        let info = KernelInfo {
            name,
            work_items: outer * channels,
            input_lens: vec![len],
            output_len: len,
            in_place: true,
            flops: 2 * len as u64,
        };
        Ok(self.push(info, id, clif))
    }

    /// Whether convolutions follow the rules with native kernels available
    /// (the Auto tier, nothing forced): the graph lowering may then choose
    /// compositions such as [`crate::col2im`] that forced tiers must not.
    pub(crate) fn native_rules(&self) -> bool {
        self.follows_rules() && self.native.is_some()
    }

    /// Whether kernels are chosen by the rules: the Auto tier, no strategy
    /// forced (candidate builders force one).
    fn follows_rules(&self) -> bool {
        self.options.tier == KernelTier::Auto && self.forced.is_none()
    }

    /// Whether a dedicated kernel serves `geom` on this CPU (the AVX-512
    /// single-channel k9 s3 kernel, which ran FSRCNN x3's head in 0.80 ms
    /// where the GEMM and col2im took 1.37).
    pub(crate) fn has_dedicated_kernel(&self, geom: &ConvTranspose2dGeometry) -> bool {
        self.native == Some(NativeIsa::Avx512)
            && ConvSpec::conv_transpose(geom)
                .is_ok_and(|spec| crate::codegen::native_tier::s3k9_applies(&spec, Activation::Identity))
    }

    /// Adds a plane op (pooling, padding, upsampling, pixel shuffle, norms):
    /// the generated entry forwards its input and work range (output planes)
    /// to [`crate::plane::plane_entry`] with the kernel's tables, which the
    /// library keeps alive. Never in place.
    pub(crate) fn add_plane(&mut self, op: &'static str, kernel: PlaneKernel) -> Result<KernelId, JitError> {
        let name = self.next_name(op);
        let io = kernel.io();
        self.charge(&name, kernel.table_bytes())?;
        let boxed = Box::new(kernel);
        // The box's heap address is stable while the library owns it.
        let addr = &*boxed as *const PlaneKernel as i64;
        let entry = crate::plane::plane_entry as *const u8 as i64;
        let info = KernelInfo {
            name,
            work_items: io.items,
            input_lens: vec![io.in_len],
            output_len: io.out_len,
            in_place: false,
            flops: io.flops,
        };
        let id = self.add_native_entry(op, info, addr, entry, NativeInputs::First)?;
        self.planes.push(boxed);
        Ok(id)
    }

    /// Adds a standalone chain of elementwise ops (never in place): the
    /// generated entry forwards its work range to [`crate::chain::chain_entry`].
    pub(crate) fn add_chain(&mut self, kernel: ChainKernel) -> Result<KernelId, JitError> {
        const OP: &str = "chain";
        let name = self.next_name(OP);
        let (len, items, flops) = kernel.io();
        self.charge(&name, kernel.table_bytes())?;
        let boxed = Box::new(kernel);
        // The box's heap address is stable while the library owns it.
        let addr = &*boxed as *const ChainKernel as i64;
        let entry = crate::chain::chain_entry as *const u8 as i64;
        let info =
            KernelInfo { name, work_items: items, input_lens: vec![len], output_len: len, in_place: false, flops };
        let id = self.add_native_entry(OP, info, addr, entry, NativeInputs::First)?;
        self.chains.push(boxed);
        Ok(id)
    }

    /// Adds broadcasting `a op b` (two inputs; never in place): the
    /// generated entry forwards its inputs and work range to
    /// [`crate::binary::binary_entry`].
    pub(crate) fn add_binary(&mut self, op: &'static str, kernel: BinaryKernel) -> Result<KernelId, JitError> {
        let name = self.next_name(op);
        let (a_len, b_len, out_len, items) = kernel.io();
        let boxed = Box::new(kernel);
        // The box's heap address is stable while the library owns it.
        let addr = &*boxed as *const BinaryKernel as i64;
        let entry = crate::binary::binary_entry as *const u8 as i64;
        let info = KernelInfo {
            name,
            work_items: items,
            input_lens: vec![a_len, b_len],
            output_len: out_len,
            in_place: false,
            flops: out_len as u64,
        };
        let id = self.add_native_entry(op, info, addr, entry, NativeInputs::All)?;
        self.binaries.push(boxed);
        Ok(id)
    }

    /// Emits the generated entry of a native kernel: `entry(kernel, inputs,
    /// out, start, end)`, with `inputs` the first input pointer or the whole
    /// input array, and registers it under `info`.
    fn add_native_entry(
        &mut self,
        op: &'static str,
        info: KernelInfo,
        kernel_addr: i64,
        entry: i64,
        inputs: NativeInputs,
    ) -> Result<KernelId, JitError> {
        let name = info.name.clone();
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(op, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let x = match inputs {
                    NativeInputs::First => elementwise::input_ptr(b, p[0], 0),
                    NativeInputs::All => p[0],
                };
                let sig = b.import_signature(FnCompiler::signature(m, 5));
                let k = b.ins().iconst(crate::codegen::PTR, kernel_addr);
                let f = b.ins().iconst(crate::codegen::PTR, entry);
                b.ins().call_indirect(sig, f, &[k, x, p[1], p[2], p[3]]);
                Ok(())
            },
        )?;
        Ok(self.push(info, id, clif))
    }

    fn add_map(&mut self, op: &'static str, len: usize, n_in: usize, act: Activation) -> Result<KernelId, JitError> {
        self.elementwise_len(op, len)?;
        let name = self.next_name(op);
        let helpers = self.helpers;
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(op, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let ins: Vec<_> = (0..n_in).map(|k| elementwise::input_ptr(b, p[0], k)).collect();
                let out = p[1];
                elementwise::item_loop(b, m, p, &mut |b, m, item| {
                    elementwise::chunked(b, item, len, &mut |b, count, off| {
                        let mut ptrs = vec![b.ins().iadd(out, off)];
                        for &i in &ins {
                            ptrs.push(b.ins().iadd(i, off));
                        }
                        elementwise::map_body(b, m, &helpers, act, count, &ptrs)
                    })
                })
            },
        )?;
        let info = KernelInfo {
            name,
            work_items: len.div_ceil(CHUNK),
            input_lens: vec![len; n_in],
            output_len: len,
            in_place: true,
            flops: len as u64 * n_in as u64,
        };
        Ok(self.push(info, id, clif))
    }

    /// Adds eval-mode BatchNorm folded to `out = act(x·scale[c] + shift[c])`
    /// over `[batch, channels, hw]` (in place allowed). Work items are channel planes.
    pub fn add_batch_norm(
        &mut self,
        batch: usize,
        channels: usize,
        hw: usize,
        scale: &[f32],
        shift: &[f32],
        act: Activation,
    ) -> Result<KernelId, JitError> {
        const OP: &str = "batch_norm";
        let name = self.next_name(OP);
        for (what, v) in [("batch", batch), ("channels", channels), ("hw", hw)] {
            if v == 0 {
                return Err(JitError::geometry(OP, format!("{what} must be positive, got 0")));
            }
        }
        let len = checked_len(OP, "tensor", &[batch, channels, hw])?;
        for (what, p) in [("scale", scale), ("shift", shift)] {
            if p.len() != channels {
                return Err(JitError::ParameterLength { kernel: name, what, expected: channels, actual: p.len() });
            }
        }
        let mut params = AlignedBuf::zeros(2 * channels);
        params.as_mut_slice()[..channels].copy_from_slice(scale);
        params.as_mut_slice()[channels..].copy_from_slice(shift);
        let addr = params.addr();
        let helpers = self.helpers;
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(OP, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let x = elementwise::input_ptr(b, p[0], 0);
                let out = p[1];
                elementwise::item_loop(b, m, p, &mut |b, m, item| {
                    let c = b.ins().urem_imm_u(item, channels as i64);
                    let c4 = b.ins().imul_imm_s(c, 4);
                    let sc = b.ins().iadd_imm_s(c4, addr);
                    let sh = b.ins().iadd_imm_s(c4, addr + 4 * channels as i64);
                    let off = b.ins().imul_imm_s(item, (hw * 4) as i64);
                    let ptrs = [b.ins().iadd(out, off), b.ins().iadd(x, off)];
                    elementwise::batch_norm_plane(b, m, &helpers, act, hw, &ptrs, sc, sh)
                })
            },
        )?;
        self.buffers.push(params);
        let info = KernelInfo {
            name,
            work_items: batch * channels,
            input_lens: vec![len],
            output_len: len,
            in_place: true,
            flops: 2 * len as u64,
        };
        Ok(self.push(info, id, clif))
    }

    /// Adds a channel concatenation: input `i` is `[batch, channels[i], hw]`,
    /// the output `[batch, Σ channels, hw]`. Work items are `(n, input)` pairs.
    pub fn add_concat(&mut self, batch: usize, channels: &[usize], hw: usize) -> Result<KernelId, JitError> {
        const OP: &str = "concat";
        if channels.is_empty() || channels.contains(&0) || batch == 0 || hw == 0 {
            return Err(JitError::geometry(
                OP,
                format!("needs ≥1 input and positive sizes, got batch={batch} channels={channels:?} hw={hw}"),
            ));
        }
        let total = channels
            .iter()
            .try_fold(0usize, |a, &c| a.checked_add(c))
            .ok_or_else(|| JitError::geometry(OP, format!("channel sum of {channels:?} overflows")))?;
        let out_len = checked_len(OP, "output", &[batch, total, hw])?;
        let mut input_lens = Vec::with_capacity(channels.len());
        for &c in channels {
            input_lens.push(checked_len(OP, "input", &[batch, c, hw])?);
        }
        let name = self.next_name(OP);
        let parts = channels.to_vec();
        let module = self.module()?;
        let id = FnCompiler::declare(module, &name, &name, 4)?;
        let clif = self.fc.define(
            self.module.as_mut().ok_or_else(|| JitError::codegen(OP, "finalized"))?,
            &name,
            id,
            4,
            &mut |b, m, p| {
                let inputs = p[0];
                let out = p[1];
                elementwise::item_loop(b, m, p, &mut |b, _m, item| {
                    let k = parts.len() as i64;
                    let n = b.ins().udiv_imm_u(item, k);
                    let which = b.ins().urem_imm_u(item, k);
                    let join = b.create_block();
                    let mut before = 0usize;
                    for (i, &c) in parts.iter().enumerate() {
                        let this = b.create_block();
                        let next = b.create_block();
                        let hit = b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::Equal, which, i as i64);
                        b.ins().brif(hit, this, &[], next, &[]);
                        b.switch_to_block(this);
                        let src = elementwise::input_ptr(b, inputs, i);
                        let so = b.ins().imul_imm_s(n, (c * hw * 4) as i64);
                        let src = b.ins().iadd(src, so);
                        let dof = b.ins().imul_imm_s(n, (total * hw * 4) as i64);
                        let dst = b.ins().iadd(out, dof);
                        let dst = b.ins().iadd_imm_s(dst, (before * hw * 4) as i64);
                        elementwise::copy(b, c * hw, &[dst, src])?;
                        b.ins().jump(join, &[]);
                        b.switch_to_block(next);
                        before += c;
                    }
                    b.ins().jump(join, &[]);
                    b.switch_to_block(join);
                    Ok(())
                })
            },
        )?;
        let info = KernelInfo {
            name,
            work_items: batch * channels.len(),
            input_lens,
            output_len: out_len,
            in_place: false,
            flops: 0,
        };
        Ok(self.push(info, id, clif))
    }

    /// Static description of a kernel added so far.
    pub fn info(&self, id: KernelId) -> Option<&KernelInfo> {
        self.kernels.get(id.0).map(|p| &p.info)
    }

    /// Number of kernels added so far.
    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    /// True if no kernel was added.
    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Finalizes the module (relocation, making code executable) and returns the library.
    pub fn finish(mut self) -> Result<KernelLibrary, JitError> {
        let mut module = self.module.take().ok_or_else(|| JitError::codegen("builder", "module already finalized"))?;
        if let Err(e) = module.finalize_definitions() {
            // SAFETY: no code of this module has been handed out yet.
            unsafe { module.free_memory() };
            return Err(JitError::codegen("finalize", format!("{e:?}")));
        }
        let kernels = std::mem::take(&mut self.kernels)
            .into_iter()
            .map(|p| {
                let ptr = module.get_finalized_function(p.entry);
                // SAFETY: every entry was defined with the signature
                // `(ptr, ptr, i64, i64) -> ()` in the host's default (C) calling convention.
                let func = unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) };
                Compiled { info: p.info, clif: p.clif, func, strategy: p.strategy }
            })
            .collect();
        Ok(KernelLibrary {
            kernels,
            _module: ModuleOwner(Some(module)),
            _buffers: std::mem::take(&mut self.buffers),
            _packed: std::mem::take(&mut self.packed),
            _tables: std::mem::take(&mut self.tables),
            _planes: std::mem::take(&mut self.planes),
            _binaries: std::mem::take(&mut self.binaries),
            _chains: std::mem::take(&mut self.chains),
        })
    }
}

impl Drop for KernelBuilder {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: an unfinished builder never handed out function pointers.
            unsafe { m.free_memory() };
        }
    }
}

/// What autotuning remembers a choice by: everything the strategies' code
/// and speed depend on (the spec's full plan, the ISA, the epilogue's form,
/// the optimization level), hashed.
fn tuning_key(spec: &ConvSpec, isa: NativeIsa, epilogue: &Epilogue, opt: OptLevel) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{spec:?}|{isa:?}|{:?}|{}|{opt:?}", epilogue.activation, epilogue.bias.is_some()).hash(&mut h);
    h.finish()
}

/// The process-wide memory of autotuned choices, first filled from the
/// file `$KILN_AUTOTUNE_CACHE` names, if any (lines `KEY PICK`; lines that do
/// not parse are skipped, so a stale or foreign file costs only re-timing).
fn tuned() -> &'static std::sync::Mutex<std::collections::HashMap<u64, Pick>> {
    static TUNED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u64, Pick>>> =
        std::sync::OnceLock::new();
    TUNED.get_or_init(|| {
        let mut map = std::collections::HashMap::new();
        if let Some(text) = tuning_file().and_then(|path| std::fs::read_to_string(path).ok()) {
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                if let (Some(key), Some(pick), None) = (parts.next(), parts.next(), parts.next()) {
                    if let (Ok(key), Ok(pick)) = (u64::from_str_radix(key, 16), pick.parse::<Pick>()) {
                        map.insert(key, pick);
                    }
                }
            }
        }
        std::sync::Mutex::new(map)
    })
}

/// The on-disk autotuning cache, if `$KILN_AUTOTUNE_CACHE` names one.
fn tuning_file() -> Option<std::path::PathBuf> {
    std::env::var_os("KILN_AUTOTUNE_CACHE").filter(|p| !p.is_empty()).map(Into::into)
}

/// Appends a new choice to the on-disk cache. Best effort: a cache that
/// cannot be written only means the next process times the layer again.
fn remember_on_disk(key: u64, pick: Pick) {
    use std::io::Write;
    if let Some(path) = tuning_file() {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{key:016x} {pick}");
        }
    }
}

/// Bytes of packed weights and bias for `spec` under `blocking` (saturating).
fn packed_bytes(spec: &ConvSpec, blocking: &Blocking) -> usize {
    let slots = spec.groups.saturating_mul(blocking.blocks());
    let floats = block_stride(spec, blocking).saturating_add(blocking.slot_channels()).saturating_mul(slots);
    floats.saturating_mul(4)
}

/// Bytes of the constant tables of an emitted kernel.
fn tables_bytes(tables: &[ConstData]) -> usize {
    tables.iter().map(ConstData::bytes).sum()
}

/// Estimated CLIF instructions of a convolution kernel.
fn estimate_cost(spec: &ConvSpec, blocking: &Blocking) -> u64 {
    let mut variants = Vec::new();
    if blocking.nb_full > 0 {
        variants.push(blocking.full);
    }
    variants.extend(blocking.tail);
    let mut total = 0u64;
    for v in variants {
        for &pair in spec.phase_pairs() {
            for r in phase_regions(spec, pair, v.p) {
                total = total.saturating_add(r.blocks().map(|b| block_cost(b, v.v)).sum());
            }
            if total > MAX_KERNEL_INSTRUCTIONS {
                return total;
            }
        }
    }
    total
}

impl KernelLibrary {
    fn get(&self, id: KernelId) -> Result<&Compiled, JitError> {
        self.kernels.get(id.0).ok_or(JitError::UnknownKernel { id: id.0, count: self.kernels.len() })
    }

    /// Number of kernels.
    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    /// True if the library has no kernels.
    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Ids of all kernels, in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = KernelId> {
        (0..self.kernels.len()).map(KernelId)
    }

    /// Static description of a kernel.
    pub fn info(&self, id: KernelId) -> Result<&KernelInfo, JitError> {
        self.get(id).map(|k| &k.info)
    }

    /// Number of work items of a kernel (0 for an unknown id).
    pub fn work_items(&self, id: KernelId) -> usize {
        self.get(id).map_or(0, |k| k.info.work_items)
    }

    /// How kernel `id` computes (native or Cranelift); `None` for an unknown id.
    pub fn strategy(&self, id: KernelId) -> Option<KernelStrategy> {
        self.get(id).ok().map(|k| k.strategy)
    }

    /// CLIF text of every function of a kernel, as generated (before
    /// Cranelift's optimizations); empty for an unknown id.
    pub fn clif(&self, id: KernelId) -> &str {
        self.get(id).map_or("", |k| k.clif.as_str())
    }

    /// Runs work items `range` of kernel `id` on raw buffers.
    ///
    /// Checks the id, the number of inputs and the range; not the buffers.
    ///
    /// # Safety
    /// Each `inputs[i]` must be valid for reads of `info(id).input_lens[i]`
    /// floats and `output` for writes of `info(id).output_len` floats. The
    /// output must not overlap any input, except that kernels with
    /// `info.in_place` accept `output == inputs[0]` (and `add` also
    /// `output == inputs[1]`). Concurrent runs must use disjoint ranges on the
    /// same output and must not write buffers another run reads.
    pub unsafe fn run(
        &self,
        id: KernelId,
        inputs: &[*const f32],
        output: *mut f32,
        range: Range<usize>,
    ) -> Result<(), JitError> {
        let k = self.get(id)?;
        if inputs.len() != k.info.input_lens.len() {
            return Err(JitError::InputCount {
                kernel: k.info.name.clone(),
                expected: k.info.input_lens.len(),
                actual: inputs.len(),
            });
        }
        if range.start > range.end || range.end > k.info.work_items {
            return Err(JitError::WorkRange {
                kernel: k.info.name.clone(),
                start: range.start,
                end: range.end,
                items: k.info.work_items,
            });
        }
        if range.is_empty() {
            return Ok(());
        }
        // SAFETY: the function was compiled for exactly these buffer sizes, the range is
        // within its work items, and the caller upholds the buffer contract above.
        unsafe { (k.func)(inputs.as_ptr(), output, range.start, range.end) };
        Ok(())
    }

    /// Safe wrapper of [`Self::run`]: checks every buffer length.
    pub fn run_slices(
        &self,
        id: KernelId,
        inputs: &[&[f32]],
        output: &mut [f32],
        range: Range<usize>,
    ) -> Result<(), JitError> {
        let k = self.get(id)?;
        if inputs.len() != k.info.input_lens.len() {
            return Err(JitError::InputCount {
                kernel: k.info.name.clone(),
                expected: k.info.input_lens.len(),
                actual: inputs.len(),
            });
        }
        for (i, (x, &want)) in inputs.iter().zip(&k.info.input_lens).enumerate() {
            if x.len() != want {
                return Err(JitError::BufferLength {
                    kernel: k.info.name.clone(),
                    which: format!("input {i}"),
                    expected: want,
                    actual: x.len(),
                });
            }
        }
        if output.len() != k.info.output_len {
            return Err(JitError::BufferLength {
                kernel: k.info.name.clone(),
                which: "output".into(),
                expected: k.info.output_len,
                actual: output.len(),
            });
        }
        let ptrs: Vec<*const f32> = inputs.iter().map(|x| x.as_ptr()).collect();
        // SAFETY: lengths checked above; `&mut` output cannot alias the shared inputs.
        unsafe { self.run(id, &ptrs, output.as_mut_ptr(), range) }
    }

    /// [`Self::run_slices`] over all work items.
    pub fn run_all(&self, id: KernelId, inputs: &[&[f32]], output: &mut [f32]) -> Result<(), JitError> {
        self.run_slices(id, inputs, output, 0..self.work_items(id))
    }
}

#[cfg(test)]
mod autotune_tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    /// Every candidate strategy of layers from the suite's classes computes
    /// what the Cranelift kernel computes, so whatever autotuning picks is
    /// right.
    #[test]
    fn every_candidate_strategy_agrees_with_the_cranelift_kernel() {
        // (batch, cin, [h, w], cout, groups, kernel, stride, padding, output_padding, dilation)
        #[allow(clippy::type_complexity)]
        let layers: &[(usize, usize, [usize; 2], usize, usize, usize, usize, usize, usize, usize)] = &[
            (1, 32, [16, 16], 32, 32, 4, 2, 1, 0, 1), // depthwise 2x (dw2x)
            (1, 16, [12, 32], 1, 1, 9, 3, 4, 2, 1),   // FSRCNN x3 head (s3k9: rows a multiple of 32)
            (1, 16, [11, 13], 3, 1, 9, 2, 4, 1, 1),   // k9 x2 head, odd sizes
            (2, 24, [15, 23], 40, 1, 3, 2, 1, 1, 1),  // CycleGAN upsampler, prime-ish sizes
            (1, 8, [7, 9], 12, 4, 4, 2, 1, 0, 1),     // grouped
            (2, 6, [9, 9], 5, 1, 3, 1, 2, 0, 2),      // dilated stride 1
        ];
        let mut seen = std::collections::HashSet::new();
        for &(n, ci, hw, co, g, k, st, p, op, d) in layers {
            let geom = ConvTranspose2dGeometry::from_output_padding(
                n,
                ci,
                hw,
                co,
                g,
                [k, k],
                [st, st],
                [p, p],
                [op, op],
                [d, d],
            )
            .expect("geometry");
            let spec = ConvSpec::conv_transpose(&geom).expect("spec");
            let (xl, wl, yl) = geom.sizes().expect("sizes");
            let x: Vec<f32> = (0..xl).map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0).collect();
            let w: Vec<f32> = (0..wl).map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 1.0).collect();
            let bias: Vec<f32> = (0..co).map(|c| c as f32 * 0.01).collect();
            let epilogue = Epilogue::bias(bias).with_activation(Activation::LeakyRelu(0.2));
            let run = |pick: Pick| {
                let mut kb = KernelBuilder::new().expect("builder");
                kb.forced = Some(pick);
                let id = kb.add_conv_transpose2d(&geom, &w, &epilogue).expect("kernel");
                let strategy = kb.kernels[id.0].strategy;
                let lib = kb.finish().expect("finish");
                let mut y = vec![0.0f32; yl];
                lib.run_slices(id, &[&x], &mut y, 0..lib.work_items(id)).expect("runs");
                (y, strategy)
            };
            let (want, _) = run(Pick::Cranelift);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let native = NativeIsa::Best.resolve();
            let picks = native.map_or_else(Vec::new, |isa| strategy::candidates(&spec, isa, epilogue.activation));
            seen.extend(picks.iter().copied());
            for pick in picks {
                let (got, strategy) = run(pick);
                let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(
                    diff <= 1e-4 * scale,
                    "{pick} ({strategy:?}) on {:?}: max diff {diff}",
                    (n, ci, hw, co, g, k, st, p, op, d)
                );
            }
        }
        if NativeIsa::Avx512.resolve().is_some() {
            for pick in [Pick::Dw2x, Pick::S3k9, Pick::Pixel(NativeIsa::Avx512), Pick::Channel(NativeIsa::Avx512)] {
                assert!(seen.contains(&pick), "{pick} was never a candidate: {seen:?}");
            }
        }
        if NativeIsa::Avx2.resolve().is_some() {
            for pick in [Pick::Pixel(NativeIsa::Avx2), Pick::Channel(NativeIsa::Avx2)] {
                assert!(seen.contains(&pick), "{pick} was never a candidate: {seen:?}");
            }
        }
    }
}
