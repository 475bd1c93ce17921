//! The lifecycle record of one key source, shared by every VM of one proxy: when to fetch,
//! who fetches (the lease), what a fetch result does, and what a request may use meanwhile.
//!
//! Every VM (one per worker, plus the main thread's) sees the same [`Lease`] record, kept in
//! proxy-wasm shared data and updated only by compare-and-swap (see [`super::Sources`]). Each
//! transition is a pure function of `(record, event, now)`:
//!
//! ```text
//!            fetch due & lease won            200 + usable JWKS
//!  Missing ─────────────────────────▶ Fetching ─────────────────▶ Fresh ──(cache_duration)──▶ due
//!     ▲                                  │  bad status / not a JWKS / timeout                │
//!     │                                  ▼                                                    │
//!     └──────────────(backoff)──────── Backoff ◀──────────────────────────────────────────────┘
//! ```
//!
//! A failed refresh never removes a good key set: it stays usable (stale-while-error) until
//! `max_stale` after it should have been refreshed.
//! Times are [`UnixMillis`] (0, the epoch: never); the record keeps them as `u64` milliseconds.

use crate::time::{Millis, UnixMillis};

/// First retry delay after a failed fetch.
pub const BACKOFF_BASE_MS: Millis = Millis(1_000);
/// Longest retry delay.
pub const BACKOFF_MAX_MS: Millis = Millis(30_000);
/// How long the fetch lease lasts unless its holder renews it. The holder renews it on every
/// tick while its call is outstanding; a VM that goes away mid-fetch (Envoy's short-lived
/// main-thread VMs do) stops renewing, and another VM takes over within this time.
pub const LEASE_TTL_MS: Millis = Millis(1_000);
/// While requests wait for a source that has no usable document, a failed fetch is retried
/// after this long instead of the backoff: the backoff (1 s, 2 s, 4 s ...) would sleep
/// through the identity provider's recovery while those requests time out (issue 15).
pub const STARVED_RETRY_MS: Millis = Millis(250);

/// Length of a document digest (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// The lifecycle record of one key source, shared by every VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// Version of the stored document (0: none yet). A version names exactly one document:
    /// the one whose digest is `doc_digest`.
    pub doc_version: u64,
    /// When the stored document was last fetched (or fetched again unchanged).
    pub fetched_at: UnixMillis,
    /// When the next fetch is due (refresh or retry).
    pub next_attempt_at: UnixMillis,
    /// A fetch is under way until this time (the lease).
    pub in_flight_until: UnixMillis,
    /// The VM holding the lease (0: none).
    pub holder: u64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// When the last on-demand refetch was requested.
    pub last_on_demand_at: UnixMillis,
    /// Completed fetches, good or bad: a request waiting for a fetch wakes when it changes,
    /// even when the fetch brought the same document (which keeps its version).
    pub generation: u64,
    /// When the last fetch failed (the epoch: never).
    pub last_failure_at: UnixMillis,
    /// SHA-256 of the stored document (all zero: none).
    pub doc_digest: [u8; DIGEST_LEN],
}

/// Encoded size of [`Lease`].
pub const META_LEN: usize = 8 * 8 + 4 + DIGEST_LEN;

impl Lease {
    /// The lifecycle state, for logs and tests.
    pub fn state(&self, now: UnixMillis) -> LifecycleState {
        if now < self.in_flight_until {
            LifecycleState::Fetching
        } else if self.failures > 0 {
            LifecycleState::Backoff
        } else if self.doc_version == 0 {
            LifecycleState::Missing
        } else if now < self.next_attempt_at {
            LifecycleState::Fresh
        } else {
            LifecycleState::Stale
        }
    }

    /// True when this VM should try to take the lease and fetch. `starved`: requests of
    /// this VM wait for this source and no usable document is there; they retry every
    /// [`STARVED_RETRY_MS`] rather than sleep through the backoff.
    pub fn fetch_due(&self, now: UnixMillis, starved: bool) -> bool {
        now >= self.in_flight_until
            && (now >= self.next_attempt_at
                || (starved && now >= self.last_failure_at + STARVED_RETRY_MS))
    }

