//! Where a command's vault operations run: the agent of the vault when one runs, else a
//! vault this process opens itself (one-shot, asking for the passphrase). Commands see
//! one [`Operations`] either way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use keyvault::agent::client::{AgentClient, OpOutcome};
use keyvault::ops::{Operations, Request, Response};
use keyvault::vault::{self, Vault};
use keyvault::{Error, Result};

use super::args::Cli;
use super::passphrase::{ENV_PASSPHRASE, PassphraseSource};

/// Set when this command opened its vault read-only (its filesystem takes no writes):
/// the binary then says so after the command's output.
pub(crate) static OPENED_READ_ONLY: AtomicBool = AtomicBool::new(false);

/// The vault of one command, reached through its agent or opened here.
pub(crate) struct Session {
    pub(super) path: PathBuf,
    pub(super) options: vault::OpenOptions,
    pub(super) source: PassphraseSource,
    vault: Option<Vault>,
    agent: Option<AgentClient>,
    agent_checked: bool,
}

impl Session {
    /// The session of the vault the command line names; connects to nothing yet.
    pub(crate) fn new(cli: &Cli) -> Result<Session> {
        Ok(Session {
            path: vault_path(cli)?,
            options: open_options(cli),
            source: passphrase_source(cli),
            vault: None,
            agent: None,
            agent_checked: false,
        })
    }

    /// The vault, opened here (asking for the passphrase) on first use.
    pub(crate) fn vault(&mut self) -> Result<&Vault> {
        if self.vault.is_none() {
            // Say "no vault" before asking for a passphrase that cannot help.
            if !keyvault::Vault::exists(&self.path) {
                return Err(Error::VaultNotFound(self.path.clone()));
            }
            let passphrase = self.source.unlock()?;
            let vault = Vault::open_with(&self.path, &passphrase, self.options)?;
            if vault.is_read_only() {
                OPENED_READ_ONLY.store(true, Ordering::Relaxed);
            }
            self.vault = Some(vault);
        }
        self.vault
            .as_ref()
            .ok_or_else(|| Error::Internal("vault not open".into()))
    }

    /// Closes the vault this process opened (flushing it and letting go of its lock),
    /// once a command has what it needs from it: so that a command that then writes a
    /// large output into a pipe does not hold the vault while the reader, another
    /// keyvault command, waits to open it. Nothing to do through the agent.
    pub(crate) fn release(&mut self) {
        self.vault = None;
    }

    /// The agent of the vault, if one runs (looked for once).
    pub(crate) fn agent(&mut self) -> Result<Option<&mut AgentClient>> {
        if !self.agent_checked {
            self.agent_checked = true;
            self.agent = AgentClient::connect(&self.path)?;
        }
        Ok(self.agent.as_mut())
    }
}

impl Operations for Session {
    fn execute(&mut self, request: Request) -> Result<Response> {
        let request = match self.agent()? {
            None => request,
            Some(agent) => match agent.op_or_back(request)? {
                OpOutcome::Answered(response) => return Ok(response),
                // The agent locked itself without carrying the request out (its vault
                // directory was moved, deleted or replaced): carry it out here.
                OpOutcome::NotCarriedOut(e, request) => {
                    eprintln!("note: {e}; opening the vault directly");
                    self.agent = None;
                    *request
                }
            },
        };
        if request.needs_exclusive() {
            self.vault()?;
            let vault = self
                .vault
                .take()
                .ok_or_else(|| Error::Internal("vault not open".into()))?;
            let (back, result) = keyvault::ops::execute_owned(vault, request);
            self.vault = back;
            return result;
        }
        self.vault()?.execute(request)
    }
}

/// The vault directory: `--vault`, `KEYVAULT_PATH`, or the platform default.
pub(crate) fn vault_path(cli: &Cli) -> Result<PathBuf> {
    match &cli.vault {
        Some(p) => Ok(p.clone()),
        None => vault::default_path().ok_or_else(|| {
            Error::Usage("cannot find the platform data directory; pass --vault DIR".into())
        }),
    }
}

/// How to open a vault, from the global flags.
pub(crate) fn open_options(cli: &Cli) -> vault::OpenOptions {
    vault::OpenOptions {
        accept_rollback: cli.accept_rollback,
    }
}

/// Where the vault's passphrase comes from, from the global flags.
pub(crate) fn passphrase_source(cli: &Cli) -> PassphraseSource {
    PassphraseSource {
        file: cli.passphrase_file.clone(),
        env_var: ENV_PASSPHRASE,
    }
}
