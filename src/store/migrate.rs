//! The migration runner: brings a database to the current format, one step at a time.
//!
//! Each step lives in its own file under `migrations/` (compiled into the crate) and
//! adds its changes to a batch; the runner appends the new format version to the same
//! batch and applies it atomically, so a crash leaves the old or the new format, never a
//! mix. A database of a newer format than this binary is refused.

use crate::crypto::seal::Keyring;
use crate::error::{Error, Result};
use crate::store::records::{Header, meta_keys};
use crate::store::{Batch, Store, Tree};

#[path = "../../migrations/0001_initial.rs"]
mod m0001_initial;
#[path = "../../migrations/0002_audit_chain_head.rs"]
mod m0002_audit_chain_head;
#[path = "../../migrations/0003_revocation_ledger.rs"]
mod m0003_revocation_ledger;

/// The format version this binary writes.
pub const CURRENT_FORMAT: u32 = 3;

/// One format step.
pub struct Migration {
    /// The format version after this step.
    pub to_version: u32,
    /// What the step changes.
    pub description: &'static str,
    /// Adds the step's changes to `ctx.batch`.
    pub apply: fn(&mut MigrationContext<'_>) -> Result<()>,
}

/// What a step can read and where it writes.
pub struct MigrationContext<'a> {
    /// The database being migrated (read it; write only through `batch`).
    pub store: &'a Store,
    /// The header of a vault being created (only for the initial step).
    pub new_header: Option<&'a Header>,
    /// The vault's subkeys.
    pub keyring: Option<&'a Keyring>,
    /// The changes of this step.
    pub batch: Batch,
}

/// Every step, in order.
pub const MIGRATIONS: &[Migration] = &[
    m0001_initial::MIGRATION,
    m0002_audit_chain_head::MIGRATION,
    m0003_revocation_ledger::MIGRATION,
];

/// The format version recorded in the database (0 for an empty database).
pub fn format_version(store: &Store) -> Result<u32> {
    match store.get(Tree::Meta, meta_keys::FORMAT)? {
        None => Ok(0),
        Some(bytes) => {
            let arr: [u8; 4] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::Integrity("the format version record is malformed".into()))?;
            Ok(u32::from_be_bytes(arr))
        }
    }
}

/// Runs every pending step. `new_header` is given only when creating a vault, `keyring`
/// when opening an existing one. Each step is one atomic batch together with its new
/// format version. Returns the steps that ran. (Opening an older vault writes a backup
/// next to it first: see `Vault::open`.)
pub fn run_pending(
    store: &Store,
    new_header: Option<&Header>,
    keyring: Option<&Keyring>,
) -> Result<Vec<u32>> {
    let current = format_version(store)?;
    if current > CURRENT_FORMAT {
        return Err(Error::NewerFormat {
            path: store.path().to_path_buf(),
            found: current,
            supported: CURRENT_FORMAT,
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_end_at_current() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to_version as usize, i + 1, "{}", m.description);
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.to_version),
            Some(CURRENT_FORMAT)
        );
    }
}
