//! The DPoP `jti` replay cache (RFC 9449 §11.1): which proofs were accepted and until when
//! they would still be accepted.
//!
//! An entry is a 16-byte key (the first 128 bits of SHA-256 over the proof key's thumbprint
//! and the `jti`, see [`replay_key`]) and the last second at which its proof passes the `iat`
//! check (`iat + max_age`). After that second the `iat` check refuses the proof anyway, so
//! the entry is dropped.
//!
//! **When it is full.** Refusing every new proof until entries expire lets one client with a
//! valid key lock everybody out for a whole window; evicting a live entry lets an attacker
//! flush a captured proof's `jti` out and replay it. The cache does neither: it evicts the
//! entry that expires first and raises a *floor* to that entry's expiry (a new proof that
//! would expire before every live entry evicts nothing and is refused). From then on a
//! proof whose expiry is at or below the floor is refused ([`ReplayError::Full`],
//! `dpop_replay_cache_full`, 503) because the cache can no longer say whether it was seen.
//! The evicted proof is such a proof, so it can never be replayed; fresh proofs (with the
//! latest expiries) keep passing. Under a flood the floor rises and proofs must be ever
//! fresher; nothing that was accepted once is accepted twice. The floor stops mattering when
//! it falls below `now` (its proofs fail the `iat` check first).
//!
//! **Sharing.** The adapter keeps one cache per proxy in shared data and updates it with
//! compare-and-swap: read the record, [`ReplayCache::from_record`], [`check_and_insert`],
//! [`ReplayCache::to_record`], write with the CAS token read, and retry on a CAS mismatch.
//! A record that does not decode must not be replaced by an empty cache (that forgets every
//! `jti`): [`ReplayCache::after_loss`] starts over with a floor that refuses every proof
//! that could have been in it.
//!
//! [`check_and_insert`]: ReplayCache::check_and_insert

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use crate::authn::error::AuthError;
use crate::time::{Millis, UnixMillis};

/// The key of an accepted proof.
pub type ReplayKey = [u8; 16];

/// The record's first bytes: format name and version.
const RECORD_MAGIC: &[u8; 4] = b"JDR1";
/// Bytes of one entry in the record: key, then expiry (big-endian).
const ENTRY_BYTES: usize = 16 + 8;
/// Bytes before the entries: magic, floor, entry count.
const HEADER_BYTES: usize = 4 + 8 + 4;

/// The key under which a proof is remembered: its `jti`, scoped to the proof key, so a
/// client cannot burn another client's `jti` in advance. Fixed size whatever the `jti`.
pub fn replay_key(jkt: &str, jti: &str) -> ReplayKey {
    let digest = Sha256::new()
        .chain_update(jkt.as_bytes())
        .chain_update([0])
        .chain_update(jti.as_bytes())
        .finalize();
    let mut key = [0; 16];
    key.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    key
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Its key is in the cache: the proof was accepted before.
    Replayed,
    /// Its expiry is at or below the floor: the cache cannot tell.
    Full,
}

impl From<ReplayError> for AuthError {
    fn from(e: ReplayError) -> AuthError {
        match e {
            ReplayError::Replayed => AuthError::DpopReplayed,
            ReplayError::Full => AuthError::DpopReplayCacheFull,
        }
    }
}

/// Why a shared-data record was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Wrong magic, truncated, trailing bytes, or more entries than the capacity.
    Corrupt,
}

