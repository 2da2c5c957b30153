//! Where the input of `encrypt`, `decrypt`, `sign` and `verify` comes from and where
//! their output goes: inputs read within the limits of a message held whole, and
//! outputs written to stdout, to a new file linked into place only when complete, or
//! kept in memory for a `--json` document.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use keyvault::agent::protocol::MAX_REQUEST_BYTES;
use keyvault::keytype::KeyType;
use keyvault::{Error, Result};

use super::output::Out;

/// The most a message may hold when it is read whole (Fernet, RSA, signatures).
const MAX_MESSAGE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// How much of its input `encrypt` reads before it opens the vault itself.
pub(super) const READ_AHEAD_BYTES: u64 = 16 * 1024 * 1024;
/// Room for the rest of a request around a message sent to the agent.
const REQUEST_OVERHEAD: u64 = 4096;
/// The most output `--json` prints (it holds the output in memory, and base64 makes
/// it a third larger); larger outputs go to a file with `--out`.
pub(crate) const MAX_JSON_OUTPUT: u64 = 16 * 1024 * 1024;

/// Where output goes: stdout, or a new file written under a temporary name and linked
/// into place only when complete (never overwriting; removed on failure).
pub(super) enum Sink {
    Stdout(io::Stdout),
    File {
        file: io::BufWriter<fs::File>,
        temp: PathBuf,
        target: PathBuf,
    },
    /// For `--json`: the output, up to [`MAX_JSON_OUTPUT`] bytes; `overflowed` once
    /// more was written (the write then failed).
    Memory {
        buf: Vec<u8>,
        overflowed: bool,
    },
}

/// The error for `--json` output over [`MAX_JSON_OUTPUT`].
fn json_too_large() -> Error {
    Error::Usage(format!(
        "--json prints at most {} MiB of output; write larger outputs to a file with --out FILE",
        MAX_JSON_OUTPUT >> 20
    ))
}

