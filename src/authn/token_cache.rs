//! The verified-token cache (jwt_authn's `jwt_cache_config`): skips signature verification
//! for a token this VM has already verified for the same provider.
//!
//! - Only tokens that passed every check are stored.
//! - A hit means byte-for-byte the same token, never "same hash": the table is indexed by a
//!   keyed 64-bit hash of the token, and every candidate is then compared in full (header
//!   segment, payload and signature).
//! - Claims are checked again on every hit (expiry, issuer, subject, audience), so an entry
//!   never outlives the token's `exp`; the adapter clears the cache when a key set changes,
//!   so an entry never outlives the key that verified it.
//! - Bounded per provider: two generations of at most `capacity / 2` entries each; a full
//!   generation becomes the old one and the older is dropped (an O(1) approximation of LRU:
//!   entries used in the last generation survive).
//!
//! ## Compact entries
//!
//! An entry keeps the token itself, losslessly, in about three quarters of its size, and
//! nothing derived from it: the payload and the signature decoded from base64url (one
//! allocation), and the header segment shared with every other entry that carries the same
//! one (tokens of one issuer have a handful of distinct headers). Strict base64url
//! ([`b64`]) accepts exactly one encoding of any byte string, so "decodes to the stored
//! bytes" is the same test as "is the stored text"; a token whose segments do not decode
//! strictly is never stored. The claims are parsed again from the stored payload on every
//! hit (a few microseconds, against ~0.5 KiB per entry for a parsed claim map): with RS256
//! tokens from a 2048-bit key an entry costs ~0.45 KiB instead of ~1.1 KiB.
//!
//! ## Hot tokens
//!
//! Decoding the stored token to compare it and parsing its claims again cost a hit a few
//! microseconds in V8 (issue #13's ablation ladder, `make bench-ladder`). A token that hits
//! once usually hits again (a client reuses its token until it expires), so each provider also
//! keeps a small memo of tokens that hit: [`HOT_SLOTS`] slots (at most the cache's capacity),
//! in sets of [`HOT_WAYS`] by the same keyed hash, each holding the token text and its parsed,
//! verified form. A token found there is compared in full as text (no decoding) and its claims
//! are not parsed again; they are still checked on every hit by the caller. Only a token that
//! hit in the compact table enters the memo (one-off tokens never do), tokens over
//! [`HOT_MAX_TOKEN_BYTES`] never do, and the memo is cleared with the cache. Its memory is
//! bounded: 64 slots of RS256 tokens from a 2048-bit key take ~80 KiB per provider.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::authn::b64;
use crate::authn::jws::{segments, Header, VerifiedToken};
use crate::authn::policy::ProviderId;

/// Bytes at the end of a token that its table index is computed from.
const HASHED_SUFFIX: usize = 48;

/// Distinct header segments shared per provider; past this, entries keep their own copy.
const MAX_SHARED_HEADERS: usize = 16;

/// Slots of a provider's memo of hot tokens (fewer when the cache's capacity is smaller).
pub const HOT_SLOTS: usize = 64;

/// Ways of a set of the memo: a token may sit in any slot of its set, least recently used
/// out. With two ways, 16 hot tokens in 64 slots put three in one set for about one VM in
/// two (their per-VM hash keys decide which), and those three then missed on every turn.
const HOT_WAYS: usize = 8;

/// Longer tokens never enter the memo: with [`HOT_SLOTS`] this bounds its memory.
pub const HOT_MAX_TOKEN_BYTES: usize = 2048;

/// A token that hit, kept whole with its parsed form.
#[derive(Debug)]
struct Hot {
    hash: u64,
    token: Box<str>,
    verified: Rc<VerifiedToken>,
}

/// A header segment and its parsed form, shared by the entries that carry it.
#[derive(Debug)]
struct SharedHeader {
    segment: Box<str>,
    parsed: Rc<Header>,
}

/// One verified token: `header.segment`, then `bytes[..payload_len]` and `bytes[payload_len..]`
/// base64url-encoded, joined by dots, is exactly the token.
#[derive(Debug)]
struct Entry {
    header: Rc<SharedHeader>,
    bytes: Box<[u8]>,
    payload_len: u32,
}

