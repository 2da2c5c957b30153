//! Restoring a vault from a backup file, and what restores and migrations leave beside a
//! vault: the work directory of a restore, the backup written before a migration.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::backup::{self, BackupHeader, BackupRecord};
use crate::crypto::random_bytes;
use crate::crypto::seal::MasterKey;
use crate::error::{Error, Result};
use crate::store::layout::{self, VaultLock};
use crate::store::records::{Header, RevokedRecord};
use crate::store::{Batch, Store, Tree};
use crate::vault::migrate::CURRENT_FORMAT;

use super::check::{CheckReport, TreeRecords, check_records};
use super::header::{VAULT_ID_LEN, VaultHeader};
use super::lifecycle::RestoreReport;
use super::types::{RevocationInfo, Timestamp};
use super::{AuditEvent, Vault, user_hash, validate};

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
    let from = crate::vault::migrate::format_version(store)?;
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
