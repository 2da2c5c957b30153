//! The backup file: one self-contained file holding every record as stored
//! (still sealed), behind a header with what unlocking needs, and a MAC over the whole
//! under the master key's MAC subkey.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! "KVBACKUP"                     8 bytes, magic
//! version                        u32, the backup format (1)
//! header length n                u32 (at most 64 KiB)
//! header                         n bytes: record-format byte ‖ postcard(BackupHeader)
//! header checksum                32 bytes: SHA-256 of everything above
//! records, each:
//!   tree                         u8 (0 meta, 1 keys, 2 revoked, 3 audit)
//!   key length, key              u32, bytes (at most 4 KiB)
//!   value length, value          u32, bytes (at most 64 MiB)
//! end marker                     u8 0xFF
//! MAC                            32 bytes: HMAC-SHA256 under the MAC subkey, over the
//!                                label "keyvault backup v1" and every byte above
//! ```
//!
//! The unkeyed checksum lets a reader tell a damaged header (integrity failure, exit 7)
//! from a wrong passphrase (exit 3) before any key is derived. The header holds the
//! vault's KDF parameters, salt and wrapped master key as they were when the backup was
//! made, so a backup restores with the passphrase that was current then.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::seal::{Keyring, MacStream, MasterKey};
use crate::error::{Error, Result};
use crate::store::Tree;
use crate::store::records::{self, Header};

/// The magic bytes at the start of every backup.
pub(crate) const MAGIC: &[u8; 8] = b"KVBACKUP";
/// The backup format this binary writes and reads.
pub(crate) const BACKUP_FORMAT: u32 = 1;
const MAC_LABEL: &[u8] = b"keyvault backup v1";
const MAX_HEADER: u32 = 64 * 1024;
const MAX_KEY: u32 = 4 * 1024;
const MAX_VALUE: u32 = 64 * 1024 * 1024;
const END: u8 = 0xFF;

/// What the header of a backup says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The vault's format version.
    pub vault_format: u32,
    /// When the backup was made (Unix seconds).
    pub created: u64,
    /// The vault header (KDF parameters, salt, wrapped master key) at that time.
    pub vault_header: Header,
    /// How many records follow.
    pub records: u64,
}

/// A record of a backup: tree, database key, sealed value.
pub(crate) type BackupRecord = (Tree, Vec<u8>, Vec<u8>);

fn tree_code(tree: Tree) -> u8 {
    match tree {
        Tree::Meta => 0,
        Tree::Keys => 1,
        Tree::Revoked => 2,
        Tree::Audit => 3,
    }
}

fn tree_from_code(code: u8) -> Option<Tree> {
    Some(match code {
        0 => Tree::Meta,
        1 => Tree::Keys,
        2 => Tree::Revoked,
        3 => Tree::Audit,
        _ => return None,
    })
}

/// A writer that MACs what it writes.
struct MacWriter<W: Write> {
    inner: W,
    mac: MacStream,
}

impl<W: Write> MacWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.mac.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// A temporary file beside `target`, created 0600, renamed over nothing on success and
/// removed on failure.
struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    fn beside(target: &Path) -> Result<(TempFile, fs::File)> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{} is not a file name", target.display())))?;
        let mut rnd = [0u8; 6];
        crate::crypto::random_bytes(&mut rnd)?;
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        remove_stale_temp_files(dir);
        let path = dir.join(format!(".{}{TEMP_INFIX}{suffix}", name.to_string_lossy()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        // Held while the backup is written: what a later cleanup finds locked is alive.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e.into()))?;
        Ok((TempFile { path, done: false }, file))
    }

    fn persist(mut self, target: &Path) -> Result<()> {
        // Never replace an existing file: link the finished file to its name (fails if
        // the name exists), then drop the temporary name.
        fs::hard_link(&self.path, target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!(
                "{} exists; refusing to overwrite it",
                target.display()
            )),
            _ => Error::io(format!("cannot create {}", target.display()), e),
        })?;
        let _ = fs::remove_file(&self.path);
        self.done = true;
        sync_parent(target);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What names a backup being written: `.NAME.tmp-<12 hex>` beside its target.
const TEMP_INFIX: &str = ".tmp-";

