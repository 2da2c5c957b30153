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

use std::io::{ErrorKind, Read, Write};

use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{EnvelopeProblem, Error, Result};
use crate::keytype::KeyType;

/// The first bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"KVE1";
/// The format version this code writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 53;
/// Bytes of the salt in the header.
pub const SALT_LEN: usize = 32;
/// Bytes of the nonce prefix in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Bytes of every chunk's tag.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk written.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// The largest chunk size accepted when reading (bounds the memory a header can ask for).
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;

/// The AEAD of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadAlgorithm {
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439).
    ChaCha20Poly1305,
}

impl AeadAlgorithm {
    /// The algorithm of an AEAD key type; other types are a usage error with a hint.
    pub fn for_key_type(key_type: KeyType) -> Result<Self> {
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
    /// The AEAD.
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
    pub fn check_key_type(&self, key_type: KeyType) -> Result<()> {
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

/// One envelope's AEAD under its message key.
enum Cipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
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
    super::random_bytes(&mut header.salt)?;
    super::random_bytes(&mut header.nonce_prefix)?;
    Ok(header)
}

impl Cipher {
    fn new(header: &EnvelopeHeader, key: &[u8; 32]) -> Self {
        Self::with_message_key(header, &message_key(header, key))
    }

    fn with_message_key(header: &EnvelopeHeader, k: &[u8; 32]) -> Self {
        match header.algorithm {
            AeadAlgorithm::Aes256Gcm => Cipher::Aes(Box::new(Aes256Gcm::new(k.into()))),
            AeadAlgorithm::ChaCha20Poly1305 => {
                Cipher::ChaCha(Box::new(ChaCha20Poly1305::new(k.into())))
            }
        }
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = match self {
            Cipher::Aes(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
            Cipher::ChaCha(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
        }
        .map_err(|_| Error::Internal("AEAD encryption failed".into()))?;
        Ok(tag.into())
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
        match self {
            Cipher::Aes(c) => c
                .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
                .is_ok(),
            Cipher::ChaCha(c) => c
                .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
                .is_ok(),
        }
    }
}

fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading the input", e)),
        }
    }
    Ok(filled)
}

fn write(writer: &mut impl Write, bytes: &[u8]) -> Result<()> {
    writer.write_all(bytes).map_err(Error::Output)
}

/// Encrypts everything `reader` gives into an envelope written to `writer`, under
/// version `version` of an AEAD key. Returns the number of plaintext bytes.
pub fn encrypt_stream(
    algorithm: AeadAlgorithm,
    key: &[u8; 32],
    version: u32,
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    encrypt_with_chunk_size(algorithm, key, version, CHUNK_SIZE, reader, writer)
}

fn encrypt_with_chunk_size(
    algorithm: AeadAlgorithm,
    key: &[u8; 32],
    version: u32,
    chunk_size: u32,
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    let mut header = new_header(algorithm, version)?;
    header.chunk_size = chunk_size;
    let cipher = Cipher::new(&header, key);
    seal_chunks(&header, &cipher, reader, writer)
}

/// Encrypts `reader` into an envelope with `header` (from [`new_header`]) and its
/// message key (from [`message_key`]). Returns the number of plaintext bytes.
pub fn encrypt_with_message_key(
    header: &EnvelopeHeader,
    message_key: &[u8; 32],
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    let cipher = Cipher::with_message_key(header, message_key);
    seal_chunks(header, &cipher, reader, writer)
}

fn seal_chunks(
    header: &EnvelopeHeader,
    cipher: &Cipher,
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    let aad = header.to_bytes();
    write(writer, &aad)?;

    let chunk = header.chunk_size as usize;
    // One chunk and one byte of look-ahead: a full chunk is the last one only if the
    // input ends right after it.
    let mut buf = Zeroizing::new(vec![0u8; chunk + 1]);
    let mut filled = 0;
    let mut counter: u32 = 0;
    let mut total: u64 = 0;
    loop {
        filled += read_full(reader, &mut buf[filled..])?;
        let last = filled <= chunk;
        let len = filled.min(chunk);
        let tag = cipher.seal(
            &chunk_nonce(&header.nonce_prefix, counter, last),
            &aad,
            &mut buf[..len],
        )?;
        write(writer, &buf[..len])?;
        write(writer, &tag)?;
        total += len as u64;
        if last {
            break;
        }
        buf[0] = buf[chunk];
        filled = 1;
        counter = counter.checked_add(1).ok_or_else(|| {
            Error::Usage("the input is too large for one envelope (2^32 chunks)".into())
        })?;
    }
    writer.flush().map_err(Error::Output)?;
    Ok(total)
}

/// Reads and parses the header at the start of an envelope, so the caller can fetch the
/// key version it names. An empty, short or foreign input is an integrity error.
pub fn read_header(reader: &mut impl Read) -> Result<EnvelopeHeader> {
    let mut b = [0u8; HEADER_LEN];
    match read_full(reader, &mut b)? {
        0 => Err(Error::BadEnvelope(EnvelopeProblem::Empty)),
        HEADER_LEN => EnvelopeHeader::from_bytes(&b),
        len => Err(Error::BadEnvelope(EnvelopeProblem::ShortHeader {
            len,
            header_len: HEADER_LEN,
        })),
    }
}

/// Decrypts the chunks that follow `header` (as [`read_header`] returned it) from
/// `reader` into `writer`, with the key version the header names. Each chunk is written
/// only once it authenticated. Returns the number of plaintext bytes.
pub fn decrypt_stream(
    header: &EnvelopeHeader,
    key: &[u8; 32],
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    decrypt_with_message_key(header, &message_key(header, key), reader, writer)
}

/// Decrypts the chunks that follow `header` with the envelope's message key (from
/// [`message_key`]). Each chunk is written only once it authenticated.
pub fn decrypt_with_message_key(
    header: &EnvelopeHeader,
    message_key: &[u8; 32],
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<u64> {
    let aad = header.to_bytes();
    let cipher = Cipher::with_message_key(header, message_key);
    let segment = header.chunk_size as usize + TAG_LEN;
    // One sealed chunk and one byte of look-ahead, as in encryption.
    let mut buf = Zeroizing::new(vec![0u8; segment + 1]);
    let mut filled = 0;
    let mut counter: u32 = 0;
    let mut total: u64 = 0;
    loop {
        filled += read_full(reader, &mut buf[filled..])?;
        let last = filled <= segment;
        let len = filled.min(segment);
        if len < TAG_LEN {
            return Err(Error::BadEnvelope(EnvelopeProblem::Truncated {
                chunk: counter,
            }));
        }
        let (body, rest) = buf[..segment + 1].split_at_mut(len - TAG_LEN);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&rest[..TAG_LEN]);
        let nonce = chunk_nonce(&header.nonce_prefix, counter, last);
        if !cipher.open(&nonce, &aad, body, &tag) {
            return Err(Error::BadEnvelope(EnvelopeProblem::Forged {
                chunk: counter,
            }));
        }
        write(writer, body)?;
        total += body.len() as u64;
        if last {
            break;
        }
        buf[0] = buf[segment];
        filled = 1;
        counter = counter
            .checked_add(1)
            .ok_or(Error::BadEnvelope(EnvelopeProblem::TooManyChunks))?;
    }
    writer.flush().map_err(Error::Output)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALGS: [AeadAlgorithm; 2] = [AeadAlgorithm::Aes256Gcm, AeadAlgorithm::ChaCha20Poly1305];

    fn seal(alg: AeadAlgorithm, key: &[u8; 32], chunk: u32, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encrypt_with_chunk_size(alg, key, 7, chunk, &mut &plain[..], &mut out).unwrap();
        assert_eq!(n, plain.len() as u64);
        out
    }

    fn open(key: &[u8; 32], env: &[u8]) -> Result<Vec<u8>> {
        let mut r = env;
        let h = read_header(&mut r)?;
        let mut out = Vec::new();
        let n = decrypt_stream(&h, key, &mut r, &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn integrity(r: Result<Vec<u8>>) -> bool {
        matches!(r, Err(e) if e.exit_code() == crate::error::Exit::Integrity)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let key = [5u8; 32];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        for alg in ALGS {
            for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 200] {
                let env = seal(alg, &key, 16, &data[..len]);
                let chunks = if len == 0 { 1 } else { len.div_ceil(16) };
                assert_eq!(env.len(), HEADER_LEN + len + chunks * TAG_LEN, "len {len}");
                assert_eq!(open(&key, &env).unwrap(), &data[..len]);
            }
        }
    }

    #[test]
    fn header_layout_and_fields() {
        let env = seal(
            AeadAlgorithm::ChaCha20Poly1305,
            &[1u8; 32],
            CHUNK_SIZE,
            b"hi",
        );
        assert_eq!(&env[..4], b"KVE1");
        assert_eq!(env[4], 1);
        assert_eq!(env[5], 2);
        assert_eq!(&env[6..10], &7u32.to_be_bytes());
        assert_eq!(&env[49..53], &CHUNK_SIZE.to_be_bytes());
        let h = read_header(&mut &env[..]).unwrap();
        assert_eq!(h.key_version, 7);
        assert_eq!(h.algorithm, AeadAlgorithm::ChaCha20Poly1305);
        assert_eq!(h.to_bytes()[..], env[..HEADER_LEN]);
        assert!(h.check_key_type(KeyType::ChaCha20Poly1305).is_ok());
        assert!(matches!(
            h.check_key_type(KeyType::Aes256Gcm),
            Err(e) if e.exit_code() == crate::error::Exit::Integrity
        ));
        // Fresh salt and nonce prefix every time.
        let again = seal(
            AeadAlgorithm::ChaCha20Poly1305,
            &[1u8; 32],
            CHUNK_SIZE,
            b"hi",
        );
        assert_ne!(env[10..49], again[10..49]);
        assert_ne!(env[HEADER_LEN..], again[HEADER_LEN..]);
    }

    #[test]
    fn known_answer_pins_the_format() {
        // Rebuild an envelope by hand from the documented construction and compare.
        let key = [0x42u8; 32];
        let header = EnvelopeHeader {
            algorithm: AeadAlgorithm::Aes256Gcm,
            key_version: 3,
            salt: [0x11; 32],
            nonce_prefix: [0x22; 7],
            chunk_size: 4,
        };
        let aad = header.to_bytes();
        let hk = Hkdf::<Sha256>::new(Some(&[0x11; 32]), &key);
        let mut mk = [0u8; 32];
        hk.expand(b"keyvault envelope v1 aes256-gcm", &mut mk)
            .unwrap();
        let aes = Aes256Gcm::new((&mk).into());
        use chacha20poly1305::aead::{Aead, Payload};
        let mut expected = aad.to_vec();
        for (i, (part, last)) in [(&b"abcd"[..], false), (&b"ef"[..], true)]
            .iter()
            .enumerate()
        {
            let nonce = chunk_nonce(&[0x22; 7], i as u32, *last);
            let ct = aes
                .encrypt(
                    (&nonce).into(),
                    Payload {
                        msg: part,
                        aad: &aad,
                    },
                )
                .unwrap();
            expected.extend_from_slice(&ct);
        }
        assert_eq!(open(&key, &expected).unwrap(), b"abcdef");
        // And our encryptor produces the same bytes for the same salt and prefix.
        let cipher = Cipher::new(&header, &key);
        let mut buf = *b"abcd";
        let tag = cipher
            .seal(&chunk_nonce(&[0x22; 7], 0, false), &aad, &mut buf)
            .unwrap();
        assert_eq!(&expected[HEADER_LEN..HEADER_LEN + 4], &buf);
        assert_eq!(&expected[HEADER_LEN + 4..HEADER_LEN + 20], &tag);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let key = [9u8; 32];
        for alg in ALGS {
            let env = seal(alg, &key, 8, b"twenty bytes of data");
            for i in 0..env.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = env.clone();
                    bad[i] ^= bit;
                    assert!(integrity(open(&key, &bad)), "byte {i} bit {bit:#x}");
                }
            }
        }
    }

