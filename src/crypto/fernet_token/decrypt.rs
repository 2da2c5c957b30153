//! Opening a token: decode once, find the version whose HMAC verifies (in constant
//! time), check its age, then decrypt the CBC blocks in place.

use aes::cipher::{Array, BlockCipherDecrypt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

use super::{
    MAC_LEN, MAX_CLOCK_SKEW, MIN_TOKEN_LEN, PREFIX_LEN, VERSION, aes, halves, mac, now, xor_block,
};

/// Decrypts a token with the first of `keys` (version, key bytes) that opens it: give
/// them newest first. Returns that version and the plaintext. Surrounding whitespace
/// (a trailing newline) is ignored; an empty token, one that is not Fernet, or one that
/// no key opens is an integrity error.
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

pub(super) fn trim_ascii(bytes: &[u8]) -> &[u8] {
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

pub(super) fn decrypt_at(
    keys: &[(u32, &[u8])],
    token: &[u8],
    ttl: Option<u64>,
    now: u64,
) -> Result<(u32, Zeroizing<Vec<u8>>)> {
    let token = trim_ascii(token);
    if token.is_empty() {
        return Err(Error::Integrity(
            "the input is empty: expected a Fernet token".into(),
        ));
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
            return Err(Error::Expired(format!(
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
