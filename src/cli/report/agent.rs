//! Reports of `unlock`, `lock` and `status`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use keyvault::vault::types::VaultStatus;

use super::{Report, short_secs};

/// An agent that `unlock` started.
#[derive(Serialize)]
pub(crate) struct Unlocked {
    /// Its process id.
    pub agent_pid: u32,
    /// Always false.
    pub already_unlocked: bool,
    /// Its idle timeout.
    pub idle_timeout_secs: u64,
    /// Its lifetime.
    pub max_lifetime_secs: u64,
    /// Whether it locked its key memory in RAM.
    pub memory_locked: bool,
    /// Its socket.
    pub socket: String,
    /// Its SSH agent socket, if it has one (for `SSH_AUTH_SOCK`).
    pub ssh_socket: Option<String>,
    /// Always `unlocked`.
    pub state: &'static str,
    /// The vault.
    #[serde(skip)]
    pub vault: String,
}

impl Report for Unlocked {}

/// The line naming the SSH socket, if there is one.
fn ssh_socket_line(f: &mut Formatter<'_>, socket: Option<&str>) -> fmt::Result {
    match socket {
        Some(s) => writeln!(
            f,
            "SSH agent socket: {s} (export SSH_AUTH_SOCK=\"$(keyvault ssh socket)\")"
        ),
        None => Ok(()),
    }
}

impl Display for Unlocked {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Unlocked {}; locks after {} idle (at most {})",
            self.vault,
            short_secs(self.idle_timeout_secs),
            short_secs(self.max_lifetime_secs)
        )?;
        ssh_socket_line(f, self.ssh_socket.as_deref())
    }
}

/// `unlock` of a vault an agent already held: its idle timer restarted.
#[derive(Serialize)]
pub(crate) struct AlreadyUnlocked {
    /// Always true.
    pub already_unlocked: bool,
    /// The idle timeout in force.
    pub idle_timeout_secs: u64,
    /// The agent's SSH agent socket, if it has one.
    pub ssh_socket: Option<String>,
    /// Always `unlocked`.
    pub state: &'static str,
    /// The vault.
    #[serde(skip)]
    pub vault: String,
}

impl Report for AlreadyUnlocked {}

impl Display for AlreadyUnlocked {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} is already unlocked; it locks after {} idle from now",
            self.vault,
            short_secs(self.idle_timeout_secs)
        )?;
        ssh_socket_line(f, self.ssh_socket.as_deref())
    }
}

/// The agents `lock` stopped, and those it could not.
#[derive(Serialize)]
pub(crate) struct Locked {
    /// The process ids of the agents stopped.
    pub agents_stopped: Vec<u32>,
    /// The agents that could not be stopped, and why.
    pub failures: Vec<String>,
    /// `locked`, or `unlocked` if an agent could not be stopped.
    pub state: &'static str,
    /// Whether any agent held the vault.
    pub was_unlocked: bool,
    /// `lock --all`.
    #[serde(skip)]
    pub all: bool,
}

impl Report for Locked {}

impl Display for Locked {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let stopped = self.agents_stopped.len();
        if self.all {
            writeln!(
                f,
                "Locked: {stopped} agent(s) stopped, their keys wiped from memory"
            )
        } else if stopped > 0 {
            writeln!(
                f,
                "Locked: the keys were wiped from memory and the agent stopped"
            )
        } else if self.failures.is_empty() {
            writeln!(f, "Already locked: no agent holds this vault")
        } else {
            Ok(())
        }
    }
}

/// What `status` says: the vault's counts and facts, and the agent's if one holds it.
#[derive(Serialize)]
pub(crate) struct Status {
    /// The vault.
    #[serde(flatten)]
    pub vault: VaultStatus,
    /// `locked` or `unlocked`.
    pub state: &'static str,
    /// The agent holding the vault, if one does.
    #[serde(flatten)]
    pub agent: Option<AgentFacts>,
}

/// The agent's part of `status`.
#[derive(Serialize)]
pub(crate) struct AgentFacts {
    /// Its process id.
    pub agent_pid: u32,
    /// Its idle timeout.
    pub idle_timeout_secs: u64,
    /// How long until it ends in any case.
    pub lifetime_left_secs: u64,
    /// How long until it locks if left idle.
    pub locks_in_secs: u64,
}

impl Report for Status {}

impl Display for Status {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let st = &self.vault;
        match &self.agent {
            Some(a) => writeln!(
                f,
                "state:          unlocked, locks in {} (idle timeout {})",
                short_secs(a.locks_in_secs),
                short_secs(a.idle_timeout_secs)
            )?,
            None => writeln!(f, "state:          {}", self.state)?,
        }
        writeln!(f, "vault:          {}", st.path)?;
        writeln!(f, "format version: {}", st.format_version)?;
        if let Some(kdf) = &st.kdf {
            writeln!(f, "kdf:            Argon2id {kdf}")?;
        }
        writeln!(f, "users:          {}", st.users)?;
        writeln!(f, "keys:           {}", st.keys)?;
        writeln!(f, "revoked users:  {}", st.revoked_users)?;
        if let Some(a) = &self.agent {
            writeln!(f, "agent pid:      {}", a.agent_pid)?;
        }
        Ok(())
    }
}
