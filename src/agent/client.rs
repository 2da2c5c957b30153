//! The client side: find the agent of a vault, check it is ours, send requests.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ops;

use super::protocol::{
    AgentRequest, AgentResponse, AgentStatus, MAX_RESPONSE_BYTES, client_error, read_message,
    write_message,
};
use super::{agent_paths, canonical_vault_path, socket_dir};

/// The context of an error on a connection to the agent that broke mid-request.
const AGENT_LOST: &str =
    "lost the connection to the agent (the request may or may not have been carried out)";

/// How long a client waits for an answer. Generous: an RSA-4096 generation or a large
/// list can take a while.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to the agent of one vault.
pub struct AgentClient {
    stream: UnixStream,
    socket_path: PathBuf,
}

/// Where the agent of a vault would listen: (socket, pid file).
pub fn paths_for(vault: &Path, create_dir: bool) -> Result<(PathBuf, PathBuf)> {
    let canonical = canonical_vault_path(vault)?;
    let dir = socket_dir(create_dir)?;
    Ok(agent_paths(&dir, &canonical))
}

impl AgentClient {
    /// Connects to the agent of `vault`, if one runs. A socket left by a dead agent is
    /// removed. `Ok(None)` means no agent: open the vault directly.
    pub fn connect(vault: &Path) -> Result<Option<AgentClient>> {
        let (socket_path, pid_path) = match paths_for(vault, false) {
            Ok(p) => p,
            Err(Error::VaultNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::symlink_metadata(&socket_path) {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(_) => {
                return Err(Error::Internal(format!(
                    "{} is not a socket; remove it",
                    socket_path.display()
                )));
            }
            Err(_) => return Ok(None),
        }
        match UnixStream::connect(&socket_path) {
            Ok(stream) => {
                let cred = rustix::net::sockopt::socket_peercred(&stream)
                    .map_err(|e| Error::io("cannot check the agent's identity", e.into()))?;
                if cred.uid != rustix::process::getuid() {
                    return Err(Error::Internal(format!(
                        "the socket {} belongs to another user's process; refusing to use it",
                        socket_path.display()
                    )));
                }
                stream
                    .set_read_timeout(Some(CALL_TIMEOUT))
                    .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
                    .map_err(|e| Error::io("cannot configure the agent socket", e))?;
                Ok(Some(AgentClient {
                    stream,
                    socket_path,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                // Nobody listens: the agent died without cleaning up.
                let _ = fs::remove_file(&socket_path);
                let _ = fs::remove_file(&pid_path);
                Ok(None)
            }
            Err(e) => Err(Error::io(
                format!("cannot connect to the agent at {}", socket_path.display()),
                e,
            )),
        }
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Sends one request and reads the answer.
    pub fn call(&mut self, request: &AgentRequest) -> Result<AgentResponse> {
        write_message(&mut self.stream, request).map_err(|e| Error::io(AGENT_LOST, e))?;
        let response: AgentResponse =
            read_message(&mut self.stream, MAX_RESPONSE_BYTES).map_err(client_error)?;
        match response {
            AgentResponse::Error {
                code,
                message,
                hint,
            } => Err(Error::Remote {
                code,
                message,
                hint,
            }),
            other => Ok(other),
        }
    }

    /// Runs a vault operation in the agent.
    pub fn op(&mut self, request: ops::Request) -> Result<ops::Response> {
        match self.call(&AgentRequest::Op(request))? {
            AgentResponse::Op(r) => Ok(r),
            _ => Err(Error::Internal("unexpected answer from the agent".into())),
        }
    }

    /// The agent's status.
    pub fn status(&mut self) -> Result<AgentStatus> {
        match self.call(&AgentRequest::Status)? {
            AgentResponse::Status(s) => Ok(s),
            _ => Err(Error::Internal("unexpected answer from the agent".into())),
        }
    }

    /// Asks the agent to wipe its keys and exit.
    pub fn lock(mut self) -> Result<()> {
        match self.call(&AgentRequest::Lock) {
            Ok(_) => Ok(()),
            // The agent exits right after answering; a lost answer still means locked.
            Err(Error::Io { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the idle timer to `timeout`.
    pub fn extend(&mut self, timeout: Duration) -> Result<()> {
        self.call(&AgentRequest::Extend {
            timeout_secs: timeout.as_secs(),
        })
        .map(|_| ())
    }
}

/// Stops the agent of `vault` with SIGTERM through its pid file (for an agent of
/// another protocol version, which cannot be asked). Returns whether one was signalled.
pub fn terminate_by_pid(vault: &Path) -> Result<bool> {
    let (socket_path, pid_path) = paths_for(vault, false)?;
    let Ok(text) = fs::read_to_string(&pid_path) else {
        return Ok(false);
    };
    let Some(pid) = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Ok(false);
    };
    let sent = rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok();
    if !sent {
        let _ = fs::remove_file(&socket_path);
        let _ = fs::remove_file(&pid_path);
    }
    Ok(sent)
}
