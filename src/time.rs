//! Time as the core sees it: an instant ([`UnixMillis`]) and a duration ([`Millis`]), both
//! whole milliseconds in a `u64`, so that seconds and milliseconds cannot be mixed up
//! silently: a count of seconds becomes one of these only through `from_secs`, and goes
//! back only through `as_secs`.
//!
//! The core reads no clock: the adapter reads the host's once per event and hands the
//! instant down. Arithmetic saturates (a panic kills the Wasm VM); JWT claims stay JSON
//! numbers of seconds and are compared with [`UnixMillis::as_secs`].

use std::ops::{Add, Sub};
use std::time::Duration;

/// An instant: milliseconds since the Unix epoch. [`UnixMillis::EPOCH`] (0) also stands for
/// "never" in records that keep a time per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

/// A duration in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl UnixMillis {
    pub const EPOCH: UnixMillis = UnixMillis(0);

    /// The instant `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> UnixMillis {
        UnixMillis(secs.saturating_mul(1000))
    }

    /// The instant `since_epoch` after the epoch, whole milliseconds (saturating): for a
    /// host clock.
    pub fn from_since_epoch(since_epoch: Duration) -> UnixMillis {
        UnixMillis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down): the scale of JWT `exp`, `nbf`, `iat`.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: UnixMillis) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

/// Saturating: the last representable instant rather than an overflow.
impl Add<Millis> for UnixMillis {
    type Output = UnixMillis;

    fn add(self, d: Millis) -> UnixMillis {
        UnixMillis(self.0.saturating_add(d.0))
    }
}

/// Saturating: the epoch rather than an underflow.
impl Sub<Millis> for UnixMillis {
    type Output = UnixMillis;

    fn sub(self, d: Millis) -> UnixMillis {
        UnixMillis(self.0.saturating_sub(d.0))
    }
}

impl Millis {
    pub const ZERO: Millis = Millis(0);

    /// `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs.saturating_mul(1000))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `self * n`, saturating.
    pub const fn saturating_mul(self, n: u64) -> Millis {
        Millis(self.0.saturating_mul(n))
    }
}

/// Saturating.
impl Add for Millis {
    type Output = Millis;

    fn add(self, d: Millis) -> Millis {
        Millis(self.0.saturating_add(d.0))
    }
}

/// For host calls that take a [`Duration`].
impl From<Millis> for Duration {
    fn from(d: Millis) -> Duration {
        Duration::from_millis(d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_saturation() {
        let t = UnixMillis::from_secs(1_700_000_000) + Millis(999);
        assert_eq!(
            (t.as_millis(), t.as_secs()),
            (1_700_000_000_999, 1_700_000_000)
        );
        assert_eq!(Millis::from_secs(3).as_millis(), 3_000);
        assert_eq!(Millis(2_999).as_secs(), 2);
        assert_eq!(UnixMillis(u64::MAX - 1) + Millis(5), UnixMillis(u64::MAX));
        assert_eq!(UnixMillis(3) - Millis(5), UnixMillis::EPOCH);
        assert_eq!(UnixMillis::from_secs(u64::MAX), UnixMillis(u64::MAX));
        assert_eq!(Millis(u64::MAX) + Millis(1), Millis(u64::MAX));
        assert_eq!(Millis(7).saturating_mul(u64::MAX), Millis(u64::MAX));
        assert_eq!(UnixMillis(10).saturating_since(UnixMillis(4)), Millis(6));
        assert_eq!(UnixMillis(4).saturating_since(UnixMillis(10)), Millis::ZERO);
        assert_eq!(
            UnixMillis::from_since_epoch(Duration::new(5, 1_999_999)),
            UnixMillis(5_001)
        );
        assert_eq!(
            UnixMillis::from_since_epoch(Duration::MAX),
            UnixMillis(u64::MAX)
        );
        assert_eq!(Duration::from(Millis(1_500)), Duration::from_millis(1_500));
    }
}
