//! Reports of `init`, `passwd`, `backup`, `restore`, `check` and `audit`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use keyvault::crypto::kdf::KdfParams;
use keyvault::vault::check::CheckReport;
use keyvault::vault::lifecycle::{AuditEntry, BackupReport, RestoreReport};

use super::{Report, escape};

/// A vault that `init` created.
#[derive(Serialize)]
pub(crate) struct Created {
    /// Where.
    pub created: String,
    /// The format it was made in.
    pub format_version: u32,
    /// Its KDF parameters.
    pub kdf: KdfParams,
    /// The warnings given on stderr.
    pub warnings: Vec<String>,
}

impl Report for Created {}

impl Display for Created {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Created a vault at {} (Argon2id {})",
            self.created, self.kdf
        )
    }
}

/// A passphrase that `passwd` changed.
#[derive(Serialize)]
pub(crate) struct PassphraseChanged {
    /// Always true.
    pub changed: bool,
    /// The new KDF parameters, if they changed.
    pub kdf: Option<KdfParams>,
    /// The warnings given on stderr.
    pub warnings: Vec<String>,
}

impl Report for PassphraseChanged {}

impl Display for PassphraseChanged {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Passphrase changed. Backups made before now still open only with the passphrase that was current when they were made."
        )
    }
}

/// A backup file that `backup` wrote.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct BackedUp(pub BackupReport);

impl Report for BackedUp {
    const SORTED_KEYS: bool = false;
}

impl Display for BackedUp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "Wrote {} ({} records, {} bytes) at {}",
            r.path, r.records, r.bytes, r.created
        )
    }
}

/// A vault that `restore` built.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Restored(pub RestoreReport);

impl Report for Restored {
    const SORTED_KEYS: bool = false;
}

impl Display for Restored {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "Restored {} records into {} from a backup made at {}",
            r.records, r.path, r.backup_created
        )?;
        for user in &r.revocations_applied {
            writeln!(f, "re-applied the revocation of {}", escape(user))?;
        }
        Ok(())
    }
}

/// What `check` found, in a vault or a backup.
#[derive(Serialize)]
pub(crate) struct Checked {
    /// `vault` or `backup`.
    #[serde(skip)]
    pub what: &'static str,
    /// The findings.
    #[serde(flatten)]
    pub report: CheckReport,
    /// Whether there was no problem.
    pub ok: bool,
}

impl Checked {
    /// The report on `what`.
    pub(crate) fn new(what: &'static str, report: CheckReport) -> Self {
        let ok = report.ok();
        Checked { what, report, ok }
    }
}

impl Report for Checked {}

impl Display for Checked {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "{}: format v{}, {} keys, {} revoked users, {} audit entries checked",
            self.what, r.format_version, r.keys, r.revoked, r.audit_entries
        )?;
        for w in &r.warnings {
            writeln!(f, "warning: {w}")?;
        }
        for p in &r.problems {
            writeln!(
                f,
                "problem: tree {}, position {}: {}",
                p.tree, p.position, p.message
            )?;
        }
        if self.ok {
            writeln!(f, "ok")?;
        }
        Ok(())
    }
}

/// The audit log's chain, verified (`audit --verify`).
#[derive(Serialize)]
pub(crate) struct AuditVerified {
    /// How many entries.
    pub entries: usize,
    /// Always true.
    pub verified: bool,
}

impl Report for AuditVerified {}

impl Display for AuditVerified {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "audit chain verified: {} entries", self.entries)
    }
}

/// The audit log (`audit`).
#[derive(Serialize)]
pub(crate) struct AuditLog {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
}

impl Report for AuditLog {}

impl Display for AuditLog {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return writeln!(f, "no audit entries");
        }
        for e in &self.entries {
            writeln!(
                f,
                "{:>5}  {}  {:<15}  {:<8}  user={}  key={}  {}",
                e.seq,
                e.time,
                e.operation,
                e.outcome,
                escape(e.user.as_deref().unwrap_or("-")),
                escape(e.key.as_deref().unwrap_or("-")),
                escape(e.detail.as_deref().unwrap_or(""))
            )?;
        }
        Ok(())
    }
}
