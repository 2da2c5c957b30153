//! Rollback detection: the vault's sealed epoch, and the highest epoch this machine has
//! seen of each vault.
//!
//! Every change that removes something (revoke, delete, passwd, compact, restore) raises
//! the epoch, a counter sealed in the `meta` tree in the same atomic batch as the change.
//! keyvault remembers, per vault id, the highest epoch it has seen on this machine, in
//! a small file under `$XDG_STATE_HOME/keyvault/epochs/` (default
//! `~/.local/state/keyvault/epochs/`). A vault whose epoch is lower than remembered is an
//! older copy put back in place: opening it fails unless the user accepts the rollback,
//! which raises the epoch past the remembered one and is audited.
//!
//! The epoch record also holds the revocation ledger as it was when the record was
//! written (every revocation rewrites both in one batch) and how many audit entries the
//! log had then. Sealed records can be copied between copies of one vault without the
//! passphrase, so an epoch on its own could be lifted from a newer copy into an older
//! one; bound to the ledger, a newer epoch in an older copy disagrees with that copy's
//! revocations (exit 7), and bringing the newer revocations along keeps them in force.
//! The audit floor makes deleting the whole log, head included, an integrity failure.
//!
//! What it cannot see: a copy put back on another machine (or after the state file was
//! deleted), and a change lost with the last crash before it was remembered. The state
//! file is not secret and not authenticated: whoever can write the user's home can
//! lower it, and can also replace the keyvault binary.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::crypto::seal::{Keyring, record_aad};
use crate::error::{Error, Result};
use crate::store::records;
use crate::store::{Batch, Store, Tree};

use super::ledger::Ledger;

/// The meta-tree key of the sealed epoch record.
pub(crate) const EPOCH_KEY: &[u8] = b"epoch";

/// The sealed epoch record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Raised by every change that removes something.
    pub epoch: u64,
    /// The revocation ledger when the record was written: it must equal the vault's.
    pub ledger: Ledger,
    /// How many audit entries the log had when the record was written: it never has
    /// fewer.
    pub audit_floor: u64,
}

impl EpochRecord {
    /// Checks the record against the vault's revocation ledger and audit head: records
    /// mixed in from another copy of the vault, or a log cut below the floor, fail.
    pub fn check(&self, ledger: &Ledger, audit_seq: u64) -> Result<()> {
        if self.ledger != *ledger {
            return Err(Error::Integrity(
                "the vault's epoch record does not match its revocation ledger: records of another copy of the vault were mixed in (an older copy made to look newer?)"
                    .into(),
            ));
        }
        if audit_seq < self.audit_floor {
            return Err(Error::Integrity(format!(
                "the audit log ends at entry {audit_seq}, but it had {} entries at the last recorded change: it was truncated",
                self.audit_floor
            )));
        }
        Ok(())
    }
}

/// Adds the sealed `record` to `batch`.
pub(crate) fn stage(keyring: &Keyring, batch: &mut Batch, record: &EpochRecord) -> Result<()> {
    let sealed = keyring.records.seal(
        &record_aad(Tree::Meta.name(), EPOCH_KEY),
        &records::encode(record)?,
    )?;
    batch.insert(Tree::Meta, EPOCH_KEY, sealed);
    Ok(())
}

/// Opens a sealed epoch record.
pub fn open(keyring: &Keyring, sealed: &[u8]) -> Result<EpochRecord> {
    let plain = keyring
        .records
        .open(&record_aad(Tree::Meta.name(), EPOCH_KEY), sealed)
        .map_err(|_| Error::Integrity("the vault's epoch record fails to authenticate".into()))?;
    records::decode(&plain, "epoch")
}

/// The epoch record of the vault in `store` (format 4 on, where it is always there).
pub fn load(store: &Store, keyring: &Keyring) -> Result<EpochRecord> {
    match store.get(Tree::Meta, EPOCH_KEY)? {
        Some(sealed) => open(keyring, &sealed),
        None => Err(Error::Integrity(
            "the vault's epoch record is missing (damaged or tampered with)".into(),
        )),
    }
}

/// Where this machine keeps the highest epoch seen of the vault `id_hex`.
fn state_file(id_hex: &str) -> Option<PathBuf> {
    Some(
        dirs::state_dir()?
            .join("keyvault")
            .join("epochs")
            .join(id_hex),
    )
}

/// The highest epoch this machine has seen of the vault `id_hex`, if any.
pub fn remembered(id_hex: &str) -> Option<u64> {
    let text = fs::read_to_string(state_file(id_hex)?).ok()?;
    text.trim().parse().ok()
}

/// Remembers `epoch` for the vault `id_hex` if it is higher than what is remembered.
/// Best effort: a home that takes no writes weakens the detection, it does not stop
/// the vault from working.
pub(crate) fn remember(id_hex: &str, epoch: u64) {
    if remembered(id_hex).is_some_and(|r| r >= epoch) {
        return;
    }
    let Some(path) = state_file(id_hex) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return;
    }
    let tmp = dir.join(format!(".{id_hex}.{}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{epoch}")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
}
