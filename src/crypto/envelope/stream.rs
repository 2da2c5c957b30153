//! Sealing and opening the chunks of an envelope as streams, in bounded memory: each
//! chunk is written only once it authenticated.

use std::io::{ErrorKind, Read, Write};

use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use zeroize::Zeroizing;

use super::{
    AeadAlgorithm, CHUNK_SIZE, EnvelopeHeader, HEADER_LEN, NONCE_PREFIX_LEN, TAG_LEN, message_key,
    new_header,
};
use crate::error::{EnvelopeProblem, Error, Result};

/// One envelope's AEAD under its message key.
pub(super) enum Cipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    pub(super) fn new(header: &EnvelopeHeader, key: &[u8; 32]) -> Self {
        Self::with_message_key(header, &message_key(header, key))
    }

    pub(super) fn with_message_key(header: &EnvelopeHeader, k: &[u8; 32]) -> Self {
        match header.algorithm {
            AeadAlgorithm::Aes256Gcm => Cipher::Aes(Box::new(Aes256Gcm::new(k.into()))),
            AeadAlgorithm::ChaCha20Poly1305 => {
                Cipher::ChaCha(Box::new(ChaCha20Poly1305::new(k.into())))
            }
        }
    }

    pub(super) fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let tag = match self {
            Cipher::Aes(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
            Cipher::ChaCha(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
        }
        .map_err(|_| Error::Internal("AEAD encryption failed".into()))?;
        Ok(tag.into())
    }

    pub(super) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
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

pub(super) fn chunk_nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
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

pub(super) fn write(writer: &mut impl Write, bytes: &[u8]) -> Result<()> {
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

pub(super) fn encrypt_with_chunk_size(
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

pub(super) fn seal_chunks(
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
