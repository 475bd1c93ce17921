//! Keys for the CLI: reading PEM (PKCS#8, SPKI, and the PKCS#1 / SEC1 forms OpenSSL writes),
//! generating keys, exporting public JWKs with RFC 7638 thumbprints, and signing.
//!
//! Natively only: the filter never holds a private key.

use std::io::Write;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding, SecretDocument};
use rand_core::{OsRng, RngCore};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};

use super::args::{self, Args, Opt};
use super::{CliError, Output};
use crate::authn::alg::{Algorithm, KeyFamily};
use crate::authn::b64;
use crate::authn::sender::thumbprint::thumbprint_of_members;

/// RSA sizes the filter accepts (jwk.rs refuses anything outside).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// A private signing key.
pub enum PrivateKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A public verification key.
pub enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::PublicKey),
    P384(p384::PublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// What a PEM file held.
pub enum LoadedKey {
    Private(PrivateKey),
    Public(PublicKey),
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_X25519: &str = "1.3.101.110";

impl LoadedKey {
    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            LoadedKey::Private(k) => k.public(),
            LoadedKey::Public(k) => k.clone_key(),
        }
    }
}

impl PrivateKey {
    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            PrivateKey::P256(k) => PublicKey::P256(k.public_key()),
            PrivateKey::P384(k) => PublicKey::P384(k.public_key()),
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }

    /// Signs `msg` as a JWS signature under `alg` (ECDSA as fixed-size `r || s`).
    pub fn sign(&self, alg: Algorithm, msg: &[u8]) -> Result<Vec<u8>, CliError> {
        let family = self.public().family();
        if alg.key_family() != family {
            return Err(CliError::usage(format!(
                "a {} key cannot sign {alg} (it signs {})",
                family_name(family),
                algs_for(family)
            )));
        }
        let failed = |e: rsa::signature::Error| CliError::usage(format!("signing failed: {e}"));
        let sig = match (self, alg) {
            (PrivateKey::Rsa(k), Algorithm::Rs256) => {
                rsa::pkcs1v15::SigningKey::<Sha256>::new(*k.clone())
                    .try_sign(msg)
                    .map_err(failed)?
                    .to_vec()
            }
            (PrivateKey::Rsa(k), Algorithm::Rs384) => {
                rsa::pkcs1v15::SigningKey::<Sha384>::new(*k.clone())
                    .try_sign(msg)
                    .map_err(failed)?
                    .to_vec()
            }
            (PrivateKey::Rsa(k), Algorithm::Rs512) => {
                rsa::pkcs1v15::SigningKey::<Sha512>::new(*k.clone())
                    .try_sign(msg)
                    .map_err(failed)?
                    .to_vec()
            }
            // RFC 7518 §3.5: salt as long as the hash, which is the signing keys' default.
            (PrivateKey::Rsa(k), Algorithm::Ps256) => {
                rsa::pss::BlindedSigningKey::<Sha256>::new(*k.clone())
                    .try_sign_with_rng(&mut OsRng, msg)
                    .map_err(failed)?
                    .to_vec()
            }
            (PrivateKey::Rsa(k), Algorithm::Ps384) => {
                rsa::pss::BlindedSigningKey::<Sha384>::new(*k.clone())
                    .try_sign_with_rng(&mut OsRng, msg)
                    .map_err(failed)?
                    .to_vec()
            }
            (PrivateKey::Rsa(k), Algorithm::Ps512) => {
                rsa::pss::BlindedSigningKey::<Sha512>::new(*k.clone())
                    .try_sign_with_rng(&mut OsRng, msg)
                    .map_err(failed)?
                    .to_vec()
            }
            (PrivateKey::P256(k), Algorithm::Es256) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::SigningKey::from(k)
                    .try_sign(msg)
                    .map_err(failed)?;
                sig.to_bytes().to_vec()
            }
            (PrivateKey::P384(k), Algorithm::Es384) => {
                let sig: p384::ecdsa::Signature = p384::ecdsa::SigningKey::from(k)
                    .try_sign(msg)
                    .map_err(failed)?;
                sig.to_bytes().to_vec()
            }
            (PrivateKey::Ed25519(k), Algorithm::EdDsa) => k.sign(msg).to_bytes().to_vec(),
            _ => {
                return Err(CliError::usage(format!(
                    "{alg} is not supported for signing by this key"
                )))
            }
        };
        Ok(sig)
    }
}