    #[test]
    fn truncation_extension_and_reordering_are_detected() {
        let key = [3u8; 32];
        for alg in ALGS {
            // 3 full chunks of 8: the last is full, so cutting at a chunk boundary leaves
            // whole chunks.
            let env = seal(alg, &key, 8, b"AAAAAAAABBBBBBBBCCCCCCCC");
            let seg = 8 + TAG_LEN;
            assert_eq!(env.len(), HEADER_LEN + 3 * seg);
            for cut in 0..env.len() {
                let r = open(&key, &env[..cut]);
                assert!(integrity(r), "cut at {cut}");
            }
            // Appending anything after the last chunk.
            for extra in [
                &[0u8][..],
                &[0u8; TAG_LEN],
                &env[HEADER_LEN..HEADER_LEN + seg],
            ] {
                let mut long = env.clone();
                long.extend_from_slice(extra);
                assert!(integrity(open(&key, &long)));
            }
            // Swapping chunks 0 and 1; dropping chunk 1; duplicating chunk 0.
            let c = |i: usize| &env[HEADER_LEN + i * seg..HEADER_LEN + (i + 1) * seg];
            let h = &env[..HEADER_LEN];
            for order in [[1usize, 0, 2].as_slice(), &[0, 2], &[0, 0, 1, 2], &[0, 1]] {
                let mut re = h.to_vec();
                for &i in order {
                    re.extend_from_slice(c(i));
                }
                assert!(integrity(open(&key, &re)), "{order:?}");
            }
        }
    }

