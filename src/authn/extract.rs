//! Token extraction: finds the one token a provider accepts in a request.
//!
//! A provider looks in its configured locations, in order. Finding nothing is
//! `token_missing`; finding two different tokens, or a repeated header, is `multiple_tokens`
//! (a request must not be able to present one token to the filter and another upstream).

use std::borrow::Cow;

use crate::authn::error::AuthError;
use crate::authn::policy::{DpopMode, Provider, TokenLocation};
use crate::authn::request::RequestView;

/// Where a token was found, so that it can be removed before forwarding (the provider's
/// own names for its locations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundAt<'a> {
    Header(&'a str),
    Param(&'a str),
    Cookie(&'a str),
}

/// The token a provider found, and every place it was found. The token is the request's
/// own bytes (a query parameter's, percent-decoded, is a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub token: Cow<'a, str>,
    pub at: Vec<FoundAt<'a>>,
    /// Extension: the token came as `Authorization: DPoP <token>` (RFC 9449 §7.1), accepted
    /// only from providers with `sender_constraint.dpop` on.
    pub dpop: bool,
}

/// Finds the provider's token. `Ok(None)` when there is none.
pub fn extract<'a>(req: &RequestView<'a>, p: &'a Provider) -> Result<Option<Found<'a>>, AuthError> {
    let mut found: Option<Found<'a>> = None;
    for location in &p.locations {
        match location {
            TokenLocation::Header { name, value_prefix } => {
                let mut values = req.header_values(name);
                let Some(v) = values.next() else {
                    continue;
                };
                if values.next().is_some() {
                    return Err(AuthError::MultipleTokens);
                }
                // A header far over the token cap is refused before it is scanned.
                if v.len() > p.max_token_bytes + value_prefix.len() + 64 {
                    return Err(AuthError::TokenTooLarge {
                        limit: p.max_token_bytes,
                    });
                }
                // Envoy's HTTP/1 codec joins a repeated header into one value with ',';
                // a JWS never contains one, so a comma means several credentials. Looked
                // for only when no token was read: a token read whole is token68 (no ','),
                // and so is what surrounds it, unless the configured prefix has one.
                let token = header_token(v, name, value_prefix, p);
                if (!matches!(token, Ok(Some(_))) || value_prefix.as_bytes().contains(&b','))
                    && v.as_bytes().contains(&b',')
                {
                    return Err(AuthError::MultipleTokens);
                }
                if let Some((t, dpop)) = token? {
                    consider(&mut found, p, location, Cow::Borrowed(t), dpop)?;
                }
            }
            TokenLocation::Param(name) => {
                for t in req.query_values(name) {
                    consider(&mut found, p, location, Cow::Owned(t), false)?;
                }
            }
            TokenLocation::Cookie(name) => {
                for t in req.cookie_values(name) {
                    consider(&mut found, p, location, Cow::Borrowed(t), false)?;
                }
            }
        }
    }
    Ok(found)
}

/// One candidate `token` at `location`: the first one found, the same one again (another
/// place to clear), or a second, different one (`multiple_tokens`). Empty ones are skipped.
fn consider<'a>(
    found: &mut Option<Found<'a>>,
    p: &Provider,
    location: &'a TokenLocation,
    token: Cow<'a, str>,
    dpop: bool,
) -> Result<(), AuthError> {
    if token.is_empty() {
        return Ok(());
    }
    if token.len() > p.max_token_bytes {
        return Err(AuthError::TokenTooLarge {
            limit: p.max_token_bytes,
        });
    }
    match found {
        Some(f) if f.token != token || f.dpop != dpop => Err(AuthError::MultipleTokens),
        Some(f) => {
            let at = found_at(location);
            if !f.at.contains(&at) {
                f.at.push(at);
            }
            Ok(())
        }
        None => {
            *found = Some(Found {
                token,
                at: vec![found_at(location)],
                dpop,
            });
            Ok(())
        }
    }
}

/// Where a location's token is found (to be removed before forwarding).
#[inline]
fn found_at(location: &TokenLocation) -> FoundAt<'_> {
    match location {
        TokenLocation::Header { name, .. } => FoundAt::Header(name),
        TokenLocation::Param(name) => FoundAt::Param(name),
        TokenLocation::Cookie(name) => FoundAt::Cookie(name),
    }
}

