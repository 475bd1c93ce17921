//! Signature verification ([`verify`]) and the arithmetic under it. Everything here handles
//! public data only and is variable-time on purpose; `README.md` in this folder says why that
//! is safe and how each part is cross-checked.

pub mod bigmod;
pub mod bigmod_f64;
pub mod ecdsa;
pub mod fixed_window;
pub mod limbs;
pub mod p256_field;
pub mod p256_tables;
pub mod p384_field;
pub mod p384_tables;
pub mod safegcd;
pub mod verify;
pub mod weierstrass;

/// µs per call of `f` in whatever runtime runs the test (natively, or wasm under Node's V8):
/// 7 runs of `rounds` calls, (median, fastest) over the runs. For the ignored timing tests.
#[cfg(test)]
pub(crate) fn us_per_call(rounds: u32, f: &dyn Fn()) -> (f64, f64) {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                f();
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[3], runs[0])
}
