//! RSA keys as users give them: PEM, DER or base64 of PKCS#8, PKCS#1 or SPKI (an
//! RSASSA-PSS SPKI too, with its constraints), the checks on import (size, validity,
//! public-only), and the material a new key is stored as. JWKs are read by `jwk`,
//! which hands the key it finds to [`import_rsa_parsed`].

use rsa::pkcs1::der::Decode as _;
use rsa::pkcs1::der::asn1::ObjectIdentifier;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, RsaPssParamsOwned};
use rsa::pkcs8::SubjectPublicKeyInfoRef;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use super::material::{KeyMaterial, decode_base64, pem_rfc7468_decode};
use crate::error::{Error, KeyFamily, KeyPart, PublicKeyForm, Result};
use crate::keytype::KeyType;

/// The smallest RSA modulus we accept on import.
pub const MIN_RSA_BITS: usize = 2048;

pub(crate) fn rsa_material(key: &rsa::PrivateKey) -> Result<KeyMaterial> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| Error::Internal(format!("PKCS#8 encoding failed: {e}")))?;
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| Error::Internal(format!("SPKI encoding failed: {e}")))?;
    Ok(KeyMaterial {
        secret: Zeroizing::new(der.as_bytes().to_vec()),
        public: Some(public.as_bytes().to_vec()),
    })
}

/// An RSA key parsed from user input, before its checks.
pub(crate) enum Parsed {
    /// A private key.
    Private(Box<rsa::PrivateKey>),
    /// A public key.
    Public(rsa::PublicKey),
    /// A public key for RSASSA-PSS signatures only (its SPKI names id-RSASSA-PSS), with
    /// the SPKI as given: it is stored as it is, so its constraints stay with it.
    PssPublic(rsa::PublicKey, Vec<u8>),
}

/// id-RSASSA-PSS (RFC 4055).
const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-sha256.
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-mgf1.
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// What an RSASSA-PSS public key allows (RFC 4055, its SPKI parameters): PSS only, with
/// SHA-256 and MGF1-SHA-256 (the one hash keyvault signs with), and salts of at least
/// `min_salt_len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PssConstraints {
    /// The shortest salt a signature may have.
    pub min_salt_len: usize,
}

/// Reads an SPKI naming id-RSASSA-PSS: `None` if it names something else; an error if
/// its parameters ask for what keyvault does not verify (another hash, SHA-1 by default).
fn parse_pss_spki(der: &[u8]) -> Option<Result<(rsa::PublicKey, PssConstraints)>> {
    let info = SubjectPublicKeyInfoRef::from_der(der).ok()?;
    if info.algorithm.oid != ID_RSASSA_PSS {
        return None;
    }
    let refuse = |what: &str| {
        Some(Err(Error::Usage(format!(
            "the RSASSA-PSS public key {what}; keyvault verifies PSS with SHA-256 and MGF1-SHA-256 only"
        ))))
    };
    let Some(params) = info.algorithm.parameters else {
        return refuse("has no parameters, so it asks for SHA-1 (the default)");
    };
    let Ok(params) = params.decode_as::<RsaPssParamsOwned>() else {
        return refuse("has parameters that do not decode");
    };
    if params.hash.oid != ID_SHA256 {
        return refuse(&format!("asks for the hash {}", params.hash.oid));
    }
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|a| a.oid);
    if params.mask_gen.oid != ID_MGF1 || mgf_hash != Some(ID_SHA256) {
        return refuse("asks for another mask generation function than MGF1-SHA-256");
    }
    let Ok(key) = rsa::PublicKey::from_pkcs1_der(info.subject_public_key.raw_bytes()) else {
        return refuse("does not hold a valid RSA key");
    };
    Some(Ok((
        key,
        PssConstraints {
            min_salt_len: usize::from(params.salt_len),
        },
    )))
}

/// The public key of stored material and, for an RSASSA-PSS key, its constraints.
pub(crate) fn rsa_public_spki(der: &[u8]) -> Result<(rsa::PublicKey, Option<PssConstraints>)> {
    if let Ok(k) = rsa::PublicKey::from_public_key_der(der) {
        return Ok((k, None));
    }
    match parse_pss_spki(der) {
        Some(Ok((k, c))) => Ok((k, Some(c))),
        _ => Err(Error::DamagedKey {
            family: Some(KeyFamily::Rsa),
            part: KeyPart::Public,
        }),
    }
}

/// Whether stored public material is an RSASSA-PSS key (signatures only).
pub(crate) fn is_pss_only(material: &KeyMaterial) -> bool {
    material.public.as_deref().is_some_and(|der| {
        rsa::PublicKey::from_public_key_der(der).is_err() && parse_pss_spki(der).is_some()
    })
}

/// Why an RSASSA-PSS key is refused, when `der` is one (else `None`), as an `Err`.
fn pss_error(der: &[u8]) -> std::result::Result<Parsed, Option<Error>> {
    match parse_pss_spki(der) {
        Some(Err(e)) => Err(Some(e)),
        _ => Err(None),
    }
}

