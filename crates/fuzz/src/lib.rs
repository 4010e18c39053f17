//! `kiln-fuzz`: a fuzz harness for Kiln that runs on stable Rust.
//!
//! Every reader of untrusted bytes has a target (the model JSON format, the
//! lossless graph JSON, safetensors, `.npy`, ONNX), and one more target generates
//! random valid and invalid graphs and compiles them on every JIT tier this
//! CPU has, comparing the results with the reference interpreter.
//!
//! A target is a function `fn(&[u8]) -> Outcome`. The fuzz loop ([`fuzz`])
//! derives each iteration's input deterministically from `(seed, target,
//! iteration)` by mutating a seed corpus ([`mutate`]) or by generating a
//! graph ([`targets::graphs`]), runs the target under
//! [`std::panic::catch_unwind`] and records every panic and every
//! [`Outcome::Mismatch`] as a [`Finding`] with the input that caused it.
//! Aborts, segfaults and stack overflows cannot be caught in-process: the
//! `kiln-fuzz` binary runs the loop in a worker child process and attributes
//! such deaths to the input the worker wrote to disk just before running it.

#![warn(missing_docs)]

pub mod exec;
pub mod mutate;
pub mod targets;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

pub use kiln_ir::rng::SplitMix64;

/// What a target made of one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (parsed, resolved, compiled, ran and agreed, as far as the target goes).
    Ok,
    /// Refused with an error: the expected answer to malformed input.
    Rejected(String),
    /// A check failed: the JIT and the interpreter disagree, a round trip
    /// changed the data, a guard zone was overwritten, and so on.
    Mismatch(String),
}

/// Why an input is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The target panicked; the panic message and location.
    Panic(String),
    /// The target returned [`Outcome::Mismatch`].
    Mismatch(String),
    /// The worker process died (signal or unexpected exit status) on this input.
    Crash(String),
    /// The worker made no progress for too long on this input.
    Hang(String),
}

impl FindingKind {
    /// A short label: `panic`, `mismatch`, `crash` or `hang`.
    pub fn label(&self) -> &'static str {
        match self {
            FindingKind::Panic(_) => "panic",
            FindingKind::Mismatch(_) => "mismatch",
            FindingKind::Crash(_) => "crash",
            FindingKind::Hang(_) => "hang",
        }
    }

    /// The details (message, location, signal).
    pub fn message(&self) -> &str {
        match self {
            FindingKind::Panic(m) | FindingKind::Mismatch(m) | FindingKind::Crash(m) | FindingKind::Hang(m) => m,
        }
    }

    /// A deduplication key: the label and the first line of the message with
    /// digits removed (so the same bug with different numbers counts once).
    pub fn signature(&self) -> String {
        let first = self.message().lines().next().unwrap_or("");
        let squashed: String = first.chars().filter(|c| !c.is_ascii_digit()).take(160).collect();
        format!("{}: {squashed}", self.label())
    }
}

/// One reported input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The target that was run.
    pub target: Target,
    /// The iteration that produced the input.
    pub iteration: u64,
    /// What went wrong.
    pub kind: FindingKind,
    /// The input.
    pub input: Vec<u8>,
}

/// The fuzz targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The hand-writable model JSON (`kiln_ir::parse_model`), then resolve, compile and run.
    ModelJson,
    /// The lossless graph JSON (`Graph::from_json`), round trip, then run.
    GraphJson,
    /// safetensors (`WeightStore::from_bytes`), round trip.
    Safetensors,
    /// `.npy` (`kiln_runtime::npy::from_bytes`), round trip.
    Npy,
    /// ONNX (`kiln_onnx::OnnxModel::from_bytes`), accessor consistency, re-encoding.
    Onnx,
    /// Generated graphs compiled on every JIT tier at 1 and 2 threads vs the interpreter.
    Graphs,
}

impl Target {
    /// Every target, in the order `--target all` runs them.
    pub const ALL: [Target; 6] =
        [Target::ModelJson, Target::GraphJson, Target::Safetensors, Target::Npy, Target::Onnx, Target::Graphs];

