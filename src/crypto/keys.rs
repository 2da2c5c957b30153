//! Generation, import, export and fingerprints of user keys.
//!
//! Material is kept as: symmetric keys, their 32 raw bytes; RSA and Ed25519, the private
//! key as PKCS#8 DER and the public key as SPKI DER (a public-only key has no private
//! part). Import reads PEM, DER, base64 of DER (32 raw bytes for symmetric keys) and JWK
//! ([`super::jwk`]); Ed25519 specifics are in [`super::ed25519_keys`].

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rsa::pkcs1::der::Decode as _;
use rsa::pkcs1::der::asn1::ObjectIdentifier;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, RsaPssParamsOwned};
use rsa::pkcs8::SubjectPublicKeyInfoRef;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::ed25519_keys;
use crate::error::{Error, Result};
use crate::keytype::KeyType;

/// The smallest RSA modulus we accept on import.
pub const MIN_RSA_BITS: usize = 2048;

/// The material of one key version.
pub struct KeyMaterial {
    /// The secret part (empty for a public-only key).
    pub secret: Zeroizing<Vec<u8>>,
    /// The public part (SPKI DER), for asymmetric keys.
    pub public: Option<Vec<u8>>,
}

/// How exported material is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExportFormat {
    /// PEM text (PKCS#8 for private keys, SPKI for public keys).
    Pem,
    /// Binary DER.
    Der,
    /// Base64 text (url-safe for Fernet keys, as Python's Fernet takes them).
    Base64,
    /// A JSON Web Key (RFC 7517/7518, RFC 8037 for Ed25519): see [`super::jwk`].
    Jwk,
    /// OpenSSH: the public key line, or an OpenSSH private key file (see
    /// [`crate::ssh::format`]).
    Openssh,
}

impl ExportFormat {
    /// The default format for a key type: base64 for symmetric keys, PEM for RSA and
    /// Ed25519.
    pub fn default_for(key_type: KeyType) -> Self {
        if key_type.is_asymmetric() {
            ExportFormat::Pem
        } else {
            ExportFormat::Base64
        }
    }
}

/// Generates a fresh key of `key_type`.
pub fn generate(key_type: KeyType) -> Result<KeyMaterial> {
    if key_type == KeyType::Ed25519 {
        return ed25519_keys::generate();
    }
    match key_type.rsa_bits() {
        None => {
            let mut secret = Zeroizing::new(vec![0u8; 32]);
            super::random_bytes(&mut secret)?;
            Ok(KeyMaterial {
                secret,
                public: None,
            })
        }
        Some(bits) => {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|e| Error::Internal(format!("RSA key generation failed: {e}")))?;
            rsa_material(&key)
        }
    }
}

fn rsa_material(key: &rsa::PrivateKey) -> Result<KeyMaterial> {
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

/// Parses key material given by a user: PEM (PKCS#8, PKCS#1, or SPKI when
/// `allow_public_only`), DER, or base64. Symmetric keys are base64 of 32 bytes.
pub fn import(key_type: KeyType, input: &[u8], allow_public_only: bool) -> Result<KeyMaterial> {
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::Usage("the key input is empty".into()));
    }
    // The raw form of a symmetric key (what `export --format der` writes) comes first:
    // its bytes are random and may well begin with `{`.
    if !key_type.is_asymmetric() && is_raw_symmetric(input) {
        return Ok(KeyMaterial {
            secret: Zeroizing::new(input.to_vec()),
            public: None,
        });
    }
    if super::jwk::looks_like_jwk(input) {
        return super::jwk::import(key_type, input, allow_public_only);
    }
    if crate::ssh::format::is_private_file(input) || crate::ssh::format::is_public_line(input) {
        return crate::ssh::format::import(key_type, input, allow_public_only);
    }
    if key_type == KeyType::Ed25519 {
        return ed25519_keys::import(input, allow_public_only);
    }
    match key_type.rsa_bits() {
        None => import_symmetric(key_type, input),
        Some(bits) => import_rsa(key_type, bits, input, allow_public_only),
    }
}

pub(crate) fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    for engine in [&URL_SAFE, &STANDARD, &URL_SAFE_NO_PAD, &STANDARD_NO_PAD] {
        if let Ok(bytes) = engine.decode(compact.as_bytes()) {
            return Some(Zeroizing::new(bytes));
        }
    }
    None
}

