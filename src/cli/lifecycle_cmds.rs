//! `passwd`, `backup`, `restore`, `check` and `audit`: the commands that act on the
//! vault as a whole.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use keyvault::agent::client::{AgentClient, OpOutcome};
use keyvault::ops::{Request, Response};
use keyvault::vault::Vault;
use keyvault::vault::check::CheckReport;
use keyvault::vault::lifecycle::{self, AuditEntry};
use keyvault::{Error, Result};

use super::args::{Cli, KdfArgs};
use super::output::{Out, escape};
use super::passphrase::{ENV_PASSPHRASE, PassphraseSource};
use super::{RunError, Session, open_options, unexpected};

/// The environment variable holding the new passphrase of `passwd`.
const ENV_NEW_PASSPHRASE: &str = "KEYVAULT_NEW_PASSPHRASE";

/// The environment variable holding the passphrase of `restore --revocations-from`'s
/// vault.
const ENV_REVOCATIONS_PASSPHRASE: &str = "KEYVAULT_REVOCATIONS_PASSPHRASE";

type CmdResult<T = ()> = std::result::Result<T, RunError>;

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .map_err(|e| Error::io("cannot find the current directory", e))
}

fn source(cli: &Cli) -> PassphraseSource {
    PassphraseSource {
        file: cli.passphrase_file.clone(),
        env_var: ENV_PASSPHRASE,
    }
}

/// `passwd`.
pub fn passwd(
    out: &mut Out,
    session: &mut Session,
    new_file: &Option<PathBuf>,
    kdf: &KdfArgs,
) -> CmdResult {
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
        file: new_file.clone(),
        env_var: ENV_NEW_PASSPHRASE,
    }
    .new_passphrase("New passphrase: ")?;
    super::passphrase::warn_if_weak(&new);
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
            OpOutcome::Answered(Response::Done) => None,
            OpOutcome::Answered(_) => return Err(unexpected().into()),
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
    if out.json() {
        out.doc(&json!({
            "changed": true,
            "kdf": params,
            "warnings": super::passphrase::take_warnings(),
        }))?;
    } else {
        out.text(
            "Passphrase changed. Backups made before now still open only with the passphrase that was current when they were made.\n",
        )?;
    }
    Ok(())
}

/// `backup FILE`.
pub fn backup(out: &mut Out, session: &mut Session, file: &Path) -> CmdResult {
    let path = absolute(file)?;
    let report = if let Some(agent) = session.agent()? {
        match agent.op(Request::Backup { path })? {
            Response::Backup(r) => r,
            _ => return Err(unexpected().into()),
        }
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
    if out.json() {
        out.doc(&report)?;
    } else {
        out.text(&format!(
            "Wrote {} ({} records, {} bytes) at {}\n",
            report.path, report.records, report.bytes, report.created
        ))?;
    }
    Ok(())
}

/// `restore FILE --to DIR [--revocations-from VAULT]`.
pub fn restore(
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
            Some(mut agent) => match agent.op(Request::Revoked)? {
                Response::Revocations(l) => l,
                _ => return Err(unexpected().into()),
            },
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
    if out.json() {
        out.doc(&report)?;
    } else {
        out.text(&format!(
            "Restored {} records into {} from a backup made at {}\n",
            report.records, report.path, report.backup_created
        ))?;
        for user in &report.revocations_applied {
            out.text(&format!("re-applied the revocation of {}\n", escape(user)))?;
        }
    }
    Ok(())
}

fn show_check(out: &mut Out, what: &str, report: &CheckReport) -> CmdResult<i32> {
    if out.json() {
        let mut doc = serde_json::to_value(report).map_err(|e| Error::Internal(e.to_string()))?;
        doc["ok"] = json!(report.ok());
        out.doc(&doc)?;
    } else {
        out.text(&format!(
            "{what}: format v{}, {} keys, {} revoked users, {} audit entries checked\n",
            report.format_version, report.keys, report.revoked, report.audit_entries
        ))?;
        for w in &report.warnings {
            out.text(&format!("warning: {w}\n"))?;
        }
        for p in &report.problems {
            out.text(&format!(
                "problem: tree {}, position {}: {}\n",
                p.tree, p.position, p.message
            ))?;
        }
        if report.ok() {
            out.text("ok\n")?;
        }
    }
    if report.ok() {
        return Ok(0);
    }
    let e = Error::Integrity(format!("{} problem(s) found", report.problems.len()));
    Err(if out.json() {
        // The report document (with "ok": false) is the one JSON document.
        RunError::Reported(e)
    } else {
        e.into()
    })
}

/// `check`.
pub fn check(out: &mut Out, session: &mut Session) -> CmdResult<i32> {
    let Response::Check(report) = session.call(Request::Check)? else {
        return Err(unexpected().into());
    };
    show_check(out, "vault", &report)
}

/// `check --backup FILE`.
pub fn check_backup(out: &mut Out, cli: &Cli, file: &Path) -> CmdResult<i32> {
    if !file.exists() {
        return Err(Error::FileNotFound(file.to_path_buf()).into());
    }
    let passphrase = source(cli).unlock()?;
    let (_, report) = lifecycle::check_backup(file, &passphrase)?;
    show_check(out, "backup", &report)
}

/// `audit [--verify] [--since DATE]`.
pub fn audit(out: &mut Out, session: &mut Session, verify: bool, since: Option<u64>) -> CmdResult {
    let Response::Audit(entries) = session.call(Request::Audit { since })? else {
        return Err(unexpected().into());
    };
    if verify {
        if out.json() {
            out.doc(&json!({ "verified": true, "entries": entries.len() }))?;
        } else {
            out.text(&format!(
                "audit chain verified: {} entries\n",
                entries.len()
            ))?;
        }
        return Ok(());
    }
    if out.json() {
        out.doc(&json!({ "entries": entries }))?;
    } else {
        out.text(&audit_table(&entries))?;
    }
    Ok(())
}

fn audit_table(entries: &[AuditEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        s.push_str(&format!(
            "{:>5}  {}  {:<15}  {:<8}  user={}  key={}  {}\n",
            e.seq,
            e.time,
            e.operation,
            e.outcome,
            escape(e.user.as_deref().unwrap_or("-")),
            escape(e.key.as_deref().unwrap_or("-")),
            escape(e.detail.as_deref().unwrap_or(""))
        ));
    }
    if s.is_empty() {
        s.push_str("no audit entries\n");
    }
    s
}
