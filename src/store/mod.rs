//! The storage engine behind one small interface: open trees, get, scan, atomic batch,
//! flush. Only this module names `sled`; sled's own README calls it beta, and keeping it
//! behind this interface keeps a later move possible.
//!
//! The store knows nothing of cryptography: it moves opaque (already sealed) bytes.

pub mod format;
pub mod layout;
pub mod records;

/// The old home of the format numbers, kept for code written against it: the format
/// numbers are in [`format`], the migration runner in the vault layer.
#[doc(hidden)]
pub use format as migrate;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::error::{Error, Result};

/// Stall detection. sled 0.34 can spin forever reading some damaged files instead of
/// returning an error; a command must end with an error instead. Every call into the
/// engine (but opening, whose recovery legitimately takes long on a large vault) marks
/// progress on entry and exit; [`stalled_for`] says how long calls have been in flight
/// without any progress, and the binary's watchdog ends the process past a limit.
mod stall {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
    static LAST_PROGRESS_MS: AtomicU64 = AtomicU64::new(0);

    fn now_ms() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// Held for the duration of one engine call.
    pub struct Call;

    impl Call {
        pub fn enter() -> Call {
            LAST_PROGRESS_MS.store(now_ms(), Ordering::Relaxed);
            IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
            Call
        }
    }

    impl Drop for Call {
        fn drop(&mut self) {
            LAST_PROGRESS_MS.store(now_ms(), Ordering::Relaxed);
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn stalled_for() -> Option<Duration> {
        if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let since = now_ms().saturating_sub(LAST_PROGRESS_MS.load(Ordering::Relaxed));
        Some(Duration::from_millis(since))
    }
}

/// How long calls into the storage engine have been in flight without progress, if any
/// are (see the `stall` module): past a few seconds, the engine is stuck on damaged
/// files.
pub fn stalled_for() -> Option<std::time::Duration> {
    stall::stalled_for()
}

/// A call into the engine this long without progress is taken for a stuck engine.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(8);

/// What to run the first time this process opens a database (the binary's stall
/// watchdog): set once, before any open. A process that never opens one (a command
/// served by the agent) never pays for it — a watchdog thread costs every command its
/// start and its teardown at exit.
static ON_FIRST_OPEN: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what runs the first time this process opens a database (see [`stalled_for`]);
/// only the first call counts.
pub fn on_first_open(hook: fn()) {
    let _ = ON_FIRST_OPEN.set(hook);
}

fn first_open() {
    static DONE: std::sync::Once = std::sync::Once::new();
    if let Some(hook) = ON_FIRST_OPEN.get() {
        DONE.call_once(*hook);
    }
}

/// The trees of a vault. Each holds one kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Vault metadata: format version, KDF parameters, wrapped master key.
    Meta,
    /// Active keys, one record per (user, key name), keyed by an index MAC.
    Keys,
    /// Revoked users, keyed by an index MAC.
    Revoked,
    /// The audit log, keyed by sequence number.
    Audit,
}

impl Tree {
    /// Every tree, in a fixed order.
    pub const ALL: [Tree; 4] = [Tree::Meta, Tree::Keys, Tree::Revoked, Tree::Audit];

    /// The tree's name, as stored by the engine and as bound into each record's
    /// associated data.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Keys => "keys",
            Tree::Revoked => "revoked",
            Tree::Audit => "audit",
        }
    }

    /// The tree's position in [`Tree::ALL`].
    pub fn index(self) -> usize {
        match self {
            Tree::Meta => 0,
            Tree::Keys => 1,
            Tree::Revoked => 2,
            Tree::Audit => 3,
        }
    }
}

/// One change in an atomic batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace a value.
    Insert(Tree, Vec<u8>, Vec<u8>),
    /// Remove a value (no error if absent).
    Remove(Tree, Vec<u8>),
    /// Insert a value under a key that must be absent: the whole batch fails with
    /// [`Error::AlreadyExists`] otherwise.
    Create(Tree, Vec<u8>, Vec<u8>),
}

