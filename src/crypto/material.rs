//! What every key encoding shares: the stored material of a key version, its
//! fingerprint, and the base64 and PEM text that imports and exports read and write.
//! It is the bottom of the key modules: `rsa_keys`, `ed25519_keys`, `jwk` and `keys`
//! build on it, and it calls none of them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keytype::KeyType;

/// The material of one key version.
pub struct KeyMaterial {
    /// The secret part (empty for a public-only key).
    pub secret: Zeroizing<Vec<u8>>,
    /// The public part (SPKI DER), for asymmetric keys.
    pub public: Option<Vec<u8>>,
}

pub(crate) fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    for engine in [&URL_SAFE, &STANDARD, &URL_SAFE_NO_PAD, &STANDARD_NO_PAD] {
        if let Ok(bytes) = engine.decode(compact.as_bytes()) {
            return Some(Zeroizing::new(bytes));
        }
    }
    None
}

/// Decodes one PEM block, returning its label and DER bytes.
pub(crate) fn pem_rfc7468_decode(text: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let mut lines = text.lines().map(str::trim);
    let first = lines.next()?;
    let label = first
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (legacy encrypted PEM): not supported.
            return None;
        }
        body.push_str(line);
    }
    if !ended {
        return None;
    }
    let der = STANDARD.decode(body.as_bytes()).ok()?;
    Some((label, Zeroizing::new(der)))
}

/// PEM text (RFC 7468): the label's boundaries around base64 in lines of 64 characters.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(Vec::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

/// A fingerprint that identifies a key without revealing it: `SHA256:` and the
/// unpadded base64 of SHA-256 over the SPKI DER (asymmetric keys) or over a domain
/// label and the key bytes (symmetric keys, a key check value).
pub fn fingerprint(key_type: KeyType, material: &KeyMaterial) -> String {
    fingerprint_of(key_type, &material.secret, material.public.as_deref())
}

/// [`fingerprint`] from borrowed parts (no copy of the secret).
pub fn fingerprint_of(key_type: KeyType, secret: &[u8], public: Option<&[u8]>) -> String {
    let digest = match public {
        Some(spki) if key_type.is_asymmetric() => Sha256::digest(spki),
        _ => {
            let mut h = Sha256::new();
            h.update(b"keyvault symmetric key fingerprint v1\0");
            h.update(key_type.as_str().as_bytes());
            h.update([0u8]);
            h.update(secret);
            h.finalize()
        }
    };
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
}
