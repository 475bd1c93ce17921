//! Replays the fuzz seed corpora (`fuzz/corpus/<target>/`) and every saved fuzz finding
//! (`tests/fuzz_regressions/<target>/`) through the same checks the fuzz targets run
//! (`fuzz/src/oracle.rs`): no panic, and no forged token ever verifies or is accepted.
//!
//! `extract_and_decide` reads `arbitrary`-encoded input, which this test cannot decode (the
//! crate has no `arbitrary` dependency), so its inputs are replayed as the decoded requests:
//! `fuzz/seed-cases/extract_and_decide.json` for the seeds (made by `make fuzz-seeds`) and
//! one JSON `Case` per file under `tests/fuzz_regressions/extract_and_decide/`.

// Test code: a failed unwrap or index is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../fuzz/src/oracle.rs"]
#[allow(dead_code)]
mod oracle;

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use oracle::Case;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files of `dir` (relative to the crate root), sorted; none when it does not exist.
fn files(dir: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(Path::new(ROOT).join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `check` on every input and fails with the names of all inputs that panicked.
fn replay<T>(inputs: Vec<(String, T)>, check: impl Fn(&T)) -> usize {
    let mut failed = Vec::new();
    for (name, input) in &inputs {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            failed.push(name.clone());
        }
    }
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
    inputs.len()
}

fn byte_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    [
        format!("fuzz/corpus/{target}"),
        format!("tests/fuzz_regressions/{target}"),
    ]
    .iter()
    .flat_map(|dir| files(dir))
    .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
    .collect()
}

#[test]
fn token_parse() {
    let n = replay(byte_inputs("token_parse"), |data| oracle::check_token(data));
    assert!(
        n >= 27,
        "the seed corpus holds every fixture token; replayed {n}"
    );
}

#[test]
fn jwks_parse() {
    let n = replay(byte_inputs("jwks_parse"), |data| oracle::check_jwks(data));
    assert!(n >= 5, "replayed {n}");
}

#[test]
fn config_parse() {
    let n = replay(byte_inputs("config_parse"), |data| {
        oracle::check_config(data)
    });
    assert!(
        n >= 7,
        "the seed corpus holds every example config; replayed {n}"
    );
}

#[test]
fn extract_and_decide() {
    let seeds: BTreeMap<String, Case> = serde_json::from_str(
        &fs::read_to_string(Path::new(ROOT).join("fuzz/seed-cases/extract_and_decide.json"))
            .unwrap(),
    )
    .unwrap();
    // Every committed seed has its decoded request here, or the replay would silently miss it.
    for seed in files("fuzz/corpus/extract_and_decide") {
        let name = seed.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            seeds.contains_key(&name),
            "seed {name} has no decoded case: run `make fuzz-seeds`"
        );
    }
    let mut inputs: Vec<(String, Case)> = seeds.into_iter().collect();
    for path in files("tests/fuzz_regressions/extract_and_decide") {
        let case = serde_json::from_str(&fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: not a JSON Case: {e}", path.display()));
        inputs.push((path.display().to_string(), case));
    }
    let n = replay(inputs, oracle::check_case);
    assert!(n >= 27, "replayed {n}");
}

/// The oracle itself: genuine fixture tokens are accepted where they should be and forged ones
/// are not, so a check that never fires is not mistaken for a safe core.
#[test]
fn oracle_sees_allows_and_denials() {
    use jwt_edge::authn::authenticate::{decide, Decision, KeyLookup, KeyState};
    use jwt_edge::authn::policy::JwksId;
    use jwt_edge::authn::request::RequestView;

    struct Ready;
    impl KeyLookup for Ready {
        fn keys(&self, _id: JwksId) -> KeyState<'_> {
            KeyState::Ready(oracle::fixture_keys())
        }
    }
    let run = |name: &str| {
        let headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/rsa".to_string()),
            (
                "authorization".to_string(),
                format!("Bearer {}", oracle::fixture_token(name)),
            ),
        ];
        decide(
            oracle::decision_policy(),
            &RequestView::new(&headers, None),
            &Ready,
            oracle::NOW,
        )
    };
    for name in ["rs256", "ps512", "es384", "eddsa", "rs256_no_kid", "claims"] {
        assert!(matches!(run(name), Decision::Allow(_)), "{name}");
    }
    for name in [
        "forged_kid",
        "forged_no_kid",
        "hs256_confusion",
        "embedded_jwk",
        "alg_none",
        "expired",
        "wrong_iss",
        "wrong_aud",
    ] {
        assert!(matches!(run(name), Decision::Deny(_)), "{name}");
    }
}
