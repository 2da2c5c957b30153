//! The migration runner: brings a vault to the current format, one step at a time.
//! It is part of the vault layer because its steps build the vault's own records (the
//! audit head, the revocation ledger, the epoch); the store below only records which
//! format a database holds (`store::format`).
//!
//! Each step lives in its own file under `migrations/` (compiled into the crate). Steps
//! 1 to 3 change records inside the database: each adds its changes to a batch, the
//! runner appends the new format version to the same batch and applies it atomically,
//! so a crash leaves the old or the new format, never a mix. Step 4 changes the layout
//! of the vault directory (see its file): it rewrites the database beside the old one
//! and makes the switch with one rename, finished by the next opener if a crash comes
//! after it. A vault of a newer format than this binary is refused.
//!
//! Every step refuses data that already holds what a later format adds (a sealed head,
//! a ledger, an epoch, records sealed under the format-4 key): relabelling a newer
//! vault's format to make an older step rebuild its safeguards from tampered data is
//! detected, never obeyed.

use crate::crypto::seal::{Keyring, MasterKey};
use crate::error::{Error, Result};
use crate::store::layout::VaultLock;
use crate::store::records::{Header, meta_keys};
use crate::store::{Batch, Store, Tree};

pub(crate) use crate::store::format::{CURRENT_FORMAT, LAST_IN_DATABASE_FORMAT, format_version};

#[path = "../../migrations/0001_initial.rs"]
mod m0001_initial;
#[path = "../../migrations/0002_audit_chain_head.rs"]
mod m0002_audit_chain_head;
#[path = "../../migrations/0003_revocation_ledger.rs"]
mod m0003_revocation_ledger;
#[path = "../../migrations/0004_vault_layout.rs"]
mod m0004_vault_layout;

pub use m0004_vault_layout::finish as finish_layout_migration;

/// One format step inside the database, applied as one atomic batch.
pub(crate) struct Migration {
    /// The format version after this step.
    pub to_version: u32,
    /// What the step changes (read by people and by the tests' messages).
    #[cfg_attr(not(test), allow(dead_code))]
    pub description: &'static str,
    /// Adds the step's changes to `ctx.batch`.
    pub apply: fn(&mut MigrationContext<'_>) -> Result<()>,
}

/// What a step can read and where it writes.
pub(crate) struct MigrationContext<'a> {
    /// The database being migrated (read it; write only through `batch`).
    pub store: &'a Store,
    /// The header of a vault being created (only for the initial step).
    pub new_header: Option<&'a Header>,
    /// The vault's subkeys, to read and seal records (none when creating).
    pub keyring: Option<&'a Keyring>,
    /// The changes of this step.
    pub batch: Batch,
}

/// Every step inside the database, in order (step 4, the layout, follows them).
pub(crate) const MIGRATIONS: &[Migration] = &[
    m0001_initial::MIGRATION,
    m0002_audit_chain_head::MIGRATION,
    m0003_revocation_ledger::MIGRATION,
];

/// Runs every pending step. `new_header` is given only when creating a vault, `keyring`
/// when opening an existing one. Each step is one atomic batch together with its new
/// format version. Returns the steps that ran. (Opening an older vault writes a backup
/// next to it first: see `Vault::open`.)
pub(crate) fn run_pending(
    store: &Store,
    new_header: Option<&Header>,
    keyring: Option<&Keyring>,
) -> Result<Vec<u32>> {
    let current = format_version(store)?;
    if current > LAST_IN_DATABASE_FORMAT {
        return Err(Error::Integrity(format!(
            "the database at {} records format {current}, which keeps its format in a header file, not in the database (damaged or tampered with)",
            store.path().display()
        )));
    }
    if current == 0 && new_header.is_none() {
        return Err(Error::Integrity(format!(
            "the database at {} has no vault header",
            store.path().display()
        )));
    }
    let mut ran = Vec::new();
    for step in MIGRATIONS.iter().filter(|m| m.to_version > current) {
        let mut ctx = MigrationContext {
            store,
            new_header,
            keyring,
            batch: Batch::new(),
        };
        (step.apply)(&mut ctx)?;
        let mut batch = ctx.batch;
        batch.insert(
            Tree::Meta,
            meta_keys::FORMAT,
            step.to_version.to_be_bytes().to_vec(),
        );
        store.apply(&batch)?;
        store.flush()?;
        ran.push(step.to_version);
    }
    Ok(ran)
}

/// Refuses to run the step to `to_version` over data that holds what a later format
/// adds: the meta-tree records named in `later`.
pub(crate) fn refuse_newer_data(store: &Store, to_version: u32, later: &[&[u8]]) -> Result<()> {
    for key in later {
        if store.contains(Tree::Meta, key)? {
            return Err(Error::Integrity(format!(
                "the vault is labelled format {} but holds a {:?} record, which only later formats write: its format record was altered (a downgrade); nothing was migrated",
                to_version - 1,
                String::from_utf8_lossy(key)
            )));
        }
    }
    Ok(())
}

/// Refuses, before anything is written (not even the backup beside the vault), a vault
/// that holds what a format after its recorded one adds: an audit head below format 2,
/// a revocation ledger below format 3, an epoch, or records sealed under the format-4
/// key. Each step checks again as it runs.
pub(crate) fn refuse_relabelled(store: &Store, master: &MasterKey) -> Result<()> {
    let format = format_version(store)?;
    let mut later: Vec<&[u8]> = vec![crate::vault::epoch::EPOCH_KEY];
    if format < 3 {
        later.push(crate::vault::ledger::LEDGER_KEY);
    }
    if format < 2 {
        later.push(crate::vault::audit::HEAD_KEY);
    }
    refuse_newer_data(store, format + 1, &later)?;
    let legacy = master.legacy_keyring();
    let current = master.keyring();
    for tree in [Tree::Keys, Tree::Revoked, Tree::Audit] {
        if let Some(first) = store.scan_prefix(tree, &[]).next() {
            let (key, value) = first?;
            let aad = crate::crypto::seal::record_aad(tree.name(), &key);
            if legacy.records.open(&aad, &value).is_err()
                && current.records.open(&aad, &value).is_ok()
            {
                return Err(Error::Integrity(format!(
                    "the vault is labelled format {format} but holds records of format {CURRENT_FORMAT}: its format record was altered (a downgrade); nothing was migrated"
                )));
            }
        }
    }
    Ok(())
}

/// Brings a vault of formats 1 to 3, whose database `store` is in the vault directory
/// itself, to the current format and layout: the steps inside the database first, then
/// the layout step. `header` is its header record and `master` its master key. The
/// caller holds the vault's lock and has written a backup beside the vault.
pub(crate) fn migrate_to_current(
    lock: &VaultLock,
    store: Store,
    header: Header,
    master: &MasterKey,
) -> Result<()> {
    let legacy = master.legacy_keyring();
    run_pending(&store, None, Some(&legacy))?;
    m0004_vault_layout::apply(lock, store, header, master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_the_layout_step_ends_at_current() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to_version as usize, i + 1, "{}", m.description);
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.to_version),
            Some(LAST_IN_DATABASE_FORMAT)
        );
        assert_eq!(m0004_vault_layout::TO_VERSION, CURRENT_FORMAT);
        assert_eq!(LAST_IN_DATABASE_FORMAT + 1, CURRENT_FORMAT);
    }
}
