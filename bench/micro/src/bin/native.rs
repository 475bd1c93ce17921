//! The same timed code as the Wasm filter, compiled natively: one JSON report per line.
//!
//! `micro-native [N] [REPS]` (defaults 200 and 5). Pin it to one CPU for stable figures
//! (`taskset -c 0`); `bench/run_micro.py` does.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n = args.next().and_then(|v| v.parse().ok()).unwrap_or(200);
    let reps = args.next().and_then(|v| v.parse().ok()).unwrap_or(5);
    let origin = Instant::now();
    let now_ns = || origin.elapsed().as_nanos() as u64;
    for alg in jwt_edge_bench_micro::ALGS {
        match jwt_edge_bench_micro::run(alg, n, reps, &now_ns) {
            Ok(report) => println!("{report}"),
            Err(e) => {
                eprintln!("{alg}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
