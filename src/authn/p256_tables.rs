//! Fast ES256 verification: ECDSA P-256 as one fixed-window multi-scalar multiplication
//! u1·G + u2·Q over precomputed affine tables, on p256 0.13's field and point arithmetic.
//!
//! `p256::ecdsa::VerifyingKey::verify_prehash` (0.13) runs two separate constant-time 4-bit
//! window scalar multiplications for every token: ~510 doublings, ~160 additions and a
//! constant-time scan of a 16-entry table per window, ~1 ms in Envoy's V8. A verifier never
//! handles a secret, so the work that depends only on the public point can be done once: for
//! each point P this module keeps the table
//! `row[i][j-1] = j · 2^(w·i) · P` for `j` in `1..=2^(w-1)`, in affine form. A scalar is
//! recoded into signed base-2^w digits (`k = Σ d_i · 2^(w·i)`, `|d_i| <= 2^(w-1)`), and `k·P`
//! is then one mixed addition (or subtraction) per non-zero digit and no doublings at all.
//!
//! - G's table is built once per VM ([`generator_table`], 8-bit windows: 4,097 points,
//!   ~272 KiB on wasm32, ~21 ms in Node's V8) and Q's table once per key when the key set is
//!   loaded ([`P256VerifyKey::new`], 6-bit windows: 1,360 points, ~90 KiB, ~7 ms). A
//!   verification is then at most 76 mixed additions and one field inversion. Signed digits
//!   halve each row against unsigned windows: a negative digit costs only the negation of `y`
//!   inside `sub_mixed`. Key tables are capped per VM ([`KEY_TABLE_BUDGET`]); keys past the
//!   cap use p256's own verifier.
//! - Why 6 bits for keys (wasm32 in Node 20's V8, p256 0.13 `verify_prehash` ~1,100 µs):
//!   4 bits: ~190–230 µs, 34 KiB, 3 ms per key; 6 bits: ~156 µs, 90 KiB, 7 ms; 8 bits:
//!   ~142–163 µs, 272 KiB, 21 ms. Past 6 bits the memory and the build (paid per key, per VM,
//!   at every key-set load) triple for under 10 % (native instruction counts: −16 % from 4 to
//!   6 bits, −9 % more from 6 to 8). G's table is paid once per VM, so it gets 8 bits.
//! - Building a table needs each point's z coordinate, which p256 0.13 keeps private, so the
//!   multiples are computed by the small Jacobian module below (build time only). Every entry
//!   is then decoded by p256 (which checks it is on the curve) and the entries' sum is checked
//!   against p256's own scalar multiplication; verification itself uses only p256's points.
//! - The checks are those of ecdsa 0.16's `verify_prehashed`: r, s in [1, n-1] (enforced when
//!   the [`Signature`] is parsed), z = bits2field(prehash) reduced mod n, w = s⁻¹,
//!   u1 = z·w, u2 = r·w, R = u1·G + u2·Q, the identity refused, accepted iff x(R) mod n == r.
//!   tests/p256_differential.rs checks agreement with the RustCrypto verifier on random cases.
//! - **Variable time, on purpose.** Every input here is public (key, signature, signed bytes),
//!   so table lookups indexed by scalar digits, skipped zero digits and the vartime inversion
//!   of s leak nothing. This code must never be used with a secret scalar (signing, ECDH).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::Signature;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};

/// Window of G's table: 32 rows of 128 points and one of 1, ~272 KiB (wasm32), once per VM.
pub const G_WINDOW: u32 = 8;
/// Window of each public key's table: 42 rows of 32 points and one of 16, ~90 KiB (wasm32).
pub const Q_WINDOW: u32 = 6;
/// Accepted window sizes. Above 8 the tables grow past a megabyte per point.
pub const MIN_WINDOW: u32 = 2;
pub const MAX_WINDOW: u32 = 8;

/// Bits in a P-256 scalar.
const SCALAR_BITS: u32 = 256;
/// Jacobian points normalised per field inversion while building a table.
const NORMALIZE_BATCH: usize = 1024;

/// The precomputed multiples of one point, for fixed-window scalar multiplication.
pub struct FixedBaseTable {
    window: u32,
    /// Points per full row, `2^(window-1)`.
    row_len: usize,
    /// Rows concatenated; row `i` holds `j · 2^(window·i) · P` for `j = 1..=row_len`, except
    /// the last row, which only holds the multiples its digit can reach.
    points: Box<[AffinePoint]>,
}