    /// The record to write (by CAS) for VM `holder` to take the fetch lease.
    pub fn begin_fetch(&self, now: UnixMillis, holder: u64) -> Lease {
        Lease {
            in_flight_until: now + LEASE_TTL_MS,
            holder,
            ..*self
        }
    }

    /// The record to write to extend the lease, if `holder` still holds it.
    pub fn renew(&self, now: UnixMillis, holder: u64) -> Option<Lease> {
        (self.holder == holder && self.in_flight_until > UnixMillis::EPOCH).then_some(Lease {
            in_flight_until: now + LEASE_TTL_MS,
            ..*self
        })
    }

    /// The record with the lease given up (nothing else changes).
    pub fn release(&self) -> Lease {
        Lease {
            in_flight_until: UnixMillis::EPOCH,
            holder: 0,
            ..*self
        }
    }

    /// After a usable document with digest `digest` was fetched: next refresh at 85–95 % of
    /// `cache_duration`, so VMs of many proxies do not refresh in lockstep. `jitter` is in
    /// `[0, 1)`. A document identical to the stored one keeps its version: no VM parses it
    /// again, rebuilds its key tables or empties its token cache (issue 15, F2).
    pub fn on_success(
        &self,
        now: UnixMillis,
        cache_duration: Millis,
        jitter: f64,
        digest: [u8; DIGEST_LEN],
    ) -> Lease {
        let factor = 0.85 + 0.10 * jitter.clamp(0.0, 1.0);
        let refresh = ((cache_duration.as_millis() as f64) * factor) as u64;
        let same = self.doc_version > 0 && self.doc_digest == digest;
        Lease {
            doc_version: if same {
                self.doc_version
            } else {
                self.doc_version + 1
            },
            fetched_at: now,
            next_attempt_at: now + Millis(refresh.max(1)),
            in_flight_until: UnixMillis::EPOCH,
            holder: 0,
            failures: 0,
            last_on_demand_at: self.last_on_demand_at,
            generation: self.generation.wrapping_add(1),
            last_failure_at: self.last_failure_at,
            doc_digest: digest,
        }
    }

    /// After a failed fetch: capped exponential backoff with jitter; the document is kept.
    /// A fetch that failed before its scheduled time (a retry for waiting requests, see
    /// [`fetch_due`](Self::fetch_due)) leaves the schedule as it is: quick retries while
    /// requests wait must not push the next regular attempt out to the 30 s cap.
    pub fn on_failure(&self, now: UnixMillis, jitter: f64) -> Lease {
        if now < self.next_attempt_at {
            return Lease {
                in_flight_until: UnixMillis::EPOCH,
                holder: 0,
                generation: self.generation.wrapping_add(1),
                last_failure_at: now,
                ..*self
            };
        }
        let failures = self.failures.saturating_add(1);
        Lease {
            failures,
            next_attempt_at: now + backoff_ms(failures, jitter),
            in_flight_until: UnixMillis::EPOCH,
            holder: 0,
            generation: self.generation.wrapping_add(1),
            last_failure_at: now,
            ..*self
        }
    }

    /// An unknown `kid` asks for an early refetch: granted at most once per `min_interval`,
    /// and never while a fetch is under way. Returns the record to write, or `None`.
    pub fn request_refetch(&self, now: UnixMillis, min_interval: Millis) -> Option<Lease> {
        if now < self.in_flight_until
            || now < self.last_on_demand_at + min_interval
            || self.next_attempt_at <= now
        {
            return None;
        }
        Some(Lease {
            next_attempt_at: now,
            last_on_demand_at: now,
            ..*self
        })
    }

