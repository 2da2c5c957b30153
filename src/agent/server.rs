//! The agent's server loop: accepts connections, checks the peer's uid, serves framed
//! requests against the unlocked vault, and locks on timeout, lifetime, `lock` or a
//! signal; compacts the vault when idle and its files have grown (see [`super::upkeep`]).
//!
//! Each connection gets its own thread. A request must arrive whole within
//! [`REQUEST_DEADLINE`] of the moment the agent starts waiting for it (however slowly
//! its bytes drip in), and its answer must be taken within the same time. At most
//! [`MAX_CONNECTIONS`] are open at once; when a new one arrives at that limit, the
//! connection that has waited longest for its request is closed to make room (one
//! whose request is being carried out never is). So slow, silent or hostile clients of
//! the user cannot lock out the others.
//!
//! Before serving any request, the agent checks that the directory at its vault path
//! is still the vault it holds (the vault id in the header file, the device and inode of
//! the directory); if not, it locks itself and answers [`AgentResponse::Stopped`]. The
//! watchdog checks the same each second, and before an automatic compaction.
//!
//! The count of requests in flight (which holds off the idle lock) and each
//! connection's slot are tied to drop guards, and a request that panics is answered
//! with an internal error: a panic leaves the agent's counters and timers right. If a
//! request loses the vault (a compaction whose database could not be reopened, or a
//! panic in the middle of one), the agent answers and exits: it never lingers without
//! its vault.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::Shutdown;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::vault::Vault;
use crate::vault::lifecycle::SpaceUse;

use super::deadline::Deadline;
use super::protocol::{
    AgentInfo, AgentRequest, AgentResponse, AgentStatus, FrameError, MAX_REQUEST_BYTES,
    read_message, write_message,
};
use super::test_faults::Fault;
use super::upkeep::{self, Upkeep};

/// The idle timeout of an agent when `unlock` is given none.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the agent waits for a whole request (from the moment it is ready for the
/// next one), and for the client to take its answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The most connections open at once.
pub const MAX_CONNECTIONS: usize = 128;
/// How often the watchdog checks the timers.
const TICK: Duration = Duration::from_millis(100);

/// The agent's timers.
#[derive(Clone, Copy, Debug)]
pub struct AgentOptions {
    /// Lock after this long without a request that uses the vault.
    pub idle_timeout: Duration,
    /// Lock after this long in any case.
    pub max_lifetime: Duration,
    /// Open the vault even if it is an older copy than one this machine has seen.
    pub accept_rollback: bool,
}

struct Timers {
    last_use: Instant,
    idle_timeout: Duration,
    in_flight: usize,
}

/// One open connection, as the accept loop sees it.
struct Slot {
    /// A second handle on the socket, to shut it down when the slot is taken back.
    stream: UnixStream,
    /// Whether a request of it is being carried out (then it is never closed).
    busy: bool,
    /// Since when it has been waiting (for its request, or for its answer to be read).
    since: Instant,
}

#[derive(Default)]
struct Connections {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

/// Whether the directory at the vault path is still the vault the agent holds.
enum Identity {
    Same,
    Changed(String),
    Unknown(Error),
}

/// Where the agent's runtime files are.
pub struct RuntimeFiles {
    /// The socket it listens on.
    pub socket: PathBuf,
    /// Its registry entry, if it could write one.
    pub registry_entry: Option<PathBuf>,
}

/// A running agent.
pub struct Agent {
    pub(super) vault: RwLock<Option<Vault>>,
    timers: Mutex<Timers>,
    started: Instant,
    max_lifetime: Duration,
    files: RuntimeFiles,
    /// The socket's inode, so that only our own socket is ever removed.
    socket_ino: Option<(u64, u64)>,
    connections: Mutex<Connections>,
    pub(super) uid: u32,
    info: AgentInfo,
    fault: Fault,
    /// Set when a request lost the vault (not when the agent locks).
    lost: AtomicBool,
    /// Ends the process once the keys are wiped: given by the binary, which owns the
    /// process (the library never exits it).
    exit: fn() -> !,
}

/// Counts one request in flight while it lives (the SSH listener's too).
pub(super) struct InFlight<'a>(&'a Agent);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut t = self.0.timers();
        t.in_flight = t.in_flight.saturating_sub(1);
        t.last_use = Instant::now();
    }
}