/// Removes the temporary files of killed backups from `dir`: only files named as
/// keyvault names them (`.NAME.tmp-<12 hex>`), empty or starting with the backup magic,
/// and not locked (a backup being written holds a lock on its file).
pub(crate) fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        // `.NAME.tmp-<12 hex>`, with a NAME of at least one character.
        let ours = name.starts_with('.')
            && name.rfind(TEMP_INFIX).is_some_and(|at| {
                at >= 2 && crate::store::layout::is_work_name(&name[at..], TEMP_INFIX)
            });
        if !ours || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(mut file) = fs::File::open(e.path()) else {
            continue;
        };
        let mut magic = [0u8; 8];
        let read = std::io::Read::read(&mut file, &mut magic).unwrap_or(usize::MAX);
        let looks_ours = read == 0 || (read == MAGIC.len() && &magic == MAGIC);
        if looks_ours
            && rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_ok()
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Makes a rename or link durable by syncing the directory that holds it.
pub(crate) fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// A backup being written: a temporary file beside its target, linked into place only
/// when complete.
pub(crate) struct BackupFile {
    temp: TempFile,
    file: fs::File,
    target: PathBuf,
}

impl BackupFile {
    /// Creates the temporary file for a backup at `target`, which must not exist: this
    /// fails early (target exists, directory missing or not writable) before anything
    /// else is done.
    pub fn create(target: &Path) -> Result<BackupFile> {
        if target.exists() {
            return Err(Error::AlreadyExists(format!(
                "{} exists; refusing to overwrite it",
                target.display()
            )));
        }
        let (temp, file) = TempFile::beside(target)?;
        Ok(BackupFile {
            temp,
            file,
            target: target.to_path_buf(),
        })
    }

    /// Writes the backup of `records`, syncs it and links it into place: there is never
    /// a half-written backup under the final name. `progress` is told (done, total).
    pub fn write(
        self,
        header: &BackupHeader,
        keyring: &Keyring,
        records: &mut dyn Iterator<Item = Result<BackupRecord>>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        let BackupFile { temp, file, target } = self;
        write_records(&temp, file, header, keyring, records, progress)?;
        temp.persist(&target)?;
        Ok(header.records)
    }
}

/// Writes a backup of `records` to `target` (which must not exist); see [`BackupFile`].
pub(crate) fn write_backup(
    target: &Path,
    header: &BackupHeader,
    keyring: &Keyring,
    records: &mut dyn Iterator<Item = Result<BackupRecord>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    BackupFile::create(target)?.write(header, keyring, records, progress)
}

fn write_records(
    temp: &TempFile,
    file: fs::File,
    header: &BackupHeader,
    keyring: &Keyring,
    records: &mut dyn Iterator<Item = Result<BackupRecord>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let io_err = |e| Error::io(format!("cannot write {}", temp.path.display()), e);
    let mut w = MacWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        mac: keyring.mac.stream(MAC_LABEL),
    };
    let encoded = records::encode(header)?;
    let header_len = u32::try_from(encoded.len())
        .ok()
        .filter(|n| *n <= MAX_HEADER)
        .ok_or_else(|| Error::Internal("backup header too large".into()))?;
    let mut prefix = Vec::with_capacity(16 + encoded.len());
    prefix.extend_from_slice(MAGIC);
    prefix.extend_from_slice(&BACKUP_FORMAT.to_be_bytes());
    prefix.extend_from_slice(&header_len.to_be_bytes());
    prefix.extend_from_slice(&encoded);
    let checksum: [u8; 32] = Sha256::digest(&prefix).into();
    w.put(&prefix).map_err(io_err)?;
    w.put(&checksum).map_err(io_err)?;
    let mut count = 0u64;
    for item in records {
        let (tree, key, value) = item?;
        w.put(&[tree_code(tree)]).map_err(io_err)?;
        w.put(&(key.len() as u32).to_be_bytes()).map_err(io_err)?;
        w.put(&key).map_err(io_err)?;
        w.put(&(value.len() as u32).to_be_bytes()).map_err(io_err)?;
        w.put(&value).map_err(io_err)?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress(count, header.records);
        }
    }
    if count != header.records {
        return Err(Error::Internal(format!(
            "the vault changed during the backup ({count} records, {} expected)",
            header.records
        )));
    }
    w.put(&[END]).map_err(io_err)?;
    let MacWriter { inner, mac, .. } = w;
    let mut inner = inner;
    inner.write_all(&mac.finish()).map_err(io_err)?;
    let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    progress(count, header.records);
    Ok(())
}