/// A set of changes applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an insert.
    pub fn insert(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Insert(tree, key.into(), value.into()));
    }

    /// Adds an insert under a key that must be absent (checked as the batch is applied,
    /// at no extra read: the transaction reads the old value anyway).
    pub fn create(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Create(tree, key.into(), value.into()));
    }

    /// Adds a removal.
    pub fn remove(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Remove(tree, key.into()));
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The keys of `tree` that the batch inserts or removes.
    pub fn keys_in(&self, tree: Tree) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().filter_map(move |op| match op {
            Op::Insert(t, k, _) | Op::Remove(t, k) | Op::Create(t, k, _) if *t == tree => {
                Some(k.as_slice())
            }
            _ => None,
        })
    }
}

/// Entries per sled batch when loading a fresh database. sled cannot reuse the space of
/// superseded pages while one batch is being applied, so batches of 10,000 left a
/// compacted 100k-key vault at 2.9× its records; batches of 100 to 1,000 leave it at
/// about 1.85× and load as fast (100k keys, 2026-11-29).
pub const LOAD_CHUNK: usize = 300;

/// An open vault database.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    trees: [sled::Tree; 4],
    /// The database file, opened read-only, to `fdatasync` it.
    db_file: fs::File,
    /// Opened from a private copy because the vault's filesystem takes no writes (see
    /// [`Store::open`]): every change is refused.
    read_only: Option<tempfile::TempDir>,
}

/// sled's page cache (its default is 1 GiB, which a long-lived agent of a large vault
/// would fill). 64 MiB holds every page of a 100,000-key vault (about 36 MB of records):
/// measured on one, gets ran 9–15 µs with 64 MiB or 1 GiB, but 29 µs with 16 MiB and
/// 36 µs with 8 MiB, and the agent's memory after a full listing went down only from
/// about 100 to 72–79 MB (the rest is sled's other state and the allocator's free
/// memory, not the cache).
const CACHE_BYTES: u64 = 64 << 20;

/// The file sled writes first and that marks a directory as holding a database.
const DB_FILE: &str = "db";

/// How long `open` waits for a database another handle holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

impl Store {
    /// Whether `path` holds a database.
    pub fn exists(path: &Path) -> bool {
        path.join(DB_FILE).is_file()
    }

    /// Creates a new database in `path`, which must not exist or be an empty directory.
    /// The directory is created 0700.
    pub fn create(path: &Path) -> Result<Store> {
        if Self::exists(path) {
            return Err(Error::AlreadyExists(format!(
                "a vault already exists at {}",
                path.display()
            )));
        }
        if path.exists() {
            let mut entries = fs::read_dir(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            if entries.next().is_some() {
                return Err(Error::AlreadyExists(format!(
                    "{} exists and is not empty; refusing to create a vault there",
                    path.display()
                )));
            }
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot set mode of {}", path.display()), e))?;
        Self::open_engine(path, path)
    }

    /// Opens an existing database. A database found "in use" is retried for a moment
    /// before giving up: the process that had it may be about to finish (sled lets go of
    /// its file lock only once its last thread does).
    ///
    /// sled writes as it opens. When the filesystem takes no writes (read-only media, a
    /// full disk — less than [`MIN_FREE_BYTES`] free —, a directory this user may read
    /// but not write), the database is opened from a private copy instead (sealed bytes
    /// only, in a 0700 directory of memory-backed storage where there is one, removed
    /// on close), read-only: every change is then refused with [`Error::ReadOnly`] and
    /// the vault's files are left exactly as they were.
    pub fn open(path: &Path) -> Result<Store> {
        if !Self::exists(path) {
            return Err(Error::VaultNotFound(path.to_path_buf()));
        }
        if filesystem_is_full(path) {
            // sled writes at open only when it needs a snapshot, and a write may fit in
            // the log's existing segments: whether a full disk is noticed would depend
            // on sled's state. Decide here, the same way every time.
            return Self::open_copy(path);
        }
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Self::open_engine(path, path) {
                Err(Error::VaultInUse(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(Error::Io { source, .. })
                    if layout::is_read_only(&source)
                        || source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    return Self::open_copy(path);
                }
                other => return other,
            }
        }
    }

    /// Opens a private copy of the database at `path`, read-only (see [`Store::open`]).
    fn open_copy(path: &Path) -> Result<Store> {
        let copy = private_scratch_dir()?;
        let target = copy.path().join("db");
        copy_dir(path, &target)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let mut store = Self::open_engine(&target, path)?;
        store.read_only = Some(copy);
        Ok(store)
    }

    /// Whether changes are refused (see [`Store::open`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    fn refuse_if_read_only(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.path.clone()));
        }
        Ok(())
    }

