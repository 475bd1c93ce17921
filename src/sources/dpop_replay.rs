//! The DPoP `jti` replay check against the per-proxy replay caches in shared data
//! (see [`crate::authn::sender::replay`] for the cache and its record): read, check and
//! insert, compare-and-swap, retry when another VM wrote first. It fails closed: a cache
//! that cannot be written refuses the request (`dpop_replay_cache_full`, 503), and a record
//! that does not decode is replaced by a cache that refuses every proof it could have held.

use crate::authn::authenticate::Proof;
use crate::authn::error::AuthError;
use crate::authn::policy::{DpopMode, Policy, ProviderId};
use crate::authn::sender::replay::{ReplayCache, ReplayKey};
use crate::sources::{SharedData, WriteError};
use crate::time::UnixMillis;

/// Compare-and-swap attempts per proof before the request is refused.
const MAX_CAS_ATTEMPTS: usize = 16;

/// A provider's cache is kept as this many records at most, a proof going to the one its
/// replay key's first byte picks: each request reads, decodes and writes back one shard
/// (at most 1/16 of the cache: ~15 KB for the default 10,000 entries, not 240 KB), and VMs
/// recording different proofs rarely race for the same record.
const SHARDS: usize = 16;

/// How many shards and how many entries in each for `capacity` entries in all (each shard
/// holds at least one; the total is `capacity` rounded up to a multiple of the shard count).
fn layout(capacity: usize) -> (usize, usize) {
    let shards = capacity.clamp(1, SHARDS);
    (shards, capacity.div_ceil(shards).max(1))
}

/// The shared-data name of the record holding `key` in provider `name`'s replay cache: one
/// cache per proxy and provider name, so a `jti` seen by one filter instance is refused by
/// every other one with that provider.
pub fn replay_cache_key(name: &str, capacity: usize, key: &ReplayKey) -> String {
    let (shards, _) = layout(capacity);
    format!(
        "jwt_edge/dpop_replay/{name}/{}",
        usize::from(key[0]) % shards
    )
}

/// Every record name of provider `name`'s replay cache (for tests and tools).
pub fn replay_cache_keys(name: &str, capacity: usize) -> impl Iterator<Item = String> + '_ {
    (0..layout(capacity).0).map(move |i| format!("jwt_edge/dpop_replay/{name}/{i}"))
}

/// Creates every shard of every DPoP provider's replay cache that does not exist yet, empty,
/// when a VM is configured. Envoy's shared data has no "only if absent": a write to a missing
/// key succeeds whatever the CAS token. So a record is never created with a proof in it
/// (two VMs doing that at once would each keep their own proof, one would be lost, and a
/// proof sent to both accepted twice): it is created empty here, before the VM serves, and
/// proofs only ever go in by compare-and-swap on a record that exists. (Should a record be
/// missing at request time anyway, [`record_proofs`] creates it the same way first.)
pub fn seed(store: &dyn SharedData, policy: &Policy) {
    for p in &policy.providers {
        if p.sender.dpop == DpopMode::Disabled {
            continue;
        }
        for key in replay_cache_keys(&p.name, p.sender.replay_cache_size) {
            // A host that refuses the write now is asked again at the first proof, which
            // fails closed if it still refuses.
            let _ = create_empty(store, &key, p.sender.replay_cache_size);
        }
    }
}

/// Writes an empty cache under `key` if it holds nothing.
fn create_empty(store: &dyn SharedData, key: &str, capacity: usize) -> Result<(), WriteError> {
    if store.read(key).0.is_some() {
        return Ok(());
    }
    let empty = ReplayCache::new(layout(capacity).1).to_record();
    match store.compare_and_swap(key, &empty, None) {
        Ok(()) | Err(WriteError::CasMismatch) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records the proofs a request was allowed on. The first proof seen before, or that cannot
/// be recorded, refuses the request: its provider and error.
pub fn record_proofs(
    store: &dyn SharedData,
    policy: &Policy,
    proofs: &[Proof],
    now: UnixMillis,
) -> Result<(), (ProviderId, AuthError)> {
    for proof in proofs {
        record(store, policy, proof, now).map_err(|e| (proof.provider, e))?;
    }
    Ok(())
}

fn record(
    store: &dyn SharedData,
    policy: &Policy,
    proof: &Proof,
    now: UnixMillis,
) -> Result<(), AuthError> {
    let p = policy
        .providers
        .get(proof.provider)
        .ok_or(AuthError::DpopReplayCacheFull)?;
    let (_, capacity) = layout(p.sender.replay_cache_size);
    let key = replay_cache_key(&p.name, p.sender.replay_cache_size, &proof.key);
    let max_life = p.sender.proof.max_age + p.sender.proof.max_future;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.read(&key);
        let Some(bytes) = bytes else {
            // Not seeded at configuration: created empty first, never with the proof in it
            // (see `seed`).
            if create_empty(store, &key, p.sender.replay_cache_size).is_err() {
                return Err(AuthError::DpopReplayCacheFull);
            }
            continue;
        };
        let mut cache = ReplayCache::from_record(&bytes, capacity)
            .unwrap_or_else(|_| ReplayCache::after_loss(capacity, now, max_life));
        cache.check_and_insert(proof.key, proof.until, now)?;
        match store.compare_and_swap(&key, &cache.to_record(), cas) {
            Ok(()) => return Ok(()),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Other) => return Err(AuthError::DpopReplayCacheFull),
        }
    }
    Err(AuthError::DpopReplayCacheFull)
}
