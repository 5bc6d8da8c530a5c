//! Verification keys for JWS signatures: HMAC secrets, PEM public keys and JWKs, each bound to
//! exactly one algorithm when it is built.
//!
//! Owns the JOSE algorithm names and the key formats (PEM `SubjectPublicKeyInfo`, RFC 7517
//! JWKs). A key verifies only tokens whose `alg` is the key's own algorithm, so an HMAC key is
//! never fed a public key, and `none` is not an algorithm. Never fetches anything.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use serde_json::Value;

/// Smallest RSA modulus accepted (2048 bits).
const MIN_RSA_BYTES: usize = 256;
/// Largest RSA modulus accepted (8192 bits).
const MAX_RSA_BYTES: usize = 1024;

/// A JWS algorithm ash verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Es256,
    Es384,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    EdDsa,
}

impl Alg {
    /// Parses a JOSE `alg` name; `none` and anything unknown are `None`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::EdDsa => "EdDSA",
        }
    }

    /// Whether this is an HMAC algorithm (a shared secret, never a published key).
    pub(crate) fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }

    fn rsa(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    fn ecdsa(self) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
        match self {
            Self::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED),
            Self::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED),
            _ => None,
        }
    }

    fn hmac(self) -> Option<hmac::Algorithm> {
        match self {
            Self::Hs256 => Some(hmac::HMAC_SHA256),
            Self::Hs384 => Some(hmac::HMAC_SHA384),
            Self::Hs512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }
}

impl From<ash_spec::JwtAlgorithm> for Alg {
    fn from(alg: ash_spec::JwtAlgorithm) -> Self {
        match alg {
            ash_spec::JwtAlgorithm::Hs256 => Self::Hs256,
            ash_spec::JwtAlgorithm::Hs384 => Self::Hs384,
            ash_spec::JwtAlgorithm::Hs512 => Self::Hs512,
            ash_spec::JwtAlgorithm::Es256 => Self::Es256,
            ash_spec::JwtAlgorithm::Es384 => Self::Es384,
        }
    }
}

/// A key that verifies signatures of one algorithm.
pub(crate) struct VerifyKey {
    alg: Alg,
    inner: Inner,
}

enum Inner {
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({})", self.alg.as_str())
    }
}

/// Why a key could not be built. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("`{0}` is not an HMAC algorithm")]
    NotHmac(&'static str),
    #[error(
        "the public key is not PEM (`-----BEGIN PUBLIC KEY-----` … `-----END PUBLIC KEY-----`)"
    )]
    NotPem,
    #[error("the public key is not a valid {0} key")]
    Rejected(&'static str),
    #[error("the JWK {0}")]
    Jwk(String),
}

impl VerifyKey {
    /// An HMAC key for `alg` (HS256/384/512) from the secret's UTF-8 bytes.
    pub(crate) fn hmac(alg: Alg, secret: &[u8]) -> Result<Self, KeyError> {
        let algorithm = alg.hmac().ok_or(KeyError::NotHmac(alg.as_str()))?;
        Ok(Self { alg, inner: Inner::Hmac(Box::new(hmac::Key::new(algorithm, secret))) })
    }

    /// An ECDSA key for `alg` (ES256/ES384) from a PEM `SubjectPublicKeyInfo`. A key on
    /// another curve is refused.
    pub(crate) fn ecdsa_pem(alg: Alg, pem: &str) -> Result<Self, KeyError> {
        let der = pem_body(pem, "PUBLIC KEY").ok_or(KeyError::NotPem)?;
        let algorithm = alg.ecdsa().ok_or(KeyError::Rejected(alg.as_str()))?;
        let key =
            ParsedPublicKey::new(algorithm, der).map_err(|_| KeyError::Rejected(alg.as_str()))?;
        Ok(Self { alg, inner: Inner::Public(key) })
    }

