//! The library's one error type and its mapping to the exit codes README.md lists.
//!
//! Variants carry context (a path, a user id, a key name) but never a secret: no
//! passphrase, key material, plaintext or master key ever reaches an error message.

use std::path::PathBuf;

/// Everything that can go wrong in keyvault.
#[derive(Debug, thiserror::Error)]
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
        /// When (RFC 3339).
        revoked_at: String,
    },

    /// Something already exists and will not be overwritten (exit 6).
    #[error("{0}")]
    AlreadyExists(String),

    /// KDF parameters below the floor without `--allow-weak-kdf`, or a key too weak to
    /// import (exit 6).
    #[error("{0}")]
    TooWeak(String),

    /// A record, header, backup or ciphertext failed to authenticate or decode (exit 7).
    #[error("integrity failure: {0}")]
    Integrity(String),

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
        /// The vault's epoch.
        found: u64,
        /// The highest epoch seen on this machine.
        remembered: u64,
    },

    /// Writing the command's own output failed (exit 8; a reader that went away — a
    /// broken pipe — is no error, and the binary ends quietly).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),

    /// An I/O error with what we were doing (exit 8).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
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
        /// The exit code.
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
        /// The directory.
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
        /// Why.
        reason: String,
    },

    /// `lock` found agents holding the vault that it could not stop (exit 8).
    #[error("an agent still holds the keys: {0}")]
    NotLocked(String),

    /// The running agent speaks another protocol version (exit 8).
    #[error("the running agent speaks protocol version {agent}, this keyvault speaks {client}")]
    ProtocolMismatch {
        /// The agent's version.
        agent: u32,
        /// Ours.
        client: u32,
    },
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
    /// Wrong passphrase.
    WrongPassphrase = 3,
    /// No passphrase available.
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
    pub fn from_number(n: i64) -> Exit {
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
            Error::Usage(_) => Exit::Usage,
            Error::WrongPassphrase(_) | Error::WrongKeyPassphrase(_) => Exit::WrongPassphrase,
            Error::NoPassphrase(_) | Error::Locked(_) | Error::NoKeyPassphrase(_) => {
                Exit::NoPassphrase
            }
            Error::VaultNotFound(_)
            | Error::UserNotFound { .. }
            | Error::KeyNotFound { .. }
            | Error::VersionNotFound { .. }
            | Error::FileNotFound(_) => Exit::NotFound,
            Error::UserRevoked { .. } | Error::AlreadyExists(_) | Error::TooWeak(_) => {
                Exit::Refused
            }
            Error::Integrity(_) | Error::Expired(_) | Error::Rollback { .. } => Exit::Integrity,
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
            | Error::Internal(_) => Exit::Other,
        }
    }

    /// A second line telling the user what to do, where one helps.
    pub fn hint(&self) -> Option<String> {
        self.static_hint()
            .map(str::to_string)
            .or_else(|| match self {
                Error::Remote { hint, .. } => hint.clone(),
                Error::UserNotFound { similar, .. } if !similar.is_empty() => {
                    let ids: Vec<String> = similar.iter().map(|id| format!("{id:?}")).collect();
                    Some(format!("the vault holds {}", ids.join(", ")))
                }
                _ => None,
            })
    }

    fn static_hint(&self) -> Option<&'static str> {
        match self {
            Error::ProtocolMismatch { .. } => Some(
                "run `keyvault lock`, then `keyvault unlock` to start an agent of this version",
            ),
            Error::NoPassphrase(_) => Some(
                "pass one with --passphrase-file FILE, KEYVAULT_PASSPHRASE_FILE or KEYVAULT_PASSPHRASE, or run from a terminal",
            ),
            Error::VaultNotFound(_) => {
                Some("create one with `keyvault init`, or point --vault / KEYVAULT_PATH at it")
            }
            Error::Locked(_) => Some("run `keyvault unlock` first"),
            Error::VaultInUse(_) => {
                Some("wait for the other keyvault process to finish, or use the running agent")
            }
            Error::WrongPassphrase(_) => Some("check the passphrase and try again"),
            Error::AgentDir { .. } => Some(
                "remove that directory, or set XDG_RUNTIME_DIR to a private directory of yours; commands still work without an agent",
            ),
            Error::AgentStopped { .. } => Some(
                "run the command again: without the agent it opens the vault itself; `keyvault unlock` starts an agent for the vault now there",
            ),
            Error::PurgeFailed(_) => Some(
                "run `keyvault compact` once the cause is fixed, so that the destroyed keys' sealed records leave the vault's files",
            ),
            Error::Rollback { .. } => Some(
                "if you put this copy back on purpose, run one command with --accept-rollback (it is recorded in the audit log)",
            ),
            _ => None,
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
