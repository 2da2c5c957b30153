//! The vault as a whole: backup, check, passphrase change and the audit log. Compaction
//! lives in `compact`, restore in `restore`.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backup::{self, BackupHeader};
use crate::crypto::kdf::{KdfChange, SALT_LEN};
use crate::crypto::random_bytes;
use crate::crypto::seal::MasterKey;
use crate::error::{Error, Result};
use crate::store::records::Header;
use crate::store::{Batch, Tree};
use crate::vault::migrate::CURRENT_FORMAT;

use super::check::{CheckReport, TreeRecords, check_records};
use super::header::VaultHeader;
use super::types::Timestamp;
use super::{AuditEvent, Vault, audit, header_aad};

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The backup file written.
    pub path: String,
    /// Records copied into it, still sealed.
    pub records: u64,
    /// When it was made.
    pub created: Timestamp,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The directory of the vault made from the backup.
    pub path: String,
    /// Records copied out of the backup.
    pub records: u64,
    /// When the backup was made.
    pub backup_created: Timestamp,
    /// Users whose later revocation was re-applied.
    pub revocations_applied: Vec<String>,
}

/// One audit entry, as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the operation happened.
    pub time: Timestamp,
    /// The operation, as the command's name (`gen`, `export`, `revoke`, …).
    pub operation: String,
    /// The user it concerned, if one.
    pub user: Option<String>,
    /// The key it concerned, if one.
    pub key: Option<String>,
    /// `ok` or what failed.
    pub outcome: String,
    /// Details kept in the clear: never secrets.
    pub detail: Option<String>,
}

pub use super::compact::{CompactReport, SpaceUse, dir_size};
pub use super::restore::check_backup;

impl Vault {
    fn all_records(&self) -> Result<[TreeRecords; 4]> {
        Ok([
            self.store.entries(Tree::Meta)?,
            self.store.entries(Tree::Keys)?,
            self.store.entries(Tree::Revoked)?,
            self.store.entries(Tree::Audit)?,
        ])
    }

    /// Writes a backup to `path` (which must not exist): a consistent snapshot, as
    /// changes wait while it is made. `progress` is told (done, total).
    pub fn backup(&self, path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupReport> {
        let mut head = self.lock_writer();
        // Fails early (target exists, directory missing) before anything is logged.
        let file = backup::BackupFile::create(path)?;
        // The backup's own audit entry goes in first, so the backup holds it.
        let created = Timestamp::now();
        self.commit_with(
            &mut head,
            Batch::new(),
            AuditEvent::new("backup").detail(format!("to {}", path.display())),
            true,
        )?;
        let written = self.write_backup_file(file, created, progress);
        if let Err(e) = &written {
            let mut event = AuditEvent::new("backup").detail(format!("to {}: {e}", path.display()));
            event.outcome("failed");
            let _ = self.commit_with(&mut head, Batch::new(), event, true);
        }
        drop(head);
        let written = written?;
        let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport {
            path: path.display().to_string(),
            records: written,
            created,
            bytes,
        })
    }

    fn write_backup_file(
        &self,
        file: backup::BackupFile,
        created: Timestamp,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        let trees = self.all_records()?;
        let total: u64 = trees.iter().map(|t| t.len() as u64).sum();
        let header = BackupHeader {
            vault_format: CURRENT_FORMAT,
            created: created.0,
            vault_header: self.header().unlock,
            records: total,
        };
        let mut records = crate::store::Tree::ALL
            .into_iter()
            .zip(trees)
            .flat_map(|(tree, entries)| entries.into_iter().map(move |(k, v)| Ok((tree, k, v))));
        file.write(&header, &self.keyring, &mut records, progress)
    }

    /// Checks every record of the vault; see [`super::check`].
    pub fn check(&self) -> Result<CheckReport> {
        let _head = self.lock_writer();
        let trees = self.all_records()?;
        let header = self.header();
        let mut report = check_records(&self.keyring, &header.unlock, header.format, &|t| {
            Ok(trees[t.index()].clone())
        })?;
        // The header file on disk: it authenticates, and it is the one this vault holds.
        match super::open::read_header_file(self.path()) {
            Ok(file) => {
                if let Err(e) = file.verify(&self.keyring) {
                    report.problem(Tree::Meta, 0, format!("header file: {e}"));
                } else if file.header != header {
                    report.problem(
                        Tree::Meta,
                        0,
                        "the header file differs from the one that opened the vault",
                    );
                }
            }
            Err(e) => report.problem(Tree::Meta, 0, format!("header file: {e}")),
        }
        Ok(report)
    }

