//! The client side: find the agent of a vault by the vault's id, check that it is ours
//! and holds this very directory, send requests; and, for `lock`, find every agent of
//! this user that holds a vault and stop it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{AgentAnswerProblem, Error, Result};
use crate::ops;

use super::protocol::{
    AgentInfo, AgentRequest, AgentResponse, AgentStatus, FrameError, MAX_RESPONSE_BYTES,
    PROTOCOL_VERSION, client_error, read_message, write_message,
};
use super::registry::{self, Entry};
use super::{absolute_vault_path, dir_identity, search_dirs, socket_name, usable_dir};

/// The context of an error on a connection to the agent that broke mid-request.
const AGENT_LOST: &str =
    "lost the connection to the agent (the request may or may not have been carried out)";

/// How long a client waits for an answer. Generous: an RSA-4096 generation or a large
/// list can take a while.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `lock` waits for an agent it signalled to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A connection to the agent of one vault.
pub struct AgentClient {
    stream: UnixStream,
    socket_path: PathBuf,
    /// Who answered the `Ping` (once connected).
    info: Option<AgentInfo>,
    /// When the connection was last used.
    last_used: Instant,
}

/// How long a connection may have been idle and still be used: the agent closes one
/// that sends nothing for [`super::server::REQUEST_DEADLINE`] (a command may read a
/// large input between two requests), so past this a new connection is opened.
const REUSE_LIMIT: Duration = Duration::from_secs(5);

/// What became of a request sent to the agent.
pub enum OpOutcome {
    /// The agent carried it out.
    Answered(ops::Response),
    /// The agent locked itself without carrying it out (the error says why): the
    /// request, back.
    NotCarriedOut(Error, Box<ops::Request>),
}

/// What an agent answered to a `Ping`.
enum Pinged {
    /// It serves this vault.
    Pong(AgentInfo),
    /// It found its vault directory moved, deleted or replaced, and locked itself.
    Stopped(AgentInfo),
    /// It speaks another protocol version.
    OtherVersion(u32),
}

impl AgentClient {
    /// Connects to the agent of the vault at `vault`, if one runs: an agent of this
    /// user holding the vault of this id, in this very directory (a copy of the vault
    /// elsewhere has the same id, but not the same directory). `Ok(None)` means no
    /// agent: open the vault directly. Sockets left by dead agents are removed.
    pub fn connect(vault: &Path) -> Result<Option<AgentClient>> {
        let Ok(Some(vault_id)) = crate::vault::peek_id(vault) else {
            return Ok(None);
        };
        let Ok(identity) = dir_identity(vault) else {
            return Ok(None);
        };
        let mut tried = BTreeSet::new();
        for dir in socket_dirs()? {
            let socket = dir.join(socket_name(&vault_id));
            tried.insert(socket.clone());
            if let Some(client) = Self::serving(&socket, &vault_id, identity)? {
                return Ok(Some(client));
            }
        }
        // An agent started from a session with another runtime dir.
        for (_, entry) in registry::entries() {
            if entry.vault_id != vault_id || !tried.insert(entry.socket.clone()) {
                continue;
            }
            if !in_private_dir(&entry.socket) {
                continue;
            }
            if let Some(client) = Self::serving(&entry.socket, &vault_id, identity)? {
                return Ok(Some(client));
            }
        }
        Ok(None)
    }

    /// The client of the agent at `socket` if it serves the vault `vault_id` in the
    /// directory `identity`.
    fn serving(socket: &Path, vault_id: &str, identity: (u64, u64)) -> Result<Option<AgentClient>> {
        let Some(mut client) = Self::open(socket)? else {
            return Ok(None);
        };
        match client.ping()? {
            Pinged::Pong(info) if info.vault_id == vault_id && (info.dev, info.ino) == identity => {
                client.info = Some(info);
                Ok(Some(client))
            }
            // Another copy of the vault, or an agent that locked itself just now.
            Pinged::Pong(_) | Pinged::Stopped(_) => Ok(None),
            Pinged::OtherVersion(agent) => Err(Error::ProtocolMismatch {
                agent,
                client: PROTOCOL_VERSION,
            }),
        }
    }

