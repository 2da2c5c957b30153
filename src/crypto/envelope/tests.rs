//! Tests of the envelope: round trips at every boundary, the pinned format, and every
//! alteration detected.

use super::stream::*;
use std::io::{ErrorKind, Read};

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use sha2::Sha256;

use super::*;
use crate::error::{Error, Result};
use crate::keytype::KeyType;

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
