//! Fernet tokens (the Fernet specification; Python's `cryptography.fernet`) under the
//! versions of a `fernet` key.
//!
//! Encryption makes a standard token under one 32-byte key (signing key ‖ encryption key),
//! which Python's `Fernet` and `MultiFernet` read: `0x80 ‖ timestamp (u64) ‖ IV (16) ‖
//! AES-128-CBC ciphertext (PKCS#7) ‖ HMAC-SHA256`, in url-safe base64 with padding.
//! Decryption decodes the token once, finds the first version (newest first, as
//! `MultiFernet`) whose HMAC verifies (compared in constant time), and only then decrypts,
//! and says which version opened the token. A token is one message: the whole plaintext
//! is held in memory.
//!
//! This is our own implementation on RustCrypto's `aes`, `hmac` and `sha2` (the `fernet`
//! crate, now a test-only dependency, checks it both ways): it decodes and authenticates
//! a token once instead of once per key version, works in place, and decrypts CBC blocks
//! in parallel, which the throughput target (twice Python's) needs.
//!
//! The time-to-live check is made after the token authenticated (so only a genuine token
//! is ever reported as expired), with the rule Python applies: a token is expired when
//! `timestamp + ttl < now`. With a TTL, tokens stamped more than 60 seconds in the future
//! are refused, as by Python.

use aes::Aes128;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes of a Fernet key.
pub const KEY_LEN: usize = 32;

/// The version byte of every token.
const VERSION: u8 = 0x80;
/// Bytes before the ciphertext: version, timestamp, IV.
const PREFIX_LEN: usize = 1 + 8 + 16;
/// Bytes of the HMAC at the end.
const MAC_LEN: usize = 32;
/// The version byte, timestamp, IV, one cipher block and the HMAC: the shortest token.
const MIN_TOKEN_LEN: usize = PREFIX_LEN + 16 + MAC_LEN;
/// How far in the future a token may be stamped when a TTL is checked (Python's rule).
const MAX_CLOCK_SKEW: u64 = 60;

/// The two halves of a Fernet key.
struct Halves<'a> {
    signing: &'a [u8],
    encryption: &'a [u8],
}

fn halves(key: &[u8]) -> Result<Halves<'_>> {
    if key.len() != KEY_LEN {
        return Err(Error::Integrity(format!(
            "the stored fernet key is {} bytes, not {KEY_LEN}",
            key.len()
        )));
    }
    let (signing, encryption) = key.split_at(16);
    Ok(Halves {
        signing,
        encryption,
    })
}

fn mac(signing: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(signing)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().into()
}

fn aes(encryption: &[u8]) -> Aes128 {
    let key: &Array<u8, _> = encryption
        .try_into()
        .unwrap_or_else(|_| unreachable!("the encryption half is 16 bytes"));
    Aes128::new(key)
}

/// `block ^= other`, 16 bytes at once.
fn xor_block(block: &mut [u8], other: &[u8]) {
    let (Ok(a), Ok(b)) = (<[u8; 16]>::try_from(&*block), <[u8; 16]>::try_from(other)) else {
        unreachable!("CBC blocks are 16 bytes")
    };
    block.copy_from_slice(&(u128::from_ne_bytes(a) ^ u128::from_ne_bytes(b)).to_ne_bytes());
}

/// Encrypts `plaintext` into a Fernet token (url-safe base64 text, no newline).
pub fn encrypt(key: &[u8], plaintext: &[u8]) -> Result<String> {
    let mut iv = [0u8; 16];
    super::random_bytes(&mut iv)?;
    encrypt_at(key, plaintext, now()?, iv)
}

fn encrypt_at(key: &[u8], plaintext: &[u8], timestamp: u64, iv: [u8; 16]) -> Result<String> {
    let k = halves(key)?;
    let pad = 16 - plaintext.len() % 16;
    let body_len = plaintext.len() + pad;
    // The token is built in one buffer: the plaintext is copied in and encrypted in
    // place, so the buffer holds plaintext only until CBC overwrites it.
    let mut raw = Zeroizing::new(Vec::with_capacity(PREFIX_LEN + body_len + MAC_LEN));
    raw.push(VERSION);
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(&iv);
    raw.extend_from_slice(plaintext);
    raw.resize(PREFIX_LEN + body_len, pad as u8);
    let cipher = aes(k.encryption);
    let mut prev = iv;
    for block in raw[PREFIX_LEN..].chunks_exact_mut(16) {
        xor_block(block, &prev);
        let block: &mut Array<u8, _> = block
            .try_into()
            .unwrap_or_else(|_| unreachable!("chunks of 16"));
        cipher.encrypt_block(block);
        prev.copy_from_slice(block);
    }
    let tag = mac(k.signing, &raw);
    raw.extend_from_slice(&tag);
    Ok(URL_SAFE.encode(raw.as_slice()))
}

