//! Cryptography: the passphrase KDF, sealing of records (AEAD with associated data),
//! the key hierarchy (master key and its subkeys), generation, import, export (PEM, DER,
//! base64, JWK) and fingerprints of user keys, and their use: Fernet tokens, the streaming
//! AEAD envelope, RSA-OAEP, and RSA and Ed25519 signatures.
//!
//! This module knows no storage engine and no command line: it turns bytes into bytes.

pub mod ed25519_keys;
pub mod envelope;
pub mod fernet_token;
pub mod jwk;
pub mod kdf;
pub mod keys;
pub mod oaep;
pub mod seal;
pub mod sign;

#[cfg(test)]
mod python_vectors;

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> crate::Result<()> {
    getrandom::fill(buf)
        .map_err(|e| crate::Error::Internal(format!("the system random generator failed: {e}")))
}