impl FixedBaseTable {
    /// Builds the table of `point` with `window`-bit signed digits (clamped to
    /// [`MIN_WINDOW`]..=[`MAX_WINDOW`]).
    ///
    /// The multiples are computed in Jacobian coordinates by [`jacobian`], which exposes the z
    /// coordinates so that all points are normalised with one shared field inversion. p256
    /// then checks each entry is on the curve, and that the entries sum to the point its own
    /// arithmetic gives for the same sum (see [`table_sum_scalar`]); if either check fails
    /// there is no table (`None`) and callers verify without one. For a valid public key that
    /// never happens: no multiple `j · 2^(w·i)` with `j <= 2^(w-1)` is a multiple of the prime
    /// group order, so no intermediate sum is ever the identity.
    pub fn new(point: &AffinePoint, window: u32) -> Option<FixedBaseTable> {
        let window = window.clamp(MIN_WINDOW, MAX_WINDOW);
        let row_len = 1usize << (window - 1);
        let lengths = (0..row_count(window)).map(|row| row_length(window, row));
        let mut points = Vec::with_capacity(lengths.clone().sum());
        // Rows are normalised in batches of about NORMALIZE_BATCH points: one inversion per
        // batch, and a bounded scratch buffer (G's table would otherwise need ~400 KiB of
        // Jacobian points at once, and wasm memory never shrinks).
        let mut pending = Vec::with_capacity(NORMALIZE_BATCH + row_len);
        let mut base = jacobian::Point::from_affine(point)?;
        for len in lengths.clone() {
            let mut multiple = base;
            pending.push(multiple);
            for _ in 1..len {
                multiple = multiple.add(&base);
                pending.push(multiple);
            }
            // The next row's base, 2^window · base, doubles this row's top, 2^(window-1) · base
            // (only the last row is shorter, and nothing follows it).
            base = multiple.double();
            if pending.len() >= NORMALIZE_BATCH {
                jacobian::normalize_into(&pending, &mut points)?;
                pending.clear();
            }
        }
        jacobian::normalize_into(&pending, &mut points)?;
        let sum = points
            .iter()
            .fold(ProjectivePoint::IDENTITY, |sum, point| sum + point);
        let expected = ProjectivePoint::from(*point) * table_sum_scalar(window, lengths);
        (sum == expected).then(|| FixedBaseTable {
            window,
            row_len,
            points: points.into_boxed_slice(),
        })
    }

    /// Heap bytes a table with `window` would hold.
    pub fn size_for(window: u32) -> usize {
        let window = window.clamp(MIN_WINDOW, MAX_WINDOW);
        let points: usize = (0..row_count(window))
            .map(|row| row_length(window, row))
            .sum();
        points * std::mem::size_of::<AffinePoint>()
    }

    /// The window size in bits.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[AffinePoint]>(&self.points)
    }

    /// Adds `scalar · P` to `acc`.
    fn add_multiple(&self, scalar: &Scalar, mut acc: ProjectivePoint) -> ProjectivePoint {
        let limbs = le_limbs(scalar);
        let half = 1i32 << (self.window - 1);
        let mut carry = 0i32;
        for (row, points) in self.points.chunks(self.row_len).enumerate() {
            // Signed recoding: a digit above 2^(w-1) becomes digit - 2^w, carrying 1 upwards.
            let mut digit = window_bits(&limbs, row as u32 * self.window, self.window) + carry;
            if digit > half {
                digit -= 1 << self.window;
                carry = 1;
            } else {
                carry = 0;
            }
            if digit == 0 {
                continue;
            }
            // A missing entry cannot happen (see `new`); it would make the result wrong, and a
            // wrong result only ever rejects, because x(R) is then unrelated to r.
            if let Some(multiple) = points.get(digit.unsigned_abs() as usize - 1) {
                if digit > 0 {
                    acc += multiple;
                } else {
                    acc -= multiple;
                }
            }
        }
        acc
    }
}

/// Rows needed for signed `window`-bit digits of a 256-bit scalar: the recoding can carry one
/// past the top bit, so 257 bits are covered.
fn row_count(window: u32) -> u32 {
    (SCALAR_BITS + 1).div_ceil(window)
}

