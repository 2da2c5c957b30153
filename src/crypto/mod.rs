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
pub(crate) mod material;
pub mod oaep;
pub(crate) mod rsa_keys;
pub mod seal;
pub mod sign;
pub mod strength;

#[cfg(test)]
mod python_vectors;

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> crate::Result<()> {
    getrandom::fill(buf)
        .map_err(|e| crate::Error::Internal(format!("the system random generator failed: {e}")))
}

/// Bytes of the operating system's CSPRNG drawn a block at a time, handed out once each:
/// for many small values that are not secret (the ids and nonces of a batch of keys),
/// one system call per block instead of one per value. Never for key material.
pub struct RandomBlock {
    block: [u8; 4096],
    /// Bytes of `block` handed out (all of it, before the first draw).
    used: usize,
}

impl Default for RandomBlock {
    fn default() -> Self {
        RandomBlock {
            block: [0; 4096],
            used: 4096,
        }
    }
}

impl RandomBlock {
    /// `N` random bytes never handed out before.
    pub fn take<const N: usize>(&mut self) -> crate::Result<[u8; N]> {
        let mut out = [0u8; N];
        if N > self.block.len() {
            random_bytes(&mut out)?;
            return Ok(out);
        }
        if self.block.len() - self.used < N {
            random_bytes(&mut self.block)?;
            self.used = 0;
        }
        out.copy_from_slice(&self.block[self.used..self.used + N]);
        self.used += N;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::RandomBlock;

    #[test]
    fn a_random_block_never_hands_out_the_same_bytes_twice() {
        let mut block = RandomBlock::default();
        let mut seen = std::collections::HashSet::new();
        // Several refills' worth, across block boundaries (24 does not divide 4096).
        for _ in 0..1000 {
            assert!(seen.insert(block.take::<24>().unwrap()));
        }
        let big = block.take::<5000>().unwrap();
        assert_ne!(big[..24], big[24..48]);
    }
}
