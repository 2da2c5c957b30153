//! The agent protocol: one request/response enum pair, postcard-encoded, in frames of
//! a 4-byte big-endian length followed by the message. Every message starts with the
//! protocol version (a plain integer), so either side can tell a peer of another
//! version before decoding anything else.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::error::{AgentAnswerProblem, Error};
use crate::ops;
use crate::vault::types::VaultStatus;

/// The protocol version. Bump it on any change to the messages below.
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest request the agent reads: a message to encrypt or sign through the agent
/// (larger files go through an AEAD key, whose envelopes stream in the client).
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024 * 1024;
/// The largest response a client reads (the list of a very large vault fits).
pub const MAX_RESPONSE_BYTES: u32 = 512 * 1024 * 1024;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub enum AgentRequest {
    /// Is the agent there, and for which vault?
    Ping,
    /// Agent and vault status; does not reset the idle timer.
    Status,
    /// Restart the idle timer (a second `unlock`), with a new idle timeout if one is
    /// given; the agent keeps its current one otherwise.
    Extend {
        /// The new idle timeout.
        timeout_secs: Option<u64>,
    },
    /// Wipe the keys and stop.
    Lock,
    /// A vault operation; resets the idle timer.
    Op(ops::Request),
}

/// The agent's answer.
#[derive(Serialize, Deserialize)]
pub enum AgentResponse {
    /// To `Ping`: which vault the agent holds.
    Pong(AgentInfo),
    /// To `Status`.
    Status(AgentStatus),
    /// To `Lock`.
    Done,
    /// To `Op`.
    Op(ops::Response),
    /// Any failure, as the typed error itself: the client reports it as if it had
    /// happened there.
    Error {
        /// The exit code the error maps to (a summary for a reader that does not look
        /// at `error`).
        code: crate::error::Exit,
        /// The library's message (the same summary).
        message: String,
        /// The error.
        error: Error,
    },
    /// To `Extend`: the idle timeout now in force.
    Extended {
        /// The idle timeout, in seconds.
        idle_timeout_secs: u64,
    },
    /// To any request: the agent found that the directory at its vault path is no
    /// longer the vault it holds (moved, deleted or replaced), locked itself, and did
    /// not carry out the request.
    Stopped {
        /// The agent and the vault it held.
        info: AgentInfo,
        /// What it found.
        reason: String,
    },
}

/// Who an agent is: its process and the vault it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Its process id.
    pub pid: u32,
    /// The id of the vault it holds (hex).
    pub vault_id: String,
    /// The vault's directory when it was unlocked (canonical), as raw bytes.
    pub vault_path: Vec<u8>,
    /// The device of that directory.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

impl AgentInfo {
    /// The vault's directory when it was unlocked.
    pub fn vault_path(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&self.vault_path))
    }
}

/// The agent's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's process id.
    pub pid: u32,
    /// The idle timeout, in seconds.
    pub idle_timeout_secs: u64,
    /// Seconds until the agent locks for idleness.
    pub idle_left_secs: u64,
    /// Seconds until the maximum lifetime ends.
    pub lifetime_left_secs: u64,
    /// The vault's counts.
    pub vault: VaultStatus,
}

impl From<Error> for AgentResponse {
    fn from(e: Error) -> Self {
        AgentResponse::Error {
            code: e.exit_code(),
            message: e.to_string(),
            error: e,
        }
    }
}

/// Writes one framed message: length, then version ‖ postcard body. The frame is
/// encoded into one buffer of its exact size (measured first), so no growing buffer
/// leaves copies of a secret-bearing message in freed memory, and the one buffer is
/// wiped when written.
pub fn write_message<T: Serialize>(w: &mut impl Write, message: &T) -> io::Result<()> {
    use postcard::experimental::serialized_size;
    let version_len = serialized_size(&PROTOCOL_VERSION).map_err(io::Error::other)?;
    let body_len = serialized_size(message).map_err(io::Error::other)?;
    let len = u32::try_from(version_len + body_len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message too large"))?;
    let mut frame = Zeroizing::new(vec![0u8; 4 + version_len + body_len]);
    let (prefix, rest) = frame.split_at_mut(4);
    prefix.copy_from_slice(&len.to_be_bytes());
    let (version, body) = rest.split_at_mut(version_len);
    postcard::to_slice(&PROTOCOL_VERSION, version).map_err(io::Error::other)?;
    postcard::to_slice(message, body).map_err(io::Error::other)?;
    w.write_all(&frame)?;
    w.flush()
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a frame began.
    Closed,
    /// The length prefix is over the limit.
    TooLarge(u32),
    /// The peer speaks another version.
    Version(u32),
    /// The body does not decode.
    Malformed,
    /// An I/O error (including a read timeout).
    Io(io::Error),
}

/// Reads one framed message of at most `limit` bytes.
pub fn read_message<T: DeserializeOwned>(
    r: &mut impl Read,
    limit: u32,
) -> std::result::Result<T, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_be_bytes(len);
    if len > limit {
        return Err(FrameError::TooLarge(len));
    }
    let body = read_body(r, len as usize).map_err(FrameError::Io)?;
    let (version, rest): (u32, &[u8]) =
        postcard::take_from_bytes(&body).map_err(|_| FrameError::Malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    let (message, rest) = postcard::take_from_bytes(rest).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(message)
}

/// Reads a frame's `len` bytes of body. The buffer grows as bytes arrive (a length
/// prefix alone allocates little), and it grows by copying into a bigger wiped-on-drop
/// buffer, never by reallocating, so a message that carries a secret (an import, a
/// plaintext) leaves no copy in freed memory.
fn read_body(r: &mut impl Read, len: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut body = Zeroizing::new(Vec::with_capacity(len.min(64 * 1024)));
    while body.len() < len {
        if body.len() == body.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(body.capacity() * 2));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        let start = body.len();
        let end = len.min(body.capacity());
        body.resize(end, 0);
        match r.read(&mut body[start..end]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the frame ended early",
                ));
            }
            Ok(n) => body.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => body.truncate(start),
            Err(e) => return Err(e),
        }
    }
    Ok(body)
}

