//! Creating and opening vaults: the lock, the header file, migrations of older formats,
//! and the rollback check.
//!
//! Opening takes the vault's lock first and keeps it in the returned [`Vault`] until it
//! is dropped; everything else (the header, the database, leftovers of killed commands,
//! a migration) happens under it.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::crypto::kdf::{KdfParams, SALT_LEN};
use crate::crypto::random_bytes;
use crate::crypto::seal::{Keyring, MasterKey};
use crate::error::{Error, Result};
use crate::store::layout::{self, HEADER_FILE, LOCK_WAIT, Layout, VaultLock};
use crate::store::records::{self, FailedUnlocks, Header, meta_keys};
use crate::store::{Batch, Store, Tree};
use crate::vault::migrate::{self, CURRENT_FORMAT};

use super::audit::{AuditEvent, AuditHead};
use super::header::{HeaderFile, VAULT_ID_LEN, VaultHeader};
use super::types::Timestamp;
use super::{Vault, epoch, header_aad, ledger};

/// Choices made when opening a vault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open a vault that is older than one this machine has seen (an older copy put
    /// back on purpose). The acceptance is recorded in the audit log, and the vault's
    /// epoch is raised past the one seen, so the newer copy is the stale one from then.
    pub accept_rollback: bool,
}

/// What unlocks a vault.
enum Secret<'a> {
    Passphrase(&'a [u8]),
    Master(MasterKey),
}

