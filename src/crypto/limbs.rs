//! Numbers as little-endian limbs of `BITS` bits held in `u32` (stored) or `u64` (carried),
//! shared by the field arithmetic of [`p256_field`](crate::crypto::p256_field) (9 × 29 bits)
//! and [`p384_field`](crate::crypto::p384_field) (14 × 28 bits): conversions to and from
//! big-endian bytes, comparison, and the add/subtract candidates their additions choose from.
//! Variable time, on public values only (see those modules).

const fn mask(bits: u32) -> u64 {
    (1 << bits) - 1
}

/// A big-endian number in `N` limbs of `BITS` bits (the bits past N · BITS are dropped: the
/// callers' sizes leave room). `const` for the moduli's compile-time constants.
#[allow(clippy::indexing_slicing)] // index < N checked; const fn: no `get`
pub const fn from_be<const N: usize, const BYTES: usize, const BITS: u32>(
    bytes: &[u8; BYTES],
) -> [u64; N] {
    let mut limbs = [0u64; N];
    let mut i = 0;
    while i < BYTES {
        let byte = bytes[BYTES - 1 - i] as u64;
        let bit = i * 8;
        let (index, shift) = (bit / BITS as usize, bit % BITS as usize);
        let value = byte << shift;
        if index < N {
            limbs[index] |= value & mask(BITS);
        }
        if index + 1 < N {
            limbs[index + 1] |= value >> BITS;
        }
        i += 1;
    }
    limbs
}

/// The big-endian bytes of a number in `N` limbs of `BITS` bits (each limb below 2^BITS).
pub fn to_be<const N: usize, const BYTES: usize, const BITS: u32>(limbs: &[u32; N]) -> [u8; BYTES] {
    let mut bytes = [0u8; BYTES];
    for (i, byte) in bytes.iter_mut().rev().enumerate() {
        let bit = i * 8;
        let (index, shift) = (bit / BITS as usize, bit % BITS as usize);
        let low = limbs.get(index).map_or(0, |l| u64::from(*l) >> shift);
        let high = limbs
            .get(index + 1)
            .map_or(0, |l| u64::from(*l) << (BITS as usize - shift));
        *byte = (low | high) as u8;
    }
    bytes
}

/// `x = a + sign·b` and `y = a + sign·b + shift·two_m`, as carried limbs, each with whether it
/// is negative (then its limbs are meaningless). One pass with two independent carry chains;
/// for the callers every value involved is within ±2^(N·BITS), so the last carry is exactly the
/// sign.
#[inline(always)]
pub fn candidates<const N: usize, const BITS: u32>(
    a: &[u32; N],
    b: &[u32; N],
    two_m: &[u64; N],
    sign: i64,
    shift: i64,
) -> ([u32; N], bool, [u32; N], bool) {
    let mut x = [0u32; N];
    let mut y = [0u32; N];
    let (mut carry_x, mut carry_y) = (0i64, 0i64);
    let inputs = a.iter().zip(b).zip(two_m);
    for ((x_out, y_out), ((a, b), two_m)) in x.iter_mut().zip(y.iter_mut()).zip(inputs) {
        let base = i64::from(*a) + sign * i64::from(*b);
        let value_x = base + carry_x;
        let value_y = base + shift * *two_m as i64 + carry_y;
        *x_out = (value_x as u64 & mask(BITS)) as u32;
        *y_out = (value_y as u64 & mask(BITS)) as u32;
        carry_x = value_x >> BITS;
        carry_y = value_y >> BITS;
    }
    (x, carry_x < 0, y, carry_y < 0)
}

/// `a − b` for carried limbs, or `None` if b > a.
pub fn sub<const N: usize, const BITS: u32>(a: &[u64; N], b: &[u64; N]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut borrow = 0i64;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let value = *x as i64 - *y as i64 + borrow;
        *o = (value as u64) & mask(BITS);
        borrow = value >> BITS;
    }
    (borrow == 0).then_some(out)
}

/// Whether `a < b` for carried limbs.
pub fn less_than<const N: usize, const BITS: u32>(a: &[u64; N], b: &[u64; N]) -> bool {
    sub::<N, BITS>(a, b).is_none()
}

#[inline(always)]
pub fn widen<const N: usize>(limbs: &[u32; N]) -> [u64; N] {
    let mut out = [0u64; N];
    for (o, l) in out.iter_mut().zip(limbs) {
        *o = u64::from(*l);
    }
    out
}

#[allow(clippy::indexing_slicing)] // i < N; const fn: no `get`
pub const fn narrow<const N: usize>(limbs: &[u64; N]) -> [u32; N] {
    let mut out = [0u32; N];
    let mut i = 0;
    while i < N {
        out[i] = limbs[i] as u32;
        i += 1;
    }
    out
}
