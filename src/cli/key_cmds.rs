//! `gen`, `import`, `export`, `list`, `delete` and `rotate`: adding, reading and
//! removing keys.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use keyvault::KeyType;
use keyvault::crypto::keys::ExportFormat;
use keyvault::ops::Operations;
use keyvault::vault::{self, ExportOptions};
use keyvault::{Error, Result};

use super::args::Cli;
use super::checks::{self, check_lookup, check_new_file};
use super::output::Out;
use super::report::{Deleted, Exported, KeyList, Rotated, Stored, Written};
use super::session::Session;
use super::ssh_cmds;
use super::{CmdResult, RunError, SUCCESS};

/// The largest key file `import` reads.
const MAX_IMPORT_BYTES: u64 = 1024 * 1024;

/// `gen USER [--type TYPE] [--name NAME] [--ssh]`.
pub(crate) fn generate(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    key_type: KeyType,
    name: Option<&str>,
    ssh: bool,
) -> CmdResult {
    ssh_cmds::check_flag(ssh, key_type)?;
    vault::validate::new_user_id(user)?;
    vault::validate::key_name(name.unwrap_or(key_type.as_str()))?;
    let mut s = Session::new(cli)?;
    let key = s.generate(user, name, key_type)?;
    ssh_cmds::emit_stored(
        out,
        &mut s,
        Stored {
            verb: "Stored",
            key,
        },
        ssh,
    )
}

/// How `import` reads its key, besides the file.
pub(crate) struct ImportFlags<'a> {
    /// Accept a public key alone.
    pub public: bool,
    /// Mark the key for SSH.
    pub ssh: bool,
    /// Where the passphrase of a protected OpenSSH key file is.
    pub key_passphrase_file: Option<&'a Path>,
}

/// `import USER NAME --type TYPE [--file FILE] [--public] [--ssh]
/// [--key-passphrase-file FILE]`.
pub(crate) fn import(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    key_type: KeyType,
    file: Option<&Path>,
    flags: ImportFlags<'_>,
) -> CmdResult {
    ssh_cmds::check_flag(flags.ssh, key_type)?;
    vault::validate::new_user_id(user)?;
    vault::validate::key_name(name)?;
    let material = ssh_cmds::decrypt(read_input(file)?, file, flags.key_passphrase_file)?;
    // The key is read and checked before the passphrase is asked for; the vault reads
    // it again to store it.
    keyvault::crypto::keys::import(key_type, &material, flags.public)?;
    let mut s = Session::new(cli)?;
    let key = s.import(user, name, key_type, material, flags.public)?;
    let stored = Stored {
        verb: "Imported",
        key,
    };
    ssh_cmds::emit_stored(out, &mut s, stored, flags.ssh)
}

/// `export USER NAME [--public] [--version V] [--format F] [--out FILE]`.
pub(crate) fn export(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    options: ExportOptions,
    out_file: Option<&Path>,
) -> CmdResult {
    check_lookup(user, Some(name))?;
    if let Some(f) = out_file {
        check_new_file(f)?;
    } else if matches!(options.format, Some(ExportFormat::Der)) && !out.json() {
        checks::refuse_binary_to_terminal("export --format der")?;
    }
    let mut s = Session::new(cli)?;
    let material = s.export(user, name, options.clone())?;
    let written = match out_file {
        Some(f) => write_secret_file(f, &material).map_err(RunError::from),
        None => out
            .raw(&material, || Exported {
                material: Exported::material(&material),
                name,
                user,
            })
            .map_err(RunError::from),
    };
    if let Err(e) = written {
        // The key left the vault but reached nothing: the audit log says so.
        let error = match &e {
            RunError::Vault(e) | RunError::Reported(e) => e.to_string(),
            RunError::Stdout(e) => format!("cannot write to stdout: {e}"),
        };
        let _ = s.export_failed(user, name, options, error);
        return Err(e);
    }
    if let Some(f) = out_file {
        out.emit(&Written {
            written: f.display().to_string(),
        })?;
    }
    Ok(SUCCESS)
}

/// `list [USER]`.
pub(crate) fn list(out: &mut Out, cli: &Cli, user: Option<&str>) -> CmdResult {
    if let Some(user) = user {
        check_lookup(user, None)?;
    }
    let mut s = Session::new(cli)?;
    let keys = s.list(user)?;
    let ssh = ssh_cmds::served(&mut s, user)?;
    out.emit(&KeyList { keys, ssh })?;
    Ok(SUCCESS)
}

/// `delete USER NAME [--version V]`.
pub(crate) fn delete(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    name: &str,
    version: Option<u32>,
) -> CmdResult {
    check_lookup(user, Some(name))?;
    let mut s = Session::new(cli)?;
    let deleted = match version {
        Some(v) => s.delete_version(user, name, v)?,
        None => s.delete(user, name)?,
    };
    out.emit(&Deleted { deleted, version })?;
    Ok(SUCCESS)
}

/// `rotate USER NAME`.
pub(crate) fn rotate(out: &mut Out, cli: &Cli, user: &str, name: &str) -> CmdResult {
    check_lookup(user, Some(name))?;
    let key = Session::new(cli)?.rotate(user, name)?;
    out.emit(&Rotated(key))?;
    Ok(SUCCESS)
}

fn read_input(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    match file {
        None => {
            io::stdin()
                .take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read stdin", e))?;
        }
        Some(p) if p == Path::new("-") => {
            io::stdin()
                .take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("cannot read stdin", e))?;
        }
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::FileNotFound(p.to_path_buf()),
                _ => Error::io(format!("cannot read {}", p.display()), e),
            })?;
            f.take(MAX_IMPORT_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
        }
    }
    if buf.len() as u64 > MAX_IMPORT_BYTES {
        return Err(Error::Usage("the key input is larger than 1 MiB".into()));
    }
    Ok(buf)
}

/// Writes secret material to a new file created 0600; never overwrites.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!(
                "{} exists; refusing to overwrite it",
                path.display()
            )),
            _ => Error::io(format!("cannot create {}", path.display()), e),
        })?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}
