//! The one seedable random number generator of the tests: splitmix64 (Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators", 2014). Small, reproducible from a
//! printed seed, and good enough to pick test inputs; never for anything secret.
//!
//! Compiled into the library's unit tests (`#[cfg(test)]` in `lib.rs`) and, through
//! `tests/support/mod.rs`, into the integration tests, so both use this one copy.

/// splitmix64 state; `TestRng(seed)` starts a sequence.
#[derive(Debug, Clone)]
pub struct TestRng(pub u64);

impl TestRng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// `len` bytes, one draw each (the low byte).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Fills `out` eight bytes per draw (big-endian; a short last chunk takes the high bytes).
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_be_bytes();
            chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or(&word));
        }
    }
}

/// For APIs that take a `rand_core` RNG (the `rsa` crate's key generation and PSS salts in
/// tests/rsa_differential.rs). `CryptoRng` is only the marker those APIs ask for: what they
/// make with it are test keys and test signatures.
#[cfg(not(target_arch = "wasm32"))]
impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (TestRng::next_u64(self) >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        TestRng::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill(dest);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl rand_core::CryptoRng for TestRng {}