/// Holds one connection's slot while it lives.
struct SlotGuard<'a> {
    agent: &'a Agent,
    id: u64,
}

impl SlotGuard<'_> {
    fn mark(&self, busy: bool) {
        if let Some(slot) = self.agent.connections().open.get_mut(&self.id) {
            slot.busy = busy;
            slot.since = Instant::now();
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.agent.connections().open.remove(&self.id);
    }
}

impl Agent {
    /// Wraps an unlocked vault; `files` are the socket it listens on and its registry
    /// entry, removed when it locks; `exit` ends the process after the keys are wiped.
    pub fn new(
        vault: Vault,
        options: AgentOptions,
        files: RuntimeFiles,
        exit: fn() -> !,
    ) -> Result<Self> {
        let (dev, ino) = super::dir_identity(vault.path())
            .map_err(|e| Error::io(format!("cannot inspect {}", vault.path().display()), e))?;
        let info = AgentInfo {
            pid: std::process::id(),
            vault_id: vault.id_hex(),
            vault_path: vault.path().as_os_str().as_encoded_bytes().to_vec(),
            dev,
            ino,
        };
        let socket_ino = fs::symlink_metadata(&files.socket)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let now = Instant::now();
        Ok(Agent {
            vault: RwLock::new(Some(vault)),
            timers: Mutex::new(Timers {
                last_use: now,
                idle_timeout: options.idle_timeout,
                in_flight: 0,
            }),
            started: now,
            max_lifetime: options.max_lifetime,
            files,
            socket_ino,
            connections: Mutex::new(Connections::default()),
            uid: rustix::process::getuid().as_raw(),
            info,
            fault: Fault::from_env(),
            lost: AtomicBool::new(false),
            exit,
        })
    }

    /// Who this agent is.
    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    /// The socket it listens on.
    pub fn socket_path(&self) -> &std::path::Path {
        &self.files.socket
    }

