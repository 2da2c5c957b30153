//! The vault as a whole: backup, restore, check, passphrase change, the audit log, and
//! compaction.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backup::{self, BackupHeader, BackupRecord};
use crate::crypto::kdf::{KdfParams, SALT_LEN};
use crate::crypto::random_bytes;
use crate::crypto::seal::MasterKey;
use crate::error::{Error, Result};
use crate::store::migrate::CURRENT_FORMAT;
use crate::store::records::{self, Header, RevokedRecord, meta_keys};
use crate::store::{Batch, Store, Tree};

use super::check::{CheckReport, TreeRecords, check_records};
use super::types::{RevocationInfo, Timestamp};
use super::{AuditEvent, Vault, audit, header_aad, user_hash, validate};

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The file.
    pub path: String,
    /// Records in it.
    pub records: u64,
    /// When it was made.
    pub created: Timestamp,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The new vault.
    pub path: String,
    /// Records restored.
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
    /// When.
    pub time: Timestamp,
    /// What.
    pub operation: String,
    /// Who.
    pub user: Option<String>,
    /// Which key.
    pub key: Option<String>,
    /// `ok` or what failed.
    pub outcome: String,
    /// Details (never secrets).
    pub detail: Option<String>,
}

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Size of the database files before, in bytes.
    pub bytes_before: u64,
    /// After.
    pub bytes_after: u64,
    /// Records copied.
    pub records: u64,
}

/// How much room the vault's files take against the records they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceUse {
    /// Bytes of the files in the vault directory.
    pub on_disk: u64,
    /// Bytes of the records (index keys and sealed values) in the database: what a
    /// compaction copies.
    pub records: u64,
}

impl SpaceUse {
    /// `on_disk / records` (infinite for an empty database).
    pub fn ratio(&self) -> f64 {
        if self.records == 0 {
            f64::INFINITY
        } else {
            self.on_disk as f64 / self.records as f64
        }
    }
}

/// Bytes of the files under `path`, recursively; entries that vanish or cannot be read
/// while it looks (a compaction swapping directories) count as nothing.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A fresh name beside `path` for a temporary directory.
fn sibling(path: &Path, what: &str) -> Result<PathBuf> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} has no directory name", path.display())))?;
    let mut rnd = [0u8; 6];
    random_bytes(&mut rnd)?;
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    Ok(parent.join(format!(".{}.{what}-{suffix}", name.to_string_lossy())))
}