    #[test]
    fn wrong_key_algorithm_or_header_is_detected() {
        let env = seal(AeadAlgorithm::Aes256Gcm, &[1u8; 32], 16, b"secret");
        assert!(integrity(open(&[2u8; 32], &env)));
        let mut other_alg = env.clone();
        other_alg[5] = 2;
        assert!(integrity(open(&[1u8; 32], &other_alg)));
        let mut other_version = env.clone();
        other_version[9] ^= 1;
        assert!(integrity(open(&[1u8; 32], &other_version)));
        for (i, v) in [(0usize, b'X'), (4, 2), (5, 9)] {
            let mut bad = env.clone();
            bad[i] = v;
            assert!(integrity(open(&[1u8; 32], &bad)));
        }
        let mut huge_chunk = env.clone();
        huge_chunk[49..53].copy_from_slice(&(MAX_CHUNK_SIZE + 1).to_be_bytes());
        assert!(integrity(open(&[1u8; 32], &huge_chunk)));
        huge_chunk[49..53].copy_from_slice(&0u32.to_be_bytes());
        assert!(integrity(open(&[1u8; 32], &huge_chunk)));
        // Not an envelope at all, e.g. a Fernet token.
        assert!(integrity(open(
            &[1u8; 32],
            b"gAAAAABk-some-fernet-token-that-is-long-enough-for-a-header-AAAAAAAA"
        )));
    }

