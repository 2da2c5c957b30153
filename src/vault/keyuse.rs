//! Using keys without exporting them: encrypt, decrypt, sign, verify; rotation and
//! version deletion; and the per-version use counters.
//!
//! Every version counts its encryptions and signatures. Counts are persisted by
//! reserving blocks ahead (the record stores the ceiling of the current block), so a
//! crash can only overcount, never undercount; a one-shot command reserves exactly one
//! use, the agent reserves blocks (see [`Vault::set_use_reservation`]). AEAD key versions
//! are refused past 2^32 encryptions, NIST SP 800-38D's bound for random 96-bit nonces,
//! and warn as they near it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::envelope::{self, AeadAlgorithm, EnvelopeHeader};
use crate::crypto::keys::{self, KeyMaterial};
use crate::crypto::sign::RsaScheme;
use crate::crypto::{fernet_token, oaep, sign};
use crate::error::{Error, Result};
use crate::keytype::{KeyType, KeyUse};
use crate::store::records::{KeyRecord, KeyVersionRecord, VersionState};
use crate::store::{Batch, Tree};

use super::types::{KeyInfo, Timestamp};
use super::{AuditEvent, Vault, key_info};

/// Encryptions an AEAD key version may make: 2^32 (NIST SP 800-38D, random nonces).
pub const AEAD_USE_LIMIT: u64 = 1 << 32;
/// From this many encryptions on, an AEAD key version warns: rotate soon.
pub const AEAD_WARN_AT: u64 = AEAD_USE_LIMIT - (1 << 28);

/// In-memory use counts and the reservation block size.
pub struct UseCounters {
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

/// The result of an encryption or signature, with a warning when a key version nears
/// its limit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Used<T> {
    /// The result.
    pub value: T,
    /// The version used.
    pub version: u32,
    /// A warning to show the user.
    pub warning: Option<String>,
}

impl<T> std::fmt::Debug for Used<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value may be an envelope's key: never printed.
        f.debug_struct("Used")
            .field("version", &self.version)
            .field("warning", &self.warning)
            .finish_non_exhaustive()
    }
}

fn material(v: &KeyVersionRecord) -> KeyMaterial {
    KeyMaterial {
        secret: v.secret.clone(),
        public: v.public.clone(),
    }
}

fn primary(record: &KeyRecord) -> Result<&KeyVersionRecord> {
    record
        .versions
        .iter()
        .find(|v| v.state == VersionState::Primary)
        .ok_or_else(|| Error::Integrity("a key record has no primary version".into()))
}

fn needs_private(record: &KeyRecord, v: &KeyVersionRecord, what: &str) -> Result<()> {
    if v.secret.is_empty() {
        return Err(Error::Usage(format!(
            "{}/{} is a public-only key: it cannot {what}; import its private key to do that",
            record.user, record.name
        )));
    }
    Ok(())
}

