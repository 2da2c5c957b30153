//! The agent: a background process (the same binary) that holds one unlocked vault
//! and serves requests over a Unix socket, like ssh-agent (SPEC §5).
//!
//! The socket lives in a private directory (0700) under `$XDG_RUNTIME_DIR/keyvault/`,
//! or `keyvault-<uid>` under the temp dir when there is no runtime dir; one socket per
//! vault path. The agent refuses peers of another uid (SO_PEERCRED), bounds every
//! message, and locks itself (wiping its keys) after an idle timeout, a maximum
//! lifetime, on `lock`, and on SIGTERM, SIGINT or SIGHUP.

pub mod client;
pub mod harden;
pub mod launch;
pub mod protocol;
pub mod server;
pub mod upkeep;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The directory that holds the agents' sockets. With `create`, it is made 0700 if
/// missing; an existing one must be a real directory, ours, and not open to others.
pub fn socket_dir(create: bool) -> Result<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => {
            PathBuf::from(d).join("keyvault")
        }
        _ => std::env::temp_dir().join(format!("keyvault-{}", rustix::process::getuid().as_raw())),
    };
    if create {
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("cannot create {}", dir.display()), e)),
        }
    }
    match fs::symlink_metadata(&dir) {
        Ok(meta) => {
            let uid = rustix::process::getuid().as_raw();
            if !meta.file_type().is_dir() || meta.uid() != uid {
                return Err(Error::Internal(format!(
                    "{} is not a directory owned by this user; refusing to use it for the agent socket",
                    dir.display()
                )));
            }
            if meta.permissions().mode() & 0o077 != 0 {
                if create {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
                        Error::io(format!("cannot set the mode of {}", dir.display()), e)
                    })?;
                } else {
                    return Err(Error::Internal(format!(
                        "{} is open to other users; refusing to use it",
                        dir.display()
                    )));
                }
            }
            Ok(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(dir),
        Err(e) => Err(Error::io(format!("cannot inspect {}", dir.display()), e)),
    }
}

/// The canonical form of a vault path, which names its agent.
pub fn canonical_vault_path(vault: &Path) -> Result<PathBuf> {
    fs::canonicalize(vault).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::VaultNotFound(vault.to_path_buf()),
        _ => Error::io(format!("cannot resolve {}", vault.display()), e),
    })
}

/// The socket and pid file of the agent of `vault` (a canonical path).
pub fn agent_paths(dir: &Path, canonical_vault: &Path) -> (PathBuf, PathBuf) {
    let digest = Sha256::digest(canonical_vault.as_os_str().as_encoded_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    (
        dir.join(format!("{name}.sock")),
        dir.join(format!("{name}.pid")),
    )
}