/// Whether `input` is a raw 32-byte key rather than text: exactly 32 bytes, not all
/// printable ASCII. (Base64 of 32 bytes is 43 or 44 characters; 32 characters of text,
/// such as base64 of a 24-byte key, are decoded as text and refused for their length. A
/// random key is all printable with a chance of about 1 in 10^14.)
fn is_raw_symmetric(input: &[u8]) -> bool {
    input.len() == 32 && !input.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

fn import_symmetric(key_type: KeyType, input: &[u8]) -> Result<KeyMaterial> {
    let expected = if key_type == KeyType::Fernet {
        "a Fernet key (url-safe base64 of 32 bytes, or the 32 raw bytes)"
    } else {
        "base64 of a 32-byte key, or the 32 raw bytes"
    };

    let text = std::str::from_utf8(input).map_err(|_| {
        Error::Usage(format!(
            "cannot read the {key_type} key: expected {expected}"
        ))
    })?;
    let bytes = decode_base64(text).ok_or_else(|| {
        Error::Usage(format!(
            "cannot read the {key_type} key: expected {expected}"
        ))
    })?;
    if bytes.len() != 32 {
        return Err(Error::Usage(format!(
            "the {key_type} key is {} bytes long: expected {expected}",
            bytes.len()
        )));
    }
    Ok(KeyMaterial {
        secret: bytes,
        public: None,
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
        _ => Err(Error::Integrity(
            "the stored RSA public key does not decode".into(),
        )),
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
    let bad = |what: &str| {
        Error::Usage(format!(
            "cannot read the RSA key: {what}; expected a PEM (PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\", or \"PUBLIC KEY\" with --public), DER, base64 of DER, or a JWK"
        ))
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

/// Decodes one PEM block, returning its label and DER bytes.
pub(crate) fn pem_rfc7468_decode(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let mut lines = text.lines().map(str::trim);
    let first = lines.next()?;
    let label = first
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (legacy encrypted PEM): not supported.
            return None;
        }
        body.push_str(line);
    }
    if !ended {
        return None;
    }
    let der = STANDARD.decode(body.as_bytes()).ok()?;
    Some((label, Zeroizing::new(der)))
}

fn import_rsa(
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
        return Err(Error::Usage(format!(
            "the RSA key has a {actual}-bit modulus but type {key_type} expects {bits} bits; use --type rsa-{actual}"
        )));
    }
    match parsed {
        Parsed::Private(k) => {
            k.validate()
                .map_err(|e| Error::Usage(format!("the RSA private key is not valid: {e}")))?;
            rsa_material(&k)
        }
        Parsed::Public(k) => {
            if !allow_public_only {
                return Err(Error::Usage(format!(
                    "expected a private key for type {key_type} (PKCS#8 or PKCS#1), found a public key; pass --public to import a public-only key"
                )));
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
                return Err(Error::Usage(format!(
                    "expected a private key for type {key_type}, found an RSASSA-PSS public key; pass --public to import it (it then verifies PSS signatures only)"
                )));
            }
            Ok(KeyMaterial {
                secret: Zeroizing::new(Vec::new()),
                public: Some(spki),
            })
        }
    }
}

/// Encodes key material for export.
pub fn export(
    key_type: KeyType,
    material: &KeyMaterial,
    public: bool,
    format: ExportFormat,
) -> Result<Zeroizing<Vec<u8>>> {
    if format == ExportFormat::Openssh {
        return crate::ssh::format::export(key_type, material, public, "");
    }
    if format == ExportFormat::Jwk {
        if is_pss_only(material) {
            return Err(Error::Usage(
                "an RSASSA-PSS key does not export as a JWK (its PSS parameters would be lost); use pem or der".into(),
            ));
        }
        return super::jwk::export(key_type, material, public);
    }
    if !key_type.is_asymmetric() {
        if public {
            return Err(Error::Usage(format!(
                "{key_type} keys are symmetric and have no public part"
            )));
        }
        return match format {
            ExportFormat::Base64 => {
                let engine = if key_type == KeyType::Fernet {
                    &URL_SAFE
                } else {
                    &STANDARD
                };
                let mut text =
                    Zeroizing::new(engine.encode(material.secret.as_slice()).into_bytes());
                text.push(b'\n');
                Ok(text)
            }
            ExportFormat::Der => Ok(material.secret.clone()),
            ExportFormat::Pem | ExportFormat::Jwk | ExportFormat::Openssh => Err(Error::Usage(
                format!("{key_type} keys export as base64, der or jwk, not pem"),
            )),
        };
    }
    if public || material.secret.is_empty() {
        if !public {
            return Err(Error::Usage(
                "this key is public-only: it has no private part to export; use --public".into(),
            ));
        }
        let der = material
            .public
            .as_ref()
            .ok_or_else(|| Error::Integrity("the key record has no public key".into()))?;
        return Ok(match format {
            ExportFormat::Jwk => super::jwk::export(key_type, material, true)?,
            ExportFormat::Openssh => crate::ssh::format::export(key_type, material, true, "")?,
            ExportFormat::Der => Zeroizing::new(der.clone()),
            ExportFormat::Base64 => {
                Zeroizing::new(format!("{}\n", STANDARD.encode(der)).into_bytes())
            }
            ExportFormat::Pem if key_type == KeyType::Ed25519 => {
                ed25519_keys::verifying_key(material)?;
                pem_encode("PUBLIC KEY", der)
            }
            // As imported: its parameters are what restricts it to PSS.
            ExportFormat::Pem if is_pss_only(material) => pem_encode("PUBLIC KEY", der),
            ExportFormat::Pem => {
                let key = rsa::PublicKey::from_public_key_der(der).map_err(|_| {
                    Error::Integrity("the stored public key does not decode".into())
                })?;
                let pem = key
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| Error::Internal(format!("PEM encoding failed: {e}")))?;
                Zeroizing::new(pem.into_bytes())
            }
        });
    }
    Ok(match format {
        ExportFormat::Jwk => super::jwk::export(key_type, material, false)?,
        ExportFormat::Openssh => crate::ssh::format::export(key_type, material, false, "")?,
        ExportFormat::Der => material.secret.clone(),
        ExportFormat::Base64 => Zeroizing::new(
            format!("{}\n", STANDARD.encode(material.secret.as_slice())).into_bytes(),
        ),
        ExportFormat::Pem if key_type == KeyType::Ed25519 => {
            ed25519_keys::signing_key(material)?;
            pem_encode("PRIVATE KEY", &material.secret)
        }
        ExportFormat::Pem => {
            let key = rsa::PrivateKey::from_pkcs8_der(&material.secret)
                .map_err(|_| Error::Integrity("the stored private key does not decode".into()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| Error::Internal(format!("PEM encoding failed: {e}")))?;
            Zeroizing::new(pem.as_bytes().to_vec())
        }
    })
}

/// PEM text (RFC 7468): the label's boundaries around base64 in lines of 64 characters.
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(Vec::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

/// A fingerprint that identifies a key without revealing it: `SHA256:` and the
/// unpadded base64 of SHA-256 over the SPKI DER (asymmetric keys) or over a domain
/// label and the key bytes (symmetric keys, a key check value).
pub fn fingerprint(key_type: KeyType, material: &KeyMaterial) -> String {
    fingerprint_of(key_type, &material.secret, material.public.as_deref())
}

/// [`fingerprint`] from borrowed parts (no copy of the secret).
pub fn fingerprint_of(key_type: KeyType, secret: &[u8], public: Option<&[u8]>) -> String {
    let digest = match public {
        Some(spki) if key_type.is_asymmetric() => Sha256::digest(spki),
        _ => {
            let mut h = Sha256::new();
            h.update(b"keyvault symmetric key fingerprint v1\0");
            h.update(key_type.as_str().as_bytes());
            h.update([0u8]);
            h.update(secret);
            h.finalize()
        }
    };
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_round_trip_through_base64() {
        for kt in [
            KeyType::Fernet,
            KeyType::Aes256Gcm,
            KeyType::ChaCha20Poly1305,
        ] {
            let m = generate(kt).unwrap();
            let text = export(kt, &m, false, ExportFormat::Base64).unwrap();
            let back = import(kt, &text, false).unwrap();
            assert_eq!(back.secret.as_slice(), m.secret.as_slice());
            assert_eq!(fingerprint(kt, &back), fingerprint(kt, &m));
        }
    }

    #[test]
    fn symmetric_wrong_length_is_usage_error() {
        let short = STANDARD.encode([1u8; 16]);
        assert!(matches!(
            import(KeyType::Aes256Gcm, short.as_bytes(), false),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            import(KeyType::Fernet, b"not base64 !!", false),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            import(KeyType::Fernet, b"  \n", false),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn rsa_pem_round_trip_and_public_only() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let pem = export(KeyType::Rsa2048, &m, false, ExportFormat::Pem).unwrap();
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        let back = import(KeyType::Rsa2048, &pem, false).unwrap();
        assert_eq!(back.public, m.public);
        let public = export(KeyType::Rsa2048, &m, true, ExportFormat::Pem).unwrap();
        assert!(public.starts_with(b"-----BEGIN PUBLIC KEY-----"));
        assert!(matches!(
            import(KeyType::Rsa2048, &public, false),
            Err(Error::Usage(_))
        ));
        let only = import(KeyType::Rsa2048, &public, true).unwrap();
        assert!(only.secret.is_empty());
        assert!(matches!(
            import(KeyType::Rsa3072, &pem, false),
            Err(Error::Usage(_))
        ));
        let truncated = &pem[..pem.len() / 2];
        assert!(matches!(
            import(KeyType::Rsa2048, truncated, false),
            Err(Error::Usage(_))
        ));
        let der = export(KeyType::Rsa2048, &m, false, ExportFormat::Der).unwrap();
        assert_eq!(
            import(KeyType::Rsa2048, &der, false).unwrap().public,
            m.public
        );
    }
}
