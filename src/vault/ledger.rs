//! The revocation ledger: a sealed record in the `meta` tree that pins the set of
//! revoked users.
//!
//! Revocations are never undone, so the set of revoked users only grows. The ledger
//! keeps its size and an order-free digest, the XOR of an HMAC (under the MAC subkey) of
//! every revoked user's database key, and is updated in the same atomic batch as every
//! revocation. Someone who can write the vault directory but has no passphrase cannot
//! compute the HMAC, so deleting a revocation record (to give a revoked user keys again)
//! no longer matches the ledger: the vault then refuses new keys and revocation answers
//! (exit 7), and `check` reports it.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::seal::{Keyring, record_aad};
use crate::error::{Error, Result};
use crate::store::records;
use crate::store::{Batch, Store, Tree};

/// The meta-tree key of the sealed ledger.
pub(crate) const LEDGER_KEY: &[u8] = b"revoked-ledger";

/// The count and digest of the revoked set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// How many users are revoked.
    pub count: u64,
    /// XOR of the HMACs of their database keys.
    pub digest: [u8; 32],
}

impl Ledger {
    /// The ledger with one more revoked user (`db_key`: the user's index hash).
    pub fn with(mut self, keyring: &Keyring, db_key: &[u8]) -> Ledger {
        let mac = keyring.mac.mac(&[b"keyvault revoked ledger v1", db_key]);
        for (d, m) in self.digest.iter_mut().zip(mac) {
            *d ^= m;
        }
        self.count += 1;
        self
    }

    /// The ledger of the revoked tree as it is (keys only; nothing is opened).
    pub(crate) fn of_tree(keyring: &Keyring, db_keys: impl Iterator<Item = Vec<u8>>) -> Ledger {
        db_keys.fold(Ledger::default(), |l, k| l.with(keyring, &k))
    }

    /// Adds the sealed ledger to `batch`.
    pub(crate) fn stage(&self, keyring: &Keyring, batch: &mut Batch) -> Result<()> {
        let sealed = keyring.records.seal(
            &record_aad(Tree::Meta.name(), LEDGER_KEY),
            &records::encode(self)?,
        )?;
        batch.insert(Tree::Meta, LEDGER_KEY, sealed);
        Ok(())
    }

    /// Opens a sealed ledger.
    pub fn open(keyring: &Keyring, sealed: &[u8]) -> Result<Ledger> {
        let plain = keyring
            .records
            .open(&record_aad(Tree::Meta.name(), LEDGER_KEY), sealed)
            .map_err(|_| Error::Integrity("the revocation ledger failed to authenticate".into()))?;
        records::decode(&plain, "revocation ledger")
    }
}

/// Checks the revoked tree of `store` against its sealed ledger. `Ok(Err(message))` when
/// they disagree (a revocation was removed or the ledger was).
pub fn verify(store: &Store, keyring: &Keyring) -> Result<std::result::Result<Ledger, String>> {
    let keys: Vec<Vec<u8>> = store
        .scan_prefix(Tree::Revoked, &[])
        .map(|item| item.map(|(k, _)| k))
        .collect::<Result<_>>()?;
    Ok(compare(
        keyring,
        keys.into_iter(),
        store.get(Tree::Meta, LEDGER_KEY)?.as_deref(),
    ))
}

/// Compares the database keys of a revoked tree with a sealed ledger.
pub fn compare(
    keyring: &Keyring,
    db_keys: impl Iterator<Item = Vec<u8>>,
    sealed: Option<&[u8]>,
) -> std::result::Result<Ledger, String> {
    let actual = Ledger::of_tree(keyring, db_keys);
    let Some(sealed) = sealed else {
        return Err("the revocation ledger is missing".into());
    };
    let stored = Ledger::open(keyring, sealed).map_err(|e| e.to_string())?;
    let same = stored.count == actual.count && bool::from(stored.digest.ct_eq(&actual.digest));
    if !same {
        return Err(format!(
            "the revoked users do not match the sealed revocation ledger ({} recorded, {} present): a revocation was removed or altered",
            stored.count, actual.count
        ));
    }
    Ok(stored)
}
