//! `encrypt`, `decrypt`, `sign`, `verify`, `rotate` and `delete --version`: using keys
//! without exporting them.
//!
//! AEAD envelopes stream: the vault (or agent) hands out the key of one envelope and
//! this process streams the file through it, so large files never pass through the
//! agent. Fernet tokens, RSA-OAEP and Ed25519 signatures take the whole message in
//! memory; RSA signatures are made and checked from a SHA-256 digest computed here.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use keyvault::crypto::envelope::{self, EnvelopeHeader};
use keyvault::crypto::sign::RsaScheme;
use keyvault::keytype::{KeyType, KeyUse};
use keyvault::ops::Operations;
use keyvault::vault::keyuse::NearLimit;
use keyvault::{Error, Result};

use super::args::Cli;
use super::checks::{check_lookup, check_new_file, refuse_binary_to_terminal};
use super::keyuse_io::{
    READ_AHEAD_BYTES, Sink, ToSign, check_json_output, open_input, read_rest, sink_error,
};
use super::output::Out;
use super::report::{KeyUsed, Verified};
use super::session::Session;
use super::{CmdResult, SUCCESS};

fn key_type_of(session: &mut Session, user: &str, name: &str) -> Result<KeyType> {
    Ok(session.key_info(user, name)?.key_type.0)
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
    let given = session.envelope_key(user, name, header)?;
    let (header, key, warning) = (given.header, given.key, given.warning);
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

/// Where an operation's output goes in its `--json` report, when it is not written to
/// a file.
#[derive(Clone, Copy)]
enum Field {
    Ciphertext,
    Plaintext,
    Signature,
}

/// Completes the output of an operation (to stdout, or linked into place as its file)
/// and prints its report: with `--json`, the output itself (as text when `text` and it
/// is UTF-8, else in base64) or the file written.
fn finish(out: &mut Out, sink: Sink, field: Field, text: bool, mut report: KeyUsed) -> CmdResult {
    let written_to = match &sink {
        Sink::File { target, .. } => Some(target.display().to_string()),
        _ => None,
    };
    match sink.finish()?.map(Zeroizing::new) {
        Some(bytes) => {
            let value = match (text, std::str::from_utf8(&bytes)) {
                (true, Ok(t)) => t.trim_end().to_string(),
                _ => STANDARD.encode(&*bytes),
            };
            match field {
                Field::Ciphertext => report.ciphertext = Some(value),
                Field::Plaintext => report.plaintext = Some(Zeroizing::new(value)),
                Field::Signature => report.signature = Some(value),
            }
        }
        None => report.written = written_to,
    }
    out.emit(&report)?;
    Ok(SUCCESS)
}

/// `encrypt`. Without an agent, the input is read before the vault is opened (all of
/// it when it is small; a large one is read once the key type says it is needed whole),
/// and the vault is closed before any output is written: so that neither end of
/// `keyvault decrypt … | keyvault encrypt …` or `keyvault encrypt … | keyvault decrypt …`
/// holds the vault while it waits on the other.
pub(crate) fn encrypt(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
) -> CmdResult {
    let session = &mut Session::new(cli)?;
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
        let report = KeyUsed {
            name,
            key_type: Some(key_type.as_str()),
            user,
            version: header.key_version,
            ..KeyUsed::default()
        };
        return finish(out, sink, Field::Ciphertext, false, report);
    }
    let through_agent = session.agent()?.is_some();
    let message = read_rest(through_agent, std::mem::take(&mut *head), input)?;
    let used = session.encrypt(user, name, message)?;
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
    let report = KeyUsed {
        name,
        key_type: Some(key_type.as_str()),
        user,
        version: used.version,
        ..KeyUsed::default()
    };
    finish(out, sink, Field::Ciphertext, fernet, report)
}

