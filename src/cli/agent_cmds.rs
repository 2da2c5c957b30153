//! `unlock`, `lock` and `status`: the commands that start, stop and ask the agent.

use std::path::Path;
use std::time::{Duration, Instant};

use keyvault::agent::client::{AgentClient, LockTarget, lock_agents};
use keyvault::agent::launch::start_agent;
use keyvault::agent::server::{AgentOptions, DEFAULT_IDLE_TIMEOUT};
use keyvault::vault::{self, Vault};
use keyvault::{Error, Result};

use super::args::Cli;
use super::output::Out;
use super::report::{AgentFacts, AlreadyUnlocked, Locked, Status, Unlocked};
use super::session::{passphrase_source, vault_path};
use super::{CmdResult, RunError, SUCCESS};

/// How long `unlock` waits for the agent another `unlock` is starting at the same
/// moment (which holds the vault, so that ours could not open it).
const RACE_WAIT: Duration = Duration::from_secs(10);

/// `unlock`: start the agent, or restart the idle timer of a running one (with a new
/// idle timeout only if one is given).
pub(crate) fn unlock(
    out: &mut Out,
    cli: &Cli,
    timeout: Option<Duration>,
    max_lifetime: Duration,
) -> CmdResult {
    let path = &vault_path(cli)?;
    let source = passphrase_source(cli);
    let options = AgentOptions {
        idle_timeout: timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
        max_lifetime,
        accept_rollback: cli.accept_rollback,
    };
    if !Vault::exists(path) {
        return Err(Error::VaultNotFound(path.to_path_buf()).into());
    }
    if let Some(client) = AgentClient::connect(path)? {
        return already_unlocked(out, path, client, timeout);
    }
    // Say where the socket cannot go before asking for a passphrase.
    keyvault::agent::private_dir(&keyvault::agent::preferred_dir())?;
    let passphrase = source.unlock()?;
    let master = Vault::unlock_master_key(path, &passphrase)?;
    drop(passphrase);
    let started = match start_agent(agent_command(path, options)?, path, master) {
        Ok(s) => s,
        Err(e @ (Error::VaultInUse(_) | Error::AlreadyExists(_))) => {
            // Another `unlock` at the same moment may have won the vault: then it is
            // unlocked, which is what was asked.
            let deadline = Instant::now() + RACE_WAIT;
            loop {
                if let Some(client) = AgentClient::connect(path)? {
                    return already_unlocked(out, path, client, timeout);
                }
                if Instant::now() >= deadline {
                    return Err(e.into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(e) => return Err(e.into()),
    };
    if !started.memory_locked {
        eprintln!(
            "warning: the agent could not lock its key memory in RAM (mlock); keys could reach swap"
        );
    }
    out.emit(&Unlocked {
        agent_pid: started.pid,
        already_unlocked: false,
        idle_timeout_secs: options.idle_timeout.as_secs(),
        max_lifetime_secs: options.max_lifetime.as_secs(),
        memory_locked: started.memory_locked,
        socket: started.socket.display().to_string(),
        ssh_socket: super::ssh_cmds::socket_path(&started.socket),
        state: "unlocked",
        vault: path.display().to_string(),
    })?;
    Ok(SUCCESS)
}

fn already_unlocked(
    out: &mut Out,
    path: &Path,
    mut client: AgentClient,
    timeout: Option<Duration>,
) -> CmdResult {
    let in_force = client.extend(timeout)?;
    out.emit(&AlreadyUnlocked {
        already_unlocked: true,
        idle_timeout_secs: in_force.as_secs(),
        ssh_socket: super::ssh_cmds::socket_path(client.socket_path()),
        state: "unlocked",
        vault: path.display().to_string(),
    })?;
    Ok(SUCCESS)
}

/// `lock` (`--all`): wipe the keys and stop every agent that holds this vault (or
/// every agent of the user).
pub(crate) fn lock(out: &mut Out, cli: &Cli, all: bool) -> CmdResult {
    let path = vault_path(cli)?;
    let target = if all {
        LockTarget::All
    } else {
        LockTarget::Vault(&path)
    };
    let report = lock_agents(target)?;
    let failed = !report.failures.is_empty();
    let locked = Locked {
        was_unlocked: !report.stopped.is_empty() || failed,
        agents_stopped: report.stopped,
        failures: report.failures,
        state: if failed { "unlocked" } else { "locked" },
        all,
    };
    out.emit(&locked)?;
    if failed {
        out.flush()?;
        let error = Error::NotLocked(locked.failures.join("; "));
        return Err(RunError::after_report(out, error));
    }
    Ok(SUCCESS)
}

/// `status`: through the agent when one runs, else read without a passphrase.
pub(crate) fn status(out: &mut Out, cli: &Cli) -> CmdResult {
    let path = vault_path(cli)?;
    let status = match AgentClient::connect(&path)? {
        Some(mut client) => {
            let st = client.status()?;
            Status {
                vault: st.vault,
                state: "unlocked",
                agent: Some(AgentFacts {
                    agent_pid: st.pid,
                    idle_timeout_secs: st.idle_timeout_secs,
                    lifetime_left_secs: st.lifetime_left_secs,
                    locks_in_secs: st.idle_left_secs,
                }),
            }
        }
        None => Status {
            vault: vault::peek_status(&path)?,
            state: "locked",
            agent: None,
        },
    };
    out.emit(&status)?;
    Ok(SUCCESS)
}

/// The command line of an agent for the vault at `path`: this program, with the hidden
/// `agent` subcommand and the options as its flags (read back by [`serve`]).
fn agent_command(path: &Path, options: AgentOptions) -> Result<std::process::Command> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find this program", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(keyvault::agent::registry::AGENT_SUBCOMMAND)
        .arg("--vault")
        .arg(keyvault::vault::canonical_path(path)?)
        .arg("--idle-secs")
        .arg(options.idle_timeout.as_secs().to_string())
        .arg("--lifetime-secs")
        .arg(options.max_lifetime.as_secs().to_string())
        .args(options.accept_rollback.then_some("--accept-rollback"));
    Ok(cmd)
}

/// The hidden `agent` subcommand. It returns only if the agent could not start; the
/// error then ends the process with its exit code, as any command's.
pub(crate) fn serve(cli: &Cli, idle_secs: u64, lifetime_secs: u64) -> CmdResult {
    let never = keyvault::agent::launch::run_agent(
        &vault_path(cli)?,
        AgentOptions {
            idle_timeout: Duration::from_secs(idle_secs.max(1)),
            max_lifetime: Duration::from_secs(lifetime_secs.max(1)),
            accept_rollback: cli.accept_rollback,
        },
        end_agent_process,
    )?;
    match never {}
}

/// How the agent process ends once it has locked (its keys wiped, its files removed):
/// the process is the binary's to end, not the library's.
fn end_agent_process() -> ! {
    std::process::exit(0)
}
