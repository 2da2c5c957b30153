//! The vault directory: which entries keyvault owns in it, the vault's own lock, and
//! the atomic replacement of files and directories inside it.
//!
//! A vault (format 4 on) is a directory holding:
//!
//! - `lock`: an empty file. Every process that opens the vault holds an exclusive
//!   `flock` on it for as long as it has the database open, across a compaction's swap
//!   too. The storage engine's own lock is never the vault's lock: it is let go of while
//!   a compaction swaps databases, and another process could open the database then.
//! - `header`: what unlocking needs (see `vault::header`), replaced atomically.
//! - `db/`: the storage engine's database.
//! - hidden work entries whose names start with `.kv-` (a compaction's fresh database,
//!   a header being written, a migration in progress). The next process that takes the
//!   lock removes what a killed one left.
//!
//! keyvault touches nothing else in the directory. Formats 1 to 3 kept the database's
//! files directly in the vault directory (`conf`, a `db` file, `blobs/`, `snap.*`): see
//! [`Layout::Legacy`]. This module knows nothing of cryptography.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The lock file.
pub const LOCK_FILE: &str = "lock";
/// The header file.
pub const HEADER_FILE: &str = "header";
/// The database directory.
pub const DB_DIR: &str = "db";
/// The prefix of keyvault's hidden work entries in a vault directory.
pub const WORK_PREFIX: &str = ".kv-";
/// The fresh database of a migration to format 4, renamed to [`DB_DIR`] once the new
/// header is in place.
pub const MIGRATE_DB: &str = ".kv-migrate-db";
/// The header a migration to format 4 writes before it renames it to [`HEADER_FILE`]
/// (the step that makes the vault a format-4 vault).
pub const MIGRATE_HEADER: &str = ".kv-migrate-header";
/// The files of a database of formats 1 to 3, directly in the vault directory.
pub const LEGACY_FILES: [&str; 3] = ["conf", "db", "blobs"];

/// How long opening waits for the lock another process holds.
pub const LOCK_WAIT: Duration = Duration::from_millis(3000);

/// What a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A vault of format 4 or later: a header file.
    Current,
    /// A vault of formats 1 to 3: the database's files in the directory itself.
    Legacy,
    /// No vault.
    None,
}

/// What `dir` holds.
pub fn layout_of(dir: &Path) -> Layout {
    if dir.join(HEADER_FILE).is_file() {
        Layout::Current
    } else if dir.join(DB_DIR).is_file() {
        Layout::Legacy
    } else {
        Layout::None
    }
}

/// Whether `dir` holds a vault (of any format).
pub fn exists(dir: &Path) -> bool {
    layout_of(dir) != Layout::None
}

