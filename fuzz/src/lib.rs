//! Support for jwt-edge's fuzz targets: the shared checks ([`oracle`]) and the structured input
//! of `extract_and_decide` ([`RequestInput`]).

pub mod oracle;

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::oracle::{fixture_tokens, Case, RemoteKeys};

/// The structured part of an `extract_and_decide` input. It is read from the front of the
/// input; the rest of the bytes are text lines (tokens, header lines, a path) that the slots
/// draw on in order, so a seed is a short prefix followed by readable tokens.
#[derive(Arbitrary, Debug)]
pub struct Shape {
    pub keys: KeysChoice,
    pub may_refetch: bool,
    pub method: Method,
    pub route: Route,
    pub route_name: RouteName,
    pub cors: bool,
    pub slots: [Slot; 4],
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KeysChoice {
    Ready,
    Pending,
    Unavailable,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Method {
    Get,
    Post,
    Options,
    Head,
}

/// Which rule the path aims at (see `oracle::decision_policy`); `Line` takes the path from
/// the next text line.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Route {
    Public,
    Strict,
    Rsa,
    Any,
    All,
    Optional,
    Lenient,
    Orders,
    Mixed,
    Debug,
    Other,
    Line,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RouteName {
    None,
    Docs,
    User,
    Unknown,
}

/// Where one value goes and where it comes from.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Slot {
    pub place: Place,
    pub source: Source,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Place {
    Authorization(Scheme),
    XToken,
    XHsToken,
    AccessTokenParam,
    AccessTokenParamEncoded,
    SessionCookie,
    /// `x-jwt-sub`, a header the filter sets: must never survive from the client.
    IdentityHeader,
    /// The value is a whole `name: value` header line.
    RawHeader,
    Nowhere,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Scheme {
    Bearer,
    LowerBearer,
    BearerSpaces,
    Bare,
    Basic,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Source {
    /// The next text line of the input.
    Line,
    /// A fixture token, by index.
    Fixture(u8),
    /// Header, payload and signature segments of three fixture tokens.
    Splice(u8, u8, u8),
    /// A fixture token with one character replaced by a base64url character.
    Edit(u8, u16, u8),
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn fixture(index: u8) -> &'static str {
    let tokens = fixture_tokens();
    tokens
        .get(usize::from(index) % tokens.len().max(1))
        .map_or("", |(_, t)| t.as_str())
}

fn segment(token: &str, n: usize) -> &str {
    token.split('.').nth(n).unwrap_or("")
}

impl Source {
    fn value<'a>(self, lines: &mut impl Iterator<Item = &'a str>) -> String {
        match self {
            Source::Line => lines.next().unwrap_or("").to_owned(),
            Source::Fixture(i) => fixture(i).to_owned(),
            Source::Splice(h, p, s) => format!(
                "{}.{}.{}",
                segment(fixture(h), 0),
                segment(fixture(p), 1),
                segment(fixture(s), 2)
            ),
            Source::Edit(i, at, c) => {
                let mut bytes = fixture(i).as_bytes().to_vec();
                let len = bytes.len().max(1);
                if let Some(b) = bytes.get_mut(usize::from(at) % len) {
                    *b = B64URL.get(usize::from(c) % 64).copied().unwrap_or(b'A');
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// An `extract_and_decide` input: the shape, then text lines.
#[derive(Debug)]
pub struct RequestInput {
    pub shape: Shape,
    pub text: String,
}

impl<'a> Arbitrary<'a> for RequestInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let shape = Shape::arbitrary(u)?;
        let rest = u.bytes(u.len())?;
        let text = String::from_utf8_lossy(rest).into_owned();
        Ok(RequestInput { shape, text })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> Result<Self> {
        Self::arbitrary(&mut u)
    }
}

fn push_param(path: &mut String, name: &str, value: &str) {
    path.push(if path.contains('?') { '&' } else { '?' });
    path.push_str(name);
    path.push('=');
    path.push_str(value);
}

/// Percent-encodes every byte outside the unreserved set.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl RequestInput {
    /// The request this input describes, as plain data.
    pub fn to_case(&self) -> Case {
        let shape = &self.shape;
        let mut lines = self.text.split('\n');
        let mut path = match shape.route {
            Route::Public => "/public/index.html".to_owned(),
            Route::Strict => "/strict/x".to_owned(),
            Route::Rsa => "/rsa".to_owned(),
            Route::Any => "/any/thing".to_owned(),
            Route::All => "/all".to_owned(),
            Route::Optional => "/optional".to_owned(),
            Route::Lenient => "/lenient".to_owned(),
            Route::Orders => "/orders/42".to_owned(),
            Route::Mixed => "/mixed".to_owned(),
            Route::Debug => "/x?debug=1".to_owned(),
            Route::Other => "/".to_owned(),
            Route::Line => lines.next().unwrap_or("").to_owned(),
        };
        let method = match shape.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
        };
        let mut headers: Vec<(String, String)> = vec![
            (":method".into(), method.into()),
            (":authority".into(), "api.test".into()),
            (":scheme".into(), "https".into()),
        ];
        if shape.cors {
            headers.push(("origin".into(), "https://app.test".into()));
            headers.push(("access-control-request-method".into(), "GET".into()));
        }
        for slot in shape.slots {
            let value = slot.source.value(&mut lines);
            let header = |name: &str, v: String| (name.to_owned(), v);
            match slot.place {
                Place::Authorization(scheme) => {
                    let v = match scheme {
                        Scheme::Bearer => format!("Bearer {value}"),
                        Scheme::LowerBearer => format!("bearer {value}"),
                        Scheme::BearerSpaces => format!("  Bearer   {value} "),
                        Scheme::Bare => value,
                        Scheme::Basic => format!("Basic {value}"),
                    };
                    headers.push(header("authorization", v));
                }
                Place::XToken => headers.push(header("x-token", value)),
                Place::XHsToken => headers.push(header("x-hs-token", value)),
                Place::AccessTokenParam => push_param(&mut path, "access_token", &value),
                Place::AccessTokenParamEncoded => {
                    push_param(&mut path, "access%5Ftoken", &percent_encode(&value))
                }
                Place::SessionCookie => {
                    headers.push(header("cookie", format!("theme=dark; session={value}")))
                }
                Place::IdentityHeader => headers.push(header("x-jwt-sub", value)),
                Place::RawHeader => {
                    let (name, v) = value.split_once(':').unwrap_or((value.as_str(), ""));
                    // Hosts hand header names over in lower case.
                    headers.push((name.trim().to_ascii_lowercase(), v.trim_start().to_owned()));
                }
                Place::Nowhere => {}
            }
        }
        headers.insert(1, (":path".into(), path));
        Case {
            route_name: match shape.route_name {
                RouteName::None => None,
                RouteName::Docs => Some("docs".into()),
                RouteName::User => Some("user".into()),
                RouteName::Unknown => Some("unknown".into()),
            },
            headers,
            remote_keys: match shape.keys {
                KeysChoice::Ready => RemoteKeys::Ready,
                KeysChoice::Pending => RemoteKeys::Pending,
                KeysChoice::Unavailable => RemoteKeys::Unavailable,
            },
            may_refetch: shape.may_refetch,
        }
    }
}
