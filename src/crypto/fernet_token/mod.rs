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

use std::sync::mpsc;
use std::time::{Duration, Instant};

use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherDecrypt, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser, KeyInit,
};
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

/// Encrypts `plaintext` into a Fernet token (url-safe base64 text, no newline).
pub fn encrypt(key: &[u8], plaintext: &[u8]) -> Result<String> {
    let mut iv = [0u8; 16];
    super::random_bytes(&mut iv)?;
    encrypt_at(key, plaintext, now()?, iv)
}

fn encrypt_at(key: &[u8], plaintext: &[u8], timestamp: u64, iv: [u8; 16]) -> Result<String> {
    if plaintext.len() >= PIPELINE_MIN {
        encrypt_pipelined(key, plaintext, timestamp, iv, PIECE_LEN)
    } else {
        encrypt_serial(key, plaintext, timestamp, iv, PIECE_LEN)
    }
}

/// Bytes of the token before base64 for a plaintext of `len` bytes, and of its text.
fn token_lens(len: usize) -> Result<(usize, usize)> {
    let too_large = || Error::Usage("the plaintext is too large for a Fernet token".into());
    let raw = (len / 16 + 1)
        .checked_mul(16)
        .and_then(|body| body.checked_add(PREFIX_LEN + MAC_LEN))
        .ok_or_else(too_large)?;
    let text = base64::encoded_len(raw, true).ok_or_else(too_large)?;
    Ok((raw, text))
}

/// `piece_len` rounded down to a multiple of 48 (whole cipher blocks and whole base64
/// groups), and at least 48.
fn whole_pieces(piece_len: usize) -> usize {
    (piece_len / 48).max(1) * 48
}

/// The token's text, made from its bytes piece by piece.
struct Base64Token {
    text: String,
    /// Every piece so far was whole base64 groups (a multiple of 3 bytes): only the
    /// last may not be, or padding would land in the middle of the token.
    whole_groups: bool,
}

impl Base64Token {
    fn with_capacity(text_len: usize) -> Self {
        Self {
            text: String::with_capacity(text_len),
            whole_groups: true,
        }
    }

    fn push(&mut self, piece: &[u8]) -> Result<()> {
        if !self.whole_groups {
            return Err(Error::Internal(
                "a piece of the Fernet token ended inside a base64 group".into(),
            ));
        }
        self.whole_groups = piece.len().is_multiple_of(3);
        URL_SAFE.encode_string(piece, &mut self.text);
        Ok(())
    }

    /// The text, once the sealer has made the whole token and it is as long as it must be.
    fn finish(self, sealer: &Sealer<'_>, text_len: usize) -> Result<String> {
        if !sealer.finished() || self.text.len() != text_len {
            return Err(Error::Internal(
                "the Fernet token was not made whole".into(),
            ));
        }
        Ok(self.text)
    }
}

/// The token made on the calling thread, in pieces of `piece_len` bytes of ciphertext
/// (see [`whole_pieces`]) through one buffer, each piece encoded as soon as it is made.
fn encrypt_serial(
    key: &[u8],
    plaintext: &[u8],
    timestamp: u64,
    iv: [u8; 16],
    piece_len: usize,
) -> Result<String> {
    let piece_len = whole_pieces(piece_len);
    let (raw_len, text_len) = token_lens(plaintext.len())?;
    let mut sealer = Sealer::new(key, plaintext, timestamp, iv)?;
    let mut buf = Vec::with_capacity(raw_len.min(PREFIX_LEN + piece_len + MAC_LEN));
    // The prefix and the first piece together are whole base64 groups.
    sealer.next_piece(&mut buf, piece_len - 16);
    if sealer.finished() {
        // A short plaintext: the whole token is this one piece.
        return Ok(URL_SAFE.encode(&buf));
    }
    let mut token = Base64Token::with_capacity(text_len);
    token.push(&buf)?;
    while sealer.next_piece(&mut buf, piece_len) {
        token.push(&buf)?;
    }
    token.finish(&sealer, text_len)
}

