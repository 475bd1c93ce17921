//! Arbitrary bytes as a filter configuration. Never panics; a policy that compiles is
//! consistent and decides a few requests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    jwt_edge_fuzz::oracle::check_config(data);
});