    /// The command-line name (`model-json`, ...), also the corpus directory name.
    pub fn name(self) -> &'static str {
        match self {
            Target::ModelJson => "model-json",
            Target::GraphJson => "graph-json",
            Target::Safetensors => "safetensors",
            Target::Npy => "npy",
            Target::Onnx => "onnx",
            Target::Graphs => "graphs",
        }
    }

    /// The target named `name` (see [`Target::name`]).
    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The file extension of reproducers.
    pub fn extension(self) -> &'static str {
        match self {
            Target::ModelJson | Target::GraphJson | Target::Graphs => "json",
            Target::Safetensors => "safetensors",
            Target::Npy => "npy",
            Target::Onnx => "onnx",
        }
    }

    /// Runs the target on one input (may panic; see [`run_one`]).
    pub fn run(self, input: &[u8]) -> Outcome {
        match self {
            Target::ModelJson => targets::model_json::run(input),
            Target::GraphJson => targets::graph_json::run(input),
            Target::Safetensors => targets::safetensors::run(input),
            Target::Npy => targets::npy::run(input),
            Target::Onnx => targets::onnx::run(input),
            Target::Graphs => targets::graphs::run(input),
        }
    }

    /// Built-in seeds, generated with Kiln's own writers (added to any corpus files).
    pub fn builtin_seeds(self) -> Vec<Vec<u8>> {
        match self {
            Target::ModelJson => targets::model_json::seeds(),
            Target::GraphJson => targets::graph_json::seeds(),
            Target::Safetensors => targets::safetensors::seeds(),
            Target::Npy => targets::npy::seeds(),
            Target::Onnx => targets::onnx::seeds(),
            Target::Graphs => Vec::new(),
        }
    }

    /// A per-target constant mixed into the seed.
    fn salt(self) -> u64 {
        match self {
            Target::ModelJson => 0x6d6f_6465_6c00,
            Target::GraphJson => 0x6772_6170_6800,
            Target::Safetensors => 0x7361_6665_7400,
            Target::Npy => 0x6e70_7900,
            Target::Onnx => 0x6f6e_6e78_0000,
            Target::Graphs => 0x6765_6e00,
        }
    }
}

static HOOK: Once = Once::new();
/// The message of the latest panic on any thread (a pool thread's panic is
/// re-raised on the caller's thread without running the hook again).
static LAST_PANIC_ANY: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// The message of the latest panic on this thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread is inside [`run_one`] (panics there are findings, not harness bugs).
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static NOTES: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts a noteworthy event that is not a finding (e.g. "jit refused a
/// resolved graph"), reported in the summary. Only the current thread's
/// notes are collected, which is the fuzz loop's thread.
pub fn note(what: impl Into<String>) {
    NOTES.with(|n| *n.borrow_mut().entry(what.into()).or_insert(0) += 1);
}

fn take_notes() -> BTreeMap<String, u64> {
    NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

/// Replaces the default panic hook (once per process) by one that prints
/// nothing and records the message and location for [`run_one`].
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current().name().unwrap_or("<unnamed>").to_string();
            let msg = format!("{info} (thread {thread})");
            if !IN_TARGET.with(|t| t.get()) && std::thread::current().name() == Some("main") {
                // Outside a target on the main thread: a harness bug, say so.
                eprintln!("kiln-fuzz: panic outside a target: {msg}");
            }
            if let Ok(mut last) = LAST_PANIC_ANY.lock() {
                *last = Some(msg.clone());
            }
            LAST_PANIC.with(|l| *l.borrow_mut() = Some(msg));
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(m) = LAST_PANIC.with(|l| l.borrow_mut().take()) {
        return m;
    }
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    };
    // Raised on another thread: use that thread's message (with its
    // location) if it is this payload's.
    match LAST_PANIC_ANY.lock().ok().and_then(|mut l| l.take()) {
        Some(m) if m.contains(&text) => m,
        _ => text,
    }
}