/// Every location of `p` that holds something the provider would read as its credential
/// (a token, or a value it refuses such as two tokens or a malformed `Bearer` value): the
/// places to clear when such a credential must not reach the upstream.
pub fn present_at<'a>(req: &RequestView<'_>, p: &'a Provider) -> Vec<FoundAt<'a>> {
    let mut at = Vec::new();
    for location in &p.locations {
        let present = match location {
            TokenLocation::Header { name, value_prefix } => {
                let values: Vec<&str> = req.header_values(name).collect();
                values.len() > 1
                    || values.iter().any(|v| {
                        v.contains(',')
                            || match header_token(v, name, value_prefix, p) {
                                Ok(None) => false,
                                Ok(Some((t, _))) => !t.is_empty(),
                                Err(_) => true,
                            }
                    })
            }
            TokenLocation::Param(name) => req.query_values(name).iter().any(|v| !v.is_empty()),
            TokenLocation::Cookie(name) => req.cookie_values(name).iter().any(|v| !v.is_empty()),
        };
        if present {
            at.push(found_at(location));
        }
    }
    at
}

/// The token in a header value and whether it came under the `DPoP` scheme: `prefix` is
/// stripped, or, for a provider with DPoP on, `DPoP ` from `authorization`.
fn header_token<'v>(
    value: &'v str,
    name: &str,
    prefix: &str,
    p: &Provider,
) -> Result<Option<(&'v str, bool)>, AuthError> {
    if let Some(t) = strip_prefix(value, prefix)? {
        return Ok(Some((t, false)));
    }
    if p.sender.dpop == DpopMode::Disabled || name != "authorization" {
        return Ok(None);
    }
    Ok(strip_prefix(value, "DPoP ")?.map(|t| (t, true)))
}

/// Strips `prefix` from a header value. The prefix's scheme word is compared
/// case-insensitively (RFC 7235 §2.1: `bearer` = `Bearer`), and any run of spaces after it
/// is accepted (`1*SP`). `Ok(None)` when the value does not start with the prefix (another
/// scheme, e.g. `Basic`). A value that starts with it but carries more than one
/// space-separated word is malformed.
fn strip_prefix<'v>(value: &'v str, prefix: &str) -> Result<Option<&'v str>, AuthError> {
    // Byte loops, not `str::trim_matches` with char patterns: the same result (space and tab
    // are ASCII) in a fraction of the machine code a token runs through cold (`make
    // bench-footprint`: 29 lines of 64 bytes for this function before).
    let value = trim_bytes(value, |b| b == b' ' || b == b'\t');
    if prefix.is_empty() {
        return check_token68(value).map(Some);
    }
    let trimmed_prefix = prefix.trim_end();
    let Some(head) = value.get(..trimmed_prefix.len()) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case(trimmed_prefix) {
        return Ok(None);
    }
    let rest = value.get(trimmed_prefix.len()..).unwrap_or("");
    // `Bearer<TAB>x`, `Bearer<VT>x`: the scheme followed by whitespace that is not SP. Not
    // another scheme and not "no token": a malformed credential, refused rather than passed
    // on unexamined.
    if rest.starts_with(|c: char| c.is_whitespace() && c != ' ') {
        return Err(AuthError::Malformed(
            "the scheme must be followed by a space".into(),
        ));
    }
    if trimmed_prefix.len() != prefix.len() {
        // The prefix ends in a space ("Bearer "): at least one space must follow the word.
        if !rest.starts_with(' ') {
            return Ok(None);
        }
    }
    // `rest` ends where `value` does, past its last space: trimming both ends is its start.
    check_token68(trim_bytes(rest, |b| b == b' ')).map(Some)
}

/// `s` without the ASCII bytes `strip` accepts at either end.
fn trim_bytes(s: &str, strip: impl Fn(u8) -> bool) -> &str {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|&b| !strip(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !strip(b))
        .map_or(start, |i| i + 1);
    // The bytes stripped are ASCII: start and end are character boundaries.
    s.get(start..end).unwrap_or_default()
}

/// RFC 7235 token68 bytes, plus '.' between JWS segments, as a table: a token is scanned on
/// every request (one load and test per byte instead of a chain of range checks).
/// 1 for an allowed byte, 0 otherwise (bytes, not `bool`s, so that the check can AND them).
#[allow(clippy::indexing_slicing)] // b < 256 = the table's length, in a const block
const TOKEN68: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = (c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'_' | b'.' | b'=' | b'+' | b'/' | b'~'))
            as u8;
        b += 1;
    }
    table
};

