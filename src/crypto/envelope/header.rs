//! The envelope's header: what it says (algorithm, key version, salt, nonce prefix,
//! chunk size), its 53 bytes, and the message key derived from it.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{CHUNK_SIZE, FORMAT_V1, HEADER_LEN, MAGIC, MAX_CHUNK_SIZE, NONCE_PREFIX_LEN, SALT_LEN};
use crate::error::{EnvelopeProblem, Error, Result};
use crate::keytype::KeyType;

/// The AEAD of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadAlgorithm {
    /// AES-256-GCM, for `aes256-gcm` keys (algorithm byte 0x01).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), for `chacha20-poly1305` keys (algorithm byte 0x02).
    ChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// The algorithm of an AEAD key type; other types are a usage error with a hint.
    pub(crate) fn for_key_type(key_type: KeyType) -> Result<Self> {
        match key_type {
            KeyType::Aes256Gcm => Ok(AeadAlgorithm::Aes256Gcm),
            KeyType::ChaCha20Poly1305 => Ok(AeadAlgorithm::ChaCha20Poly1305),
            other => Err(Error::Usage(format!(
                "{other} keys do not make AEAD envelopes: use an aes256-gcm or chacha20-poly1305 key"
            ))),
        }
    }

    /// The key type whose keys this algorithm uses.
    pub fn key_type(self) -> KeyType {
        match self {
            AeadAlgorithm::Aes256Gcm => KeyType::Aes256Gcm,
            AeadAlgorithm::ChaCha20Poly1305 => KeyType::ChaCha20Poly1305,
        }
    }

    fn id(self) -> u8 {
        match self {
            AeadAlgorithm::Aes256Gcm => 1,
            AeadAlgorithm::ChaCha20Poly1305 => 2,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(AeadAlgorithm::Aes256Gcm),
            2 => Some(AeadAlgorithm::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// The parsed header of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The AEAD, which must match the type of the key that opens the envelope.
    pub algorithm: AeadAlgorithm,
    /// The version of the key that made the envelope: fetch that version to decrypt.
    pub key_version: u32,
    /// The HKDF salt of this envelope.
    pub salt: [u8; SALT_LEN],
    /// The nonce prefix of this envelope.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
}

impl EnvelopeHeader {
    /// The 53 header bytes (also every chunk's associated data).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = FORMAT_V1;
        b[5] = self.algorithm.id();
        b[6..10].copy_from_slice(&self.key_version.to_be_bytes());
        b[10..42].copy_from_slice(&self.salt);
        b[42..49].copy_from_slice(&self.nonce_prefix);
        b[49..53].copy_from_slice(&self.chunk_size.to_be_bytes());
        b
    }

    /// Parses header bytes. Anything but a v1 header with sane values is an integrity
    /// error.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Self> {
        if b[0..4] != MAGIC {
            return Err(Error::BadEnvelope(EnvelopeProblem::NotAnEnvelope));
        }
        if b[4] != FORMAT_V1 {
            return Err(Error::BadEnvelope(EnvelopeProblem::UnknownFormat(b[4])));
        }
        let algorithm = AeadAlgorithm::from_id(b[5])
            .ok_or(Error::BadEnvelope(EnvelopeProblem::UnknownAlgorithm(b[5])))?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let chunk_size = u32_at(49);
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::BadEnvelope(EnvelopeProblem::ChunkSize(chunk_size)));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&b[10..42]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[42..49]);
        Ok(EnvelopeHeader {
            algorithm,
            key_version: u32_at(6),
            salt,
            nonce_prefix,
            chunk_size,
        })
    }

    /// Checks the envelope was made with a key of `key_type`; if not, an integrity
    /// error: the envelope is another key's, or its algorithm byte was altered.
    pub(crate) fn check_key_type(&self, key_type: KeyType) -> Result<()> {
        let made_with = self.algorithm.key_type();
        if made_with != key_type {
            return Err(Error::BadEnvelope(EnvelopeProblem::WrongKeyType {
                made_with,
                key_type,
            }));
        }
        Ok(())
    }
}

/// The key of one envelope: HKDF-SHA256 of the key version's bytes with the envelope's
/// salt. It opens only that envelope, so the agent can hand it to a client that streams
/// a large file itself, without the key version ever leaving the agent.
pub fn message_key(header: &EnvelopeHeader, version_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let name = header.algorithm.key_type().as_str();
    let mut info = Vec::with_capacity(48);
    info.extend_from_slice(b"keyvault envelope v1 ");
    info.extend_from_slice(name.as_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&header.salt), version_key);
    let mut k = Zeroizing::new([0u8; 32]);
    hk.expand(&info, k.as_mut())
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    k
}

/// A fresh header (random salt and nonce prefix) for an envelope under `version`.
pub fn new_header(algorithm: AeadAlgorithm, version: u32) -> Result<EnvelopeHeader> {
    let mut header = EnvelopeHeader {
        algorithm,
        key_version: version,
        salt: [0u8; SALT_LEN],
        nonce_prefix: [0u8; NONCE_PREFIX_LEN],
        chunk_size: CHUNK_SIZE,
    };
    crate::crypto::random_bytes(&mut header.salt)?;
    crate::crypto::random_bytes(&mut header.nonce_prefix)?;
    Ok(header)
}
