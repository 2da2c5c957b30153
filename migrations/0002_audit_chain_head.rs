//! Format step 1 → 2: the sealed audit chain head.
//!
//! Format 1 chained every audit entry to the previous one, which detects editing,
//! deleting and reordering entries, but not removing the newest ones. Format 2 also
//! keeps the head of the chain (the last entry's sequence number and MAC) sealed in the
//! `meta` tree under `audit-head`, updated in the same atomic batch as every entry, so
//! truncating the log is detected too. This step verifies the existing chain and writes
//! its head. A vault with no audit entries needs nothing. It refuses a vault that holds
//! a head, ledger or epoch already (a newer vault relabelled as format 1).

use crate::error::{Error, Result};
use crate::store::Tree;
use crate::store::records;
use crate::vault::audit::{self, HEAD_KEY};

use super::{Migration, MigrationContext};

/// The step from format 1 to 2, as the runner lists it.
pub(crate) const MIGRATION: Migration = Migration {
    to_version: 2,
    description: "seal the audit chain head in the meta tree, so truncating the log is detected",
    apply,
};

fn apply(ctx: &mut MigrationContext<'_>) -> Result<()> {
    // A format-1 vault has none of these: one that does was relabelled.
    super::refuse_newer_data(
        ctx.store,
        2,
        &[
            HEAD_KEY,
            crate::vault::ledger::LEDGER_KEY,
            crate::vault::epoch::EPOCH_KEY,
        ],
    )?;
    let entries = ctx.store.entries(Tree::Audit)?;
    if entries.is_empty() {
        return Ok(());
    }
    let keyring = ctx.keyring.ok_or_else(|| {
        Error::Internal("the audit chain head step needs the unlocked vault".into())
    })?;
    let chain = audit::verify_chain(keyring, &entries, None).map_err(Error::from)?;
    let head = audit::head_of(chain.last());
    let sealed = keyring.records.seal(
        &crate::crypto::seal::record_aad(Tree::Meta.name(), HEAD_KEY),
        &records::encode(&head)?,
    )?;
    ctx.batch.insert(Tree::Meta, HEAD_KEY, sealed);
    Ok(())
}