/// Runs `f` on `input`, turning a panic into [`FindingKind::Panic`] and a
/// mismatch into [`FindingKind::Mismatch`]; otherwise the outcome.
pub fn run_one(f: impl Fn(&[u8]) -> Outcome, input: &[u8]) -> Result<Outcome, FindingKind> {
    install_panic_hook();
    LAST_PANIC.with(|l| *l.borrow_mut() = None);
    IN_TARGET.with(|t| t.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| f(input)));
    IN_TARGET.with(|t| t.set(false));
    match result {
        Ok(Outcome::Mismatch(m)) => Err(FindingKind::Mismatch(m)),
        Ok(o) => Ok(o),
        Err(payload) => Err(FindingKind::Panic(panic_text(&*payload))),
    }
}

/// How to fuzz one target.
#[derive(Clone, Debug)]
pub struct FuzzConfig {
    /// The base seed; each iteration's input depends only on it, the target,
    /// the iteration number and the corpus.
    pub seed: u64,
    /// The first iteration to run (a worker resumes after a crash from here).
    pub start: u64,
    /// Stop before this iteration.
    pub end: u64,
    /// Stop after this much time (checked between inputs).
    pub time_limit: Option<Duration>,
    /// Corpus files, added to the target's built-in seeds.
    pub corpus: Vec<Vec<u8>>,
    /// Keep at most this many findings with the same [`FindingKind::signature`].
    pub max_per_signature: usize,
}

impl Default for FuzzConfig {
    fn default() -> Self {
        FuzzConfig { seed: 0, start: 0, end: 1000, time_limit: None, corpus: Vec::new(), max_per_signature: 3 }
    }
}

/// Counts of one fuzzing run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs run.
    pub iterations: u64,
    /// Inputs the target accepted.
    pub accepted: u64,
    /// Inputs the target rejected with an error.
    pub rejected: u64,
    /// Findings, deduplicated ones included.
    pub findings: u64,
    /// Events that are not findings, by description (see [`note`]).
    pub notes: BTreeMap<String, u64>,
}