/// The token made in the same pieces as by [`encrypt_serial`], with the base64 on a
/// second thread: this thread encrypts and MACs each piece and hands it to a scoped
/// thread, which appends its base64 to the token and hands the buffer back for a later
/// piece. If that thread cannot be started, the token is made serially.
fn encrypt_pipelined(
    key: &[u8],
    plaintext: &[u8],
    timestamp: u64,
    iv: [u8; 16],
    piece_len: usize,
) -> Result<String> {
    let piece_len = whole_pieces(piece_len);
    let (_, text_len) = token_lens(plaintext.len())?;
    let mut sealer = Sealer::new(key, plaintext, timestamp, iv)?;
    std::thread::scope(|scope| {
        let (pieces, received) = mpsc::channel::<Vec<u8>>();
        let (give_back, returned) = mpsc::channel::<Vec<u8>>();
        let encoder = std::thread::Builder::new()
            .name("fernet-base64".into())
            .spawn_scoped(scope, move || {
                encode_pieces(&received, &give_back, text_len)
            });
        let Ok(encoder) = encoder else {
            return encrypt_serial(key, plaintext, timestamp, iv, piece_len);
        };
        let mut max_ciphertext = piece_len - 16;
        loop {
            let mut buf = returned
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(PREFIX_LEN + piece_len + MAC_LEN));
            if !sealer.next_piece(&mut buf, max_ciphertext) || pieces.send(buf).is_err() {
                // Done, or the encoder stopped (its result says why).
                break;
            }
            max_ciphertext = piece_len;
        }
        drop(pieces);
        encoder
            .join()
            .map_err(|_| Error::Internal("the Fernet base64 thread panicked".into()))??
            .finish(&sealer, text_len)
    })
}

/// The encoding thread of [`encrypt_pipelined`]: appends each piece's base64 to the
/// token, in order, and hands the piece's buffer back. Encoding is faster than
/// encrypting, so it waits for most pieces: it polls for [`POLL_FOR`] (yielding the CPU
/// in between) before it sleeps, as waking a sleeping thread takes about as long as
/// encoding a piece.
fn encode_pieces(
    pieces: &mpsc::Receiver<Vec<u8>>,
    give_back: &mpsc::Sender<Vec<u8>>,
    text_len: usize,
) -> Result<Base64Token> {
    let mut token = Base64Token::with_capacity(text_len);
    let mut waiting_since = None;
    loop {
        let piece = match pieces.try_recv() {
            Ok(piece) => piece,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() < POLL_FOR {
                    std::thread::yield_now();
                    continue;
                }
                match pieces.recv() {
                    Ok(piece) => piece,
                    Err(_) => break,
                }
            }
        };
        waiting_since = None;
        token.push(&piece)?;
        // The encrypting thread may be done and gone; then the buffer is just dropped.
        let _ = give_back.send(piece);
    }
    Ok(token)
}

/// Makes a token's bytes in order, one piece at a time: the version, timestamp and IV
/// with the first piece, then the ciphertext, and the HMAC with the last piece.
struct Sealer<'a> {
    cipher: Aes128,
    /// `None` once finalized into the token's last piece.
    mac: Option<Hmac<Sha256>>,
    /// The previous ciphertext block (the IV at first).
    chain: [u8; 16],
    /// Version, timestamp and IV, until the first piece takes them.
    prefix: Option<[u8; PREFIX_LEN]>,
    /// The plaintext's whole blocks not yet encrypted.
    blocks: &'a [u8],
    /// The plaintext's last (possibly empty) partial block with its PKCS#7 padding.
    last: Zeroizing<[u8; 16]>,
    /// Bytes MACed so far.
    maced: usize,
}

impl<'a> Sealer<'a> {
    fn new(key: &[u8], plaintext: &'a [u8], timestamp: u64, iv: [u8; 16]) -> Result<Self> {
        let k = halves(key)?;
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(k.signing)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        let (blocks, tail) = plaintext.split_at(plaintext.len() / 16 * 16);
        let pad = 16 - tail.len();
        let mut last = Zeroizing::new([pad as u8; 16]);
        last[..tail.len()].copy_from_slice(tail);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[0] = VERSION;
        prefix[1..9].copy_from_slice(&timestamp.to_be_bytes());
        prefix[9..].copy_from_slice(&iv);
        Ok(Self {
            cipher: aes(k.encryption),
            mac: Some(mac),
            chain: iv,
            prefix: Some(prefix),
            blocks,
            last,
            maced: 0,
        })
    }

    /// Whether the last piece (with the HMAC) has been made.
    fn finished(&self) -> bool {
        self.mac.is_none()
    }