impl Vault {
    /// Creates a vault at `path` (which must not hold one) protected by `passphrase`,
    /// whose key is derived with `kdf`. Parameters below OWASP's floor are refused
    /// ([`Error::WeakKdf`]) unless `allow_weak_kdf`. The vault returned is open.
    ///
    /// ```
    /// use keyvault::Vault;
    /// use keyvault::crypto::kdf::KdfParams;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("vault");
    /// // Fast, weak KDF parameters, for the example only: real vaults keep the default.
    /// let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// let vault = Vault::create(&path, b"passphrase", kdf, true)?;
    /// assert!(Vault::exists(&path));
    /// // Below the floor without allowing it: refused, and nothing is made.
    /// let other = dir.path().join("other");
    /// assert!(Vault::create(&other, b"passphrase", kdf, false).is_err());
    /// assert!(!Vault::exists(&other));
    /// # drop(vault);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(
        path: &Path,
        passphrase: &[u8],
        kdf: KdfParams,
        allow_weak_kdf: bool,
    ) -> Result<Vault> {
        kdf.validate(allow_weak_kdf)?;
        if passphrase.is_empty() {
            return Err(Error::Usage("the passphrase is empty".into()));
        }
        if layout::exists(path) {
            return Err(Error::AlreadyExists(format!(
                "a vault already exists at {}",
                path.display()
            )));
        }
        let created_dir = !path.exists();
        if created_dir {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        } else if !only_killed_init_left(path)? {
            return Err(Error::AlreadyExists(format!(
                "{} exists and is not empty; refusing to create a vault there",
                path.display()
            )));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(format!("cannot set mode of {}", path.display()), e))?;
        }
        let lock = VaultLock::acquire(path, LOCK_WAIT)?;
        lock.remove_leftovers();
        // Under the lock: nobody made a vault here meanwhile. (Nothing is cleaned up on
        // this refusal: the files are the other vault's.)
        if layout::exists(lock.dir()) {
            return Err(Error::AlreadyExists(format!(
                "a vault already exists at {}",
                lock.dir().display()
            )));
        }
        let created = create_locked(lock, passphrase, kdf);
        if created.is_err() {
            // A failed init leaves nothing behind (the lock is gone with the error).
            if created_dir {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_dir_all(path.join(layout::DB_DIR));
                let _ = std::fs::remove_file(path.join(layout::LOCK_FILE));
            }
        }
        created
    }

    /// Opens and unlocks the vault at `path` with its passphrase, migrating a vault of
    /// an older format first (after writing a backup beside it). One process at a time
    /// holds a vault open ([`Error::VaultInUse`] otherwise); a wrong passphrase is
    /// [`Error::WrongPassphrase`].
    ///
    /// ```
    /// use keyvault::{Error, Vault};
    /// use keyvault::crypto::kdf::KdfParams;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("vault");
    /// // Fast, weak KDF parameters, for the example only: real vaults keep the default.
    /// let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// drop(Vault::create(&path, b"passphrase", kdf, true)?);
    ///
    /// assert!(matches!(Vault::open(&path, b"wrong"), Err(Error::WrongPassphrase(_))));
    /// let vault = Vault::open(&path, b"passphrase")?;
    /// assert_eq!(vault.list(None)?.len(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Vault> {
        Self::open_with(path, passphrase, OpenOptions::default())
    }

    /// Opens and unlocks the vault at `path`, with `options`.
    pub fn open_with(path: &Path, passphrase: &[u8], options: OpenOptions) -> Result<Vault> {
        open_dir(path, Secret::Passphrase(passphrase), options, None, true)
    }

    /// Checks `passphrase` against the vault at `path` and returns its master key (so
    /// that the agent can open the vault). A vault of the current format is not opened
    /// for this: only its header file is read.
    pub fn unlock_master_key(path: &Path, passphrase: &[u8]) -> Result<MasterKey> {
        match layout::layout_of(path) {
            Layout::None => Err(Error::VaultNotFound(path.to_path_buf())),
            Layout::Current => {
                let file = read_header_file(path)?;
                let master = unwrap_or_count(path, &file.header.unlock, passphrase, || {
                    // Counted in the database for the audit log of the next unlock.
                    let lock = VaultLock::acquire(path, LOCK_WAIT)?;
                    note_failed_unlock(&Store::open(&lock.db_dir())?)
                })?;
                file.verify(&master.keyring())?;
                Ok(master)
            }
            Layout::Legacy => {
                let lock = VaultLock::acquire(path, LOCK_WAIT)?;
                let store = Store::open(lock.dir())?;
                let header = read_legacy_header(&store)?;
                unwrap_or_count(path, &header, passphrase, || note_failed_unlock(&store))
            }
        }
    }

    /// Opens the vault at `path` with its master key (from [`Vault::unlock_master_key`])
    /// for an unlock session, and records the unlock in the audit log.
    pub(crate) fn open_with_master_key(
        path: &Path,
        master: MasterKey,
        options: OpenOptions,
    ) -> Result<Vault> {
        open_dir(path, Secret::Master(master), options, Some("unlock"), true)
    }

    /// Opens a vault just built by `restore` (no backup before migrating: it was made
    /// from one).
    pub(crate) fn open_restored(path: &Path, master: MasterKey) -> Result<Vault> {
        open_dir(
            path,
            Secret::Master(master),
            OpenOptions::default(),
            None,
            false,
        )
    }

    /// The address range of the in-memory subkeys, for `mlock` by the agent.
    pub(crate) fn key_memory_range(&self) -> (usize, usize) {
        (
            std::ptr::addr_of!(*self.keyring) as usize,
            std::mem::size_of::<Keyring>(),
        )
    }
}

/// Removes what killed keyvault commands left in and beside the vault directory: work
/// entries of compactions, headers being written, backups being written (in the vault
/// directory and beside it, where `backup` is most often pointed), and restores into
/// this path. Each only when it is provably keyvault's own and not in use.
fn remove_leftovers(lock: &VaultLock) {
    lock.remove_leftovers();
    super::backup::remove_stale_temp_files(lock.dir());
    if let Some(parent) = lock.dir().parent() {
        super::backup::remove_stale_temp_files(parent);
    }
    super::restore::remove_stale_siblings(lock.dir(), "restoring");
}

