//! Starting the agent: the caller (the binary's `unlock`) checks the passphrase and
//! builds the agent's command line; [`start_agent`] spawns it, hands it the master key
//! over a pipe (never argv or env), and waits for its acknowledgement that the socket is
//! bound. [`run_agent`] is the other end, in the agent process.
//!
//! This module spawns and serves, but owns no command line and ends no process: the
//! arguments come from the caller, and [`run_agent`] returns the error that stopped it
//! for the binary to exit with.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::seal::MasterKey;
use crate::error::{Error, Result};
use crate::vault::Vault;

use super::harden;
use super::protocol::PROTOCOL_VERSION;
use super::registry;
use super::server::{Agent, AgentOptions, RuntimeFiles};

/// How long `unlock` waits for the agent to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables that must never reach the agent.
const SECRET_ENV: [&str; 6] = [
    "KEYVAULT_PASSPHRASE",
    "KEYVAULT_NEW_PASSPHRASE",
    "KEYVAULT_PASSPHRASE_FILE",
    "KEYVAULT_NEW_PASSPHRASE_FILE",
    "KEYVAULT_REVOCATIONS_PASSPHRASE",
    "KEYVAULT_REVOCATIONS_PASSPHRASE_FILE",
];

/// What the agent acknowledged once its socket was bound.
pub struct Started {
    /// The agent's process id (0 if its acknowledgement did not carry one).
    pub pid: u32,
    /// The path of the socket it listens on.
    pub socket: PathBuf,
    /// Whether the key memory is locked in RAM (mlock).
    pub memory_locked: bool,
}

/// Spawns `cmd`, an agent process for the vault at `vault` (one that calls
/// [`run_agent`]), hands it `master`, and waits until it serves. `cmd` carries the
/// program and its arguments; its standard streams and secret-bearing environment
/// variables are set here.
pub fn start_agent(mut cmd: Command, vault: &Path, master: MasterKey) -> Result<Started> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for var in SECRET_ENV {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("cannot start the agent", e))?;
    {
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Internal("agent stdin".into()))?;
        stdin
            .write_all(master.to_bytes().as_ref())
            .map_err(|e| Error::io("cannot hand the key to the agent", e))?;
    }
    drop(master);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Internal("agent stdout".into()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let _ = BufReader::new(stdout).read_until(b'\n', &mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            return Err(Error::Internal("the agent did not start in time".into()));
        }
    };
    // The agent is detached and outlives us; reap nothing.
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    if let Some(rest) = line.strip_prefix(b"ready ") {
        // `ready PID memlock|no-memlock SOCKET`: the socket path last, as raw bytes.
        let mut parts = rest.splitn(3, |b| *b == b' ');
        let pid = parts
            .next()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let memory_locked = parts.next() == Some(b"memlock".as_slice());
        let socket = parts
            .next()
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .unwrap_or_default();
        return Ok(Started {
            pid,
            socket,
            memory_locked,
        });
    }
    let _ = child.wait();
    let line = String::from_utf8_lossy(line);
    if let Some(rest) = line.strip_prefix("error ") {
        // `error CODE KIND MESSAGE`: the kinds `unlock` tells apart come back as
        // themselves.
        let mut parts = rest.splitn(3, ' ');
        let code =
            crate::error::Exit::from_number(parts.next().and_then(|c| c.parse().ok()).unwrap_or(8));
        let kind = parts.next().unwrap_or("");
        let message = parts.next().unwrap_or("");
        return Err(match kind {
            "in-use" => Error::VaultInUse(vault.to_path_buf()),
            "exists" => Error::AlreadyExists(message.to_string()),
            _ => Error::Remote {
                code,
                message: format!("the agent could not start: {message}"),
                hint: None,
            },
        });
    }
    Err(Error::Internal(
        "the agent exited before it was ready".into(),
    ))
}

