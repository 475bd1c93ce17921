//! Arbitrary bytes as a JWKS document, with and without symmetric keys. Never panics; every
//! key kept is selected and verifies signatures made of input bytes, which never succeed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    jwt_edge_fuzz::oracle::check_jwks(data);
});
