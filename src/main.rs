//! The `kiln` command: check, compile and run JSON model files.

// Errors carry the node name and the offending values; they are cold paths,
// so their size does not matter and boxing would only obscure them.
#![allow(clippy::result_large_err)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
