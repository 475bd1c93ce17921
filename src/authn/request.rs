//! A read-only view of the request parts the authenticator looks at.

use crate::authn::sender::mtls::ClientCertificate;

/// The request as the host hands it over. Header names must be lower-case (proxy-wasm hosts
/// give them so); values are as received.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    headers: &'a [(String, String)],
    method: &'a str,
    path: &'a str,
    route_name: Option<&'a str>,
    client_certificate: Option<ClientCertificate<'a>>,
}

impl<'a> RequestView<'a> {
    /// A view over `headers`; `:method` and `:path` are read from the pseudo-headers.
    pub fn new(headers: &'a [(String, String)], route_name: Option<&'a str>) -> Self {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        RequestView {
            headers,
            method: find(":method"),
            path: find(":path"),
            route_name,
            client_certificate: None,
        }
    }

    /// The same view with the connection's client certificate as the host gives it (read
    /// only for providers that check certificate-bound tokens).
    pub fn with_client_certificate(self, certificate: Option<ClientCertificate<'a>>) -> Self {
        RequestView {
            client_certificate: certificate,
            ..self
        }
    }

    /// The connection's client certificate, `None` without one (or when not read).
    pub fn client_certificate(&self) -> Option<ClientCertificate<'a>> {
        self.client_certificate
    }

    /// The request method (`:method`).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// `:path`, including the query string.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The host's route name, when the host has one.
    pub fn route_name(&self) -> Option<&'a str> {
        self.route_name
    }

    /// The path without `?query` or `#fragment`.
    pub fn path_without_query(&self) -> &'a str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        self.path.get(..end).unwrap_or(self.path)
    }

    /// The raw query string (after `?`, before `#`), if any.
    pub fn query(&self) -> Option<&'a str> {
        let start = self.path.find('?')?;
        let rest = self.path.get(start + 1..)?;
        Some(rest.split('#').next().unwrap_or(rest))
    }

    /// Every value of a header, in order. `name` must be lower-case.
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a query parameter, percent-decoded; `None` for a value that does not
    /// decode to UTF-8 is skipped.
    pub fn query_values(&self, name: &str) -> Vec<String> {
        let Some(query) = self.query() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k)? == name)
                    .then(|| percent_decode(v))
                    .flatten()
            })
            .collect()
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_values(name).into_iter().next()
    }

    /// Every value of a cookie across all `cookie` headers.
    pub fn cookie_values(&self, name: &str) -> Vec<&'a str> {
        self.header_values("cookie")
            .flat_map(|h| h.split(';'))
            .filter_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"'))
            })
            .collect()
    }

    /// True for a CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_cors_preflight(&self) -> bool {
        self.method == "OPTIONS"
            && self.header_values("origin").next().is_some()
            && self
                .header_values("access-control-request-method")
                .next()
                .is_some()
    }
}

/// Percent-decodes a query component (`+` is a space). `None` on bad escapes or bad UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parts() {
        let headers = h(&[
            (":method", "GET"),
            (":path", "/a/b?x=1&access_token=a%2Eb&y#frag"),
            ("cookie", "s=1; jwt=\"abc\""),
            ("cookie", "jwt=def"),
            ("x", "1"),
            ("x", "2"),
        ]);
        let r = RequestView::new(&headers, Some("route"));
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path_without_query(), "/a/b");
        assert_eq!(r.query(), Some("x=1&access_token=a%2Eb&y"));
        assert_eq!(r.query_param("access_token").as_deref(), Some("a.b"));
        assert_eq!(r.query_param("y").as_deref(), Some(""));
        assert_eq!(r.query_param("z"), None);
        assert_eq!(r.cookie_values("jwt"), vec!["abc", "def"]);
        assert_eq!(r.header_values("x").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(r.route_name(), Some("route"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%"), None);
    }
}