    /// True when a fetch is under way or due now: a request may wait for its outcome.
    pub fn fetch_coming(&self, now: UnixMillis) -> bool {
        // An early refetch another VM asked for and nobody has started yet is coming too,
        // whatever `now` says: a request's `now` is read when it arrives, and may be older
        // than the request time the other VM wrote (seen as one 401 in 48 at a rotation).
        let requested = self.last_on_demand_at > UnixMillis::EPOCH
            && self.next_attempt_at <= self.last_on_demand_at;
        now < self.in_flight_until || self.next_attempt_at <= now || requested
    }

    /// True when keys fetched at `fetched_at` may still be used at `now`.
    pub fn keys_usable(&self, now: UnixMillis, cache_duration: Millis, max_stale: Millis) -> bool {
        self.doc_version > 0 && now <= self.fetched_at + cache_duration + max_stale
    }

    /// Fixed-width little-endian encoding (times as `u64` milliseconds since the epoch).
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        let fields = [
            self.doc_version,
            self.fetched_at.as_millis(),
            self.next_attempt_at.as_millis(),
            self.in_flight_until.as_millis(),
            self.last_on_demand_at.as_millis(),
            self.holder,
            self.generation,
            self.last_failure_at.as_millis(),
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        if let Some(tail) = out.get_mut(64..68) {
            tail.copy_from_slice(&self.failures.to_le_bytes());
        }
        if let Some(tail) = out.get_mut(68..) {
            tail.copy_from_slice(&self.doc_digest);
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        if bytes.len() != META_LEN {
            return None;
        }
        let u64_at = |i: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        let at = |i: usize| u64_at(i).map(UnixMillis);
        let failures: [u8; 4] = bytes.get(64..68)?.try_into().ok()?;
        Some(Lease {
            doc_version: u64_at(0)?,
            fetched_at: at(8)?,
            next_attempt_at: at(16)?,
            in_flight_until: at(24)?,
            last_on_demand_at: at(32)?,
            holder: u64_at(40)?,
            generation: u64_at(48)?,
            last_failure_at: at(56)?,
            failures: u32::from_le_bytes(failures),
            doc_digest: bytes.get(68..)?.try_into().ok()?,
        })
    }
}

/// Where a key source is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleState {
    Missing,
    Fetching,
    Fresh,
    Stale,
    Backoff,
}

