//! What the fuzz targets and the seed generator share: fixed keys, and the helpers that
//! turn fuzzer bytes into inputs that pass a checksum or a MAC, so the fuzzer reaches the
//! parsers behind them instead of stopping at the first integrity check.
//!
//! Nothing here is secret: the keys are constants, for fuzzing only.

use std::sync::OnceLock;

use hmac::{KeyInit, Mac};
use keyvault::backup::{BACKUP_FORMAT, MAGIC};
use keyvault::crypto::envelope::{AeadAlgorithm, EnvelopeHeader};
use keyvault::crypto::seal::{Keyring, MasterKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The master key of the backup target (its keyring MACs the backups).
pub const MASTER_KEY: [u8; 32] = *b"keyvault fuzz master key 000001!";

/// The version key the envelope target decrypts with.
pub const ENVELOPE_KEY: [u8; 32] = [0x5A; 32];

/// Fernet key versions 1 and 2 (signing key ‖ encryption key).
pub const FERNET_V1: [u8; 32] = [0x11; 32];
/// See [`FERNET_V1`].
pub const FERNET_V2: [u8; 32] = [0x22; 32];

/// The label of the backup MAC. It mirrors the private `MAC_LABEL` of `src/backup.rs`; if
/// that changes, the "repaired" half of the backup target stops reaching the record parser
/// (its sanity assertion then fails at once).
pub const BACKUP_MAC_LABEL: &[u8] = b"keyvault backup v1";

/// The largest backup header the reader accepts (mirrors `src/backup.rs`).
const MAX_BACKUP_HEADER: usize = 64 * 1024;

/// The keyring of [`MASTER_KEY`], derived once.
pub fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| MasterKey::from_bytes(Zeroizing::new(MASTER_KEY)).keyring())
}

/// The backup MAC of `signed` under [`keyring`].
pub fn backup_mac(signed: &[u8]) -> [u8; 32] {
    let mut mac = keyring().mac.stream(BACKUP_MAC_LABEL);
    mac.update(signed);
    mac.finish()
}

/// Makes `data` a backup whose magic, format, header length, header checksum and MAC are
/// right, keeping every other byte the fuzzer chose: the header's postcard encoding and
/// the record stream are then what the reader has to cope with.
pub fn repair_backup(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() < 16 {
        out.resize(16, 0);
    }
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&BACKUP_FORMAT.to_be_bytes());
    let claimed = u32::from_be_bytes([out[12], out[13], out[14], out[15]]) as usize;
    let len = claimed.min(out.len() - 16).min(MAX_BACKUP_HEADER);
    out[12..16].copy_from_slice(&(len as u32).to_be_bytes());
    let end = 16 + len;
    // Room for the checksum, then at least an end marker and the MAC.
    if out.len() < end + 32 + 33 {
        out.resize(end + 32, 0);
        out.push(0xFF);
        out.extend_from_slice(&[0; 32]);
    }
    let checksum: [u8; 32] = Sha256::digest(&out[..end]).into();
    out[end..end + 32].copy_from_slice(&checksum);
    let body_end = out.len() - 32;
    let mac = backup_mac(&out[..body_end]);
    out[body_end..].copy_from_slice(&mac);
    out
}

type HmacSha256 = hmac::Hmac<Sha256>;

/// A Fernet token whose HMAC is right under `key`: `raw` is the version byte, timestamp,
/// IV and ciphertext (anything the fuzzer chose), the token is its url-safe base64 with
/// the HMAC appended.
pub fn fernet_token_from_body(key: &[u8; 32], raw: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key[..16])
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(raw);
    let tag = mac.finalize().into_bytes();
    let mut token = raw.to_vec();
    token.extend_from_slice(&tag);
    base64::engine::general_purpose::URL_SAFE.encode(token)
}

/// A change made to a well-formed envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// None: the envelope must decrypt to the plaintext.
    None,
    /// Flip bit `bit` of the byte at `at`.
    Flip { at: usize, bit: u8 },
    /// Keep only the first `at` bytes.
    Truncate { at: usize },
    /// Append one byte.
    Append { byte: u8 },
    /// Remove the byte at `at`.
    Remove { at: usize },
}

/// An envelope case decoded from fuzzer bytes: which AEAD, which chunk size, what
/// plaintext, and which change to make to the sealed envelope.
#[derive(Debug)]
pub struct EnvelopeCase<'a> {
    /// The header (fixed salt and nonce prefix, key version 1).
    pub header: EnvelopeHeader,
    /// The plaintext.
    pub plaintext: &'a [u8],
    /// The change, resolved against the sealed length by [`EnvelopeCase::apply`].
    kind: u8,
    pos: usize,
    byte: u8,
}

/// The most plaintext an envelope case encrypts.
const MAX_CASE_PLAINTEXT: usize = 4096;

impl<'a> EnvelopeCase<'a> {
    /// Reads a case: `alg, chunk, kind, pos (u16), byte, plaintext…`; `None` under 6 bytes.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 6 {
            return None;
        }
        let algorithm = if data[0] & 1 == 0 {
            AeadAlgorithm::Aes256Gcm
        } else {
            AeadAlgorithm::ChaCha20Poly1305
        };
        let header = EnvelopeHeader {
            algorithm,
            key_version: 1,
            salt: [0x33; 32],
            nonce_prefix: [0x44; 7],
            chunk_size: u32::from(data[1] % 64) + 1,
        };
        let plaintext = &data[6..data.len().min(6 + MAX_CASE_PLAINTEXT)];
        Some(EnvelopeCase {
            header,
            plaintext,
            kind: data[2] % 5,
            pos: usize::from(u16::from_be_bytes([data[3], data[4]])),
            byte: data[5],
        })
    }

    /// The change this case makes to a sealed envelope of `len` bytes (never empty).
    pub fn mutation(&self, len: usize) -> Mutation {
        let at = self.pos % len;
        match self.kind {
            0 => Mutation::None,
            1 => Mutation::Flip {
                at,
                bit: self.byte % 8,
            },
            2 => Mutation::Truncate { at },
            3 => Mutation::Append { byte: self.byte },
            _ => Mutation::Remove { at },
        }
    }

    /// Applies the case's change to `sealed`; returns it.
    pub fn apply(&self, sealed: &mut Vec<u8>) -> Mutation {
        let m = self.mutation(sealed.len());
        match m {
            Mutation::None => {}
            Mutation::Flip { at, bit } => sealed[at] ^= 1 << bit,
            Mutation::Truncate { at } => sealed.truncate(at),
            Mutation::Append { byte } => sealed.push(byte),
            Mutation::Remove { at } => {
                sealed.remove(at);
            }
        }
        m
    }
}
