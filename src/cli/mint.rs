//! `jwt-edge mint`: a signed compact JWS for tests and demos.

use serde_json::{Map, Value};

use super::args::{self, Args, Opt};
use super::keys::{self, PrivateKey};
use super::{CliError, Output};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::authn::alg::Algorithm;
use crate::authn::b64;
use crate::authn::sender::htu::normalise_htu;

const HELP: &str = "\
Usage: jwt-edge mint --key KEY.pem [--alg ALG] [--kid KID | --no-kid] [--iss ISS] [--sub SUB]
                     [--aud AUD]... [--scope \"a b\"] [--ttl 3600s | --no-exp]
                     [--claim name=value]... [--claims-json '{...}'] [--now UNIX]
                     [--dpop-key KEY.pem --htu URL [--htm METHOD] [--dpop-jti JTI]
                      [--dpop-nonce NONCE]]
                     [--mtls-cert CERT.pem]

Prints a compact JWS signed with the private key, header {alg, kid, typ: JWT}.
iat = now, exp = now + ttl. Claims are applied in this order, later ones winning:
--claims-json, then iat/exp, then cnf (--dpop-key, --mtls-cert), then --iss/--sub/--aud/
--scope, then each --claim.

With --dpop-key the token is bound to that key (cnf.jkt = its RFC 7638 thumbprint), and a
second line holds a DPoP proof (RFC 9449) for one request with that token: header
{typ: dpop+jwt, alg, jwk}, claims {jti, htm, htu, iat = now, ath}. Send them as
`Authorization: DPoP <line 1>` and `DPoP: <line 2>`; a proof is good for one request.
A provider with `dpop_nonce: required` answers a proof without its nonce with 401
`use_dpop_nonce` and a `DPoP-Nonce` header: mint again with --dpop-nonce <that value>.

With --mtls-cert the token is bound to that client certificate (RFC 8705 §3):
cnf[\"x5t#S256\"] = base64url(SHA-256(the certificate's DER)). With --dpop-key too, cnf holds
both bindings.

  --key FILE          PKCS#8 (or PKCS#1 / SEC1) PEM private key
  --alg ALG           default: RS256 for RSA, ES256 for P-256, ES384 for P-384, EdDSA for Ed25519
  --kid KID           default: the key's RFC 7638 thumbprint (what `jwks` uses by default)
  --no-kid            no kid in the header
  --aud AUD           repeat for several audiences (one gives a string, several an array)
  --ttl DURATION      3600 / 3600s / 60m / 1h / 1d (default 1h)
  --no-exp            no exp claim
  --no-iat            no iat claim
  --claim NAME=VALUE  VALUE is JSON if it parses as JSON, else a string
  --claims-json JSON  a JSON object of claims
  --now UNIX          seconds since the epoch (default: the system clock)
  --dpop-key FILE     PEM private key the token is bound to and the proof is signed with
                      (its default alg, as for --alg)
  --htu URL           the proof's request URI (http or https; query and fragment are ignored)
  --htm METHOD        the proof's request method (default: GET)
  --dpop-jti JTI      the proof's jti (default: 128 random bits)
  --dpop-nonce NONCE  the proof's nonce claim (RFC 9449 §8: the server's DPoP-Nonce)
  --mtls-cert FILE    PEM client certificate the token is bound to (its first block)";

/// `jwt-edge mint`.
pub fn run(argv: &[String], out: &mut Output) -> Result<u8, CliError> {
    const OPTS: [Opt; 20] = [
        args::value("key"),
        args::value("alg"),
        args::value("kid"),
        args::switch("no-kid"),
        args::value("iss"),
        args::value("sub"),
        args::repeated("aud"),
        args::value("scope"),
        args::value("ttl"),
        args::switch("no-exp"),
        args::repeated("claim"),
        args::value("claims-json"),
        args::value("now"),
        args::switch("no-iat"),
        args::value("dpop-key"),
        args::value("htu"),
        args::value("htm"),
        args::value("dpop-jti"),
        args::value("dpop-nonce"),
        args::value("mtls-cert"),
    ];
    let a = Args::parse("mint", argv, &OPTS)?;
    if a.help {
        out.out(HELP);
        return Ok(0);
    }
    a.at_most_positionals(0)?;
    let key: PrivateKey = keys::load_private(a.required("key")?)?;
    let public = key.public();
    let alg = match a.one("alg") {
        Some(text) => keys::parse_alg(text)?,
        None => public.default_alg(),
    };
    if a.flag("no-kid") && a.one("kid").is_some() {
        return Err(CliError::usage("--kid and --no-kid exclude each other"));
    }
    if a.flag("no-exp") && a.one("ttl").is_some() {
        return Err(CliError::usage("--ttl and --no-exp exclude each other"));
    }
    let now = match a.one("now") {
        Some(n) => args::number("now", n)?,
        None => super::explain::system_now()?,
    };
    let ttl = match a.one("ttl") {
        Some(t) => args::duration("ttl", t)?,
        None => 3600,
    };

    let mut claims = match a.one("claims-json") {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(CliError::usage("--claims-json must be a JSON object")),
            Err(e) => {
                return Err(CliError::usage(format!(
                    "--claims-json is not valid JSON: {e}"
                )))
            }
        },
    };
    if !a.flag("no-iat") {
        claims.insert("iat".into(), now.into());
    }
    if !a.flag("no-exp") {
        let exp = now
            .checked_add(ttl)
            .ok_or_else(|| CliError::usage("--now + --ttl overflows"))?;
        claims.insert("exp".into(), exp.into());
    }
    let dpop = match a.one("dpop-key") {
        Some(path) => Some(DpopRequest::from_args(&a, keys::load_private(path)?)?),
        None => match ["htu", "htm", "dpop-jti", "dpop-nonce"]
            .iter()
            .find(|n| a.one(n).is_some())
        {
            Some(name) => return Err(CliError::usage(format!("--{name} needs --dpop-key"))),
            None => None,
        },
    };
    let x5t = match a.one("mtls-cert") {
        Some(path) => Some(keys::certificate_thumbprint(&keys::load_certificate(path)?)),
        None => None,
    };
    if dpop.is_some() || x5t.is_some() {
        let mut cnf = Map::new();
        if let Some(dpop) = &dpop {
            cnf.insert("jkt".into(), dpop.key.public().thumbprint().into());
        }
        if let Some(x5t) = x5t {
            cnf.insert("x5t#S256".into(), x5t.into());
        }
        claims.insert("cnf".into(), cnf.into());
    }
    for name in ["iss", "sub", "scope"] {
        if let Some(v) = a.one(name) {
            claims.insert(name.into(), v.into());
        }
    }
    match a.all("aud") {
        [] => {}
        [one] => {
            claims.insert("aud".into(), one.as_str().into());
        }
        many => {
            claims.insert("aud".into(), many.to_vec().into());
        }
    }
    for c in a.all("claim") {
        let (name, value) = c
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--claim {c:?}: expected NAME=VALUE")))?;
        if name.is_empty() {
            return Err(CliError::usage(format!("--claim {c:?}: empty claim name")));
        }
        let value = serde_json::from_str::<Value>(value).unwrap_or_else(|_| value.into());
        claims.insert(name.into(), value);
    }

    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    if !a.flag("no-kid") {
        let kid = match a.one("kid") {
            Some(k) => k.to_owned(),
            None => public.thumbprint(),
        };
        header.insert("kid".into(), kid.into());
    }
    header.insert("typ".into(), "JWT".into());

    let token = sign(&key, alg, header, claims)?;
    out.out(&token);
    if let Some(dpop) = dpop {
        out.out(dpop.proof(&token, now)?);
    }
    Ok(0)
}

