//! Rollback detection: the vault's sealed epoch, and the highest epoch this machine has
//! seen of each vault.
//!
//! Every change that removes something (revoke, delete, passwd, compact, restore) raises
//! the epoch, a counter sealed in the `meta` tree in the same atomic batch as the change.
//! keyvault remembers, per vault id, the highest epoch it has seen on this machine, in
//! a small file under `$XDG_STATE_HOME/keyvault/epochs/` (default
//! `~/.local/state/keyvault/epochs/`). A vault whose epoch is lower than remembered is an
//! older copy put back in place: opening it fails unless the user accepts the rollback,
//! which raises the epoch past the remembered one and is audited.
//!
//! What it cannot see: a copy put back on another machine (or after the state file was
//! deleted), and a change lost with the last crash before it was remembered. The state
//! file is not secret and not authenticated: whoever can write the user's home can
//! lower it, and can also replace the keyvault binary.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::crypto::seal::{Keyring, record_aad};
use crate::error::{Error, Result};
use crate::store::records;
use crate::store::{Batch, Store, Tree};

/// The meta-tree key of the sealed epoch.
pub const EPOCH_KEY: &[u8] = b"epoch";

/// Adds the sealed `epoch` to `batch`.
pub fn stage(keyring: &Keyring, batch: &mut Batch, epoch: u64) -> Result<()> {
    let sealed = keyring.records.seal(
        &record_aad(Tree::Meta.name(), EPOCH_KEY),
        &records::encode(&epoch)?,
    )?;
    batch.insert(Tree::Meta, EPOCH_KEY, sealed);
    Ok(())
}

/// Opens a sealed epoch.
pub fn open(keyring: &Keyring, sealed: &[u8]) -> Result<u64> {
    let plain = keyring
        .records
        .open(&record_aad(Tree::Meta.name(), EPOCH_KEY), sealed)
        .map_err(|_| Error::Integrity("the vault's epoch record fails to authenticate".into()))?;
    records::decode(&plain, "epoch")
}

/// The epoch of the vault in `store` (format 4 on, where it is always there).
pub fn load(store: &Store, keyring: &Keyring) -> Result<u64> {
    match store.get(Tree::Meta, EPOCH_KEY)? {
        Some(sealed) => open(keyring, &sealed),
        None => Err(Error::Integrity(
            "the vault's epoch record is missing (damaged or tampered with)".into(),
        )),
    }
}

/// Where this machine keeps the highest epoch seen of the vault `id_hex`.
fn state_file(id_hex: &str) -> Option<PathBuf> {
    Some(
        dirs::state_dir()?
            .join("keyvault")
            .join("epochs")
            .join(id_hex),
    )
}

/// The highest epoch this machine has seen of the vault `id_hex`, if any.
pub fn remembered(id_hex: &str) -> Option<u64> {
    let text = fs::read_to_string(state_file(id_hex)?).ok()?;
    text.trim().parse().ok()
}

/// Remembers `epoch` for the vault `id_hex` if it is higher than what is remembered.
/// Best effort: a home that takes no writes weakens the detection, it does not stop
/// the vault from working.
pub fn remember(id_hex: &str, epoch: u64) {
    if remembered(id_hex).is_some_and(|r| r >= epoch) {
        return;
    }
    let Some(path) = state_file(id_hex) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return;
    }
    let tmp = dir.join(format!(".{id_hex}.{}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{epoch}")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
}