/// Entries in row `row`: `2^(window-1)`, except in the last row, whose digit only covers the
/// scalar's top bits plus a carry.
fn row_length(window: u32, row: u32) -> usize {
    let row_len = 1usize << (window - 1);
    let rows = row_count(window);
    if row + 1 < rows {
        return row_len;
    }
    let top_bits = SCALAR_BITS.saturating_sub(window * (rows - 1));
    row_len.min(1usize << top_bits)
}

/// `Σ_i (1 + 2 + … + len_i) · 2^(window·i) mod n`: the scalar whose multiple of P is the sum
/// of every entry of P's table.
fn table_sum_scalar(window: u32, lengths: impl Iterator<Item = usize>) -> Scalar {
    let step = Scalar::from(1u64 << window);
    let mut weight = Scalar::ONE;
    let mut total = Scalar::ZERO;
    for len in lengths {
        let len = len as u64;
        total += Scalar::from(len * (len + 1) / 2) * weight;
        weight *= step;
    }
    total
}

/// The scalar as four little-endian 64-bit limbs.
fn le_limbs(scalar: &Scalar) -> [u64; 4] {
    let bytes = scalar.to_bytes();
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(word);
    }
    limbs
}

/// Bits `pos .. pos + width` of the little-endian `limbs` (zero beyond the top).
fn window_bits(limbs: &[u64; 4], pos: u32, width: u32) -> i32 {
    let index = (pos / 64) as usize;
    let shift = pos % 64;
    let low = limbs.get(index).copied().unwrap_or(0) >> shift;
    let high = if shift + width > 64 {
        limbs.get(index + 1).copied().unwrap_or(0) << (64 - shift)
    } else {
        0
    };
    ((low | high) & ((1u64 << width) - 1)) as i32
}

/// Jacobian arithmetic for building tables only: p256 0.13 keeps its point coordinates
/// private and has no batch normalisation (its `BatchNormalize` needs `Invert` on the field
/// element, which 0.13 lacks), and one inversion per point would make building cost ~20
/// additions per point. The field is crypto-bigint's Montgomery `Residue` (u32 limbs on wasm32).
mod jacobian {
    use p256::elliptic_curve::bigint::modular::constant_mod::Residue;
    use p256::elliptic_curve::bigint::{impl_modulus, Encoding, U256};
    use p256::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
    use p256::{AffinePoint, FieldBytes, NistP256};

    impl_modulus!(
        FieldModulus,
        U256,
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
    );
    type Fe = Residue<FieldModulus, { U256::LIMBS }>;

    /// `(X, Y, Z)` standing for `(X/Z², Y/Z³)`; `Z = 0` is the identity.
    #[derive(Clone, Copy)]
    pub(super) struct Point {
        x: Fe,
        y: Fe,
        z: Fe,
    }

    fn fe(bytes: &FieldBytes) -> Fe {
        let mut be = [0u8; 32];
        be.copy_from_slice(bytes);
        Fe::new(&U256::from_be_bytes(be))
    }

    fn bytes(fe: &Fe) -> FieldBytes {
        FieldBytes::from(fe.retrieve().to_be_bytes())
    }

    impl Point {
        const IDENTITY: Point = Point {
            x: Fe::ONE,
            y: Fe::ONE,
            z: Fe::ZERO,
        };

        /// `None` for the identity, which has no affine coordinates.
        pub(super) fn from_affine(point: &AffinePoint) -> Option<Point> {
            let encoded = point.to_encoded_point(false);
            Some(Point {
                x: fe(encoded.x()?),
                y: fe(encoded.y()?),
                z: Fe::ONE,
            })
        }

        /// "dbl-2001-b" (a = -3), hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-3.html.
        pub(super) fn double(&self) -> Point {
            let delta = self.z.square();
            let gamma = self.y.square();
            let beta = self.x.mul(&gamma);
            let t = self.x.sub(&delta).mul(&self.x.add(&delta));
            let alpha = t.add(&t).add(&t);
            let beta4 = beta.add(&beta).add(&beta.add(&beta));
            let beta8 = beta4.add(&beta4);
            let x = alpha.square().sub(&beta8);
            let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
            let gamma2 = gamma.square();
            let gamma2x2 = gamma2.add(&gamma2);
            let gamma2x4 = gamma2x2.add(&gamma2x2);
            let y = alpha.mul(&beta4.sub(&x)).sub(&gamma2x4.add(&gamma2x4));
            Point { x, y, z }
        }

