//! The domain: users, keys, versions and revocation, behind the [`Vault`] handle.
//!
//! A `Vault` is an unlocked vault: the open store plus the subkeys of the master key.
//! Every method is one atomic change (or a read), flushed to disk before it returns.
//! The command line and the agent call these methods and know nothing of the store.

mod add;
pub(crate) mod audit;
pub mod backup;
pub mod check;
mod commit;
mod compact;
pub mod epoch;
pub mod header;
pub mod keyuse;
pub(crate) mod ledger;
pub mod lifecycle;
mod listing;
pub(crate) mod migrate;
mod open;
mod peek;
mod restore;
mod revocation;
pub mod ssh;
pub mod types;
mod uses;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use zeroize::Zeroizing;

use crate::crypto::kdf::KdfParams;
use crate::crypto::keys::{self, ExportFormat, KeyMaterial};
use crate::crypto::seal::{Keyring, record_aad};
use crate::error::{Error, RecordKind, Result};
use crate::keytype::KeyType;
use crate::store::layout::{HEADER_FILE, VaultLock};
use crate::store::records::{self, KeyRecord, KeyVersionRecord, VersionState};
use crate::store::{Batch, Store, Tree};

pub use crate::store::format::CURRENT_FORMAT;
pub use audit::AuditEvent;
use audit::AuditHead;
use header::VaultHeader;
use listing::{InfoCache, SortedInfos, key_info};
pub use open::OpenOptions;
pub use peek::{can_create_in, canonical_path, peek_id, peek_kdf, peek_status, storage_stalled};
use revocation::destroyed_key;
use types::{KeyInfo, Timestamp, VaultStatus};

/// Length of a user's index prefix in the keys tree.
const USER_HASH_LEN: usize = 32;

/// An unlocked vault: the open store, the master key's subkeys and the vault's lock, held
/// until dropped.
pub struct Vault {
    store: Store,
    /// Boxed so that it never moves: the agent locks its pages in RAM.
    keyring: Box<Keyring>,
    /// The header file as last written (passwd replaces it).
    header: Mutex<VaultHeader>,
    /// Serializes changes, and holds the head of the audit chain.
    writer: Mutex<AuditHead>,
    /// Group commit: how many changes were applied and how many are on disk.
    flushes: Mutex<FlushState>,
    /// Signalled when a flush ends.
    flushed: Condvar,
    /// Whether commits skip waiting for durability (bulk loads).
    deferred_flush: AtomicBool,
    /// Use counts of key versions.
    uses: uses::UseCounters,
    /// The revocation ledger as verified at open (changed only under the writer lock),
    /// or why it does not match the revoked users.
    revocations: Mutex<std::result::Result<ledger::Ledger, String>>,
    /// Descriptions of keys (no secret) by database key, so that listing a long-lived
    /// agent's vault skips opening every record again.
    infos: Mutex<InfoCache>,
    /// The sealed epoch as last committed (changed only under the writer lock); see
    /// [`epoch`].
    epoch: AtomicU64,
    /// The vault's lock, held as long as the database is open: declared last, so it is
    /// let go of only after the store is closed.
    lock: VaultLock,
}

#[derive(Default)]
struct FlushState {
    applied: u64,
    durable: u64,
    flushing: bool,
}

/// Which key to export, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportOptions {
    /// Export only the public half (asymmetric keys).
    pub public: bool,
    /// The version (default: the primary one).
    pub version: Option<u32>,
    /// The encoding (default: base64 for symmetric keys, PEM for RSA).
    pub format: Option<ExportFormat>,
}

/// The associated data under which the master key is wrapped: it binds the KDF
/// parameters and salt, so changing either in a header makes unwrapping fail.
pub fn header_aad(kdf: &KdfParams, salt: &[u8]) -> Result<Vec<u8>> {
    // Binds the KDF parameters and salt to the wrapped master key: changing them in the
    // header makes unwrapping fail.
    let mut aad = b"keyvault/v1\0meta\0wrapped-master-key\0".to_vec();
    aad.extend_from_slice(
        &postcard::to_stdvec(kdf).map_err(|e| Error::Internal(format!("encoding: {e}")))?,
    );
    aad.extend_from_slice(salt);
    Ok(aad)
}

