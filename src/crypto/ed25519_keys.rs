//! Ed25519 key material: generation, parsing of what users import, and encodings.
//!
//! A key is stored as for RSA: the private key as PKCS#8 DER and the public key as SPKI
//! DER. The PKCS#8 written is version 1 (RFC 8410: the 32-byte seed, no public key), the
//! form OpenSSL and Python's `cryptography` write; Python's `cryptography` 45 and later
//! rejects version 2 (RFC 5958 `OneAsymmetricKey` with the public key inside), which is
//! what `ed25519-dalek` writes by default. Both versions are read on import, and a
//! version 2 key whose public key does not match its seed is refused.
//!
//! The crate is `ed25519-dalek` 3.0 (RustCrypto-compatible: `signature` 3, `pkcs8` 0.11,
//! `sha2` 0.11). Its seed comes from our CSPRNG, so its `rand_core` feature is not needed.

use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use super::material::{KeyMaterial, decode_base64, pem_rfc7468_decode};
use crate::error::{Error, KeyFamily, KeyPart, PublicKeyForm, Result};
use crate::keytype::KeyType;

/// Bytes of an Ed25519 seed (the private key) and of a public key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A fresh key pair from the operating system's CSPRNG.
pub fn generate() -> Result<KeyMaterial> {
    let mut seed = Zeroizing::new([0u8; KEY_LEN]);
    super::random_bytes(seed.as_mut())?;
    material_from_seed(&seed)
}

/// The stored material of the key pair with this seed.
pub(crate) fn material_from_seed(seed: &[u8; KEY_LEN]) -> Result<KeyMaterial> {
    let signing = SigningKey::from_bytes(seed);
    let pkcs8 = KeypairBytes {
        secret_key: *seed,
        public_key: None,
    }
    .to_pkcs8_der()
    .map_err(|e| Error::Internal(format!("PKCS#8 encoding failed: {e}")))?;
    Ok(KeyMaterial {
        secret: Zeroizing::new(pkcs8.as_bytes().to_vec()),
        public: Some(spki_der(&signing.verifying_key())?),
    })
}

/// The stored material of a public-only key.
pub(crate) fn material_from_public(public: &VerifyingKey) -> Result<KeyMaterial> {
    Ok(KeyMaterial {
        secret: Zeroizing::new(Vec::new()),
        public: Some(spki_der(public)?),
    })
}

fn spki_der(public: &VerifyingKey) -> Result<Vec<u8>> {
    public
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| Error::Internal(format!("SPKI encoding failed: {e}")))
}

/// The signing key of stored material (its PKCS#8 DER secret).
pub(crate) fn signing_key(material: &KeyMaterial) -> Result<SigningKey> {
    if material.secret.is_empty() {
        return Err(Error::Usage(
            "this ed25519 key is public-only: it has no private key to sign with".into(),
        ));
    }
    SigningKey::from_pkcs8_der(&material.secret).map_err(|_| Error::DamagedKey {
        family: Some(KeyFamily::Ed25519),
        part: KeyPart::Private,
    })
}

/// The verifying key of stored material (its SPKI DER public part).
pub(crate) fn verifying_key(material: &KeyMaterial) -> Result<VerifyingKey> {
    let der = material.public.as_ref().ok_or(Error::MissingPublicKey)?;
    VerifyingKey::from_public_key_der(der).map_err(|_| Error::DamagedKey {
        family: Some(KeyFamily::Ed25519),
        part: KeyPart::Public,
    })
}

/// The 32-byte seed of stored material, for JWK export.
pub fn seed(material: &KeyMaterial) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    Ok(Zeroizing::new(signing_key(material)?.to_bytes()))
}

/// Checks a public key users give us: a small-order point verifies forged signatures.
pub(crate) fn check_public(public: &VerifyingKey) -> Result<()> {
    if public.is_weak() {
        return Err(Error::TooWeak(
            "the Ed25519 public key is a small-order point: it would accept forged signatures"
                .into(),
        ));
    }
    Ok(())
}