/// Whether `dir` holds nothing but what an `init` killed before it wrote the header
/// leaves (the lock file, a database directory, work entries): that may be replaced.
pub(super) fn only_killed_init_left(dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = name == layout::LOCK_FILE
            || (name == layout::DB_DIR && e.path().is_dir())
            || name.starts_with(layout::WORK_PREFIX);
        if !ours {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates the vault in the locked, empty (but for a killed init's leftovers) directory.
fn create_locked(lock: VaultLock, passphrase: &[u8], kdf: KdfParams) -> Result<Vault> {
    let _ = std::fs::remove_dir_all(lock.db_dir());
    let mut salt = vec![0u8; SALT_LEN];
    random_bytes(&mut salt)?;
    let kek = kdf.derive_kek(passphrase, &salt)?;
    let master = MasterKey::generate()?;
    let wrapped_master_key = master.wrap(&kek, &header_aad(&kdf, &salt)?)?;
    let mut vault_id = [0u8; VAULT_ID_LEN];
    random_bytes(&mut vault_id)?;
    let header = VaultHeader {
        format: CURRENT_FORMAT,
        vault_id,
        unlock: Header {
            kdf,
            salt,
            wrapped_master_key,
            created: Timestamp::now().0,
        },
    };
    let keyring = Box::new(master.keyring());
    drop(master);
    let store = Store::create(&lock.db_dir())?;
    // What every vault holds from the start: an empty revocation ledger (so that a
    // missing one is a sign of tampering) and the first epoch.
    let mut batch = Batch::new();
    ledger::Ledger::default().stage(&keyring, &mut batch)?;
    epoch::stage(
        &keyring,
        &mut batch,
        &epoch::EpochRecord {
            epoch: 1,
            ..Default::default()
        },
    )?;
    store.apply(&batch)?;
    let vault = build(
        lock,
        store,
        keyring,
        header,
        AuditHead::default(),
        1,
        Ok(ledger::Ledger::default()),
    );
    vault.record(AuditEvent::new("init").detail(format!("kdf {kdf}, format {CURRENT_FORMAT}")))?;
    // The header is written last: a directory without one holds no vault yet.
    vault.write_header()?;
    epoch::remember(&vault.id_hex(), 1);
    Ok(vault)
}

fn build(
    lock: VaultLock,
    store: Store,
    keyring: Box<Keyring>,
    header: VaultHeader,
    head: AuditHead,
    epoch: u64,
    revocations: std::result::Result<ledger::Ledger, String>,
) -> Vault {
    Vault {
        store,
        keyring,
        header: Mutex::new(header),
        writer: Mutex::new(head),
        flushes: Default::default(),
        flushed: Default::default(),
        deferred_flush: AtomicBool::new(false),
        uses: Default::default(),
        revocations: Mutex::new(revocations),
        infos: Default::default(),
        epoch: AtomicU64::new(epoch),
        lock,
    }
}

fn open_dir(
    path: &Path,
    secret: Secret<'_>,
    options: OpenOptions,
    event: Option<&'static str>,
    backup_first: bool,
) -> Result<Vault> {
    open_dir_keeping(path, secret, options, event, backup_first, false).map(|(v, _)| v)
}

/// Opens and unlocks the vault at `path` with `passphrase`, and returns its master key
/// too (for `passwd`, which re-wraps it without running the KDF on `passphrase` again).
pub(crate) fn open_keeping_master_key(
    path: &Path,
    passphrase: &[u8],
    options: OpenOptions,
) -> Result<(Vault, MasterKey)> {
    let (vault, master) = open_dir_keeping(
        path,
        Secret::Passphrase(passphrase),
        options,
        None,
        true,
        true,
    )?;
    let master = master.ok_or_else(|| Error::Internal("the master key was not kept".into()))?;
    Ok((vault, master))
}

fn open_dir_keeping(
    path: &Path,
    secret: Secret<'_>,
    options: OpenOptions,
    event: Option<&'static str>,
    backup_first: bool,
    keep_master: bool,
) -> Result<(Vault, Option<MasterKey>)> {
    if !layout::exists(path) && !path.join(layout::MIGRATE_DB).is_dir() {
        return Err(Error::VaultNotFound(path.to_path_buf()));
    }
    let lock = VaultLock::acquire(path, LOCK_WAIT)?;
    remove_leftovers(&lock);
    let mut secret = secret;
    if layout::layout_of(lock.dir()) == Layout::Legacy {
        let master = migrate_legacy(&lock, secret, backup_first)?;
        secret = Secret::Master(master);
    } else {
        migrate::finish_layout_migration(&lock)?;
    }
    let file = read_header_file(lock.dir())?;
    let master = match secret {
        Secret::Master(m) => m,
        Secret::Passphrase(p) => unwrap_or_count(lock.dir(), &file.header.unlock, p, || {
            note_failed_unlock(&Store::open(&lock.db_dir())?)
        })?,
    };
    let keyring = Box::new(master.keyring());
    let master = keep_master.then_some(master);
    file.verify(&keyring)?;
    let store = Store::open(&lock.db_dir())?;
    let vault = assemble(lock, store, keyring, file.header, options, event)?;
    Ok((vault, master))
}

/// Brings a vault of format 1 to 3 to the current format (after a backup beside it,
/// when `backup_first`) and returns its master key.
fn migrate_legacy(lock: &VaultLock, secret: Secret<'_>, backup_first: bool) -> Result<MasterKey> {
    let store = Store::open(lock.dir())?;
    let header = read_legacy_header(&store)?;
    let master = match secret {
        Secret::Master(m) => m,
        Secret::Passphrase(p) => {
            unwrap_or_count(lock.dir(), &header, p, || note_failed_unlock(&store))?
        }
    };
    if store.is_read_only() || lock.without_lock_file() {
        return Err(Error::Storage(format!(
            "the vault at {} is of format {} and must be migrated to format {CURRENT_FORMAT} before use, but its filesystem takes no writes (read-only or full); nothing was changed",
            lock.dir().display(),
            migrate::format_version(&store).unwrap_or(0)
        )));
    }
    migrate::refuse_relabelled(&store, &master)?;
    if backup_first {
        super::restore::backup_before_migration(&store, &header, &master, lock.dir())?;
    }
    migrate::migrate_to_current(lock, store, header, &master)?;
    Ok(master)
}

/// Reads the header of a vault of formats 1 to 3 from its database.
pub(crate) fn read_legacy_header(store: &Store) -> Result<Header> {
    let path = store.path();
    let format = migrate::format_version(store)?;
    if format == 0 {
        return Err(Error::Integrity(format!(
            "the vault at {} has no valid format record (damaged or tampered with)",
            path.display()
        )));
    }
    if format >= 4 {
        // From format 4 on, the format lives in the header file, never in the database.
        return Err(Error::Integrity(format!(
            "the vault at {} records format {format} in its database, where only formats 1 to 3 do (damaged or tampered with)",
            path.display()
        )));
    }
    let header_bytes = store.get(Tree::Meta, meta_keys::HEADER)?.ok_or_else(|| {
        Error::Integrity(format!("the vault at {} has no header", path.display()))
    })?;
    records::decode(&header_bytes, "header")
}

/// Reads and parses the header file of `dir` (not yet authenticated).
pub(crate) fn read_header_file(dir: &Path) -> Result<HeaderFile> {
    let path = dir.join(HEADER_FILE);
    let bytes = read_bounded(&path, 64 * 1024 + 64)?;
    HeaderFile::parse(bytes).map_err(|e| match e {
        Error::NewerFormat {
            found, supported, ..
        } => Error::NewerFormat {
            path: dir.to_path_buf(),
            found,
            supported,
        },
        other => other,
    })
}

/// Reads a small file, refusing one larger than `limit` without reading it all.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::VaultNotFound(path.parent().unwrap_or(path).to_path_buf())
        }
        _ => Error::io(format!("cannot read {}", path.display()), e),
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::Integrity(format!(
            "{} is far larger than a vault header (damaged or tampered with)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Unwraps the master key with `passphrase`; on a wrong passphrase, `count` notes the
/// failure for the audit log of the next successful unlock (best effort: the error the
/// user sees is the wrong passphrase).
fn unwrap_or_count(
    path: &Path,
    header: &Header,
    passphrase: &[u8],
    count: impl FnOnce() -> Result<()>,
) -> Result<MasterKey> {
    let kek = header.kdf.derive_kek(passphrase, &header.salt)?;
    match MasterKey::unwrap(
        &kek,
        &header_aad(&header.kdf, &header.salt)?,
        &header.wrapped_master_key,
    ) {
        Some(mk) => Ok(mk),
        None => {
            let _ = count();
            Err(Error::WrongPassphrase(path.to_path_buf()))
        }
    }
}

fn note_failed_unlock(store: &Store) -> Result<()> {
    let now = Timestamp::now().0;
    let failed = match store.get(Tree::Meta, meta_keys::FAILED_UNLOCKS)? {
        Some(bytes) => {
            let mut f: FailedUnlocks = records::decode(&bytes, "failed unlocks")?;
            f.count = f.count.saturating_add(1);
            f.last = now;
            f
        }
        None => FailedUnlocks {
            count: 1,
            first: now,
            last: now,
        },
    };
    let mut batch = Batch::new();
    batch.insert(
        Tree::Meta,
        meta_keys::FAILED_UNLOCKS,
        records::encode(&failed)?.to_vec(),
    );
    store.apply(&batch)?;
    store.flush()
}

/// Builds the unlocked vault of the current format: loads the audit head, the epoch
/// (checked against this machine's memory of it) and the revocation ledger, logs failed
/// unlocks and `event`.
fn assemble(
    lock: VaultLock,
    store: Store,
    keyring: Box<Keyring>,
    header: VaultHeader,
    options: OpenOptions,
    event: Option<&'static str>,
) -> Result<Vault> {
    let head = AuditHead::load(&store, &keyring)?;
    let revocations = ledger::verify(&store, &keyring)?;
    let record = epoch::load(&store, &keyring)?;
    if let Ok(ledger) = &revocations {
        record.check(ledger, head.seq())?;
    }
    let epoch = record.epoch;
    let id_hex = header.id_hex();
    let rolled_back_from = match epoch::remembered(&id_hex) {
        Some(seen) if epoch < seen => {
            if !options.accept_rollback {
                return Err(Error::Rollback {
                    path: lock.dir().to_path_buf(),
                    found: epoch,
                    remembered: seen,
                });
            }
            if store.is_read_only() {
                return Err(Error::ReadOnly(lock.dir().to_path_buf()));
            }
            Some(seen)
        }
        _ => None,
    };
    let read_only = store.is_read_only();
    let vault = build(lock, store, keyring, header, head, epoch, revocations);
    if let Some(seen) = rolled_back_from {
        // Past every epoch seen: from now on the newer copy is the stale one.
        let head = vault.lock_writer();
        vault.commit_raising_epoch(
            head,
            Batch::new(),
            AuditEvent::new("accept-rollback").detail(format!(
                "an older copy of the vault (epoch {epoch}) was accepted in place of epoch {seen}; epoch now {}",
                seen + 1
            )),
            Some(seen + 1),
        )?;
    } else {
        epoch::remember(&id_hex, epoch);
    }
    if read_only {
        // Nothing can be written: no failed-unlock or unlock entry.
        return Ok(vault);
    }
    if let Some(bytes) = vault.store.get(Tree::Meta, meta_keys::FAILED_UNLOCKS)? {
        let detail = match records::decode::<FailedUnlocks>(&bytes, "failed unlocks") {
            Ok(f) => format!(
                "{} failed attempt(s) since {}, the last at {}",
                f.count,
                Timestamp(f.first),
                Timestamp(f.last)
            ),
            Err(_) => "failed attempts (record unreadable)".to_string(),
        };
        let head = vault.lock_writer();
        let mut batch = Batch::new();
        batch.remove(Tree::Meta, meta_keys::FAILED_UNLOCKS);
        let mut event = AuditEvent::new("unlock-failures").detail(detail);
        event.outcome("failed");
        vault.commit(head, batch, event)?;
    }
    if let Some(op) = event {
        vault.record(AuditEvent::new(op))?;
    }
    Ok(vault)
}