fn parse_rsa_der(der: &[u8]) -> Option<Parsed> {
    if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(der) {
        return Some(Parsed::Private(Box::new(k)));
    }
    if let Ok(k) = rsa::PrivateKey::from_pkcs1_der(der) {
        return Some(Parsed::Private(Box::new(k)));
    }
    if let Ok(k) = rsa::PublicKey::from_public_key_der(der) {
        return Some(Parsed::Public(k));
    }
    if let Ok(k) = rsa::PublicKey::from_pkcs1_der(der) {
        return Some(Parsed::Public(k));
    }
    match parse_pss_spki(der) {
        Some(Ok((k, _))) => Some(Parsed::PssPublic(k, der.to_vec())),
        _ => None,
    }
}

fn parse_rsa(input: &[u8]) -> Result<Parsed> {
    let bad = |what: &str| Error::UnreadableKey {
        family: KeyFamily::Rsa,
        problem: what.to_string(),
    };
    if let Ok(text) = std::str::from_utf8(input) {
        let trimmed = text.trim();
        if trimmed.starts_with("-----BEGIN") {
            let (label, der) = pem_rfc7468_decode(trimmed)
                .ok_or_else(|| bad("the PEM is malformed or truncated"))?;
            let parsed = match label.as_str() {
                "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_der(&der)
                    .map(|k| Parsed::Private(Box::new(k)))
                    .ok(),
                "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_der(&der)
                    .map(|k| Parsed::Private(Box::new(k)))
                    .ok(),
                "PUBLIC KEY" => match rsa::PublicKey::from_public_key_der(&der) {
                    Ok(k) => Some(Parsed::Public(k)),
                    Err(_) => match parse_pss_spki(&der) {
                        Some(Ok((k, _))) => Some(Parsed::PssPublic(k, der.to_vec())),
                        Some(Err(e)) => return Err(e),
                        None => None,
                    },
                },
                "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_der(&der)
                    .map(Parsed::Public)
                    .ok(),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(Error::Usage(
                        "encrypted PKCS#8 keys are not supported: decrypt it first (e.g. `openssl pkcs8 -in key.pem -out plain.pem`)".into(),
                    ));
                }
                other => return Err(bad(&format!("unexpected PEM label {other:?}"))),
            };
            return parsed.ok_or_else(|| bad("the PEM does not hold a valid RSA key"));
        }
        if let Some(der) = decode_base64(trimmed) {
            return parse_rsa_der(&der)
                .map_or_else(|| pss_error(&der), Ok)
                .map_err(|e| e.unwrap_or_else(|| bad("the base64 does not hold a valid RSA key")));
        }
    }
    parse_rsa_der(input)
        .map_or_else(|| pss_error(input), Ok)
        .map_err(|e| e.unwrap_or_else(|| bad("not a recognised key encoding")))
}

pub(crate) fn import_rsa(
    key_type: KeyType,
    bits: usize,
    input: &[u8],
    allow_public_only: bool,
) -> Result<KeyMaterial> {
    import_rsa_parsed(key_type, bits, parse_rsa(input)?, allow_public_only)
}

/// Checks a parsed RSA key (size, validity, public-only) and turns it into material.
pub(crate) fn import_rsa_parsed(
    key_type: KeyType,
    bits: usize,
    parsed: Parsed,
    allow_public_only: bool,
) -> Result<KeyMaterial> {
    let public = match &parsed {
        Parsed::Private(k) => k.to_public_key(),
        Parsed::Public(k) | Parsed::PssPublic(k, _) => k.clone(),
    };
    let actual = public.n().as_ref().bit_width() as usize;
    if actual < MIN_RSA_BITS {
        return Err(Error::TooWeak(format!(
            "the RSA key has a {actual}-bit modulus: too weak (at least {MIN_RSA_BITS} bits)"
        )));
    }
    if actual != bits {
        return Err(Error::RsaSizeMismatch {
            key_type,
            expected: bits,
            found: actual,
        });
    }
    match parsed {
        Parsed::Private(k) => {
            k.validate()
                .map_err(|e| Error::Usage(format!("the RSA private key is not valid: {e}")))?;
            rsa_material(&k)
        }
        Parsed::Public(k) => {
            if !allow_public_only {
                return Err(Error::PublicKeyGiven {
                    key_type,
                    form: PublicKeyForm::Encoded,
                });
            }
            let der = k
                .to_public_key_der()
                .map_err(|e| Error::Internal(format!("SPKI encoding failed: {e}")))?;
            Ok(KeyMaterial {
                secret: Zeroizing::new(Vec::new()),
                public: Some(der.as_bytes().to_vec()),
            })
        }
        Parsed::PssPublic(_, spki) => {
            if !allow_public_only {
                return Err(Error::PublicKeyGiven {
                    key_type,
                    form: PublicKeyForm::RsaPss,
                });
            }
            Ok(KeyMaterial {
                secret: Zeroizing::new(Vec::new()),
                public: Some(spki),
            })
        }
    }
}
