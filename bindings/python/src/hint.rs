//! The `hint` a Python exception carries: what to do about an error, in the words of
//! this package (its parameters, `keyvault.create()`), where the command line's advice
//! would name its own flags. The library's errors say only what happened.

use keyvault::Error;

/// The hint for `e`, where one helps.
pub(crate) fn hint(e: &Error) -> Option<String> {
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
