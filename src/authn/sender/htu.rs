//! The URI a DPoP proof's `htu` must name (RFC 9449 §4.3 check 9), and the normalisation
//! both it and the request's URI go through before they are compared byte for byte.
//!
//! RFC 9449 asks for the URI "ignoring any query and fragment parts" and points to RFC 3986
//! §6 for normalisation. What jwt-edge does, on both sides alike:
//! - query and fragment are dropped;
//! - the scheme and the host are lowercased, and only `http` and `https` are accepted
//!   (§6.2.2.1);
//! - an empty port and the scheme's default port (80, 443) are dropped, and a port is
//!   written without leading zeros (§6.2.3);
//! - an empty path is `/` (§6.2.3);
//! - a percent-encoded unreserved character (ALPHA, DIGIT, `-`, `.`, `_`, `~`) is decoded,
//!   and the hex digits of every other percent-encoding are uppercased (§6.2.2.1, §6.2.2.2).
//!
//! And what it refuses to treat as equal (each makes the URI unusable, so the proof fails
//! with `dpop_htu_mismatch`): a `%` not followed by two hex digits; userinfo (`user@`) in
//! the authority; spaces, controls and non-ASCII bytes; a path that is not absolute.
//! Dot segments are *not* removed (§6.2.2.3): `/a/../b` and `/b` differ. A client signs the
//! path it sends, and the filter must not call two paths equal that an upstream might route
//! apart.
//!
//! The request side is `:scheme`, `:authority` and `:path` as the proxy sees them. Behind a
//! proxy that terminates TLS, `:scheme` is what that hop spoke, not what the client used;
//! the wiring step decides where the origin comes from (see the report: a configured
//! `htu_origin`).

/// Normalises a proof's `htu` (an absolute `http` or `https` URI), or `None` if unusable.
pub fn normalise_htu(htu: &str) -> Option<String> {
    let (scheme, rest) = htu.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    normalise(scheme, authority, path)
}

/// Normalises a request's scheme, authority and path (which may carry a query), or `None`
/// if unusable.
pub fn normalise_request(scheme: &str, authority: &str, path: &str) -> Option<String> {
    normalise(scheme, authority, path)
}

fn normalise(scheme: &str, authority: &str, path: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let mut out = format!(
        "{scheme}://{}",
        normalise_authority(authority, default_port)?
    );
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        out.push('/');
        return Some(out);
    }
    if !path.starts_with('/') {
        return None;
    }
    normalise_percent(path, &mut out)?;
    Some(out)
}

fn normalise_authority(authority: &str, default_port: u16) -> Option<String> {
    if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if authority.contains('@') {
        return None;
    }
    // An IPv6 literal is bracketed; anywhere else one colon separates host and port.
    let (host, port) = match authority.strip_prefix('[') {
        Some(inner) => {
            let (literal, after) = inner.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{literal}]"), port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        },
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
        Some(_) => return None,
    };
    Some(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn normalise_percent(path: &str, out: &mut String) -> Option<()> {
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(bytes.next()?)?;
            let lo = hex_value(bytes.next()?)?;
            let c = char::from(hi * 16 + lo);
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                out.push(c);
            } else {
                out.push('%');
                out.push(char::from(
                    b"0123456789ABCDEF".get(usize::from(hi)).copied()?,
                ));
                out.push(char::from(
                    b"0123456789ABCDEF".get(usize::from(lo)).copied()?,
                ));
            }
        } else if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            return None;
        }
    }
    Some(())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_forms() {
        let base = Some("https://api.example.com/v1/items".to_owned());
        for (htu, want) in [
            ("https://api.example.com/v1/items", &base),
            ("HTTPS://API.Example.COM/v1/items", &base),
            ("https://api.example.com:443/v1/items", &base),
            ("https://api.example.com:/v1/items", &base),
            ("https://api.example.com:0443/v1/items", &base),
            ("https://api.example.com/v1/items?x=1", &base),
            ("https://api.example.com/v1/items#frag", &base),
            ("https://api.example.com/v1/items?x=1#f", &base),
            ("https://api.example.com/v1/%69tems", &base),
            ("https://api.example.com/%76%31/items", &base),
        ] {
            assert_eq!(&normalise_htu(htu), want, "{htu}");
        }
        for (htu, want) in [
            ("http://a.example:80", "http://a.example/"),
            ("http://a.example:8080/x", "http://a.example:8080/x"),
            ("https://a.example:80/x", "https://a.example:80/x"),
            ("http://a.example?q", "http://a.example/"),
            ("https://a.example/a%2fb", "https://a.example/a%2Fb"),
            ("https://a.example/a%2Fb", "https://a.example/a%2Fb"),
            ("https://a.example/A%7e", "https://a.example/A~"),
            ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://a.example/a/../b", "https://a.example/a/../b"),
            // Path case is significant.
            ("https://a.example/ABC", "https://a.example/ABC"),
        ] {
            assert_eq!(normalise_htu(htu).as_deref(), Some(want), "{htu}");
        }
        for bad in [
            "",
            "/v1/items",
            "api.example.com/v1",
            "ftp://a.example/x",
            "https:///x",
            "https://user@a.example/x",
            "https://a.example:99999/x",
            "https://a.example:x/x",
            "https://a.example:1:2/x",
            "https://a.example/%zz",
            "https://a.example/%4",
            "https://a.example/a b",
            "https://a.example/caf\u{e9}",
            "https://[::1/x",
            "https://[::1]x/x",
        ] {
            assert_eq!(normalise_htu(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_side() {
        let n = |s: &str, a: &str, p: &str| normalise_request(s, a, p);
        assert_eq!(
            n("https", "API.example.com:443", "/v1/items?page=2").as_deref(),
            Some("https://api.example.com/v1/items")
        );
        assert_eq!(
            n("http", "a.example", "").as_deref(),
            Some("http://a.example/")
        );
        assert_eq!(n("https", "a.example", "*"), None);
        assert_eq!(n("https", "", "/"), None);
        // Different origins and paths stay different.
        let base = n("https", "a.example", "/x");
        for (s, a, p) in [
            ("http", "a.example", "/x"),
            ("https", "a.example:8443", "/x"),
            ("https", "b.example", "/x"),
            ("https", "a.example", "/x/"),
            ("https", "a.example", "/X"),
            ("https", "a.example", "/y/../x"),
        ] {
            assert_ne!(n(s, a, p), base, "{s} {a} {p}");
        }
    }
}