impl Entry {
    fn payload(&self) -> &[u8] {
        self.bytes
            .get(..self.payload_len as usize)
            .unwrap_or_default()
    }

    fn signature(&self) -> &[u8] {
        self.bytes
            .get(self.payload_len as usize..)
            .unwrap_or_default()
    }

    /// Whether `token` is exactly this entry's token.
    fn is(&self, token: &str) -> bool {
        let Some((header, payload, signature)) = segments(token) else {
            return false;
        };
        // Strict decoding is injective: equal bytes mean equal text.
        header == &*self.header.segment
            && b64::decode(payload).as_deref() == Some(self.payload())
            && b64::decode(signature).as_deref() == Some(self.signature())
    }
}

/// `a == b`, eight bytes per step: the module's `memcmp` (wasi-libc's) compares one byte per
/// step, and every hit compares a whole token (about 500 bytes for RS256).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| <[u8; 8]>::try_from(c).map_or(0, u64::from_ne_bytes);
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = wa.remainder() == wb.remainder();
    tails_equal && wa.zip(wb).all(|(x, y)| word(x) == word(y))
}

/// The table's keys are already keyed hashes: hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (u64 keys); fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

#[derive(Debug, Default)]
struct Generations {
    capacity: usize,
    young: Table,
    old: Table,
    headers: Vec<Rc<SharedHeader>>,
    /// The memo of hot tokens: empty until the first hit, then `hot_slots()` long.
    hot: Vec<Option<Hot>>,
}

/// Moves `set[way]` to the front, the slots before it one place down: `rotate_right(1)` on
/// `set[..=way]` for a set of at most [`HOT_WAYS`], by swaps (core's rotation is generic
/// code the wasm build, at LLVM inline threshold 0, calls rather than inlines).
#[inline]
fn to_front<T>(set: &mut [T], way: usize) {
    for i in (1..=way.min(set.len().saturating_sub(1))).rev() {
        set.swap(i, i - 1);
    }
}

impl Generations {
    fn hot_slots(&self) -> usize {
        self.capacity.min(HOT_SLOTS)
    }

    /// The memo's slots for `hash`: a set of [`HOT_WAYS`] (all slots when there are fewer),
    /// most recently used first, so that hot tokens whose hashes meet do not evict each
    /// other on every request.
    #[inline]
    fn hot_set(&self, hash: u64) -> std::ops::Range<usize> {
        let slots = self.hot.len();
        let ways = HOT_WAYS.min(slots);
        if ways == 0 {
            return 0..0;
        }
        let first = (hash as usize % (slots / ways)) * ways;
        first..first + ways
    }

    /// The memo's answer for exactly `token`, if it holds it; a hit moves to the front of
    /// its set (the last is the one evicted next). Only a slot with the same hash is
    /// compared, in full.
    fn hot_get(&mut self, hash: u64, token: &str) -> Option<Rc<VerifiedToken>> {
        let range = self.hot_set(hash);
        let set = self.hot.get_mut(range)?;
        let way = set.iter().position(|slot| {
            slot.as_ref().is_some_and(|hot| {
                hot.hash == hash && same_bytes(hot.token.as_bytes(), token.as_bytes())
            })
        })?;
        to_front(set, way);
        set.first()?.as_ref().map(|hot| hot.verified.clone())
    }

    /// Keeps `token`, which just hit, in the memo: first in its set, the others one place
    /// down, the least recently used gone.
    fn hot_put(&mut self, hash: u64, token: &str, verified: &Rc<VerifiedToken>) {
        let slots = self.hot_slots();
        if slots == 0 || token.len() > HOT_MAX_TOKEN_BYTES {
            return;
        }
        if self.hot.len() != slots {
            self.hot = std::iter::repeat_with(|| None).take(slots).collect();
        }
        let range = self.hot_set(hash);
        let Some(set) = self.hot.get_mut(range) else {
            return;
        };
        to_front(set, set.len().saturating_sub(1));
        if let Some(slot) = set.first_mut() {
            *slot = Some(Hot {
                hash,
                token: token.into(),
                verified: verified.clone(),
            });
        }
    }