impl PublicKey {
    fn clone_key(&self) -> PublicKey {
        match self {
            PublicKey::Rsa(k) => PublicKey::Rsa(k.clone()),
            PublicKey::P256(k) => PublicKey::P256(*k),
            PublicKey::P384(k) => PublicKey::P384(*k),
            PublicKey::Ed25519(k) => PublicKey::Ed25519(*k),
        }
    }

    /// The key family.
    pub fn family(&self) -> KeyFamily {
        match self {
            PublicKey::Rsa(_) => KeyFamily::Rsa,
            PublicKey::P256(_) => KeyFamily::EcP256,
            PublicKey::P384(_) => KeyFamily::EcP384,
            PublicKey::Ed25519(_) => KeyFamily::Ed25519,
        }
    }

    /// The algorithm a JWK for this key names by default.
    pub fn default_alg(&self) -> Algorithm {
        match self {
            PublicKey::Rsa(_) => Algorithm::Rs256,
            PublicKey::P256(_) => Algorithm::Es256,
            PublicKey::P384(_) => Algorithm::Es384,
            PublicKey::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// The JWK's key members in RFC 7638 order (lexicographic), `kty` included.
    fn members(&self) -> Vec<(&'static str, String)> {
        match self {
            PublicKey::Rsa(k) => vec![
                ("e", b64::encode(&k.e().to_bytes_be())),
                ("kty", "RSA".to_owned()),
                ("n", b64::encode(&k.n().to_bytes_be())),
            ],
            PublicKey::P256(k) => {
                let point = k.to_encoded_point(false);
                vec![
                    ("crv", "P-256".to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", point.x().map(|x| b64::encode(x)).unwrap_or_default()),
                    ("y", point.y().map(|y| b64::encode(y)).unwrap_or_default()),
                ]
            }
            PublicKey::P384(k) => {
                let point = k.to_encoded_point(false);
                vec![
                    ("crv", "P-384".to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", point.x().map(|x| b64::encode(x)).unwrap_or_default()),
                    ("y", point.y().map(|y| b64::encode(y)).unwrap_or_default()),
                ]
            }
            PublicKey::Ed25519(k) => vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", b64::encode(k.as_bytes())),
            ],
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url), computed as the filter does.
    pub fn thumbprint(&self) -> String {
        let members = self.members();
        let members: Vec<(&str, &str)> = members.iter().map(|(k, v)| (*k, v.as_str())).collect();
        thumbprint_of_members(&members)
    }

    /// The public JWK with its key members only (`kty` included): a DPoP proof's `jwk`.
    pub fn public_jwk(&self) -> serde_json::Map<String, serde_json::Value> {
        self.members()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect()
    }

    /// The public JWK as JSON text: `kty`, `kid`, `use`, `alg`, then the key members.
    pub fn jwk_json(&self, kid: &str, alg: Algorithm, indent: &str) -> String {
        let members = self.members();
        let kty = members
            .iter()
            .find(|(k, _)| *k == "kty")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut fields = vec![
            ("kty", kty),
            ("kid", kid.to_owned()),
            ("use", "sig".to_owned()),
            ("alg", alg.name().to_owned()),
        ];
        // n before e, crv before x and y: the order people expect to read.
        let order = ["n", "e", "crv", "x", "y"];
        for name in order {
            if let Some((k, v)) = members.iter().find(|(k, _)| *k == name) {
                fields.push((k, v.clone()));
            }
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{indent}  {}: {}", json_str(k), json_str(v)))
            .collect();
        format!("{indent}{{\n{}\n{indent}}}", body.join(",\n"))
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// "RSA", "P-256" …
pub fn family_name(f: KeyFamily) -> &'static str {
    match f {
        KeyFamily::Rsa => "RSA",
        KeyFamily::EcP256 => "EC P-256",
        KeyFamily::EcP384 => "EC P-384",
        KeyFamily::Ed25519 => "Ed25519",
        KeyFamily::Oct => "symmetric",
    }
}

fn algs_for(f: KeyFamily) -> String {
    let names: Vec<&str> = Algorithm::ALL
        .iter()
        .filter(|a| a.key_family() == f)
        .map(|a| a.name())
        .collect();
    names.join(", ")
}

/// Parses an `--alg` value: an asymmetric algorithm jwt-edge verifies.
pub fn parse_alg(text: &str) -> Result<Algorithm, CliError> {
    let alg = Algorithm::parse(text).ok_or_else(|| {
        CliError::usage(format!(
            "--alg: {text:?} is not an algorithm jwt-edge verifies (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        ))
    })?;
    if alg.is_symmetric() {
        return Err(CliError::usage(format!(
            "--alg: {alg} uses a shared secret, not a key pair; this tool makes and signs with asymmetric keys only"
        )));
    }
    Ok(alg)
}

/// Reads and parses a PEM key file.
pub fn load_file(path: &str) -> Result<LoadedKey, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read key {path}: {e}")))?;
    parse_pem(&text).map_err(|m| CliError::usage(format!("{path}: {m}")))
}

/// The DER of the certificate in a PEM file (its first block).
pub fn load_certificate(path: &str) -> Result<Vec<u8>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read certificate {path}: {e}")))?;
    let fail = |m: String| CliError::usage(format!("{path}: {m}"));
    let block = first_block(&text).map_err(|m| fail(m.to_owned()))?;
    // `Document` takes one well-formed DER SEQUENCE: a PEM label on anything else fails.
    let (label, doc) = pkcs8::der::Document::from_pem(block)
        .map_err(|e| fail(format!("not a valid PEM block: {e}")))?;
    if label != "CERTIFICATE" {
        return Err(fail(format!(
            "the first PEM block is {label:?}, not a CERTIFICATE"
        )));
    }
    Ok(doc.as_bytes().to_vec())
}

/// The RFC 8705 §3.1 thumbprint of a certificate: base64url of the SHA-256 of its DER, what a
/// certificate-bound token carries as `cnf["x5t#S256"]`.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    b64::encode(&<Sha256 as sha2::Digest>::digest(der))
}

/// Reads a private key (for signing).
pub fn load_private(path: &str) -> Result<PrivateKey, CliError> {
    match load_file(path)? {
        LoadedKey::Private(k) => Ok(k),
        LoadedKey::Public(_) => Err(CliError::usage(format!(
            "{path}: is a public key; signing needs the private key"
        ))),
    }
}

/// The first PEM block of `text` (text around it, as OpenSSL writes, is ignored).
fn first_block(text: &str) -> Result<&str, String> {
    let start = text
        .find("-----BEGIN ")
        .ok_or("not a PEM file (no -----BEGIN line)")?;
    let rest = text.get(start..).unwrap_or("");
    let label_end = rest
        .get(11..)
        .and_then(|r| r.find("-----"))
        .ok_or("not a PEM file (bad BEGIN line)")?;
    let label = rest.get(11..11 + label_end).unwrap_or("");
    let end_marker = format!("-----END {label}-----");
    let end = rest
        .find(&end_marker)
        .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
    Ok(rest.get(..end + end_marker.len()).unwrap_or(rest))
}

/// Parses one PEM key.
pub fn parse_pem(text: &str) -> Result<LoadedKey, String> {
    let block = first_block(text)?;
    let (label, doc) =
        SecretDocument::from_pem(block).map_err(|e| format!("not a valid PEM block: {e}"))?;
    let der = doc.as_bytes();
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("not a valid {what}: {e}");
    let key = match label {
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| bad("PKCS#8 key", &e))?;
            let oid = info.algorithm.oid.to_string();
            match oid.as_str() {
                OID_RSA => LoadedKey::Private(PrivateKey::Rsa(Box::new(
                    RsaPrivateKey::from_pkcs8_der(der).map_err(|e| bad("RSA key", &e))?,
                ))),
                OID_EC => match ec_curve(info.algorithm.parameters_oid().ok())? {
                    KeyFamily::EcP256 => LoadedKey::Private(PrivateKey::P256(
                        p256::SecretKey::from_pkcs8_der(der).map_err(|e| bad("P-256 key", &e))?,
                    )),
                    _ => LoadedKey::Private(PrivateKey::P384(
                        p384::SecretKey::from_pkcs8_der(der).map_err(|e| bad("P-384 key", &e))?,
                    )),
                },
                OID_ED25519 => LoadedKey::Private(PrivateKey::Ed25519(Box::new(
                    ed25519_dalek::SigningKey::from_pkcs8_der(der)
                        .map_err(|e| bad("Ed25519 key", &e))?,
                ))),
                other => return Err(unsupported_oid(other)),
            }
        }
        "PUBLIC KEY" => {
            let info = pkcs8::SubjectPublicKeyInfoRef::try_from(der)
                .map_err(|e| bad("public key (SPKI)", &e))?;
            let oid = info.algorithm.oid.to_string();
            match oid.as_str() {
                OID_RSA => LoadedKey::Public(PublicKey::Rsa(
                    RsaPublicKey::from_public_key_der(der).map_err(|e| bad("RSA key", &e))?,
                )),
                OID_EC => match ec_curve(info.algorithm.parameters_oid().ok())? {
                    KeyFamily::EcP256 => LoadedKey::Public(PublicKey::P256(
                        p256::PublicKey::from_public_key_der(der)
                            .map_err(|e| bad("P-256 key", &e))?,
                    )),
                    _ => LoadedKey::Public(PublicKey::P384(
                        p384::PublicKey::from_public_key_der(der)
                            .map_err(|e| bad("P-384 key", &e))?,
                    )),
                },
                OID_ED25519 => LoadedKey::Public(PublicKey::Ed25519(
                    ed25519_dalek::VerifyingKey::from_public_key_der(der)
                        .map_err(|e| bad("Ed25519 key", &e))?,
                )),
                other => return Err(unsupported_oid(other)),
            }
        }
        "RSA PRIVATE KEY" => LoadedKey::Private(PrivateKey::Rsa(Box::new(
            RsaPrivateKey::from_pkcs1_der(der).map_err(|e| bad("PKCS#1 RSA key", &e))?,
        ))),
        "RSA PUBLIC KEY" => LoadedKey::Public(PublicKey::Rsa(
            RsaPublicKey::from_pkcs1_der(der).map_err(|e| bad("PKCS#1 RSA key", &e))?,
        )),
        "EC PRIVATE KEY" => {
            if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
                LoadedKey::Private(PrivateKey::P256(k))
            } else if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
                LoadedKey::Private(PrivateKey::P384(k))
            } else {
                return Err("not a P-256 or P-384 EC private key (SEC1)".into());
            }
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err("encrypted private keys are not supported; decrypt first \
                        (openssl pkcs8 -in KEY -out PLAIN.pem)"
                .into())
        }
        other => {
            return Err(format!(
                "PEM block {other:?} is not a key (expected PRIVATE KEY or PUBLIC KEY)"
            ))
        }
    };
    if let LoadedKey::Private(PrivateKey::Rsa(k)) = &key {
        check_rsa_size(k.n().bits())?;
    }
    if let LoadedKey::Public(PublicKey::Rsa(k)) = &key {
        check_rsa_size(k.n().bits())?;
    }
    Ok(key)
}

fn check_rsa_size(bits: usize) -> Result<(), String> {
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "RSA key is {bits} bits; jwt-edge accepts {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
        ))
    }
}

