//! Format step 2 → 3: the sealed revocation ledger.
//!
//! Up to format 2, deleting a record from the `revoked` tree (which needs no key) gave a
//! revoked user back the right to new keys, undetected. Format 3 keeps in the `meta` tree,
//! sealed, the number of revoked users and an order-free digest of their database keys
//! (see `vault::ledger`), updated atomically with every revocation; opening the vault
//! and `check` compare it with the tree. This step computes the ledger of the revoked
//! users as they are. A new vault gets an empty ledger, so that a missing one is always
//! a sign of tampering. It refuses a vault that holds a ledger or an epoch already (a
//! newer vault relabelled as format 2, perhaps after a revocation record was deleted).

use crate::error::{Error, Result};
use crate::store::Tree;
use crate::vault::ledger::Ledger;

use super::{Migration, MigrationContext};

/// The step from format 2 to 3, as the runner lists it.
pub(crate) const MIGRATION: Migration = Migration {
    to_version: 3,
    description: "seal a ledger of the revoked users in the meta tree, so removing a revocation is detected",
    apply,
};

fn apply(ctx: &mut MigrationContext<'_>) -> Result<()> {
    // A format-2 vault has none of these: one that does was relabelled.
    super::refuse_newer_data(
        ctx.store,
        3,
        &[
            crate::vault::ledger::LEDGER_KEY,
            crate::vault::epoch::EPOCH_KEY,
        ],
    )?;
    let keyring = ctx.keyring.ok_or_else(|| {
        Error::Internal("the revocation ledger step needs the vault's keys".into())
    })?;
    let keys: Vec<Vec<u8>> = ctx
        .store
        .scan_prefix(Tree::Revoked, &[])
        .map(|item| item.map(|(k, _)| k))
        .collect::<Result<_>>()?;
    Ledger::of_tree(keyring, keys.into_iter()).stage(keyring, &mut ctx.batch)
}
