//! The agent: a background process (the same binary) that holds one unlocked vault
//! and serves requests over a Unix socket, like ssh-agent.
//!
//! Agents are addressed by the vault's id (from its header file, readable without the
//! passphrase), never by its path: the socket of the agent of vault `ID` is `ID.sock`
//! in a private directory (0700) — `$XDG_RUNTIME_DIR/keyvault/`, or `keyvault-<uid>`
//! under the temp dir when there is no runtime dir. Every agent also leaves an entry in
//! a per-user registry (see [`registry`]), so that `lock` finds it from a session whose
//! runtime dir differs, or after its vault directory was moved or deleted.
//!
//! The agent refuses peers of another uid (SO_PEERCRED), bounds every message and the
//! time a request may take to arrive, checks before serving that the directory at its
//! vault path is still the vault it holds, and locks itself (wiping its keys) after an
//! idle timeout, a maximum lifetime, on `lock`, and on SIGTERM, SIGINT or SIGHUP.
//!
//! This module owns where sockets live and which directories may hold them; it never
//! forks, parses argv or exits (that is the binary's and [`launch`]'s business).

pub mod client;
pub mod harden;
pub mod launch;
mod operations;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod ssh;
pub mod test_faults;
pub mod upkeep;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The directory an agent uses when there is no runtime dir: `keyvault-<uid>` under the
/// temp dir.
pub fn fallback_dir() -> PathBuf {
    std::env::temp_dir().join(format!("keyvault-{}", rustix::process::getuid().as_raw()))
}

/// The directory where an agent started now puts its socket: `$XDG_RUNTIME_DIR/keyvault`
/// when the runtime dir is set (and absolute), else [`fallback_dir`].
pub fn preferred_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => {
            PathBuf::from(d).join("keyvault")
        }
        _ => fallback_dir(),
    }
}

/// The socket directories this process can name: [`preferred_dir`], then
/// [`fallback_dir`] when it differs. (Agents started where these differ are found
/// through the [`registry`].)
pub fn search_dirs() -> Vec<PathBuf> {
    let preferred = preferred_dir();
    let fallback = fallback_dir();
    if preferred == fallback {
        vec![preferred]
    } else {
        vec![preferred, fallback]
    }
}

/// The file name of the socket of the agent of the vault `vault_id` (hex).
pub fn socket_name(vault_id: &str) -> String {
    format!("{vault_id}.sock")
}

/// What a directory that should hold agent sockets turned out to be.
enum DirState {
    Missing,
    /// A real directory, ours, closed to others.
    Private,
    /// Ours, but open to other users.
    OpenToOthers,
    /// Not a directory of ours (another user's, a symlink, a file): nothing of ours
    /// can be in it.
    Foreign(String),
}

fn inspect_dir(dir: &Path) -> Result<DirState> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) => return Err(Error::io(format!("cannot inspect {}", dir.display()), e)),
    };
    let uid = rustix::process::getuid().as_raw();
    if meta.file_type().is_symlink() {
        return Ok(DirState::Foreign(format!(
            "it is a symbolic link (owned by uid {})",
            meta.uid()
        )));
    }
    if !meta.file_type().is_dir() {
        return Ok(DirState::Foreign("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Ok(DirState::Foreign(format!(
            "it belongs to uid {}, not to you (uid {uid})",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Ok(DirState::OpenToOthers);
    }
    Ok(DirState::Private)
}

/// The directory `dir` if agents of this user may have sockets in it: `Ok(None)` when
/// it is missing or not ours (another user may have made it first: nothing of ours is
/// inside, and the command works without an agent). One of ours that is open to other
/// users is refused.
pub fn usable_dir(dir: &Path) -> Result<Option<PathBuf>> {
    match inspect_dir(dir)? {
        DirState::Private => Ok(Some(dir.to_path_buf())),
        DirState::Missing | DirState::Foreign(_) => Ok(None),
        DirState::OpenToOthers => Err(Error::AgentDir {
            path: dir.to_path_buf(),
            problem: "it is open to other users; make it private (chmod 700) or remove it".into(),
        }),
    }
}

/// Creates `dir` (0700) if missing, and checks it is a private directory of ours; one
/// of ours open to others is made private. Only an agent being started calls this.
pub fn private_dir(dir: &Path) -> Result<PathBuf> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("cannot create {}", dir.display()), e)),
    }
    match inspect_dir(dir)? {
        DirState::Private => Ok(dir.to_path_buf()),
        DirState::OpenToOthers => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(format!("cannot set the mode of {}", dir.display()), e))?;
            Ok(dir.to_path_buf())
        }
        DirState::Foreign(problem) => Err(Error::AgentDir {
            path: dir.to_path_buf(),
            problem,
        }),
        DirState::Missing => Err(Error::AgentDir {
            path: dir.to_path_buf(),
            problem: "it vanished while being created".into(),
        }),
    }
}

/// The device and inode of a directory: with the vault id, what tells the vault an
/// agent holds from another one put at the same path.
pub fn dir_identity(dir: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(dir)?;
    Ok((meta.dev(), meta.ino()))
}

/// `path` made absolute without needing it to exist: its parent resolved when that
/// exists (a vault directory that was deleted still has its parent), else joined to the
/// current directory.
pub fn absolute_vault_path(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}
