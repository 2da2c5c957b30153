//! `encrypt`, `decrypt`, `sign`, `verify`, `rotate` and `delete --version`: using keys
//! without exporting them.
//!
//! AEAD envelopes stream: the vault (or agent) hands out the key of one envelope and
//! this process streams the file through it, so large files never pass through the
//! agent. Fernet tokens, RSA-OAEP and Ed25519 signatures take the whole message in
//! memory; RSA signatures are made and checked from a SHA-256 digest computed here.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use zeroize::Zeroizing;

use keyvault::agent::protocol::MAX_REQUEST_BYTES;
use keyvault::crypto::envelope::{self, EnvelopeHeader};
use keyvault::crypto::sign::RsaScheme;
use keyvault::keytype::{KeyType, KeyUse};
use keyvault::ops::{Request, Response};
use keyvault::vault::keyuse::NearLimit;
use keyvault::{Error, Result};

use super::checks::{check_lookup, check_new_file, refuse_binary_to_terminal};
use super::output::Out;
use super::{RunError, Session, unexpected};

type CmdResult<T = ()> = std::result::Result<T, RunError>;

/// The most a message may hold when it is read whole (Fernet, RSA, signatures).
const MAX_MESSAGE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// How much of its input `encrypt` reads before it opens the vault itself.
const READ_AHEAD_BYTES: u64 = 16 * 1024 * 1024;
/// Room for the rest of a request around a message sent to the agent.
const REQUEST_OVERHEAD: u64 = 4096;
/// The most output `--json` prints (it holds the output in memory, and base64 makes
/// it a third larger); larger outputs go to a file with `--out`.
pub const MAX_JSON_OUTPUT: u64 = 16 * 1024 * 1024;

