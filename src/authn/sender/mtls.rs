//! Certificate-bound access tokens (RFC 8705 §3): the token's `cnf["x5t#S256"]` must be the
//! SHA-256 of the DER of the client certificate on the connection.
//!
//! How a proxy-wasm filter sees the certificate (Envoy 1.40): the attribute
//! `connection.sha256_peer_certificate_digest` gives the SHA-256 of the peer certificate's
//! DER as hex (absent without a client certificate), and `connection.mtls` says whether one
//! was presented; the attribute list has no PEM. The PEM forms reach a filter through
//! headers the operator configures: `x-forwarded-client-cert` (`Cert="…"`, URL-encoded PEM,
//! with `forward_client_cert_details` and `set_current_client_cert_details.cert`) or a
//! request header set from `%DOWNSTREAM_PEER_CERT%` (URL-encoded PEM). Each form is a
//! [`ClientCertificate`]; all are reduced to the same 32 bytes.

use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authn::b64;
use crate::authn::error::AuthError;

/// The client certificate as the host gives it.
#[derive(Debug, Clone, Copy)]
pub enum ClientCertificate<'a> {
    /// The certificate's DER bytes.
    Der(&'a [u8]),
    /// PEM text; the first `CERTIFICATE` block (the leaf) is used.
    Pem(&'a str),
    /// URL-encoded PEM (Envoy's `%DOWNSTREAM_PEER_CERT%` and XFCC `Cert=`).
    UrlEncodedPem(&'a str),
    /// The SHA-256 of the DER as hex, either case (`connection.sha256_peer_certificate_digest`).
    Sha256Hex(&'a str),
}

/// Checks the token's certificate binding. `certificate` is `None` when the connection has
/// none (or the host gave something that is not a certificate: treated the same way).
pub fn check_certificate_binding(
    cnf: Option<&Value>,
    certificate: Option<ClientCertificate<'_>>,
) -> Result<(), AuthError> {
    let bound = match cnf {
        None => return Err(AuthError::MtlsTokenUnbound),
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None => return Err(AuthError::MtlsTokenUnbound),
            Some(Value::String(t)) => b64::decode(t)
                .filter(|d| d.len() == 32)
                .ok_or(AuthError::ClaimMalformed("cnf"))?,
            Some(_) => return Err(AuthError::ClaimMalformed("cnf")),
        },
        Some(_) => return Err(AuthError::ClaimMalformed("cnf")),
    };
    let digest = certificate
        .and_then(certificate_sha256)
        .ok_or(AuthError::MtlsCertificateMissing)?;
    if bool::from(digest.as_slice().ct_eq(bound.as_slice())) {
        Ok(())
    } else {
        Err(AuthError::MtlsThumbprintMismatch)
    }
}

/// The SHA-256 of the certificate's DER, or `None` if the input is not a certificate in
/// the form it claims.
pub fn certificate_sha256(certificate: ClientCertificate<'_>) -> Option<Vec<u8>> {
    match certificate {
        ClientCertificate::Der(der) if !der.is_empty() => Some(Sha256::digest(der).to_vec()),
        ClientCertificate::Der(_) => None,
        ClientCertificate::Pem(pem) => pem_der(pem).map(|der| Sha256::digest(der).to_vec()),
        ClientCertificate::UrlEncodedPem(text) => {
            let pem = percent_decode(text)?;
            pem_der(&pem).map(|der| Sha256::digest(der).to_vec())
        }
        ClientCertificate::Sha256Hex(text) if text.len() == 64 => hex_bytes(text),
        ClientCertificate::Sha256Hex(_) => None,
    }
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let (_, rest) = pem.split_once(PEM_BEGIN)?;
    let (body, _) = rest.split_once(PEM_END)?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    b64::decode_standard(&body)
        .ok()
        .filter(|der| !der.is_empty())
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = text
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect();
    Some(
        digits?
            .chunks_exact(2)
            .map(|pair| pair.iter().fold(0, |acc, d| acc * 16 + d))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Not a real certificate: the check hashes bytes and never parses X.509.
    const DER: &[u8] = b"\x30\x82\x01\x0a certificate bytes for the test";

    fn pem() -> String {
        let b64 = b64::encode_standard(DER);
        format!("{PEM_BEGIN}\n{}\n{}\n{PEM_END}\n", &b64[..20], &b64[20..])
    }

    fn url_encoded(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn cnf_for(der: &[u8]) -> Value {
        json!({"x5t#S256": b64::encode(&Sha256::digest(der))})
    }

    #[test]
    fn every_form_of_the_certificate() {
        let cnf = cnf_for(DER);
        let hex_lower = hex::encode(Sha256::digest(DER));
        let hex_upper = hex_lower.to_uppercase();
        let pem = pem();
        let url = url_encoded(&pem);
        for cert in [
            ClientCertificate::Der(DER),
            ClientCertificate::Pem(&pem),
            ClientCertificate::UrlEncodedPem(&url),
            ClientCertificate::Sha256Hex(&hex_lower),
            ClientCertificate::Sha256Hex(&hex_upper),
        ] {
            assert_eq!(
                check_certificate_binding(Some(&cnf), Some(cert)),
                Ok(()),
                "{cert:?}"
            );
        }
    }

    #[test]
    fn every_rule() {
        let cnf = cnf_for(DER);
        let other = cnf_for(b"another certificate");
        let code = |cnf: Option<&Value>, cert: Option<ClientCertificate<'_>>| {
            match check_certificate_binding(cnf, cert) {
                Ok(()) => "ok",
                Err(e) => e.code(),
            }
        };
        let der = Some(ClientCertificate::Der(DER));
        assert_eq!(code(Some(&cnf), None), "mtls_certificate_missing");
        assert_eq!(code(Some(&other), der), "mtls_thumbprint_mismatch");
        assert_eq!(code(None, der), "mtls_token_unbound");
        assert_eq!(code(Some(&json!({"jkt": "x"})), der), "mtls_token_unbound");
        for bad in [
            json!("x"),
            json!({"x5t#S256": 1}),
            json!({"x5t#S256": "AAAA"}),
            json!({"x5t#S256": format!("{}=", b64::encode(&Sha256::digest(DER)))}),
            json!({"x5t#S256": hex::encode(Sha256::digest(DER))}),
        ] {
            assert_eq!(code(Some(&bad), der), "claim_malformed", "{bad}");
        }
        // What the host gives that is not a certificate counts as none.
        let truncated = pem();
        let truncated = &truncated[..truncated.len() - 10];
        for cert in [
            ClientCertificate::Der(b""),
            ClientCertificate::Pem(""),
            ClientCertificate::Pem(truncated),
            ClientCertificate::Pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
            ClientCertificate::UrlEncodedPem("%zz"),
            ClientCertificate::Sha256Hex(""),
            ClientCertificate::Sha256Hex(&"g".repeat(64)),
            ClientCertificate::Sha256Hex(&"a".repeat(62)),
        ] {
            assert_eq!(
                code(Some(&cnf), Some(cert)),
                "mtls_certificate_missing",
                "{cert:?}"
            );
        }
        // A certificate hashed as its PEM text, not its DER, does not match.
        let pem = pem();
        assert_eq!(
            code(
                Some(&cnf_for(pem.as_bytes())),
                Some(ClientCertificate::Pem(&pem))
            ),
            "mtls_thumbprint_mismatch"
        );
    }
}