fn ec_curve(oid: Option<pkcs8::ObjectIdentifier>) -> Result<KeyFamily, String> {
    match oid.map(|o| o.to_string()).as_deref() {
        Some(OID_P256) => Ok(KeyFamily::EcP256),
        Some(OID_P384) => Ok(KeyFamily::EcP384),
        Some(other) => Err(format!(
            "EC curve {other} is not supported (P-256 and P-384 only)"
        )),
        None => Err("EC key without a named curve".into()),
    }
}

fn unsupported_oid(oid: &str) -> String {
    match oid {
        OID_X25519 => "X25519 is a key-agreement key, not a signing key".into(),
        OID_RSA_PSS => {
            "RSASSA-PSS-restricted keys are not supported; export as plain RSA (rsaEncryption)"
                .into()
        }
        other => format!("key algorithm {other} is not supported (RSA, EC P-256/P-384, Ed25519)"),
    }
}

const KEYGEN_HELP: &str = "\
Usage: jwt-edge keygen --alg ALG --out PRIVATE.pem [--bits 2048|3072|4096] [--kid KID]

Generates a private key as PKCS#8 PEM (file mode 0600; an existing file is never
overwritten) and prints its kid: --kid if given, else the RFC 7638 thumbprint, which
`jwks` and `mint` use by default too. The PEM does not store the kid.

  --alg ALG     RS256 RS384 RS512 PS256 PS384 PS512 (RSA), ES256 (P-256), ES384 (P-384), EdDSA (Ed25519)
  --bits N      RSA modulus size: 2048 (default), 3072 or 4096
  --kid KID     the kid to print
  --out FILE    where to write the private key";

