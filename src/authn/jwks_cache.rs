//! The key-set lifecycle shared by every VM of one proxy: when to fetch, who fetches, what a
//! fetch result does, and what a request may use meanwhile.
//!
//! Every VM (one per worker, plus the main thread's) sees the same [`SharedMeta`] record,
//! stored by the adapter in proxy-wasm shared data and updated only by compare-and-swap. Each
//! transition is a pure function of `(meta, event, now)`:
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
//! `max_stale_ms` after it should have been refreshed.
//! Times are milliseconds since the Unix epoch.

/// First retry delay after a failed fetch.
pub const BACKOFF_BASE_MS: u64 = 1_000;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// How long the fetch lease lasts unless its holder renews it. The holder renews it on every
/// tick while its call is outstanding; a VM that goes away mid-fetch (Envoy's short-lived
/// main-thread VMs do) stops renewing, and another VM takes over within this time.
pub const LEASE_TTL_MS: u64 = 1_000;

/// The lifecycle record of one key source, shared by every VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedMeta {
    /// Version of the stored key-set document (0: none yet).
    pub doc_version: u64,
    /// When the stored document was fetched.
    pub fetched_at: u64,
    /// When the next fetch is due (refresh or retry).
    pub next_attempt_at: u64,
    /// A fetch is under way until this time (the lease).
    pub in_flight_until: u64,
    /// The VM holding the lease (0: none).
    pub holder: u64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// When the last on-demand refetch was requested.
    pub last_on_demand_at: u64,
}

/// Encoded size of [`SharedMeta`].
pub const META_LEN: usize = 52;

