//! Arbitrary bytes as a compact JWS: parse, and verify against the fixture keys with every
//! algorithm allowed. Never panics; nothing but a genuine fixture token ever verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    jwt_edge_fuzz::oracle::check_token(data);
});
