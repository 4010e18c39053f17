//! The `kiln` command: check, compile and run JSON model files.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
