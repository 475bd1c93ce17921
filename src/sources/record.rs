//! The shared-data records of key sources, bound to one configuration.
//!
//! Shared data is readable and writable by every Wasm plugin of the same `vm_id` (in Istio
//! the `vm_id` is empty: every plugin of the proxy). So a record is only trusted if it was
//! written under this very configuration (issue 15, F7 and F8):
//!
//! - record names are derived from a key that only this configuration text yields, so two
//!   configurations never share a record and a configuration change starts from a fresh key
//!   set (an operator forces an emergency key removal by changing the configuration);
//! - the lifecycle record ([`super::lease::Lease`]) carries an HMAC-SHA256 tag under that key,
//!   and the digest of the document it names: the document record (version, the issuer a
//!   discovery document was checked against, body) is trusted only when its digest matches.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authn::policy::RemoteJwks;
use crate::sources::lease::DIGEST_LEN;

/// Length of a record's tag.
pub const TAG_LEN: usize = 32;

/// The key that binds shared records to one configuration.
#[derive(Clone)]
pub struct Binding {
    key: [u8; 32],
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Binding(..)")
    }
}

impl Binding {
    /// The binding of the configuration whose full text is `config`.
    pub fn new(config: &[u8]) -> Binding {
        let mut h = Sha256::new();
        h.update(b"jwt-edge/v2 shared-record key\0");
        h.update(config);
        Binding {
            key: h.finalize().into(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        }
    }

    /// The shared-data name prefix of a remote source under this configuration.
    pub fn name(&self, spec: &RemoteJwks) -> String {
        let mut m = self.mac();
        for part in [
            "name",
            spec.document.label(),
            &spec.cluster,
            &spec.uri,
            spec.discovery_issuer.as_deref().unwrap_or(""),
        ] {
            m.update(part.as_bytes());
            m.update(b"\0");
        }
        // Hex by hand: `format!` per byte costs the module kilobytes.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = String::with_capacity(32);
        for b in m.finalize().into_bytes().iter().take(16) {
            for nibble in [b >> 4, b & 0xf] {
                id.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        format!("jwt-edge/v2/{}/{id}", spec.document.label())
    }

    fn tag(&self, name: &str, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac();
        m.update(name.as_bytes());
        m.update(b"\0");
        m.update(payload);
        m.finalize().into_bytes().into()
    }

    /// `payload` followed by its tag under this binding and record `name`.
    pub fn seal(&self, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = payload.to_vec();
        out.extend_from_slice(&self.tag(name, payload));
        out
    }

    /// The payload of a record sealed by [`seal`](Self::seal) under this binding and
    /// `name`; `None` for anything else (compared in constant time).
    pub fn open<'a>(&self, name: &str, record: &'a [u8]) -> Option<&'a [u8]> {
        let (payload, tag) = record.split_at_checked(record.len().checked_sub(TAG_LEN)?)?;
        bool::from(self.tag(name, payload).ct_eq(tag)).then_some(payload)
    }
}

#[cold]
fn unreachable_mac() -> Hmac<Sha256> {
    // Hmac::new_from_slice accepts every key length; keep a defined value anyway.
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

/// A document record: the version it is, the issuer a discovery document was checked against
/// (empty without discovery), and the document as fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRecord<'a> {
    pub version: u64,
    pub issuer: &'a str,
    pub body: &'a [u8],
}

impl DocRecord<'_> {
    /// The digest the lifecycle record names this document by: issuer and body (not the
    /// version, so that the same document fetched again is recognised as the same).
    pub fn digest(&self) -> [u8; DIGEST_LEN] {
        let mut h = Sha256::new();
        h.update((self.issuer.len() as u64).to_le_bytes());
        h.update(self.issuer.as_bytes());
        h.update(self.body);
        h.finalize().into()
    }

    /// `version (8, LE) | issuer length (2, LE) | issuer | body`.
    pub fn encode(&self) -> Vec<u8> {
        let issuer = self.issuer.as_bytes();
        let len = issuer.len().min(u16::MAX as usize);
        let mut out = Vec::with_capacity(10 + len + self.body.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(issuer.get(..len).unwrap_or_default());
        out.extend_from_slice(self.body);
        out
    }

    /// Reads [`encode`](Self::encode)'s output; `None` when malformed.
    pub fn decode(bytes: &[u8]) -> Option<DocRecord<'_>> {
        let (version, rest) = bytes.split_at_checked(8)?;
        let (len, rest) = rest.split_at_checked(2)?;
        let len = u16::from_le_bytes(len.try_into().ok()?) as usize;
        let (issuer, body) = rest.split_at_checked(len)?;
        Some(DocRecord {
            version: u64::from_le_bytes(version.try_into().ok()?),
            issuer: std::str::from_utf8(issuer).ok()?,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::policy::Document;
    use crate::time::Millis;

    fn spec(uri: &str) -> RemoteJwks {
        RemoteJwks {
            document: Document::Jwks,
            uri: uri.into(),
            cluster: "idp".into(),
            authority: "idp.test".into(),
            path: "/k".into(),
            timeout_ms: Millis(1),
            cache_duration: Millis::from_secs(1),
            max_stale_ms: Millis(1),
            refetch_interval_ms: Millis(1),
            wait_timeout_ms: Millis(1),
            discovery_issuer: None,
        }
    }

    #[test]
    fn names_and_tags_belong_to_one_configuration() {
        let a = Binding::new(b"{config a}");
        let b = Binding::new(b"{config b}");
        let s = spec("https://idp.test/k");
        assert_eq!(a.name(&s), Binding::new(b"{config a}").name(&s));
        assert_ne!(a.name(&s), b.name(&s), "a config change starts afresh");
        assert_ne!(a.name(&s), a.name(&spec("https://idp.test/other")));
        let mut other_issuer = s.clone();
        other_issuer.discovery_issuer = Some("https://evil.test".into());
        assert_ne!(a.name(&s), a.name(&other_issuer));
        assert!(a.name(&s).starts_with("jwt-edge/v2/jwks/"));

        let sealed = a.seal("n", b"payload");
        assert_eq!(a.open("n", &sealed), Some(&b"payload"[..]));
        assert_eq!(b.open("n", &sealed), None, "another configuration's record");
        assert_eq!(a.open("m", &sealed), None, "a record moved to another name");
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(a.open("n", &flipped), None);
        assert_eq!(a.open("n", b"short"), None);
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.key)));
    }

    #[test]
    fn doc_codec() {
        let d = DocRecord {
            version: 9,
            issuer: "https://issuer.test",
            body: b"{}",
        };
        assert_eq!(DocRecord::decode(&d.encode()), Some(d));
        assert_eq!(DocRecord::decode(b"short"), None);
        let plain = DocRecord {
            version: 9,
            issuer: "",
            body: b"{}",
        };
        assert_eq!(DocRecord::decode(&plain.encode()), Some(plain));
        // The digest names issuer and body, not the version.
        let v10 = DocRecord { version: 10, ..d };
        assert_eq!(d.digest(), v10.digest());
        assert_ne!(d.digest(), plain.digest());
    }
}