/// Newest version first, as MultiFernet tries its keys.
fn newest_first(record: &KeyRecord) -> impl Iterator<Item = &KeyVersionRecord> {
    record.versions.iter().rev()
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
    pub fn release_use_reservations(&self) -> Result<()> {
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
    ) -> Result<Option<String>> {
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
            return Err(Error::TooWeak(format!(
                "version {version} of {}/{} has made 2^32 encryptions, the limit for random 96-bit nonces (NIST SP 800-38D); run `keyvault rotate {} {}`",
                record.user, record.name, record.user, record.name
            )));
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
        Ok((aead && used >= AEAD_WARN_AT).then(|| {
            format!(
                "version {version} of {}/{} has made {used} encryptions, near the limit of 2^32; run `keyvault rotate {} {}` soon",
                record.user, record.name, record.user, record.name
            )
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

    /// Adds a new primary version to a key; older versions keep decrypting and
    /// verifying.
    pub fn rotate(&self, user: &str, name: &str) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let (_, peek) = self.require_key(user, name)?;
        if peek.versions.iter().all(|v| v.secret.is_empty()) {
            return Err(Error::Usage(format!(
                "{user}/{name} is a public-only key: import the new public key under another name instead of rotating"
            )));
        }
        let fresh = keys::generate(peek.key_type)?;
        let head = self.lock_writer();
        let (db_key, mut record) = self.require_key(user, name)?;
        let next = record.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        for v in &mut record.versions {
            v.state = VersionState::DecryptOnly;
        }
        record.versions.push(KeyVersionRecord {
            version: next,
            created: Timestamp::now().0,
            state: VersionState::Primary,
            secret: fresh.secret,
            public: fresh.public,
            uses: 0,
        });
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, &db_key, &record)?;
        self.commit(
            head,
            batch,
            AuditEvent::new("rotate")
                .user(user)
                .key(name)
                .detail(format!("version {next} is primary")),
        )?;
        Ok(key_info(&record))
    }

    /// Destroys one older version of a key (never the only one, nor the primary).
    pub fn delete_version(&self, user: &str, name: &str, version: u32) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let head = self.lock_writer();
        let (db_key, mut record) = self.require_key(user, name)?;
        let Some(pos) = record.versions.iter().position(|v| v.version == version) else {
            return Err(Error::VersionNotFound {
                user: user.to_string(),
                name: name.to_string(),
                version,
            });
        };
        if record.versions.len() == 1 {
            return Err(Error::Usage(format!(
                "version {version} is the only version of {user}/{name}; delete the key instead"
            )));
        }
        if record.versions[pos].state == VersionState::Primary {
            // The primary is always the newest version; keeping it means a version
            // number is never given out twice.
            return Err(Error::Usage(format!(
                "version {version} is the primary version of {user}/{name}; rotate first, then delete it"
            )));
        }
        record.versions.remove(pos);
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, &db_key, &record)?;
        self.commit_raising_epoch(
            head,
            batch,
            AuditEvent::new("delete-version")
                .user(user)
                .key(name)
                .detail(format!("version {version}")),
            None,
        )?;
        self.forget_uses(&db_key);
        Ok(key_info(&record))
    }

    /// Encrypts a message with a Fernet key (a standard token) or an RSA key (OAEP-SHA256)
    /// under the primary version. AEAD keys stream through [`Vault::envelope_key`].
    pub fn encrypt_message(
        &self,
        user: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Encrypt)?;
        if record.key_type.is_aead() {
            return Err(Error::Internal(
                "AEAD keys encrypt through envelope_key".into(),
            ));
        }
        let v = primary(&record)?;
        let value = match record.key_type {
            KeyType::Fernet => fernet_token::encrypt(&v.secret, plaintext)?.into_bytes(),
            _ => oaep::encrypt(record.key_type, &material(v), plaintext)?,
        };
        let warning = self.count_use(&db_key, &record, v.version, "encrypt")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Decrypts a Fernet token (newest version first, as MultiFernet; `ttl` refuses
    /// older tokens) or an RSA-OAEP ciphertext (each version, newest first).
    pub fn decrypt_message(
        &self,
        user: &str,
        name: &str,
        ciphertext: &[u8],
        ttl: Option<u64>,
    ) -> Result<(u32, Zeroizing<Vec<u8>>)> {
        let user = &self.resolve_user(user)?;
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Decrypt)?;
        if ttl.is_some() && record.key_type != KeyType::Fernet {
            return Err(Error::Usage("--ttl applies to fernet keys only".into()));
        }
        let result = match record.key_type {
            KeyType::Fernet => {
                let keys: Vec<(u32, &[u8])> = newest_first(&record)
                    .map(|v| (v.version, v.secret.as_slice()))
                    .collect();
                match ttl {
                    Some(t) => fernet_token::decrypt_with_ttl(&keys, ciphertext, t)?,
                    None => fernet_token::decrypt(&keys, ciphertext)?,
                }
            }
            kt if kt.is_aead() => {
                return Err(Error::Internal(
                    "AEAD keys decrypt through envelope_key".into(),
                ));
            }
            kt => {
                if ciphertext.is_empty() {
                    return Err(Error::Integrity(
                        "the input is empty: expected an RSA-OAEP ciphertext".into(),
                    ));
                }
                if record.versions.iter().all(|v| v.secret.is_empty()) {
                    needs_private(&record, primary(&record)?, "decrypt")?;
                }
                let mut last =
                    Error::Integrity("no version of the key opens the ciphertext".into());
                let mut opened = None;
                for v in newest_first(&record).filter(|v| !v.secret.is_empty()) {
                    match oaep::decrypt(kt, &material(v), ciphertext) {
                        Ok(p) => {
                            opened = Some((v.version, p));
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                match opened {
                    Some(o) => o,
                    None => return Err(last),
                }
            }
        };
        self.record_use(
            AuditEvent::new("decrypt")
                .user(user)
                .key(name)
                .detail(format!("version {}", result.0)),
        )?;
        Ok(result)
    }

    /// The key of one AEAD envelope. With no header: a fresh header under the primary
    /// version (counted as one encryption). With a header (from an envelope being
    /// decrypted): the key of the version it names. The key opens only that envelope.
    pub fn envelope_key(
        &self,
        user: &str,
        name: &str,
        header: Option<&EnvelopeHeader>,
    ) -> Result<Used<(EnvelopeHeader, Zeroizing<[u8; 32]>)>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        let what = if header.is_some() {
            KeyUse::Decrypt
        } else {
            KeyUse::Encrypt
        };
        record.key_type.check_use(what)?;
        let algorithm = AeadAlgorithm::for_key_type(record.key_type)?;
        let (header, v, warning) = match header {
            None => {
                let v = primary(&record)?;
                let warning = self.count_use(&db_key, &record, v.version, "encrypt")?;
                (envelope::new_header(algorithm, v.version)?, v, warning)
            }
            Some(h) => {
                h.check_key_type(record.key_type)?;
                let v = record
                    .versions
                    .iter()
                    .find(|v| v.version == h.key_version)
                    .ok_or_else(|| {
                        // Version numbers are given out in order and never again: one
                        // past the newest was never made, so the header was altered;
                        // one below it was deleted.
                        let newest = record.versions.iter().map(|v| v.version).max();
                        if h.key_version == 0 || newest.is_none_or(|n| h.key_version > n) {
                            Error::Integrity(format!(
                                "the envelope names version {} of {user:?}/{name}, which was never made: its header was altered",
                                h.key_version
                            ))
                        } else {
                            Error::VersionNotFound {
                                user: user.to_string(),
                                name: name.to_string(),
                                version: h.key_version,
                            }
                        }
                    })?;
                self.record_use(
                    AuditEvent::new("decrypt")
                        .user(user)
                        .key(name)
                        .detail(format!("version {}", v.version)),
                )?;
                (h.clone(), v, None)
            }
        };
        let key: [u8; 32] = v
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| Error::Integrity("a stored AEAD key is not 32 bytes".into()))?;
        let key = Zeroizing::new(key);
        let message_key = envelope::message_key(&header, &key);
        Ok(Used {
            value: (header, message_key),
            version: v.version,
            warning,
        })
    }

    /// Signs a message with the primary version (RSA: PSS-SHA256 by default, or
    /// PKCS#1 v1.5; Ed25519).
    pub fn sign_message(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Sign)?;
        let v = primary(&record)?;
        needs_private(&record, v, "sign")?;
        let value = sign::sign(record.key_type, &material(v), scheme, message)?;
        let warning = self.count_use(&db_key, &record, v.version, "sign")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Signs the SHA-256 `digest` of a message with the primary version (RSA keys only:
    /// the same signature as [`Vault::sign_message`] over the message). Counted and
    /// audited like it.
    pub fn sign_digest(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Sign)?;
        let v = primary(&record)?;
        needs_private(&record, v, "sign")?;
        let value = sign::sign_digest(record.key_type, &material(v), scheme, digest)?;
        let warning = self.count_use(&db_key, &record, v.version, "sign")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Verifies a signature over the message whose SHA-256 digest is `digest` (RSA keys
    /// only) against every version, newest first, as [`Vault::verify_message`] does.
    pub fn verify_digest(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<Option<u32>> {
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Verify)?;
        for v in newest_first(&record) {
            if sign::verify_digest(record.key_type, &material(v), scheme, digest, signature)? {
                return Ok(Some(v.version));
            }
        }
        Ok(None)
    }

    /// Verifies a signature against every version, newest first; returns the version
    /// it verifies under, or `None`.
    pub fn verify_message(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<Option<u32>> {
        let user = &self.resolve_user(user)?;
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Verify)?;
        for v in newest_first(&record) {
            if sign::verify(record.key_type, &material(v), scheme, message, signature)? {
                return Ok(Some(v.version));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::KdfParams;

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
        assert!(
            near.warning
                .as_deref()
                .is_some_and(|w| w.contains("rotate"))
        );
        set_count(&v, "u", "k", AEAD_USE_LIMIT - 1);
        assert!(v.envelope_key("u", "k", None).is_ok());
        match v.envelope_key("u", "k", None) {
            Err(Error::TooWeak(m)) => assert!(m.contains("keyvault rotate u k"), "{m}"),
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