/// A random lowercase hex suffix for work names.
pub fn random_suffix() -> Result<String> {
    let mut rnd = [0u8; 6];
    crate::crypto::random_bytes(&mut rnd)?;
    Ok(rnd.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `name` is `PREFIX` followed by 12 lowercase hex digits: the names keyvault
/// gives its own temporary entries.
pub fn is_work_name(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 12
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The vault's lock, held for as long as the value lives.
#[derive(Debug)]
pub struct VaultLock {
    /// The vault directory, symlinks resolved once.
    dir: PathBuf,
    /// The lock file, flocked; `None` on a read-only filesystem that has none (a vault
    /// of an older format on write-protected media: nobody can change it anyway).
    _file: Option<fs::File>,
}

impl VaultLock {
    /// Takes the lock of the vault directory `dir` (which must exist), waiting up to
    /// `wait` for another process to let go of it. Symlinks in `dir` are resolved once
    /// here: every later file operation happens inside the real directory.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<VaultLock> {
        let real = resolve(dir)?;
        let deadline = Instant::now() + wait;
        loop {
            let Some(file) = open_lock_file(&real)? else {
                return Ok(VaultLock {
                    dir: real,
                    _file: None,
                });
            };
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    // The file we locked must still be the one at the path: a lock on a
                    // file that was replaced meanwhile guards nothing.
                    let still_there = fs::symlink_metadata(real.join(LOCK_FILE))
                        .ok()
                        .zip(file.metadata().ok())
                        .is_some_and(|(at_path, ours)| {
                            at_path.ino() == ours.ino() && at_path.dev() == ours.dev()
                        });
                    if still_there {
                        return Ok(VaultLock {
                            dir: real,
                            _file: Some(file),
                        });
                    }
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot lock {}", real.join(LOCK_FILE).display()),
                        e.into(),
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::VaultInUse(dir.to_path_buf()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The vault directory (real path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database directory.
    pub fn db_dir(&self) -> PathBuf {
        self.dir.join(DB_DIR)
    }

    /// Whether the vault's filesystem refused even the lock file.
    pub fn without_lock_file(&self) -> bool {
        self._file.is_none()
    }

    /// Removes the work entries a killed keyvault left in the directory: compactions'
    /// databases (`.kv-compact-…`) and headers being written (`.kv-header-…`). Only
    /// names of exactly keyvault's own pattern are touched; a pending migration is
    /// finished or undone by the migration itself.
    pub fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && is_work_name(&name, COMPACT_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            } else if kind.is_file() && is_work_name(&name, HEADER_TMP_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// A fresh name in the vault directory for a compaction's database.
    pub fn compaction_dir(&self) -> Result<PathBuf> {
        Ok(self
            .dir
            .join(format!("{COMPACT_PREFIX}{}", random_suffix()?)))
    }

    /// Swaps two entries of the vault directory atomically (`renameat2` with
    /// `RENAME_EXCHANGE`), then makes the swap durable.
    pub fn exchange(&self, a: &Path, b: &Path) -> Result<()> {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            a,
            rustix::fs::CWD,
            b,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| Error::io("cannot swap in the compacted database", e.into()))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Replaces the file `name` of the vault directory with `bytes` atomically: written
    /// beside it (0600), synced, renamed over it, and the directory synced. After a
    /// crash the file holds the old bytes or the new ones.
    pub fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_file_atomically(&self.dir, name, bytes)
    }
}

/// Compactions' fresh databases: `.kv-compact-<12 hex>`.
const COMPACT_PREFIX: &str = ".kv-compact-";
/// Headers being written: `.kv-header-<12 hex>`.
const HEADER_TMP_PREFIX: &str = ".kv-header-";

/// Writes `dir/name` atomically; see [`VaultLock::replace_file`].
pub fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{HEADER_TMP_PREFIX}{}", random_suffix()?));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(
            format!("cannot write {}", dir.join(name).display()),
            e,
        ));
    }
    sync_dir(dir);
    Ok(())
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The real path of an existing vault directory.
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    fs::canonicalize(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::VaultNotFound(dir.to_path_buf()),
        _ => Error::io(format!("cannot open {}", dir.display()), e),
    })
}

/// Opens (creating it 0600 if missing) the lock file, never through a symlink. `None`
/// when it is missing and the filesystem is read-only.
fn open_lock_file(dir: &Path) -> Result<Option<fs::File>> {
    let path = dir.join(LOCK_FILE);
    let nofollow = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32;
    let created = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&path);
    match created {
        Ok(f) => Ok(Some(f)),
        Err(e) if is_read_only(&e) || e.kind() == std::io::ErrorKind::PermissionDenied => {
            // A read-only filesystem (or directory): an existing lock file is opened
            // for reading (flock needs no write access); none at all means nobody can
            // write the vault, so there is nothing to exclude.
            match fs::OpenOptions::new()
                .read(true)
                .custom_flags(nofollow)
                .open(&path)
            {
                Ok(f) => Ok(Some(f)),
                Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e2) => Err(Error::io(format!("cannot open {}", path.display()), e2)),
            }
        }
        Err(e) => Err(Error::io(format!("cannot open {}", path.display()), e)),
    }
}

/// Whether an I/O error says the filesystem cannot take writes now (read-only, full,
/// over quota).
pub fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::ROFS.raw_os_error()
            || code == rustix::io::Errno::NOSPC.raw_os_error()
            || code == rustix::io::Errno::DQUOT.raw_os_error()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_names_are_exactly_prefix_and_twelve_hex_digits() {
        assert!(is_work_name(".kv-compact-0123456789ab", COMPACT_PREFIX));
        assert!(!is_work_name(".kv-compact-0123456789a", COMPACT_PREFIX));
        assert!(!is_work_name(".kv-compact-0123456789abc", COMPACT_PREFIX));
        assert!(!is_work_name(".kv-compact-0123456789AB", COMPACT_PREFIX));
        assert!(!is_work_name("kv-compact-0123456789ab", COMPACT_PREFIX));
        assert!(!is_work_name("my-backup.kvb", COMPACT_PREFIX));
    }

    #[test]
    fn leftovers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let lock = VaultLock::acquire(dir.path(), LOCK_WAIT).unwrap();
        fs::create_dir(dir.path().join(".kv-compact-0123456789ab")).unwrap();
        fs::write(dir.path().join(".kv-header-0123456789ab"), b"x").unwrap();
        fs::write(dir.path().join(".kv-compact-mine"), b"user's").unwrap();
        fs::write(dir.path().join("backup.kvb"), b"user's").unwrap();
        lock.remove_leftovers();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".kv-compact-mine", "backup.kvb", "lock"]);
    }

    #[test]
    fn a_second_lock_waits_then_reports_the_vault_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _held = VaultLock::acquire(dir.path(), LOCK_WAIT).unwrap();
        let second = VaultLock::acquire(dir.path(), Duration::from_millis(50));
        assert!(matches!(second, Err(Error::VaultInUse(_))), "{second:?}");
    }
}
