//! The per-version use counters. Every version counts its encryptions and signatures.
//! Counts are persisted by reserving blocks ahead (the record stores the ceiling of the
//! current block), so a crash can only overcount, never undercount; a one-shot command
//! reserves exactly one use, the agent reserves blocks (see
//! [`Vault::set_use_reservation`]). AEAD key versions are refused past 2^32 encryptions,
//! NIST SP 800-38D's bound for random 96-bit nonces, and warn as they near it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::records::KeyRecord;
use crate::store::{Batch, Tree};

use super::{AuditEvent, KeyInfo, Vault};

/// Encryptions an AEAD key version may make: 2^32 (NIST SP 800-38D, random nonces).
pub(crate) const AEAD_USE_LIMIT: u64 = 1 << 32;
/// From this many encryptions on, an AEAD key version warns: rotate soon.
pub(crate) const AEAD_WARN_AT: u64 = AEAD_USE_LIMIT - (1 << 28);

/// In-memory use counts and the reservation block size.
pub(crate) struct UseCounters {
    map: Mutex<HashMap<(Vec<u8>, u32), Counter>>,
    block: AtomicU64,
}

impl Default for UseCounters {
    fn default() -> Self {
        UseCounters {
            map: Mutex::new(HashMap::new()),
            block: AtomicU64::new(1),
        }
    }
}

#[derive(Clone, Copy)]
struct Counter {
    used: u64,
    reserved: u64,
}

/// A version of an AEAD key that nears the 2^32 encryptions its random 96-bit nonces
/// allow: the user should rotate the key soon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearLimit {
    /// The user id.
    pub user: String,
    /// The key name.
    pub name: String,
    /// The version near its limit.
    pub version: u32,
    /// The encryptions it has made.
    pub used: u64,
}

impl std::fmt::Display for NearLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version {} of {}/{} has made {} encryptions, near the limit of 2^32",
            self.version, self.user, self.name, self.used
        )
    }
}

impl Vault {
    /// How many uses the agent reserves at a time (1, the default, persists every use:
    /// right for one-shot commands; a long-running agent reserves blocks).
    pub fn set_use_reservation(&self, block: u64) {
        self.uses.block.store(block.max(1), Ordering::Relaxed);
    }

