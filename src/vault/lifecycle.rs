//! The vault as a whole: backup, restore, check, passphrase change, the audit log, and
//! compaction.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backup::{self, BackupHeader, BackupRecord};
use crate::crypto::kdf::{KdfChange, SALT_LEN};
use crate::crypto::random_bytes;
use crate::crypto::seal::MasterKey;
use crate::error::{Error, Result};
use crate::store::layout::{self, VaultLock};
use crate::store::migrate::CURRENT_FORMAT;
use crate::store::records::{Header, RevokedRecord};
use crate::store::{Batch, Store, Tree};

use super::check::{CheckReport, TreeRecords, check_records};
use super::header::{VAULT_ID_LEN, VaultHeader};
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

/// Removes the hidden `.NAME.WHAT-<12 hex>` directories beside `path` that a killed
/// keyvault left: only those whose vault lock can be taken at once (a running command
/// holds its own).
pub(crate) fn remove_stale_siblings(path: &Path, what: &str) {
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
            let file_name = e.file_name();
            if layout::is_work_name(&file_name.to_string_lossy(), &prefix)
                && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                && e.path().join(layout::LOCK_FILE).is_file()
                && let Ok(lock) = VaultLock::acquire(&e.path(), std::time::Duration::ZERO)
            {
                drop(lock);
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
    pub fn change_passphrase(
        &self,
        old: &[u8],
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
        let head = self.lock_writer();
        let current = self.header();
        let params = kdf.applied_to(current.unlock.kdf);
        // New parameters must clear the floor (unless allowed); keeping the current
        // ones needs no new consent.
        if params != current.unlock.kdf {
            params.validate(allow_weak_kdf)?;
        }
        let old_kek = current.unlock.kdf.derive_kek(old, &current.unlock.salt)?;
        let master = MasterKey::unwrap(
            &old_kek,
            &header_aad(&current.unlock.kdf, &current.unlock.salt)?,
            &current.unlock.wrapped_master_key,
        )
        .ok_or_else(|| Error::WrongPassphrase(self.path().to_path_buf()))?;
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

    /// Bytes of the files in the vault directory (a few `stat`s; no database read).
    pub fn disk_bytes(&self) -> u64 {
        dir_size(&self.lock.db_dir())
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
        match self.try_compact() {
            (Some(vault), Ok(report)) => Ok((vault, report)),
            (_, Err(e)) => Err(e),
            (None, Ok(_)) => Err(Error::Internal("the compacted vault is gone".into())),
        }
    }

    /// [`Vault::compact`], giving the vault back whenever it is still usable: on a
    /// failure before the swap, or when the old database was reopened after a failed
    /// swap. `None` only if the database could not be reopened at all.
    pub fn try_compact(self) -> (Option<Vault>, Result<CompactReport>) {
        self.compact_noting("")
    }

    /// [`Vault::try_compact`], logged as automatic: what the agent does when idle with
    /// files grown to `space` (see `agent::upkeep`).
    pub fn compact_automatically(self, space: SpaceUse) -> (Option<Vault>, Result<CompactReport>) {
        self.compact_noting(&format!(
            " (automatic: the files were {:.1}× the records)",
            space.ratio()
        ))
    }

    /// Whether a compaction can run now: the vault is writable and its filesystem has
    /// room for a fresh copy of the database (what the database's files take now, and
    /// 16 MiB to spare). Checked before a `revoke --purge` commits anything.
    pub fn compaction_preflight(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.path().to_path_buf()));
        }
        rustix::fs::access(self.path(), rustix::fs::Access::WRITE_OK).map_err(|e| {
            Error::io(
                format!("cannot compact: {} is not writable", self.path().display()),
                e.into(),
            )
        })?;
        let needed = self.disk_bytes().saturating_add(16 << 20);
        let free = rustix::fs::statvfs(self.path())
            .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize))
            .map_err(|e| Error::io("cannot read the filesystem's free space", e.into()))?;
        if free < needed {
            return Err(Error::io(
                format!(
                    "cannot compact: {} has {free} bytes free, a fresh copy of the database needs about {needed}",
                    self.path().display()
                ),
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
        Ok(())
    }

    fn compact_noting(self, note: &str) -> (Option<Vault>, Result<CompactReport>) {
        if self.is_read_only() {
            let e = Error::ReadOnly(self.path().to_path_buf());
            return (Some(self), Err(e));
        }
        let db_dir = self.lock.db_dir();
        let bytes_before = dir_size(&db_dir);
        let head = *self.lock_writer();
        // The fresh database is built inside the vault directory (symlinks were
        // resolved when the vault was opened) and swapped with `db/` under the vault's
        // lock, which this process holds throughout: no other process can open the
        // database in between.
        let mut guard = DirGuard(None);
        let built = (|| {
            let fresh_dir = self.lock.compaction_dir()?;
            guard.0 = Some(fresh_dir.clone());
            let mut records = 0u64;
            let fresh = Store::create(&fresh_dir)?;
            // One tree in memory at a time (the agent compacts a big vault on its own).
            for tree in Tree::ALL {
                let entries = self.store.entries(tree)?;
                records += entries.len() as u64;
                fresh.load(tree, &entries)?;
            }
            fresh.flush()?;
            self.store.flush()?;
            Ok::<_, Error>((fresh_dir, records))
        })();
        let (fresh_dir, records) = match built {
            Ok(b) => b,
            Err(e) => return (Some(self), Err(e)),
        };
        let Vault {
            store,
            keyring,
            header,
            uses,
            revocations,
            infos,
            epoch,
            lock,
            ..
        } = self;
        drop(store);
        let swapped = lock.exchange(&fresh_dir, &db_dir);
        let reopened = match Store::open(&db_dir) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        };
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
            epoch,
            lock,
        };
        if let Err(e) = swapped {
            // The old database is still in place and was reopened: nothing changed.
            return (Some(vault), Err(e));
        }
        // `fresh_dir` now holds the old database; the guard removes it.
        drop(guard);
        let report = CompactReport {
            bytes_before,
            bytes_after: dir_size(&db_dir),
            records,
        };
        let head = vault.lock_writer();
        let logged = vault.commit_raising_epoch(
            head,
            Batch::new(),
            AuditEvent::new("compact").detail(format!(
                "{records} records, {bytes_before} → {} bytes{note}",
                report.bytes_after
            )),
            None,
        );
        match logged {
            Ok(()) => (Some(vault), Ok(report)),
            Err(e) => (Some(vault), Err(e)),
        }
    }

    /// Creates a vault at `to` (which must not exist) from a backup, after verifying
    /// all of the backup, and re-applies `revocations` (from a newer copy of the vault:
    /// every one, whatever its date). The new vault has a new id (this machine keeps a
    /// new rollback record for it) and the backup's passphrase. Nothing is left behind
    /// on failure: the vault is built and finished in a hidden directory beside `to`,
    /// and renamed into place only once complete.
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
        let format = opened.header.vault_format;
        let keyring = opened.master.keyring_for_format(format);
        let trees = split_trees(opened.records);
        let report = check_records(&keyring, &opened.header.vault_header, format, &|t| {
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
        // What killed restores to the same place left behind.
        remove_stale_siblings(to, "restoring");
        let tmp = sibling(to, "restoring")?;
        let mut guard = DirGuard(Some(tmp.clone()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        // Held while the files are written, so that no other restore takes the
        // directory for a leftover (opening takes it again).
        let building = VaultLock::acquire(&tmp, layout::LOCK_WAIT)?;
        if format >= CURRENT_FORMAT {
            let store = Store::create(&building.db_dir())?;
            for (tree, entries) in Tree::ALL.into_iter().zip(&trees) {
                store.load(tree, entries)?;
            }
            store.flush()?;
            drop(store);
            let mut vault_id = [0u8; VAULT_ID_LEN];
            random_bytes(&mut vault_id)?;
            let header = VaultHeader {
                format: CURRENT_FORMAT,
                vault_id,
                unlock: opened.header.vault_header.clone(),
            };
            building.replace_file(layout::HEADER_FILE, &header.encode(&keyring)?)?;
        } else {
            // A backup of an older format holds that format's database as it was
            // (header and format records included): rebuild it, and let opening
            // migrate it (which gives it an id).
            let store = Store::create(&tmp.join("legacy"))?;
            for (tree, entries) in Tree::ALL.into_iter().zip(&trees) {
                store.load(tree, entries)?;
            }
            store.flush()?;
            drop(store);
            move_legacy_database_up(&tmp)?;
        }
        drop(building);
        let backup_created = Timestamp(opened.header.created);
        let revocations_applied = {
            let vault = Vault::open_restored(&tmp, opened.master)?;
            let head = vault.lock_writer();
            vault.commit_raising_epoch(
                head,
                Batch::new(),
                AuditEvent::new("restore").detail(format!(
                    "from a backup made at {backup_created}, {} records",
                    opened.header.records
                )),
                None,
            )?;
            let applied = match revocations {
                Some(list) => vault.apply_revocations(list)?,
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

    /// Re-applies revocations recorded elsewhere (another copy of this vault): every
    /// user of `revocations` not revoked here loses their keys and is marked revoked
    /// with the original time and reason. Revocations always win, whatever their dates:
    /// a revocation older than a backup may still be missing from it (the backup was
    /// made from an older copy).
    pub fn apply_revocations(&self, revocations: &[RevocationInfo]) -> Result<Vec<String>> {
        let mut applied = Vec::new();
        for r in revocations {
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
    let format = opened.header.vault_format;
    let keyring = opened.master.keyring_for_format(format);
    let trees = split_trees(opened.records);
    let report = check_records(&keyring, &opened.header.vault_header, format, &|t| {
        Ok(trees[t.index()].clone())
    })?;
    Ok((opened.header, report))
}

/// Moves the database built in `dir/legacy` up into `dir`, where a vault of formats 1 to
/// 3 keeps it.
fn move_legacy_database_up(dir: &Path) -> Result<()> {
    let from = dir.join("legacy");
    let io = |e| Error::io(format!("cannot build the vault in {}", dir.display()), e);
    for e in fs::read_dir(&from).map_err(io)? {
        let e = e.map_err(io)?;
        fs::rename(e.path(), dir.join(e.file_name())).map_err(io)?;
    }
    fs::remove_dir(&from).map_err(io)?;
    layout::sync_dir(dir);
    Ok(())
}

/// Writes a backup of a vault of formats 1 to 3 beside its directory `dir` before it
/// is migrated: its database as it is (sealed with that format's keys), with its header.
pub(crate) fn backup_before_migration(
    store: &Store,
    header: &Header,
    master: &MasterKey,
    dir: &Path,
) -> Result<()> {
    let from = crate::store::migrate::format_version(store)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vault".into());
    let target = dir.with_file_name(format!(
        "{name}.pre-v{CURRENT_FORMAT}-backup-{}-{}.kvb",
        Timestamp::now().0,
        layout::random_suffix()?
    ));
    let mut records = Vec::new();
    for tree in Tree::ALL {
        for (k, v) in store.entries(tree)? {
            records.push(Ok((tree, k, v)));
        }
    }
    let backup_header = BackupHeader {
        vault_format: from,
        created: Timestamp::now().0,
        vault_header: header.clone(),
        records: records.len() as u64,
    };
    backup::write_backup(
        &target,
        &backup_header,
        &master.legacy_keyring(),
        &mut records.into_iter(),
        &mut |_, _| {},
    )?;
    Ok(())
}