/// Where output goes: stdout, or a new file written under a temporary name and linked
/// into place only when complete (never overwriting; removed on failure).
enum Sink {
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
    fn open(out: Option<&Path>, json: bool) -> Result<Sink> {
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
    fn finish(mut self) -> Result<Option<Vec<u8>>> {
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
struct Input {
    reader: Box<dyn Read>,
    size: Option<u64>,
}

/// The size of a regular file behind `fd`; `None` for pipes, terminals and the like.
fn regular_size(fd: impl std::os::fd::AsFd) -> Option<u64> {
    let st = rustix::fs::fstat(fd).ok()?;
    (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
        .then_some(st.st_size as u64)
}

fn open_input(input: Option<&Path>) -> Result<Input> {
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
fn check_json_output(out: &Out, output: Option<&Path>, input: &Input) -> Result<()> {
    if out.json() && output.is_none() && input.size.is_some_and(|n| n > MAX_JSON_OUTPUT) {
        return Err(json_too_large());
    }
    Ok(())
}

/// The error of an operation that wrote to `sink`: the `--json` limit when that is
/// what stopped it.
fn sink_error(sink: &Sink, e: Error) -> Error {
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
fn read_rest(session: &mut Session, start: Vec<u8>, input: Input) -> Result<Zeroizing<Vec<u8>>> {
    let through_agent = session.agent()?.is_some();
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

fn key_type_of(session: &mut Session, user: &str, name: &str) -> Result<KeyType> {
    match session.call(Request::KeyInfo {
        user: user.to_string(),
        name: name.to_string(),
    })? {
        Response::Key(k) => Ok(k.key_type.0),
        _ => Err(unexpected()),
    }
}

fn warn(warning: &Option<NearLimit>) {
    if let Some(w) = warning {
        eprintln!("warning: {}", super::advice::near_limit(w));
    }
}

fn envelope_key(
    session: &mut Session,
    user: &str,
    name: &str,
    header: Option<Vec<u8>>,
) -> Result<(EnvelopeHeader, Zeroizing<[u8; 32]>, Option<NearLimit>)> {
    let Response::EnvelopeKey {
        header,
        key,
        warning,
    } = session.call(Request::EnvelopeKey {
        user: user.to_string(),
        name: name.to_string(),
        header,
    })?
    else {
        return Err(unexpected());
    };
    let arr: [u8; envelope::HEADER_LEN] = header
        .as_slice()
        .try_into()
        .map_err(|_| Error::Integrity("malformed envelope header".into()))?;
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| Error::Integrity("malformed envelope key".into()))?;
    Ok((
        EnvelopeHeader::from_bytes(&arr)?,
        Zeroizing::new(key),
        warning,
    ))
}

/// The checks that need no vault, made before any passphrase is asked for: the ids'
/// form, and that the output file does not exist.
fn check_arguments(user: &str, name: &str, output: Option<&Path>) -> Result<()> {
    check_lookup(user, Some(name))?;
    if let Some(o) = output {
        check_new_file(o)?;
    }
    Ok(())
}

/// Emits the output of an operation: to the sink, and with `--json` a document.
fn emit(out: &mut Out, sink: Sink, what: &str, text: bool, extra: serde_json::Value) -> CmdResult {
    let written_to = match &sink {
        Sink::File { target, .. } => Some(target.display().to_string()),
        _ => None,
    };
    let data = sink.finish()?;
    if out.json() {
        let mut doc = extra;
        match (data, written_to) {
            (Some(bytes), _) => {
                doc[what] = match (text, std::str::from_utf8(&bytes)) {
                    (true, Ok(t)) => json!(t.trim_end()),
                    _ => json!(STANDARD.encode(&bytes)),
                };
            }
            (None, Some(path)) => doc["written"] = json!(path),
            (None, None) => {}
        }
        out.doc(&doc)?;
    }
    Ok(())
}

/// `encrypt`. Without an agent, the input is read before the vault is opened (all of
/// it when it is small; a large one is read once the key type says it is needed whole),
/// and the vault is closed before any output is written: so that neither end of
/// `keyvault decrypt … | keyvault encrypt …` or `keyvault encrypt … | keyvault decrypt …`
/// holds the vault while it waits on the other.
pub fn encrypt(
    out: &mut Out,
    session: &mut Session,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
) -> CmdResult {
    check_arguments(user, name, output)?;
    let mut input = open_input(input)?;
    check_json_output(out, output, &input)?;
    let mut head = Zeroizing::new(Vec::new());
    if session.agent()?.is_none() {
        (&mut input.reader)
            .take(READ_AHEAD_BYTES)
            .read_to_end(&mut head)
            .map_err(|e| Error::io("cannot read the input", e))?;
    }
    let key_type = key_type_of(session, user, name)?;
    key_type.check_use(KeyUse::Encrypt)?;
    if key_type != KeyType::Fernet && output.is_none() && !out.json() {
        refuse_binary_to_terminal(&format!("encrypt with key type {key_type}"))?;
    }
    let mut sink = Sink::open(output, out.json())?;
    if key_type.is_aead() {
        let (header, key, warning) = envelope_key(session, user, name, None)?;
        session.release();
        let mut whole = head.as_slice().chain(input.reader);
        envelope::encrypt_with_message_key(&header, &key, &mut whole, &mut sink)
            .map_err(|e| sink_error(&sink, e))?;
        warn(&warning);
        let version = header.key_version;
        return emit(
            out,
            sink,
            "ciphertext",
            false,
            json!({ "user": user, "name": name, "version": version, "type": key_type.as_str() }),
        );
    }
    let message = read_rest(session, std::mem::take(&mut *head), input)?;
    let Response::Produced(used) = session.call(Request::Encrypt {
        user: user.to_string(),
        name: name.to_string(),
        plaintext: message,
    })?
    else {
        return Err(unexpected().into());
    };
    session.release();
    warn(&used.warning);
    let fernet = key_type == KeyType::Fernet;
    sink.write_all(&used.value)
        .and_then(|()| {
            if fernet {
                sink.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .map_err(|e| sink_error(&sink, Error::Output(e)))?;
    emit(
        out,
        sink,
        "ciphertext",
        fernet,
        json!({ "user": user, "name": name, "version": used.version, "type": key_type.as_str() }),
    )
}

/// `decrypt`. The input is read before the vault is opened (an envelope's header), and
/// the vault is closed as soon as this has what it needs (an envelope's key, or the
/// plaintext), before any output is written: see [`encrypt`].
pub fn decrypt(
    out: &mut Out,
    session: &mut Session,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
    ttl: Option<u64>,
) -> CmdResult {
    check_arguments(user, name, output)?;
    let mut input = open_input(input)?;
    check_json_output(out, output, &input)?;
    let mut head = Vec::with_capacity(envelope::HEADER_LEN);
    (&mut input.reader)
        .take(envelope::HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("cannot read the input", e))?;
    let key_type = key_type_of(session, user, name)?;
    key_type.check_use(KeyUse::Decrypt)?;
    if ttl.is_some() && key_type != KeyType::Fernet {
        return Err(Error::Usage("--ttl applies to fernet keys only".into()).into());
    }
    if key_type.is_aead() {
        let mut whole = head.as_slice().chain(input.reader);
        let header = envelope::read_header(&mut whole)?;
        let (header, key, _) = envelope_key(session, user, name, Some(header.to_bytes().to_vec()))?;
        session.release();
        let mut sink = Sink::open(output, out.json())?;
        envelope::decrypt_with_message_key(&header, &key, &mut whole, &mut sink)
            .map_err(|e| sink_error(&sink, e))?;
        let version = header.key_version;
        return emit(
            out,
            sink,
            "plaintext",
            true,
            json!({ "user": user, "name": name, "version": version }),
        );
    }
    let ciphertext = read_rest(session, head, input)?;
    let Response::Plaintext { version, plaintext } = session.call(Request::Decrypt {
        user: user.to_string(),
        name: name.to_string(),
        ciphertext: ciphertext.to_vec(),
        ttl,
    })?
    else {
        return Err(unexpected().into());
    };
    session.release();
    let mut sink = Sink::open(output, out.json())?;
    sink.write_all(&plaintext)
        .map_err(|e| sink_error(&sink, Error::Output(e)))?;
    emit(
        out,
        sink,
        "plaintext",
        true,
        json!({ "user": user, "name": name, "version": version }),
    )
}

/// A message to sign or verify, read before the vault is opened (see [`decrypt`]): its
/// SHA-256 digest always (RSA signs that), and the message itself while it is within
/// what may be sent whole (Ed25519 signs the whole message).
struct ToSign {
    whole: Option<Zeroizing<Vec<u8>>>,
    digest: [u8; 32],
    len: u64,
    limit: u64,
    through_agent: bool,
}

impl ToSign {
    fn read(session: &mut Session, input: Option<&Path>) -> Result<ToSign> {
        use sha2::Digest as _;
        let through_agent = session.agent()?.is_some();
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
    fn whole(&mut self, key_type: KeyType, what: &str) -> Result<Zeroizing<Vec<u8>>> {
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

/// `sign`. RSA keys sign the message's SHA-256 digest, computed here: any size, also
/// through the agent, which gets the 32 bytes only.
pub fn sign(
    out: &mut Out,
    session: &mut Session,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
    scheme: Option<RsaScheme>,
) -> CmdResult {
    check_arguments(user, name, output)?;
    if output.is_none() && !out.json() {
        refuse_binary_to_terminal("sign")?;
    }
    // The message first: see `decrypt`.
    let mut message = ToSign::read(session, input)?;
    let key_type = key_type_of(session, user, name)?;
    key_type.check_use(KeyUse::Sign)?;
    let request = if key_type.is_rsa() {
        Request::SignDigest {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            digest: message.digest.to_vec(),
        }
    } else {
        Request::Sign {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            message: message.whole(key_type, "sign")?,
        }
    };
    let mut sink = Sink::open(output, out.json())?;
    let Response::Produced(used) = session.call(request)? else {
        return Err(unexpected().into());
    };
    session.release();
    sink.write_all(&used.value).map_err(Error::Output)?;
    emit(
        out,
        sink,
        "signature",
        false,
        json!({ "user": user, "name": name, "version": used.version, "type": key_type.as_str() }),
    )
}

/// `verify`: exit 0 if the signature verifies under some version, 1 if not.
pub fn verify(
    out: &mut Out,
    session: &mut Session,
    user: &str,
    name: &str,
    signature: &Path,
    input: Option<&Path>,
    scheme: Option<RsaScheme>,
) -> CmdResult<i32> {
    check_arguments(user, name, None)?;
    let sig_file = fs::File::open(signature).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::FileNotFound(signature.to_path_buf()),
        _ => Error::io(format!("cannot read {}", signature.display()), e),
    })?;
    // The message first: see `decrypt`.
    let mut message = ToSign::read(session, input)?;
    let key_type = key_type_of(session, user, name)?;
    key_type.check_use(KeyUse::Verify)?;
    // At most one byte more than a signature of this key holds: a longer file is not
    // its signature, whatever else it holds (or however endless it is).
    let sig_len = key_type.signature_len().unwrap_or(0);
    let mut sig = Vec::with_capacity(sig_len + 1);
    sig_file
        .take(sig_len as u64 + 1)
        .read_to_end(&mut sig)
        .map_err(|e| Error::io(format!("cannot read {}", signature.display()), e))?;
    let request = |scheme: Option<RsaScheme>, message: &mut ToSign, sig: Vec<u8>| {
        Ok::<_, Error>(if key_type.is_rsa() {
            Request::VerifyDigest {
                user: user.to_string(),
                name: name.to_string(),
                scheme,
                digest: message.digest.to_vec(),
                signature: sig,
            }
        } else {
            Request::Verify {
                user: user.to_string(),
                name: name.to_string(),
                scheme,
                message: message.whole(key_type, "verify")?,
                signature: sig,
            }
        })
    };
    let Response::Verified(version) = session.call(request(scheme, &mut message, sig.clone())?)?
    else {
        return Err(unexpected().into());
    };
    // An RSA signature made with the other scheme is still invalid (exit 1): the
    // scheme asked for is the one checked. Saying so spares a puzzled user. A key that
    // cannot use the other scheme (an RSASSA-PSS key) gives no hint.
    let other_scheme = if version.is_none() && key_type.is_rsa() {
        let other = match scheme.unwrap_or_default() {
            RsaScheme::Pss => RsaScheme::Pkcs1v15,
            RsaScheme::Pkcs1v15 => RsaScheme::Pss,
        };
        match session.call(request(Some(other), &mut message, sig)?) {
            Ok(Response::Verified(Some(_))) => Some(other),
            _ => None,
        }
    } else {
        None
    };
    session.release();
    if let Some(other) = other_scheme {
        eprintln!(
            "hint: the signature verifies with --scheme {}; it was checked with {}, so it is invalid as asked",
            other.as_str(),
            scheme.unwrap_or_default().as_str()
        );
    }
    if out.json() {
        out.doc(&json!({
            "user": user,
            "name": name,
            "valid": version.is_some(),
            "version": version,
            "verifies_with_scheme": other_scheme.map(RsaScheme::as_str),
        }))?;
    } else {
        match version {
            Some(v) => out.text(&format!("valid (version {v})\n"))?,
            None => out.text("invalid\n")?,
        }
    }
    Ok(if version.is_some() { 0 } else { 1 })
}