/// A compact JWS over `header` and `claims`.
fn sign(
    key: &PrivateKey,
    alg: Algorithm,
    header: Map<String, Value>,
    claims: Map<String, Value>,
) -> Result<String, CliError> {
    let signing_input = format!(
        "{}.{}",
        b64::encode(Value::Object(header).to_string().as_bytes()),
        b64::encode(Value::Object(claims).to_string().as_bytes())
    );
    let signature = key.sign(alg, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64::encode(&signature)))
}

/// The request a DPoP proof is made for.
struct DpopRequest {
    key: PrivateKey,
    htm: String,
    htu: String,
    jti: String,
    nonce: Option<String>,
}

impl DpopRequest {
    fn from_args(a: &Args, key: PrivateKey) -> Result<DpopRequest, CliError> {
        let htu = a.required("htu")?;
        if normalise_htu(htu).is_none() {
            return Err(CliError::usage(format!(
                "--htu {htu:?}: not an absolute http or https URI jwt-edge can compare"
            )));
        }
        let htm = a.one("htm").unwrap_or("GET");
        if htm.is_empty() || !htm.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(CliError::usage(format!(
                "--htm {htm:?}: not an HTTP method"
            )));
        }
        let jti = match a.one("dpop-jti") {
            Some("") => return Err(CliError::usage("--dpop-jti must not be empty")),
            Some(jti) => jti.to_owned(),
            None => {
                let mut bytes = [0u8; 16];
                OsRng.fill_bytes(&mut bytes);
                b64::encode(&bytes)
            }
        };
        let nonce = match a.one("dpop-nonce") {
            Some("") => return Err(CliError::usage("--dpop-nonce must not be empty")),
            nonce => nonce.map(str::to_owned),
        };
        Ok(DpopRequest {
            key,
            htm: htm.to_owned(),
            htu: htu.to_owned(),
            jti,
            nonce,
        })
    }

    /// The proof for a request carrying `token`, issued at `now` (seconds since the epoch: its
    /// `iat`).
    fn proof(&self, token: &str, now: u64) -> Result<String, CliError> {
        let public = self.key.public();
        let alg = public.default_alg();
        let mut header = Map::new();
        header.insert("typ".into(), "dpop+jwt".into());
        header.insert("alg".into(), alg.name().into());
        header.insert("jwk".into(), public.public_jwk().into());
        let mut claims = Map::new();
        claims.insert("jti".into(), self.jti.clone().into());
        claims.insert("htm".into(), self.htm.clone().into());
        claims.insert("htu".into(), self.htu.clone().into());
        claims.insert("iat".into(), now.into());
        let ath = b64::encode(&Sha256::digest(token.as_bytes()));
        claims.insert("ath".into(), ath.into());
        if let Some(nonce) = &self.nonce {
            claims.insert("nonce".into(), nonce.clone().into());
        }
        sign(&self.key, alg, header, claims)
    }
}