    /// A key from one JWK of a JWKS. `None` for keys that are not for signatures (`use` other
    /// than `sig`) or of a type ash does not verify; `Err` for a signature key that is broken.
    ///
    /// The algorithm is the JWK's `alg` when it declares one; otherwise it follows from the
    /// key: ES256/ES384 from the curve, EdDSA for Ed25519, RS256 for RSA (the OpenID default).
    pub(crate) fn from_jwk(jwk: &Value) -> Result<Option<Self>, KeyError> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if text("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
            && !ops.iter().any(|op| op.as_str() == Some("verify"))
        {
            return Ok(None);
        }
        let declared = match text("alg") {
            Some(name) => match Alg::parse(name) {
                Some(alg) => Some(alg),
                None => return Ok(None),
            },
            None => None,
        };
        let bytes = |name: &str| -> Result<Vec<u8>, KeyError> {
            let value = text(name).ok_or_else(|| KeyError::Jwk(format!("has no `{name}`")))?;
            b64url(value).ok_or_else(|| KeyError::Jwk(format!("`{name}` is not base64url")))
        };
        let (alg, key) = match text("kty") {
            Some("RSA") => {
                let alg = declared.unwrap_or(Alg::Rs256);
                let Some(params) = alg.rsa() else {
                    return Err(KeyError::Jwk(format!("is RSA but declares {}", alg.as_str())));
                };
                let (n, e) = (bytes("n")?, bytes("e")?);
                let n = strip_leading_zeros(&n);
                if !(MIN_RSA_BYTES..=MAX_RSA_BYTES).contains(&n.len()) {
                    return Err(KeyError::Rejected(alg.as_str()));
                }
                let components = RsaPublicKeyComponents { n, e: strip_leading_zeros(&e) };
                let key = components
                    .to_parsed_public_key(params)
                    .map_err(|_| KeyError::Rejected(alg.as_str()))?;
                (alg, key)
            }
            Some("EC") => {
                let (curve_alg, size) = match text("crv") {
                    Some("P-256") => (Alg::Es256, 32),
                    Some("P-384") => (Alg::Es384, 48),
                    _ => return Ok(None),
                };
                let alg = declared.unwrap_or(curve_alg);
                if alg != curve_alg {
                    return Err(KeyError::Jwk(format!(
                        "is on curve {} but declares {}",
                        text("crv").unwrap_or_default(),
                        alg.as_str()
                    )));
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != size || y.len() != size {
                    return Err(KeyError::Jwk("has coordinates of the wrong length".to_owned()));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let algorithm = alg.ecdsa().ok_or(KeyError::Rejected(alg.as_str()))?;
                let key = ParsedPublicKey::new(algorithm, point)
                    .map_err(|_| KeyError::Rejected(alg.as_str()))?;
                (alg, key)
            }
            Some("OKP") if text("crv") == Some("Ed25519") => {
                let alg = declared.unwrap_or(Alg::EdDsa);
                if alg != Alg::EdDsa {
                    return Err(KeyError::Jwk(format!("is Ed25519 but declares {}", alg.as_str())));
                }
                let x = bytes("x")?;
                let key = ParsedPublicKey::new(&signature::ED25519, x)
                    .map_err(|_| KeyError::Rejected("Ed25519"))?;
                (alg, key)
            }
            _ => return Ok(None),
        };
        Ok(Some(Self { alg, inner: Inner::Public(key) }))
    }

    /// The algorithm this key verifies.
    pub(crate) fn alg(&self) -> Alg {
        self.alg
    }

    /// Whether `signature` over `input` is valid under this key for a token that names `alg`.
    /// A token naming any other algorithm fails, whatever its signature.
    pub(crate) fn verify(&self, alg: Alg, input: &[u8], sig: &[u8]) -> bool {
        if alg != self.alg {
            return false;
        }
        match &self.inner {
            Inner::Hmac(key) => hmac::verify(key, input, sig).is_ok(),
            Inner::Public(key) => key.verify_sig(input, sig).is_ok(),
        }
    }
}

/// Equality of two byte strings in time that depends only on their lengths.
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// base64url without padding, as JOSE writes it; anything else is `None`.
pub(crate) fn b64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// The DER bytes of a PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let text = pem.trim();
    let body = text.strip_prefix(&begin)?.trim_end().strip_suffix(&end)?;
    let joined: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn algorithm_names_round_trip_and_none_is_not_one() {
        for name in [
            "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256",
            "PS384", "PS512", "EdDSA",
        ] {
            assert_eq!(Alg::parse(name).map(Alg::as_str), Some(name));
        }
        for name in ["none", "None", "NONE", "hs256", "", "ES512", "RS1"] {
            assert_eq!(Alg::parse(name), None, "{name}");
        }
    }

    #[test]
    fn an_hmac_key_verifies_only_its_own_algorithm() {
        let key = VerifyKey::hmac(Alg::Hs256, b"k").unwrap();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), b"msg");
        assert!(key.verify(Alg::Hs256, b"msg", tag.as_ref()));
        assert!(!key.verify(Alg::Hs384, b"msg", tag.as_ref()));
        assert!(!key.verify(Alg::Hs256, b"msh", tag.as_ref()));
        assert_eq!(VerifyKey::hmac(Alg::Es256, b"k").unwrap_err(), KeyError::NotHmac("ES256"));
    }

    #[test]
    fn jwks_entries_that_are_not_signature_keys_are_skipped() {
        let cases = [
            json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "EC", "crv": "secp256k1", "x": "", "y": ""}),
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "OKP", "crv": "X25519", "x": ""}),
            json!({"kty": "EC", "key_ops": ["encrypt"], "crv": "P-256", "x": "", "y": ""}),
        ];
        for jwk in cases {
            assert!(VerifyKey::from_jwk(&jwk).unwrap().is_none(), "{jwk}");
        }
    }

    #[test]
    fn broken_signature_jwks_are_errors() {
        let cases = [
            (json!({"kty": "RSA", "e": "AQAB"}), "the JWK has no `n`"),
            (json!({"kty": "RSA", "n": "***", "e": "AQAB"}), "the JWK `n` is not base64url"),
            (
                json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
                "the public key is not a valid RS256 key",
            ),
            (
                json!({"kty": "RSA", "alg": "ES256", "n": "AQAB", "e": "AQAB"}),
                "the JWK is RSA but declares ES256",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "alg": "ES384", "x": "", "y": ""}),
                "the JWK is on curve P-256 but declares ES384",
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
                "the JWK has coordinates of the wrong length",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "ES256", "x": ""}),
                "the JWK is Ed25519 but declares ES256",
            ),
        ];
        for (jwk, want) in cases {
            assert_eq!(VerifyKey::from_jwk(&jwk).unwrap_err().to_string(), want, "{jwk}");
        }
    }

    #[test]
    fn pem_keys_must_be_pem_on_the_right_curve() {
        assert_eq!(VerifyKey::ecdsa_pem(Alg::Es256, "nope").unwrap_err(), KeyError::NotPem);
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
        assert_eq!(
            VerifyKey::ecdsa_pem(Alg::Es256, garbage).unwrap_err(),
            KeyError::Rejected("ES256")
        );
    }
}
