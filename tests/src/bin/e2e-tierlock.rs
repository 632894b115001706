//! The `tierlock` command (`tierlock_cli::main`), built here for the end-to-end tests.

fn main() -> std::process::ExitCode {
    tierlock_cli::main()
}
