//! The verified-token cache (jwt_authn's `jwt_cache_config`): skips parsing and signature
//! verification for a token this VM has already verified for the same provider.
//!
//! - Only tokens that passed every check are stored.
//! - The key is the whole token string: a hit means byte-for-byte the same token, never
//!   "same hash".
//! - Claims are checked again on every hit (expiry, issuer, subject, audience), so an entry
//!   never outlives the token's `exp`; the adapter clears the cache when a key set changes,
//!   so an entry never outlives the key that verified it.
//! - Bounded per provider: two generations of at most `capacity / 2` entries each; a full
//!   generation becomes the old one and the older is dropped (an O(1) approximation of LRU:
//!   entries used in the last generation survive).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::authn::jws::VerifiedToken;
use crate::authn::policy::ProviderId;

#[derive(Debug, Default)]
struct Generations {
    capacity: usize,
    young: HashMap<Box<str>, Rc<VerifiedToken>>,
    old: HashMap<Box<str>, Rc<VerifiedToken>>,
}

impl Generations {
    fn get(&mut self, token: &str) -> Option<Rc<VerifiedToken>> {
        if let Some(v) = self.young.get(token) {
            return Some(v.clone());
        }
        let v = self.old.remove(token)?;
        self.insert(token, v.clone());
        Some(v)
    }

    fn insert(&mut self, token: &str, v: Rc<VerifiedToken>) {
        let half = (self.capacity / 2).max(1);
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(token.into(), v);
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// Per-provider verified-token caches of one VM.
#[derive(Debug, Default)]
pub struct TokenCache {
    providers: RefCell<Vec<Generations>>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl TokenCache {
    /// One cache per provider; capacity 0 disables caching for that provider.
    pub fn new(capacities: impl IntoIterator<Item = usize>) -> TokenCache {
        TokenCache {
            providers: RefCell::new(
                capacities
                    .into_iter()
                    .map(|capacity| Generations {
                        capacity,
                        ..Generations::default()
                    })
                    .collect(),
            ),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    /// A cache that stores nothing.
    pub fn disabled() -> TokenCache {
        TokenCache::default()
    }

    fn enabled(&self, provider: ProviderId) -> bool {
        self.providers
            .borrow()
            .get(provider)
            .is_some_and(|g| g.capacity > 0)
    }

    /// The verified token for exactly this token string, if cached.
    pub fn get(&self, provider: ProviderId, token: &str) -> Option<Rc<VerifiedToken>> {
        if !self.enabled(provider) {
            return None;
        }
        let found = self
            .providers
            .borrow_mut()
            .get_mut(provider)
            .and_then(|g| g.get(token));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.set(counter.get() + 1);
        found
    }

    /// Stores a token that passed every check.
    pub fn put(&self, provider: ProviderId, token: &str, verified: Rc<VerifiedToken>) {
        if let Some(g) = self.providers.borrow_mut().get_mut(provider) {
            if g.capacity > 0 {
                g.insert(token, verified);
            }
        }
    }

    /// Drops every entry (a key set changed).
    pub fn clear(&self) {
        for g in self.providers.borrow_mut().iter_mut() {
            g.young.clear();
            g.old.clear();
        }
    }

    /// Entries held for `provider`.
    pub fn len(&self, provider: ProviderId) -> usize {
        self.providers
            .borrow()
            .get(provider)
            .map_or(0, Generations::len)
    }

    /// Hits and misses since the last call.
    pub fn take_stats(&self) -> (u64, u64) {
        (self.hits.replace(0), self.misses.replace(0))
    }
}