        /// "add-1998-cmo-2", with the identity, doubling and inverse cases handled.
        pub(super) fn add(&self, other: &Point) -> Point {
            if self.z == Fe::ZERO {
                return *other;
            }
            if other.z == Fe::ZERO {
                return *self;
            }
            let z1z1 = self.z.square();
            let z2z2 = other.z.square();
            let u1 = self.x.mul(&z2z2);
            let u2 = other.x.mul(&z1z1);
            let s1 = self.y.mul(&other.z).mul(&z2z2);
            let s2 = other.y.mul(&self.z).mul(&z1z1);
            let h = u2.sub(&u1);
            let r = s2.sub(&s1);
            if h == Fe::ZERO {
                return if r == Fe::ZERO {
                    self.double()
                } else {
                    Point::IDENTITY
                };
            }
            let hh = h.square();
            let hhh = hh.mul(&h);
            let v = u1.mul(&hh);
            let x = r.square().sub(&hhh).sub(&v.add(&v));
            let y = r.mul(&v.sub(&x)).sub(&s1.mul(&hhh));
            let z = self.z.mul(&other.z).mul(&h);
            Point { x, y, z }
        }
    }

    /// Appends the affine forms of `points` to `out`, with one field inversion in all
    /// (Montgomery's trick), each decoded by p256, which checks it is on the curve. `None` if
    /// any point is the identity or off the curve.
    pub(super) fn normalize_into(points: &[Point], out: &mut Vec<AffinePoint>) -> Option<()> {
        if points.is_empty() {
            return Some(());
        }
        // prefix[i] = z_0 · … · z_i
        let mut prefix = Vec::with_capacity(points.len());
        let mut product = Fe::ONE;
        for point in points {
            if point.z == Fe::ZERO {
                return None;
            }
            product = product.mul(&point.z);
            prefix.push(product);
        }
        let (mut inverse, invertible) = product.invert();
        if !bool::from(invertible) {
            return None;
        }
        let start = out.len();
        out.resize(start + points.len(), AffinePoint::IDENTITY);
        let slots = out.get_mut(start..)?;
        // Walking back, `inverse` is (z_0 · … · z_i)^-1, so z_i^-1 = inverse · prefix[i-1].
        for (i, (point, slot)) in points.iter().zip(slots.iter_mut()).enumerate().rev() {
            let z_inv = match i.checked_sub(1) {
                Some(before) => inverse.mul(prefix.get(before)?),
                None => inverse,
            };
            inverse = inverse.mul(&point.z);
            let z_inv2 = z_inv.square();
            let x = point.x.mul(&z_inv2);
            let y = point.y.mul(&z_inv2.mul(&z_inv));
            let encoded =
                EncodedPoint::<NistP256>::from_affine_coordinates(&bytes(&x), &bytes(&y), false);
            *slot = Option::from(AffinePoint::from_encoded_point(&encoded))?;
        }
        Some(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use p256::ProjectivePoint;

        fn affine(point: &Point) -> Option<AffinePoint> {
            let mut out = Vec::new();
            normalize_into(std::slice::from_ref(point), &mut out)?;
            out.pop()
        }

        #[test]
        fn exceptional_additions() {
            let g = Point::from_affine(&AffinePoint::GENERATOR).unwrap();
            let minus_g = Point { y: g.y.neg(), ..g };
            let two_g = (ProjectivePoint::GENERATOR + ProjectivePoint::GENERATOR).to_affine();
            assert_eq!(affine(&g.add(&g)), Some(two_g));
            assert_eq!(affine(&g.double()), Some(two_g));
            assert_eq!(g.add(&minus_g).z, Fe::ZERO);
            assert_eq!(
                affine(&Point::IDENTITY.add(&g)),
                Some(AffinePoint::GENERATOR)
            );
            assert_eq!(
                affine(&g.add(&Point::IDENTITY)),
                Some(AffinePoint::GENERATOR)
            );
            assert_eq!(affine(&Point::IDENTITY), None);
            // A point whose z is not 1: 2G + G, then + G again.
            let three_g = g.double().add(&g);
            let four_g = three_g.add(&g);
            let expected = (ProjectivePoint::GENERATOR * p256::Scalar::from(4u64)).to_affine();
            assert_eq!(affine(&four_g), Some(expected));
            assert_eq!(affine(&three_g.add(&three_g)), affine(&three_g.double()));
        }
    }
}

/// G's table, built on first use and kept for the life of the VM (`None` only if building
/// failed its checks, which does not happen: see [`FixedBaseTable::new`]).
pub fn generator_table() -> Option<&'static FixedBaseTable> {
    static TABLE: OnceLock<Option<FixedBaseTable>> = OnceLock::new();
    TABLE
        .get_or_init(|| FixedBaseTable::new(&AffinePoint::GENERATOR, G_WINDOW))
        .as_ref()
}