/// `decrypt`. The input is read before the vault is opened (an envelope's header), and
/// the vault is closed as soon as this has what it needs (an envelope's key, or the
/// plaintext), before any output is written: see [`encrypt`].
pub(crate) fn decrypt(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
    ttl: Option<u64>,
) -> CmdResult {
    let session = &mut Session::new(cli)?;
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
        let report = KeyUsed {
            name,
            user,
            version: header.key_version,
            ..KeyUsed::default()
        };
        return finish(out, sink, Field::Plaintext, true, report);
    }
    let through_agent = session.agent()?.is_some();
    let ciphertext = read_rest(through_agent, head, input)?;
    let (version, plaintext) = session.decrypt(user, name, ciphertext.to_vec(), ttl)?;
    session.release();
    let mut sink = Sink::open(output, out.json())?;
    sink.write_all(&plaintext)
        .map_err(|e| sink_error(&sink, Error::Output(e)))?;
    let report = KeyUsed {
        name,
        user,
        version,
        ..KeyUsed::default()
    };
    finish(out, sink, Field::Plaintext, true, report)
}

/// `sign`. RSA keys sign the message's SHA-256 digest, computed here: any size, also
/// through the agent, which gets the 32 bytes only.
pub(crate) fn sign(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    input: Option<&Path>,
    output: Option<&Path>,
    scheme: Option<RsaScheme>,
) -> CmdResult {
    let session = &mut Session::new(cli)?;
    check_arguments(user, name, output)?;
    if output.is_none() && !out.json() {
        refuse_binary_to_terminal("sign")?;
    }
    // The message first: see `decrypt`.
    let through_agent = session.agent()?.is_some();
    let mut message = ToSign::read(through_agent, input)?;
    let key_type = key_type_of(session, user, name)?;
    key_type.check_use(KeyUse::Sign)?;
    let whole = if key_type.is_rsa() {
        None
    } else {
        Some(message.whole(key_type, "sign")?)
    };
    let mut sink = Sink::open(output, out.json())?;
    let used = match whole {
        None => session.sign_digest(user, name, scheme, message.digest.to_vec())?,
        Some(whole) => session.sign(user, name, scheme, whole)?,
    };
    session.release();
    sink.write_all(&used.value).map_err(Error::Output)?;
    let report = KeyUsed {
        name,
        key_type: Some(key_type.as_str()),
        user,
        version: used.version,
        ..KeyUsed::default()
    };
    finish(out, sink, Field::Signature, false, report)
}

/// `verify`: exit 0 if the signature verifies under some version, 1 if not.
pub(crate) fn verify(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    signature: &Path,
    input: Option<&Path>,
    scheme: Option<RsaScheme>,
) -> CmdResult {
    let session = &mut Session::new(cli)?;
    check_arguments(user, name, None)?;
    let sig_file = fs::File::open(signature).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::FileNotFound(signature.to_path_buf()),
        _ => Error::io(format!("cannot read {}", signature.display()), e),
    })?;
    // The message first: see `decrypt`.
    let through_agent = session.agent()?.is_some();
    let mut message = ToSign::read(through_agent, input)?;
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
    let mut check = |session: &mut Session, scheme: Option<RsaScheme>, sig: Vec<u8>| {
        if key_type.is_rsa() {
            session.verify_digest(user, name, scheme, message.digest.to_vec(), sig)
        } else {
            let whole = message.whole(key_type, "verify")?;
            session.verify(user, name, scheme, whole, sig)
        }
    };
    let version = check(session, scheme, sig.clone())?;
    // An RSA signature made with the other scheme is still invalid (exit 1): the
    // scheme asked for is the one checked. Saying so spares a puzzled user. A key that
    // cannot use the other scheme (an RSASSA-PSS key) gives no hint.
    let other_scheme = if version.is_none() && key_type.is_rsa() {
        let other = match scheme.unwrap_or_default() {
            RsaScheme::Pss => RsaScheme::Pkcs1v15,
            RsaScheme::Pkcs1v15 => RsaScheme::Pss,
        };
        match check(session, Some(other), sig) {
            Ok(Some(_)) => Some(other),
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
    out.emit(&Verified {
        name,
        user,
        valid: version.is_some(),
        verifies_with_scheme: other_scheme.map(RsaScheme::as_str),
        version,
    })?;
    Ok(if version.is_some() { 0 } else { 1 })
}
