//! The agent's second socket: the OpenSSH agent protocol, so that `ssh`, `ssh-add`,
//! `ssh-keygen -Y` and `git` use the vault's SSH-marked keys (set `SSH_AUTH_SOCK` to
//! it).
//!
//! The socket is `ID.ssh` beside the agent's own `ID.sock`, in the same private
//! directory, mode 0600; peers of another uid are refused (SO_PEERCRED), as on the main
//! socket. It lists the keys marked for SSH and signs with them; requests to add or
//! remove keys, or to lock the agent, are answered with failure, and so is anything
//! unknown or malformed. Listing and signing count as activity for the idle timer.
//! When the agent locks, the socket is removed with the agent's other files.
//!
//! Each connection has its own thread (`ssh` keeps one open for a whole session): a
//! request may wait any time to begin, but must arrive whole within
//! [`super::server::REQUEST_DEADLINE`] once begun, and at most [`MAX_CONNECTIONS`] are
//! open at once (more are closed at once). This module never changes the vault's keys.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::ssh::wire::{self, Request};

use super::server::{Agent, REQUEST_DEADLINE};

/// The most SSH connections open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The socket this process bound, with its device and inode: only that file is ever
/// removed.
static BOUND: OnceLock<(PathBuf, (u64, u64))> = OnceLock::new();
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The SSH socket of the agent whose main socket is `main_socket` (`ID.sock` →
/// `ID.ssh`, in the same directory). It does not end in `.sock`: `lock` takes every
/// `*.sock` in the directory for an agent's own socket.
pub fn socket_for(main_socket: &Path) -> PathBuf {
    let stem = main_socket
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    main_socket.with_file_name(format!("{stem}.ssh"))
}

/// Binds the SSH socket beside the agent's main socket and serves it on a thread of
/// its own. Returns its path.
pub fn start(agent: &Arc<Agent>) -> Result<PathBuf> {
    let path = socket_for(agent.socket_path());
    // A socket left by a killed agent of this vault is removed; anything else that is
    // not a socket is refused, never followed.
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(Error::AgentDir {
                path: path.clone(),
                problem: "a file that is not a socket stands where the SSH socket goes".into(),
            });
        }
        if UnixStream::connect(&path).is_ok() {
            return Err(Error::AlreadyExists(format!(
                "another agent listens on {}",
                path.display()
            )));
        }
        fs::remove_file(&path)
            .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::io(format!("cannot bind {}", path.display()), e))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot set the SSH socket's mode", e))?;
    if let Ok(meta) = fs::symlink_metadata(&path) {
        let _ = BOUND.set((path.clone(), (meta.dev(), meta.ino())));
    }
    let agent = Arc::clone(agent);
    thread::Builder::new()
        .name("ssh-agent".into())
        .spawn(move || accept_loop(&agent, listener))
        .map_err(|e| Error::io("cannot start the SSH listener", e))?;
    Ok(path)
}

/// Removes the SSH socket this process bound (when the agent locks).
pub fn remove_socket() {
    if let Some((path, id)) = BOUND.get() {
        let ours = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
        if ours == Some(*id) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Releases one connection's place when its thread ends.
struct Place;

impl Drop for Place {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(agent: &Arc<Agent>, listener: UnixListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        let peer_ok = matches!(
            rustix::net::sockopt::socket_peercred(&stream),
            Ok(cred) if cred.uid.as_raw() == agent.uid
        );
        if !peer_ok || OPEN.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            if peer_ok {
                OPEN.fetch_sub(1, Ordering::SeqCst);
            }
            continue;
        }
        let place = Place;
        let agent = Arc::clone(agent);
        let _ = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _place = place;
                serve(&agent, stream);
            });
    }
}

/// Reads one message body: `Ok(None)` when the peer closed, an error when it is too
/// large, cut short or too slow once begun.
fn read_message(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(None)?;
    let mut len = [0u8; 4];
    match stream.read(&mut len[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e),
    }
    stream.set_read_timeout(Some(REQUEST_DEADLINE))?;
    stream.read_exact(&mut len[1..])?;
    let n = u32::from_be_bytes(len) as usize;
    if n > wire::MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message over the limit",
        ));
    }
    let mut body = vec![0u8; n];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

fn serve(agent: &Agent, mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(REQUEST_DEADLINE));
    // The host key fingerprint the client bound this connection to, if it did.
    let mut host: Option<String> = None;
    while let Ok(Some(body)) = read_message(&mut stream) {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(agent, &body, &mut host)
        }))
        .unwrap_or_else(|_| wire::status(wire::FAILURE));
        if stream.write_all(&wire::frame(&answer)).is_err() {
            return;
        }
    }
}

/// The answer to one message body. `host` is what the connection was bound to.
fn answer(agent: &Agent, body: &[u8], host: &mut Option<String>) -> Vec<u8> {
    let Ok(request) = wire::parse_request(body) else {
        return wire::status(wire::FAILURE);
    };
    match request {
        Request::RequestIdentities => {
            let _use = agent.begin_use();
            let guard = agent.vault.read().unwrap_or_else(|p| p.into_inner());
            // Locked (or locking): nothing is listed.
            let keys = match guard.as_ref().map(|v| v.ssh_identities()) {
                Some(Ok(keys)) => keys,
                _ => Vec::new(),
            };
            wire::identities_answer(keys.iter().map(|(b, c)| (b.as_slice(), c.as_str())))
        }
        Request::Sign {
            key_blob,
            data,
            flags,
        } => {
            let _use = agent.begin_use();
            let guard = agent.vault.read().unwrap_or_else(|p| p.into_inner());
            match guard
                .as_ref()
                .map(|v| v.ssh_sign(&key_blob, &data, flags, host.as_deref()))
            {
                Some(Ok(signature)) => wire::sign_response(&signature),
                _ => wire::status(wire::FAILURE),
            }
        }
        Request::Extension { name, contents } if name == wire::SESSION_BIND => {
            match wire::parse_session_bind(&contents) {
                Ok(bind) => {
                    *host = Some(host_fingerprint(&bind.host_key));
                    wire::status(wire::SUCCESS)
                }
                Err(_) => wire::status(wire::FAILURE),
            }
        }
        Request::Extension { .. } | Request::Refused(_) | Request::Unknown(_) => {
            wire::status(wire::FAILURE)
        }
    }
}

/// The `SHA256:` fingerprint of a host key blob, as `ssh-keygen -lf` prints it.
fn host_fingerprint(blob: &[u8]) -> String {
    use base64::Engine as _;
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_socket_sits_beside_the_main_one() {
        assert_eq!(
            socket_for(Path::new("/run/user/1/keyvault/abcd.sock")),
            PathBuf::from("/run/user/1/keyvault/abcd.ssh")
        );
    }
}
