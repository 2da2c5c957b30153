//! `init`, `passwd`, `backup`, `restore`, `check`, `compact` and `audit`: the commands
//! that act on the vault as a whole.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use keyvault::agent::client::{AgentClient, OpOutcome};
use keyvault::ops::{Operations, Request};
use keyvault::vault::Vault;
use keyvault::vault::lifecycle;
use keyvault::{Error, Result};

use super::args::{Cli, KdfArgs};
use super::checks::{check_new_file, check_vault_dir_free};
use super::output::Out;
use super::passphrase::{self, PassphraseSource};
use super::report::{
    AuditLog, AuditVerified, BackedUp, Checked, Compacted, Created, PassphraseChanged, Restored,
};
use super::session::{Session, open_options, passphrase_source as source, vault_path};
use super::{CmdResult, RunError, SUCCESS};

/// The environment variable holding the new passphrase of `passwd`.
const ENV_NEW_PASSPHRASE: &str = "KEYVAULT_NEW_PASSPHRASE";

/// The environment variable holding the passphrase of `restore --revocations-from`'s
/// vault.
const ENV_REVOCATIONS_PASSPHRASE: &str = "KEYVAULT_REVOCATIONS_PASSPHRASE";

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .map_err(|e| Error::io("cannot find the current directory", e))
}

/// `init [--kdf …]`.
pub(crate) fn init(out: &mut Out, cli: &Cli, kdf: &KdfArgs) -> CmdResult {
    let path = vault_path(cli)?;
    let params = kdf.params();
    params.validate(kdf.allow_weak_kdf)?;
    if keyvault::Vault::exists(&path) {
        return Err(
            Error::AlreadyExists(format!("a vault already exists at {}", path.display())).into(),
        );
    }
    check_vault_dir_free(&path)?;
    let passphrase = source(cli).new_passphrase("New passphrase: ")?;
    passphrase::warn_if_weak(&passphrase);
    if params.is_weak() {
        // `validate` refused it unless --allow-weak-kdf was given.
        passphrase::warn(format!(
            "KDF parameters {params} are below OWASP's floor (m=19 MiB, t=2, p=1): the passphrase is easier to guess from a copy of the vault"
        ));
    }
    let v = Vault::create(&path, &passphrase, params, kdf.allow_weak_kdf)?;
    out.emit(&Created {
        created: v.path().display().to_string(),
        format_version: keyvault::vault::CURRENT_FORMAT,
        kdf: v.kdf_params(),
        warnings: passphrase::take_warnings(),
    })?;
    Ok(SUCCESS)
}

/// `passwd`.
pub(crate) fn passwd(
    out: &mut Out,
    cli: &Cli,
    new_file: Option<&Path>,
    kdf: &KdfArgs,
) -> CmdResult {
    let session = &mut Session::new(cli)?;
    if !keyvault::Vault::exists(&session.path) {
        return Err(Error::VaultNotFound(session.path.clone()).into());
    }
    let change = kdf.change();
    // Refuse weak parameters before asking for any passphrase. What is not given keeps
    // the vault's current value (read from its header; the vault checks it again).
    let params = if change.is_empty() {
        None
    } else {
        let params = change.applied_to(keyvault::vault::peek_kdf(&session.path)?);
        params.validate(kdf.allow_weak_kdf)?;
        Some(params)
    };
    let old = session.source.unlock()?;
    let new = PassphraseSource {
        file: new_file.map(Path::to_path_buf),
        env_var: ENV_NEW_PASSPHRASE,
    }
    .new_passphrase("New passphrase: ")?;
    passphrase::warn_if_weak(&new);
    let request = Request::Passwd {
        old,
        new,
        kdf: change,
        allow_weak_kdf: kdf.allow_weak_kdf,
    };
    // Through the agent, which checks the current passphrase; else the vault is opened
    // here with it, once (never asked for, or run through the KDF, a second time).
    let request = match session.agent()? {
        Some(agent) => match agent.op_or_back(request)? {
            OpOutcome::Answered(response) => {
                response.into_done("Passwd")?;
                None
            }
            OpOutcome::NotCarriedOut(e, request) => {
                eprintln!("note: {e}; opening the vault directly");
                Some(*request)
            }
        },
        None => Some(request),
    };
    if let Some(Request::Passwd {
        old,
        new,
        kdf,
        allow_weak_kdf,
    }) = request
    {
        Vault::open_and_change_passphrase(
            &session.path,
            &old,
            &new,
            kdf,
            allow_weak_kdf,
            session.options,
        )?;
    }
    out.emit(&PassphraseChanged {
        changed: true,
        kdf: params,
        warnings: passphrase::take_warnings(),
    })?;
    Ok(SUCCESS)
}

