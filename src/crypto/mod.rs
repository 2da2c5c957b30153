//! Cryptography: the passphrase KDF, sealing of records (AEAD with associated data),
//! the key hierarchy (master key and its subkeys), and generation, import, export and
//! fingerprints of user keys.
//!
//! This module knows no storage engine and no command line: it turns bytes into bytes.

pub mod kdf;
pub mod keys;
pub mod seal;

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> crate::Result<()> {
    getrandom::fill(buf)
        .map_err(|e| crate::Error::Internal(format!("the system random generator failed: {e}")))
}