    fn get(&mut self, hash: u64, token: &str) -> Option<&Entry> {
        if self.young.get(&hash).is_some_and(|e| e.is(token)) {
            return self.young.get(&hash);
        }
        if !self.old.get(&hash).is_some_and(|e| e.is(token)) {
            return None;
        }
        let entry = self.old.remove(&hash)?;
        self.insert(hash, entry);
        self.young.get(&hash)
    }

    fn insert(&mut self, hash: u64, entry: Entry) {
        let half = (self.capacity / 2).max(1);
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
        // Another token with the same 64-bit hash is replaced: lookups compare in full, so
        // a collision costs a miss, never a wrong hit.
        self.young.insert(hash, entry);
    }

    /// The shared copy of `segment`, made when new (up to [`MAX_SHARED_HEADERS`]).
    fn header(&mut self, segment: &str, parsed: &Rc<Header>) -> Rc<SharedHeader> {
        if let Some(h) = self.headers.iter().find(|h| &*h.segment == segment) {
            return h.clone();
        }
        let h = Rc::new(SharedHeader {
            segment: segment.into(),
            parsed: parsed.clone(),
        });
        if self.headers.len() < MAX_SHARED_HEADERS {
            self.headers.push(h.clone());
        }
        h
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    fn clear(&mut self) {
        self.young = Table::default();
        self.old = Table::default();
        self.headers.clear();
        self.hot = Vec::new();
    }
}

/// Per-provider verified-token caches of one VM.
#[derive(Debug, Default)]
pub struct TokenCache {
    providers: RefCell<Vec<Generations>>,
    /// Keys the token hash with per-VM random keys, so that nobody can aim requests at
    /// one slot of the table.
    hasher: RandomState,
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
            ..TokenCache::default()
        }
    }

    /// The table index of `token`: a keyed hash of its length and its last
    /// [`HASHED_SUFFIX`] bytes, the tail of the signature, which differs between any two
    /// tokens a key signs (hashing all ~0.5-1 KiB would cost more than the rest of a hit).
    /// Candidates are compared in full, so tokens that share a tail only share a slot.
    fn hash(&self, token: &str) -> u64 {
        let tail = token
            .as_bytes()
            .get(token.len().saturating_sub(HASHED_SUFFIX)..)
            .unwrap_or_default();
        self.hasher.hash_one((token.len(), tail))
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
        let hash = self.hash(token);
        let mut providers = self.providers.borrow_mut();
        let found = providers.get_mut(provider).and_then(|g| {
            if let Some(hot) = g.hot_get(hash, token) {
                return Some(hot);
            }
            let found = g
                .get(hash, token)
                .and_then(|e| VerifiedToken::from_cache(e.header.parsed.clone(), e.payload()))
                .map(Rc::new)?;
            g.hot_put(hash, token, &found);
            Some(found)
        });
        drop(providers);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.set(counter.get() + 1);
        found
    }

    /// Stores `token`, which passed every check as `verified`. A token that is not a strict
    /// compact JWS (it would not have verified) is not stored.
    pub fn put(&self, provider: ProviderId, token: &str, verified: &VerifiedToken) {
        let mut providers = self.providers.borrow_mut();
        let Some(g) = providers.get_mut(provider).filter(|g| g.capacity > 0) else {
            return;
        };
        let Some((header, payload, signature)) = segments(token) else {
            return;
        };
        let (Some(mut bytes), Some(signature)) = (b64::decode(payload), b64::decode(signature))
        else {
            return;
        };
        let Ok(payload_len) = u32::try_from(bytes.len()) else {
            return;
        };
        bytes.extend_from_slice(&signature);
        let entry = Entry {
            header: g.header(header, verified.shared_header()),
            bytes: bytes.into_boxed_slice(),
            payload_len,
        };
        g.insert(self.hash(token), entry);
    }

    /// Drops every entry (a key set changed).
    pub fn clear(&self) {
        for g in self.providers.borrow_mut().iter_mut() {
            g.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jws::UntrustedToken;

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    /// A token whose "verification" is faked with `VerifiedToken::from_cache` (the cache only
    /// stores; what it is given was verified by the caller).
    fn token(sub: &str, sig: &[u8]) -> (String, VerifiedToken) {
        let h = seg(r#"{"alg":"RS256","kid":"k1"}"#);
        let p = seg(&format!(
            r#"{{"iss":"https://issuer.test","sub":"{sub}","exp":4102444800}}"#
        ));
        let t = format!("{h}.{p}.{}", b64::encode(sig));
        let parsed = UntrustedToken::parse(&t, 8192).unwrap();
        let header = Rc::new(parsed.header().clone());
        let v = VerifiedToken::from_cache(header, &b64::decode(&p).unwrap()).unwrap();
        (t, v)
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let base: Vec<u8> = (0..40u8).collect();
        for len in 0..=40 {
            let a = &base[..len];
            assert!(same_bytes(a, a));
            assert!(!same_bytes(a, &base[..len.saturating_sub(1)]) || len == 0);
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x80;
                assert!(!same_bytes(a, &b), "len {len}, differs at {at}");
            }
        }
    }

    #[test]
    fn hit_only_for_the_exact_token() {
        let cache = TokenCache::new([10]);
        let (t, v) = token("alice", &[7; 256]);
        cache.put(0, &t, &v);
        let hit = cache.get(0, &t).unwrap();
        assert_eq!(hit.claims()["sub"], "alice");
        assert_eq!(hit.header().kid.as_deref(), Some("k1"));
        // Same header and payload, another signature: the signature is part of the token.
        let (t2, _) = token("alice", &[8; 256]);
        assert!(cache.get(0, &t2).is_none());
        // A signature that is a prefix of the stored one, or one byte longer.
        let (t3, _) = token("alice", &[7; 255]);
        assert!(cache.get(0, &t3).is_none());
        let (t4, _) = token("alice", &[7; 257]);
        assert!(cache.get(0, &t4).is_none());
        // Another payload, same signature.
        let (t5, _) = token("bob", &[7; 256]);
        assert!(cache.get(0, &t5).is_none());
        // Padded, four segments, non-zero trailing bits (decodes to the same bytes by a lax
        // decoder), a '+' where '-'/'_' or a letter belongs.
        let sig_start = t.rfind('.').unwrap() + 1;
        assert!(t.ends_with("Bw"));
        for bad in [
            format!("{t}="),
            format!("{t}.x"),
            t.replacen('.', "=.", 1),
            format!("{}x", &t[..t.len() - 1]),
            format!("{}+{}", &t[..sig_start], &t[sig_start + 1..]),
        ] {
            assert!(cache.get(0, &bad).is_none(), "{bad}");
        }
        assert_eq!(cache.take_stats(), (1, 9));
        // Another provider's cache does not know it.
        assert!(cache.get(1, &t).is_none());
    }

    #[test]
    fn full_comparison_survives_hash_collisions() {
        // Every token in one slot: the table must still only answer for the exact token.
        let mut g = Generations {
            capacity: 10,
            ..Generations::default()
        };
        let (a, va) = token("alice", &[1; 64]);
        let (b, vb) = token("bob", &[1; 64]);
        let entry = |t: &str, v: &VerifiedToken, g: &mut Generations| {
            let (h, p, s) = segments(t).unwrap();
            let mut bytes = b64::decode(p).unwrap();
            let payload_len = bytes.len() as u32;
            bytes.extend(b64::decode(s).unwrap());
            Entry {
                header: g.header(h, v.shared_header()),
                bytes: bytes.into(),
                payload_len,
            }
        };
        let ea = entry(&a, &va, &mut g);
        g.insert(42, ea);
        assert!(g.get(42, &a).is_some());
        assert!(g.get(42, &b).is_none());
        let eb = entry(&b, &vb, &mut g);
        g.insert(42, eb);
        assert!(g.get(42, &a).is_none());
        assert!(g.get(42, &b).is_some());
        // Both entries share one header.
        assert_eq!(g.headers.len(), 1);
    }

    #[test]
    fn tokens_sharing_a_tail_share_a_slot_never_an_answer() {
        let cache = TokenCache::new([10]);
        // Same length, same signature, different claims: the same table index.
        let (a, va) = token("alice", &[7; 256]);
        let (b, vb) = token("alicf", &[7; 256]);
        assert_eq!(cache.hash(&a), cache.hash(&b));
        cache.put(0, &a, &va);
        assert!(cache.get(0, &b).is_none());
        cache.put(0, &b, &vb);
        assert_eq!(cache.get(0, &b).unwrap().claims()["sub"], "alicf");
        // b hit, so the memo holds it too, in the slot a maps to as well.
        assert_eq!(cache.get(0, &b).unwrap().claims()["sub"], "alicf");
        // The slot now holds b: a costs a miss, and is never answered with b's claims.
        assert!(cache.get(0, &a).is_none());
        assert_eq!(cache.take_stats(), (2, 2));
    }

    #[test]
    fn hot_tokens_answer_exactly_and_go_with_the_cache() {
        let cache = TokenCache::new([100]);
        let (t, v) = token("alice", &[7; 256]);
        cache.put(0, &t, &v);
        assert!(cache.providers.borrow()[0].hot.is_empty());
        // The first hit comes from the compact table and enters the memo.
        let first = cache.get(0, &t).unwrap();
        assert!(cache.providers.borrow()[0]
            .hot
            .iter()
            .flatten()
            .any(|h| *h.token == t));
        // The next one is the memo's: the same parsed token, no second parse.
        let second = cache.get(0, &t).unwrap();
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(second.claims()["sub"], "alice");
        // Anything but the exact text misses, memo or not.
        for bad in [
            format!("{t}="),
            format!("{}x", &t[..t.len() - 1]),
            t[1..].to_string(),
        ] {
            assert!(cache.get(0, &bad).is_none(), "{bad}");
        }
        assert_eq!(cache.take_stats(), (2, 3));
        // A key-set change clears the memo with the table.
        cache.clear();
        assert!(cache.get(0, &t).is_none());
        assert!(cache.providers.borrow()[0].hot.is_empty());
    }

    #[test]
    fn hot_memo_keeps_a_set_of_ways_least_recently_used_out() {
        let mut g = Generations {
            capacity: 100,
            ..Generations::default()
        };
        let tokens: Vec<_> = (0..=HOT_WAYS)
            .map(|i| {
                let (t, v) = token(&format!("u{i}"), &[9; 64]);
                (t, Rc::new(v))
            })
            .collect();
        let sub = |r: Option<Rc<VerifiedToken>>| r.map(|v| v.claims()["sub"].clone());
        let want = |i: usize| Some(serde_json::Value::from(format!("u{i}")));
        // Same hash, same set: a whole set's worth stay.
        for (t, v) in &tokens[..HOT_WAYS] {
            g.hot_put(7, t, v);
        }
        for (i, (t, _)) in tokens[..HOT_WAYS].iter().enumerate() {
            assert_eq!(sub(g.hot_get(7, t)), want(i), "way {i}");
        }
        // `u0` is used again, so `u1` is the least recently used and makes way for the next.
        assert_eq!(sub(g.hot_get(7, &tokens[0].0)), want(0));
        let (t, v) = &tokens[HOT_WAYS];
        g.hot_put(7, t, v);
        assert_eq!(sub(g.hot_get(7, &tokens[1].0)), None);
        assert_eq!(sub(g.hot_get(7, &tokens[0].0)), want(0));
        assert_eq!(sub(g.hot_get(7, t)), want(HOT_WAYS));
        for (i, (t, _)) in tokens.iter().enumerate().take(HOT_WAYS).skip(2) {
            assert_eq!(sub(g.hot_get(7, t)), want(i), "way {i}");
        }
        // The same token under another hash is another slot's question: no answer.
        assert_eq!(sub(g.hot_get(8, t)), None);
        // Another set is untouched, and a single-slot memo still works.
        assert_eq!(g.hot.iter().flatten().count(), HOT_WAYS);
        let mut one = Generations {
            capacity: 1,
            ..Generations::default()
        };
        one.hot_put(7, &tokens[0].0, &tokens[0].1);
        assert_eq!(sub(one.hot_get(7, &tokens[0].0)), want(0));
        one.hot_put(8, &tokens[1].0, &tokens[1].1);
        assert_eq!(sub(one.hot_get(7, &tokens[0].0)), None);
        assert_eq!(sub(one.hot_get(8, &tokens[1].0)), want(1));
    }

    #[test]
    fn hot_memo_is_bounded() {
        // Never more slots than the cache's capacity, nor than HOT_SLOTS.
        let small = TokenCache::new([4]);
        let big = TokenCache::new([10_000]);
        for i in 0..200u32 {
            let (t, v) = token(&format!("u{i}"), &i.to_be_bytes());
            for cache in [&small, &big] {
                cache.put(0, &t, &v);
                assert!(cache.get(0, &t).is_some());
            }
        }
        assert_eq!(small.providers.borrow()[0].hot.len(), 4);
        assert_eq!(big.providers.borrow()[0].hot.len(), HOT_SLOTS);
        // A token over the size limit is cached but never memoised.
        let cache = TokenCache::new([100]);
        let (t, v) = token(&"x".repeat(HOT_MAX_TOKEN_BYTES), &[1; 64]);
        cache.put(0, &t, &v);
        assert!(cache.get(0, &t).is_some());
        assert!(cache.get(0, &t).is_some());
        assert!(cache.providers.borrow()[0].hot.iter().all(Option::is_none));
    }

    #[test]
    fn bounded_by_generations() {
        let cache = TokenCache::new([4]);
        let tokens: Vec<_> = (0..5)
            .map(|i| token(&format!("u{i}"), &[i as u8; 32]))
            .collect();
        for (t, v) in &tokens[..4] {
            cache.put(0, t, v);
        }
        assert_eq!(cache.len(0), 4);
        // Used while old: moves to the young generation and survives the next turnover.
        assert!(cache.get(0, &tokens[0].0).is_some());
        let (t, v) = &tokens[4];
        cache.put(0, t, v);
        assert!(cache.len(0) <= 4);
        assert!(cache.get(0, &tokens[0].0).is_some());
        assert!(cache.get(0, &tokens[4].0).is_some());
        cache.clear();
        assert_eq!(cache.len(0), 0);
        assert!(cache.get(0, &tokens[4].0).is_none());
    }

    #[test]
    fn disabled_and_zero_capacity_store_nothing() {
        let (t, v) = token("alice", &[7; 16]);
        for cache in [TokenCache::disabled(), TokenCache::new([0])] {
            cache.put(0, &t, &v);
            assert!(cache.get(0, &t).is_none());
            assert_eq!(cache.len(0), 0);
        }
    }

    #[test]
    fn header_sharing_is_bounded() {
        let cache = TokenCache::new([100]);
        for i in 0..(MAX_SHARED_HEADERS + 4) {
            let h = seg(&format!(r#"{{"alg":"RS256","kid":"k{i}"}}"#));
            let t = format!("{h}.{}.{}", seg(r#"{"sub":"x"}"#), b64::encode(&[1, 2, 3]));
            let parsed = UntrustedToken::parse(&t, 8192).unwrap();
            let v = VerifiedToken::from_cache(Rc::new(parsed.header().clone()), br#"{"sub":"x"}"#)
                .unwrap();
            cache.put(0, &t, &v);
            assert_eq!(
                cache.get(0, &t).unwrap().header().kid.as_deref(),
                Some(&*format!("k{i}"))
            );
        }
        assert_eq!(
            cache.providers.borrow()[0].headers.len(),
            MAX_SHARED_HEADERS
        );
    }
}