/// `backup FILE`.
pub(crate) fn backup(out: &mut Out, cli: &Cli, file: &Path) -> CmdResult {
    check_new_file(file)?;
    let session = &mut Session::new(cli)?;
    let path = absolute(file)?;
    let report = if let Some(agent) = session.agent()? {
        agent.backup(path)?
    } else {
        let terminal = std::io::stderr().is_terminal();
        let start = Instant::now();
        let mut shown = false;
        let mut progress = |done: u64, total: u64| {
            if terminal && (shown || start.elapsed().as_secs() >= 1) {
                shown = true;
                eprint!("\rbacking up: {done}/{total} records");
            }
        };
        let r = session.vault()?.backup(&path, &mut progress)?;
        if shown {
            eprintln!();
        }
        r
    };
    out.emit(&BackedUp(report))?;
    Ok(SUCCESS)
}

/// `restore FILE --to DIR [--revocations-from VAULT]`.
pub(crate) fn restore(
    out: &mut Out,
    cli: &Cli,
    file: &Path,
    to: &Path,
    revocations_from: Option<&Path>,
    revocations_passphrase_file: Option<&Path>,
) -> CmdResult {
    if !file.exists() {
        return Err(Error::FileNotFound(file.to_path_buf()).into());
    }
    if to.exists() {
        return Err(Error::AlreadyExists(format!(
            "{} exists; restore never overwrites",
            to.display()
        ))
        .into());
    }
    if let Some(rf) = revocations_from
        && !keyvault::Vault::exists(rf)
    {
        return Err(Error::VaultNotFound(rf.to_path_buf()).into());
    }
    // Read the newer vault's revocations first: if that fails, nothing is restored.
    let revocations = match revocations_from {
        Some(rf) => Some(match AgentClient::connect(rf)? {
            Some(mut agent) => agent.revoked()?,
            None => {
                // The newer vault has a passphrase of its own (it may have changed since
                // the backup): its own file or variable, else the terminal, else the
                // backup's passphrase.
                let own = PassphraseSource {
                    file: revocations_passphrase_file.map(Path::to_path_buf),
                    env_var: ENV_REVOCATIONS_PASSPHRASE,
                }
                .unlock_if_available(&format!(
                    "Passphrase of {} (for its revocations): ",
                    rf.display()
                ))?;
                let passphrase = match own {
                    Some(p) => p,
                    None => source(cli).unlock()?,
                };
                Vault::open_with(rf, &passphrase, open_options(cli))?.revoked_users()?
            }
        }),
        None => None,
    };
    let passphrase = source(cli).unlock()?;
    let report = Vault::restore(file, to, &passphrase, revocations.as_deref())?;
    if revocations.is_none() {
        eprintln!(
            "warning: revocations made after this backup ({}), or missing from the copy it was made from, are not in it; pass --revocations-from VAULT to re-apply every revocation of a newer copy",
            report.backup_created
        );
    }
    out.emit(&Restored(report))?;
    Ok(SUCCESS)
}

/// Prints what `check` found: exit 0 if nothing is wrong, else an integrity error.
fn show_check(out: &mut Out, checked: Checked) -> CmdResult {
    out.emit(&checked)?;
    if checked.ok {
        return Ok(SUCCESS);
    }
    let e = Error::Integrity(format!(
        "{} problem(s) found",
        checked.report.problems.len()
    ));
    // With --json, the report (with "ok": false) is the one JSON document.
    Err(RunError::after_report(out, e))
}

/// `check`.
pub(crate) fn check(out: &mut Out, cli: &Cli) -> CmdResult {
    let report = Session::new(cli)?.check()?;
    show_check(out, Checked::new("vault", report))
}

/// `check --backup FILE`.
pub(crate) fn check_backup(out: &mut Out, cli: &Cli, file: &Path) -> CmdResult {
    if !file.exists() {
        return Err(Error::FileNotFound(file.to_path_buf()).into());
    }
    let passphrase = source(cli).unlock()?;
    let (_, report) = lifecycle::check_backup(file, &passphrase)?;
    show_check(out, Checked::new("backup", report))
}

/// `compact`.
pub(crate) fn compact(out: &mut Out, cli: &Cli) -> CmdResult {
    let report = Session::new(cli)?.compact()?;
    out.emit(&Compacted(report))?;
    Ok(SUCCESS)
}

/// `audit [--verify] [--since DATE]`.
pub(crate) fn audit(out: &mut Out, cli: &Cli, verify: bool, since: Option<u64>) -> CmdResult {
    let entries = Session::new(cli)?.audit(since)?;
    if verify {
        out.emit(&AuditVerified {
            entries: entries.len(),
            verified: true,
        })?;
    } else {
        out.emit(&AuditLog { entries })?;
    }
    Ok(SUCCESS)
}
