//! `axum-orders`: the service of `tierlock_example_axum::server` (its documentation has the
//! command line).

fn main() -> std::process::ExitCode {
    tierlock_example_axum::server::main()
}
