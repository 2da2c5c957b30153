//! The command layer: turns parsed arguments into vault operations and prints their
//! reports. It never touches the store or raw key bytes beyond passing them through.
//!
//! [`run`] only dispatches: each command is one function in the module of its family
//! (`key_cmds`, `keyuse_cmds`, `revoke_cmds`, `lifecycle_cmds`, `agent_cmds`, `demo`).
//! A command checks its arguments, runs its operations through a [`session::Session`]
//! (the agent when one holds the vault, else the vault opened here; both are
//! [`keyvault::ops::Operations`]), builds a report from `report/` and hands it to
//! [`output::Out::emit`], which prints it as text or as JSON.
//!
//! Adding a command:
//! 1. its clap variant in `args.rs`;
//! 2. a function `fn name(out: &mut Out, cli: &Cli, …) -> CmdResult` in its family's
//!    module (or a new `<family>_cmds.rs`): the checks that need no vault first, then
//!    `Session::new(cli)?` and the [`keyvault::ops::Operations`] methods it needs (a new
//!    vault operation is a `Request` and a `Response` variant, its arm in
//!    `Vault::execute`, and one method on `Operations`);
//! 3. its report in `report/<family>.rs`: a struct that derives `Serialize` (the JSON
//!    document) and implements `Display` (the text) and `Report`, re-exported from
//!    `report.rs`; the command ends with `out.emit(&report)?; Ok(SUCCESS)`;
//! 4. one arm in [`run`] that calls the function.

pub(crate) mod advice;
mod agent_cmds;
pub(crate) mod args;
mod checks;
mod demo;
mod key_cmds;
mod keyuse_cmds;
mod keyuse_io;
mod lifecycle_cmds;
mod output;
mod passphrase;
mod report;
mod revoke_cmds;
mod session;
mod ssh_cmds;

use std::io;

use keyvault::Error;
use keyvault::vault::ExportOptions;

use args::{Cli, Command};
use output::Out;

pub(crate) use session::OPENED_READ_ONLY;

/// How a command ended when it did not fail: 0, or 1 for a negative answer.
pub(crate) type ExitCode = i32;

/// The exit code of a command that did what was asked.
const SUCCESS: ExitCode = 0;

/// What a command returns.
type CmdResult = std::result::Result<ExitCode, RunError>;