    /// sled 0.34.7 writes a snapshot to `snap.N.generating`, syncs it, then renames it;
    /// but when it opens it takes the highest-named `snap.*` file, `.generating` ones
    /// included, so a process killed while writing a snapshot leaves a database sled then
    /// refuses as corrupted (sled issue #1533). A `.generating` file is by construction
    /// incomplete: remove it before opening, but only while nobody holds the database
    /// (we take sled's own lock on `db` for the moment of the cleanup).
    fn remove_torn_snapshots(path: &Path) {
        let Ok(db) = fs::File::open(path.join(DB_FILE)) else {
            return;
        };
        if rustix::fs::flock(&db, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return;
        }
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("snap.") && name.ends_with(".generating") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let _ = rustix::fs::flock(&db, rustix::fs::FlockOperation::Unlock);
    }

    /// Opens the database in `path`; `shown` is the path errors name.
    fn open_engine(path: &Path, shown: &Path) -> Result<Store> {
        first_open();
        Self::remove_torn_snapshots(path);
        let config = sled::Config::new()
            .path(path)
            // Measured on a 20k-key vault: HighThroughput loads ~40% faster than
            // LowSpace for the same files' size (sled 0.34's leaf rewrites dominate
            // both; see README, Benchmarks).
            .mode(sled::Mode::HighThroughput)
            // No background flusher: every change is flushed before it returns, the
            // agent flushes the rest (audit entries of reads) each second itself, and
            // sled's flusher thread would hold the database's file lock for up to its
            // period after a close, delaying the next open (e.g. `unlock` → agent).
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES);
        // sled panics on some kinds of corrupted files instead of returning an error;
        // a panic here must become an error, never a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_open_error(shown, e)),
            Err(_) => {
                return Err(Error::Integrity(format!(
                    "the database files under {} are corrupted",
                    shown.display()
                )));
            }
        };
        let mut trees = Vec::with_capacity(4);
        for tree in Tree::ALL {
            trees.push(db.open_tree(tree.name()).map_err(storage)?);
        }
        let trees: [sled::Tree; 4] = trees
            .try_into()
            .map_err(|_| Error::Internal("tree count".into()))?;
        let db_file = fs::File::open(path.join(DB_FILE))
            .map_err(|e| Error::io(format!("cannot open {}", path.join(DB_FILE).display()), e))?;
        Ok(Store {
            path: shown.to_path_buf(),
            db,
            trees,
            db_file,
            read_only: None,
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }

    /// Reads one value.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _call = stall::Call::enter();
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    /// Whether a key is present.
    pub fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool> {
        let _call = stall::Call::enter();
        self.tree(tree).contains_key(key).map_err(storage)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        tree: Tree,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + use<> {
        let mut inner = self.tree(tree).scan_prefix(prefix);
        std::iter::from_fn(move || {
            let _call = stall::Call::enter();
            inner.next()
        })
        .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
    }

    /// The last entry of a tree in key order.
    pub fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let _call = stall::Call::enter();
        Ok(self
            .tree(tree)
            .last()
            .map_err(storage)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// The number of entries in a tree (walks the tree). Stops at the first error: sled's
    /// own `len` counts an unreadable page's error again and again, forever.
    pub fn len(&self, tree: Tree) -> Result<usize> {
        let mut n = 0;
        for item in self.scan_prefix(tree, &[]) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Applies every change of `batch` atomically across trees: after a crash either all
    /// of them are there or none is.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.refuse_if_read_only()?;
        let _call = stall::Call::enter();
        let [meta, keys, revoked, audit] = &self.trees;
        // Aborts with the tree of a `Create` whose key exists.
        let result: std::result::Result<(), TransactionError<Tree>> = (meta, keys, revoked, audit)
            .transaction(|(m, k, r, a)| {
                let trees = [m, k, r, a];
                for op in &batch.ops {
                    match op {
                        Op::Insert(tree, key, value) => {
                            trees[tree.index()].insert(key.as_slice(), value.as_slice())?;
                        }
                        Op::Remove(tree, key) => {
                            trees[tree.index()].remove(key.as_slice())?;
                        }
                        Op::Create(tree, key, value) => {
                            let old =
                                trees[tree.index()].insert(key.as_slice(), value.as_slice())?;
                            if old.is_some() {
                                return Err(ConflictableTransactionError::Abort(*tree));
                            }
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<Tree>>(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(storage(e)),
            Err(TransactionError::Abort(tree)) => Err(Error::AlreadyExists(format!(
                "a record to create in the {} tree exists already",
                tree.name()
            ))),
        }
    }

    /// Loads many entries into a tree (restore, compaction), in sled batches of
    /// [`LOAD_CHUNK`] entries: atomic per chunk, not per call, nor across trees, so use it
    /// only on a database nobody else sees yet.
    pub fn load(&self, tree: Tree, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.refuse_if_read_only()?;
        for chunk in entries.chunks(LOAD_CHUNK) {
            let _call = stall::Call::enter();
            let mut batch = sled::Batch::default();
            for (k, v) in chunk {
                batch.insert(k.as_slice(), v.as_slice());
            }
            self.tree(tree).apply_batch(batch).map_err(storage)?;
        }
        Ok(())
    }

    /// Every entry of a tree, in key order.
    pub fn entries(&self, tree: Tree) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix(tree, &[]).collect()
    }

    /// Makes every applied change durable on disk: sled writes and `sync_file_range`s
    /// its log, which does not make a grown file's metadata durable, so the database file
    /// is then `fdatasync`ed as well (one call, shared by the writers of a group commit).
    pub fn flush(&self) -> Result<()> {
        if self.is_read_only() {
            return Ok(());
        }
        let _call = stall::Call::enter();
        self.db.flush().map_err(storage)?;
        self.db_file
            .sync_data()
            .map_err(|e| Error::io("syncing the database file", e))?;
        Ok(())
    }

    /// Bytes of every record (key and value) in every tree.
    pub fn record_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for tree in Tree::ALL {
            let mut entries = self.tree(tree).iter();
            loop {
                let _call = stall::Call::enter();
                let Some(entry) = entries.next() else { break };
                let (k, v) = entry.map_err(storage)?;
                total += (k.len() + v.len()) as u64;
            }
        }
        Ok(total)
    }

    /// The size on disk of the database, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(storage)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort: every command already flushed what it promised.
        let _ = self.db.flush();
    }
}

/// Below this much free space for the user, the filesystem counts as full: two of
/// sled's log segments, what one write may need.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Whether the filesystem holding `path` has less than [`MIN_FREE_BYTES`] free for this
/// user.
fn filesystem_is_full(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|fs| fs.f_bavail.saturating_mul(fs.f_frsize) < MIN_FREE_BYTES)
}

/// A private directory for a read-only copy of a database: in `$XDG_RUNTIME_DIR` or
/// `/dev/shm` (memory-backed, so it works when the vault's disk is full), else the temp
/// dir; created 0700 by `tempfile`.
fn private_scratch_dir() -> Result<tempfile::TempDir> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(run));
    }
    candidates.push(PathBuf::from("/dev/shm"));
    candidates.push(std::env::temp_dir());
    let mut last = None;
    for dir in candidates {
        match tempfile::Builder::new()
            .prefix("keyvault-readonly-")
            .tempdir_in(&dir)
        {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        "cannot create a private directory for a read-only copy of the vault",
        last.unwrap_or_else(|| std::io::Error::other("no candidate directory")),
    ))
}

/// Copies the directory tree `from` to `to` (regular files and directories only).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let kind = e.file_type()?;
        let target = to.join(e.file_name());
        if kind.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

fn storage(e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => {
            Error::Integrity("the database files are corrupted".to_string())
        }
        sled::Error::Io(io) => Error::io("database I/O", io),
        other => Error::Storage(other.to_string()),
    }
}

fn map_open_error(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            Error::VaultInUse(path.to_path_buf())
        }
        sled::Error::Corruption { .. } => Error::Integrity(format!(
            "the database files under {} are corrupted",
            path.display()
        )),
        sled::Error::Io(io) => {
            Error::io(format!("cannot open the vault at {}", path.display()), io)
        }
        other => Error::Storage(other.to_string()),
    }
}
