//! The library's one error type and its mapping to the exit codes README.md lists.
//!
//! Variants carry context (a path, a user id, a key name) but never a secret: no
//! passphrase, key material, plaintext or master key ever reaches an error message.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::crypto::kdf::KdfParams;
use crate::crypto::sign::RsaScheme;
use crate::keytype::{KeyType, KeyUse};

mod details;

pub use details::{
    AgentAnswerProblem, EnvelopeProblem, HeaderProblem, KeyFamily, KeyPart, OpensshProblem,
    PublicKeyForm, RecordKind, RecordProblem, UserIdProblem,
};
use details::{key_part_name, public_key_given, use_instead};

/// Everything that can go wrong in keyvault.
///
/// The library says what happened, with the facts as typed fields; it never names a
/// flag or a command of the `keyvault` binary, which adds that advice itself. Errors
/// cross the agent's socket as this same value (serde), so a command answered by the
/// agent reports exactly what it would have reported alone.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// Bad arguments or bad input data (exit 2).
    #[error("{0}")]
    Usage(String),

    /// The passphrase did not unlock the vault (exit 3).
    #[error("wrong passphrase for the vault at {0}")]
    WrongPassphrase(PathBuf),
    /// The vault is locked and the operation needs its agent (no passphrase can help).
    #[error("the vault at {0} is locked: no agent holds its keys")]
    Locked(PathBuf),
    /// A key file being imported is protected by a passphrase and none is available.
    #[error("{0}")]
    NoKeyPassphrase(String),
    /// The passphrase of a key file being imported is wrong.
    #[error("wrong passphrase for the key file {0}")]
    WrongKeyPassphrase(String),

    /// No passphrase could be obtained (exit 4).
    #[error("{0}")]
    NoPassphrase(String),

    /// No vault at the given path (exit 5).
    #[error("no vault at {0}")]
    VaultNotFound(PathBuf),

    /// The vault holds no such user: no key of theirs, no revocation (exit 5).
    #[error("no such user {user:?}")]
    UserNotFound {
        /// The user id asked for.
        user: String,
        /// The ids the vault holds closest to it (same but for case, or a character or
        /// two away), for the hint.
        similar: Vec<String>,
    },

    /// No such key (exit 5).
    #[error("no key {name:?} for user {user:?}")]
    KeyNotFound {
        /// The user id.
        user: String,
        /// The key name.
        name: String,
    },

    /// No such version of a key (exit 5).
    #[error("key {name:?} of user {user:?} has no version {version}")]
    VersionNotFound {
        /// The user id.
        user: String,
        /// The key name.
        name: String,
        /// The version asked for.
        version: u32,
    },

    /// A file named by the user does not exist (exit 5).
    #[error("file not found: {0}")]
    FileNotFound(PathBuf),

    /// The user is revoked: their keys were destroyed and no new ones are made (exit 6).
    #[error(
        "user {user:?} was revoked at {revoked_at}: a revoked user has no keys and gets no new ones"
    )]
    UserRevoked {
        /// The user id.
        user: String,
        /// When the revocation was made (RFC 3339).
        revoked_at: String,
    },

    /// Something already exists and will not be overwritten (exit 6).
    #[error("{0}")]
    AlreadyExists(String),

    /// A key too weak to import or use (exit 6).
    #[error("{0}")]
    TooWeak(String),

    /// KDF parameters below OWASP's floor, and weak parameters were not allowed (exit 6).
    #[error("KDF parameters {params} are below the floor (m=19 MiB, t=2, p=1)")]
    WeakKdf {
        /// The parameters asked for.
        params: KdfParams,
    },

    /// The user already has a key of that name; keys are never overwritten (exit 6).
    #[error("{user} already has a key named {name:?}")]
    KeyExists {
        /// The user id.
        user: String,
        /// The key name.
        name: String,
    },

    /// A version of an AEAD key has used up its 2^32 random nonces and encrypts no more
    /// (exit 6): a new version (a rotation) continues.
    #[error(
        "version {version} of {user}/{name} has made 2^32 encryptions, the limit for random 96-bit nonces (NIST SP 800-38D)"
    )]
    NonceLimit {
        /// The user id.
        user: String,
        /// The key name.
        name: String,
        /// The version at its limit.
        version: u32,
    },

    /// Key material whose encoding could not be read (exit 2).
    #[error("cannot read the {family} key: {problem}")]
    UnreadableKey {
        /// Which kind of key was expected.
        family: KeyFamily,
        /// What is wrong with the input.
        problem: String,
    },

    /// A public key was given where the key type needs its private key (exit 2).
    #[error("{}", public_key_given(*.key_type, *.form))]
    PublicKeyGiven {
        /// The key type asked for.
        key_type: KeyType,
        /// How the public key came.
        form: PublicKeyForm,
    },

    /// Keys of this type cannot do what was asked (exit 2): an Ed25519 key encrypts
    /// nothing, a symmetric key signs nothing.
    #[error(
        "{key_type} keys cannot {}: {key_type} keys {}; {}",
        .wanted.as_str(),
        .key_type.uses_in_words(),
        use_instead(*.wanted)
    )]
    UnsupportedUse {
        /// The key's type.
        key_type: KeyType,
        /// What it was asked to do.
        wanted: KeyUse,
    },

    /// An RSASSA-PSS public key was asked to do what such a key does not: anything but
    /// verify PSS signatures (exit 2).
    #[error("this key is an RSASSA-PSS public key: it verifies PSS signatures only")]
    PssOnlyKey,

    /// The private part of a public-only key was asked for (exit 2).
    #[error("this key is public-only: it has no private part to export")]
    NoPrivatePart,

    /// An RSA key whose modulus has another size than its key type says (exit 2).
    #[error("the RSA key has a {found}-bit modulus but type {key_type} expects {expected} bits")]
    RsaSizeMismatch {
        /// The key type asked for.
        key_type: KeyType,
        /// The modulus size of that type, in bits.
        expected: usize,
        /// The modulus size of the key given, in bits.
        found: usize,
    },

    /// An RSA signature scheme was asked for a key type that has only one (exit 2).
    #[error(
        "the signature scheme {} applies to RSA keys; {key_type} keys have one signature scheme",
        .scheme.as_str()
    )]
    SchemeNotApplicable {
        /// The scheme asked for.
        scheme: RsaScheme,
        /// The key's type.
        key_type: KeyType,
    },

    /// A maximum token age was given for a key type whose ciphertexts carry no time
    /// (exit 2): only Fernet tokens do.
    #[error("a maximum age applies to fernet tokens only, not to {key_type} ciphertexts")]
    TtlNotApplicable {
        /// The key's type.
        key_type: KeyType,
    },

    /// A record, header, backup or ciphertext failed to authenticate or decode (exit 7).
    #[error("integrity failure: {0}")]
    Integrity(String),

    /// An AEAD envelope that is not one, is damaged or cut short, or failed to
    /// authenticate (exit 7).
    #[error("integrity failure: {0}")]
    BadEnvelope(EnvelopeProblem),

    /// The stored material of a key version does not decode (exit 7).
    #[error("integrity failure: the stored {}key does not decode", key_part_name(*.family, *.part))]
    DamagedKey {
        /// The kind of key, where the code that found it knows.
        family: Option<KeyFamily>,
        /// Which part.
        part: KeyPart,
    },

    /// The record of an asymmetric key has no public key (exit 7).
    #[error("integrity failure: the key record has no public key")]
    MissingPublicKey,

    /// A key record has no primary version (exit 7).
    #[error("integrity failure: a key record has no primary version")]
    NoPrimaryVersion,

    /// A record found under an index entry is not the one the entry names: records were
    /// moved between entries (exit 7).
    #[error("integrity failure: a {kind} record does not match its index entry")]
    IndexMismatch {
        /// Which kind of record.
        kind: RecordKind,
    },

    /// A Fernet token that authenticated but is older than the TTL asked for (exit 7).
    #[error("{0}")]
    Expired(String),

    /// The vault was written by a newer keyvault (exit 8).
    #[error(
        "the vault at {path} has format version {found}, newer than this keyvault supports ({supported}); upgrade keyvault"
    )]
    NewerFormat {
        /// The vault path.
        path: PathBuf,
        /// The version found in the vault.
        found: u32,
        /// The newest version this binary knows.
        supported: u32,
    },

    /// Another process holds the vault database open (exit 8).
    #[error("the vault at {0} is in use by another process")]
    VaultInUse(PathBuf),

    /// A revocation was committed but the compaction of `revoke --purge` failed after
    /// it (exit 8): the revocation stands.
    #[error("the revocation stands, but purging the destroyed keys' records failed: {0}")]
    PurgeFailed(String),

    /// The vault was opened read-only (its filesystem is read-only or full), and a
    /// change was asked for (exit 8). Nothing was changed.
    #[error(
        "the vault at {0} is open read-only (its filesystem is read-only or full); nothing was changed"
    )]
    ReadOnly(PathBuf),

    /// The vault is older than the newest state of it this machine has seen: an older
    /// copy was put in its place (exit 7).
    #[error(
        "the vault at {path} is an older copy than one this machine has seen (epoch {found}, {remembered} seen before): revocations and deletions made since may be undone"
    )]
    Rollback {
        /// The vault path.
        path: PathBuf,
        /// The vault's epoch, which every change raises.
        found: u64,
        /// The highest epoch seen on this machine.
        remembered: u64,
    },

    /// Writing the command's own output failed (exit 8; a reader that went away — a
    /// broken pipe — is no error, and the binary ends quietly).
    #[error("cannot write the output: {0}")]
    Output(
        #[source]
        #[serde(with = "io_text")]
        std::io::Error,
    ),

    /// An I/O error with what we were doing (exit 8).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        #[serde(with = "io_text")]
        source: std::io::Error,
    },

    /// The storage engine failed (exit 8).
    #[error("storage error: {0}")]
    Storage(String),

    /// Anything else (exit 8).
    #[error("internal error: {0}")]
    Internal(String),

    /// An error reported by the agent, with the exit code it mapped it to.
    #[error("{message}")]
    Remote {
        /// The exit code the agent mapped the error to.
        code: Exit,
        /// The message (never secret).
        message: String,
        /// The hint, if any.
        hint: Option<String>,
    },

    /// A directory meant for the agent's socket cannot be used (exit 8): another user
    /// made it first, or it is open to others.
    #[error("cannot use {path} for the agent's socket: {problem}")]
    AgentDir {
        /// The directory that cannot be used.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// The agent locked itself instead of serving the request, which was not carried
    /// out (exit 8): the directory at its vault path is no longer the vault it held.
    #[error("the agent of {path} locked itself without serving the request: {reason}")]
    AgentStopped {
        /// The vault path the agent held.
        path: PathBuf,
        /// What the agent found at the vault path (moved, deleted, replaced).
        reason: String,
    },

    /// `lock` found agents holding the vault that it could not stop (exit 8).
    #[error("an agent still holds the keys: {0}")]
    NotLocked(String),

    /// The running agent speaks another protocol version (exit 8).
    #[error("the running agent speaks protocol version {agent}, this keyvault speaks {client}")]
    ProtocolMismatch {
        /// The protocol version the agent speaks.
        agent: u32,
        /// The protocol version this program speaks.
        client: u32,
    },

    // New variants go last: errors cross the agent's socket encoded by variant index,
    // so an agent and a client built apart still agree on the variants before these.
    /// A user id that breaks the rules for ids (exit 2).
    #[error("{0}")]
    InvalidUserId(UserIdProblem),

    /// A key name that is not 1 to `max` of the characters A-Z a-z 0-9 . _ - (exit 2).
    #[error("invalid key name {name:?}: use 1 to {max} of the characters A-Z a-z 0-9 . _ -")]
    InvalidKeyName {
        /// The name given.
        name: String,
        /// The longest name allowed, in characters.
        max: usize,
    },

    /// A revocation reason longer than allowed (exit 2).
    #[error("the reason is {len} bytes long; at most {max} are allowed")]
    ReasonTooLong {
        /// Its length, in bytes.
        len: usize,
        /// The longest allowed, in bytes.
        max: usize,
    },

    /// A revocation reason with a control character other than newline and tab (exit 2).
    #[error("the reason contains a control character")]
    ReasonControlCharacter,

    /// A stored record (a key, the header, the audit log, a backup's header...) that
    /// does not decode (exit 7).
    #[error("integrity failure: a {record} record {problem}")]
    BadRecord {
        /// What the record holds, in words ("key", "audit head", "backup header").
        record: String,
        /// What is wrong with it.
        problem: RecordProblem,
    },

    /// The agent's answer could not be used (exit 8): the connection closed, or the
    /// message was too large, malformed or not an answer to the request.
    #[error("internal error: {0}")]
    AgentAnswer(AgentAnswerProblem),

    /// The vault's header file is damaged, relabelled or altered (exit 7).
    #[error("integrity failure: {0}")]
    BadHeaderFile(HeaderProblem),

    /// An OpenSSH key file or line that cannot be imported as the key type asked for,
    /// or a key that has no OpenSSH form (exit 2).
    #[error("{0}")]
    Openssh(OpensshProblem),
}

