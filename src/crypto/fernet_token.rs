//! Fernet tokens (the Fernet specification; Python's `cryptography.fernet`) under the
//! versions of a `fernet` key.
//!
//! Encryption makes a standard token under one 32-byte key (signing key ‖ encryption key),
//! which Python's `Fernet` and `MultiFernet` read. Decryption tries the versions it is
//! given in order, newest first as `MultiFernet` does, and says which version opened the
//! token. A token is one message: the whole plaintext is held in memory.
//!
//! The time-to-live check is ours, made after the token authenticated (so only a genuine
//! token is ever reported as expired), with the rule Python applies: a token is expired
//! when `timestamp + ttl < now`. Tokens stamped more than 60 seconds in the future are
//! refused, as by Python when it checks a TTL.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes of a Fernet key.
pub const KEY_LEN: usize = 32;

/// The version byte, timestamp, IV, one cipher block and the HMAC: the shortest token.
const MIN_TOKEN_LEN: usize = 1 + 8 + 16 + 16 + 32;

fn fernet(key: &[u8]) -> Result<::fernet::Fernet> {
    if key.len() != KEY_LEN {
        return Err(Error::Integrity(format!(
            "the stored fernet key is {} bytes, not {KEY_LEN}",
            key.len()
        )));
    }
    let encoded = Zeroizing::new(URL_SAFE.encode(key));
    ::fernet::Fernet::new(&encoded)
        .ok_or_else(|| Error::Internal("the fernet crate refused a 32-byte key".into()))
}

/// Encrypts `plaintext` into a Fernet token (url-safe base64 text, no newline).
pub fn encrypt(key: &[u8], plaintext: &[u8]) -> Result<String> {
    Ok(fernet(key)?.encrypt(plaintext))
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

/// The timestamp of a token, checking only its shape (not its authenticity).
fn timestamp(token: &str) -> Result<u64> {
    let not_fernet = || Error::Integrity("the input is not a Fernet token".into());
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| not_fernet())?;
    if raw.len() < MIN_TOKEN_LEN
        || raw[0] != 0x80
        || !(raw.len() - 1 - 8 - 16 - 32).is_multiple_of(16)
    {
        return Err(not_fernet());
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[1..9]);
    Ok(u64::from_be_bytes(ts))
}

fn decrypt_at(
    keys: &[(u32, &[u8])],
    token: &[u8],
    ttl: Option<u64>,
    now: u64,
) -> Result<(u32, Zeroizing<Vec<u8>>)> {
    let token = std::str::from_utf8(token)
        .map_err(|_| Error::Integrity("the input is not a Fernet token (not text)".into()))?
        .trim();
    if token.is_empty() {
        return Err(Error::Usage("the token is empty".into()));
    }
    let stamped = timestamp(token)?;
    if keys.is_empty() {
        return Err(Error::Internal("no key version to decrypt with".into()));
    }
    for (version, key) in keys {
        if let Ok(plain) = fernet(key)?.decrypt(token) {
            let plain = Zeroizing::new(plain);
            if let Some(ttl) = ttl
                && stamped.saturating_add(ttl) < now
            {
                return Err(Error::Integrity(format!(
                    "the token expired: it was made {} seconds ago, more than the TTL of {ttl} seconds",
                    now - stamped
                )));
            }
            return Ok((*version, plain));
        }
    }
    Err(Error::Integrity(
        "the Fernet token did not authenticate under any version of the key (wrong key, altered token, or stamped in the future)".into(),
    ))
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
}