    /// Replaces `buf`'s contents with the next piece: the prefix if it is the first, then
    /// at most `max_ciphertext` bytes (rounded down to whole blocks, at least one block)
    /// of ciphertext, then the HMAC if that was the end of the ciphertext. Returns false,
    /// leaving `buf` empty, once the token is finished.
    fn next_piece(&mut self, buf: &mut Vec<u8>, max_ciphertext: usize) -> bool {
        let max_ciphertext = max_ciphertext.max(16);
        buf.clear();
        let Some(mac) = self.mac.as_mut() else {
            return false;
        };
        if let Some(prefix) = self.prefix.take() {
            buf.extend_from_slice(&prefix);
        }
        let take = (max_ciphertext / 16 * 16).min(self.blocks.len());
        let (these, later) = self.blocks.split_at(take);
        self.blocks = later;
        let ends = later.is_empty() && take.saturating_add(16) <= max_ciphertext;
        let start = buf.len();
        buf.resize(start + take + if ends { 16 } else { 0 }, 0);
        self.cipher.encrypt_with_backend(CbcMac {
            plain: these,
            last: ends.then_some(&*self.last),
            out: buf,
            start,
            chain: &mut self.chain,
            mac,
            maced: self.maced,
        });
        self.maced += buf.len();
        if ends && let Some(mac) = self.mac.take() {
            let tag: [u8; MAC_LEN] = mac.finalize().into_bytes().into();
            buf.extend_from_slice(&tag);
        }
        true
    }
}

/// One run of CBC encryption with the HMAC stitched in. `out[..start]` is already
/// written (the prefix, in the first piece); `plain`'s whole blocks, then `last` if
/// given, are encrypted into the rest of `out` (exactly as long), chained from `chain`
/// (left as the last ciphertext block). All of `out` is MACed by the time it returns.
struct CbcMac<'a> {
    plain: &'a [u8],
    last: Option<&'a [u8; 16]>,
    out: &'a mut [u8],
    start: usize,
    chain: &'a mut [u8; 16],
    mac: &'a mut Hmac<Sha256>,
    /// Bytes MACed before `out`: the updates are kept to whole SHA-256 blocks of the
    /// MAC's input, which it then hashes straight from `out` rather than buffering.
    maced: usize,
}

impl BlockSizeUser for CbcMac<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for CbcMac<'_> {
    /// Runs with the cipher's backend in hand (AES-NI when the CPU has it), so the
    /// blocks go through it without a dispatch each. Each group of [`MAC_GROUP`] bytes is
    /// MACed once the group after it is encrypted: the SHA-256 of one and the AES rounds
    /// of the other do not wait on each other, and run side by side in the CPU.
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let Self {
            plain,
            last,
            out,
            start,
            chain,
            mac,
            maced,
        } = self;
        let mut prev = Array::<u8, U16>::from(*chain);
        let mut inputs = plain.as_chunks::<16>().0.iter().chain(last);
        // `out[..written]` is written, `out[..hashed]` MACed.
        let (mut written, mut hashed) = (start, 0);
        while written < out.len() {
            let end = out.len().min(written + MAC_GROUP);
            // The group's blocks first: `zip` must not take an input it has no room for.
            for (output, input) in out[written..end]
                .as_chunks_mut::<16>()
                .0
                .iter_mut()
                .zip(&mut inputs)
            {
                let mut block = Array::<u8, U16>::from(*input);
                for (b, p) in block.iter_mut().zip(prev.iter()) {
                    *b ^= p;
                }
                backend.encrypt_block_inplace(&mut block);
                prev = block;
                *output = block.0;
            }
            // What was written before this group, down to a whole block of the MAC input.
            if let Some(upto) = written.checked_sub((maced + written) % MAC_GROUP)
                && upto > hashed
            {
                mac.update(&out[hashed..upto]);
                hashed = upto;
            }
            written = end;
        }
        mac.update(&out[hashed..]);
        *chain = prev.0;
    }
}

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
                encrypt_at(&key, &msg, STAMP, iv).unwrap()
                    == reference_encrypt(&key, &msg, STAMP, iv),
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
        let token =
            encrypt_pipelined(&secret(), &msg, now().unwrap(), [9u8; 16], PIECE_LEN).unwrap();
        assert!(theirs.decrypt(&token).unwrap() == msg);
    }
}