/// Decrypts a token with the first of `keys` (version, key bytes) that opens it: give
/// them newest first. Returns that version and the plaintext. Surrounding whitespace
/// (a trailing newline) is ignored; an empty token is a usage error; a token that is not
/// Fernet, or that no key opens, is an integrity error.
pub fn decrypt(keys: &[(u32, &[u8])], token: &[u8]) -> Result<(u32, Zeroizing<Vec<u8>>)> {
    decrypt_at(keys, token, None, now()?)
}

/// As [`decrypt`], and refuses (integrity error saying it expired) a token made more than
/// `ttl_secs` seconds ago.
pub fn decrypt_with_ttl(
    keys: &[(u32, &[u8])],
    token: &[u8],
    ttl_secs: u64,
) -> Result<(u32, Zeroizing<Vec<u8>>)> {
    decrypt_at(keys, token, Some(ttl_secs), now()?)
}

fn now() -> Result<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::Internal("the system clock is before 1970".into()))
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn decrypt_at(
    keys: &[(u32, &[u8])],
    token: &[u8],
    ttl: Option<u64>,
    now: u64,
) -> Result<(u32, Zeroizing<Vec<u8>>)> {
    let token = trim_ascii(token);
    if token.is_empty() {
        return Err(Error::Usage("the token is empty".into()));
    }
    let not_fernet = || Error::Integrity("the input is not a Fernet token".into());
    let raw = URL_SAFE.decode(token).map_err(|_| not_fernet())?;
    if raw.len() < MIN_TOKEN_LEN
        || raw[0] != VERSION
        || !(raw.len() - PREFIX_LEN - MAC_LEN).is_multiple_of(16)
    {
        return Err(not_fernet());
    }
    if keys.is_empty() {
        return Err(Error::Internal("no key version to decrypt with".into()));
    }
    let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
    let mut opened = None;
    for (version, key) in keys {
        let k = halves(key)?;
        if bool::from(mac(k.signing, signed).ct_eq(tag)) {
            opened = Some((*version, k));
            break;
        }
    }
    let Some((version, k)) = opened else {
        return Err(Error::Integrity(
            "the Fernet token did not authenticate under any version of the key (wrong key, or an altered token)".into(),
        ));
    };
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&signed[1..9]);
    let stamped = u64::from_be_bytes(stamp);
    if let Some(ttl) = ttl {
        if stamped.saturating_add(ttl) < now {
            return Err(Error::Integrity(format!(
                "the token expired: it was made {} seconds ago, more than the TTL of {ttl} seconds",
                now - stamped
            )));
        }
        if now.saturating_add(MAX_CLOCK_SKEW) < stamped {
            return Err(Error::Integrity(
                "the token is stamped in the future (more than 60 seconds ahead of this clock)"
                    .into(),
            ));
        }
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&signed[9..PREFIX_LEN]);
    let ciphertext = &signed[PREFIX_LEN..];
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    {
        // CBC decryption: every block decrypts independently (in parallel, through the
        // cipher's multi-block path), then each is XORed with the previous ciphertext.
        let (blocks, _) = Array::<u8, aes::cipher::consts::U16>::slice_as_chunks_mut(&mut plain);
        aes(k.encryption).decrypt_blocks(blocks);
    }
    let previous = std::iter::once(&iv[..]).chain(ciphertext.chunks_exact(16));
    for (block, prev) in plain.chunks_exact_mut(16).zip(previous) {
        xor_block(block, prev);
    }
    let pad = usize::from(*plain.last().ok_or_else(not_fernet)?);
    if pad == 0
        || pad > 16
        || plain[plain.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return Err(Error::Integrity(
            "the Fernet token's padding is invalid".into(),
        ));
    }
    let len = plain.len() - pad;
    plain.truncate(len);
    Ok((version, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(Error::Integrity(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Against the real clock, that token is decades old.
        match decrypt_with_ttl(&[(1, &key)], TOKEN.as_bytes(), 3600) {
            Err(Error::Integrity(m)) => assert!(m.contains("expired"), "{m}"),
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
            Err(Error::Usage(_))
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
        for len in [0usize, 1, 15, 16, 17, 1000, 65_536] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let ours = encrypt(&key, &msg).unwrap();
            assert_eq!(theirs.decrypt(&ours).unwrap(), msg, "len {len}");
            let token = theirs.encrypt(&msg);
            let (_, plain) = decrypt(&[(1, &key)], token.as_bytes()).unwrap();
            assert_eq!(plain.as_slice(), msg.as_slice(), "len {len}");
        }
    }
}