/// A backup read and verified: its header, master key and records.
pub(crate) struct OpenedBackup {
    /// The header, with what unlocking the backup needs.
    pub header: BackupHeader,
    /// The master key, unwrapped with the passphrase.
    pub master: MasterKey,
    /// Every record, in file order.
    pub records: Vec<BackupRecord>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(truncated)?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn truncated() -> Error {
    Error::Integrity("the backup is truncated or damaged".into())
}

/// Reads the header of a backup and checks its checksum (no passphrase needed).
pub fn read_header(bytes: &[u8]) -> Result<(BackupHeader, usize)> {
    let mut c = Cursor { bytes, pos: 0 };
    if c.take(8).map_err(|_| not_a_backup())? != MAGIC {
        return Err(not_a_backup());
    }
    let version = c.u32()?;
    let len = c.u32()?;
    if len > MAX_HEADER {
        return Err(truncated());
    }
    let encoded = c.take(len as usize)?;
    let end = c.pos;
    let checksum = c.take(32)?;
    let expected: [u8; 32] = Sha256::digest(&bytes[..end]).into();
    // An unkeyed checksum (not a secret), compared in constant time all the same.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(checksum, &expected[..])) {
        return Err(Error::Integrity("the backup's header is damaged".into()));
    }
    if version != BACKUP_FORMAT {
        return Err(Error::NewerFormat {
            path: PathBuf::from("(backup)"),
            found: version,
            supported: BACKUP_FORMAT,
        });
    }
    let header: BackupHeader = records::decode(encoded, "backup header")?;
    Ok((header, c.pos))
}

fn not_a_backup() -> Error {
    Error::Integrity("not a keyvault backup (bad magic)".into())
}

/// Reads a backup file, unlocks it with `passphrase`, and verifies its MAC before
/// returning any record.
pub(crate) fn open_backup(path: &Path, passphrase: &[u8]) -> Result<OpenedBackup> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::FileNotFound(path.to_path_buf()),
        _ => Error::io(format!("cannot read {}", path.display()), e),
    })?;
    let (header, body_start) = read_header(&bytes)?;
    let vh = &header.vault_header;
    let kek = vh.kdf.derive_kek(passphrase, &vh.salt)?;
    let master = MasterKey::unwrap(
        &kek,
        &super::header_aad(&vh.kdf, &vh.salt)?,
        &vh.wrapped_master_key,
    )
    .ok_or_else(|| Error::WrongPassphrase(path.to_path_buf()))?;
    let keyring = master.keyring();
    let records = verify_body(&bytes, body_start, &header, &keyring)?;
    Ok(OpenedBackup {
        header,
        master,
        records,
    })
}

/// Verifies the MAC of a backup and parses its records.
pub fn verify_body(
    bytes: &[u8],
    body_start: usize,
    header: &BackupHeader,
    keyring: &Keyring,
) -> Result<Vec<BackupRecord>> {
    if bytes.len() < body_start + 33 {
        return Err(truncated());
    }
    let (signed, tag) = bytes.split_at(bytes.len() - 32);
    let mut mac = keyring.mac.stream(MAC_LABEL);
    mac.update(signed);
    if !mac.verify(tag) {
        return Err(Error::Integrity(
            "the backup's MAC does not verify: it was altered, truncated, or made by another vault"
                .into(),
        ));
    }
    let mut c = Cursor {
        bytes: signed,
        pos: body_start,
    };
    let mut out = Vec::with_capacity(header.records.min(1 << 20) as usize);
    loop {
        let code = c.take(1)?[0];
        if code == END {
            break;
        }
        let tree = tree_from_code(code).ok_or_else(truncated)?;
        let klen = c.u32()?;
        if klen > MAX_KEY {
            return Err(truncated());
        }
        let key = c.take(klen as usize)?.to_vec();
        let vlen = c.u32()?;
        if vlen > MAX_VALUE {
            return Err(truncated());
        }
        let value = c.take(vlen as usize)?.to_vec();
        out.push((tree, key, value));
    }
    if c.pos != signed.len() || out.len() as u64 != header.records {
        return Err(truncated());
    }
    Ok(out)
}