fn status_of(store: &Store, dir: &Path, format_version: u32) -> Result<VaultStatus> {
    let mut users = 0u64;
    let mut keys = 0u64;
    let mut last_user: Option<Vec<u8>> = None;
    for item in store.scan_prefix(Tree::Keys, &[]) {
        let (k, _) = item?;
        keys += 1;
        let prefix = k.get(..USER_HASH_LEN).map(<[u8]>::to_vec);
        if prefix != last_user {
            users += 1;
            last_user = prefix;
        }
    }
    Ok(VaultStatus {
        path: dir.display().to_string(),
        format_version,
        users,
        keys,
        revoked_users: store.len(Tree::Revoked)? as u64,
        // From the header file (format 4 on), which needs no passphrase.
        kdf: open::read_header_file(dir)
            .ok()
            .map(|file| file.header.unlock.kdf),
    })
}

impl Vault {
    /// The vault's directory (its real path: symlinks are resolved once, on open).
    pub fn path(&self) -> &Path {
        self.lock.dir()
    }

    /// The KDF parameters of the vault.
    pub fn kdf_params(&self) -> KdfParams {
        self.header().unlock.kdf
    }

    /// The header as last written.
    fn header(&self) -> VaultHeader {
        self.header
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The vault's id in hex: the same for every copy of the vault's directory.
    pub(crate) fn id_hex(&self) -> String {
        self.header().id_hex()
    }

    /// The vault's epoch (see [`epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Whether the vault was opened read-only, its filesystem being read-only or full:
    /// changes are refused and uses of keys are not audited.
    pub fn is_read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// Writes the header file from the header held in memory (atomically).
    fn write_header(&self) -> Result<()> {
        let bytes = self.header().encode(&self.keyring)?;
        self.lock.replace_file(HEADER_FILE, &bytes)
    }

    /// Counts and facts: path, format, users, keys, revoked users, KDF.
    pub fn status(&self) -> Result<VaultStatus> {
        status_of(&self.store, self.path(), self.header().format)
    }

    fn user_hash(&self, user: &str) -> [u8; 32] {
        user_hash(&self.keyring, user)
    }

    fn key_db_key(&self, user: &str, name: &str) -> Vec<u8> {
        key_db_key(&self.keyring, user, name)
    }

    fn seal(&self, tree: Tree, db_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.keyring
            .records
            .seal(&record_aad(tree.name(), db_key), plaintext)
    }

    /// Encodes and seals `record` and adds it to `batch` under `db_key` in `tree`.
    fn stage<T: serde::Serialize>(
        &self,
        batch: &mut Batch,
        tree: Tree,
        db_key: &[u8],
        record: &T,
    ) -> Result<()> {
        let sealed = self.seal(tree, db_key, &records::encode(record)?)?;
        batch.insert(tree, db_key.to_vec(), sealed);
        Ok(())
    }

    fn open_record<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        db_key: &[u8],
        sealed: &[u8],
    ) -> Result<T> {
        open_record(&self.keyring, tree, db_key, sealed)
    }

    fn load_key(&self, user: &str, name: &str) -> Result<Option<(Vec<u8>, KeyRecord)>> {
        let db_key = self.key_db_key(user, name);
        let Some(sealed) = self.store.get(Tree::Keys, &db_key)? else {
            return Ok(None);
        };
        let record: KeyRecord = self.open_record(Tree::Keys, &db_key, &sealed)?;
        if record.user != user || record.name != name {
            return Err(Error::IndexMismatch {
                kind: RecordKind::Key,
            });
        }
        self.refuse_key_of_revoked(user)?;
        Ok(Some((db_key, record)))
    }

    fn require_key(&self, user: &str, name: &str) -> Result<(Vec<u8>, KeyRecord)> {
        validate::user_id(user)?;
        validate::key_name(name)?;
        match self.load_key(user, name)? {
            Some(found) => Ok(found),
            None => Err(self.why_no_key(user, Some(name))?),
        }
    }