/// `jwt-edge keygen`.
pub fn run_keygen(argv: &[String], out: &mut Output) -> Result<u8, CliError> {
    const OPTS: [Opt; 4] = [
        args::value("alg"),
        args::value("bits"),
        args::value("kid"),
        args::value("out"),
    ];
    let a = Args::parse("keygen", argv, &OPTS)?;
    if a.help {
        out.out(KEYGEN_HELP);
        return Ok(0);
    }
    a.at_most_positionals(0)?;
    let alg = parse_alg(a.required("alg")?)?;
    let path = a.required("out")?;
    let bits = match a.one("bits") {
        None => 2048,
        Some(b) => {
            let n = args::number("bits", b)?;
            if alg.key_family() != KeyFamily::Rsa {
                return Err(CliError::usage(format!(
                    "--bits applies to RSA keys only, not {alg}"
                )));
            }
            match n {
                2048 | 3072 | 4096 => n as usize,
                _ => return Err(CliError::usage("--bits must be 2048, 3072 or 4096")),
            }
        }
    };
    let fail = |e: &dyn std::fmt::Display| CliError::usage(format!("key generation failed: {e}"));
    let (private, pem) = match alg.key_family() {
        KeyFamily::Rsa => {
            let k = RsaPrivateKey::new(&mut OsRng, bits).map_err(|e| fail(&e))?;
            let pem = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(&e))?;
            (PrivateKey::Rsa(Box::new(k)), pem)
        }
        KeyFamily::EcP256 => {
            let k = p256::SecretKey::random(&mut OsRng);
            let pem = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(&e))?;
            (PrivateKey::P256(k), pem)
        }
        KeyFamily::EcP384 => {
            let k = p384::SecretKey::random(&mut OsRng);
            let pem = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(&e))?;
            (PrivateKey::P384(k), pem)
        }
        KeyFamily::Ed25519 => {
            let mut seed = [0u8; 32];
            OsRng.try_fill_bytes(&mut seed).map_err(|e| fail(&e))?;
            let k = ed25519_dalek::SigningKey::from_bytes(&seed);
            let pem = k.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(&e))?;
            (PrivateKey::Ed25519(Box::new(k)), pem)
        }
        KeyFamily::Oct => return Err(CliError::usage("symmetric keys are not generated")),
    };
    write_private(path, pem.as_bytes())?;
    let kid = match a.one("kid") {
        Some(k) => k.to_owned(),
        None => private.public().thumbprint(),
    };
    out.out(&kid);
    out.err(format!(
        "wrote {} private key for {alg} to {path}",
        match alg.key_family() {
            KeyFamily::Rsa => format!("RSA-{bits}"),
            f => family_name(f).to_owned(),
        }
    ));
    Ok(0)
}

