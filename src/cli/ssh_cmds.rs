//! `ssh enable|disable|socket|list`, and the SSH parts of `gen --ssh`, `import --ssh`
//! (OpenSSH key files, with their passphrase), `list` and `unlock`.

use std::path::{Path, PathBuf};

use serde_json::json;
use zeroize::Zeroizing;

use keyvault::agent::client::AgentClient;
use keyvault::ops::{Request, Response};
use keyvault::ssh::format;
use keyvault::vault::ssh::{SshKey, SshMarkOutcome};
use keyvault::vault::types::KeyInfo;
use keyvault::{Error, KeyType, Result};

use super::args::{Cli, SshCommand};
use super::checks::check_lookup;
use super::output::{Out, escape};
use super::passphrase::PassphraseSource;
use super::{RunError, Session, unexpected, vault_path};

/// The environment variable that may hold the passphrase of an OpenSSH key file.
const ENV_KEY_PASSPHRASE: &str = "KEYVAULT_KEY_PASSPHRASE";

/// Refuses `--ssh` for a key type `ssh` cannot use, before anything is stored.
pub fn check_flag(ssh: bool, key_type: KeyType) -> Result<()> {
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
pub fn decrypt(
    material: Zeroizing<Vec<u8>>,
    file: &Option<PathBuf>,
    passphrase_file: &Option<PathBuf>,
) -> Result<Zeroizing<Vec<u8>>> {
    if !format::is_private_file(&material) || !format::is_encrypted(&material)? {
        return Ok(material);
    }
    let shown = match file.as_deref() {
        Some(f) if f != Path::new("-") => f.display().to_string(),
        _ => "on stdin".to_string(),
    };
    let source = PassphraseSource {
        file: passphrase_file.clone(),
        env_var: ENV_KEY_PASSPHRASE,
    };
    let prompt = format!("Passphrase of the OpenSSH key {shown}: ");
    let Some(passphrase) = source.unlock_if_available(&prompt)? else {
        return Err(Error::NoPassphrase(format!(
            "the OpenSSH key {shown} is protected by a passphrase and there is no terminal to ask it on; pass --key-passphrase-file FILE or set {ENV_KEY_PASSPHRASE}"
        )));
    };
    format::decrypt(&material, &passphrase, &shown)
}

/// Reports a key just stored by `gen` or `import`; with `--ssh`, marks it first and
/// reports that too.
pub fn print_added(
    out: &mut Out,
    s: &mut Session,
    verb: &str,
    key: &KeyInfo,
    ssh: bool,
) -> std::result::Result<(), RunError> {
    if !ssh {
        if out.json() {
            out.doc(key)?;
        } else {
            out.text(&super::output::stored_key(verb, key))?;
        }
        return Ok(());
    }
    let outcome = mark(s, &key.user, &key.name, true)?;
    if out.json() {
        out.doc(&json!({ "key": key, "ssh": outcome }))?;
    } else {
        out.text(&super::output::stored_key(verb, key))?;
        out.text(&mark_text(&outcome))?;
    }
    Ok(())
}

fn mark(s: &mut Session, user: &str, name: &str, enabled: bool) -> Result<SshMarkOutcome> {
    let Response::SshMark(outcome) = s.call(Request::SshMark {
        user: user.to_string(),
        name: name.to_string(),
        enabled,
    })?
    else {
        return Err(unexpected());
    };
    Ok(outcome)
}

fn mark_text(o: &SshMarkOutcome) -> String {
    let key = format!("{}/{}", escape(&o.user), escape(&o.name));
    let fp = o
        .fingerprint
        .as_deref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    match (o.enabled, o.changed) {
        (true, true) => format!("Serving {key} to ssh{fp}\n"),
        (true, false) => format!("{key} was already served to ssh{fp}\n"),
        (false, true) => format!("No longer serving {key} to ssh\n"),
        (false, false) => format!("{key} was not served to ssh\n"),
    }
}

/// `list`: the key table, then the keys served to ssh with their SSH fingerprints.
pub fn print_list(
    out: &mut Out,
    s: &mut Session,
    user: Option<&str>,
    keys: &[KeyInfo],
) -> std::result::Result<(), RunError> {
    let ssh = served(s, user)?;
    if out.json() {
        out.doc(&json!({ "keys": keys, "ssh": ssh }))?;
    } else {
        out.text(&super::output::key_table(keys))?;
        out.text(&served_text(&ssh))?;
    }
    Ok(())
}

/// The keys served to ssh (of `user` only, if given).
fn served(s: &mut Session, user: Option<&str>) -> Result<Vec<SshKey>> {
    let Response::SshKeys(keys) = s.call(Request::SshKeys)? else {
        return Err(unexpected());
    };
    Ok(keys
        .into_iter()
        .filter(|k| user.is_none_or(|u| u == k.user))
        .collect())
}

/// The lines `list` adds for keys served to ssh (nothing when there are none).
fn served_text(keys: &[SshKey]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let mut text = String::from("\nServed to ssh (SSH fingerprints):\n");
    for k in keys {
        text.push_str(&format!(
            "  {}/{}  {}  {}\n",
            escape(&k.user),
            escape(&k.name),
            k.key_type.0,
            k.fingerprint
        ));
    }
    text
}

/// Where the SSH socket of the agent listening on `main_socket` is, if it has one.
pub fn socket_path(main_socket: &Path) -> Option<String> {
    let path = keyvault::agent::ssh::socket_for(main_socket);
    path.exists().then(|| path.display().to_string())
}

/// The line `unlock` adds: where the SSH socket is, if the agent has one.
pub fn socket_text(main_socket: &Path) -> Option<String> {
    let path = keyvault::agent::ssh::socket_for(main_socket);
    path.exists().then(|| {
        format!(
            "SSH agent socket: {} (export SSH_AUTH_SOCK=\"$(keyvault ssh socket)\")\n",
            path.display()
        )
    })
}

/// Runs an `ssh` subcommand.
pub fn run(out: &mut Out, cli: &Cli, command: &SshCommand) -> std::result::Result<(), RunError> {
    match command {
        SshCommand::Enable { user, name } | SshCommand::Disable { user, name } => {
            check_lookup(user, Some(name))?;
            let enabled = matches!(command, SshCommand::Enable { .. });
            let mut s = Session::new(cli)?;
            let outcome = mark(&mut s, user, name, enabled)?;
            if out.json() {
                out.doc(&outcome)?;
            } else {
                out.text(&mark_text(&outcome))?;
            }
        }
        SshCommand::Socket => {
            let path = vault_path(cli)?;
            if !keyvault::store::layout::exists(&path) {
                return Err(Error::VaultNotFound(path).into());
            }
            let Some(client) = AgentClient::connect(&path)? else {
                return Err(Error::NoPassphrase(format!(
                    "the vault at {} is locked: no agent serves its keys to ssh; run `keyvault unlock` first",
                    path.display()
                ))
                .into());
            };
            let socket = keyvault::agent::ssh::socket_for(client.socket_path());
            if !socket.exists() {
                return Err(Error::NotLocked(format!(
                    "the agent of {} has no SSH socket (it was started by an older keyvault); run `keyvault lock`, then `keyvault unlock`",
                    path.display()
                ))
                .into());
            }
            if out.json() {
                out.doc(&json!({ "ssh_socket": socket.display().to_string() }))?;
            } else {
                out.text(&format!("{}\n", socket.display()))?;
            }
        }
        SshCommand::List => {
            let mut s = Session::new(cli)?;
            let keys = served(&mut s, None)?;
            if out.json() {
                out.doc(&json!({ "ssh_keys": keys }))?;
            } else if keys.is_empty() {
                out.text(
                    "No keys are served to ssh; mark one with `keyvault ssh enable USER NAME`\n",
                )?;
            } else {
                for k in &keys {
                    out.text(&format!("{}  {}\n", k.fingerprint, escape(&k.public_key)))?;
                }
            }
        }
    }
    Ok(())
}