    /// Why `user` has no key `name` (or no key at all): the user is revoked (with
    /// when), is not in the vault (with the closest ids it holds), or lacks that key.
    fn why_no_key(&self, user: &str, name: Option<&str>) -> Result<Error> {
        if let Some(r) = self.revoked_record(user)? {
            return Ok(Error::UserRevoked {
                user: user.to_string(),
                revoked_at: Timestamp(r.revoked_at).to_string(),
            });
        }
        let has_keys = match self
            .store
            .scan_prefix(Tree::Keys, &self.user_hash(user))
            .next()
        {
            Some(item) => item.map(|_| true)?,
            None => false,
        };
        Ok(match name {
            Some(name) if has_keys => Error::KeyNotFound {
                user: user.to_string(),
                name: name.to_string(),
            },
            _ => Error::UserNotFound {
                user: user.to_string(),
                similar: self.similar_users(user),
            },
        })
    }

    /// The ids the vault holds (with keys, or revoked) closest to `user`: the same but
    /// for case, or a character or two away. At most three; none if they cannot be read.
    fn similar_users(&self, user: &str) -> Vec<String> {
        let mut ids: std::collections::BTreeSet<String> = self
            .list(None)
            .map(|keys| keys.into_iter().map(|k| k.user).collect())
            .unwrap_or_default();
        if let Ok(revoked) = self.revoked_users() {
            ids.extend(revoked.into_iter().map(|r| r.user));
        }
        let wanted: Vec<char> = user.to_lowercase().chars().collect();
        let mut close: Vec<(usize, String)> = ids
            .into_iter()
            .filter(|id| id != user)
            .filter_map(|id| {
                let d = edit_distance(&wanted, &id.to_lowercase().chars().collect::<Vec<_>>());
                (d <= 2.min(wanted.len() / 3).max(1)).then_some((d, id))
            })
            .collect();
        close.sort();
        close.into_iter().take(3).map(|(_, id)| id).collect()
    }

    /// The id to look `user` up by: its NFC form when that is a valid id. An id the
    /// vault already holds that breaks today's rules (stored before them: not NFC,
    /// invisible characters) is still found by its exact spelling, so that nothing
    /// in an older vault becomes unreachable; a new id must follow the rules.
    pub(crate) fn resolve_user(&self, user: &str) -> Result<String> {
        match validate::new_user_id(user) {
            Ok(nfc) => {
                if nfc != user && !self.user_known(&nfc)? && self.user_known(user)? {
                    return Ok(user.to_string());
                }
                Ok(nfc)
            }
            Err(e) => {
                if validate::user_id(user).is_ok() && self.user_known(user)? {
                    return Ok(user.to_string());
                }
                Err(e)
            }
        }
    }

    /// Whether the vault holds `user` exactly: with a key, or revoked.
    fn user_known(&self, user: &str) -> Result<bool> {
        let hash = self.user_hash(user);
        if self.store.contains(Tree::Revoked, &hash)? {
            return Ok(true);
        }
        match self.store.scan_prefix(Tree::Keys, &hash).next() {
            Some(item) => item.map(|_| true),
            None => Ok(false),
        }
    }

    fn keys_of(&self, user: &str) -> Result<Vec<(Vec<u8>, KeyRecord)>> {
        let prefix = self.user_hash(user);
        let mut out = Vec::new();
        for item in self.store.scan_prefix(Tree::Keys, &prefix) {
            let (db_key, sealed) = item?;
            let record: KeyRecord = self.open_record(Tree::Keys, &db_key, &sealed)?;
            // The record authenticated with its database key as associated data, so it
            // was sealed there with the master key; `check` also recomputes the index.
            if record.user != user {
                return Err(Error::IndexMismatch {
                    kind: RecordKind::Key,
                });
            }
            out.push((db_key, record));
        }
        Ok(out)
    }

