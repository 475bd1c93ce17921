//! Points of a short Weierstrass curve with a = −3 (y² = x³ − 3x + b: P-256 and P-384) over
//! our own field arithmetic ([`p256_field`](crate::crypto::p256_field),
//! [`p384_field`](crate::crypto::p384_field)), and the signed fixed-window tables of
//! [`fixed_window`](crate::crypto::fixed_window) built from them. Written once over the field
//! ([`Field`]); each curve's module monomorphises it.
//!
//! - Jacobian points as accumulators, affine points as table entries, "madd-2004-hmv" mixed
//!   addition (8M + 3S). Those formulas are not complete, so the accumulator at the identity,
//!   P + P (which must double) and P + (−P) (the identity) are separate branches. An
//!   adversary can reach them only with negligible probability, but they are correct and
//!   tested.
//! - Table entries are built in Jacobian form, normalised in batches with one inversion each
//!   and checked to be on the curve; the curve's module checks the entries' sum against an
//!   independent computation before it uses a table.
//! - **Variable time, on purpose**: every point and scalar here is public (keys, signatures,
//!   digests). Never use this with a secret scalar (signing, ECDH).

use crate::crypto::fixed_window;

/// The field operations the point formulas need. Equality is equality of field elements (the
/// representations may differ).
pub trait Field: Copy + Eq + std::fmt::Debug {
    const ZERO: Self;
    const ONE: Self;
    /// The curve's b.
    fn curve_b() -> Self;
    fn add(&self, other: &Self) -> Self;
    fn sub(&self, other: &Self) -> Self;
    fn double(&self) -> Self;
    fn neg(&self) -> Self;
    fn mul(&self, other: &Self) -> Self;
    fn square(&self) -> Self;
    fn is_zero(&self) -> bool;
    /// `None` for 0.
    fn invert(&self) -> Option<Self>;
}

/// Implements [`Field`] for a field element type by its inherent methods of the same names:
/// `delegate_field!(Fe, B)` with `B` the curve's b, big-endian.
macro_rules! delegate_field {
    ($fe:ty, $b:expr) => {
        impl $crate::crypto::weierstrass::Field for $fe {
            const ZERO: $fe = <$fe>::ZERO;
            const ONE: $fe = <$fe>::ONE;

            fn curve_b() -> $fe {
                // A constant below p: never the fallback.
                <$fe>::from_be_bytes(&$b).unwrap_or(<$fe>::ZERO)
            }

            #[inline(always)]
            fn add(&self, other: &$fe) -> $fe {
                <$fe>::add(self, other)
            }

            #[inline(always)]
            fn sub(&self, other: &$fe) -> $fe {
                <$fe>::sub(self, other)
            }

            #[inline(always)]
            fn double(&self) -> $fe {
                <$fe>::double(self)
            }

            #[inline(always)]
            fn neg(&self) -> $fe {
                <$fe>::neg(self)
            }

            #[inline(always)]
            fn mul(&self, other: &$fe) -> $fe {
                <$fe>::mul(self, other)
            }

            #[inline(always)]
            fn square(&self) -> $fe {
                <$fe>::square(self)
            }

            #[inline(always)]
            fn is_zero(&self) -> bool {
                <$fe>::is_zero(self)
            }

            fn invert(&self) -> Option<$fe> {
                <$fe>::invert(self)
            }
        }
    };
}
pub(crate) use delegate_field;

/// A point other than the identity, `(x, y)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine<F> {
    pub x: F,
    pub y: F,
}

impl<F: Field> Affine<F> {
    /// Whether y² = x³ − 3x + b.
    pub fn is_on_curve(&self) -> bool {
        let x3 = self.x.square().mul(&self.x);
        let three_x = self.x.double().add(&self.x);
        self.y.square() == x3.sub(&three_x).add(&F::curve_b())
    }

    fn neg(&self) -> Affine<F> {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

/// `(X, Y, Z)` standing for `(X/Z², Y/Z³)`; `Z = 0` is the identity.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian<F> {
    pub x: F,
    pub y: F,
    pub z: F,
}

impl<F: Field> From<&Affine<F>> for Jacobian<F> {
    fn from(point: &Affine<F>) -> Jacobian<F> {
        Jacobian {
            x: point.x,
            y: point.y,
            z: F::ONE,
        }
    }
}

impl<F: Field> Jacobian<F> {
    pub const IDENTITY: Jacobian<F> = Jacobian {
        x: F::ONE,
        y: F::ONE,
        z: F::ZERO,
    };

    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// "dbl-2001-b" (a = −3), hyperelliptic.org/EFD/g1p/auto-shortw-jacobian-3.html.
    /// The identity doubles to Z = 2·Y·Z = 0, the identity (neither curve has a point of
    /// order 2).
    pub fn double(&self) -> Jacobian<F> {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let alpha = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = alpha.double().add(&alpha);
        let beta4 = beta.double().double();
        let x = alpha.square().sub(&beta4.double());
        let z = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2x8 = gamma.square().double().double().double();
        let y = alpha.mul(&beta4.sub(&x)).sub(&gamma2x8);
        Jacobian { x, y, z }
    }

