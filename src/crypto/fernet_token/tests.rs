//! Tests of Fernet tokens: the specification's vectors, both encryption paths, and
//! every way a token can be refused.

use super::decrypt::*;
use super::encrypt::*;
use super::*;
use aes::cipher::BlockCipherEncrypt;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

/// The Fernet specification's vectors (generate.json / verify.json / invalid.json).
const SECRET: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
const TOKEN: &str = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
/// 1985-10-26T01:20:00-07:00.
const STAMP: u64 = 499_162_800;

fn secret() -> Vec<u8> {
    URL_SAFE.decode(SECRET).unwrap()
}

#[test]
fn spec_vector_decrypts_with_ttl_rules() {
    let key = secret();
    let (v, plain) = decrypt(&[(1, &key)], TOKEN.as_bytes()).unwrap();
    assert_eq!((v, plain.as_slice()), (1, &b"hello"[..]));
    // verify.json: now = stamp + 1, ttl 60: valid.
    let (_, plain) = decrypt_at(&[(1, &key)], TOKEN.as_bytes(), Some(60), STAMP + 1).unwrap();
    assert_eq!(plain.as_slice(), b"hello");
    // Python's rule: expired when timestamp + ttl < now.
    assert!(decrypt_at(&[(1, &key)], TOKEN.as_bytes(), Some(60), STAMP + 60).is_ok());
    match decrypt_at(&[(1, &key)], TOKEN.as_bytes(), Some(60), STAMP + 61) {
        Err(Error::Expired(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Against the real clock, that token is decades old.
    match decrypt_with_ttl(&[(1, &key)], TOKEN.as_bytes(), 3600) {
        Err(Error::Expired(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A huge TTL does not overflow.
    assert!(decrypt_with_ttl(&[(1, &key)], TOKEN.as_bytes(), u64::MAX).is_ok());
}

#[test]
fn spec_invalid_vectors_are_integrity_errors() {
    let key = secret();
    for token in [
        // incorrect mac, too short, invalid base64, size not a block multiple, bad padding
        "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykQUFBQUFBQUFBQQ==",
        "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPA==",
        "%%%%%%%%%%%%%AECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==",
        "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPOm73QeoCk9uGib28Xe5vz6oxq5nmxbx_v7mrfyudzUm",
        "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0ODz4LEpdELGQAad7aNEHbf-JkLPIpuiYRLQ3RtXatOYREu2FWke6CnJNYIbkuKNqOhw==",
    ] {
        assert!(
            matches!(
                decrypt_at(&[(1, &key)], token.as_bytes(), Some(60), STAMP + 1),
                Err(Error::Integrity(_))
            ),
            "{token}"
        );
    }
    assert!(matches!(
        decrypt(&[(1, &key)], b"\xff\xfe"),
        Err(Error::Integrity(_))
    ));
    assert!(matches!(
        decrypt(&[(1, &key)], b" \n"),
        Err(Error::Integrity(_))
    ));
}

#[test]
fn round_trip_and_multifernet_order() {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let k3 = [3u8; 32];
    let token = encrypt(&k1, b"secret message").unwrap();
    assert!(token.starts_with("gAAAAA"));
    let mut with_newline = token.clone().into_bytes();
    with_newline.push(b'\n');
    let (v, plain) = decrypt(&[(3, &k3), (2, &k2), (1, &k1)], &with_newline).unwrap();
    assert_eq!((v, plain.as_slice()), (1, &b"secret message"[..]));
    let newer = encrypt(&k2, b"").unwrap();
    let (v, plain) = decrypt(&[(3, &k3), (2, &k2), (1, &k1)], newer.as_bytes()).unwrap();
    assert_eq!((v, plain.len()), (2, 0));
    match decrypt(&[(3, &k3), (2, &k2)], token.as_bytes()) {
        Err(Error::Integrity(m)) => assert!(m.contains("any version"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(decrypt_with_ttl(&[(1, &k1)], token.as_bytes(), 60).is_ok());
}

#[test]
fn every_flipped_character_is_detected() {
    let key = [9u8; 32];
    let token = encrypt(&key, b"attack at dawn").unwrap();
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.to_vec();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        if let Ok((_, p)) = decrypt(&[(1, &key)], &bad) {
            // Only the unused low bits of the last base64 character may change without
            // changing the bytes; then the plaintext is the same.
            assert_eq!(p.as_slice(), b"attack at dawn", "flip at {i}");
        }
    }
}

#[test]
fn python_token_decrypts_with_a_python_key() {
    use crate::crypto::keys::{ExportFormat, export, import};
    use crate::crypto::python_vectors as py;
    use crate::keytype::KeyType;
    let key_text = py::text("FERNETKEY");
    let m = import(KeyType::Fernet, key_text.as_bytes(), false).unwrap();
    let (v, plain) = decrypt(&[(4, &m.secret)], py::text("FERNETTOKEN").as_bytes()).unwrap();
    assert_eq!((v, plain.as_slice()), (4, &b"fernet from python"[..]));
    // The key exports back to the text Python made.
    let out = export(KeyType::Fernet, &m, false, ExportFormat::Base64).unwrap();
    assert_eq!(out.as_slice(), format!("{key_text}\n").as_bytes());
}

#[test]
fn wrong_length_stored_key_is_integrity() {
    assert!(matches!(
        encrypt(&[0u8; 16], b"x"),
        Err(Error::Integrity(_))
    ));
}

#[test]
fn spec_generate_vector_is_reproduced_exactly() {
    let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
    let token = encrypt_at(&secret(), b"hello", STAMP, iv).unwrap();
    assert_eq!(token, TOKEN);
}

#[test]
fn the_fernet_crate_reads_ours_and_we_read_its() {
    let key = secret();
    let theirs = ::fernet::Fernet::new(SECRET).unwrap();
    for len in [0usize, 1, 15, 16, 17, 1000, 65_536, PIPELINE_MIN + 5] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let ours = encrypt(&key, &msg).unwrap();
        assert_eq!(theirs.decrypt(&ours).unwrap(), msg, "len {len}");
        let token = theirs.encrypt(&msg);
        let (_, plain) = decrypt(&[(1, &key)], token.as_bytes()).unwrap();
        assert_eq!(plain.as_slice(), msg.as_slice(), "len {len}");
    }
}

/// The token as it was made before the pipeline, kept as the reference: the padded
/// plaintext copied into one buffer and encrypted in place a block at a time, then the
/// HMAC over the whole buffer, then base64 of it all.
fn reference_encrypt(key: &[u8], plaintext: &[u8], timestamp: u64, iv: [u8; 16]) -> String {
    let k = halves(key).unwrap();
    let pad = 16 - plaintext.len() % 16;
    let mut raw = Vec::new();
    raw.push(VERSION);
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(&iv);
    raw.extend_from_slice(plaintext);
    raw.resize(PREFIX_LEN + plaintext.len() + pad, pad as u8);
    let cipher = aes(k.encryption);
    let mut prev = iv;
    for block in raw[PREFIX_LEN..].chunks_exact_mut(16) {
        xor_block(block, &prev);
        let block: &mut Array<u8, _> = block.try_into().unwrap();
        cipher.encrypt_block(block);
        prev.copy_from_slice(block);
    }
    let tag = mac(k.signing, &raw);
    raw.extend_from_slice(&tag);
    URL_SAFE.encode(&raw)
}

/// Bytes that are not all alike.
fn message(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) >> 3) as u8 ^ (i as u8))
        .collect()
}

/// Checks that the serial and pipelined tokens for `len` bytes equal the reference
/// and decrypt to the message.
fn check_len(key: &[u8], len: usize, piece_len: usize) {
    let iv: [u8; 16] = core::array::from_fn(|i| (i * 17 + 3) as u8);
    let msg = message(len);
    let want = reference_encrypt(key, &msg, STAMP, iv);
    // Not assert_eq: a token of a megabyte would fill the terminal.
    assert!(
        encrypt_serial(key, &msg, STAMP, iv, piece_len).unwrap() == want,
        "serial, len {len}, pieces of {piece_len}"
    );
    let piped = encrypt_pipelined(key, &msg, STAMP, iv, piece_len).unwrap();
    assert!(piped == want, "pipelined, len {len}, pieces of {piece_len}");
    let (v, plain) = decrypt_at(&[(1, key)], piped.as_bytes(), None, STAMP).unwrap();
    assert_eq!((v, plain.as_slice()), (1, msg.as_slice()), "len {len}");
}

#[test]
fn pipelined_and_serial_tokens_equal_the_reference_for_every_length_around_pieces() {
    let key = secret();
    // Pieces of the smallest size (48 bytes; the first holds 32): every length up to
    // several pieces, so every alignment of the last block and of the tag.
    for len in 0..=400 {
        check_len(&key, len, 48);
    }
    // Sizes that are not multiples of 48 are rounded down (to 96 here).
    for len in [0, 15, 80, 81, 95, 96, 97, 500] {
        check_len(&key, len, 100);
    }
    // The pieces used in production, around the first and later piece boundaries.
    let p = PIECE_LEN;
    let mut lens = vec![0, 1, 15, 16, 17, 47, 48, 49];
    for edge in [p - 16, p, 2 * p - 16, 3 * p - 16, 3 * p, 5 * p - 16] {
        for delta in [-17isize, -16, -15, -1, 0, 1, 15, 16, 17] {
            lens.push(edge.checked_add_signed(delta).unwrap());
        }
    }
    lens.extend([p - 1, p + 1, 1 << 20, (1 << 20) + 5, (1 << 20) - 16 * 3 + 7]);
    for len in lens {
        check_len(&key, len, PIECE_LEN);
    }
}

#[test]
fn encrypt_uses_the_pipeline_from_its_threshold_and_the_tokens_are_the_same() {
    let key = secret();
    let iv = [7u8; 16];
    for len in [PIPELINE_MIN - 1, PIPELINE_MIN, PIPELINE_MIN + 1] {
        let msg = message(len);
        assert!(
            encrypt_at(&key, &msg, STAMP, iv).unwrap() == reference_encrypt(&key, &msg, STAMP, iv),
            "len {len}"
        );
    }
}

#[test]
fn a_piece_after_one_that_ended_inside_a_base64_group_is_an_internal_error() {
    let mut token = Base64Token::with_capacity(16);
    token.push(b"abcdef").unwrap();
    token.push(b"abcd").unwrap();
    assert!(matches!(token.push(b"abc"), Err(Error::Internal(_))));
}

#[test]
fn pipelined_token_decrypts_with_the_fernet_crate() {
    let theirs = ::fernet::Fernet::new(SECRET).unwrap();
    let msg = message(3 * PIECE_LEN + 5);
    let token = encrypt_pipelined(&secret(), &msg, now().unwrap(), [9u8; 16], PIECE_LEN).unwrap();
    assert!(theirs.decrypt(&token).unwrap() == msg);
}