/// True when every byte of `bytes` is in [`TOKEN68`]: a token is scanned whole on every
/// request, cache hits included. In wasm 16 bytes per step with SIMD128 ([`token68_simd`]).
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn all_token68(bytes: &[u8]) -> bool {
    token68_simd(bytes)
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn all_token68(bytes: &[u8]) -> bool {
    token68_table(bytes)
}

/// [`all_token68`] with wasm SIMD128, 16 bytes per step: a letter is `b | 0x20` in `a..=z`,
/// `-./0-9` one range, `+ = _ ~` four compares. The bytes after the last full block go
/// through the table. Issue #13: the table scan was the largest part of a cache hit's
/// token extraction (~17 % of a hit's decision, natively). Every runtime jwt-edge targets
/// runs SIMD128 (see `bigmod::dot`); checked against every byte value and every position in
/// the tests, which `make unit-wasm` runs in wasm.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
fn token68_simd(bytes: &[u8]) -> bool {
    use core::arch::wasm32::{
        u8x16_all_true, u8x16_eq, u8x16_ge, u8x16_le, u8x16_splat, v128, v128_and, v128_or,
    };
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        // SAFETY: a block of `chunks_exact(16)` holds exactly 16 bytes, the width of the
        // read; read_unaligned has no alignment requirement.
        let v = unsafe { block.as_ptr().cast::<v128>().read_unaligned() };
        let range = |x: v128, lo: u8, hi: u8| {
            v128_and(u8x16_ge(x, u8x16_splat(lo)), u8x16_le(x, u8x16_splat(hi)))
        };
        let letter = range(v128_or(v, u8x16_splat(0x20)), b'a', b'z');
        let dash_to_nine = range(v, b'-', b'9');
        let is = |c: u8| u8x16_eq(v, u8x16_splat(c));
        let other = v128_or(v128_or(is(b'+'), is(b'=')), v128_or(is(b'_'), is(b'~')));
        if !u8x16_all_true(v128_or(v128_or(letter, dash_to_nine), other)) {
            return false;
        }
    }
    token68_table(blocks.remainder())
}

/// [`all_token68`] by [`TOKEN68`]. Branch-free over blocks of 16 (one load and AND per byte,
/// no compare and branch per byte); a block with a bad byte ends the scan.
fn token68_table(bytes: &[u8]) -> bool {
    // A u8 always indexes the table: the bound checks fold away.
    let class = |b: &u8| TOKEN68.get(usize::from(*b)).copied().unwrap_or(0);
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(1, |acc, b| acc & class(b)) == 0 {
            return false;
        }
    }
    blocks.remainder().iter().fold(1, |acc, b| acc & class(b)) == 1
}

