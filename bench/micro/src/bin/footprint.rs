//! The code one verification runs through, for `make bench-footprint` (bench/run_footprint.py).
//!
//! bench/run_footprint.py runs it as a wasm32-wasip1 command under Node's V8 inside valgrind
//! (callgrind with a simulated cache; mk/wasi-runner.mjs gives it WASI). It loads one
//! algorithm's fixtures, warms up, writes `$FOOTPRINT_DIR/ready`, waits for
//! `$FOOTPRINT_DIR/go` (the driver turns callgrind's instrumentation on in between, so V8's
//! compilation is not counted), then runs `FOOTPRINT_N` rounds of: write over a buffer four
//! times the simulated last-level cache, so that nothing of the previous round is left in
//! it, then one `FOOTPRINT_OP` (`none`, `jwk`, `token` or `decide`, as `GET /once`). The
//! last-level code misses of a round are then the cache lines of machine code the operation
//! runs through: its footprint, as a request meets it after Envoy's own work.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use jwt_edge_bench_micro::Fixtures;

/// Bytes written between two operations: 4x the simulated 512 KiB cache.
const SWEEP: usize = 2 << 20;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() -> ExitCode {
    match footprint() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("footprint: {e}");
            ExitCode::FAILURE
        }
    }
}

fn footprint() -> Result<(), String> {
    let alg = setting("FOOTPRINT_ALG", "RS256");
    let op = setting("FOOTPRINT_OP", "decide");
    let rounds: usize = setting("FOOTPRINT_N", "50")
        .parse()
        .map_err(|_| "FOOTPRINT_N must be a number".to_string())?;
    let dir = PathBuf::from(setting("FOOTPRINT_DIR", "/tmp"));
    let fixtures = Fixtures::load(&alg)?;
    // `none`: the sweep alone, the baseline run_footprint.py subtracts.
    let run = |op: &str| op == "none" || fixtures.run(op) == Some(true);
    for _ in 0..20 {
        if !run(&op) {
            return Err(format!("{alg} {op}: did not verify (or unknown op)"));
        }
    }
    let mut sweep = vec![0u8; SWEEP];
    std::fs::write(dir.join("ready"), b"").map_err(|e| e.to_string())?;
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ok = true;
    for _ in 0..rounds {
        for byte in sweep.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(1);
        }
        black_box(&mut sweep);
        ok &= run(&op);
    }
    if ok {
        Ok(())
    } else {
        Err(format!("{alg} {op}: a round did not verify"))
    }
}
