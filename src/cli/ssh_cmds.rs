//! `ssh enable|disable|socket|list`, and the SSH parts of `gen --ssh`, `import --ssh`
//! (OpenSSH key files, with their passphrase), `list` and `unlock`.

use std::path::Path;

use zeroize::Zeroizing;

use keyvault::agent::client::AgentClient;
use keyvault::ops::Operations;
use keyvault::ssh::format;
use keyvault::vault::ssh::SshKey;
use keyvault::{Error, KeyType, Result};

use super::args::{Cli, SshCommand};
use super::checks::check_lookup;
use super::output::Out;
use super::passphrase::PassphraseSource;
use super::report::{SshKeyList, SshMarked, SshSocket, Stored, StoredForSsh};
use super::session::{Session, vault_path};
use super::{CmdResult, SUCCESS};

/// The environment variable that may hold the passphrase of an OpenSSH key file.
const ENV_KEY_PASSPHRASE: &str = "KEYVAULT_KEY_PASSPHRASE";

/// Refuses `--ssh` for a key type `ssh` cannot use, before anything is stored.
pub(crate) fn check_flag(ssh: bool, key_type: KeyType) -> Result<()> {
    if !ssh || format::supports(key_type) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--ssh applies to ed25519 and rsa keys; {key_type} keys cannot be used with ssh"
    )))
}

/// An OpenSSH private key file protected by a passphrase, decrypted (asking for its
/// passphrase as for the vault's: from `--key-passphrase-file`,
/// `KEYVAULT_KEY_PASSPHRASE`, or the terminal). Anything else comes back as it is.
pub(crate) fn decrypt(
    material: Zeroizing<Vec<u8>>,
    file: Option<&Path>,
    passphrase_file: Option<&Path>,
) -> Result<Zeroizing<Vec<u8>>> {
    if !format::is_private_file(&material) || !format::is_encrypted(&material)? {
        return Ok(material);
    }
    let shown = match file {
        Some(f) if f != Path::new("-") => f.display().to_string(),
        _ => "on stdin".to_string(),
    };
    let source = PassphraseSource {
        file: passphrase_file.map(Path::to_path_buf),
        env_var: ENV_KEY_PASSPHRASE,
    };
    let prompt = format!("Passphrase of the OpenSSH key {shown}: ");
    let Some(passphrase) = source.unlock_if_available(&prompt)? else {
        return Err(Error::NoKeyPassphrase(format!(
            "the OpenSSH key {shown} is protected by a passphrase and there is no terminal to ask it on; pass --key-passphrase-file FILE or set {ENV_KEY_PASSPHRASE}"
        )));
    };
    format::decrypt(&material, &passphrase, &shown)
}

/// Prints a key just stored by `gen` or `import`; with `--ssh`, marks it first and
/// reports that too.
pub(crate) fn emit_stored(out: &mut Out, s: &mut Session, stored: Stored, ssh: bool) -> CmdResult {
    if ssh {
        let outcome = s.ssh_mark(&stored.key.user, &stored.key.name, true)?;
        out.emit(&StoredForSsh {
            key: stored,
            ssh: SshMarked(outcome),
        })?;
    } else {
        out.emit(&stored)?;
    }
    Ok(SUCCESS)
}

/// The keys served to ssh (of `user` only, if given), for `list`.
pub(crate) fn served(s: &mut Session, user: Option<&str>) -> Result<Vec<SshKey>> {
    Ok(s.ssh_keys()?
        .into_iter()
        .filter(|k| user.is_none_or(|u| u == k.user))
        .collect())
}

/// Where the SSH socket of the agent listening on `main_socket` is, if it has one.
pub(crate) fn socket_path(main_socket: &Path) -> Option<String> {
    let path = keyvault::agent::ssh::socket_for(main_socket);
    path.exists().then(|| path.display().to_string())
}

/// Runs an `ssh` subcommand.
pub(crate) fn run(out: &mut Out, cli: &Cli, command: &SshCommand) -> CmdResult {
    match command {
        SshCommand::Enable { user, name } | SshCommand::Disable { user, name } => {
            check_lookup(user, Some(name))?;
            let enabled = matches!(command, SshCommand::Enable { .. });
            let outcome = Session::new(cli)?.ssh_mark(user, name, enabled)?;
            out.emit(&SshMarked(outcome))?;
        }
        SshCommand::Socket => {
            let path = vault_path(cli)?;
            if !keyvault::Vault::exists(&path) {
                return Err(Error::VaultNotFound(path).into());
            }
            let Some(client) = AgentClient::connect(&path)? else {
                return Err(Error::Locked(path).into());
            };
            let Some(ssh_socket) = socket_path(client.socket_path()) else {
                return Err(Error::NotLocked(format!(
                    "the agent of {} has no SSH socket (it was started by an older keyvault); run `keyvault lock`, then `keyvault unlock`",
                    path.display()
                ))
                .into());
            };
            out.emit(&SshSocket { ssh_socket })?;
        }
        SshCommand::List => {
            let ssh_keys = Session::new(cli)?.ssh_keys()?;
            out.emit(&SshKeyList { ssh_keys })?;
        }
    }
    Ok(SUCCESS)
}