/// The agent process: detach, harden, read the master key from stdin, open the vault,
/// bind the socket, acknowledge on stdout, serve. Returns only the error that kept the
/// agent from starting (already acknowledged to `unlock`), for the caller to exit with;
/// once serving, it calls `exit` (the binary's: the library never ends the process)
/// when it locks, after wiping the keys.
pub fn run_agent(
    vault: &Path,
    options: AgentOptions,
    exit: fn() -> !,
) -> Result<std::convert::Infallible> {
    // First, before anything opens a file: whatever `unlock`'s caller left open is not
    // the agent's to keep.
    harden::close_inherited_fds();
    let mut ack = std::io::stdout();
    match prepare(vault, options, exit) {
        Ok((agent, listener)) => {
            // Lock the key memory where the OS allows (the vault now sits at its final
            // address inside the agent); `unlock` warns where it cannot.
            let memlock = if agent.lock_key_memory() {
                "memlock"
            } else {
                "no-memlock"
            };
            // Best effort: without its SSH socket the agent still serves keyvault.
            let _ = super::ssh::start(&agent);
            let mut line = format!("ready {} {memlock} ", std::process::id()).into_bytes();
            line.extend_from_slice(agent.socket_path().as_os_str().as_bytes());
            line.push(b'\n');
            let _ = ack.write_all(&line);
            let _ = ack.flush();
            harden::detach_stdio();
            agent.serve(listener)
        }
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            let kind = match e {
                Error::VaultInUse(_) => "in-use",
                Error::AlreadyExists(_) => "exists",
                _ => "-",
            };
            let _ = writeln!(ack, "error {} {kind} {message}", e.exit_code().code());
            let _ = ack.flush();
            Err(e)
        }
    }
}

fn prepare(
    vault: &Path,
    options: AgentOptions,
    exit: fn() -> !,
) -> Result<(Arc<Agent>, UnixListener)> {
    // Everything the agent creates (socket, registry entry) is private to the user.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // A new session: no controlling terminal, not killed with the shell that started us.
    let _ = rustix::process::setsid();
    // Hold no directory busy (the vault path is absolute).
    rustix::process::chdir("/").map_err(|e| Error::io("cannot change to /", e.into()))?;
    harden::disable_core_dumps_and_ptrace()
        .map_err(|e| Error::io("cannot disable core dumps", e))?;
    // The socket directory first: a directory another user made stops us before the
    // vault is opened.
    let dir = super::private_dir(&super::preferred_dir())?;
    let mut mk = Zeroizing::new([0u8; 32]);
    std::io::stdin()
        .read_exact(mk.as_mut())
        .map_err(|e| Error::io("cannot read the key from unlock", e))?;
    let master = MasterKey::from_bytes(mk);
    let agent_vault = Vault::open_with_master_key(
        vault,
        master,
        crate::vault::OpenOptions {
            accept_rollback: options.accept_rollback,
        },
    )?;
    // Persist use counts in blocks: a crash overcounts by at most this many.
    agent_vault.set_use_reservation(256);
    let vault_id = agent_vault.id_hex();
    let vault_path = agent_vault.path().to_path_buf();
    let socket_path = dir.join(super::socket_name(&vault_id));
    claim_socket_path(&socket_path)?;
    let listener = UnixListener::bind(&socket_path)
        .map_err(|e| Error::io(format!("cannot bind {}", socket_path.display()), e))?;
    // The directory is 0700 and our umask is 077, so the socket is created 0600; make
    // it explicit regardless of the umask.
    fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot set the socket's mode", e))?;
    let pid = std::process::id();
    // Best effort: without an entry the agent still serves; only a `lock` from a session
    // with another runtime dir would not find it.
    let registry_entry = registry::register(&registry::Entry {
        pid,
        start_time: registry::start_time(pid).unwrap_or(0),
        vault_id,
        vault_path,
        socket: socket_path.clone(),
        protocol: PROTOCOL_VERSION,
    })
    .ok();
    let files = RuntimeFiles {
        socket: socket_path.clone(),
        registry_entry: registry_entry.clone(),
    };
    match Agent::new(agent_vault, options, files, exit) {
        Ok(agent) => Ok((Arc::new(agent), listener)),
        Err(e) => {
            let _ = fs::remove_file(&socket_path);
            if let Some(entry) = &registry_entry {
                registry::unregister(entry);
            }
            Err(e)
        }
    }
}

/// Makes way for the socket at `path`: nothing there, or a socket nobody listens on
/// (left by a killed agent, removed). A live socket is another agent of this vault id
/// (of a copy of the vault); a symlink or any other file is refused, never followed.
fn claim_socket_path(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot inspect {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::AgentDir {
            path: path.to_path_buf(),
            problem: if meta.file_type().is_symlink() {
                "a symbolic link stands where the agent's socket goes; refusing to follow it (remove it)".into()
            } else {
                "a file that is not a socket stands where the agent's socket goes (remove it)"
                    .into()
            },
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::AlreadyExists(format!(
            "another agent already serves a vault with this vault's id (a copy of it?) at {}; lock it first",
            path.display()
        )));
    }
    let _ = fs::remove_file(path);
    Ok(())
}
