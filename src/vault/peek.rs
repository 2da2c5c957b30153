//! What can be known of a vault without its passphrase: whether there is one, whether a
//! directory can take a new one, its counts, id and KDF parameters (as its files say,
//! before anything is authenticated), and whether the storage engine is stuck.

use std::path::{Path, PathBuf};

use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::layout::{self, LOCK_WAIT, Layout, VaultLock};

use super::Vault;
use super::migrate;
use super::open::{only_killed_init_left, read_header_file, read_legacy_header};
use super::types::VaultStatus;

/// The absolute path of the vault directory `dir`, symbolic links resolved: the name
/// that stays valid for a process that changes its working directory (the agent).
pub fn canonical_path(dir: &Path) -> Result<PathBuf> {
    layout::resolve(dir)
}

impl Vault {
    /// Whether `dir` holds a vault, of any format: what a command checks before asking
    /// for a passphrase that could not help.
    pub fn exists(dir: &Path) -> bool {
        layout::exists(dir)
    }
}

/// Whether `dir` can receive a new vault: it does not exist, or it is a directory that
/// holds nothing but what a killed `Vault::create` leaves behind (which creating
/// replaces). keyvault never mixes its files with others.
pub fn can_create_in(dir: &Path) -> Result<bool> {
    match dir.metadata() {
        Err(_) => Ok(true),
        Ok(meta) if !meta.is_dir() => Ok(false),
        Ok(_) => only_killed_init_left(dir),
    }
}

/// Whether calls into the storage engine have made no progress for so long that the
/// engine is taken to be stuck on damaged files (it can spin instead of failing). A
/// process that sees this ends itself: a stuck call is a read or an atomic write, so
/// nothing is lost.
pub fn storage_stalled() -> bool {
    crate::store::stalled_for().is_some_and(|d| d >= crate::store::STALL_LIMIT)
}

/// Reads what can be known of a vault without its passphrase: its format version and
/// record counts (no id, name or key is readable without the passphrase).
pub fn peek_status(path: &Path) -> Result<VaultStatus> {
    if !layout::exists(path) {
        return Err(Error::VaultNotFound(path.to_path_buf()));
    }
    let lock = VaultLock::acquire(path, LOCK_WAIT)?;
    match layout::layout_of(lock.dir()) {
        Layout::Legacy => {
            let store = Store::open(lock.dir())?;
            let format = migrate::format_version(&store)?;
            super::status_of(&store, lock.dir(), format)
        }
        _ => {
            // A migration killed after its switch is finished by whoever comes next.
            migrate::finish_layout_migration(&lock)?;
            let file = read_header_file(lock.dir())?;
            let store = Store::open(&lock.db_dir())?;
            super::status_of(&store, lock.dir(), file.header.format)
        }
    }
}

/// The id of the vault at `path` in hex, read from its header file without the
/// passphrase (not authenticated: an agent that holds the vault checks it against the
/// id it unlocked). `None` for a vault of a format before 4, which has no id until it
/// is migrated.
pub fn peek_id(path: &Path) -> Result<Option<String>> {
    match layout::layout_of(path) {
        Layout::None => Err(Error::VaultNotFound(path.to_path_buf())),
        Layout::Current => Ok(Some(read_header_file(path)?.header.id_hex())),
        Layout::Legacy => Ok(None),
    }
}

/// The KDF parameters of the vault at `path`, read from its header without the
/// passphrase (not yet authenticated: opening checks them).
pub fn peek_kdf(path: &Path) -> Result<KdfParams> {
    match layout::layout_of(path) {
        Layout::None => Err(Error::VaultNotFound(path.to_path_buf())),
        Layout::Current => Ok(read_header_file(path)?.header.unlock.kdf),
        Layout::Legacy => {
            let lock = VaultLock::acquire(path, LOCK_WAIT)?;
            Ok(read_legacy_header(&Store::open(lock.dir())?)?.kdf)
        }
    }
}