/// Turns a frame error on the client side into a library error.
pub fn client_error(e: FrameError) -> Error {
    match e {
        FrameError::Version(agent) => Error::ProtocolMismatch {
            agent,
            client: PROTOCOL_VERSION,
        },
        FrameError::Closed => Error::AgentAnswer(AgentAnswerProblem::Closed),
        FrameError::TooLarge(n) => Error::AgentAnswer(AgentAnswerProblem::TooLarge(n)),
        FrameError::Malformed => Error::AgentAnswer(AgentAnswerProblem::Malformed),
        FrameError::Io(e) => Error::io(
            "lost the connection to the agent (the request may or may not have been carried out)",
            e,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: String, pid: u32) -> AgentInfo {
        AgentInfo {
            pid,
            vault_id: "ab".repeat(16),
            vault_path: path.into_bytes(),
            dev: 1,
            ino: 2,
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &AgentRequest::Extend {
                timeout_secs: Some(9),
            },
        )
        .unwrap();
        let back: AgentRequest = read_message(&mut buf.as_slice(), MAX_REQUEST_BYTES).unwrap();
        assert!(matches!(
            back,
            AgentRequest::Extend {
                timeout_secs: Some(9)
            }
        ));
    }

    #[test]
    fn the_frame_is_the_length_then_the_version_then_the_body_exactly() {
        let message = AgentResponse::Pong(info("/v".repeat(100), 4242));
        let mut buf = Vec::new();
        write_message(&mut buf, &message).unwrap();
        let mut want = postcard::to_stdvec(&PROTOCOL_VERSION).unwrap();
        want.extend(postcard::to_stdvec(&message).unwrap());
        let len = u32::try_from(want.len()).unwrap();
        assert_eq!(buf[..4], len.to_be_bytes());
        assert_eq!(buf[4..], want[..]);
    }

    /// Hands out at most 1,000 bytes per read, as a socket may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_large_frame_read_in_small_pieces_round_trips_and_a_cut_one_is_an_error() {
        let message = AgentResponse::Pong(info("x".repeat(300_000), 7));
        let mut buf = Vec::new();
        write_message(&mut buf, &message).unwrap();
        let back: AgentResponse = read_message(&mut Trickle(&buf), u32::MAX).unwrap();
        assert!(
            matches!(back, AgentResponse::Pong(i) if i.vault_path.len() == 300_000 && i.pid == 7)
        );
        let cut = &buf[..buf.len() - 1];
        assert!(matches!(
            read_message::<AgentResponse>(&mut Trickle(cut), u32::MAX),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
    }

    #[test]
    fn oversized_wrong_version_and_garbage_are_refused() {
        let huge = (1u32 << 30).to_be_bytes();
        assert!(matches!(
            read_message::<AgentRequest>(&mut huge.as_slice(), MAX_REQUEST_BYTES),
            Err(FrameError::TooLarge(_))
        ));
        let mut other = Vec::new();
        other.extend_from_slice(&2u32.to_be_bytes());
        other.extend_from_slice(&[7, 0]);
        assert!(matches!(
            read_message::<AgentRequest>(&mut other.as_slice(), MAX_REQUEST_BYTES),
            Err(FrameError::Version(7))
        ));
        let mut garbage = Vec::new();
        garbage.extend_from_slice(&3u32.to_be_bytes());
        garbage.extend_from_slice(&[PROTOCOL_VERSION as u8, 200, 200]);
        assert!(matches!(
            read_message::<AgentRequest>(&mut garbage.as_slice(), MAX_REQUEST_BYTES),
            Err(FrameError::Malformed)
        ));
        assert!(matches!(
            read_message::<AgentRequest>(&mut [0u8, 0].as_slice(), MAX_REQUEST_BYTES),
            Err(FrameError::Closed)
        ));
    }
}
