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
//!
//! Decoding is ours, not the rsa crate's: the crate skips RFC 8017's check that the
//! first byte of the decoded block is zero (so it would accept ciphertexts that Python's
//! `cryptography`, OpenSSL and the RFC refuse). Here that check is folded, in constant
//! time, into the one validity bit of the whole decoding, so a bad first byte fails
//! exactly as a bad hash or bad padding does: one error, no separate oracle (Manger's
//! attack needs the two failures to be told apart). SECURITY.md explains the choice.

use rsa::BoxedUint;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};
use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::Zeroizing;

use super::keys::KeyMaterial;
use super::sign::{rsa_private, rsa_public};
use crate::error::{Error, Result};
use crate::keytype::{KeyType, KeyUse};

/// The longest message an RSA key of `modulus_bytes` encrypts with OAEP-SHA256.
pub(crate) fn max_message_len(modulus_bytes: usize) -> usize {
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
    let k = key.size();
    if ciphertext.len() != k {
        return Err(Error::Integrity(format!(
            "the ciphertext is {} bytes, but an {key_type} RSA-OAEP ciphertext is {k} bytes",
            ciphertext.len(),
        )));
    }
    let failed = || {
        Error::Integrity(
            "the RSA-OAEP ciphertext does not decrypt under this key (wrong key or altered)".into(),
        )
    };
    let c = BoxedUint::from_be_slice(ciphertext, key.n_bits_precision()).map_err(|_| failed())?;
    // Blinded, and checked by re-encryption (a fault in the CRT computation must not
    // leak a factor).
    let m = Zeroizing::new(
        rsa::hazmat::rsa_decrypt_and_check(&key, Some(&mut getrandom::SysRng), &c)
            .map_err(|_| failed())?,
    );
    let bytes = Zeroizing::new(m.to_be_bytes());
    // The integer is below the modulus, so the bytes above its k are zero.
    let em = bytes
        .get(bytes.len().saturating_sub(k)..)
        .ok_or_else(failed)?;
    if em.len() != k {
        return Err(failed());
    }
    oaep_decode(em).ok_or_else(failed)
}

/// MGF1 with SHA-256 (RFC 8017, B.2.1): XORs the mask of `seed` into `out`.
pub(crate) fn mgf1_xor(seed: &[u8], out: &mut [u8]) {
    for (counter, block) in out.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update((counter as u32).to_be_bytes());
        let mask = h.finalize();
        for (o, m) in block.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

/// EME-OAEP decoding with SHA-256 and an empty label (RFC 8017, 7.1.2 step 3), in
/// constant time up to the one final answer: the first byte is zero, the label hash
/// matches, and the padding is zeros then 0x01. `None` for any failure, alike.
fn oaep_decode(em: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    const HLEN: usize = 32;
    let k = em.len();
    if k < 2 * HLEN + 2 {
        return None;
    }
    let mut seed = Zeroizing::new(em[1..1 + HLEN].to_vec());
    let mut db = Zeroizing::new(em[1 + HLEN..].to_vec());
    mgf1_xor(&db, &mut seed);
    mgf1_xor(&seed, &mut db);
    let label_hash = Sha256::digest(b"");
    let mut good = em[0].ct_eq(&0) & db[..HLEN].ct_eq(label_hash.as_slice());
    let mut looking = subtle::Choice::from(1);
    let mut index = 0u32;
    let mut stray = subtle::Choice::from(0);
    for (i, b) in db[HLEN..].iter().enumerate() {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        index.conditional_assign(&(i as u32), looking & is_one);
        looking &= !is_one;
        stray |= looking & !is_zero;
    }
    good &= !looking & !stray;
    if !bool::from(good) {
        return None;
    }
    let start = HLEN + index as usize + 1;
    Some(Zeroizing::new(db[start..].to_vec()))
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

    /// The rsa crate accepts a block whose first byte is not zero; we refuse it, as
    /// RFC 8017, OpenSSL and Python's `cryptography` do.
    #[test]
    fn a_ciphertext_whose_decoded_block_does_not_start_with_zero_is_refused() {
        let m = generate(KeyType::Rsa2048).unwrap();
        let key = rsa_private(KeyType::Rsa2048, &m).unwrap();
        let ct = encrypt(KeyType::Rsa2048, &m, b"secret").unwrap();
        let c = BoxedUint::from_be_slice(&ct, key.n_bits_precision()).unwrap();
        let em = rsa::hazmat::rsa_decrypt_and_check(&key, Some(&mut getrandom::SysRng), &c)
            .unwrap()
            .to_be_bytes();
        let mut em = em[em.len() - 256..].to_vec();
        assert_eq!(em[0], 0);
        // The modulus's top byte is at least 0x80, so a first byte of 1 stays below it.
        em[0] = 1;
        let forged = rsa::hazmat::rsa_encrypt(
            &key.to_public_key(),
            &BoxedUint::from_be_slice(&em, key.n_bits_precision()).unwrap(),
        )
        .unwrap()
        .to_be_bytes();
        let forged = forged[forged.len() - 256..].to_vec();
        // The rsa crate takes it (the message comes out); we do not.
        assert_eq!(
            key.oaep_decrypt::<Sha256>(&forged).unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(
            decrypt(KeyType::Rsa2048, &m, &forged),
            Err(Error::Integrity(_))
        ));
        // The genuine one still decrypts, and empty and longest messages too.
        assert_eq!(
            decrypt(KeyType::Rsa2048, &m, &ct).unwrap().as_slice(),
            b"secret"
        );
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
            Err(e @ Error::UnsupportedUse { .. }) => {
                let msg = e.to_string();
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
