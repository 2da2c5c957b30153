//! Which vault format a database holds: the format numbers and the record that keeps
//! it. The runner that moves a vault from one format to the next belongs to the vault
//! layer (`vault::migrate`), whose steps build records this module knows nothing of.

use crate::error::{Error, Result};
use crate::store::records::meta_keys;
use crate::store::{Store, Tree};

/// The format version this binary writes.
pub const CURRENT_FORMAT: u32 = 4;

/// The last format whose version and header live in the database.
pub(crate) const LAST_IN_DATABASE_FORMAT: u32 = 3;

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