    /// Exports key material (a secret unless `options.public`).
    pub fn export(
        &self,
        user: &str,
        name: &str,
        options: &ExportOptions,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let user = &self.resolve_user(user)?;
        let (_, record) = self.require_key(user, name)?;
        let version = select_version(&record, options.version)?;
        let material = KeyMaterial {
            secret: version.secret.clone(),
            public: version.public.clone(),
        };
        let format = options
            .format
            .unwrap_or_else(|| ExportFormat::default_for(record.key_type));
        let out = if format == ExportFormat::Openssh {
            let comment = format!("{user}/{name}");
            crate::ssh::format::export(record.key_type, &material, options.public, &comment)?
        } else {
            keys::export(record.key_type, &material, options.public, format)?
        };
        self.record_use(
            AuditEvent::new("export")
                .user(user)
                .key(name)
                .detail(format!(
                    "version {}, {}",
                    version.version,
                    if options.public { "public" } else { "secret" }
                )),
        )?;
        Ok(out)
    }

    /// Records in the audit log that material [`Vault::export`] handed out could not be
    /// written where it was going (a full disk, a closed pipe): the export entry says
    /// the key left the vault; this one, that it reached nothing.
    pub(crate) fn record_export_failure(
        &self,
        user: &str,
        name: &str,
        options: &ExportOptions,
        error: &str,
    ) -> Result<()> {
        let user = &self.resolve_user(user)?;
        validate::key_name(name)?;
        let mut event = AuditEvent::new("export")
            .user(user)
            .key(name)
            .detail(format!(
                "{}{}, not written: {}",
                options
                    .version
                    .map(|v| format!("version {v}, "))
                    .unwrap_or_default(),
                if options.public { "public" } else { "secret" },
                validate::escape(error)
            ));
        event.outcome("failed");
        self.record_use(event)
    }

    /// Destroys one key, every version.
    pub fn delete(&self, user: &str, name: &str) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let head = self.lock_writer();
        let (db_key, record) = self.require_key(user, name)?;
        let mut batch = Batch::new();
        batch.remove(Tree::Keys, db_key.clone());
        self.commit_raising_epoch(
            head,
            batch,
            AuditEvent::new("delete")
                .user(user)
                .key(name)
                .detail(format!(
                    "type {}, {} version(s)",
                    record.key_type,
                    record.versions.len()
                )),
            None,
        )?;
        self.forget_uses(&db_key);
        Ok(key_info(&record))
    }
}

/// The database key of a user: a MAC of the id under the index subkey, never the id.
pub(crate) fn user_hash(keyring: &Keyring, user: &str) -> [u8; 32] {
    keyring.index.mac(&[b"user", user.as_bytes()])
}

/// The database key of a key: the user's hash, then a MAC of (user, name).
pub(crate) fn key_db_key(keyring: &Keyring, user: &str, name: &str) -> Vec<u8> {
    let mut k = user_hash(keyring, user).to_vec();
    k.extend_from_slice(
        &keyring
            .index
            .mac(&[b"key", user.as_bytes(), name.as_bytes()]),
    );
    k
}

/// Opens and decodes a sealed record of `tree` stored under `db_key`.
pub(crate) fn open_record<T: serde::de::DeserializeOwned>(
    keyring: &Keyring,
    tree: Tree,
    db_key: &[u8],
    sealed: &[u8],
) -> Result<T> {
    let plain = keyring
        .records
        .open(&record_aad(tree.name(), db_key), sealed)
        .map_err(|_| {
            Error::Integrity(format!(
                "a record in the {} tree failed to authenticate (corrupted, tampered with, or moved)",
                tree.name()
            ))
        })?;
    records::decode(&plain, tree.name())
}

/// The directory a vault lives in by default: the platform data dir.
pub fn default_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("keyvault").join("default"))
}

/// The Levenshtein distance between two strings of characters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn select_version(record: &KeyRecord, version: Option<u32>) -> Result<&KeyVersionRecord> {
    match version {
        Some(v) => record
            .versions
            .iter()
            .find(|x| x.version == v)
            .ok_or_else(|| Error::VersionNotFound {
                user: record.user.clone(),
                name: record.name.clone(),
                version: v,
            }),
        None => record
            .versions
            .iter()
            .find(|x| x.state == VersionState::Primary)
            .ok_or(Error::NoPrimaryVersion),
    }
}

fn version_fingerprint(key_type: KeyType, v: &KeyVersionRecord) -> String {
    keys::fingerprint_of(key_type, &v.secret, v.public.as_deref())
}
