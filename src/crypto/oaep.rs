//! RSA-OAEP with SHA-256 (MGF1-SHA256, empty label), as Python's
//! `padding.OAEP(mgf=MGF1(SHA256()), algorithm=SHA256(), label=None)`.
//!
//! One message per ciphertext, of at most `k - 2·32 - 2` bytes for a `k`-byte modulus
//! (190 bytes for rsa-2048, 318 for rsa-3072, 446 for rsa-4096); a longer input is a usage
//! error pointing at the key types that encrypt data of any size. A ciphertext that does
//! not decrypt is an integrity error.
//!
//! The rsa crate's private-key operation is subject to RUSTSEC-2023-0071 (Marvin: timing
//! variations that an attacker who can make many decryption queries and time them finely
//! could exploit); it blinds, and this offline tool answers no network queries.

use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::KeyMaterial;
use super::sign::{rsa_private, rsa_public};
use crate::error::{Error, Result};
use crate::keytype::{KeyType, KeyUse};

/// The longest message an RSA key of `modulus_bytes` encrypts with OAEP-SHA256.
pub fn max_message_len(modulus_bytes: usize) -> usize {
    modulus_bytes.saturating_sub(2 * 32 + 2)
}

/// Encrypts `message` to the public key of `material`.
pub fn encrypt(key_type: KeyType, material: &KeyMaterial, message: &[u8]) -> Result<Vec<u8>> {
    key_type.check_use(KeyUse::Encrypt)?;
    if !key_type.is_rsa() {
        return Err(Error::Usage(format!(
            "{key_type} keys do not encrypt with RSA-OAEP"
        )));
    }
    let key = rsa_public(material)?;
    let limit = max_message_len(key.size());
    if message.len() > limit {
        return Err(Error::Usage(format!(
            "the input is {} bytes, but an {key_type} key encrypts at most {limit} bytes with RSA-OAEP-SHA256; use a fernet or aead (aes256-gcm, chacha20-poly1305) key to encrypt data of any size",
            message.len()
        )));
    }
    key.oaep_encrypt::<Sha256>(message)
        .map_err(|e| Error::Internal(format!("RSA-OAEP encryption failed: {e}")))
}

/// Decrypts an OAEP ciphertext with the private key of `material`.
pub fn decrypt(
    key_type: KeyType,
    material: &KeyMaterial,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    key_type.check_use(KeyUse::Decrypt)?;
    if !key_type.is_rsa() {
        return Err(Error::Usage(format!(
            "{key_type} keys do not decrypt RSA-OAEP"
        )));
    }
    if ciphertext.is_empty() {
        return Err(Error::Integrity(
            "the input is empty: expected an RSA-OAEP ciphertext".into(),
        ));
    }
    let key = rsa_private(key_type, material)?;
    if ciphertext.len() != key.size() {
        return Err(Error::Integrity(format!(
            "the ciphertext is {} bytes, but an {key_type} RSA-OAEP ciphertext is {} bytes",
            ciphertext.len(),
            key.size()
        )));
    }
    key.oaep_decrypt::<Sha256>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::Integrity(
                "the RSA-OAEP ciphertext does not decrypt under this key (wrong key or altered)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::{generate, import};
    use crate::crypto::python_vectors as py;

    #[test]
    fn python_ciphertext_decrypts() {
        let m = import(KeyType::Rsa2048, py::pem(0).as_bytes(), false).unwrap();
        let plain = decrypt(KeyType::Rsa2048, &m, &py::bytes("OAEP")).unwrap();
        assert_eq!(plain.as_slice(), b"oaep from python");
    }

    #[test]
    fn round_trip_up_to_the_limit_and_a_clear_error_above() {
        let m = generate(KeyType::Rsa2048).unwrap();
        assert_eq!(max_message_len(256), 190);
        for len in [0, 1, 190] {
            let msg = vec![0x5a; len];
            let ct = encrypt(KeyType::Rsa2048, &m, &msg).unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(decrypt(KeyType::Rsa2048, &m, &ct).unwrap().as_slice(), msg);
        }
        match encrypt(KeyType::Rsa2048, &m, &[0u8; 191]) {
            Err(Error::Usage(msg)) => {
                assert!(msg.contains("at most 190 bytes"), "{msg}");
                assert!(msg.contains("use a fernet or aead"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tampered_wrong_key_or_wrong_length_is_integrity() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let other = generate(KeyType::Rsa2048).unwrap();
        let ct = encrypt(KeyType::Rsa2048, &m, b"secret").unwrap();
        for i in [0, 100, 255] {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(matches!(
                decrypt(KeyType::Rsa2048, &m, &bad),
                Err(Error::Integrity(_))
            ));
        }
        assert!(matches!(
            decrypt(KeyType::Rsa2048, &other, &ct),
            Err(Error::Integrity(_))
        ));
        assert!(matches!(
            decrypt(KeyType::Rsa2048, &m, &ct[..255]),
            Err(Error::Integrity(_))
        ));
        assert!(matches!(
            decrypt(KeyType::Rsa2048, &m, &[]),
            Err(Error::Integrity(_))
        ));
    }

    #[test]
    fn public_only_encrypts_but_does_not_decrypt_and_types_are_checked() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let public_only = KeyMaterial {
            secret: Zeroizing::new(Vec::new()),
            public: m.public.clone(),
        };
        let ct = encrypt(KeyType::Rsa2048, &public_only, b"to the owner").unwrap();
        assert!(matches!(
            decrypt(KeyType::Rsa2048, &public_only, &ct),
            Err(Error::Usage(_))
        ));
        assert_eq!(
            decrypt(KeyType::Rsa2048, &m, &ct).unwrap().as_slice(),
            b"to the owner"
        );
        let ed = generate(KeyType::Ed25519).unwrap();
        match encrypt(KeyType::Ed25519, &ed, b"x") {
            Err(Error::Usage(msg)) => {
                assert!(msg.contains("ed25519 keys sign and verify"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        let f = generate(KeyType::Fernet).unwrap();
        assert!(matches!(
            encrypt(KeyType::Fernet, &f, b"x"),
            Err(Error::Usage(_))
        ));
    }
}