/// The set of accepted proofs still within their window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCache {
    capacity: usize,
    floor: u64,
    expiry_of: HashMap<ReplayKey, u64>,
    by_expiry: BTreeSet<(u64, ReplayKey)>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live proofs (at least one).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            floor: 0,
            expiry_of: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// An empty cache that stands in for one whose content was lost: every proof that
    /// could have been in it (expiring by `now + max_life`, the longest a proof accepted at
    /// `now` or before lives, in whole seconds) is refused as [`ReplayError::Full`].
    pub fn after_loss(capacity: usize, now: UnixMillis, max_life: Millis) -> ReplayCache {
        let mut cache = ReplayCache::new(capacity);
        cache.floor = now.as_secs().saturating_add(max_life.as_secs());
        cache
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.expiry_of.len()
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.expiry_of.is_empty()
    }

    /// The floor: proofs expiring at or before it are refused.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Records a proof that passed every other check, or refuses it. `expires` is the last
    /// second its `iat` is accepted (seconds since the epoch, the scale of `iat`).
    pub fn check_and_insert(
        &mut self,
        key: ReplayKey,
        expires: u64,
        now: UnixMillis,
    ) -> Result<(), ReplayError> {
        self.purge(now.as_secs());
        if self.expiry_of.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if expires <= self.floor {
            return Err(ReplayError::Full);
        }
        while self.expiry_of.len() >= self.capacity {
            let Some(first) = self.by_expiry.first().copied() else {
                break;
            };
            // A proof older than every live one evicts nothing: it is refused instead.
            if expires <= first.0 {
                return Err(ReplayError::Full);
            }
            self.by_expiry.remove(&first);
            self.expiry_of.remove(&first.1);
            self.floor = self.floor.max(first.0);
        }
        self.expiry_of.insert(key, expires);
        self.by_expiry.insert((expires, key));
        Ok(())
    }

    /// Drops the entries whose proofs the `iat` check refuses by `now_s` (seconds).
    fn purge(&mut self, now_s: u64) {
        while let Some(first) = self.by_expiry.first().copied() {
            if first.0 >= now_s {
                break;
            }
            self.by_expiry.remove(&first);
            self.expiry_of.remove(&first.1);
        }
    }

    /// The shared-data record: `JDR1`, the floor (u64), the entry count (u32), then each
    /// entry as its 16-byte key and its expiry (u64), all big-endian, in expiry order.
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.len() * ENTRY_BYTES);
        out.extend_from_slice(RECORD_MAGIC);
        out.extend_from_slice(&self.floor.to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.len()).unwrap_or(u32::MAX).to_be_bytes());
        for (expires, key) in &self.by_expiry {
            out.extend_from_slice(key);
            out.extend_from_slice(&expires.to_be_bytes());
        }
        out
    }

    /// Reads a record written by [`to_record`](ReplayCache::to_record); the capacity is this
    /// proxy's configuration, and a record holding more entries is refused.
    pub fn from_record(bytes: &[u8], capacity: usize) -> Result<ReplayCache, RecordError> {
        let magic = bytes.get(..4).ok_or(RecordError::Corrupt)?;
        if magic != RECORD_MAGIC {
            return Err(RecordError::Corrupt);
        }
        let floor = read_u64(bytes.get(4..12))?;
        let count = bytes
            .get(12..16)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(RecordError::Corrupt)?;
        let count = usize::try_from(count).map_err(|_| RecordError::Corrupt)?;
        let mut cache = ReplayCache::new(capacity);
        cache.floor = floor;
        let entries = bytes.get(HEADER_BYTES..).ok_or(RecordError::Corrupt)?;
        if count > cache.capacity || entries.len() != count * ENTRY_BYTES {
            return Err(RecordError::Corrupt);
        }
        for entry in entries.chunks_exact(ENTRY_BYTES) {
            let key: ReplayKey = entry
                .get(..16)
                .and_then(|k| k.try_into().ok())
                .ok_or(RecordError::Corrupt)?;
            let expires = read_u64(entry.get(16..))?;
            if cache.expiry_of.insert(key, expires).is_some() {
                return Err(RecordError::Corrupt);
            }
            cache.by_expiry.insert((expires, key));
        }
        Ok(cache)
    }
}