    /// Forgets the in-memory counts of a key (after it was deleted or replaced).
    pub(super) fn forget_uses(&self, db_key: &[u8]) {
        self.uses
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(k, _), _| k.as_slice() != db_key);
    }

    /// The descriptions of a listing with the use counts this process has live, under
    /// one lock. Descriptions nobody else holds (not cached) are moved, not copied: a
    /// large vault's listing is then never in memory twice.
    pub(super) fn with_live_uses_all(&self, sorted: super::SortedInfos) -> Vec<KeyInfo> {
        let live = self.uses.map.lock().unwrap_or_else(|p| p.into_inner());
        let with_live = |db_key: &[u8], mut info: KeyInfo| {
            if !live.is_empty() {
                for v in &mut info.versions {
                    if let Some(c) = live.get(&(db_key.to_vec(), v.version)) {
                        v.uses = c.used;
                    }
                }
            }
            info
        };
        match sorted {
            super::SortedInfos::Cached(all) => all
                .iter()
                .map(|(db_key, info)| with_live(db_key, KeyInfo::clone(info)))
                .collect(),
            super::SortedInfos::Fresh(fresh) => fresh
                .into_iter()
                .map(|(db_key, info)| {
                    let info = std::sync::Arc::try_unwrap(info)
                        .unwrap_or_else(|shared| KeyInfo::clone(&shared));
                    with_live(&db_key, info)
                })
                .collect(),
        }
    }

    /// The live use count of a version (the in-memory one where this process counted).
    pub(super) fn live_uses(&self, db_key: &[u8], version: u32, persisted: u64) -> u64 {
        self.uses
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(db_key.to_vec(), version))
            .map(|c| c.used)
            .unwrap_or(persisted)
    }

    /// Writes the exact use counts of this process over its reservations (when the
    /// agent locks), so that counts survive an orderly stop exactly; only a crash
    /// overcounts.
    pub(crate) fn release_use_reservations(&self) -> Result<()> {
        let mut map = self.uses.map.lock().unwrap_or_else(|p| p.into_inner());
        let pending: Vec<((Vec<u8>, u32), Counter)> = map
            .iter()
            .filter(|(_, c)| c.used < c.reserved)
            .map(|(k, c)| (k.clone(), *c))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let head = self.lock_writer();
        let mut batch = Batch::new();
        let mut by_key: HashMap<Vec<u8>, KeyRecord> = HashMap::new();
        for ((db_key, version), counter) in &pending {
            let record = match by_key.get_mut(db_key) {
                Some(r) => r,
                None => {
                    let Some(sealed) = self.store.get(Tree::Keys, db_key)? else {
                        continue;
                    };
                    let r: KeyRecord = self.open_record(Tree::Keys, db_key, &sealed)?;
                    by_key.entry(db_key.clone()).or_insert(r)
                }
            };
            if let Some(v) = record.versions.iter_mut().find(|v| v.version == *version) {
                v.uses = counter.used;
            }
        }
        for (db_key, record) in &by_key {
            self.stage(&mut batch, Tree::Keys, db_key, record)?;
        }
        self.commit(
            head,
            batch,
            AuditEvent::new("uses").detail(format!(
                "exact use counts of {} key version(s) written at lock",
                pending.len()
            )),
        )?;
        for ((db_key, version), counter) in pending {
            if let Some(c) = map.get_mut(&(db_key, version)) {
                c.reserved = counter.used;
            }
        }
        Ok(())
    }

    /// Counts one use of `version`, persisting a new reservation when the current one
    /// is used up; refuses an AEAD version at its limit. Returns a warning near it.
    pub(super) fn count_use(
        &self,
        db_key: &[u8],
        record: &KeyRecord,
        version: u32,
        operation: &'static str,
    ) -> Result<Option<NearLimit>> {
        if self.is_read_only() {
            // Nothing can be written. Fernet tokens and signatures need no count (uses
            // go unaudited, as the command line says); an AEAD key's encryptions must
            // be counted against its nonce limit, so those are refused.
            if record.key_type.is_aead() {
                return Err(Error::ReadOnly(self.path().to_path_buf()));
            }
            return Ok(None);
        }
        let persisted = record
            .versions
            .iter()
            .find(|v| v.version == version)
            .map(|v| v.uses)
            .unwrap_or(0);
        let mut map = self.uses.map.lock().unwrap_or_else(|p| p.into_inner());
        let counter = map.entry((db_key.to_vec(), version)).or_insert(Counter {
            used: persisted,
            reserved: persisted,
        });
        let aead = record.key_type.is_aead();
        if aead && counter.used >= AEAD_USE_LIMIT {
            return Err(Error::NonceLimit {
                user: record.user.clone(),
                name: record.name.clone(),
                version,
            });
        }
        let used = counter.used + 1;
        if used > counter.reserved {
            let block = self.uses.block.load(Ordering::Relaxed);
            let reserved = used - 1 + block;
            self.persist_uses(
                db_key,
                &record.user,
                &record.name,
                version,
                reserved,
                operation,
            )?;
            counter.reserved = reserved;
        }
        counter.used = used;
        Ok((aead && used >= AEAD_WARN_AT).then(|| NearLimit {
            user: record.user.clone(),
            name: record.name.clone(),
            version,
            used,
        }))
    }

    fn persist_uses(
        &self,
        db_key: &[u8],
        user: &str,
        name: &str,
        version: u32,
        reserved: u64,
        operation: &'static str,
    ) -> Result<()> {
        let head = self.lock_writer();
        let (_, mut record) = self.require_key(user, name)?;
        let v = record
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::VersionNotFound {
                user: user.to_string(),
                name: name.to_string(),
                version,
            })?;
        v.uses = v.uses.max(reserved);
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, db_key, &record)?;
        self.commit(
            head,
            batch,
            AuditEvent::new(operation)
                .user(user)
                .key(name)
                .detail(format!("version {version}, uses counted up to {reserved}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::keytype::KeyType;

    fn vault(dir: &std::path::Path) -> Vault {
        let fast = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Vault::create(&dir.join("v"), b"pw", fast, true).unwrap()
    }

    /// Puts the in-memory count of version 1 of `user/name` at `used`.
    fn set_count(v: &Vault, user: &str, name: &str, used: u64) {
        let db_key = v.key_db_key(user, name);
        v.uses.map.lock().unwrap().insert(
            (db_key, 1),
            Counter {
                used,
                reserved: used + 1_000,
            },
        );
    }

    #[test]
    fn an_aead_version_warns_near_2_pow_32_encryptions_and_refuses_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("u", Some("k"), KeyType::Aes256Gcm).unwrap();
        let first = v.envelope_key("u", "k", None).unwrap();
        assert!(first.warning.is_none());
        set_count(&v, "u", "k", AEAD_WARN_AT);
        let near = v.envelope_key("u", "k", None).unwrap();
        assert_eq!(
            near.warning.map(|w| (w.version, w.used)),
            Some((1, AEAD_WARN_AT + 1))
        );
        set_count(&v, "u", "k", AEAD_USE_LIMIT - 1);
        assert!(v.envelope_key("u", "k", None).is_ok());
        match v.envelope_key("u", "k", None) {
            Err(Error::NonceLimit {
                user,
                name,
                version: 1,
            }) => assert_eq!((user.as_str(), name.as_str()), ("u", "k")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Rotating gives the key a fresh version with a fresh count.
        let info = v.rotate("u", "k").unwrap();
        assert_eq!(info.primary_version, 2);
        assert!(v.envelope_key("u", "k", None).is_ok());
    }

    #[test]
    fn fernet_and_signing_keys_have_no_such_limit() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("u", None, KeyType::Fernet).unwrap();
        set_count(&v, "u", "fernet", AEAD_USE_LIMIT + 5);
        let used = v.encrypt_message("u", "fernet", b"m").unwrap();
        assert!(used.warning.is_none());
    }

    #[test]
    fn counts_are_persisted_in_reserved_blocks_and_exact_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("u", None, KeyType::Fernet).unwrap();
        v.set_use_reservation(100);
        for _ in 0..3 {
            v.encrypt_message("u", "fernet", b"m").unwrap();
        }
        // Live: 3; stored: the reservation (a crash would overcount, never under).
        assert_eq!(v.key_info("u", "fernet").unwrap().versions[0].uses, 3);
        let (_, stored) = v.require_key("u", "fernet").unwrap();
        assert_eq!(stored.versions[0].uses, 100);
        v.release_use_reservations().unwrap();
        let (_, stored) = v.require_key("u", "fernet").unwrap();
        assert_eq!(stored.versions[0].uses, 3);
    }
}
