//! The package's exceptions: one class per exit code of the command line, and the
//! conversion of a library error into one of them, with its `exit_code` and `hint`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use keyvault::Error;
use keyvault::error::Exit;

create_exception!(
    keyvault,
    KeyvaultError,
    PyException,
    "Base class of every error keyvault raises. `exit_code` is the command line's exit code for the same failure; `hint`, when not None, says what to do."
);
create_exception!(
    keyvault,
    UsageError,
    KeyvaultError,
    "Bad arguments or input data (exit code 2)."
);
create_exception!(
    keyvault,
    WrongPassphrase,
    KeyvaultError,
    "The passphrase does not unlock the vault (exit code 3)."
);
create_exception!(
    keyvault,
    Locked,
    KeyvaultError,
    "The vault is locked and no passphrase is available (exit code 4)."
);
create_exception!(
    keyvault,
    NotFound,
    KeyvaultError,
    "No such vault, user, key, version or file (exit code 5)."
);
create_exception!(
    keyvault,
    Refused,
    KeyvaultError,
    "The vault refuses the change: the user is revoked, the key exists, the KDF is too weak (exit code 6)."
);
create_exception!(
    keyvault,
    Revoked,
    Refused,
    "The user was revoked: a revoked user has no keys and gets no new ones (exit code 6)."
);
create_exception!(
    keyvault,
    AlreadyExists,
    Refused,
    "Something already exists and is never overwritten (exit code 6)."
);
create_exception!(
    keyvault,
    IntegrityError,
    KeyvaultError,
    "A vault record, backup or ciphertext failed to authenticate or decode (exit code 7)."
);
create_exception!(
    keyvault,
    InternalError,
    KeyvaultError,
    "An I/O, storage, agent or internal failure (exit code 8)."
);
create_exception!(
    keyvault,
    VaultInUse,
    InternalError,
    "Another process has the vault open (exit code 8); close it, or unlock the vault so every process goes through its agent."
);

/// The Python exception for a library error: its class follows the exit code, its
/// message is the error's text (which never holds a secret), and it carries
/// `exit_code` and `hint`.
pub(crate) fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    let code = e.exit_code();
    let class = match (e, code) {
        (Error::UserRevoked { .. }, _) => py.get_type::<Revoked>(),
        (Error::AlreadyExists(_) | Error::KeyExists { .. }, _) => py.get_type::<AlreadyExists>(),
        (Error::VaultInUse(_), _) => py.get_type::<VaultInUse>(),
        (Error::AgentStopped { .. }, _) => py.get_type::<Locked>(),
        (_, Exit::Usage) => py.get_type::<UsageError>(),
        (_, Exit::WrongPassphrase) => py.get_type::<WrongPassphrase>(),
        (_, Exit::NoPassphrase) => py.get_type::<Locked>(),
        (_, Exit::NotFound) => py.get_type::<NotFound>(),
        (_, Exit::Refused) => py.get_type::<Refused>(),
        (_, Exit::Integrity) => py.get_type::<IntegrityError>(),
        (_, Exit::Ok | Exit::Negative | Exit::Other) => py.get_type::<InternalError>(),
    };
    let built = class.call1((e.to_string(),)).and_then(|err| {
        err.setattr("exit_code", code.code())?;
        err.setattr("hint", hint(e))?;
        Ok(err)
    });
    match built {
        Ok(err) => PyErr::from_value(err),
        Err(failed) => failed,
    }
}

/// The `hint` a Python exception carries: what to do about `e`, in the words of
/// this package (its parameters, `keyvault.create()`), where the command line's advice
/// would name its own flags. The library's errors say only what happened.
fn hint(e: &Error) -> Option<String> {
    let fixed = match e {
        Error::ProtocolMismatch { .. } => {
            "run `keyvault lock`, then `keyvault unlock` to start an agent of this version"
        }
        Error::NoPassphrase(_) => {
            "pass passphrase= or passphrase_file=, or set KEYVAULT_PASSPHRASE_FILE or KEYVAULT_PASSPHRASE"
        }
        Error::VaultNotFound(_) => {
            "create one with keyvault.create() or `keyvault init`, or pass its path or set KEYVAULT_PATH"
        }
        Error::Locked(_) => "run `keyvault unlock` first",
        Error::VaultInUse(_) => {
            "wait for the other keyvault process to finish, or use the running agent"
        }
        Error::WrongPassphrase(_) => "check the passphrase and try again",
        Error::AgentDir { .. } => {
            "remove that directory, or set XDG_RUNTIME_DIR to a private directory of yours; vaults still open without an agent"
        }
        Error::AgentStopped { .. } => {
            "open the vault again: without the agent it is opened directly; `keyvault unlock` starts an agent for the vault now there"
        }
        Error::PurgeFailed(_) => {
            "run `keyvault compact` once the cause is fixed, so that the destroyed keys' sealed records leave the vault's files"
        }
        Error::Rollback { .. } => {
            "if you put this copy back on purpose, open it once with accept_rollback=True (it is recorded in the audit log)"
        }
        Error::WeakKdf { .. } => "pass allow_weak_kdf=True to use them anyway",
        Error::KeyExists { .. } => "pick another name, or rotate or delete the key",
        Error::PublicKeyGiven { .. } => "pass public_only=True to import a public-only key",
        Error::NoPrivatePart => "export its public key with public=True",
        Error::RsaSizeMismatch { found, .. } => return Some(format!("use key type rsa-{found}")),
        Error::NonceLimit { user, name, .. } => {
            return Some(format!("rotate the key: Vault.rotate({user:?}, {name:?})"));
        }
        Error::Remote { hint, .. } => return hint.clone(),
        Error::UserNotFound { similar, .. } if !similar.is_empty() => {
            let ids: Vec<String> = similar.iter().map(|id| format!("{id:?}")).collect();
            return Some(format!("the vault holds {}", ids.join(", ")));
        }
        _ => return None,
    };
    Some(fixed.to_string())
}
