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
//! in parallel, which keyvault's throughput goal (twice Python's) needs.
//!
//! Encryption cannot be parallelised the same way: each CBC block needs the one before,
//! so AES-128-CBC runs at the latency of the AES rounds (about 0.75 ms per MiB here), and
//! the HMAC and the base64, done after it, would add about as much again. Both are
//! hidden behind it instead. The HMAC is stitched into the CBC loop: each 64-byte block
//! of the MAC's input is hashed right after the next 64 bytes are encrypted, and the CPU
//! runs the SHA-256 instructions of one beside the chained AES rounds of the other, for
//! almost nothing on top of CBC. The token is made in pieces of 24 KiB of ciphertext (the first with the
//! version, timestamp and IV before it, the last with the HMAC after it), each a whole
//! number of cipher blocks and of base64 groups, so each piece's base64 is a piece of the
//! token's. From 256 KiB of plaintext, a scoped second thread encodes each piece while
//! the calling thread encrypts the next; below that, starting the thread costs more than
//! it saves, and the calling thread encodes each piece itself. Both give the same token.
//! The plaintext is never copied, except for its last, padded block (zeroed after use):
//! CBC reads it where it is and writes only ciphertext, so no buffer holds plaintext.
//!
//! The time-to-live check is made after the token authenticated (so only a genuine token
//! is ever reported as expired), with the rule Python applies: a token is expired when
//! `timestamp + ttl < now`. With a TTL, tokens stamped more than 60 seconds in the future
//! are refused, as by Python.

use std::time::Duration;

use aes::Aes128;
use aes::cipher::{Array, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Bytes of a Fernet key.
pub(crate) const KEY_LEN: usize = 32;

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
/// Plaintexts of this many bytes or more are encrypted with the base64 on a second
/// thread. Below it, starting and joining the thread (about 40 µs on a 2-core VM)
/// costs more than the base64 it takes off this thread (about 0.3 ms per MiB).
const PIPELINE_MIN: usize = 256 * 1024;
/// Bytes of ciphertext in each piece of a token: a multiple of 48, so a piece is whole
/// cipher blocks and whole base64 groups (the first piece is 16 bytes shorter, so that
/// with the 25-byte prefix it is whole groups too). Small enough to be still in cache
/// when it is encoded, large enough that handing it to the other thread is cheap.
const PIECE_LEN: usize = 24 * 1024;
/// How long the encoding thread of a pipelined token polls for the next piece before it
/// sleeps (see [`encode_pieces`]).
const POLL_FOR: Duration = Duration::from_micros(100);
/// Bytes of ciphertext MACed at a time while the next ones are encrypted: one SHA-256
/// block.
const MAC_GROUP: usize = 64;

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

/// Seconds since the Unix epoch, for token timestamps.
fn now() -> Result<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::Internal("the system clock is before 1970".into()))
}

mod decrypt;
mod encrypt;

pub use decrypt::{decrypt, decrypt_with_ttl};
pub use encrypt::encrypt;

#[cfg(test)]
mod tests;
