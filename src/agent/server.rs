//! The agent's server loop: accepts connections, checks the peer's uid, serves framed
//! requests against the unlocked vault, and locks on timeout, lifetime, `lock` or a
//! signal; compacts the vault when idle and its files have grown (see [`super::upkeep`]).
//!
//! Each connection gets its own thread, with read and write timeouts and a bounded
//! message size; the number of connections is bounded too. A slow, silent or hostile
//! client can only waste its own thread, never block or bloat the others.

use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::vault::Vault;
use crate::vault::lifecycle::SpaceUse;

use super::protocol::{
    AgentRequest, AgentResponse, AgentStatus, FrameError, MAX_REQUEST_BYTES, read_message,
    write_message,
};
use super::upkeep::{self, Upkeep};

/// How long a connection may stay silent before the agent drops it.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections served at once; more are closed at once.
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

/// A running agent.
pub struct Agent {
    vault: RwLock<Option<Vault>>,
    timers: Mutex<Timers>,
    started: Instant,
    max_lifetime: Duration,
    socket_path: PathBuf,
    pid_path: PathBuf,
    connections: AtomicUsize,
    uid: u32,
}

impl Agent {
    /// Wraps an unlocked vault.
    pub fn new(
        vault: Vault,
        options: AgentOptions,
        socket_path: PathBuf,
        pid_path: PathBuf,
    ) -> Self {
        let now = Instant::now();
        Agent {
            vault: RwLock::new(Some(vault)),
            timers: Mutex::new(Timers {
                last_use: now,
                idle_timeout: options.idle_timeout,
                in_flight: 0,
            }),
            started: now,
            max_lifetime: options.max_lifetime,
            socket_path,
            pid_path,
            connections: AtomicUsize::new(0),
            uid: rustix::process::getuid().as_raw(),
        }
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

    fn timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wipes the keys (dropping the vault zeroizes them and flushes the database),
    /// removes the socket and pid file, and ends the process.
    pub fn lock_and_exit(&self) -> ! {
        self.wipe();
        std::process::exit(0)
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
        let _ = fs::remove_file(&self.socket_path);
        let _ = fs::remove_file(&self.pid_path);
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
            let Ok(stream) = stream else { continue };
            if self.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.connections.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
                continue;
            }
            let agent = Arc::clone(&self);
            let spawned = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    agent.handle(stream);
                    agent.connections.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.connections.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.lock_and_exit()
    }

    fn watch(&self) {
        let mut ticks = 0u32;
        let mut upkeep = Upkeep::default();
        loop {
            thread::sleep(TICK);
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(10) {
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

    fn handle(&self, mut stream: UnixStream) {
        if !self.peer_allowed(&stream) {
            let _ = write_message(
                &mut stream,
                &AgentResponse::from(Error::Usage("the agent serves only its own user".into())),
            );
            return;
        }
        if stream.set_read_timeout(Some(CONNECTION_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(CONNECTION_TIMEOUT)).is_err()
        {
            return;
        }
        loop {
            let request = match read_message::<AgentRequest>(&mut stream, MAX_REQUEST_BYTES) {
                Ok(r) => r,
                Err(FrameError::Closed) | Err(FrameError::Io(_)) => return,
                Err(FrameError::TooLarge(n)) => {
                    let _ = write_message(
                        &mut stream,
                        &AgentResponse::from(Error::Usage(format!(
                            "request of {n} bytes is over the agent's limit of {MAX_REQUEST_BYTES}"
                        ))),
                    );
                    return;
                }
                Err(FrameError::Version(v)) => {
                    let _ = write_message(
                        &mut stream,
                        &AgentResponse::from(Error::ProtocolMismatch {
                            agent: super::protocol::PROTOCOL_VERSION,
                            client: v,
                        }),
                    );
                    return;
                }
                Err(FrameError::Malformed) => {
                    let _ = write_message(
                        &mut stream,
                        &AgentResponse::from(Error::Usage("malformed request".into())),
                    );
                    return;
                }
            };
            if matches!(request, AgentRequest::Lock) {
                self.wipe();
                let _ = write_message(&mut stream, &AgentResponse::Done);
                std::process::exit(0);
            }
            let response = self.answer(request);
            if write_message(&mut stream, &response).is_err() {
                return;
            }
        }
    }

    fn answer(&self, request: AgentRequest) -> AgentResponse {
        match request {
            AgentRequest::Ping => AgentResponse::Pong {
                vault: self.socket_path.display().to_string(),
                pid: std::process::id(),
            },
            AgentRequest::Status => self.status(),
            AgentRequest::Extend { timeout_secs } => {
                let mut t = self.timers();
                t.idle_timeout = Duration::from_secs(timeout_secs);
                t.last_use = Instant::now();
                AgentResponse::Done
            }
            AgentRequest::Lock => AgentResponse::Done,
            AgentRequest::Op(op) if op.needs_exclusive() => {
                self.begin_use();
                let result = self.with_vault_owned(|vault| crate::ops::execute_owned(vault, op));
                self.end_use();
                match result {
                    Ok(r) => AgentResponse::Op(r),
                    Err(e) => e.into(),
                }
            }
            AgentRequest::Op(op) => {
                self.begin_use();
                let result = {
                    let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
                    match guard.as_ref() {
                        Some(vault) => vault.execute(op),
                        None => Err(Error::Internal("the agent is locking".into())),
                    }
                };
                self.end_use();
                match result {
                    Ok(r) => AgentResponse::Op(r),
                    Err(e) => e.into(),
                }
            }
        }
    }

    /// Runs `work` with the vault to itself (requests wait meanwhile); `work` gives the
    /// vault back, or `None` when the database could not be reopened, and then the
    /// agent stops serving.
    fn with_vault_owned<T>(
        &self,
        work: impl FnOnce(Vault) -> (Option<Vault>, crate::Result<T>),
    ) -> crate::Result<T> {
        let result = {
            let mut guard = self.vault.write().unwrap_or_else(|p| p.into_inner());
            match guard.take() {
                Some(vault) => {
                    let (back, result) = work(vault);
                    *guard = back;
                    result
                }
                None => Err(Error::Internal("the agent is locking".into())),
            }
        };
        if self.vault.read().map(|g| g.is_none()).unwrap_or(true) {
            // The database could not be reopened: nothing left to serve.
            let _ = fs::remove_file(&self.socket_path);
            let _ = fs::remove_file(&self.pid_path);
        }
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
        let due = {
            let guard = self.vault.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(vault) => upkeep.due(vault),
                None => None,
            }
        };
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
        if self.vault.read().map(|g| g.is_none()).unwrap_or(true) {
            self.lock_and_exit();
        }
    }

    fn begin_use(&self) {
        let mut t = self.timers();
        t.in_flight += 1;
        t.last_use = Instant::now();
    }

    fn end_use(&self) {
        let mut t = self.timers();
        t.in_flight = t.in_flight.saturating_sub(1);
        t.last_use = Instant::now();
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
