//! Making a token: AES-128-CBC with the HMAC stitched into the CBC loop, and the
//! token's base64 made in pieces, on a second thread for long messages (see the
//! parent module for why).

use std::sync::mpsc;
use std::time::Instant;

use aes::Aes128;
use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

use super::{
    MAC_GROUP, MAC_LEN, PIECE_LEN, PIPELINE_MIN, POLL_FOR, PREFIX_LEN, VERSION, aes, halves, now,
};

/// Encrypts `plaintext` into a Fernet token (url-safe base64 text, no newline).
pub fn encrypt(key: &[u8], plaintext: &[u8]) -> Result<String> {
    let mut iv = [0u8; 16];
    crate::crypto::random_bytes(&mut iv)?;
    encrypt_at(key, plaintext, now()?, iv)
}

pub(super) fn encrypt_at(
    key: &[u8],
    plaintext: &[u8],
    timestamp: u64,
    iv: [u8; 16],
) -> Result<String> {
    if plaintext.len() >= PIPELINE_MIN {
        encrypt_pipelined(key, plaintext, timestamp, iv, PIECE_LEN)
    } else {
        encrypt_serial(key, plaintext, timestamp, iv, PIECE_LEN)
    }
}

/// Bytes of the token before base64 for a plaintext of `len` bytes, and of its text.
pub(super) fn token_lens(len: usize) -> Result<(usize, usize)> {
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
pub(super) fn whole_pieces(piece_len: usize) -> usize {
    (piece_len / 48).max(1) * 48
}

/// The token's text, made from its bytes piece by piece.
pub(super) struct Base64Token {
    text: String,
    /// Every piece so far was whole base64 groups (a multiple of 3 bytes): only the
    /// last may not be, or padding would land in the middle of the token.
    whole_groups: bool,
}

impl Base64Token {
    pub(super) fn with_capacity(text_len: usize) -> Self {
        Self {
            text: String::with_capacity(text_len),
            whole_groups: true,
        }
    }

    pub(super) fn push(&mut self, piece: &[u8]) -> Result<()> {
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
    pub(super) fn finish(self, sealer: &Sealer<'_>, text_len: usize) -> Result<String> {
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
pub(super) fn encrypt_serial(
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
pub(super) fn encrypt_pipelined(
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
pub(super) fn encode_pieces(
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
pub(super) struct Sealer<'a> {
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
    pub(super) fn new(
        key: &[u8],
        plaintext: &'a [u8],
        timestamp: u64,
        iv: [u8; 16],
    ) -> Result<Self> {
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
    pub(super) fn finished(&self) -> bool {
        self.mac.is_none()
    }

    /// Replaces `buf`'s contents with the next piece: the prefix if it is the first, then
    /// at most `max_ciphertext` bytes (rounded down to whole blocks, at least one block)
    /// of ciphertext, then the HMAC if that was the end of the ciphertext. Returns false,
    /// leaving `buf` empty, once the token is finished.
    pub(super) fn next_piece(&mut self, buf: &mut Vec<u8>, max_ciphertext: usize) -> bool {
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
pub(super) struct CbcMac<'a> {
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
