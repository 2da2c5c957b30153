//! The checks a command makes before it asks for a passphrase: the form of ids and
//! names, output files that must not exist, where `init` may make a vault, and binary
//! output that must not go to a terminal. Each costs no key derivation, so a mistake is
//! reported at once, also when no passphrase source exists at all. Also the command
//! line that completion scripts offer (without the hidden `agent` command).

use std::io;
use std::path::Path;

use keyvault::vault;
use keyvault::{Error, Result};

use super::args::Cli;

/// The command line without its hidden subcommand (`agent`, run by `unlock`): what
/// completion scripts offer.
pub(crate) fn visible_commands() -> clap::Command {
    let full = <Cli as clap::CommandFactory>::command();
    let mut cmd = clap::Command::new("keyvault")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd.version(env!("CARGO_PKG_VERSION"))
}

/// Refuses to make a vault where a file, or a directory holding anything but what a
/// killed `init` leaves (which `init` replaces), is: before any passphrase is asked for.
/// keyvault never mixes its files with others.
pub(crate) fn check_vault_dir_free(path: &Path) -> Result<()> {
    if !keyvault::vault::can_create_in(path)? {
        return Err(Error::AlreadyExists(format!(
            "{} exists and is not empty; refusing to create a vault there (init makes a vault in a new or empty directory)",
            path.display()
        )));
    }
    Ok(())
}

/// Refuses a file that exists, before any passphrase is asked for: outputs are never
/// overwritten.
pub(crate) fn check_new_file(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(Error::AlreadyExists(format!(
            "{} exists; refusing to overwrite it",
            path.display()
        )));
    }
    Ok(())
}

/// Checks a user id (and a key name) that names something in the vault, before any
/// passphrase is asked for: its form only, since an id stored before today's rules is
/// still found by its exact spelling (the vault checks the rest).
pub(crate) fn check_lookup(user: &str, name: Option<&str>) -> Result<()> {
    vault::validate::user_id(user)?;
    if let Some(name) = name {
        vault::validate::key_name(name)?;
    }
    Ok(())
}

/// Refuses to write binary output (`what`) to a terminal, where it would garble the
/// screen and could leave secret bytes in its scrollback: `--out FILE` or a pipe.
pub(crate) fn refuse_binary_to_terminal(what: &str) -> Result<()> {
    use std::io::IsTerminal as _;
    if io::stdout().is_terminal() {
        return Err(Error::Usage(format!(
            "{what} writes binary output, and stdout is a terminal; write it to a file with --out FILE, or pipe it"
        )));
    }
    Ok(())
}
