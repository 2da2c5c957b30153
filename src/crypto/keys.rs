//! Generation, import, export and fingerprints of user keys.
//!
//! Material is kept as: symmetric keys, their 32 raw bytes; RSA and Ed25519, the private
//! key as PKCS#8 DER and the public key as SPKI DER (a public-only key has no private
//! part). Import reads PEM, DER, base64 of DER (32 raw bytes for symmetric keys) and JWK
//! ([`super::jwk`]). This module dispatches on the key type; the encodings all share
//! are in `crypto::material`, RSA specifics in `crypto::rsa_keys`, Ed25519 specifics
//! in [`super::ed25519_keys`]. Those modules never call back into this one.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use zeroize::Zeroizing;

use super::ed25519_keys;
pub use super::material::{KeyMaterial, fingerprint, fingerprint_of};
use super::material::{decode_base64, pem_encode};
pub(crate) use super::rsa_keys::rsa_public_spki;
pub use super::rsa_keys::{MIN_RSA_BITS, PssConstraints};
use super::rsa_keys::{import_rsa, is_pss_only, rsa_material};
use crate::error::{Error, KeyPart, Result};
use crate::keytype::KeyType;

/// How exported material is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExportFormat {
    /// PEM text (PKCS#8 for private keys, SPKI for public keys).
    Pem,
    /// Raw DER (PKCS#8 or SPKI; the raw 32 bytes of a symmetric key).
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
    pub(crate) fn default_for(key_type: KeyType) -> Self {
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
            return Err(Error::NoPrivatePart);
        }
        let der = material.public.as_ref().ok_or(Error::MissingPublicKey)?;
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
                let key =
                    rsa::PublicKey::from_public_key_der(der).map_err(|_| Error::DamagedKey {
                        family: None,
                        part: KeyPart::Public,
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
            let key = rsa::PrivateKey::from_pkcs8_der(&material.secret).map_err(|_| {
                Error::DamagedKey {
                    family: None,
                    part: KeyPart::Private,
                }
            })?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| Error::Internal(format!("PEM encoding failed: {e}")))?;
            Zeroizing::new(pem.as_bytes().to_vec())
        }
    })
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
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        assert!(matches!(
            import(KeyType::Fernet, b"not base64 !!", false),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        assert!(matches!(
            import(KeyType::Fernet, b"  \n", false),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
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
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let only = import(KeyType::Rsa2048, &public, true).unwrap();
        assert!(only.secret.is_empty());
        assert!(matches!(
            import(KeyType::Rsa3072, &pem, false),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let truncated = &pem[..pem.len() / 2];
        assert!(matches!(
            import(KeyType::Rsa2048, truncated, false),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
        let der = export(KeyType::Rsa2048, &m, false, ExportFormat::Der).unwrap();
        assert_eq!(
            import(KeyType::Rsa2048, &der, false).unwrap().public,
            m.public
        );
    }
}
