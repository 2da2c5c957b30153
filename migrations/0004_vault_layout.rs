//! Format step 3 → 4: the vault layout, an authenticated header, a sealed epoch.
//!
//! Up to format 3 the vault directory was the database's own directory, and the header
//! (KDF parameters, salt, wrapped master key) and the format version were unsealed
//! records inside it. The database is log-structured, so a passphrase change left the
//! old wrapping of the master key in its files; and the format version could be set back
//! without the passphrase, making an older step rebuild its safeguards from tampered
//! data. Format 4:
//!
//! - moves the header out of the database into its own file, `header`, authenticated
//!   under a subkey of the master key together with the format version and a new random
//!   vault id, and replaced atomically;
//! - keeps the database in `db/`, guarded by the vault's own `lock` file;
//! - re-seals every record under a sealing key of format 4, so no older step can read
//!   (and so rebuild anything from) format-4 data;
//! - adds the sealed epoch (1) for rollback detection, and an audit entry.
//!
//! The step writes a fresh database into `.kv-migrate-db/` (every record opened with the
//! old key and sealed with the new one; the old `format`, `header` and failed-unlock
//! records are not carried over) and the new header into `.kv-migrate-header`, syncs
//! both, then renames the header into place: that rename is the switch. [`finish`] then
//! removes the old database's files (`conf`, `db`, `blobs/`, `snap.*`) and renames
//! `.kv-migrate-db` to `db`; a crash before the switch leaves the format-3 vault (the
//! work entries are removed by the next attempt), a crash after it leaves a format-4
//! vault that the next opener finishes. No old header survives in the directory.
//!
//! It refuses a vault whose records already open under the format-4 key or that holds
//! an epoch: data of format 4 relabelled as format 3.

use std::fs;
use std::path::Path;

use crate::crypto::random_bytes;
use crate::crypto::seal::{Keyring, MasterKey, record_aad};
use crate::error::{Error, Result};
use crate::store::layout::{
    self, DB_DIR, HEADER_FILE, LEGACY_FILES, MIGRATE_DB, MIGRATE_HEADER, VaultLock,
};
use crate::store::records::{Header, meta_keys};
use crate::store::{Batch, Store, Tree};
use crate::vault::audit::{AuditEvent, AuditHead};
use crate::vault::epoch;
use crate::vault::header::{VAULT_ID_LEN, VaultHeader};

/// The format after this step.
pub(crate) const TO_VERSION: u32 = 4;

/// Meta records of format 3 that format 4 keeps as they are (unsealed).
const KEPT_UNSEALED: [&[u8]; 1] = [meta_keys::FAILED_UNLOCKS];
/// Meta records of format 3 that format 4 keeps elsewhere or not at all.
const DROPPED: [&[u8]; 2] = [meta_keys::FORMAT, meta_keys::HEADER];

