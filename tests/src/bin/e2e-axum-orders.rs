//! The `axum-orders` service (`tierlock_example_axum::server::main`), built here for the
//! end-to-end tests.

fn main() -> std::process::ExitCode {
    tierlock_example_axum::server::main()
}