/// I/O errors cross the agent's socket as their text: the peer needs to show them, not
/// to act on their kind.
mod io_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(e: &std::io::Error, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&e.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::io::Error, D::Error> {
        Ok(std::io::Error::other(String::deserialize(d)?))
    }
}

thread_local! {
    /// Where the last panic on this thread happened (see [`note_panic`]).
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// keyvault's panic hook: notes where a panic happened (file, line and column; never
/// its message, which could quote data) for the error that reports it, and prints
/// nothing itself (no backtrace reaches the user). Installed by the binary.
pub fn note_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    PANIC_LOCATION.with(|cell| *cell.borrow_mut() = location);
}

/// Where the last panic on this thread happened, as [`note_panic`] noted it.
pub fn take_panic_location() -> Option<String> {
    PANIC_LOCATION.with(|cell| cell.borrow_mut().take())
}

/// The exit codes of the command line (README lists them), one per kind of outcome.
/// Every error maps to exactly one, in [`Error::exit_code`]; errors cross the agent's
/// socket with theirs, and a code outside this set from a peer is [`Exit::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum Exit {
    /// Success (`is-revoked`: revoked; `verify`: valid).
    Ok = 0,
    /// A negative answer (`is-revoked`: not revoked; `verify`: invalid).
    Negative = 1,
    /// Bad flags, arguments or input data.
    Usage = 2,
    /// The passphrase did not unlock the vault.
    WrongPassphrase = 3,
    /// No passphrase could be read: no file, no variable, no terminal.
    NoPassphrase = 4,
    /// Not found: vault, user, key, version, file.
    NotFound = 5,
    /// Refused: revoked, already exists, too weak.
    Refused = 6,
    /// Integrity failure: corrupted or tampered data.
    Integrity = 7,
    /// Any other I/O or internal error.
    Other = 8,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit for a status number from elsewhere (an older agent's answer, a child's
    /// acknowledgement): anything not in the table is [`Exit::Other`], never success.
    pub(crate) fn from_number(n: i64) -> Exit {
        match n {
            1 => Exit::Negative,
            2 => Exit::Usage,
            3 => Exit::WrongPassphrase,
            4 => Exit::NoPassphrase,
            5 => Exit::NotFound,
            6 => Exit::Refused,
            7 => Exit::Integrity,
            // 0 is never the exit of an error.
            _ => Exit::Other,
        }
    }
}

