//! `tierlock-worker PROVIDER… MODE…`: a separate OS process that takes named locks for the
//! multi-process tests (see `tierlock_testkit::worker` for the modes).
//!
//! Providers: `file DIR`.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use tierlock_core::Provider;

fn provider(args: &[String]) -> Result<(Arc<dyn Provider>, usize), String> {
    match args.first().map(String::as_str) {
        Some("file") => {
            let dir = args.get(1).ok_or("file: DIR missing")?;
            let provider = tierlock_file::FileProvider::new(dir).map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 2))
        }
        other => Err(format!("unknown provider {other:?} (expected: file DIR)")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (provider, used) = match provider(&args) {
        Ok(found) => found,
        Err(err) => {
            eprintln!("tierlock-worker: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tierlock-worker: cannot start a runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(tierlock_testkit::worker::run(provider, &args[used..])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tierlock-worker: {err}");
            ExitCode::from(1)
        }
    }
}