    /// Connects to the socket at `socket`, checking that the process behind it runs
    /// as this user. `Ok(None)` when nothing is there or nothing listens (a socket left
    /// by a dead agent, which is removed).
    fn open(socket: &Path) -> Result<Option<AgentClient>> {
        match fs::symlink_metadata(socket) {
            Ok(meta) if meta.file_type().is_socket() => {}
            Ok(meta) => {
                return Err(Error::AgentDir {
                    path: socket.to_path_buf(),
                    problem: if meta.file_type().is_symlink() {
                        "a symbolic link stands where an agent's socket goes; refusing to follow it (remove it)".into()
                    } else {
                        "a file that is not a socket stands where an agent's socket goes (remove it)".into()
                    },
                });
            }
            Err(_) => return Ok(None),
        }
        match UnixStream::connect(socket) {
            Ok(stream) => {
                let cred = rustix::net::sockopt::socket_peercred(&stream)
                    .map_err(|e| Error::io("cannot check the agent's identity", e.into()))?;
                if cred.uid != rustix::process::getuid() {
                    return Err(Error::Internal(format!(
                        "the socket {} belongs to another user's process; refusing to use it",
                        socket.display()
                    )));
                }
                stream
                    .set_read_timeout(Some(CALL_TIMEOUT))
                    .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
                    .map_err(|e| Error::io("cannot configure the agent socket", e))?;
                Ok(Some(AgentClient {
                    stream,
                    socket_path: socket.to_path_buf(),
                    info: None,
                    last_used: Instant::now(),
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                // Nobody listens: the agent died without cleaning up.
                let _ = fs::remove_file(socket);
                Ok(None)
            }
            Err(e) => Err(Error::io(
                format!("cannot connect to the agent at {}", socket.display()),
                e,
            )),
        }
    }

    fn ping(&mut self) -> Result<Pinged> {
        let no_answer = |what: String| {
            Error::Internal(format!(
                "the agent at {} did not answer: {what}",
                self.socket_path.display()
            ))
        };
        write_message(&mut self.stream, &AgentRequest::Ping)
            .map_err(|e| no_answer(e.to_string()))?;
        let answer = read_message(&mut self.stream, MAX_RESPONSE_BYTES);
        self.last_used = Instant::now();
        match answer {
            Ok(AgentResponse::Pong(info)) => Ok(Pinged::Pong(info)),
            Ok(AgentResponse::Stopped { info, .. }) => Ok(Pinged::Stopped(info)),
            Ok(AgentResponse::Error { error, .. }) => Err(error),
            Ok(_) => Err(no_answer("an unexpected message".into())),
            Err(FrameError::Version(v)) => Ok(Pinged::OtherVersion(v)),
            Err(FrameError::Closed) => Err(no_answer("it closed the connection".into())),
            Err(FrameError::Io(e)) => Err(no_answer(e.to_string())),
            Err(FrameError::TooLarge(n)) => Err(no_answer(format!("a {n}-byte message"))),
            Err(FrameError::Malformed) => Err(no_answer("a malformed message".into())),
        }
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Replaces a connection idle for longer than [`REUSE_LIMIT`] with a new one to the
    /// same agent. If that agent is gone, the error says so as [`Error::AgentStopped`]:
    /// nothing was sent, and the command can go on without it.
    fn refresh(&mut self) -> Result<()> {
        if self.last_used.elapsed() < REUSE_LIMIT {
            return Ok(());
        }
        let Some(info) = self.info.clone() else {
            return Ok(());
        };
        let gone = |reason: &str| Error::AgentStopped {
            path: info.vault_path(),
            reason: reason.to_string(),
        };
        let Some(mut fresh) = Self::open(&self.socket_path)? else {
            return Err(gone("it stopped while this command was reading its input"));
        };
        match fresh.ping()? {
            Pinged::Pong(now) if now == info => {
                fresh.info = Some(now);
                *self = fresh;
                Ok(())
            }
            Pinged::Pong(_) | Pinged::Stopped(_) => {
                Err(gone("it stopped while this command was reading its input"))
            }
            Pinged::OtherVersion(agent) => Err(Error::ProtocolMismatch {
                agent,
                client: PROTOCOL_VERSION,
            }),
        }
    }

    /// Sends one request and reads the answer.
    pub fn call(&mut self, request: &AgentRequest) -> Result<AgentResponse> {
        self.refresh()?;
        self.last_used = Instant::now();
        write_message(&mut self.stream, request).map_err(|e| Error::io(AGENT_LOST, e))?;
        let response: AgentResponse =
            read_message(&mut self.stream, MAX_RESPONSE_BYTES).map_err(client_error)?;
        self.last_used = Instant::now();
        match response {
            AgentResponse::Error { error, .. } => Err(error),
            AgentResponse::Stopped { info, reason } => Err(Error::AgentStopped {
                path: info.vault_path(),
                reason,
            }),
            other => Ok(other),
        }
    }

    /// Runs a vault operation in the agent.
    pub fn op(&mut self, request: ops::Request) -> Result<ops::Response> {
        match self.op_or_back(request)? {
            OpOutcome::Answered(r) => Ok(r),
            OpOutcome::NotCarriedOut(e, _) => Err(e),
        }
    }

    /// Runs a vault operation in the agent; one the agent did not carry out because it
    /// locked itself (see [`Error::AgentStopped`]) comes back, to be carried out
    /// without it.
    pub fn op_or_back(&mut self, request: ops::Request) -> Result<OpOutcome> {
        let message = AgentRequest::Op(request);
        let answer = self.call(&message);
        let AgentRequest::Op(request) = message else {
            return Err(Error::Internal("unexpected request".into()));
        };
        match answer {
            Ok(AgentResponse::Op(r)) => Ok(OpOutcome::Answered(r)),
            Ok(_) => Err(Error::AgentAnswer(AgentAnswerProblem::Unexpected)),
            Err(e @ Error::AgentStopped { .. }) => {
                Ok(OpOutcome::NotCarriedOut(e, Box::new(request)))
            }
            Err(e) => Err(e),
        }
    }

    /// The agent's status.
    pub fn status(&mut self) -> Result<AgentStatus> {
        match self.call(&AgentRequest::Status)? {
            AgentResponse::Status(s) => Ok(s),
            _ => Err(Error::AgentAnswer(AgentAnswerProblem::Unexpected)),
        }
    }

    /// Asks the agent to wipe its keys and exit.
    pub fn lock(mut self) -> Result<()> {
        write_message(&mut self.stream, &AgentRequest::Lock)
            .map_err(|e| Error::io(AGENT_LOST, e))?;
        match read_message::<AgentResponse>(&mut self.stream, MAX_RESPONSE_BYTES) {
            Ok(AgentResponse::Done) => Ok(()),
            // The agent exits right after its wipe; a lost answer still means locked.
            Err(FrameError::Closed) | Err(FrameError::Io(_)) => Ok(()),
            Ok(AgentResponse::Error { error, .. }) => Err(error),
            Ok(_) => Err(Error::AgentAnswer(AgentAnswerProblem::Unexpected)),
            Err(e) => Err(client_error(e)),
        }
    }

    /// Restarts the idle timer, with `timeout` as the new idle timeout if given (the
    /// agent keeps its own otherwise); returns the idle timeout in force.
    pub fn extend(&mut self, timeout: Option<Duration>) -> Result<Duration> {
        match self.call(&AgentRequest::Extend {
            timeout_secs: timeout.map(|t| t.as_secs()),
        })? {
            AgentResponse::Extended { idle_timeout_secs } => {
                Ok(Duration::from_secs(idle_timeout_secs))
            }
            _ => Err(Error::AgentAnswer(AgentAnswerProblem::Unexpected)),
        }
    }
}

/// The socket directories of [`search_dirs`] that may hold this user's sockets. The
/// preferred one, where agents started now go, must not be open to others (an error
/// says so); the fallback beside it is only skipped then.
fn socket_dirs() -> Result<Vec<PathBuf>> {
    let mut usable = Vec::new();
    for (i, dir) in search_dirs().into_iter().enumerate() {
        let found = if i == 0 {
            usable_dir(&dir)?
        } else {
            usable_dir(&dir).ok().flatten()
        };
        usable.extend(found);
    }
    Ok(usable)
}

/// Whether `path` is in a private directory of this user (where our sockets live).
fn in_private_dir(path: &Path) -> bool {
    path.parent()
        .is_some_and(|dir| matches!(usable_dir(dir), Ok(Some(_))))
}

/// Which agents `lock` stops.
#[derive(Clone, Copy, Debug)]
pub enum LockTarget<'a> {
    /// Every agent holding the vault at this path: by its id (from its header), and
    /// by the path it was unlocked at (the directory may be gone).
    Vault(&'a Path),
    /// Every agent of this user.
    All,
}

/// What `lock` did.
#[derive(Debug, Default)]
pub struct LockReport {
    /// The pids of the agents stopped (asked to lock, signalled, or found locking
    /// themselves).
    pub stopped: Vec<u32>,
    /// Agents that hold the vault but could not be stopped, and why.
    pub failures: Vec<String>,
}

struct Wanted {
    id: Option<String>,
    path: Option<PathBuf>,
}

impl Wanted {
    fn of(target: LockTarget<'_>) -> Wanted {
        match target {
            LockTarget::All => Wanted {
                id: None,
                path: None,
            },
            LockTarget::Vault(p) => Wanted {
                id: crate::vault::peek_id(p).ok().flatten(),
                path: Some(absolute_vault_path(p)),
            },
        }
    }

    fn all(&self) -> bool {
        self.id.is_none() && self.path.is_none()
    }

    fn matches(&self, id: &str, path: &Path) -> bool {
        self.all() || self.id.as_deref() == Some(id) || self.path.as_deref() == Some(path)
    }

    /// For an agent known only by its socket's name (the vault id).
    fn matches_socket(&self, socket: &Path) -> bool {
        self.all()
            || socket
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sock"))
                .is_some_and(|id| self.id.as_deref() == Some(id))
    }
}

/// Stops every agent of this user that `target` names, wherever its socket is: the
/// socket directories this process knows, and the sockets of every agent in the
/// registry. An agent of another protocol version is sent SIGTERM, but only once its
/// process is verified to be this user's agent of that vault (see
/// [`registry::verify_agent_process`]); an agent whose socket is gone, but whose
/// registered process still runs, likewise.
pub fn lock_agents(target: LockTarget<'_>) -> Result<LockReport> {
    let wanted = Wanted::of(target);
    let entries = registry::entries();
    let mut sockets = BTreeSet::new();
    for dir in socket_dirs()? {
        if let Ok(listing) = fs::read_dir(&dir) {
            for item in listing.flatten() {
                let path = item.path();
                if path.extension().is_some_and(|x| x == "sock") {
                    sockets.insert(path);
                }
            }
        }
    }
    for (_, entry) in &entries {
        if in_private_dir(&entry.socket) {
            sockets.insert(entry.socket.clone());
        }
    }
    let mut report = LockReport::default();
    let mut handled = BTreeSet::new();
    for socket in &sockets {
        let entry = entries.iter().map(|(_, e)| e).find(|e| &e.socket == socket);
        let named = entry.is_some_and(|e| wanted.matches(&e.vault_id, &e.vault_path))
            || wanted.matches_socket(socket);
        let pinged = AgentClient::open(socket).and_then(|client| match client {
            Some(mut c) => c.ping().map(|p| Some((c, p))),
            None => Ok(None),
        });
        match pinged {
            Ok(None) => {}
            Ok(Some((client, Pinged::Pong(info)))) => {
                handled.insert(info.pid);
                if wanted.matches(&info.vault_id, &info.vault_path()) {
                    match client.lock() {
                        Ok(()) => report.stopped.push(info.pid),
                        Err(e) => report.failures.push(format!(
                            "the agent {} at {}: {e}",
                            info.pid,
                            socket.display()
                        )),
                    }
                }
            }
            Ok(Some((_, Pinged::Stopped(info)))) => {
                handled.insert(info.pid);
                if wanted.matches(&info.vault_id, &info.vault_path()) {
                    report.stopped.push(info.pid);
                }
            }
            Ok(Some((_, Pinged::OtherVersion(version)))) => {
                // Which process it is: the registry's entry, or for an agent of a
                // keyvault from before the registry, the pid file beside its socket.
                let found = entry.cloned().or_else(|| pid_file_entry(socket, version));
                let named = named
                    || found
                        .as_ref()
                        .is_some_and(|e| wanted.matches(&e.vault_id, &e.vault_path));
                if let Some(e) = &found {
                    handled.insert(e.pid);
                }
                if !named {
                    continue;
                }
                match found {
                    Some(e) => match terminate(&e) {
                        Ok(()) => {
                            report.stopped.push(e.pid);
                            // An old agent may leave its socket and pid file behind.
                            if entry.is_none() && AgentClient::open(socket).ok().flatten().is_none() {
                                let _ = fs::remove_file(socket.with_extension("pid"));
                            }
                        }
                        Err(why) => report.failures.push(format!(
                            "an agent of protocol version {version} listens on {}, but it was not signalled: {why}",
                            socket.display()
                        )),
                    },
                    None => report.failures.push(format!(
                        "an agent of protocol version {version} listens on {}, and no registry entry or pid file names its process; stop it yourself",
                        socket.display()
                    )),
                }
            }
            // Not a socket (a stray file, a planted symlink): no agent there.
            Err(Error::AgentDir { .. }) => {}
            Err(e) => {
                if let Some(entry) = entry {
                    handled.insert(entry.pid);
                }
                if named {
                    report
                        .failures
                        .push(format!("the agent at {}: {e}", socket.display()));
                }
            }
        }
    }
    // Registered agents that no socket led to (theirs was removed, or lives in a
    // directory that is not private any more) but whose process still runs.
    for (_, entry) in &entries {
        if handled.contains(&entry.pid) || !wanted.matches(&entry.vault_id, &entry.vault_path) {
            continue;
        }
        if report.stopped.contains(&entry.pid) {
            continue;
        }
        match terminate(entry) {
            Ok(()) => report.stopped.push(entry.pid),
            Err(why) => report.failures.push(format!(
                "the agent {} of {} cannot be reached at {} and was not signalled: {why}",
                entry.pid,
                entry.vault_path.display(),
                entry.socket.display()
            )),
        }
    }
    Ok(report)
}

/// What the pid file beside `socket` says of an agent of an older keyvault (which
/// named its socket and pid file after a hash of the vault's path and kept no registry
/// entry): its pid, and the vault path its command line names. Verified before use like
/// any entry (see [`registry::verify_agent_process`]).
fn pid_file_entry(socket: &Path, protocol: u32) -> Option<Entry> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
        .open(socket.with_extension("pid"))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != rustix::process::getuid().as_raw() {
        return None;
    }
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let vault_path = registry::agent_vault_path(pid)?;
    Some(Entry {
        pid,
        start_time: registry::start_time(pid)?,
        vault_id: String::new(),
        vault_path,
        socket: socket.to_path_buf(),
        protocol,
    })
}

/// Sends SIGTERM to the registered agent `entry` once its process is verified to be
/// it, and waits for it to end.
fn terminate(entry: &Entry) -> std::result::Result<(), String> {
    registry::verify_agent_process(entry)?;
    let pid = rustix::process::Pid::from_raw(entry.pid as i32)
        .ok_or_else(|| format!("{} is not a pid", entry.pid))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| format!("cannot signal process {}: {e}", entry.pid))?;
    let start = Instant::now();
    while start.elapsed() < STOP_WAIT {
        if registry::start_time(entry.pid) != Some(entry.start_time) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "process {} still runs {} s after SIGTERM",
        entry.pid,
        STOP_WAIT.as_secs()
    ))
}
