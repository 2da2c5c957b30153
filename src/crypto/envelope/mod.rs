//! The AEAD envelope of `aes256-gcm` and `chacha20-poly1305` keys: streaming, chunked,
//! authenticated encryption of inputs of any size in bounded memory.
//!
//! # Format (version 1)
//!
//! All integers are big-endian. An envelope is a 53-byte header followed by one or more
//! chunks:
//!
//! ```text
//! offset size  field
//!      0    4  magic "KVE1" (4B 56 45 31)
//!      4    1  format version: 0x01
//!      5    1  algorithm: 0x01 AES-256-GCM, 0x02 ChaCha20-Poly1305
//!      6    4  key version (u32): which version of the key made the envelope
//!     10   32  salt: random, fresh for every envelope
//!     42    7  nonce prefix: random, fresh for every envelope
//!     49    4  chunk size C (u32): plaintext bytes per chunk, 65536 (1 ≤ C ≤ 1 MiB accepted)
//!     53       chunk 0, chunk 1, …, chunk n-1
//! ```
//!
//! - Message key: `K = HKDF-SHA256(IKM = the key version's 32 bytes, salt = salt,
//!   info = "keyvault envelope v1 " ‖ algorithm name)`, the name being `aes256-gcm` or
//!   `chacha20-poly1305`; 32 bytes. Each envelope thus has its own key.
//! - Chunk i (counting from 0) is `AEAD-Encrypt(K, nonce_i, AAD = the 53 header bytes,
//!   plaintext_i)`, i.e. ciphertext (as long as plaintext_i) followed by the 16-byte tag.
//! - `nonce_i = nonce prefix (7) ‖ i as u32 (4) ‖ last (1)`, where `last` is 0x01 for the
//!   final chunk and 0x00 for every other: the STREAM construction (Hoang, Reyhanitabar,
//!   Rogaway, Vizár 2015) with the nonce layout of Tink's streaming AEAD.
//! - Every chunk but the last holds exactly C plaintext bytes; the last holds 0 to C
//!   (an empty input is one empty last chunk: a bare 16-byte tag). At most 2^32 chunks.
//!
//! What this detects, each as an integrity error (exit 7): a change to any header or chunk
//! byte (the header is every chunk's AAD, the tag covers the chunk); chunks reordered,
//! duplicated or dropped (the counter is in the nonce); truncation at any point, including
//! at a chunk boundary (the chunk then read last was sealed with `last` = 0) and anything
//! appended after the last chunk (the last chunk is then not read as last); and a wrong key
//! or key version (the first chunk fails).
//!
//! Decryption writes a chunk's plaintext only after that chunk authenticated. Earlier
//! chunks of an envelope that fails later have been written already: the caller writes to
//! a temporary file and renames it only on success.

/// The first bytes of every envelope.
pub(crate) const MAGIC: [u8; 4] = *b"KVE1";
/// The format version this code writes and reads.
pub(crate) const FORMAT_V1: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 53;
/// Bytes of the salt in the header.
pub(crate) const SALT_LEN: usize = 32;
/// Bytes of the nonce prefix in the header.
pub(crate) const NONCE_PREFIX_LEN: usize = 7;
/// Bytes of every chunk's tag.
pub(crate) const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk written.
pub(crate) const CHUNK_SIZE: u32 = 64 * 1024;
/// The largest chunk size accepted when reading (bounds the memory a header can ask for).
pub(crate) const MAX_CHUNK_SIZE: u32 = 1024 * 1024;

mod header;
mod stream;

pub use header::{AeadAlgorithm, EnvelopeHeader, message_key, new_header};
pub use stream::{
    decrypt_stream, decrypt_with_message_key, encrypt_stream, encrypt_with_message_key, read_header,
};

#[cfg(test)]
mod tests;