    /// Changes the passphrase (and optionally KDF parameters: those `kdf` leaves unset
    /// keep the vault's current values). The master key is re-wrapped, no key is
    /// re-encrypted, and only the header file is rewritten (atomically): no earlier
    /// wrapping of the master key survives in the vault directory. After a crash either
    /// the old or the new passphrase opens the vault.
    ///
    /// `old` is checked against the vault (a run of the KDF): the vault may have been
    /// unlocked long ago, by someone else. To change the passphrase of a vault that is
    /// not open yet, [`Vault::open_and_change_passphrase`] runs the KDF on the current
    /// passphrase once, not twice.
    pub fn change_passphrase(
        &self,
        old: &[u8],
        new: &[u8],
        kdf: KdfChange,
        allow_weak_kdf: bool,
    ) -> Result<()> {
        self.check_passphrase_change(new, kdf, allow_weak_kdf)?;
        let current = self.header();
        let old_kek = current.unlock.kdf.derive_kek(old, &current.unlock.salt)?;
        let master = MasterKey::unwrap(
            &old_kek,
            &header_aad(&current.unlock.kdf, &current.unlock.salt)?,
            &current.unlock.wrapped_master_key,
        )
        .ok_or_else(|| Error::WrongPassphrase(self.path().to_path_buf()))?;
        self.rewrap_master_key(master, new, kdf, allow_weak_kdf)
    }

    /// Opens the vault at `path` with its current passphrase `old` and changes it to
    /// `new`, as [`Vault::change_passphrase`] does: the KDF runs once on `old` (to open
    /// the vault, which proves it) and once on `new`. A wrong `old` is counted as a
    /// failed unlock.
    pub fn open_and_change_passphrase(
        path: &Path,
        old: &[u8],
        new: &[u8],
        kdf: KdfChange,
        allow_weak_kdf: bool,
        options: super::OpenOptions,
    ) -> Result<Vault> {
        let (vault, master) = super::open::open_keeping_master_key(path, old, options)?;
        vault.check_passphrase_change(new, kdf, allow_weak_kdf)?;
        vault.rewrap_master_key(master, new, kdf, allow_weak_kdf)?;
        Ok(vault)
    }

    /// What can be refused before any KDF runs.
    fn check_passphrase_change(
        &self,
        new: &[u8],
        kdf: KdfChange,
        allow_weak_kdf: bool,
    ) -> Result<()> {
        if new.is_empty() {
            return Err(Error::Usage("the new passphrase is empty".into()));
        }
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.path().to_path_buf()));
        }
        let current = self.header().unlock.kdf;
        let params = kdf.applied_to(current);
        if params != current {
            params.validate(allow_weak_kdf)?;
        }
        Ok(())
    }

    /// Wraps `master` (this vault's master key) under a key derived from `new`.
    fn rewrap_master_key(
        &self,
        master: MasterKey,
        new: &[u8],
        kdf: KdfChange,
        allow_weak_kdf: bool,
    ) -> Result<()> {
        let head = self.lock_writer();
        let current = self.header();
        let params = kdf.applied_to(current.unlock.kdf);
        // New parameters must clear the floor (unless allowed); keeping the current
        // ones needs no new consent.
        if params != current.unlock.kdf {
            params.validate(allow_weak_kdf)?;
        }
        let mut salt = vec![0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        let kek = params.derive_kek(new, &salt)?;
        let header = VaultHeader {
            unlock: Header {
                kdf: params,
                wrapped_master_key: master.wrap(&kek, &header_aad(&params, &salt)?)?,
                salt,
                created: current.unlock.created,
            },
            ..current.clone()
        };
        drop(master);
        // The audit entry and the raised epoch first (durably), then the header: a
        // copy of the directory from before the change is then an older copy.
        self.commit_raising_epoch(
            head,
            Batch::new(),
            AuditEvent::new("passwd").detail(format!("kdf {params}")),
            None,
        )?;
        let head = self.lock_writer();
        *self.header.lock().unwrap_or_else(|p| p.into_inner()) = header;
        if let Err(e) = self.write_header() {
            *self.header.lock().unwrap_or_else(|p| p.into_inner()) = current;
            let mut event = AuditEvent::new("passwd").detail(format!("{e}"));
            event.outcome("failed");
            let _ = self.commit(head, Batch::new(), event);
            return Err(e);
        }
        Ok(())
    }

    /// The audit log, oldest first, from `since` (Unix seconds) on, after verifying the
    /// whole chain (a break is an integrity error naming its position).
    pub fn audit_entries(&self, since: Option<u64>) -> Result<Vec<AuditEntry>> {
        let entries = audit::read_all(&self.store, &self.keyring)?;
        Ok(entries
            .into_iter()
            .filter(|e| since.is_none_or(|s| e.time >= s))
            .map(|e| AuditEntry {
                seq: e.seq,
                time: Timestamp(e.time),
                operation: e.operation,
                user: e.user,
                key: e.key,
                outcome: e.outcome,
                detail: e.detail,
            })
            .collect())
    }
}