    /// `self + other`, "madd-2004-hmv" (8M + 3S) with the identity, doubling and inverse
    /// cases handled: the formula itself is only valid for `self ≠ ±other`, `self ≠ 0`.
    pub fn add_affine(&self, other: &Affine<F>) -> Jacobian<F> {
        self.add_signed(other, false)
    }

    /// `self − other`, the same formula for (x, −y) without negating y: there S2 becomes −S2
    /// and r = −S2 − Y1, so `t = S2 + Y1` is computed instead and the sign goes where r
    /// appears unsquared, Y3 = r·(V − X3) − … = t·(X3 − V) − … (issue #13: a negation is a
    /// field subtraction, ~20 ns in V8, paid by about half of a verification's additions).
    pub fn sub_affine(&self, other: &Affine<F>) -> Jacobian<F> {
        self.add_signed(other, true)
    }

    fn add_signed(&self, other: &Affine<F>, negate: bool) -> Jacobian<F> {
        if self.is_identity() {
            return if negate {
                Jacobian::from(&other.neg())
            } else {
                Jacobian::from(other)
            };
        }
        let z1z1 = self.z.square();
        let u2 = other.x.mul(&z1z1);
        let s2 = other.y.mul(&z1z1.mul(&self.z));
        let h = u2.sub(&self.x);
        // r, or −r when negating.
        let r = if negate {
            s2.add(&self.y)
        } else {
            s2.sub(&self.y)
        };
        if h.is_zero() {
            // Same x: self = the point added (double) or its inverse (identity).
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        Jacobian::add_tail(&self.x, &self.y, &self.z, &h, &r, negate)
    }

    /// `self + other`, "add-1998-cmo-2" (12M + 4S) with the identity, doubling and inverse
    /// cases handled. For building tables.
    pub fn add(&self, other: &Jacobian<F>) -> Jacobian<F> {
        if self.is_identity() {
            return *other;
        }
        if other.is_identity() {
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
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        Jacobian::add_tail(&u1, &s1, &self.z.mul(&other.z), &h, &r, false)
    }

    /// What both addition formulas end with, from U1 = X1·Z2², S1 = Y1·Z2³, the product of
    /// the z coordinates, H = U2 − U1 and r = S2 − S1 (H ≠ 0): X3 = r² − H³ − 2·U1·H²,
    /// Y3 = r·(U1·H² − X3) − S1·H³, Z3 = z·H. With `r_negated`, `r` holds −r.
    fn add_tail(u1: &F, s1: &F, z: &F, h: &F, r: &F, r_negated: bool) -> Jacobian<F> {
        let hh = h.square();
        let hhh = hh.mul(h);
        let v = u1.mul(&hh);
        let x = r.square().sub(&hhh).sub(&v.double());
        let difference = if r_negated { x.sub(&v) } else { v.sub(&x) };
        let y = r.mul(&difference).sub(&s1.mul(&hhh));
        Jacobian { x, y, z: z.mul(h) }
    }

    /// The affine form (one inversion); `None` for the identity.
    pub fn to_affine(self) -> Option<Affine<F>> {
        let mut out = Vec::with_capacity(1);
        normalize_into(std::slice::from_ref(&self), &mut out)?;
        out.pop()
    }

    /// Whether the affine x coordinate X/Z² equals `x` (false for the identity), without
    /// an inversion: X = x·Z².
    pub fn has_x(&self, x: &F) -> bool {
        !self.is_identity() && self.x == x.mul(&self.z.square())
    }
}

/// `k · point` for `k` as little-endian 64-bit limbs, by plain double-and-add from the top
/// bit: an independent check of a table's entries, and ES384's path for a key without a table.
pub fn mul_vartime<F: Field>(point: &Affine<F>, k: &[u64]) -> Jacobian<F> {
    let mut acc = Jacobian::IDENTITY;
    for limb in k.iter().rev() {
        for bit in (0..64).rev() {
            acc = acc.double();
            if (limb >> bit) & 1 == 1 {
                acc = acc.add_affine(point);
            }
        }
    }
    acc
}

/// Appends the affine forms of `points` to `out`, with one field inversion in all
/// (Montgomery's trick), each checked to be on the curve. `None` if any point is the
/// identity or off the curve.
pub fn normalize_into<F: Field>(points: &[Jacobian<F>], out: &mut Vec<Affine<F>>) -> Option<()> {
    // prefix[i] = z_0 · … · z_i
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = F::ONE;
    for point in points {
        if point.is_identity() {
            return None;
        }
        product = product.mul(&point.z);
        prefix.push(product);
    }
    let mut inverse = product.invert()?;
    let start = out.len();
    let placeholder = Affine {
        x: F::ZERO,
        y: F::ZERO,
    };
    out.resize(start + points.len(), placeholder);
    let slots = out.get_mut(start..)?;
    // Walking back, `inverse` is (z_0 · … · z_i)⁻¹, so z_i⁻¹ = inverse · prefix[i-1].
    for (i, (point, slot)) in points.iter().zip(slots.iter_mut()).enumerate().rev() {
        let z_inv = match i.checked_sub(1) {
            Some(before) => inverse.mul(prefix.get(before)?),
            None => inverse,
        };
        inverse = inverse.mul(&point.z);
        let z_inv2 = z_inv.square();
        let affine = Affine {
            x: point.x.mul(&z_inv2),
            y: point.y.mul(&z_inv2.mul(&z_inv)),
        };
        if !affine.is_on_curve() {
            return None;
        }
        *slot = affine;
    }
    Some(())
}

/// Jacobian points normalised per field inversion while building a table.
const NORMALIZE_BATCH: usize = 1024;

/// The precomputed multiples of one point, for fixed-window scalar multiplication.
pub struct FixedBaseTable<F> {
    window: u32,
    /// Points per full row, `2^(window-1)`.
    row_len: usize,
    /// Rows concatenated; row `i` holds `j · 2^(window·i) · P` for `j = 1..=row_len`, except
    /// the last row, which only holds the multiples its digit can reach.
    points: Box<[Affine<F>]>,
}

impl<F: Field> FixedBaseTable<F> {
    /// Builds the table of `point` for `scalar_bits`-bit scalars with `window`-bit signed
    /// digits (clamped to [`fixed_window::MIN_WINDOW`]..=[`fixed_window::MAX_WINDOW`]); `None`
    /// if an entry is the identity or off the curve (for a point of prime order that never
    /// happens: no multiple `j · 2^(w·i)` with `j <= 2^(w-1)` is a multiple of the order).
    /// The caller checks [`FixedBaseTable::entry_sum`] before use.
    pub fn build(point: &Affine<F>, window: u32, scalar_bits: u32) -> Option<FixedBaseTable<F>> {
        let window = fixed_window::clamp_window(window);
        let row_len = 1usize << (window - 1);
        let lengths = fixed_window::row_lengths(scalar_bits, window);
        let mut points = Vec::with_capacity(lengths.clone().sum());
        // Rows are normalised in batches of about NORMALIZE_BATCH points: one inversion per
        // batch, and a bounded scratch buffer (a generator table would otherwise need
        // hundreds of KiB of Jacobian points at once, and wasm memory never shrinks).
        let mut pending = Vec::with_capacity(NORMALIZE_BATCH + row_len);
        let mut base = Jacobian::from(point);
        for len in lengths {
            let mut multiple = base;
            pending.push(multiple);
            for _ in 1..len {
                multiple = multiple.add(&base);
                pending.push(multiple);
            }
            // The next row's base, 2^window · base, doubles this row's top, 2^(window-1) ·
            // base (only the last row is shorter, and nothing follows it).
            base = multiple.double();
            if pending.len() >= NORMALIZE_BATCH {
                normalize_into(&pending, &mut points)?;
                pending.clear();
            }
        }
        normalize_into(&pending, &mut points)?;
        Some(FixedBaseTable {
            window,
            row_len,
            points: points.into_boxed_slice(),
        })
    }

    /// The sum of every entry, by the mixed additions verification uses: it must equal
    /// [`fixed_window::table_sum_scalar`] times the point.
    pub fn entry_sum(&self) -> Jacobian<F> {
        self.points
            .iter()
            .fold(Jacobian::IDENTITY, |sum, point| sum.add_affine(point))
    }

    /// Heap bytes a table with `window` would hold.
    pub fn size_for(window: u32, scalar_bits: u32) -> usize {
        let window = fixed_window::clamp_window(window);
        let points: usize = fixed_window::row_lengths(scalar_bits, window).sum();
        points * std::mem::size_of::<Affine<F>>()
    }

    /// The window size in bits.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the table has no entry (never, for a built table).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Affine<F>]>(&self.points)
    }

    /// Adds `k · P` to `acc`, for `k` as little-endian 64-bit limbs.
    pub fn add_multiple(&self, k: &[u64], mut acc: Jacobian<F>) -> Jacobian<F> {
        let half = 1i32 << (self.window - 1);
        let mut carry = 0i32;
        for (row, points) in self.points.chunks(self.row_len).enumerate() {
            // Signed recoding: a digit above 2^(w-1) becomes digit - 2^w, carrying 1 upwards.
            let mut digit =
                fixed_window::window_bits(k, row as u32 * self.window, self.window) + carry;
            if digit > half {
                digit -= 1 << self.window;
                carry = 1;
            } else {
                carry = 0;
            }
            if digit == 0 {
                continue;
            }
            // A missing entry cannot happen (see `build`); it would make the result wrong, and
            // a wrong result only ever rejects, because x(R) is then unrelated to r.
            if let Some(multiple) = points.get(digit.unsigned_abs() as usize - 1) {
                acc = if digit > 0 {
                    acc.add_affine(multiple)
                } else {
                    acc.sub_affine(multiple)
                };
            }
        }
        acc
    }
}
