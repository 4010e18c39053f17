//! Command-line front end. Every failure is one clear line on stderr and a
//! non-zero exit code (1 for errors, 2 for usage), never a panic.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// `print!` that reports a failed write (e.g. a closed pipe) as an error
/// instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($t)*).map_err($crate::cli::stdout_error)?
    }};
}

/// `println!` that reports a failed write as an error instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err($crate::cli::stdout_error)?
    }};
}

mod batches;
mod bench;
mod common;
mod compile;
mod image_io;
mod run;

/// Kiln: compile PyTorch-style lazy decoder models and run them with JIT-compiled kernels.
#[derive(Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a model (and, with --weights, its state dict) and print the inferred shape of every node.
    Check(common::CheckArgs),
    /// Print the graph before or after resolution, as JSON, or as Graphviz.
    Compile(compile::CompileArgs),
    /// Resolve, JIT-compile and run a model; print the output shape, a checksum and timings.
    Run(run::RunArgs),
    /// Time the benchmark layers (or a model) with the peers' protocol.
    Bench(bench::BenchArgs),
}

/// Which kernel tier the JIT's convolutions use (`--kernels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Kernels {
    /// Native micro-kernels when the CPU has them, else Cranelift.
    #[default]
    Auto,
    /// Pure Cranelift f32x4 code.
    Cranelift,
    /// Native micro-kernels of the widest ISA this CPU has (error if none).
    Native,
    /// Native 256-bit AVX2 micro-kernels.
    Avx2,
    /// Native 512-bit AVX-512 micro-kernels.
    Avx512,
}

impl Kernels {
    /// The kernel library's tier.
    pub fn tier(self) -> kiln::jit::KernelTier {
        use kiln::jit::{KernelTier, NativeIsa};
        match self {
            Kernels::Auto => KernelTier::Auto,
            Kernels::Cranelift => KernelTier::Cranelift,
            Kernels::Native => KernelTier::Native(NativeIsa::Best),
            Kernels::Avx2 => KernelTier::Native(NativeIsa::Avx2),
            Kernels::Avx512 => KernelTier::Native(NativeIsa::Avx512),
        }
    }
}

/// JIT compile options from the command line.
/// Compile time `--autotune` may spend timing candidate strategies per graph.
pub const AUTOTUNE_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// The JIT options of `--threads`, `--kernels` and `--autotune`.
pub fn jit_options(
    threads: Option<usize>,
    kernels: Kernels,
    autotune: bool,
) -> Result<kiln::jit::CompileOptions, kiln::Error> {
    if threads == Some(0) {
        return Err(kiln::Error::Usage("--threads must be at least 1".into()));
    }
    if let Some(t) = threads.filter(|&t| t > kiln::jit::MAX_THREADS) {
        return Err(kiln::Error::Usage(format!("--threads must be at most {}, got {t}", kiln::jit::MAX_THREADS)));
    }
    Ok(kiln::jit::CompileOptions {
        threads: threads.unwrap_or(0),
        tier: kernels.tier(),
        autotune: autotune.then_some(AUTOTUNE_BUDGET),
        ..Default::default()
    })
}

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// The resolved graph's text form.
    Ir,
    /// The graph as written, before any pass.
    LazyIr,
    /// The resolved graph as a model file that `kiln run` reads (parameters: --save-weights).
    Json,
    /// Graphviz `dot` of the resolved graph (or the lazy one with `--lazy`).
    Dot,
    /// The Cranelift IR of every JIT kernel.
    Clif,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => common::check(&args),
        Command::Compile(args) => compile::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`kiln ... | head`): stop quietly, like other tools.
        Err(kiln::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The JIT backend with `threads` workers.
fn jit_backend(options: kiln::jit::CompileOptions) -> Box<dyn kiln::runtime::backend::Backend> {
    Box::new(kiln::jit::JitBackend { options })
}

/// Wraps a failed write to stdout.
pub fn stdout_error(source: std::io::Error) -> kiln::Error {
    kiln::Error::Io { path: "<stdout>".into(), source }
}
