//! Starting the agent: `unlock` checks the passphrase, spawns the same binary as a
//! detached agent, hands it the master key over a pipe (never argv or env), and waits
//! for its acknowledgement that the socket is bound.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
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

use super::client::paths_for;
use super::harden;
use super::server::{Agent, AgentOptions};

/// The hidden subcommand that runs the agent.
pub const AGENT_SUBCOMMAND: &str = "agent";

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

/// What `unlock` reports.
pub struct Started {
    /// The agent's pid.
    pub pid: u32,
    /// Its socket.
    pub socket: PathBuf,
    /// Whether the key memory is locked in RAM (mlock).
    pub memory_locked: bool,
}

/// Spawns the agent for `vault` with `master` and waits until it serves.
pub fn start_agent(
    exe: &Path,
    vault: &Path,
    master: MasterKey,
    options: AgentOptions,
) -> Result<Started> {
    let canonical = super::canonical_vault_path(vault)?;
    let (socket, _) = paths_for(&canonical, true)?;
    let mut cmd = Command::new(exe);
    cmd.arg(AGENT_SUBCOMMAND)
        .arg("--vault")
        .arg(&canonical)
        .arg("--idle-secs")
        .arg(options.idle_timeout.as_secs().to_string())
        .arg("--lifetime-secs")
        .arg(options.max_lifetime.as_secs().to_string())
        .args(options.accept_rollback.then_some("--accept-rollback"))
        .stdin(Stdio::piped())
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
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
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
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("ready ") {
        let mut parts = rest.split(' ');
        let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let memory_locked = parts.next() == Some("memlock");
        return Ok(Started {
            pid,
            socket,
            memory_locked,
        });
    }
    let _ = child.wait();
    if let Some(rest) = line.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        return Err(Error::Remote {
            code: code.parse().unwrap_or(8),
            message: format!("the agent could not start: {message}"),
            hint: None,
        });
    }
    Err(Error::Internal(
        "the agent exited before it was ready".into(),
    ))
}

/// The agent process: detach, harden, read the master key from stdin, open the vault,
/// bind the socket, acknowledge on stdout, serve. Never returns.
pub fn run_agent(vault: &Path, options: AgentOptions) -> ! {
    let mut ack = std::io::stdout();
    match prepare(vault, options) {
        Ok((agent, listener)) => {
            // Lock the key memory where the OS allows (the vault now sits at its final
            // address inside the agent); `unlock` warns where it cannot.
            let memlock = if agent.lock_key_memory() {
                "memlock"
            } else {
                "no-memlock"
            };
            let _ = writeln!(ack, "ready {} {memlock}", std::process::id());
            let _ = ack.flush();
            agent.serve(listener)
        }
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            let _ = writeln!(ack, "error {} {message}", e.exit_code());
            let _ = ack.flush();
            std::process::exit(e.exit_code())
        }
    }
}

fn prepare(vault: &Path, options: AgentOptions) -> Result<(Arc<Agent>, UnixListener)> {
    // Everything the agent creates (socket, pid file) is private to the user.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // A new session: no controlling terminal, not killed with the shell that started us.
    let _ = rustix::process::setsid();
    harden::disable_core_dumps_and_ptrace()
        .map_err(|e| Error::io("cannot disable core dumps", e))?;
    let mut mk = Zeroizing::new([0u8; 32]);
    std::io::stdin()
        .read_exact(mk.as_mut())
        .map_err(|e| Error::io("cannot read the key from unlock", e))?;
    let master = MasterKey::from_bytes(mk);
    let (socket_path, pid_path) = paths_for(vault, true)?;
    let agent_vault = Vault::open_with_master_key(
        vault,
        master,
        crate::vault::OpenOptions {
            accept_rollback: options.accept_rollback,
        },
    )?;
    // Persist use counts in blocks: a crash overcounts by at most this many.
    agent_vault.set_use_reservation(256);
    // Bind before announcing; a stale socket (no listener) is replaced.
    if socket_path.exists() {
        if std::os::unix::net::UnixStream::connect(&socket_path).is_ok() {
            return Err(Error::AlreadyExists(
                "another agent already serves this vault".into(),
            ));
        }
        let _ = fs::remove_file(&socket_path);
    }
    let listener = UnixListener::bind(&socket_path)
        .map_err(|e| Error::io(format!("cannot bind {}", socket_path.display()), e))?;
    // The directory is 0700 and our umask is 077, so the socket is created 0600; make
    // it explicit regardless of the umask.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot set the socket's mode", e))?;
    let mut pid_file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&pid_path)
        .map_err(|e| Error::io("cannot write the pid file", e))?;
    let _ = writeln!(pid_file, "{}", std::process::id());
    let agent = Arc::new(Agent::new(agent_vault, options, socket_path, pid_path));
    Ok((agent, listener))
}