impl SharedMeta {
    /// The lifecycle state, for logs and tests.
    pub fn state(&self, now: u64) -> LifecycleState {
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

    /// True when this VM should try to take the lease and fetch.
    pub fn fetch_due(&self, now: u64) -> bool {
        now >= self.in_flight_until && now >= self.next_attempt_at
    }

    /// The record to write (by CAS) for VM `holder` to take the fetch lease.
    pub fn begin_fetch(&self, now: u64, holder: u64) -> SharedMeta {
        SharedMeta {
            in_flight_until: now + LEASE_TTL_MS,
            holder,
            ..*self
        }
    }

    /// The record to write to extend the lease, if `holder` still holds it.
    pub fn renew(&self, now: u64, holder: u64) -> Option<SharedMeta> {
        (self.holder == holder && self.in_flight_until > 0).then_some(SharedMeta {
            in_flight_until: now + LEASE_TTL_MS,
            ..*self
        })
    }

    /// After a usable key set was stored: next refresh at 85–95 % of `cache_duration`, so
    /// VMs of many proxies do not refresh in lockstep. `jitter` is in `[0, 1)`.
    pub fn on_success(&self, now: u64, cache_duration_ms: u64, jitter: f64) -> SharedMeta {
        let factor = 0.85 + 0.10 * jitter.clamp(0.0, 1.0);
        let refresh = ((cache_duration_ms as f64) * factor) as u64;
        SharedMeta {
            doc_version: self.doc_version + 1,
            fetched_at: now,
            next_attempt_at: now + refresh.max(1),
            in_flight_until: 0,
            holder: 0,
            failures: 0,
            last_on_demand_at: self.last_on_demand_at,
        }
    }

    /// After a failed fetch: capped exponential backoff with jitter; keys are kept.
    pub fn on_failure(&self, now: u64, jitter: f64) -> SharedMeta {
        let failures = self.failures.saturating_add(1);
        SharedMeta {
            failures,
            next_attempt_at: now + backoff_ms(failures, jitter),
            in_flight_until: 0,
            holder: 0,
            ..*self
        }
    }

    /// An unknown `kid` asks for an early refetch: granted at most once per `min_interval_ms`,
    /// and never while a fetch is under way. Returns the record to write, or `None`.
    pub fn request_refetch(&self, now: u64, min_interval_ms: u64) -> Option<SharedMeta> {
        if now < self.in_flight_until
            || now < self.last_on_demand_at.saturating_add(min_interval_ms)
            || self.next_attempt_at <= now
        {
            return None;
        }
        Some(SharedMeta {
            next_attempt_at: now,
            last_on_demand_at: now,
            ..*self
        })
    }

    /// True when keys fetched at `fetched_at` may still be used at `now`.
    pub fn keys_usable(&self, now: u64, cache_duration_ms: u64, max_stale_ms: u64) -> bool {
        self.doc_version > 0
            && now
                <= self
                    .fetched_at
                    .saturating_add(cache_duration_ms)
                    .saturating_add(max_stale_ms)
    }

    /// Fixed-width little-endian encoding.
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        let fields = [
            self.doc_version,
            self.fetched_at,
            self.next_attempt_at,
            self.in_flight_until,
            self.last_on_demand_at,
            self.holder,
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        if let Some(tail) = out.get_mut(48..52) {
            tail.copy_from_slice(&self.failures.to_le_bytes());
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<SharedMeta> {
        if bytes.len() != META_LEN {
            return None;
        }
        let u64_at = |i: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        let failures: [u8; 4] = bytes.get(48..52)?.try_into().ok()?;
        Some(SharedMeta {
            doc_version: u64_at(0)?,
            fetched_at: u64_at(8)?,
            next_attempt_at: u64_at(16)?,
            in_flight_until: u64_at(24)?,
            last_on_demand_at: u64_at(32)?,
            holder: u64_at(40)?,
            failures: u32::from_le_bytes(failures),
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
pub fn backoff_ms(failures: u32, jitter: f64) -> u64 {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE_MS
        .saturating_mul(1u64 << exp)
        .min(BACKOFF_MAX_MS);
    let cut = (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64;
    base - cut
}

/// The shared document: 8-byte little-endian version, then the JWKS bytes as fetched.
pub fn encode_doc(version: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a shared document into version and JWKS bytes.
pub fn decode_doc(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (v, body) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(v.try_into().ok()?), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let m = SharedMeta::default();
        assert_eq!(m.state(0), LifecycleState::Missing);
        assert!(m.fetch_due(0));
        let f = m.begin_fetch(1_000, 42);
        assert_eq!(f.state(1_000), LifecycleState::Fetching);
        assert!(!f.fetch_due(1_999));
        // The holder renews while its call is outstanding; nobody else can.
        let r = f.renew(1_900, 42).unwrap();
        assert!(!r.fetch_due(2_500));
        assert_eq!(f.renew(1_900, 7), None);
        // A VM that died mid-fetch stops renewing: the lease lapses.
        assert!(r.fetch_due(2_900));
        let ok = f.on_success(2_000, 600_000, 0.0);
        assert_eq!(ok.doc_version, 1);
        assert_eq!(ok.state(2_001), LifecycleState::Fresh);
        assert_eq!(ok.next_attempt_at, 2_000 + 510_000);
        assert_eq!(ok.on_success(0, 600_000, 0.999).next_attempt_at, 569_940);
        assert_eq!(ok.state(512_000), LifecycleState::Stale);
        assert!(ok.fetch_due(512_000));
        let bad = ok.begin_fetch(512_000, 1).on_failure(513_000, 0.0);
        assert_eq!((bad.holder, bad.in_flight_until), (0, 0));
        assert_eq!(bad.state(513_000), LifecycleState::Backoff);
        assert_eq!(bad.doc_version, 1, "a failure keeps the key set");
        assert_eq!(bad.next_attempt_at, 514_000);
        let bad2 = bad.on_failure(514_000, 0.0);
        assert_eq!(bad2.next_attempt_at, 516_000);
        assert_eq!(bad2.on_success(517_000, 1_000, 0.0).failures, 0);
    }

    #[test]
    fn backoff_caps() {
        assert_eq!(backoff_ms(1, 0.0), 1_000);
        assert_eq!(backoff_ms(3, 0.0), 4_000);
        assert_eq!(backoff_ms(6, 0.0), 30_000);
        assert_eq!(backoff_ms(u32::MAX, 0.0), 30_000);
        assert_eq!(backoff_ms(6, 1.0), 24_000);
    }

    #[test]
    fn stale_window() {
        let m = SharedMeta::default().on_success(0, 1_000, 0.0);
        assert!(m.keys_usable(1_000 + 5_000, 1_000, 5_000));
        assert!(!m.keys_usable(1_000 + 5_001, 1_000, 5_000));
        assert!(!SharedMeta::default().keys_usable(0, 1, 1));
    }

    #[test]
    fn on_demand_refetch_is_rate_limited() {
        let m = SharedMeta::default().on_success(0, 600_000, 0.0);
        let r = m.request_refetch(20_000, 10_000).unwrap();
        assert!(r.fetch_due(20_000));
        let after = r.begin_fetch(20_000, 1).on_success(20_500, 600_000, 0.0);
        assert_eq!(after.request_refetch(25_000, 10_000), None);
        assert!(after.request_refetch(30_500, 10_000).is_some());
        assert_eq!(m.begin_fetch(1, 1).request_refetch(2, 0), None);
    }

    #[test]
    fn codec() {
        let m = SharedMeta {
            doc_version: 7,
            fetched_at: 1,
            next_attempt_at: 2,
            in_flight_until: 3,
            failures: 4,
            last_on_demand_at: 5,
            holder: 6,
        };
        assert_eq!(SharedMeta::decode(&m.encode()), Some(m));
        assert_eq!(SharedMeta::decode(&[0; 3]), None);
        let d = encode_doc(9, b"{}");
        assert_eq!(decode_doc(&d), Some((9, &b"{}"[..])));
        assert_eq!(decode_doc(b"short"), None);
    }
}