/// Runs one command. I/O errors on stdout come back as `io::Error` so that the caller
/// can treat a closed pipe as success.
pub(crate) fn run(cli: Cli) -> CmdResult {
    let out = &mut Out::new(cli.json);
    let cli = &cli;
    let code = match &cli.command {
        Command::Init(a) => lifecycle_cmds::init(out, cli, &a.kdf),
        Command::Status => agent_cmds::status(out, cli),
        Command::Unlock {
            timeout,
            max_lifetime,
        } => agent_cmds::unlock(out, cli, *timeout, *max_lifetime),
        Command::Lock { all } => agent_cmds::lock(out, cli, *all),
        Command::Ssh { command } => ssh_cmds::run(out, cli, command),
        Command::Agent {
            idle_secs,
            lifetime_secs,
        } => agent_cmds::serve(cli, *idle_secs, *lifetime_secs),
        Command::Gen {
            user,
            key_type,
            name,
            ssh,
        } => key_cmds::generate(out, cli, user, *key_type, name.as_deref(), *ssh),
        Command::Import {
            user,
            name,
            key_type,
            file,
            public,
            ssh,
            key_passphrase_file,
        } => key_cmds::import(
            out,
            cli,
            user,
            name,
            *key_type,
            file.as_deref(),
            key_cmds::ImportFlags {
                public: *public,
                ssh: *ssh,
                key_passphrase_file: key_passphrase_file.as_deref(),
            },
        ),
        Command::Export {
            user,
            name,
            public,
            version,
            format,
            out: file,
        } => key_cmds::export(
            out,
            cli,
            user,
            name,
            ExportOptions {
                public: *public,
                version: *version,
                format: format.map(Into::into),
            },
            file.as_deref(),
        ),
        Command::List { user } => key_cmds::list(out, cli, user.as_deref()),
        Command::Delete {
            user,
            name,
            version,
        } => key_cmds::delete(out, cli, user, name, *version),
        Command::Rotate { user, name } => key_cmds::rotate(out, cli, user, name),
        Command::Encrypt {
            user,
            name,
            input,
            out: output,
        } => keyuse_cmds::encrypt(out, cli, user, name, input.as_deref(), output.as_deref()),
        Command::Decrypt {
            user,
            name,
            input,
            out: output,
            ttl,
        } => keyuse_cmds::decrypt(
            out,
            cli,
            user,
            name,
            input.as_deref(),
            output.as_deref(),
            *ttl,
        ),
        Command::Sign {
            user,
            name,
            input,
            out: output,
            scheme,
        } => keyuse_cmds::sign(
            out,
            cli,
            user,
            name,
            input.as_deref(),
            output.as_deref(),
            scheme.map(Into::into),
        ),
        Command::Verify {
            user,
            name,
            signature,
            input,
            scheme,
        } => keyuse_cmds::verify(
            out,
            cli,
            user,
            name,
            signature,
            input.as_deref(),
            scheme.map(Into::into),
        ),
        Command::Revoke {
            user,
            reason,
            purge,
        } => revoke_cmds::revoke(out, cli, user, reason.as_deref(), *purge),
        Command::IsRevoked { user } => revoke_cmds::is_revoked(out, cli, user),
        Command::Revoked => revoke_cmds::revoked(out, cli),
        Command::Passwd {
            new_passphrase_file,
            kdf,
        } => lifecycle_cmds::passwd(out, cli, new_passphrase_file.as_deref(), kdf),
        Command::Backup { file } => lifecycle_cmds::backup(out, cli, file),
        Command::Restore {
            file,
            to,
            revocations_from,
            revocations_passphrase_file,
        } => lifecycle_cmds::restore(
            out,
            cli,
            file,
            to,
            revocations_from.as_deref(),
            revocations_passphrase_file.as_deref(),
        ),
        Command::Check { backup: None } => lifecycle_cmds::check(out, cli),
        Command::Check { backup: Some(file) } => lifecycle_cmds::check_backup(out, cli, file),
        Command::Compact => lifecycle_cmds::compact(out, cli),
        Command::Audit { verify, since } => lifecycle_cmds::audit(out, cli, *verify, *since),
        Command::Demo => demo::run(out),
        Command::Completions { shell } => completions(out, *shell),
        Command::Man => man(out),
    }?;
    out.flush()?;
    Ok(code)
}

/// `completions SHELL`: the script, from the clap definitions.
fn completions(out: &mut Out, shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = checks::visible_commands();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "keyvault", &mut buf);
    out.bytes(&buf)?;
    Ok(SUCCESS)
}

/// `man`: the manual page (roff), from the same clap definitions as the completions.
fn man(out: &mut Out) -> CmdResult {
    let mut buf = Vec::new();
    clap_mangen::Man::new(checks::visible_commands()).render(&mut buf)?;
    out.bytes(&buf)?;
    Ok(SUCCESS)
}

/// Why a command failed: a vault error, or stdout went away.
pub(crate) enum RunError {
    /// A library error, mapped to its exit code.
    Vault(Error),
    /// A failure whose `--json` document was already printed (stderr still gets the
    /// `error:` line; stdout gets no second document).
    Reported(Error),
    /// Writing to stdout failed.
    Stdout(io::Error),
}

impl RunError {
    /// The failure of a command that printed its report first (`check` finding
    /// problems, `lock` failing to stop an agent): with `--json` that report is the
    /// one document on stdout.
    fn after_report(out: &Out, e: Error) -> RunError {
        if out.json() {
            RunError::Reported(e)
        } else {
            RunError::Vault(e)
        }
    }
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Vault(e)
    }
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Stdout(e)
    }
}