fn read_u64(bytes: Option<&[u8]>) -> Result<u64, RecordError> {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or(RecordError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secs` seconds after the epoch: the cache keeps whole seconds.
    fn at(secs: u64) -> UnixMillis {
        UnixMillis::from_secs(secs)
    }

    fn key(n: u8) -> ReplayKey {
        replay_key("jkt", &format!("jti-{n}"))
    }

    #[test]
    fn replays_are_refused_until_expiry() {
        let mut c = ReplayCache::new(8);
        assert_eq!(c.check_and_insert(key(1), 160, at(100)), Ok(()));
        // Every replay within the window, at any time up to and including the expiry.
        for now in [100, 101, 159, 160] {
            assert_eq!(
                c.check_and_insert(key(1), 160, at(now)),
                Err(ReplayError::Replayed),
                "{now}"
            );
        }
        // After the expiry the entry is gone (the iat check refuses such a proof first).
        assert_eq!(c.check_and_insert(key(2), 300, at(161)), Ok(()));
        assert_eq!(c.len(), 1);
        // The same jti under another key is another proof.
        assert_eq!(
            c.check_and_insert(replay_key("other", "jti-2"), 300, at(161)),
            Ok(())
        );
        assert_ne!(replay_key("a", "bc"), replay_key("ab", "c"));
    }

    #[test]
    fn full_cache_never_forgets_a_live_jti() {
        let mut c = ReplayCache::new(3);
        for (n, exp) in [(1, 110), (2, 120), (3, 130)] {
            assert_eq!(c.check_and_insert(key(n), exp, at(100)), Ok(()));
        }
        // A fourth proof evicts the one expiring first and raises the floor to it.
        assert_eq!(c.check_and_insert(key(4), 140, at(100)), Ok(()));
        assert_eq!((c.len(), c.floor()), (3, 110));
        // The evicted proof cannot be replayed: it is at the floor.
        assert_eq!(
            c.check_and_insert(key(1), 110, at(101)),
            Err(ReplayError::Full)
        );
        // Nor can any older proof, nor the live ones.
        assert_eq!(
            c.check_and_insert(key(9), 105, at(101)),
            Err(ReplayError::Full)
        );
        for (n, exp) in [(2, 120), (3, 130), (4, 140)] {
            assert_eq!(
                c.check_and_insert(key(n), exp, at(101)),
                Err(ReplayError::Replayed)
            );
        }
        // A proof older than every live entry does not evict a fresher one.
        assert_eq!(
            c.check_and_insert(key(5), 115, at(101)),
            Err(ReplayError::Full)
        );
        assert_eq!((c.len(), c.floor()), (3, 110));
        assert_eq!(
            c.check_and_insert(key(2), 120, at(101)),
            Err(ReplayError::Replayed)
        );
        // Fresh proofs keep passing.
        assert_eq!(c.check_and_insert(key(6), 150, at(101)), Ok(()));
        assert_eq!(
            AuthError::from(ReplayError::Replayed).code(),
            "dpop_replayed"
        );
        assert_eq!(
            AuthError::from(ReplayError::Full).code(),
            "dpop_replay_cache_full"
        );
    }

    #[test]
    fn flood_then_replay_attempts() {
        // An attacker floods the cache, then replays each accepted proof: every one refused.
        let mut c = ReplayCache::new(16);
        let mut accepted = Vec::new();
        for n in 0..200u8 {
            let exp = 1000 + u64::from(n % 50);
            if c.check_and_insert(key(n), exp, at(990)).is_ok() {
                accepted.push((n, exp));
            }
        }
        assert!(c.len() <= 16);
        for (n, exp) in accepted {
            assert!(c.check_and_insert(key(n), exp, at(995)).is_err(), "{n}");
        }
    }

    /// The record's bytes are a wire format (VMs of an older build read them during a
    /// rollout): `JDR1`, floor 1360, one entry (key 0x11.., expiry 1400), big-endian.
    #[test]
    fn record_encoding_is_stable() {
        let mut bytes = b"JDR1".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x05, 0x50]);
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        bytes.extend_from_slice(&[0x11; 16]);
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x05, 0x78]);
        let mut c = ReplayCache::from_record(&bytes, 2).unwrap();
        assert_eq!(c.floor(), 1360);
        assert_eq!(c.to_record(), bytes);
        assert_eq!(
            c.check_and_insert([0x11; 16], 1400, at(1001)),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn record_round_trip_and_corruption() {
        let mut c = ReplayCache::new(4);
        for (n, exp) in [(1, 110), (2, 120), (3, 130), (4, 140), (5, 150)] {
            c.check_and_insert(key(n), exp, at(100)).unwrap();
        }
        let record = c.to_record();
        assert_eq!(record.len(), HEADER_BYTES + 4 * ENTRY_BYTES);
        assert_eq!(ReplayCache::from_record(&record, 4), Ok(c.clone()));
        let mut back = ReplayCache::from_record(&record, 4).unwrap();
        assert_eq!(
            back.check_and_insert(key(3), 130, at(101)),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            back.check_and_insert(key(1), 110, at(101)),
            Err(ReplayError::Full)
        );

        assert_eq!(
            ReplayCache::from_record(&record, 3),
            Err(RecordError::Corrupt)
        );
        for cut in 0..record.len() {
            assert_eq!(
                ReplayCache::from_record(record.get(..cut).unwrap(), 4),
                Err(RecordError::Corrupt),
                "{cut}"
            );
        }
        let mut trailing = record.clone();
        trailing.push(0);
        assert_eq!(
            ReplayCache::from_record(&trailing, 4),
            Err(RecordError::Corrupt)
        );
        let mut magic = record.clone();
        magic[0] = b'X';
        assert_eq!(
            ReplayCache::from_record(&magic, 4),
            Err(RecordError::Corrupt)
        );
        let mut dup = record.clone();
        let second = HEADER_BYTES + ENTRY_BYTES;
        dup.copy_within(HEADER_BYTES..HEADER_BYTES + 16, second);
        assert_eq!(ReplayCache::from_record(&dup, 4), Err(RecordError::Corrupt));

        let lost = ReplayCache::after_loss(4, at(1000), Millis::from_secs(360));
        assert_eq!(lost.floor(), 1360);
        let mut lost = lost;
        assert_eq!(
            lost.check_and_insert(key(1), 1300, at(1000)),
            Err(ReplayError::Full)
        );
        assert_eq!(lost.check_and_insert(key(1), 1361, at(1001)), Ok(()));
        assert_eq!(
            ReplayCache::from_record(&ReplayCache::new(2).to_record(), 2),
            Ok(ReplayCache::new(2))
        );
    }
}
