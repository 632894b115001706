//! The `tierlock` command: the code and its documentation are in the library (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    tierlock_cli::main()
}