/// Most heap bytes of key tables (G's excluded) alive at once in this VM: 21 keys at
/// [`Q_WINDOW`] natively (~96 KiB each), 22 on wasm32 (~90 KiB). A key set may hold hundreds of
/// P-256 keys within its size limit; keys past the budget verify with p256's own
/// `verify_prehash` (~7x slower, same answers) rather than cost memory and load time. An old
/// and a new key set are alive together during a swap, so sets of up to ~10 P-256 keys always
/// get tables; with G's table the worst case stays under ~2.5 MiB per VM.
pub const KEY_TABLE_BUDGET: usize = 2 << 20;

static KEY_TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Heap bytes of key tables alive now in this VM (process, natively).
pub fn key_table_bytes() -> usize {
    KEY_TABLE_BYTES.load(Ordering::Relaxed)
}

/// Takes `bytes` from `used` if that stays within `budget`.
fn reserve(used: &AtomicUsize, bytes: usize, budget: usize) -> bool {
    used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        now.checked_add(bytes).filter(|total| *total <= budget)
    })
    .is_ok()
}

/// A key's table, counted against [`KEY_TABLE_BUDGET`] while it lives.
struct KeyTable {
    table: FixedBaseTable,
    reserved: usize,
}

impl Drop for KeyTable {
    fn drop(&mut self) {
        KEY_TABLE_BYTES.fetch_sub(self.reserved, Ordering::Relaxed);
    }
}

/// A P-256 public key with its precomputed table, ready to verify ES256 signatures.
#[derive(Clone)]
pub struct P256VerifyKey {
    key: p256::ecdsa::VerifyingKey,
    /// `None` past [`KEY_TABLE_BUDGET`] or if a table failed its checks; verification then
    /// uses p256's own `verify_prehash` (slower, same answers).
    table: Option<Arc<KeyTable>>,
}

impl P256VerifyKey {
    /// Precomputes the table of `key` with the default [`Q_WINDOW`]. Also builds G's table if
    /// this VM has none yet, so that cost lands on key loading rather than on a request.
    pub fn new(key: &p256::ecdsa::VerifyingKey) -> P256VerifyKey {
        P256VerifyKey::with_window(key, Q_WINDOW)
    }

    /// As [`P256VerifyKey::new`], with a chosen window for the key's table (for measurement).
    pub fn with_window(key: &p256::ecdsa::VerifyingKey, window: u32) -> P256VerifyKey {
        let reserved = FixedBaseTable::size_for(window);
        let table = if generator_table().is_some()
            && reserve(&KEY_TABLE_BYTES, reserved, KEY_TABLE_BUDGET)
        {
            match FixedBaseTable::new(key.as_affine(), window) {
                Some(table) => Some(Arc::new(KeyTable { table, reserved })),
                None => {
                    KEY_TABLE_BYTES.fetch_sub(reserved, Ordering::Relaxed);
                    None
                }
            }
        } else {
            None
        };
        P256VerifyKey { key: *key, table }
    }

    /// The key's own table, if built (G's is shared: [`generator_table`]).
    pub fn table(&self) -> Option<&FixedBaseTable> {
        self.table.as_deref().map(|t| &t.table)
    }

