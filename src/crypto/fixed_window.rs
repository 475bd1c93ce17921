//! The layout of a signed fixed-window table, reading a scalar's digits, and the per-VM budget
//! that bounds the memory key tables take: what the ECDSA table verifier
//! ([`ecdsa`](crate::crypto::ecdsa)) needs whatever the curve.
//!
//! A table for a point P and window w holds `row[i][j-1] = j · 2^(w·i) · P` for `j` in
//! `1..=2^(w-1)`. A scalar is recoded into signed base-2^w digits (`|d_i| <= 2^(w-1)`), which
//! can carry one past the scalar's top bit, so the rows cover `scalar_bits + 1` bits and the
//! last row only holds the multiples its digit can reach.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Accepted window sizes. Above 8 the tables grow past a megabyte per point.
pub const MIN_WINDOW: u32 = 2;
pub const MAX_WINDOW: u32 = 8;

/// `window` within [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub fn clamp_window(window: u32) -> u32 {
    window.clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The entries of each row of a `window`-bit table for `scalar_bits`-bit scalars.
pub fn row_lengths(scalar_bits: u32, window: u32) -> impl Iterator<Item = usize> + Clone {
    (0..row_count(scalar_bits, window)).map(move |row| row_length(scalar_bits, window, row))
}

/// Rows of a `window`-bit signed-digit table for `scalar_bits`-bit scalars.
pub fn row_count(scalar_bits: u32, window: u32) -> u32 {
    (scalar_bits + 1).div_ceil(window)
}

/// Entries in row `row`: `2^(window-1)`, except in the last row, whose digit only covers the
/// scalar's top bits plus a carry.
pub fn row_length(scalar_bits: u32, window: u32, row: u32) -> usize {
    let row_len = 1usize << (window - 1);
    let rows = row_count(scalar_bits, window);
    if row + 1 < rows {
        return row_len;
    }
    let top_bits = scalar_bits.saturating_sub(window * (rows - 1));
    row_len.min(1usize << top_bits)
}

/// A big-endian scalar encoding as `N` little-endian 64-bit limbs (`be` is `8 · N` bytes).
pub fn le_limbs<const N: usize>(be: &[u8]) -> [u64; N] {
    let mut limbs = [0u64; N];
    for (limb, chunk) in limbs.iter_mut().zip(be.rchunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(word);
    }
    limbs
}

/// Bits `pos .. pos + width` of the little-endian `limbs` (zero beyond the top).
pub fn window_bits(limbs: &[u64], pos: u32, width: u32) -> i32 {
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

/// Heap bytes that key tables of one curve may hold at once in this VM.
pub struct TableBudget {
    used: AtomicUsize,
    limit: usize,
}

impl TableBudget {
    pub const fn new(limit: usize) -> TableBudget {
        TableBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// `bytes` of the budget, if that stays within it; given back when the reservation drops.
    pub fn reserve(&'static self, bytes: usize) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .ok()
            .map(|_| Reservation {
                budget: self,
                bytes,
            })
    }
}

/// Bytes taken from a [`TableBudget`] while a table lives.
pub struct Reservation {
    budget: &'static TableBudget,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_reservations() {
        static BUDGET: TableBudget = TableBudget::new(1000);
        let a = BUDGET.reserve(600).unwrap();
        let b = BUDGET.reserve(400).unwrap();
        assert!(BUDGET.reserve(1).is_none());
        assert_eq!(BUDGET.used(), 1000);
        drop(a);
        assert_eq!(BUDGET.used(), 400);
        assert!(BUDGET.reserve(usize::MAX).is_none());
        drop(b);
        assert_eq!(BUDGET.used(), 0);
    }

    #[test]
    fn rows() {
        // 257 bits (P-256) and 385 bits (P-384) of signed digits.
        assert_eq!(row_count(256, 4), 65);
        assert_eq!(row_count(256, 8), 33);
        assert_eq!(row_count(384, 7), 55);
        assert_eq!(row_count(384, 8), 49);
        // The last row holds what its digit can reach: 2^(bits left), capped at a full row.
        assert_eq!(row_length(256, 8, 31), 128);
        assert_eq!(row_length(256, 8, 32), 1);
        assert_eq!(row_length(384, 5, 76), 16);
        assert_eq!(row_length(384, 7, 54), 64);
    }

    #[test]
    fn digits() {
        let limbs = le_limbs::<2>(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0x03]);
        assert_eq!(limbs, [0xff00_0000_0000_0003, 0x8000_0000_0000_0001]);
        assert_eq!(window_bits(&limbs, 0, 4), 3);
        // Across the limb boundary: bits 60..68 = 0xf (top of limb 0) | 1 << 4 (limb 1).
        assert_eq!(window_bits(&limbs, 60, 8), 0x1f);
        assert_eq!(window_bits(&limbs, 124, 8), 0x8);
        assert_eq!(window_bits(&limbs, 128, 8), 0);
    }
}