/// Runs the step on the format-3 database `old` (in the vault directory itself), whose
/// header record is `header`. The caller holds the vault's lock.
pub fn apply(lock: &VaultLock, old: Store, header: Header, master: &MasterKey) -> Result<()> {
    let dir = lock.dir();
    let legacy = master.legacy_keyring();
    let keyring = master.keyring();
    if old.contains(Tree::Meta, epoch::EPOCH_KEY)? {
        return Err(relabelled());
    }
    // Start from nothing: a killed attempt's work entries go.
    let fresh_dir = dir.join(MIGRATE_DB);
    let _ = fs::remove_dir_all(&fresh_dir);
    let _ = fs::remove_file(dir.join(MIGRATE_HEADER));
    let written = (|| {
        let fresh = Store::create(&fresh_dir)?;
        let mut records = 0u64;
        for tree in Tree::ALL {
            let mut entries = Vec::new();
            for (key, value) in old.entries(tree)? {
                records += 1;
                if tree == Tree::Meta && DROPPED.contains(&key.as_slice()) {
                    continue;
                }
                if tree == Tree::Meta && KEPT_UNSEALED.contains(&key.as_slice()) {
                    entries.push((key, value));
                    continue;
                }
                let resealed = reseal(&legacy, &keyring, tree, &key, &value)?;
                entries.push((key, resealed));
            }
            fresh.load(tree, &entries)?;
        }
        // The first epoch (bound to the revocation ledger, which must match the revoked
        // users), and the step's own audit entry (with its sealed head).
        let ledger = crate::vault::ledger::verify(&fresh, &keyring)?
            .map_err(|message| Error::Integrity(format!("{message}; nothing was migrated")))?;
        let mut batch = Batch::new();
        let head = AuditHead::load(&fresh, &keyring)?;
        epoch::stage(
            &keyring,
            &mut batch,
            &epoch::EpochRecord {
                epoch: 1,
                ledger,
                audit_floor: head.seq(),
            },
        )?;
        let seal = |tree: Tree, db_key: &[u8], plain: &[u8]| {
            keyring
                .records
                .seal(&record_aad(tree.name(), db_key), plain)
        };
        let head = head.append(
            &keyring,
            AuditEvent::new("migrate").detail(format!(
                "format 3 → {TO_VERSION}: header file, vault lock, records re-sealed ({records} records)"
            )),
            &mut batch,
            seal,
        )?;
        head.stage(&mut batch, seal)?;
        fresh.apply(&batch)?;
        fresh.flush()?;
        drop(fresh);
        let mut vault_id = [0u8; VAULT_ID_LEN];
        random_bytes(&mut vault_id)?;
        let new_header = VaultHeader {
            format: TO_VERSION,
            vault_id,
            unlock: header,
        };
        layout::write_file_atomically(dir, MIGRATE_HEADER, &new_header.encode(&keyring)?)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&fresh_dir);
        let _ = fs::remove_file(dir.join(MIGRATE_HEADER));
        return Err(e);
    }
    // The old database must be closed before its files go.
    drop(old);
    // The switch: from here on the directory holds a format-4 vault.
    fs::rename(dir.join(MIGRATE_HEADER), dir.join(HEADER_FILE)).map_err(|e| {
        Error::io(
            format!("cannot write {}", dir.join(HEADER_FILE).display()),
            e,
        )
    })?;
    layout::sync_dir(dir);
    finish(lock)
}

/// Finishes a migration to format 4 that made its switch (the header file is in place)
/// but may not have replaced the database yet: removes the old database's files and
/// moves the new one to `db/`. Does nothing when there is nothing to finish.
pub fn finish(lock: &VaultLock) -> Result<()> {
    let dir = lock.dir();
    let fresh = dir.join(MIGRATE_DB);
    if !fresh.is_dir() {
        return Ok(());
    }
    let db = dir.join(DB_DIR);
    if db.is_dir() {
        // The switch already happened and the database moved: a leftover.
        let _ = fs::remove_dir_all(&fresh);
        return Ok(());
    }
    if !dir.join(HEADER_FILE).is_file() {
        // Killed before the switch: the format-3 vault is intact; drop the work.
        let _ = fs::remove_dir_all(&fresh);
        return Ok(());
    }
    remove_legacy_files(dir)?;
    fs::rename(&fresh, &db).map_err(|e| {
        Error::io(
            format!("cannot move the migrated database to {}", db.display()),
            e,
        )
    })?;
    layout::sync_dir(dir);
    Ok(())
}

/// Removes the files a format-3 database kept in the vault directory.
fn remove_legacy_files(dir: &Path) -> Result<()> {
    let io = |e| {
        Error::io(
            format!("cannot remove the old database files in {}", dir.display()),
            e,
        )
    };
    for name in LEGACY_FILES {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).map_err(io)?,
            Ok(_) => fs::remove_file(&path).map_err(io)?,
            Err(_) => {}
        }
    }
    for e in fs::read_dir(dir).map_err(io)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("snap.") {
            fs::remove_file(e.path()).map_err(io)?;
        }
    }
    layout::sync_dir(dir);
    Ok(())
}

/// Opens a format-3 record and seals it for format 4. A record that does not open with
/// the old key but does with the new one is format-4 data under a format-3 label.
fn reseal(
    legacy: &Keyring,
    keyring: &Keyring,
    tree: Tree,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<u8>> {
    let aad = record_aad(tree.name(), key);
    match legacy.records.open(&aad, value) {
        Ok(plain) => keyring.records.seal(&aad, &plain),
        Err(_) if keyring.records.open(&aad, value).is_ok() => Err(relabelled()),
        Err(_) => Err(Error::Integrity(format!(
            "a record in the {} tree failed to authenticate (corrupted, tampered with, or moved); nothing was migrated",
            tree.name()
        ))),
    }
}

fn relabelled() -> Error {
    Error::Integrity(
        "the vault is labelled format 3 but holds data of format 4: its format was altered (a downgrade); nothing was migrated"
            .into(),
    )
}
