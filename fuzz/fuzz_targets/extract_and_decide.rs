//! A structured request (headers, path, route name, key-source state) decided under a fixed
//! policy. Never panics; no forged or claims-invalid token is ever accepted, and no allow
//! happens without the tokens its requirement needs (see `oracle::check_case`).
//!
//! With `JWT_EDGE_FUZZ_CASE_OUT=FILE`, each input's request is also written to FILE as the
//! JSON `Case` that `cargo test` replays (`tests/fuzz_regressions/extract_and_decide/`,
//! `fuzz/seed-cases/`): that is how a crash becomes a regression file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use jwt_edge_fuzz::oracle::check_case;
use jwt_edge_fuzz::RequestInput;
use libfuzzer_sys::fuzz_target;

fn case_out() -> Option<&'static PathBuf> {
    static OUT: OnceLock<Option<PathBuf>> = OnceLock::new();
    OUT.get_or_init(|| std::env::var_os("JWT_EDGE_FUZZ_CASE_OUT").map(PathBuf::from))
        .as_ref()
}

fuzz_target!(|input: RequestInput| {
    let case = input.to_case();
    if let Some(path) = case_out() {
        if let Ok(json) = serde_json::to_string_pretty(&case) {
            let _ = std::fs::write(path, json + "\n");
        }
    }
    check_case(&case);
});