/// Retry delay after `failures` consecutive failures: 1 s, 2 s, 4 s … capped at 30 s, minus
/// up to 20 % jitter.
pub fn backoff_ms(failures: u32, jitter: f64) -> Millis {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE_MS
        .saturating_mul(1u64 << exp)
        .min(BACKOFF_MAX_MS)
        .as_millis();
    let cut = (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64;
    Millis(base - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: [u8; DIGEST_LEN] = [1; DIGEST_LEN];

    #[test]
    fn a_requested_refetch_is_coming_for_a_request_that_arrived_earlier() {
        let fetched = Lease {
            doc_version: 1,
            next_attempt_at: UnixMillis(60_000),
            ..Lease::default()
        };
        assert!(!fetched.fetch_coming(UnixMillis(5_000)));
        // Another VM asked for an early refetch at 5_010; this VM's request arrived at 5_000.
        let asked = fetched
            .request_refetch(UnixMillis(5_010), Millis(1_000))
            .unwrap();
        assert!(asked.fetch_coming(UnixMillis(5_000)));
        assert!(asked.fetch_coming(UnixMillis(5_010)));
        // Once it was tried and failed, the back-off is not "coming".
        let backing_off = Lease {
            next_attempt_at: UnixMillis(6_000),
            ..asked
        };
        assert!(!backing_off.fetch_coming(UnixMillis(5_500)));
    }

    #[test]
    fn lifecycle() {
        let m = Lease::default();
        assert_eq!(m.state(UnixMillis(0)), LifecycleState::Missing);
        assert!(m.fetch_due(UnixMillis(0), false));
        let f = m.begin_fetch(UnixMillis(1_000), 42);
        assert_eq!(f.state(UnixMillis(1_000)), LifecycleState::Fetching);
        assert!(!f.fetch_due(UnixMillis(1_999), false));
        // The holder renews while its call is outstanding; nobody else can.
        let r = f.renew(UnixMillis(1_900), 42).unwrap();
        assert!(!r.fetch_due(UnixMillis(2_500), false));
        assert_eq!(f.renew(UnixMillis(1_900), 7), None);
        // A VM that died mid-fetch stops renewing: the lease lapses.
        assert!(r.fetch_due(UnixMillis(2_900), false));
        let ok = f.on_success(UnixMillis(2_000), Millis(600_000), 0.0, D1);
        assert_eq!(ok.doc_version, 1);
        assert_eq!(ok.state(UnixMillis(2_001)), LifecycleState::Fresh);
        assert_eq!(ok.next_attempt_at, UnixMillis(2_000 + 510_000));
        assert_eq!(
            ok.on_success(UnixMillis(0), Millis(600_000), 0.999, D1)
                .next_attempt_at,
            UnixMillis(569_940)
        );
        assert_eq!(ok.state(UnixMillis(512_000)), LifecycleState::Stale);
        assert!(ok.fetch_due(UnixMillis(512_000), false));
        let bad = ok
            .begin_fetch(UnixMillis(512_000), 1)
            .on_failure(UnixMillis(513_000), 0.0);
        assert_eq!((bad.holder, bad.in_flight_until), (0, UnixMillis(0)));
        assert_eq!(bad.state(UnixMillis(513_000)), LifecycleState::Backoff);
        assert_eq!(bad.doc_version, 1, "a failure keeps the key set");
        assert_eq!(bad.next_attempt_at, UnixMillis(514_000));
        let bad2 = bad.on_failure(UnixMillis(514_000), 0.0);
        assert_eq!(bad2.next_attempt_at, UnixMillis(516_000));
        assert_eq!(
            bad2.on_success(UnixMillis(517_000), Millis(1_000), 0.0, D1)
                .failures,
            0
        );
    }

    #[test]
    fn backoff_caps() {
        assert_eq!(backoff_ms(1, 0.0), Millis(1_000));
        assert_eq!(backoff_ms(3, 0.0), Millis(4_000));
        assert_eq!(backoff_ms(6, 0.0), Millis(30_000));
        assert_eq!(backoff_ms(u32::MAX, 0.0), Millis(30_000));
        assert_eq!(backoff_ms(6, 1.0), Millis(24_000));
    }

    #[test]
    fn stale_window() {
        let m = Lease::default().on_success(UnixMillis(0), Millis(1_000), 0.0, D1);
        assert!(m.keys_usable(UnixMillis(1_000 + 5_000), Millis(1_000), Millis(5_000)));
        assert!(!m.keys_usable(UnixMillis(1_000 + 5_001), Millis(1_000), Millis(5_000)));
        assert!(!Lease::default().keys_usable(UnixMillis(0), Millis(1), Millis(1)));
    }

    #[test]
    fn on_demand_refetch_is_rate_limited() {
        let m = Lease::default().on_success(UnixMillis(0), Millis(600_000), 0.0, D1);
        let r = m
            .request_refetch(UnixMillis(20_000), Millis(10_000))
            .unwrap();
        assert!(r.fetch_due(UnixMillis(20_000), false));
        let after = r.begin_fetch(UnixMillis(20_000), 1).on_success(
            UnixMillis(20_500),
            Millis(600_000),
            0.0,
            D1,
        );
        assert_eq!(
            after.request_refetch(UnixMillis(25_000), Millis(10_000)),
            None
        );
        assert!(after
            .request_refetch(UnixMillis(30_500), Millis(10_000))
            .is_some());
        assert_eq!(
            m.begin_fetch(UnixMillis(1), 1)
                .request_refetch(UnixMillis(2), Millis(0)),
            None
        );
    }

    #[test]
    fn codec() {
        let m = Lease {
            doc_version: 7,
            fetched_at: UnixMillis(1),
            next_attempt_at: UnixMillis(2),
            in_flight_until: UnixMillis(3),
            failures: 4,
            last_on_demand_at: UnixMillis(5),
            holder: 6,
            generation: 8,
            last_failure_at: UnixMillis(9),
            doc_digest: [7; DIGEST_LEN],
        };
        assert_eq!(Lease::decode(&m.encode()), Some(m));
        assert_eq!(Lease::decode(&[0; 3]), None);
    }

    /// The record's bytes are a wire format: VMs of an older build read them during a
    /// rollout. Pinned here (computed independently with Python's `struct.pack("<Q")`).
    #[test]
    fn encoding_is_stable() {
        let m = Lease {
            doc_version: 7,
            fetched_at: UnixMillis(1_700_000_000_123),
            next_attempt_at: UnixMillis(1_700_000_510_000),
            in_flight_until: UnixMillis(1_700_000_001_000),
            last_on_demand_at: UnixMillis(1_699_999_990_000),
            holder: 0xfeed,
            generation: 3,
            last_failure_at: UnixMillis(1_699_999_000_000),
            failures: 4,
            doc_digest: std::array::from_fn(|i| i as u8),
        };
        let hex: String = m.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "07000000000000007b68e5cf8b0100003030edcf8b010000e86be5cf8b010000\
             f040e5cf8b010000edfe0000000000000300000000000000c025d6cf8b010000\
             04000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b\
             1c1d1e1f"
        );
        assert_eq!(Lease::decode(&m.encode()), Some(m));
    }

    /// F2: the same document fetched again keeps its version (and bumps the generation, so
    /// that requests waiting for that fetch wake); a different one is the next version.
    #[test]
    fn an_identical_document_keeps_its_version() {
        let one = Lease::default().on_success(UnixMillis(0), Millis(60_000), 0.0, D1);
        let again =
            one.begin_fetch(UnixMillis(10), 5)
                .on_success(UnixMillis(20), Millis(60_000), 0.0, D1);
        assert_eq!((again.doc_version, again.generation), (1, 2));
        assert_eq!(again.fetched_at, UnixMillis(20));
        let other = again.on_success(UnixMillis(30), Millis(60_000), 0.0, [2; DIGEST_LEN]);
        assert_eq!((other.doc_version, other.generation), (2, 3));
        // A first fetch whose digest happens to be all zero is still version 1.
        assert_eq!(
            Lease::default()
                .on_success(UnixMillis(0), Millis(1), 0.0, [0; DIGEST_LEN])
                .doc_version,
            1
        );
    }

    /// Cold start: with requests waiting and nothing usable, a failed fetch is retried after
    /// STARVED_RETRY_MS, not after the backoff; without waiters the backoff holds.
    #[test]
    fn starved_sources_retry_quickly() {
        let mut m = Lease::default();
        for _ in 0..5 {
            let at = m.next_attempt_at;
            m = m.begin_fetch(at, 1).on_failure(at + Millis(10), 0.0);
        }
        let failed_at = m.last_failure_at;
        assert_eq!(m.failures, 5);
        assert!(m.next_attempt_at >= failed_at + Millis(16_000));
        assert!(!m.fetch_due(failed_at + STARVED_RETRY_MS - Millis(1), true));
        assert!(m.fetch_due(failed_at + STARVED_RETRY_MS, true));
        assert!(!m.fetch_due(failed_at + STARVED_RETRY_MS, false));
        // Never while a fetch is under way.
        let leased = m.begin_fetch(failed_at + STARVED_RETRY_MS, 2);
        assert!(!leased.fetch_due(failed_at + STARVED_RETRY_MS + Millis(500), true));
        // A quick retry that fails leaves the backoff schedule alone.
        let again = leased.on_failure(failed_at + Millis(300), 0.0);
        assert_eq!(
            (again.failures, again.next_attempt_at),
            (m.failures, m.next_attempt_at)
        );
        assert_eq!(
            (again.last_failure_at, again.holder),
            (failed_at + Millis(300), 0)
        );
        assert_eq!(again.generation, m.generation + 1);
    }
}