impl Stats {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Stats) {
        self.iterations += other.iterations;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.findings += other.findings;
        for (k, v) in &other.notes {
            *self.notes.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// The result of [`fuzz`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Counts.
    pub stats: Stats,
    /// The kept findings (at most `max_per_signature` per signature).
    pub findings: Vec<Finding>,
    /// Wall time.
    pub elapsed: Duration,
    /// The slowest inputs over [`SLOW_INPUT`] (at most [`MAX_SLOW`], slowest
    /// first): iteration, time, input. Not findings, but worth a look.
    pub slow: Vec<(u64, Duration, Vec<u8>)>,
}

/// An input that takes longer than this is kept in [`Report::slow`].
pub const SLOW_INPUT: Duration = Duration::from_secs(2);

/// Most slow inputs kept.
pub const MAX_SLOW: usize = 3;

/// The input of iteration `iteration`: a generated graph for
/// [`Target::Graphs`], else a mutation of a corpus entry. `pool` is the
/// corpus (its first `seeds` entries) followed by the inputs kept so far.
pub fn input_for(target: Target, seed: u64, iteration: u64, pool: &[Vec<u8>], seeds: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed ^ target.salt() ^ iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.next_u64();
    match target {
        Target::Graphs => targets::graphs::generate(&mut rng),
        _ => {
            // Half the time start from an original seed (the first `seeds`
            // entries of the pool), else from anything kept so far.
            let n = if rng.next_u64().is_multiple_of(2) { seeds.min(pool.len()) } else { pool.len() };
            let base = if n == 0 { Vec::new() } else { pool[mutate::below(&mut rng, n)].clone() };
            // One in 16 inputs is a seed run as is, so seeds are checked too.
            if rng.next_u64().is_multiple_of(16) {
                return base;
            }
            mutate::mutate(&mut rng, base, pool)
        }
    }
}

/// Reads every file of `dir` (not recursively; a missing directory is empty).
pub fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Most entries the mutation pool grows to.
const POOL_CAP: usize = 512;

/// A rough behaviour signature of an outcome, used to keep inputs that
/// reach a new error message (a cheap stand-in for coverage feedback).
fn outcome_signature(o: &Outcome) -> String {
    match o {
        Outcome::Ok => "ok".into(),
        Outcome::Rejected(e) | Outcome::Mismatch(e) => exec::squash(e),
    }
}

/// Fuzzes `target` in this process for the configured iterations or time.
/// `before` is called with each iteration number and input (the worker
/// writes the input to disk there) and `on_finding` with each kept finding.
pub fn fuzz_with(
    target: Target,
    config: &FuzzConfig,
    before: impl FnMut(u64, &[u8], &Stats),
    on_finding: impl FnMut(&Finding),
) -> Report {
    fuzz_custom(target, |b| target.run(b), config, before, on_finding)
}

/// [`fuzz_with`] with `run` in place of the target's own function (inputs
/// are still made for `target`): how the tests check that the loop reports
/// panics and mismatches.
pub fn fuzz_custom(
    target: Target,
    run: impl Fn(&[u8]) -> Outcome,
    config: &FuzzConfig,
    mut before: impl FnMut(u64, &[u8], &Stats),
    mut on_finding: impl FnMut(&Finding),
) -> Report {
    install_panic_hook();
    let started = Instant::now();
    let mut pool = target.builtin_seeds();
    pool.extend(config.corpus.iter().cloned());
    let seeds = pool.len();
    let mut seen_outcomes: HashSet<String> = HashSet::new();
    let mut per_sig: BTreeMap<String, usize> = BTreeMap::new();
    let mut report = Report::default();
    take_notes();
    for iteration in config.start..config.end {
        if config.time_limit.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
        let input = input_for(target, config.seed, iteration, &pool, seeds);
        before(iteration, &input, &report.stats);
        report.stats.iterations += 1;
        let t0 = Instant::now();
        let result = run_one(&run, &input);
        let took = t0.elapsed();
        if took > SLOW_INPUT {
            note(format!("input slower than {} s", SLOW_INPUT.as_secs()));
            if report.slow.len() < MAX_SLOW || report.slow.last().is_some_and(|s| s.1 < took) {
                report.slow.push((iteration, took, input.clone()));
                report.slow.sort_by_key(|s| std::cmp::Reverse(s.1));
                report.slow.truncate(MAX_SLOW);
            }
        }
        match result {
            Ok(o) => {
                match &o {
                    Outcome::Ok => report.stats.accepted += 1,
                    _ => report.stats.rejected += 1,
                }
                if target != Target::Graphs && seen_outcomes.insert(outcome_signature(&o)) {
                    if pool.len() < POOL_CAP.max(seeds + 1) {
                        pool.push(input);
                    } else {
                        // Replace a kept input, never an original seed.
                        let kept = pool.len() - seeds;
                        let k = seeds + (iteration as usize).wrapping_mul(2_654_435_761) % kept;
                        pool[k] = input;
                    }
                }
            }
            Err(kind) => {
                report.stats.findings += 1;
                let n = per_sig.entry(kind.signature()).or_insert(0);
                *n += 1;
                if *n <= config.max_per_signature {
                    let f = Finding { target, iteration, kind, input };
                    on_finding(&f);
                    report.findings.push(f);
                }
            }
        }
    }
    report.stats.notes = take_notes();
    report.elapsed = started.elapsed();
    report
}

/// [`fuzz_with`] without callbacks.
pub fn fuzz(target: Target, config: &FuzzConfig) -> Report {
    fuzz_with(target, config, |_, _, _| {}, |_| {})
}

/// Runs `target` on one saved input (a reproducer); `Err` if it is still a finding.
pub fn replay(target: Target, input: &[u8]) -> Result<Outcome, FindingKind> {
    run_one(|b| target.run(b), input)
}

/// The target a reproducer file belongs to, from its name: `<target>-...`
/// or `jit-<target>-...` (e.g. `jit-graphs-1x1-dilation.json`).
pub fn target_of_file(name: &str) -> Option<Target> {
    let name = name.strip_prefix("jit-").unwrap_or(name);
    Target::ALL.into_iter().find(|t| name.starts_with(&format!("{}-", t.name())))
}
