//! Compaction: rewriting the vault into a fresh database inside its directory and
//! swapping the two under the vault's lock, so that destroyed records leave the files;
//! and the space figures the agent's upkeep watches.
//!
//! The fresh database is built in `.kv-compact-<12 hex>/` inside the vault directory
//! (symlinks were resolved when the vault was opened) and exchanged with `db/` by one
//! `renameat2(RENAME_EXCHANGE)`: a crash leaves the old or the new database in `db/`,
//! both whole, and the other one in the work directory, which the next opener removes.
//! This process holds the vault's lock throughout, so no other process can open the
//! database between closing the old one and opening the new one.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Batch, Store, Tree};

use super::{AuditEvent, Vault};

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Size of the database files before, in bytes.
    pub bytes_before: u64,
    /// Size of the database files after, in bytes.
    pub bytes_after: u64,
    /// Records copied into the new files.
    pub records: u64,
}

/// How much room the vault's files take against the records they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceUse {
    /// Bytes of the files in the vault directory.
    pub on_disk: u64,
    /// Bytes of the records (index keys and sealed values) in the database: what a
    /// compaction copies.
    pub records: u64,
}

impl SpaceUse {
    /// `on_disk / records` (infinite for an empty database).
    pub fn ratio(&self) -> f64 {
        if self.records == 0 {
            f64::INFINITY
        } else {
            self.on_disk as f64 / self.records as f64
        }
    }
}

/// Bytes of the files under `path`, recursively; entries that vanish or cannot be read
/// while it looks (a compaction swapping directories) count as nothing.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

impl Vault {
    /// Bytes of the files in the vault directory (a few `stat`s; no database read).
    pub(crate) fn disk_bytes(&self) -> u64 {
        dir_size(&self.lock.db_dir())
    }

    /// The vault's files against the records they hold (reads every record's length,
    /// nothing is opened): sled's log leaves superseded pages behind until it reuses
    /// their segments, and [`Vault::compact`] drops them.
    pub fn space_use(&self) -> Result<SpaceUse> {
        Ok(SpaceUse {
            on_disk: self.disk_bytes(),
            records: self.store.record_bytes()?,
        })
    }

    /// Rewrites the vault into a fresh database beside it and swaps it in atomically
    /// (`renameat2(RENAME_EXCHANGE)`), so destroyed records leave the files. A crash
    /// leaves the old or the new database in place, both whole.
    pub fn compact(self) -> Result<(Vault, CompactReport)> {
        match self.try_compact() {
            (Some(vault), Ok(report)) => Ok((vault, report)),
            (_, Err(e)) => Err(e),
            (None, Ok(_)) => Err(Error::Internal("the compacted vault is gone".into())),
        }
    }

    /// [`Vault::compact`], giving the vault back whenever it is still usable: on a
    /// failure before the swap, or when the old database was reopened after a failed
    /// swap. `None` only if the database could not be reopened at all.
    pub(crate) fn try_compact(self) -> (Option<Vault>, Result<CompactReport>) {
        self.compact_noting("")
    }

    /// [`Vault::try_compact`], logged as automatic: what the agent does when idle with
    /// files grown to `space` (see `agent::upkeep`).
    pub(crate) fn compact_automatically(
        self,
        space: SpaceUse,
    ) -> (Option<Vault>, Result<CompactReport>) {
        self.compact_noting(&format!(
            " (automatic: the files were {:.1}× the records)",
            space.ratio()
        ))
    }

    /// Whether a compaction can run now: the vault is writable and its filesystem has
    /// room for a fresh copy of the database (what the database's files take now, and
    /// 16 MiB to spare). Checked before a `revoke --purge` commits anything.
    pub(crate) fn compaction_preflight(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.path().to_path_buf()));
        }
        rustix::fs::access(self.path(), rustix::fs::Access::WRITE_OK).map_err(|e| {
            Error::io(
                format!("cannot compact: {} is not writable", self.path().display()),
                e.into(),
            )
        })?;
        let needed = self.disk_bytes().saturating_add(16 << 20);
        let free = rustix::fs::statvfs(self.path())
            .map(|fs| fs.f_bavail.saturating_mul(fs.f_frsize))
            .map_err(|e| Error::io("cannot read the filesystem's free space", e.into()))?;
        if free < needed {
            return Err(Error::io(
                format!(
                    "cannot compact: {} has {free} bytes free, a fresh copy of the database needs about {needed}",
                    self.path().display()
                ),
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
        Ok(())
    }

    fn compact_noting(self, note: &str) -> (Option<Vault>, Result<CompactReport>) {
        if self.is_read_only() {
            let e = Error::ReadOnly(self.path().to_path_buf());
            return (Some(self), Err(e));
        }
        let db_dir = self.lock.db_dir();
        let bytes_before = dir_size(&db_dir);
        let head = *self.lock_writer();
        // The fresh database is built inside the vault directory (symlinks were
        // resolved when the vault was opened) and swapped with `db/` under the vault's
        // lock, which this process holds throughout: no other process can open the
        // database in between.
        let mut guard = DirGuard(None);
        let built = (|| {
            let fresh_dir = self.lock.compaction_dir()?;
            guard.0 = Some(fresh_dir.clone());
            let mut records = 0u64;
            let fresh = Store::create(&fresh_dir)?;
            // One tree in memory at a time (the agent compacts a big vault on its own).
            for tree in Tree::ALL {
                let entries = self.store.entries(tree)?;
                records += entries.len() as u64;
                fresh.load(tree, &entries)?;
            }
            fresh.flush()?;
            self.store.flush()?;
            Ok::<_, Error>((fresh_dir, records))
        })();
        let (fresh_dir, records) = match built {
            Ok(b) => b,
            Err(e) => return (Some(self), Err(e)),
        };
        let Vault {
            store,
            keyring,
            header,
            uses,
            revocations,
            infos,
            epoch,
            lock,
            ..
        } = self;
        drop(store);
        let swapped = lock.exchange(&fresh_dir, &db_dir);
        let reopened = match Store::open(&db_dir) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        };
        let vault = Vault {
            store: reopened,
            keyring,
            header,
            writer: std::sync::Mutex::new(head),
            flushes: Default::default(),
            flushed: Default::default(),
            deferred_flush: Default::default(),
            uses,
            revocations,
            infos,
            epoch,
            lock,
        };
        if let Err(e) = swapped {
            // The old database is still in place and was reopened: nothing changed.
            return (Some(vault), Err(e));
        }
        // `fresh_dir` now holds the old database; the guard removes it.
        drop(guard);
        let report = CompactReport {
            bytes_before,
            bytes_after: dir_size(&db_dir),
            records,
        };
        let head = vault.lock_writer();
        let logged = vault.commit_raising_epoch(
            head,
            Batch::new(),
            AuditEvent::new("compact").detail(format!(
                "{records} records, {bytes_before} → {} bytes{note}",
                report.bytes_after
            )),
            None,
        );
        match logged {
            Ok(()) => (Some(vault), Ok(report)),
            Err(e) => (Some(vault), Err(e)),
        }
    }
}

/// Removes a directory when dropped, unless disarmed.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}
