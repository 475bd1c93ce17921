//! The DPoP `jti` replay check against the per-proxy replay caches in shared data
//! (see [`crate::authn::sender::replay`] for the cache and its record): read, check and
//! insert, compare-and-swap, retry when another VM wrote first. It fails closed: a cache
//! that cannot be written refuses the request (`dpop_replay_cache_full`, 503), and a record
//! that does not decode is replaced by a cache that refuses every proof it could have held.

use crate::authn::authenticate::Proof;
use crate::authn::error::AuthError;
use crate::authn::policy::{Policy, ProviderId};
use crate::authn::sender::replay::ReplayCache;
use crate::sources::{SharedData, WriteError};

/// Compare-and-swap attempts per proof before the request is refused.
const MAX_CAS_ATTEMPTS: usize = 16;

/// The shared-data name of provider `name`'s replay cache: one per proxy and provider name,
/// so a `jti` seen by one filter instance is refused by every other one with that provider.
pub fn replay_cache_key(name: &str) -> String {
    format!("jwt_edge/dpop_replay/{name}")
}

/// Records the proofs a request was allowed on. The first proof seen before, or that cannot
/// be recorded, refuses the request: its provider and error.
pub fn record_proofs(
    store: &dyn SharedData,
    policy: &Policy,
    proofs: &[Proof],
    now: u64,
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
    now: u64,
) -> Result<(), AuthError> {
    let p = policy
        .providers
        .get(proof.provider)
        .ok_or(AuthError::DpopReplayCacheFull)?;
    let key = replay_cache_key(&p.name);
    let capacity = p.sender.replay_cache_size;
    let max_life = p
        .sender
        .proof
        .max_age
        .saturating_add(p.sender.proof.max_future);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (bytes, cas) = store.read(&key);
        let mut cache = match bytes {
            None => ReplayCache::new(capacity),
            Some(b) => ReplayCache::from_record(&b, capacity)
                .unwrap_or_else(|_| ReplayCache::after_loss(capacity, now, max_life)),
        };
        cache.check_and_insert(proof.key, proof.until, now)?;
        match store.compare_and_swap(&key, &cache.to_record(), cas) {
            Ok(()) => return Ok(()),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Other) => return Err(AuthError::DpopReplayCacheFull),
        }
    }
    Err(AuthError::DpopReplayCacheFull)
}