/// The result type of the library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The process exit code for this error, as README.md lists them. This is the one
    /// place where errors become exit codes.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Usage(_)
            | Error::InvalidUserId(_)
            | Error::InvalidKeyName { .. }
            | Error::ReasonTooLong { .. }
            | Error::ReasonControlCharacter
            | Error::Openssh(_)
            | Error::UnreadableKey { .. }
            | Error::PublicKeyGiven { .. }
            | Error::NoPrivatePart
            | Error::UnsupportedUse { .. }
            | Error::PssOnlyKey
            | Error::RsaSizeMismatch { .. }
            | Error::SchemeNotApplicable { .. }
            | Error::TtlNotApplicable { .. } => Exit::Usage,
            Error::WrongPassphrase(_) | Error::WrongKeyPassphrase(_) => Exit::WrongPassphrase,
            Error::NoPassphrase(_) | Error::Locked(_) | Error::NoKeyPassphrase(_) => {
                Exit::NoPassphrase
            }
            Error::VaultNotFound(_)
            | Error::UserNotFound { .. }
            | Error::KeyNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::FileNotFound(_) => Exit::NotFound,
            Error::UserRevoked { .. }
            | Error::AlreadyExists(_)
            | Error::KeyExists { .. }
            | Error::TooWeak(_)
            | Error::WeakKdf { .. }
            | Error::NonceLimit { .. } => Exit::Refused,
            Error::Integrity(_)
            | Error::BadEnvelope(_)
            | Error::DamagedKey { .. }
            | Error::MissingPublicKey
            | Error::NoPrimaryVersion
            | Error::IndexMismatch { .. }
            | Error::BadRecord { .. }
            | Error::BadHeaderFile(_)
            | Error::Expired(_)
            | Error::Rollback { .. } => Exit::Integrity,
            Error::Remote { code, .. } => *code,
            Error::NewerFormat { .. }
            | Error::ProtocolMismatch { .. }
            | Error::AgentDir { .. }
            | Error::AgentStopped { .. }
            | Error::NotLocked(_)
            | Error::VaultInUse(_)
            | Error::ReadOnly(_)
            | Error::PurgeFailed(_)
            | Error::Output(_)
            | Error::Io { .. }
            | Error::Storage(_)
            | Error::AgentAnswer(_)
            | Error::Internal(_) => Exit::Other,
        }
    }

    /// Whether this is the command's own output meeting a reader that went away.
    pub fn is_broken_output_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
