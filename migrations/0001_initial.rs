//! Format step 0 → 1: the initial layout.
//!
//! Creates format v1 in an empty database: the `meta` tree gets the header (Argon2id
//! parameters, salt and the wrapped master key) and the format version 1; the `keys`,
//! `revoked` and `audit` trees start empty. `keyvault init` runs this step.
//! Everything is written in one atomic batch, so a crash leaves either no vault or a
//! whole v1 vault.

use crate::error::{Error, Result};
use crate::store::Tree;
use crate::store::records::{self, meta_keys};

use super::{Migration, MigrationContext};

/// The step to format 1, the runner's first: it writes the header and format records of a
/// new vault.
pub(crate) const MIGRATION: Migration = Migration {
    to_version: 1,
    description: "initial layout: meta header with KDF parameters and wrapped master key; empty keys, revoked and audit trees",
    apply,
};

fn apply(ctx: &mut MigrationContext<'_>) -> Result<()> {
    let header = ctx.new_header.ok_or_else(|| {
        Error::Internal("the initial layout needs the header of a new vault".into())
    })?;
    let encoded = records::encode(header)?;
    ctx.batch
        .insert(Tree::Meta, meta_keys::HEADER, encoded.to_vec());
    Ok(())
}