    /// Locks the pages of the vault's subkeys in RAM. False where the OS refuses.
    pub fn lock_key_memory(&self) -> bool {
        let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(v) => {
                let (addr, len) = v.key_memory_range();
                super::harden::lock_memory(addr, len).is_ok()
            }
            None => false,
        }
    }

    fn timers(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connections(&self) -> MutexGuard<'_, Connections> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wipes the keys (dropping the vault zeroizes and flushes it), removes the runtime
    /// files (both sockets, the registry entry) and ends the process.
    pub fn lock_and_exit(&self) -> ! {
        self.wipe();
        (self.exit)()
    }

    fn wipe(&self) {
        // Waits for requests in flight (they hold read guards).
        let mut guard = self.vault.write().unwrap_or_else(|p| p.into_inner());
        if let Some(vault) = guard.as_ref() {
            // Best effort: a failure here only leaves the reserved (higher) counts.
            let _ = vault.release_use_reservations();
        }
        // Dropping in place zeroizes the subkeys where they live.
        *guard = None;
        self.remove_runtime_files();
    }

    fn remove_runtime_files(&self) {
        let ours = fs::symlink_metadata(&self.files.socket).map(|m| (m.dev(), m.ino()));
        if self.socket_ino.is_some() && ours.ok() == self.socket_ino {
            let _ = fs::remove_file(&self.files.socket);
        }
        if let Some(entry) = &self.files.registry_entry {
            super::registry::unregister(entry);
        }
        super::ssh::remove_socket();
    }

    /// Whether a request lost the vault (a compaction whose database could not be
    /// reopened, or a panic in the middle of one). Not set while the agent locks.
    fn vault_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Starts the watchdog and signal threads, then serves until locked.
    pub fn serve(self: Arc<Self>, listener: UnixListener) -> ! {
        // Opening the vault (sled's recovery) allocated and freed much: give it back.
        super::harden::release_free_memory();
        let watchdog = Arc::clone(&self);
        thread::spawn(move || watchdog.watch());
        let on_signal = Arc::clone(&self);
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ]) {
            thread::spawn(move || {
                if signals.forever().next().is_some() {
                    on_signal.lock_and_exit();
                }
            });
        }
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(_) => {
                    // Out of descriptors or memory: let connections finish meanwhile.
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let Some(id) = self.admit(&stream) else {
                continue;
            };
            let agent = Arc::clone(&self);
            let spawned = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let slot = SlotGuard { agent: &agent, id };
                    agent.handle(stream, &slot);
                });
            if spawned.is_err() {
                self.connections().open.remove(&id);
            }
        }
        self.lock_and_exit()
    }

    /// Gives a new connection a slot, closing the one that has waited longest for its
    /// request if all are taken. `None` when it is refused.
    fn admit(&self, stream: &UnixStream) -> Option<u64> {
        if !self.peer_allowed(stream) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write_message(
                &mut &*stream,
                &AgentResponse::from(Error::Usage("the agent serves only its own user".into())),
            );
            return None;
        }
        let handle = stream.try_clone().ok()?;
        let mut conns = self.connections();
        if conns.open.len() >= MAX_CONNECTIONS {
            let victim = conns
                .open
                .iter()
                .filter(|(_, slot)| !slot.busy)
                .min_by_key(|(_, slot)| slot.since)
                .map(|(id, _)| *id)?;
            if let Some(slot) = conns.open.remove(&victim) {
                let _ = slot.stream.shutdown(Shutdown::Both);
            }
        }
        conns.next_id += 1;
        let id = conns.next_id;
        conns.open.insert(
            id,
            Slot {
                stream: handle,
                busy: false,
                since: Instant::now(),
            },
        );
        Some(id)
    }

    fn watch(&self) {
        let mut ticks = 0u32;
        let mut upkeep = Upkeep::default();
        loop {
            thread::sleep(TICK);
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(10) {
                // Nobody may be asking: the directory is checked here too, so that an
                // agent whose vault was deleted or replaced neither lingers nor writes
                // (an automatic compaction works by path) into another vault.
                if let Identity::Changed(_) = self.check_identity() {
                    self.lock_and_exit();
                }
                // Audit entries of reads are applied unflushed; make them durable within
                // a second (cheap when nothing is pending).
                {
                    let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
                    if let Some(vault) = guard.as_ref() {
                        let _ = vault.flush();
                    }
                }
                self.keep_up(&mut upkeep);
            }
            let now = Instant::now();
            if now.duration_since(self.started) >= self.max_lifetime {
                self.lock_and_exit();
            }
            let t = self.timers();
            if t.in_flight == 0 && now.duration_since(t.last_use) >= t.idle_timeout {
                drop(t);
                self.lock_and_exit();
            }
        }
    }

    fn peer_allowed(&self, stream: &UnixStream) -> bool {
        matches!(rustix::net::sockopt::socket_peercred(stream), Ok(cred) if cred.uid.as_raw() == self.uid)
    }

    /// Whether the directory at the vault path is still the vault this agent holds.
    fn check_identity(&self) -> Identity {
        let path = self.info.vault_path();
        match super::dir_identity(&path) {
            Ok(found) if found == (self.info.dev, self.info.ino) => {}
            Ok(_) => {
                return Identity::Changed(format!(
                    "the directory at {} is not the one it unlocked (the vault was moved, deleted or re-created)",
                    path.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Identity::Changed(format!(
                    "{} is gone (the vault was moved or deleted)",
                    path.display()
                ));
            }
            Err(e) => {
                return Identity::Unknown(Error::io(
                    format!("cannot inspect {}", path.display()),
                    e,
                ));
            }
        }
        match crate::vault::peek_id(&path) {
            Ok(Some(id)) if id == self.info.vault_id => Identity::Same,
            Ok(_)
            | Err(Error::VaultNotFound(_) | Error::Integrity(_) | Error::BadHeaderFile(_)) => {
                Identity::Changed(format!(
                    "the header file in {} is no longer that of the vault it unlocked",
                    path.display()
                ))
            }
            Err(e) => Identity::Unknown(e),
        }
    }

    fn handle(&self, stream: UnixStream, slot: &SlotGuard<'_>) {
        loop {
            let mut io = Deadline {
                stream: &stream,
                until: Instant::now() + REQUEST_DEADLINE,
            };
            let request = match read_message::<AgentRequest>(&mut io, MAX_REQUEST_BYTES) {
                Ok(r) => r,
                Err(FrameError::Closed) | Err(FrameError::Io(_)) => return,
                Err(FrameError::TooLarge(n)) => {
                    let _ = write_message(
                        &mut io,
                        &AgentResponse::from(Error::Usage(format!(
                            "request of {n} bytes is over the agent's limit of {MAX_REQUEST_BYTES}"
                        ))),
                    );
                    return;
                }
                Err(FrameError::Version(v)) => {
                    let _ = write_message(
                        &mut io,
                        &AgentResponse::from(Error::ProtocolMismatch {
                            agent: super::protocol::PROTOCOL_VERSION,
                            client: v,
                        }),
                    );
                    return;
                }
                Err(FrameError::Malformed) => {
                    let _ = write_message(
                        &mut io,
                        &AgentResponse::from(Error::Usage("malformed request".into())),
                    );
                    return;
                }
            };
            if matches!(request, AgentRequest::Lock) {
                self.wipe();
                let _ = write_message(&mut io, &AgentResponse::Done);
                (self.exit)();
            }
            match self.check_identity() {
                Identity::Same => {}
                Identity::Changed(reason) => {
                    self.wipe();
                    let _ = write_message(
                        &mut io,
                        &AgentResponse::Stopped {
                            info: self.info.clone(),
                            reason,
                        },
                    );
                    (self.exit)();
                }
                Identity::Unknown(e) => {
                    if write_message(&mut io, &AgentResponse::from(e)).is_err() {
                        return;
                    }
                    continue;
                }
            }
            slot.mark(true);
            let response = self.answer_catching_panics(request);
            slot.mark(false);
            let mut io = Deadline {
                stream: &stream,
                until: Instant::now() + REQUEST_DEADLINE,
            };
            let written = write_message(&mut io, &response);
            if is_large(&response) {
                // A large answer (the list of a big vault, a big plaintext) was built,
                // encoded and freed: give the memory back rather than hold that peak.
                drop(response);
                super::harden::release_free_memory();
            }
            if self.vault_lost() {
                // A compaction could not reopen the database, or a request panicked in
                // the middle of one: nothing left to serve.
                self.lock_and_exit();
            }
            if written.is_err() {
                return;
            }
        }
    }

    fn answer_catching_panics(&self, request: AgentRequest) -> AgentResponse {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.answer(request))) {
            Ok(response) => response,
            Err(_) => {
                let at = crate::error::take_panic_location()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                Error::Internal(format!(
                    "the agent stopped on an unexpected condition{at} while serving this request (damaged vault files, or a bug); the request may or may not have been carried out"
                ))
                .into()
            }
        }
    }

    fn answer(&self, request: AgentRequest) -> AgentResponse {
        match request {
            AgentRequest::Ping => AgentResponse::Pong(self.info.clone()),
            AgentRequest::Status => self.status(),
            AgentRequest::Extend { timeout_secs } => {
                let mut t = self.timers();
                if let Some(secs) = timeout_secs {
                    t.idle_timeout = Duration::from_secs(secs.max(1));
                }
                t.last_use = Instant::now();
                AgentResponse::Extended {
                    idle_timeout_secs: t.idle_timeout.as_secs(),
                }
            }
            AgentRequest::Lock => AgentResponse::Done,
            AgentRequest::Op(op) if op.needs_exclusive() => {
                let _use = self.begin_use();
                let lose = self.fault.loses_vault();
                let result = self.with_vault_owned(|vault| {
                    self.fault.panic_for(op.user());
                    let (back, result) = crate::ops::execute_owned(vault, op);
                    if lose {
                        drop(back);
                        return (
                            None,
                            Err(Error::Internal(
                                "test fault: the compacted database could not be reopened".into(),
                            )),
                        );
                    }
                    (back, result)
                });
                match result {
                    Ok(r) => AgentResponse::Op(r),
                    Err(e) => e.into(),
                }
            }
            AgentRequest::Op(op) => {
                let _use = self.begin_use();
                let result = {
                    let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
                    match guard.as_ref() {
                        Some(vault) => {
                            self.fault.panic_for(op.user());
                            vault.execute(op)
                        }
                        None => Err(Error::Internal("the agent is locking".into())),
                    }
                };
                match result {
                    Ok(r) => AgentResponse::Op(r),
                    Err(e) => e.into(),
                }
            }
        }
    }

    /// Runs `work` with the vault to itself (requests wait meanwhile); `work` gives the
    /// vault back, or `None` when the database could not be reopened: then the agent
    /// has nothing left to serve, and its callers make it exit.
    fn with_vault_owned<T>(
        &self,
        work: impl FnOnce(Vault) -> (Option<Vault>, crate::Result<T>),
    ) -> crate::Result<T> {
        /// Marks the vault lost unless it came back (also when `work` panics).
        struct Loss<'a>(&'a AtomicBool, bool);
        impl Drop for Loss<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
        }
        let result = {
            let mut guard = self.vault.write().unwrap_or_else(|p| p.into_inner());
            match guard.take() {
                Some(vault) => {
                    let mut loss = Loss(&self.lost, false);
                    let (back, result) = work(vault);
                    loss.1 = back.is_some();
                    *guard = back;
                    result
                }
                None => Err(Error::Internal("the agent is locking".into())),
            }
        };
        // A compaction copied every record through memory: give it back.
        super::harden::release_free_memory();
        result
    }

    /// Compacts the vault when [`Upkeep`] says it is due and nobody has used the agent
    /// for [`upkeep::QUIET`].
    fn keep_up(&self, upkeep: &mut Upkeep) {
        {
            let t = self.timers();
            if t.in_flight > 0 || t.last_use.elapsed() < upkeep::QUIET {
                return;
            }
        }
        let (walked, due) = {
            let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(vault) => {
                    let walked = upkeep.would_look(vault);
                    (walked, upkeep.due(vault))
                }
                None => (false, None),
            }
        };
        if walked {
            // The look read every record through sled's cache: give back what it freed.
            super::harden::release_free_memory();
        }
        let Some(space) = due else { return };
        let result = self.with_vault_owned(|vault| vault.compact_automatically(space));
        match result {
            Ok(report) => upkeep.looked(SpaceUse {
                on_disk: report.bytes_after,
                records: space.records,
            }),
            // The old database is still there, whole; look again after more growth.
            Err(_) => upkeep.looked(SpaceUse {
                on_disk: space.on_disk,
                records: 0,
            }),
        }
        if self.vault_lost() {
            self.lock_and_exit();
        }
    }

    pub(super) fn begin_use(&self) -> InFlight<'_> {
        let mut t = self.timers();
        t.in_flight += 1;
        t.last_use = Instant::now();
        InFlight(self)
    }

    fn status(&self) -> AgentResponse {
        let now = Instant::now();
        let (idle_timeout, idle_left) = {
            let t = self.timers();
            let used = now.duration_since(t.last_use);
            (t.idle_timeout, t.idle_timeout.saturating_sub(used))
        };
        let lifetime_left = self
            .max_lifetime
            .saturating_sub(now.duration_since(self.started));
        let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
        let Some(vault) = guard.as_ref() else {
            return Error::Internal("the agent is locking".into()).into();
        };
        match vault.status() {
            Ok(vault) => AgentResponse::Status(AgentStatus {
                pid: std::process::id(),
                idle_timeout_secs: idle_timeout.as_secs(),
                idle_left_secs: idle_left.min(lifetime_left).as_secs(),
                lifetime_left_secs: lifetime_left.as_secs(),
                vault,
            }),
            Err(e) => e.into(),
        }
    }
}

/// Answers from this size on are followed by handing freed memory back to the OS.
const LARGE_ANSWER_BYTES: usize = 1 << 20;

/// Whether `response` encodes to [`LARGE_ANSWER_BYTES`] or more (a walk over it that
/// allocates nothing; answers other than to vault operations are small).
fn is_large(response: &AgentResponse) -> bool {
    matches!(response, AgentResponse::Op(_))
        && postcard::experimental::serialized_size(response).is_ok_and(|n| n >= LARGE_ANSWER_BYTES)
}
