//! Adding keys: one (`gen`, `import`) or many in one atomic change (`generate_batch`),
//! refused for revoked users and for names a user already has.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::crypto::RandomBlock;
use crate::crypto::keys::{self, KeyMaterial};
use crate::crypto::random_bytes;
use crate::crypto::seal::record_aad;
use crate::error::{Error, Result};
use crate::keytype::KeyType;
use crate::store::records::{self, KeyRecord, KeyVersionRecord, VersionState};
use crate::store::{Batch, Tree};

use super::types::{KeyInfo, Timestamp};
use super::{AuditEvent, Vault, key_info, validate};

impl Vault {
    /// Generates a key of `key_type` for `user` and stores it as version 1 under `name`
    /// (by default the type's name, such as `fernet`). A user is created by their first
    /// key; a revoked user gets none ([`Error::UserRevoked`]), and an existing name is
    /// never overwritten ([`Error::KeyExists`]).
    ///
    /// ```
    /// use keyvault::{Error, KeyType, Vault};
    /// use keyvault::crypto::kdf::KdfParams;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// // Fast, weak KDF parameters, for the example only: real vaults keep the default.
    /// let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// let vault = Vault::create(&dir.path().join("vault"), b"passphrase", kdf, true)?;
    /// let info = vault.generate("alice", Some("signing"), KeyType::Ed25519)?;
    /// assert_eq!((info.name.as_str(), info.primary_version), ("signing", 1));
    /// assert!(matches!(
    ///     vault.generate("alice", Some("signing"), KeyType::Ed25519),
    ///     Err(Error::KeyExists { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn generate(&self, user: &str, name: Option<&str>, key_type: KeyType) -> Result<KeyInfo> {
        let name = name.unwrap_or(key_type.as_str());
        let user = &validate::new_user_id(user)?;
        validate::key_name(name)?;
        // Refuse before the (possibly slow) generation, and again under the lock.
        self.check_can_add(user, name)?;
        let material = keys::generate(key_type)?;
        self.store_new_key(user, name, key_type, material, "gen")
    }

    /// Stores an existing key given as PEM, DER or base64 (see `crypto::keys::import`).
    /// `public_only` allows a public key without its private half.
    pub fn import(
        &self,
        user: &str,
        name: &str,
        key_type: KeyType,
        input: &[u8],
        public_only: bool,
    ) -> Result<KeyInfo> {
        let user = &validate::new_user_id(user)?;
        validate::key_name(name)?;
        self.check_can_add(user, name)?;
        let material = keys::import(key_type, input, public_only)?;
        self.store_new_key(user, name, key_type, material, "import")
    }

    pub(super) fn check_can_add(&self, user: &str, name: &str) -> Result<()> {
        self.trusted_ledger()?;
        self.refuse_revoked(user)?;
        self.refuse_existing(user, name, &self.key_db_key(user, name))
    }

    pub(super) fn refuse_revoked(&self, user: &str) -> Result<()> {
        if let Some(r) = self.revoked_record(user)? {
            return Err(Error::UserRevoked {
                user: user.to_string(),
                revoked_at: Timestamp(r.revoked_at).to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn refuse_existing(&self, user: &str, name: &str, db_key: &[u8]) -> Result<()> {
        if self.store.contains(Tree::Keys, db_key)? {
            return Err(Error::KeyExists {
                user: user.to_string(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn store_new_key(
        &self,
        user: &str,
        name: &str,
        key_type: KeyType,
        material: KeyMaterial,
        operation: &'static str,
    ) -> Result<KeyInfo> {
        let head = self.lock_writer();
        self.check_can_add(user, name)?;
        let mut id = [0u8; 16];
        random_bytes(&mut id)?;
        let record = new_key_record(id, user, name, key_type, material, Timestamp::now().0);
        let db_key = self.key_db_key(user, name);
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, &db_key, &record)?;
        self.commit(
            head,
            batch,
            AuditEvent::new(operation)
                .user(user)
                .key(name)
                .detail(format!("type {key_type}, version 1")),
        )?;
        Ok(key_info(&record))
    }

    /// Generates many keys in one atomic change (all or none) and one flush: for bulk
    /// provisioning. Each item is (user, name — default the type's —, type); the same
    /// rules as [`Vault::generate`] apply to every one, and a name twice in the batch is
    /// refused. One audit entry records the batch and names every key it made (with the
    /// user, when all items are for one user). An empty batch changes nothing.
    pub fn generate_batch(&self, items: &[(&str, Option<&str>, KeyType)]) -> Result<Vec<KeyInfo>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = std::collections::HashSet::new();
        let mut prepared = Vec::with_capacity(items.len());
        for &(user, name, key_type) in items {
            let name = name.unwrap_or(key_type.as_str());
            if validate::new_user_id(user)? != user {
                return Err(Error::Usage(format!(
                    "the user id {user:?} is not in Unicode NFC form; normalise it first"
                )));
            }
            validate::key_name(name)?;
            if !seen.insert((user, name)) {
                return Err(Error::AlreadyExists(format!(
                    "{user}/{name} appears twice in the batch"
                )));
            }
            prepared.push((user, name, key_type, keys::generate(key_type)?));
        }
        let mut head = self.lock_writer();
        let now = Timestamp::now().0;
        // No revoked user at all (the sealed ledger's count), the common case: no lookup.
        let any_revoked = self.trusted_ledger()?.count > 0;
        // Sealing is most of the batch's own work: a long batch is sealed on two threads
        // (under the writer lock, so no revocation slips in before the commit).
        let staged = if prepared.len() >= PARALLEL_BATCH {
            // Taken by the thread, or by this one if no thread can be started.
            let second = Mutex::new(prepared.split_off(prepared.len() / 2));
            let take_second =
                || std::mem::take(&mut *second.lock().unwrap_or_else(|p| p.into_inner()));
            std::thread::scope(|scope| {
                let other = std::thread::Builder::new()
                    .name("keyvault-seal".into())
                    .spawn_scoped(scope, || {
                        self.seal_new_keys(take_second(), now, any_revoked)
                    });
                let mut staged = self.seal_new_keys(prepared, now, any_revoked)?;
                let rest = match other {
                    Ok(thread) => thread
                        .join()
                        .map_err(|_| Error::Internal("a sealing thread panicked".into()))??,
                    // No thread to be had: seal the rest here.
                    Err(_) => self.seal_new_keys(take_second(), now, any_revoked)?,
                };
                staged.extend(rest);
                Ok::<_, Error>(staged)
            })?
        } else {
            self.seal_new_keys(prepared, now, any_revoked)?
        };
        let mut batch = Batch::new();
        let mut infos = Vec::with_capacity(staged.len());
        let mut names = Vec::with_capacity(staged.len());
        let mut listed = String::new();
        for key in staged {
            if !listed.is_empty() {
                listed.push_str(", ");
            }
            listed.push_str(key.user);
            listed.push('/');
            listed.push_str(key.name);
            listed.push_str(" (");
            listed.push_str(key.key_type.as_str());
            listed.push(')');
            // Refused as the batch is applied if the key exists: the transaction reads
            // the old value anyway, so a separate lookup per key would read it twice.
            batch.create(Tree::Keys, key.db_key, key.sealed);
            names.push((key.user, key.name));
            infos.push(key.info);
        }
        // One audit entry names every key of the batch (as Vault's audit log records a
        // batch request once): an entry per key would double the writes of a bulk load.
        let mut event = AuditEvent::new("gen").detail(format!(
            "batch of {} keys, version 1: {listed}",
            infos.len()
        ));
        if let Some(user) = single_user(items) {
            event = event.user(user);
        }
        let ticket = match self.commit_events(&mut head, batch, vec![event], false) {
            Err(Error::AlreadyExists(e)) => {
                // Name the key that exists.
                for (user, name) in names {
                    self.refuse_existing(user, name, &self.key_db_key(user, name))?;
                }
                return Err(Error::AlreadyExists(e));
            }
            other => other?,
        };
        drop(head);
        if !self.deferred_flush.load(Ordering::Relaxed) {
            self.wait_durable(ticket)?;
        }
        Ok(infos)
    }

    /// Seals new keys' records for [`Vault::generate_batch`], in order, refusing revoked
    /// users (looked up only if `any_revoked`).
    fn seal_new_keys<'a>(
        &self,
        items: Vec<(&'a str, &'a str, KeyType, KeyMaterial)>,
        now: u64,
        any_revoked: bool,
    ) -> Result<Vec<StagedKey<'a>>> {
        // The keys' ids and the records' nonces: one system call per 4 KiB.
        let mut randomness = RandomBlock::default();
        let mut users_checked = std::collections::HashSet::new();
        items
            .into_iter()
            .map(|(user, name, key_type, material)| {
                if any_revoked && users_checked.insert(user) {
                    self.refuse_revoked(user)?;
                }
                let db_key = self.key_db_key(user, name);
                let record =
                    new_key_record(randomness.take()?, user, name, key_type, material, now);
                let sealed = self.keyring.records.seal_with_nonce(
                    randomness.take()?,
                    &record_aad(Tree::Keys.name(), &db_key),
                    &records::encode(&record)?,
                )?;
                Ok(StagedKey {
                    user,
                    name,
                    key_type,
                    db_key,
                    sealed,
                    info: key_info(&record),
                })
            })
            .collect()
    }
}

/// Batches of at least this many keys are sealed on two threads: below it, starting a
/// thread (tens of µs) costs about what it saves.
const PARALLEL_BATCH: usize = 64;

/// The record of a new key: its random `id` and one primary version holding `material`.
fn new_key_record(
    id: [u8; 16],
    user: &str,
    name: &str,
    key_type: KeyType,
    material: KeyMaterial,
    now: u64,
) -> KeyRecord {
    KeyRecord {
        id,
        user: user.to_string(),
        name: name.to_string(),
        key_type,
        created: now,
        versions: vec![KeyVersionRecord {
            version: 1,
            created: now,
            state: VersionState::Primary,
            secret: material.secret,
            public: material.public,
            uses: 0,
        }],
    }
}

/// A new key of a batch, sealed and ready to commit.
struct StagedKey<'a> {
    user: &'a str,
    name: &'a str,
    key_type: KeyType,
    db_key: Vec<u8>,
    sealed: Vec<u8>,
    info: KeyInfo,
}

/// The user of every item of a batch, when there is only one.
fn single_user<'a>(items: &[(&'a str, Option<&str>, KeyType)]) -> Option<&'a str> {
    let first = items.first()?.0;
    items.iter().all(|item| item.0 == first).then_some(first)
}