/// Writes a new private-key file readable by its owner only; refuses to overwrite.
fn write_private(path: &str, bytes: &[u8]) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::usage(format!("{path} already exists; not overwriting a key"))
        } else {
            CliError::usage(format!("cannot create {path}: {e}"))
        }
    })?;
    file.write_all(bytes)
        .map_err(|e| CliError::usage(format!("cannot write {path}: {e}")))
}

const JWKS_HELP: &str = "\
Usage: jwt-edge jwks [--kid KID]... [--alg ALG] KEY.pem...

Prints a public JWKS ({\"keys\":[...]}) for PEM keys (PKCS#8 private or SPKI public; PKCS#1
and SEC1 too). Each key gets kty, kid, use \"sig\", alg and its public members.

  --kid KID    kid of the key in the same position (repeat per key); the rest get their
               RFC 7638 thumbprint
  --alg ALG    alg for every key of that family (default: RS256 for RSA, ES256 for P-256,
               ES384 for P-384, EdDSA for Ed25519)";

/// `jwt-edge jwks`.
pub fn run_jwks(argv: &[String], out: &mut Output) -> Result<u8, CliError> {
    const OPTS: [Opt; 2] = [args::repeated("kid"), args::value("alg")];
    let a = Args::parse("jwks", argv, &OPTS)?;
    if a.help {
        out.out(JWKS_HELP);
        return Ok(0);
    }
    if a.positionals.is_empty() {
        return Err(CliError::usage(
            "give at least one KEY.pem (see jwt-edge jwks --help)",
        ));
    }
    let kids = a.all("kid");
    if kids.len() > a.positionals.len() {
        return Err(CliError::usage(format!(
            "{} --kid values for {} key files",
            kids.len(),
            a.positionals.len()
        )));
    }
    let forced = a.one("alg").map(parse_alg).transpose()?;
    let mut entries = Vec::new();
    let mut seen_kids: Vec<String> = Vec::new();
    let mut forced_fits = false;
    for (i, path) in a.positionals.iter().enumerate() {
        let public = load_file(path)?.public();
        let alg = match forced {
            Some(alg) if alg.key_family() == public.family() => {
                forced_fits = true;
                alg
            }
            Some(alg) if a.positionals.len() == 1 => {
                return Err(CliError::usage(format!(
                    "{path}: --alg {alg} does not fit a {} key ({})",
                    family_name(public.family()),
                    algs_for(public.family())
                )))
            }
            _ => public.default_alg(),
        };
        let kid = match kids.get(i) {
            Some(k) if k.is_empty() => return Err(CliError::usage("--kid must not be empty")),
            Some(k) => k.clone(),
            None => public.thumbprint(),
        };
        if seen_kids.contains(&kid) {
            return Err(CliError::usage(format!(
                "{path}: kid {kid:?} is used twice (the filter would skip the second key)"
            )));
        }
        seen_kids.push(kid.clone());
        entries.push(public.jwk_json(&kid, alg, "    "));
    }
    if let Some(alg) = forced {
        if !forced_fits {
            return Err(CliError::usage(format!(
                "--alg {alg} fits none of the keys"
            )));
        }
    }
    out.out(format!(
        "{{\n  \"keys\": [\n{}\n  ]\n}}",
        entries.join(",\n")
    ));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::EncodePublicKey;

    #[test]
    fn rfc7638_thumbprint() {
        // RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
        let n = b64::decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let key = RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from(65_537u32),
        )
        .unwrap();
        assert_eq!(
            PublicKey::Rsa(key).thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn spki_public_pem_matches_private() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/integration-tests/fixtures/ec-p256.pem"
        ))
        .unwrap();
        let LoadedKey::Private(PrivateKey::P256(k)) = parse_pem(&text).unwrap() else {
            panic!("not a P-256 private key");
        };
        let spki = k.public_key().to_public_key_pem(LineEnding::LF).unwrap();
        // Text around the block, as `openssl` prints it, is ignored.
        let wrapped = format!("Some header text\n{spki}trailing\n");
        let public = parse_pem(&wrapped).unwrap();
        assert!(matches!(public, LoadedKey::Public(_)));
        assert_eq!(
            public.public().thumbprint(),
            PrivateKey::P256(k).public().thumbprint()
        );
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        for bad in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----BEGIN ",
        ] {
            assert!(parse_pem(bad).is_err(), "{bad:?}");
        }
    }
}