impl Sink {
    pub(super) fn open(out: Option<&Path>, json: bool) -> Result<Sink> {
        let Some(target) = out else {
            return Ok(if json {
                Sink::Memory {
                    buf: Vec::new(),
                    overflowed: false,
                }
            } else {
                Sink::Stdout(io::stdout())
            });
        };
        if target.exists() {
            return Err(Error::AlreadyExists(format!(
                "{} exists; refusing to overwrite it",
                target.display()
            )));
        }
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut rnd = [0u8; 6];
        keyvault::crypto::random_bytes(&mut rnd)?;
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        let temp = dir.join(format!(".{}.tmp-{suffix}", name.unwrap_or_default()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| Error::io(format!("cannot create {}", temp.display()), e))?;
        Ok(Sink::File {
            file: io::BufWriter::with_capacity(1 << 20, file),
            temp,
            target: target.to_path_buf(),
        })
    }

    /// Completes the output: flushes, and links a file into place.
    pub(super) fn finish(mut self) -> Result<Option<Vec<u8>>> {
        match &mut self {
            Sink::Stdout(s) => {
                s.flush().map_err(Error::Output)?;
                Ok(None)
            }
            Sink::Memory { buf, .. } => Ok(Some(std::mem::take(buf))),
            Sink::File { file, temp, target } => {
                file.flush()
                    .and_then(|()| file.get_ref().sync_all())
                    .map_err(|e| Error::io(format!("cannot write {}", temp.display()), e))?;
                fs::hard_link(&*temp, &*target).map_err(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!(
                        "{} exists; refusing to overwrite it",
                        target.display()
                    )),
                    _ => Error::io(format!("cannot create {}", target.display()), e),
                })?;
                let _ = fs::remove_file(&*temp);
                Ok(None)
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File { file, .. } => file.write(buf),
            Sink::Memory { buf: m, overflowed } => {
                if (m.len() + buf.len()) as u64 > MAX_JSON_OUTPUT {
                    *overflowed = true;
                    return Err(io::Error::other("--json output over its limit"));
                }
                m.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File { file, .. } => file.flush(),
            Sink::Memory { .. } => Ok(()),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::File { temp, .. } = self {
            // Gone already when finished; otherwise a failed output leaves nothing.
            let _ = fs::remove_file(&*temp);
        }
    }
}

/// An input: a reader, and its size when it is known before reading (a regular file,
/// named or on stdin).
pub(super) struct Input {
    pub(super) reader: Box<dyn Read>,
    pub(super) size: Option<u64>,
}

/// The size of a regular file behind `fd`; `None` for pipes, terminals and the like.
fn regular_size(fd: impl std::os::fd::AsFd) -> Option<u64> {
    let st = rustix::fs::fstat(fd).ok()?;
    (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
        .then_some(st.st_size as u64)
}

pub(super) fn open_input(input: Option<&Path>) -> Result<Input> {
    match input {
        None => stdin_input(),
        Some(p) if p == Path::new("-") => stdin_input(),
        Some(p) => {
            let f = fs::File::open(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::FileNotFound(p.to_path_buf()),
                _ => Error::io(format!("cannot read {}", p.display()), e),
            })?;
            let size = regular_size(&f);
            Ok(Input {
                reader: Box::new(io::BufReader::with_capacity(1 << 20, f)),
                size,
            })
        }
    }
}

fn stdin_input() -> Result<Input> {
    let stdin = io::stdin();
    let size = regular_size(&stdin);
    Ok(Input {
        reader: Box::new(stdin.lock()),
        size,
    })
}

/// Refuses `--json` output without `--out` for an input whose size already says the
/// output would pass [`MAX_JSON_OUTPUT`]: before any work is done.
pub(super) fn check_json_output(out: &Out, output: Option<&Path>, input: &Input) -> Result<()> {
    if out.json() && output.is_none() && input.size.is_some_and(|n| n > MAX_JSON_OUTPUT) {
        return Err(json_too_large());
    }
    Ok(())
}

/// The error of an operation that wrote to `sink`: the `--json` limit when that is
/// what stopped it.
pub(super) fn sink_error(sink: &Sink, e: Error) -> Error {
    match sink {
        Sink::Memory {
            overflowed: true, ..
        } => json_too_large(),
        _ => e,
    }
}

/// Reads into `buf` until `reader` ends or `buf` holds `max` bytes. The buffer grows
/// by doubling but never past `max`, so an input of `max` bytes or more costs `max`
/// bytes of memory, not the next power of two.
fn read_bounded(reader: &mut dyn Read, buf: &mut Vec<u8>, max: usize) -> io::Result<()> {
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    while buf.len() < max {
        let want = chunk.len().min(max - buf.len());
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.capacity() - buf.len() < n {
            let grown = buf.capacity().saturating_mul(2).max(buf.len() + n).min(max);
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Reads the rest of `input` after the bytes already read (`start`), within the limit
/// of a message read whole. An input whose size is known is refused before it is read.
pub(super) fn read_rest(
    through_agent: bool,
    start: Vec<u8>,
    input: Input,
) -> Result<Zeroizing<Vec<u8>>> {
    let limit = if through_agent {
        u64::from(MAX_REQUEST_BYTES) - REQUEST_OVERHEAD
    } else {
        MAX_MESSAGE_BYTES
    };
    // The size of a file counts the bytes already read from it.
    let known = input.size;
    let Input { mut reader, .. } = input;
    let mut buf = Zeroizing::new(start);
    let max = usize::try_from(limit + 1).unwrap_or(usize::MAX);
    if let Some(n) = known.filter(|&n| n <= limit) {
        let room = usize::try_from(n + 1)
            .unwrap_or(max)
            .saturating_sub(buf.len());
        buf.reserve_exact(room);
    }
    if known.is_none_or(|n| n <= limit) {
        read_bounded(&mut reader, &mut buf, max)
            .map_err(|e| Error::io("cannot read the input", e))?;
    }
    if known.is_some_and(|n| n > limit) || buf.len() as u64 > limit {
        return Err(Error::Usage(if through_agent {
            format!(
                "the input is over the {} MiB a message may hold through the agent; encrypt large files with an aes256-gcm or chacha20-poly1305 key (they stream)",
                limit >> 20
            )
        } else {
            "the input is over 2 GiB; encrypt large files with an aes256-gcm or chacha20-poly1305 key (they stream)".into()
        }));
    }
    Ok(buf)
}

/// A message to sign or verify, read before the vault is opened (see [`super::keyuse_cmds::decrypt`]): its
/// SHA-256 digest always (RSA signs that), and the message itself while it is within
/// what may be sent whole (Ed25519 signs the whole message).
pub(super) struct ToSign {
    whole: Option<Zeroizing<Vec<u8>>>,
    pub(super) digest: [u8; 32],
    len: u64,
    limit: u64,
    through_agent: bool,
}

impl ToSign {
    pub(super) fn read(through_agent: bool, input: Option<&Path>) -> Result<ToSign> {
        use sha2::Digest as _;
        let limit = if through_agent {
            u64::from(MAX_REQUEST_BYTES) - REQUEST_OVERHEAD
        } else {
            MAX_MESSAGE_BYTES
        };
        let Input { mut reader, size } = open_input(input)?;
        let mut hasher = sha2::Sha256::new();
        // A file whose size is over the limit is only hashed, never held.
        let mut whole = size
            .is_none_or(|n| n <= limit)
            .then(|| Zeroizing::new(Vec::new()));
        let mut len = 0u64;
        let mut chunk = Zeroizing::new(vec![0u8; 1 << 20]);
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot read the input", e)),
            };
            hasher.update(&chunk[..n]);
            len += n as u64;
            if len > limit {
                // Too long to send whole: only its digest is kept.
                whole = None;
            } else if let Some(buf) = whole.as_mut() {
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        Ok(ToSign {
            whole,
            digest: hasher.finalize().into(),
            len,
            limit,
            through_agent,
        })
    }

    /// The whole message, for a key type that signs it whole (Ed25519).
    pub(super) fn whole(&mut self, key_type: KeyType, what: &str) -> Result<Zeroizing<Vec<u8>>> {
        self.whole.take().ok_or_else(|| {
            Error::Usage(if self.through_agent {
                format!(
                    "{key_type} keys {what} the whole message, and a message sent to the agent may hold at most {} bytes; this one holds {}: run `keyvault lock` and {what} it without the agent, or use an RSA key (the agent {what}s from a digest)",
                    self.limit, self.len
                )
            } else {
                format!(
                    "{key_type} keys {what} the whole message, which may hold at most 2 GiB; this one holds {} bytes",
                    self.len
                )
            })
        })
    }
}