/// Removes the hidden `.NAME.WHAT-*` directories beside `path`.
fn remove_stale_siblings(path: &Path, what: &str) {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return;
    };
    let prefix = format!(".{}.{what}-", name.to_string_lossy());
    if let Ok(entries) = fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix)
                && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Removes a directory when dropped, unless disarmed.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

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
            vault_header: self
                .header
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
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
        let header = self
            .header
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        check_records(&self.keyring, &header, &|t| Ok(trees[t.index()].clone()))
    }

    /// Changes the passphrase (and optionally the KDF parameters): the master key is
    /// re-wrapped, no key is re-encrypted. One atomic write: after a crash either the
    /// old or the new passphrase opens the vault.
    pub fn change_passphrase(
        &self,
        old: &[u8],
        new: &[u8],
        kdf: Option<KdfParams>,
        allow_weak_kdf: bool,
    ) -> Result<()> {
        if new.is_empty() {
            return Err(Error::Usage("the new passphrase is empty".into()));
        }
        let mut head = self.lock_writer();
        let current = self
            .header
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // New parameters must clear the floor (unless allowed); keeping the current
        // ones needs no new consent.
        if let Some(k) = kdf {
            k.validate(allow_weak_kdf)?;
        }
        let kdf = kdf.unwrap_or(current.kdf);
        let old_kek = current.kdf.derive_kek(old, &current.salt)?;
        let master = MasterKey::unwrap(
            &old_kek,
            &header_aad(&current.kdf, &current.salt)?,
            &current.wrapped_master_key,
        )
        .ok_or_else(|| Error::WrongPassphrase(self.path().to_path_buf()))?;
        let mut salt = vec![0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        let kek = kdf.derive_kek(new, &salt)?;
        let header = Header {
            kdf,
            wrapped_master_key: master.wrap(&kek, &header_aad(&kdf, &salt)?)?,
            salt,
            created: current.created,
        };
        let mut batch = Batch::new();
        batch.insert(
            Tree::Meta,
            meta_keys::HEADER,
            records::encode(&header)?.to_vec(),
        );
        // Swap the in-memory header under the writer lock too, so that a backup never
        // pairs the old header with the new record.
        let ticket = self.commit_with(
            &mut head,
            batch,
            AuditEvent::new("passwd").detail(format!("kdf {kdf}")),
            false,
        )?;
        *self.header.lock().unwrap_or_else(|p| p.into_inner()) = header;
        drop(head);
        self.wait_durable(ticket)
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

    /// Bytes of the files in the vault directory (a few `stat`s; no database read).
    pub fn disk_bytes(&self) -> u64 {
        dir_size(self.path())
    }

    /// The vault's files against the records they hold (reads every record's length,
    /// nothing is opened): sled's log leaves superseded pages behind until it reuses
    /// their segments, and [`Vault::compact`] drops them.
    pub fn space_use(&self) -> Result<SpaceUse> {
        Ok(SpaceUse {
            on_disk: self.disk_bytes(),
            records: self.store.record_bytes()?,
        })
    }

    /// Rewrites the vault into a fresh database beside it and swaps it in atomically
    /// (`renameat2(RENAME_EXCHANGE)`), so destroyed records leave the files. A crash
    /// leaves the old or the new database in place, both whole.
    pub fn compact(self) -> Result<(Vault, CompactReport)> {
        self.compact_noting("")
    }

    /// [`Vault::compact`], logged as automatic: what the agent does when idle with files
    /// grown to `space` (see `agent::upkeep`).
    pub fn compact_automatically(self, space: SpaceUse) -> Result<(Vault, CompactReport)> {
        self.compact_noting(&format!(
            " (automatic: the files were {:.1}× the records)",
            space.ratio()
        ))
    }

    fn compact_noting(self, note: &str) -> Result<(Vault, CompactReport)> {
        let path = self.path().to_path_buf();
        let bytes_before = dir_size(&path);
        let head = *self.lock_writer();
        // A compaction killed before (or right after) its swap leaves a hidden sibling
        // holding a whole database, destroyed records included: remove it now. We hold
        // the vault's lock, so no compaction of this vault is running.
        remove_stale_siblings(&path, "compact");
        let tmp = sibling(&path, "compact")?;
        let mut guard = DirGuard(Some(tmp.clone()));
        let mut records = 0u64;
        {
            let fresh = Store::create(&tmp)?;
            // One tree in memory at a time (the agent compacts a big vault on its own).
            for tree in Tree::ALL {
                let entries = self.store.entries(tree)?;
                records += entries.len() as u64;
                fresh.load(tree, &entries)?;
            }
            fresh.flush()?;
        }
        let Vault {
            store,
            keyring,
            header,
            uses,
            revocations,
            infos,
            ..
        } = self;
        store.flush()?;
        drop(store);
        let swapped = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &path,
            rustix::fs::RenameFlags::EXCHANGE,
        );
        let reopened = Store::open(&path)?;
        let vault = Vault {
            store: reopened,
            keyring,
            header,
            writer: std::sync::Mutex::new(head),
            flushes: Default::default(),
            flushed: Default::default(),
            deferred_flush: Default::default(),
            uses,
            revocations,
            infos,
        };
        if let Err(e) = swapped {
            // The old database is still in place and was reopened: nothing changed.
            return Err(Error::io("cannot swap in the compacted database", e.into()));
        }
        backup::sync_parent(&path);
        // `tmp` now holds the old database; the guard removes it.
        if let Some(old) = guard.0.take() {
            let _ = fs::remove_dir_all(old);
        }
        let report = CompactReport {
            bytes_before,
            bytes_after: dir_size(&path),
            records,
        };
        vault.record(AuditEvent::new("compact").detail(format!(
            "{records} records, {bytes_before} → {} bytes{note}",
            report.bytes_after
        )))?;
        Ok((vault, report))
    }

    /// Creates a vault at `to` (which must not exist) from a backup, after verifying
    /// all of the backup, and re-applies `revocations` (from a newer copy of the vault)
    /// made at or after the backup. Nothing is left behind on failure: the vault is
    /// built and finished in a hidden directory beside `to`, and renamed into place only
    /// once complete.
    pub fn restore(
        backup_path: &Path,
        to: &Path,
        passphrase: &[u8],
        revocations: Option<&[RevocationInfo]>,
    ) -> Result<RestoreReport> {
        if to.exists() {
            return Err(Error::AlreadyExists(format!(
                "{} exists; restore never overwrites",
                to.display()
            )));
        }
        let opened = backup::open_backup(backup_path, passphrase)?;
        let keyring = opened.master.keyring();
        let trees = split_trees(opened.records);
        let report = check_records(&keyring, &opened.header.vault_header, &|t| {
            Ok(trees[t.index()].clone())
        })?;
        if let Some(p) = report.problems.first() {
            return Err(Error::Integrity(format!(
                "the backup does not check: {} (tree {}, position {})",
                p.message, p.tree, p.position
            )));
        }
        if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        let tmp = sibling(to, "restoring")?;
        let mut guard = DirGuard(Some(tmp.clone()));
        {
            let store = Store::create(&tmp)?;
            for (tree, entries) in Tree::ALL.into_iter().zip(&trees) {
                store.load(tree, entries)?;
            }
            store.flush()?;
        }
        let backup_created = Timestamp(opened.header.created);
        let revocations_applied = {
            let vault = Vault::open_with_keyring(&tmp, opened.master)?;
            vault.record(AuditEvent::new("restore").detail(format!(
                "from a backup made at {backup_created}, {} records",
                opened.header.records
            )))?;
            let applied = match revocations {
                Some(list) => vault.apply_revocations(list, backup_created.0)?,
                None => Vec::new(),
            };
            vault.flush()?;
            applied
        };
        fs::rename(&tmp, to)
            .map_err(|e| Error::io(format!("cannot create {}", to.display()), e))?;
        guard.0 = None;
        backup::sync_parent(to);
        Ok(RestoreReport {
            path: to.display().to_string(),
            records: opened.header.records,
            backup_created,
            revocations_applied,
        })
    }

    fn open_with_keyring(path: &Path, master: MasterKey) -> Result<Vault> {
        let store = Store::open(path)?;
        let header = super::read_header(&store)?;
        // A restore needs no backup before migrating: it was made from one.
        Self::assemble(store, header, master, None, false)
    }

    /// Re-applies revocations recorded elsewhere (another copy of this vault): every
    /// user of `revocations` revoked at or after `since` and not revoked here loses
    /// their keys and is marked revoked with the original time and reason.
    pub fn apply_revocations(
        &self,
        revocations: &[RevocationInfo],
        since: u64,
    ) -> Result<Vec<String>> {
        let mut applied = Vec::new();
        for r in revocations.iter().filter(|r| r.revoked_at.0 >= since) {
            validate::user_id(&r.user)?;
            let head = self.lock_writer();
            if self.revoked_record(&r.user)?.is_some() {
                continue;
            }
            let mut batch = Batch::new();
            let mut destroyed = Vec::new();
            let mut forget = Vec::new();
            for (db_key, record) in self.keys_of(&r.user)? {
                destroyed.push(super::destroyed_key(&record));
                batch.remove(Tree::Keys, db_key.clone());
                forget.push(db_key);
            }
            let revoked = RevokedRecord {
                user: r.user.clone(),
                revoked_at: r.revoked_at.0,
                reason: r.reason.clone(),
                destroyed,
            };
            let db_key = user_hash(&self.keyring, &r.user);
            self.stage(&mut batch, Tree::Revoked, &db_key, &revoked)?;
            self.commit_revocation(
                head,
                batch,
                &db_key,
                AuditEvent::new("revoke").user(&r.user).detail(format!(
                    "re-applied a revocation of {}, {} key(s) destroyed",
                    r.revoked_at,
                    revoked.destroyed.len()
                )),
            )?;
            for db_key in forget {
                self.forget_uses(&db_key);
            }
            applied.push(r.user.clone());
        }
        Ok(applied)
    }
}

fn split_trees(records: Vec<BackupRecord>) -> [TreeRecords; 4] {
    let mut trees: [TreeRecords; 4] = Default::default();
    for (tree, k, v) in records {
        let i = tree.index();
        trees[i].push((k, v));
    }
    // Key order, as the store keeps them.
    for t in &mut trees {
        t.sort();
    }
    trees
}

/// Checks a backup file with its passphrase, without restoring it.
pub fn check_backup(path: &Path, passphrase: &[u8]) -> Result<(BackupHeader, CheckReport)> {
    let opened = backup::open_backup(path, passphrase)?;
    let keyring = opened.master.keyring();
    let trees = split_trees(opened.records);
    let report = check_records(&keyring, &opened.header.vault_header, &|t| {
        Ok(trees[t.index()].clone())
    })?;
    Ok((opened.header, report))
}