/// A raw 32-byte key given as 64 hex digits or as base64 (RFC 8032's encoding of a
/// public key, as `ssh-keygen` and many tools print it).
fn raw_public(input: &[u8]) -> Option<[u8; KEY_LEN]> {
    let text = std::str::from_utf8(input).ok()?.trim();
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut out = [0u8; KEY_LEN];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(out);
    }
    if text.starts_with("-----") {
        return None;
    }
    decode_base64(text).and_then(|b| <[u8; KEY_LEN]>::try_from(b.as_slice()).ok())
}

enum Parsed {
    Private(Box<SigningKey>),
    Public(VerifyingKey),
}

fn parse_der(der: &[u8]) -> Option<Parsed> {
    if let Ok(k) = SigningKey::from_pkcs8_der(der) {
        return Some(Parsed::Private(Box::new(k)));
    }
    VerifyingKey::from_public_key_der(der)
        .ok()
        .map(Parsed::Public)
}

fn parse(input: &[u8]) -> Result<Parsed> {
    let bad = |what: &str| Error::UnreadableKey {
        family: KeyFamily::Ed25519,
        problem: what.to_string(),
    };
    if let Ok(text) = std::str::from_utf8(input) {
        let trimmed = text.trim();
        if trimmed.starts_with("-----BEGIN") {
            let (label, der) = pem_rfc7468_decode(trimmed)
                .ok_or_else(|| bad("the PEM is malformed or truncated"))?;
            let parsed = match label.as_str() {
                "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der)
                    .map(|k| Parsed::Private(Box::new(k)))
                    .ok(),
                "PUBLIC KEY" => VerifyingKey::from_public_key_der(&der)
                    .map(Parsed::Public)
                    .ok(),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(Error::Usage(
                        "encrypted PKCS#8 keys are not supported: decrypt it first (e.g. `openssl pkey -in key.pem -out plain.pem`)".into(),
                    ));
                }
                "OPENSSH PRIVATE KEY" => {
                    return Err(Error::Usage(
                        "OpenSSH private keys are not supported: convert it to PKCS#8 first (`ssh-keygen -p -m PKCS8 -f KEY`)".into(),
                    ));
                }
                other => return Err(bad(&format!("unexpected PEM label {other:?}"))),
            };
            return parsed.ok_or_else(|| bad("the PEM does not hold a valid Ed25519 key"));
        }
        if let Some(der) = decode_base64(trimmed) {
            return parse_der(&der).ok_or_else(|| bad("the base64 does not hold an Ed25519 key"));
        }
    }
    parse_der(input).ok_or_else(|| bad("not a recognised key encoding"))
}