/// A token must be one word of JWS characters; anything else is not ours to guess at.
fn check_token68(t: &str) -> Result<&str, AuthError> {
    if all_token68(t.as_bytes()) {
        Ok(t)
    } else {
        Err(AuthError::Malformed(
            "the credentials are not a single token".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_character_set() {
        // RFC 7235 token68, plus '.' between JWS segments: every byte value, each way.
        const ALLOWED: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=";
        for b in 0..=255u8 {
            let expected = ALLOWED.contains(&b);
            let text = String::from_utf8_lossy(&[b'a', b, b'z']).into_owned();
            assert_eq!(check_token68(&text).is_ok(), expected, "byte {b:#04x}");
            // In a full block of 16 (wasm's SIMD scan) and in the remainder after it.
            for at in [0, 7, 15, 16, 20] {
                let mut bytes = vec![b'A'; 21];
                bytes[at] = b;
                assert_eq!(all_token68(&bytes), expected, "byte {b:#04x} at {at}");
            }
        }
        assert!(check_token68("é").is_err());
    }

    /// The scan runs in blocks of 16 and a remainder: one bad byte at any position of any
    /// length up to three blocks is found.
    #[test]
    fn token68_bad_byte_at_every_position() {
        for len in 1..=48 {
            assert!(all_token68(&vec![b'a'; len]), "len {len}");
            for at in 0..len {
                for bad in [b' ', b',', b'\0', 0x80, 0xff] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(!all_token68(&v), "len {len}, bad {bad:#04x} at {at}");
                }
            }
        }
        assert!(all_token68(b""));
    }

    fn provider(locations: Vec<TokenLocation>) -> Provider {
        Provider {
            name: "p".into(),
            issuer: None,
            audiences: vec![],
            subjects: None,
            require_expiration: true,
            max_lifetime: None,
            clock_skew: crate::time::Millis::from_secs(60),
            algorithms: vec![],
            jwks: 0,
            forward: false,
            locations,
            forward_payload_header: None,
            pad_forward_payload_header: false,
            claim_to_headers: vec![],
            max_token_bytes: 100,
            jwt_cache_size: 0,
            revoked: Default::default(),
            revocation_list: None,
            sender: Default::default(),
            publish: Default::default(),
        }
    }

    fn default_locations() -> Vec<TokenLocation> {
        vec![
            TokenLocation::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
        ]
    }

    fn run(
        headers: &[(&str, &str)],
        locations: Vec<TokenLocation>,
    ) -> Result<Option<String>, &'static str> {
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !hs.iter().any(|(k, _)| k == ":path") {
            hs.push((":path".into(), "/".into()));
        }
        let req = RequestView::new(&hs, None);
        extract(&req, &provider(locations))
            .map(|f| f.map(|f| f.token.into_owned()))
            .map_err(|e| e.code())
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn default_locations_table() {
        let d = default_locations;
        let big = format!("Bearer {}", "a".repeat(101));
        let huge = format!("Bearer {}", "a".repeat(10_000));
        let some = |s: &str| Ok(Some(s.to_string()));
        let cases: Vec<(Vec<(&str, &str)>, Result<Option<String>, &str>)> = vec![
            (vec![("authorization", "Bearer a.b.c")], some("a.b.c")),
            (vec![("authorization", "bearer a.b.c")], some("a.b.c")),
            (vec![("authorization", "BEARER   a.b.c ")], some("a.b.c")),
            (vec![("authorization", "Bearer")], Ok(None)),
            (vec![("authorization", "Bearera.b.c")], Ok(None)),
            // Whitespace other than SP after the scheme: malformed, not "no token" (F4).
            (
                vec![("authorization", "Bearer\ta.b.c")],
                Err("token_malformed"),
            ),
            (
                vec![("authorization", "bearer\u{b}a.b.c")],
                Err("token_malformed"),
            ),
            (vec![("authorization", "Basic dXNlcjpwYXNz")], Ok(None)),
            (
                vec![("authorization", "Bearer a.b.c extra")],
                Err("token_malformed"),
            ),
            (
                vec![
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Bearer a.b.c"),
                ],
                Err("multiple_tokens"),
            ),
            (
                vec![
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Basic x"),
                ],
                Err("multiple_tokens"),
            ),
            (
                vec![("authorization", "Bearer a.b.c,Bearer d.e.f")],
                Err("multiple_tokens"),
            ),
            (
                vec![("authorization", "Basic eA==, Bearer a.b.c")],
                Err("multiple_tokens"),
            ),
            (vec![(":path", "/x?access_token=q.r.s")], some("q.r.s")),
            (
                vec![
                    (":path", "/x?access_token=a.b.c"),
                    ("authorization", "Bearer a.b.c"),
                ],
                some("a.b.c"),
            ),
            (
                vec![
                    (":path", "/x?access_token=q.r.s"),
                    ("authorization", "Bearer a.b.c"),
                ],
                Err("multiple_tokens"),
            ),
            (
                vec![(":path", "/x?access_token=a.b.c&access_token=d.e.f")],
                Err("multiple_tokens"),
            ),
            (vec![(":path", "/x?access_token=")], Ok(None)),
            (vec![("authorization", &big)], Err("token_too_large")),
            (vec![("authorization", &huge)], Err("token_too_large")),
            (vec![], Ok(None)),
        ];
        for (headers, want) in cases {
            assert_eq!(run(&headers, d()), want, "{headers:?}");
        }
    }

    #[test]
    fn configured_locations() {
        let hdr = vec![TokenLocation::Header {
            name: "x-token".into(),
            value_prefix: "".into(),
        }];
        assert_eq!(
            run(&[("x-token", "a.b.c")], hdr.clone()),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(run(&[("authorization", "Bearer a.b.c")], hdr), Ok(None));
        let cookie = vec![TokenLocation::Cookie("jwt".into())];
        assert_eq!(
            run(&[("cookie", "a=1; jwt=a.b.c")], cookie.clone()),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(
            run(&[("cookie", "jwt=a.b.c"), ("cookie", "jwt=d.e.f")], cookie),
            Err("multiple_tokens")
        );
        let custom = vec![TokenLocation::Header {
            name: "authorization".into(),
            value_prefix: "JWT ".into(),
        }];
        assert_eq!(
            run(&[("authorization", "jwt a.b.c")], custom),
            Ok(Some("a.b.c".into()))
        );
    }
}
