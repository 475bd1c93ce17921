//! DPoP server nonces (RFC 9449 §8) against the per-proxy nonce secrets in shared data (see
//! [`crate::authn::sender::nonce`] for the nonces themselves).
//!
//! Each provider with `dpop_nonce: required` has one 32-byte secret per proxy, under
//! `jwt_edge/dpop_nonce/<provider>`, created at configuration ([`seed`]) so that every worker
//! issues and accepts the same nonces. Envoy's shared data cannot create a record only if it
//! is absent: two VMs starting together may both write one, and the last write stays. So no
//! VM keeps a secret of its own: every check reads the record (33 bytes, next to the replay
//! record's read and write on the same request), and a VM whose write lost simply reads the
//! winner's. A record that cannot be read or created fails closed (`dpop_nonce_unavailable`,
//! 503); one that does not decode is replaced by compare-and-swap (the nonces issued under
//! it stop passing, and clients get a fresh one with their next `use_dpop_nonce`).
//!
//! The secret is never logged, and neither is a nonce a client sent.

use sha2::{Digest, Sha256};

use crate::authn::authenticate::Proof;
use crate::authn::error::AuthError;
use crate::authn::policy::{Policy, ProviderId};
use crate::authn::sender::nonce::{issue, verify, NonceSecret, SECRET_BYTES};
use crate::sources::{SharedData, WriteError};
use crate::time::UnixMillis;

/// The record's format version, its first byte.
const RECORD_VERSION: u8 = 1;
/// Read-create rounds before the request is refused.
const MAX_ATTEMPTS: usize = 4;

/// A nonce check that refused the request: the provider, the error, and for
/// `use_dpop_nonce` the fresh nonce the reply carries in `DPoP-Nonce`.
pub type NonceRefusal = (ProviderId, AuthError, Option<String>);

/// The shared-data name of provider `name`'s nonce secret.
pub fn nonce_secret_key(name: &str) -> String {
    format!("jwt_edge/dpop_nonce/{name}")
}

/// Creates the nonce secret of every provider that requires nonces, when a VM is configured
/// (before it serves, so that the VMs' racing first writes settle before any nonce is
/// issued).
pub fn seed(store: &dyn SharedData, policy: &Policy) {
    for p in &policy.providers {
        if p.sender.nonce_lifetime.is_some() {
            // Asked again at the first proof, which fails closed if it still fails.
            let _ = secret(store, &p.name);
        }
    }
}

/// Checks the nonce of every proof whose provider requires one. The first that fails
/// refuses the request.
pub fn check_nonces(
    store: &dyn SharedData,
    policy: &Policy,
    proofs: &[Proof],
    now: UnixMillis,
) -> Result<(), NonceRefusal> {
    for proof in proofs {
        let Some(p) = policy.providers.get(proof.provider) else {
            continue;
        };
        let Some(lifetime) = p.sender.nonce_lifetime else {
            continue;
        };
        let secret = secret(store, &p.name).map_err(|e| (proof.provider, e, None))?;
        if let Err(e) = verify(&secret, &p.name, lifetime, &proof.nonce, now) {
            let fresh = issue(&secret, &p.name, lifetime, now);
            return Err((proof.provider, e, Some(fresh)));
        }
    }
    Ok(())
}

/// Provider `name`'s secret as stored, created first if absent or unreadable.
pub fn secret(store: &dyn SharedData, name: &str) -> Result<NonceSecret, AuthError> {
    let key = nonce_secret_key(name);
    for _ in 0..MAX_ATTEMPTS {
        let (bytes, cas) = store.read(&key);
        if let Some(secret) = bytes.as_deref().and_then(decode) {
            return Ok(secret);
        }
        // Absent (`cas` is `None`) or not a record of ours (replaced under its token). Read
        // back on the next round whether this write won or another VM's did.
        match store.compare_and_swap(&key, &encode(&random_secret()), cas) {
            Ok(()) | Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Other) => return Err(AuthError::DpopNonceUnavailable),
        }
    }
    Err(AuthError::DpopNonceUnavailable)
}

fn encode(secret: &NonceSecret) -> Vec<u8> {
    let mut record = Vec::with_capacity(1 + SECRET_BYTES);
    record.push(RECORD_VERSION);
    record.extend_from_slice(secret);
    record
}

fn decode(record: &[u8]) -> Option<NonceSecret> {
    match record.split_first() {
        Some((&RECORD_VERSION, secret)) => secret.try_into().ok(),
        _ => None,
    }
}

/// 32 bytes from the host's random source ([`crate::sources::random_u64`], eight draws)
/// hashed together: 128 bits of entropy, as strong as the MAC it keys.
fn random_secret() -> NonceSecret {
    let mut h = Sha256::new();
    h.update(b"jwt-edge dpop nonce secret");
    for _ in 0..8 {
        h.update(crate::sources::random_u64().to_be_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::memory::MemoryStore;

    #[test]
    fn created_once_then_read() {
        let store = MemoryStore::default();
        let a = secret(&store, "idp").unwrap();
        assert_eq!(secret(&store, "idp").unwrap(), a);
        let (bytes, _) = store.read("jwt_edge/dpop_nonce/idp");
        assert_eq!(bytes.unwrap(), encode(&a));
        // Per provider.
        assert_ne!(secret(&store, "other").unwrap(), a);
        assert!(store.blind_overwrites.borrow().is_empty());
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_secret(), random_secret());
        assert_ne!(random_secret(), [0; SECRET_BYTES]);
    }

    /// Two VMs that created the record at once: the one whose write lost reads the winner's
    /// on its next check, so both accept each other's nonces.
    #[test]
    fn a_vm_whose_write_lost_converges() {
        let store = MemoryStore::default();
        let mine = secret(&store, "idp").unwrap();
        // Another VM's blind write (no CAS token: the key looked absent to it).
        let theirs = [9; SECRET_BYTES];
        store
            .compare_and_swap("jwt_edge/dpop_nonce/idp", &encode(&theirs), None)
            .unwrap();
        assert_ne!(mine, theirs);
        assert_eq!(secret(&store, "idp").unwrap(), theirs);
    }

    #[test]
    fn a_corrupt_record_is_replaced() {
        let store = MemoryStore::default();
        for bad in [
            &b""[..],
            &[RECORD_VERSION; 32][..],
            &[2; 33][..],
            &[RECORD_VERSION; 34][..],
        ] {
            store.put("jwt_edge/dpop_nonce/idp", bad, 77);
            let s = secret(&store, "idp").unwrap();
            let (bytes, _) = store.read("jwt_edge/dpop_nonce/idp");
            assert_eq!(bytes.unwrap(), encode(&s));
        }
        assert!(store.blind_overwrites.borrow().is_empty());
    }

    #[test]
    fn fails_closed_when_the_record_cannot_be_written() {
        let store = MemoryStore::default();
        store.lose.set(u32::MAX);
        assert_eq!(secret(&store, "idp"), Err(AuthError::DpopNonceUnavailable));
    }

    #[test]
    fn record_round_trip() {
        let s = [3; SECRET_BYTES];
        assert_eq!(decode(&encode(&s)), Some(s));
        assert_eq!(encode(&s).len(), 33);
    }
}