/// Parses an Ed25519 key given as PEM, DER or base64 of DER (PKCS#8 private key, or SPKI
/// public key when `allow_public_only`).
pub fn import(input: &[u8], allow_public_only: bool) -> Result<KeyMaterial> {
    if let Some(raw) = raw_public(input) {
        if !allow_public_only {
            return Err(Error::PublicKeyGiven {
                key_type: KeyType::Ed25519,
                form: PublicKeyForm::RawEd25519,
            });
        }
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| {
            Error::Usage("the 32 bytes are not an Ed25519 public key (not a curve point)".into())
        })?;
        check_public(&key)?;
        return material_from_public(&key);
    }
    match parse(input)? {
        Parsed::Private(k) => material_from_seed(&Zeroizing::new(k.to_bytes())),
        Parsed::Public(k) => {
            if !allow_public_only {
                return Err(Error::PublicKeyGiven {
                    key_type: KeyType::Ed25519,
                    form: PublicKeyForm::Encoded,
                });
            }
            check_public(&k)?;
            material_from_public(&k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// RFC 8032, section 7.1 test 1 seed and public key.
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    const PUBLIC: [u8; 32] = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ];

    #[test]
    fn a_raw_public_key_in_hex_or_base64_imports_with_public() {
        let hex: String = PUBLIC.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(PUBLIC);
        for input in [hex.as_str(), &hex.to_uppercase(), &b64, &format!("{b64}\n")] {
            let m = import(input.as_bytes(), true).unwrap();
            assert!(m.secret.is_empty());
            assert_eq!(verifying_key(&m).unwrap().to_bytes(), PUBLIC);
            assert!(matches!(
                import(input.as_bytes(), false),
                Err(e) if e.exit_code() == crate::error::Exit::Usage
            ));
        }
        // A small-order point is refused, as from any encoding.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let hex: String = identity.iter().map(|b| format!("{b:02x}")).collect();
        assert!(matches!(
            import(hex.as_bytes(), true),
            Err(Error::TooWeak(_))
        ));
    }

    #[test]
    fn pkcs8_is_version_1_as_openssl_writes_it() {
        let m = material_from_seed(&SEED).unwrap();
        // RFC 8410, section 10.3's layout: SEQUENCE { INTEGER 0, { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        let mut expected = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        expected.extend_from_slice(&SEED);
        assert_eq!(m.secret.as_slice(), expected.as_slice());
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&PUBLIC);
        assert_eq!(m.public.as_deref(), Some(spki.as_slice()));
        assert_eq!(*seed(&m).unwrap(), SEED);
        assert_eq!(verifying_key(&m).unwrap().to_bytes(), PUBLIC);
    }

    #[test]
    fn imports_pem_der_base64_and_v2() {
        let m = generate().unwrap();
        let der = m.secret.clone();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_slice());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        for input in [pem.as_bytes(), der.as_slice(), b64.as_bytes()] {
            let back = import(input, false).unwrap();
            assert_eq!(back.secret.as_slice(), m.secret.as_slice());
            assert_eq!(back.public, m.public);
        }
        // PKCS#8 v2 with the matching public key (what ed25519-dalek writes by default).
        let sk = signing_key(&m).unwrap();
        let v2 = sk.to_pkcs8_der().unwrap();
        assert_eq!(v2.as_bytes()[4], 1, "version 2 is INTEGER 1");
        let back = import(v2.as_bytes(), false).unwrap();
        assert_eq!(back.secret.as_slice(), m.secret.as_slice());
        // A v2 whose public key belongs to another seed is refused.
        let other = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let mismatched = KeypairBytes {
            secret_key: sk.to_bytes(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(other.to_bytes())),
        }
        .to_pkcs8_der()
        .unwrap();
        assert!(matches!(
            import(mismatched.as_bytes(), false),
            Err(e) if e.exit_code() == crate::error::Exit::Usage
        ));
    }

    #[test]
    fn public_only_needs_flag_and_rejects_weak_points() {
        let m = material_from_seed(&SEED).unwrap();
        let spki = m.public.clone().unwrap();
        assert!(
            matches!(import(&spki, false), Err(e) if e.exit_code() == crate::error::Exit::Usage)
        );
        let only = import(&spki, true).unwrap();
        assert!(only.secret.is_empty());
        assert_eq!(only.public, m.public);
        assert!(matches!(signing_key(&only), Err(e) if e.exit_code() == crate::error::Exit::Usage));
        // The identity point (y = 1) has small order.
        let mut weak = spki[..12].to_vec();
        let mut y = [0u8; 32];
        y[0] = 1;
        weak.extend_from_slice(&y);
        assert!(matches!(import(&weak, true), Err(Error::TooWeak(_))));
    }

    #[test]
    fn bad_inputs_are_usage_errors() {
        for input in [
            &b"-----BEGIN PRIVATE KEY-----\nAAAA\n"[..],
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            b"bm90IGEga2V5",
            &[0x30, 0x03, 0x02, 0x01, 0x00],
        ] {
            assert!(
                matches!(import(input, true), Err(e) if e.exit_code() == crate::error::Exit::Usage)
            );
        }
        let m = material_from_seed(&SEED).unwrap();
        let mut bad = m.secret.to_vec();
        bad.truncate(20);
        assert!(
            matches!(import(&bad, false), Err(e) if e.exit_code() == crate::error::Exit::Usage)
        );
    }
}
