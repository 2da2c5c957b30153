//! OpenSSH key formats: the public key line (`ssh-ed25519 AAAA… comment`), the public
//! key blob the agent protocol carries, `SHA256:` fingerprints as `ssh-keygen -lf`
//! prints them, and the `openssh-key-v1` private key file (`-----BEGIN OPENSSH PRIVATE
//! KEY-----`), unencrypted or encrypted with bcrypt-pbkdf and a cipher as
//! `ssh-keygen -N` writes it.
//!
//! The encodings come from RustCrypto's `ssh-key`; the keys themselves stay in the
//! vault's own form (PKCS#8 and SPKI DER) and are converted here, for Ed25519 and RSA
//! keys only (the key types `ssh` can use from keyvault).

use rsa::pkcs1::der::Decode as _;
use rsa::pkcs1::{EncodeRsaPrivateKey as _, RsaPrivateKeyRef as Pkcs1PrivateKey};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey, KeypairData, RsaKeypair, RsaPrivateKey};
use ssh_key::public::{Ed25519PublicKey, KeyData, RsaPublicKey};
use ssh_key::{HashAlg, LineEnding, Mpint, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::crypto::ed25519_keys;
use crate::crypto::keys::{self, KeyMaterial};
use crate::crypto::rsa_keys::{self, Parsed};
use crate::error::{Error, KeyFamily, KeyPart, OpensshProblem, PublicKeyForm, Result};
use crate::keytype::KeyType;

/// The first line of an OpenSSH private key file.
pub const PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// The most bcrypt-pbkdf rounds a key file may ask for: the file says how many, and
/// each costs time (ssh-keygen's default is 16; `-a 100` takes about a second).
pub const MAX_BCRYPT_ROUNDS: u32 = 10_000;

/// Whether `input` is an OpenSSH private key file.
pub fn is_private_file(input: &[u8]) -> bool {
    trimmed(input).starts_with(PRIVATE_BEGIN.as_bytes())
}

/// Whether `input` looks like an OpenSSH public key line (`ssh-ed25519 AAAA…`,
/// `ssh-rsa AAAA…`).
pub fn is_public_line(input: &[u8]) -> bool {
    let t = trimmed(input);
    t.starts_with(b"ssh-ed25519 ") || t.starts_with(b"ssh-rsa ")
}

fn trimmed(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(input.len());
    &input[start..]
}

/// Whether the key type can be used with `ssh`.
pub fn supports(key_type: KeyType) -> bool {
    key_type == KeyType::Ed25519 || key_type.is_rsa()
}

fn unsupported(key_type: KeyType) -> Error {
    Error::Openssh(OpensshProblem::NoOpensshForm(key_type))
}

fn mpint(bytes: &[u8]) -> Mpint {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    Mpint::from_positive_bytes(&bytes[start..])
}

/// The OpenSSH public key of stored material (its SPKI), with `comment`.
pub fn public_key(key_type: KeyType, material: &KeyMaterial, comment: &str) -> Result<PublicKey> {
    let data = if key_type == KeyType::Ed25519 {
        let key = ed25519_keys::verifying_key(material)?;
        KeyData::Ed25519(Ed25519PublicKey(key.to_bytes()))
    } else if key_type.is_rsa() {
        let der = material.public.as_deref().ok_or(Error::MissingPublicKey)?;
        let (key, pss) = keys::rsa_public_spki(der)?;
        if pss.is_some() {
            return Err(Error::Openssh(OpensshProblem::PssKey));
        }
        let e = mpint(&key.e_bytes());
        let n = mpint(&key.n_bytes());
        KeyData::Rsa(RsaPublicKey::new(e, n).map_err(encoding_failed)?)
    } else {
        return Err(unsupported(key_type));
    };
    Ok(PublicKey::new(data, comment))
}

fn encoding_failed(e: ssh_key::Error) -> Error {
    Error::Internal(format!("OpenSSH encoding failed: {e}"))
}

/// The public key blob (SSH wire encoding) the agent protocol names a key by.
pub fn key_blob(key_type: KeyType, material: &KeyMaterial) -> Result<Vec<u8>> {
    public_key(key_type, material, "")?
        .to_bytes()
        .map_err(encoding_failed)
}

/// The fingerprint `ssh-keygen -lf` prints: `SHA256:` and unpadded base64.
pub fn fingerprint(key_type: KeyType, material: &KeyMaterial) -> Result<String> {
    Ok(public_key(key_type, material, "")?
        .fingerprint(HashAlg::Sha256)
        .to_string())
}

/// The public key line of `authorized_keys` and `.pub` files, ending in a newline.
pub fn public_line(key_type: KeyType, material: &KeyMaterial, comment: &str) -> Result<String> {
    let mut line = public_key(key_type, material, comment)?
        .to_openssh()
        .map_err(encoding_failed)?;
    line.push('\n');
    Ok(line)
}

/// Material encoded for export in OpenSSH form: the public line, or an unencrypted
/// OpenSSH private key file (it leaves the vault like any exported secret).
pub fn export(
    key_type: KeyType,
    material: &KeyMaterial,
    public: bool,
    comment: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    if !supports(key_type) {
        return Err(unsupported(key_type));
    }
    if public {
        return Ok(Zeroizing::new(
            public_line(key_type, material, comment)?.into_bytes(),
        ));
    }
    if material.secret.is_empty() {
        return Err(Error::NoPrivatePart);
    }
    let data = if key_type == KeyType::Ed25519 {
        let seed = ed25519_keys::seed(material)?;
        let public = ed25519_keys::verifying_key(material)?;
        KeypairData::Ed25519(Ed25519Keypair {
            public: Ed25519PublicKey(public.to_bytes()),
            private: Ed25519PrivateKey::from_bytes(&seed),
        })
    } else {
        rsa_keypair(material)?
    };
    let key = PrivateKey::new(data, comment).map_err(encoding_failed)?;
    let text = key.to_openssh(LineEnding::LF).map_err(encoding_failed)?;
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

fn rsa_keypair(material: &KeyMaterial) -> Result<KeypairData> {
    let bad = || Error::DamagedKey {
        family: Some(KeyFamily::Rsa),
        part: KeyPart::Private,
    };
    let key = rsa::PrivateKey::from_pkcs8_der(&material.secret).map_err(|_| bad())?;
    let der = key.to_pkcs1_der().map_err(|_| bad())?;
    let parts = Pkcs1PrivateKey::from_der(der.as_bytes()).map_err(|_| bad())?;
    let public = RsaPublicKey::new(
        mpint(parts.public_exponent.as_bytes()),
        mpint(parts.modulus.as_bytes()),
    )
    .map_err(encoding_failed)?;
    // OpenSSH's iqmp is q⁻¹ mod p: PKCS#1's coefficient.
    let private = RsaPrivateKey::new(
        mpint(parts.private_exponent.as_bytes()),
        mpint(parts.coefficient.as_bytes()),
        mpint(parts.prime1.as_bytes()),
        mpint(parts.prime2.as_bytes()),
    )
    .map_err(encoding_failed)?;
    Ok(KeypairData::Rsa(
        RsaKeypair::new(public, private).map_err(encoding_failed)?,
    ))
}

fn parse_private(input: &[u8]) -> Result<PrivateKey> {
    PrivateKey::from_openssh(trimmed(input))
        .map_err(|e| Error::Openssh(OpensshProblem::UnreadablePrivate(e.to_string())))
}

/// Whether an OpenSSH private key file is protected by a passphrase.
pub fn is_encrypted(input: &[u8]) -> Result<bool> {
    Ok(parse_private(input)?.is_encrypted())
}

/// Decrypts a passphrase-protected OpenSSH private key file, giving the same key as an
/// unencrypted file (to be imported with [`import`]).
/// `file` names the file in a wrong passphrase's error.
pub fn decrypt(input: &[u8], passphrase: &[u8], file: &str) -> Result<Zeroizing<Vec<u8>>> {
    let key = parse_private(input)?;
    if !key.is_encrypted() {
        return Ok(Zeroizing::new(input.to_vec()));
    }
    if let ssh_key::Kdf::Bcrypt { rounds, .. } = key.kdf()
        && *rounds > MAX_BCRYPT_ROUNDS
    {
        return Err(Error::Openssh(OpensshProblem::TooManyRounds {
            rounds: *rounds,
            max: MAX_BCRYPT_ROUNDS,
        }));
    }
    let plain = key.decrypt(passphrase).map_err(|e| match e {
        ssh_key::Error::Crypto => Error::WrongKeyPassphrase(file.to_string()),
        other => Error::Openssh(OpensshProblem::CannotDecrypt(other.to_string())),
    })?;
    let text = plain.to_openssh(LineEnding::LF).map_err(encoding_failed)?;
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

/// Reads an OpenSSH private key file (unencrypted: see [`decrypt`]) or, when
/// `allow_public_only`, an OpenSSH public key line, as material of `key_type`.
pub fn import(key_type: KeyType, input: &[u8], allow_public_only: bool) -> Result<KeyMaterial> {
    if !supports(key_type) {
        return Err(unsupported(key_type));
    }
    if is_public_line(input) {
        return import_public(key_type, input, allow_public_only);
    }
    let key = parse_private(input)?;
    if key.is_encrypted() {
        return Err(Error::Openssh(OpensshProblem::Encrypted));
    }
    match (key_type, key.key_data()) {
        (KeyType::Ed25519, KeypairData::Ed25519(pair)) => {
            let seed = Zeroizing::new(pair.private.to_bytes());
            let material = ed25519_keys::material_from_seed(&seed)?;
            let derived = ed25519_keys::verifying_key(&material)?;
            if derived.to_bytes() != pair.public.0 {
                return Err(Error::Openssh(OpensshProblem::MismatchedHalves));
            }
            Ok(material)
        }
        (kt, KeypairData::Rsa(pair)) if kt.is_rsa() => {
            let uint = |m: &Mpint| {
                m.as_positive_bytes()
                    .map(rsa::BoxedUint::from_be_slice_vartime)
                    .ok_or(Error::Openssh(OpensshProblem::NegativeNumber))
            };
            let key = rsa::PrivateKey::from_components(
                uint(pair.public().n())?,
                uint(pair.public().e())?,
                uint(pair.private().d())?,
                vec![uint(pair.private().p())?, uint(pair.private().q())?],
            )
            .map_err(|e| Error::Openssh(OpensshProblem::InvalidRsa(e.to_string())))?;
            rsa_checked(kt, Parsed::Private(Box::new(key)), allow_public_only)
        }
        (kt, _) => Err(Error::Openssh(OpensshProblem::PrivateKeyType {
            found: key.algorithm().to_string(),
            wanted: kt,
        })),
    }
}

fn rsa_checked(key_type: KeyType, parsed: Parsed, allow_public_only: bool) -> Result<KeyMaterial> {
    let bits = key_type.rsa_bits().ok_or_else(|| unsupported(key_type))?;
    rsa_keys::import_rsa_parsed(key_type, bits, parsed, allow_public_only)
}

fn import_public(key_type: KeyType, input: &[u8], allow_public_only: bool) -> Result<KeyMaterial> {
    if !allow_public_only {
        return Err(Error::PublicKeyGiven {
            key_type,
            form: PublicKeyForm::OpensshLine,
        });
    }
    let text = std::str::from_utf8(trimmed(input))
        .map_err(|_| Error::Openssh(OpensshProblem::PublicNotText))?;
    let key = PublicKey::from_openssh(text.trim_end())
        .map_err(|e| Error::Openssh(OpensshProblem::UnreadablePublic(e.to_string())))?;
    match (key_type, key.key_data()) {
        (KeyType::Ed25519, KeyData::Ed25519(pk)) => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.0)
                .map_err(|_| Error::Openssh(OpensshProblem::NotAPoint))?;
            ed25519_keys::check_public(&vk)?;
            ed25519_keys::material_from_public(&vk)
        }
        (kt, KeyData::Rsa(pk)) if kt.is_rsa() => {
            let uint = |m: &Mpint| {
                m.as_positive_bytes()
                    .map(rsa::BoxedUint::from_be_slice_vartime)
                    .ok_or(Error::Openssh(OpensshProblem::NegativeNumber))
            };
            let key = rsa::PublicKey::new(uint(pk.n())?, uint(pk.e())?)
                .map_err(|e| Error::Openssh(OpensshProblem::InvalidRsa(e.to_string())))?;
            rsa_checked(kt, Parsed::Public(key), true)
        }
        (kt, _) => Err(Error::Openssh(OpensshProblem::PublicKeyType {
            found: key.algorithm().to_string(),
            wanted: kt,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_private_file_round_trips() {
        let m = keys::generate(KeyType::Ed25519).unwrap();
        let file = export(KeyType::Ed25519, &m, false, "u/k").unwrap();
        assert!(is_private_file(&file));
        let back = import(KeyType::Ed25519, &file, false).unwrap();
        assert_eq!(back.public, m.public);
        let line = export(KeyType::Ed25519, &m, true, "u/k").unwrap();
        assert!(line.starts_with(b"ssh-ed25519 AAAA"));
        assert!(line.ends_with(b" u/k\n"));
        let public = import(KeyType::Ed25519, &line, true).unwrap();
        assert_eq!(public.public, m.public);
        assert!(import(KeyType::Ed25519, &line, false).is_err());
        assert!(import(KeyType::Rsa2048, &file, false).is_err());
    }

    #[test]
    fn rsa_private_file_round_trips() {
        let m = keys::generate(KeyType::Rsa2048).unwrap();
        let file = export(KeyType::Rsa2048, &m, false, "u/r").unwrap();
        let back = import(KeyType::Rsa2048, &file, false).unwrap();
        assert_eq!(back.public, m.public);
        assert_eq!(
            fingerprint(KeyType::Rsa2048, &back).unwrap(),
            fingerprint(KeyType::Rsa2048, &m).unwrap()
        );
        assert!(import(KeyType::Rsa3072, &file, false).is_err());
    }

    #[test]
    fn symmetric_keys_have_no_openssh_form() {
        let m = keys::generate(KeyType::Fernet).unwrap();
        assert!(matches!(
            export(KeyType::Fernet, &m, false, "x"),
            Err(Error::Openssh(OpensshProblem::NoOpensshForm(
                KeyType::Fernet
            )))
        ));
    }

    #[test]
    fn garbage_is_a_usage_error() {
        let junk = format!("{PRIVATE_BEGIN}\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
        assert!(matches!(
            import(KeyType::Ed25519, junk.as_bytes(), false),
            Err(Error::Openssh(OpensshProblem::UnreadablePrivate(_)))
        ));
    }
}