    #[test]
    fn no_plaintext_of_a_failed_chunk_is_written() {
        let key = [4u8; 32];
        let env = seal(AeadAlgorithm::ChaCha20Poly1305, &key, 4, b"goodBAD!");
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1; // the second chunk's tag
        let mut r = &bad[..];
        let h = read_header(&mut r).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            decrypt_stream(&h, &key, &mut r, &mut out),
            Err(e) if e.exit_code() == crate::error::Exit::Integrity
        ));
        assert_eq!(out, b"good", "only the authenticated first chunk");
    }

    /// A reader that returns at most 3 bytes per call and sometimes `Interrupted`.
    struct Dribble<'a>(&'a [u8], u32);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 += 1;
            if self.1.is_multiple_of(5) {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_and_default_chunk_size() {
        let key = [8u8; 32];
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE as usize + 5))
            .map(|i| i as u8)
            .collect();
        for alg in ALGS {
            let mut env = Vec::new();
            encrypt_stream(alg, &key, 1, &mut Dribble(&data, 0), &mut env).unwrap();
            assert_eq!(env.len(), HEADER_LEN + data.len() + 3 * TAG_LEN);
            let mut r = Dribble(&env, 0);
            let h = read_header(&mut r).unwrap();
            let mut out = Vec::new();
            decrypt_stream(&h, &key, &mut r, &mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn key_types() {
        assert_eq!(
            AeadAlgorithm::for_key_type(KeyType::Aes256Gcm).unwrap(),
            AeadAlgorithm::Aes256Gcm
        );
        assert_eq!(
            AeadAlgorithm::for_key_type(KeyType::ChaCha20Poly1305)
                .unwrap()
                .key_type(),
            KeyType::ChaCha20Poly1305
        );
        assert!(matches!(
            AeadAlgorithm::for_key_type(KeyType::Fernet),
            Err(Error::Usage(_))
        ));
    }
}