    /// The public key.
    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        &self.key
    }

    /// Verifies an ES256 signature over `message` (hashed with SHA-256).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.verify_prehash(&Sha256::digest(message), signature)
    }

    /// Verifies `signature` over a message digest, exactly as ecdsa 0.16's `verify_prehash`
    /// does for P-256 (including its handling of digests of other lengths than 32 bytes).
    pub fn verify_prehash(&self, prehash: &[u8], signature: &Signature) -> bool {
        let (Some(g_table), Some(q_table)) = (generator_table(), self.table()) else {
            return self.key.verify_prehash(prehash, signature).is_ok();
        };
        let Some(field) = bits2field(prehash) else {
            return false;
        };
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&field);
        let (r, s) = signature.split_scalars();
        // s is non-zero (the signature type guarantees it), so the inverse exists.
        let Some(s_inv) = Option::<Scalar>::from(Invert::invert_vartime(&*s)) else {
            return false;
        };
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let sum = g_table.add_multiple(&u1, ProjectivePoint::IDENTITY);
        let sum = q_table.add_multiple(&u2, sum);
        // One field inversion: p256 0.13's `is_identity` would normalise twice more.
        let sum = sum.to_affine();
        if sum == AffinePoint::IDENTITY {
            return false;
        }
        <Scalar as Reduce<U256>>::reduce_bytes(&sum.x()) == *r
    }
}

/// ecdsa 0.16's `bits2field` for a 32-byte field: at least 16 bytes, a shorter digest is
/// left-padded with zeros and a longer one truncated to its leading 32 bytes.
fn bits2field(prehash: &[u8]) -> Option<FieldBytes> {
    if prehash.len() < 16 {
        return None;
    }
    let mut field = FieldBytes::default();
    let len = prehash.len().min(32);
    let (dst, src) = (field.get_mut(32 - len..)?, prehash.get(..len)?);
    dst.copy_from_slice(src);
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(bytes: [u8; 32]) -> Scalar {
        <Scalar as Reduce<U256>>::reduce_bytes(&bytes.into())
    }

    #[test]
    fn table_multiplication_matches_double_and_add() {
        let point = (ProjectivePoint::GENERATOR * scalar([7; 32])).to_affine();
        let mut edge = [0xffu8; 32];
        edge[0] = 0x7f;
        let scalars = [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            scalar([0x88; 32]),
            scalar([0x80; 32]),
            scalar(edge),
            scalar([0x5a; 32]),
        ];
        for window in MIN_WINDOW..=MAX_WINDOW {
            let table = FixedBaseTable::new(&point, window).unwrap();
            for k in &scalars {
                let got = table.add_multiple(k, ProjectivePoint::IDENTITY);
                assert_eq!(got, ProjectivePoint::from(point) * k, "window {window}");
            }
        }
    }

    #[test]
    fn table_sizes() {
        assert_eq!(row_count(4), 65);
        assert_eq!(row_count(8), 33);
        let g = AffinePoint::GENERATOR;
        assert_eq!(FixedBaseTable::new(&g, 4).unwrap().points.len(), 64 * 8 + 1);
        assert_eq!(generator_table().unwrap().points.len(), 32 * 128 + 1);
        assert_eq!(
            FixedBaseTable::new(&g, 5).unwrap().points.len(),
            51 * 16 + 2
        );
    }

    #[test]
    fn budget_reservations() {
        let used = AtomicUsize::new(0);
        assert!(reserve(&used, 600, 1000));
        assert!(reserve(&used, 400, 1000));
        assert!(!reserve(&used, 1, 1000));
        assert_eq!(used.load(Ordering::Relaxed), 1000);
        assert!(!reserve(&used, usize::MAX, usize::MAX));
        assert_eq!(
            FixedBaseTable::size_for(Q_WINDOW),
            FixedBaseTable::new(&AffinePoint::GENERATOR, Q_WINDOW)
                .unwrap()
                .heap_bytes()
        );
    }

    #[test]
    fn key_tables_are_counted_while_alive() {
        let key = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let verify_key = P256VerifyKey::new(key.verifying_key());
        assert!(verify_key.table().is_some());
        let copy = verify_key.clone();
        // Other tests build keys concurrently: only a lower bound holds.
        assert!(key_table_bytes() >= FixedBaseTable::size_for(Q_WINDOW));
        drop(verify_key);
        assert!(copy.table().is_some());
        drop(copy);
    }

    #[test]
    fn bits2field_matches_ecdsa() {
        assert!(bits2field(&[1; 15]).is_none());
        let short = bits2field(&[1; 16]).unwrap();
        assert_eq!(&short[..16], &[0; 16]);
        assert_eq!(&short[16..], &[1; 16]);
        let mut long = [2u8; 48];
        long[0] = 9;
        assert_eq!(&bits2field(&long).unwrap()[..], &long[..32]);
    }
}
