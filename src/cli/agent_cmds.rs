//! `unlock`, `lock` and `status`: the commands that start, stop and ask the agent.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use keyvault::agent::client::{AgentClient, LockTarget, lock_agents};
use keyvault::agent::launch::start_agent;
use keyvault::agent::server::AgentOptions;
use keyvault::vault::{self, Vault};
use keyvault::{Error, Result};

use super::RunError;
use super::output::{self, Out};
use super::passphrase::PassphraseSource;

fn short(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// How long `unlock` waits for the agent another `unlock` is starting at the same
/// moment (which holds the vault, so that ours could not open it).
const RACE_WAIT: Duration = Duration::from_secs(10);

/// `unlock`: start the agent, or restart the idle timer of a running one (with a new
/// idle timeout only if one is given).
pub fn unlock(
    out: &mut Out,
    path: &Path,
    source: &PassphraseSource,
    timeout: Option<Duration>,
    options: AgentOptions,
) -> std::result::Result<(), RunError> {
    if !keyvault::Vault::exists(path) {
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
    if out.json() {
        out.doc(&json!({
            "state": "unlocked",
            "already_unlocked": false,
            "agent_pid": started.pid,
            "socket": started.socket.display().to_string(),
            "idle_timeout_secs": options.idle_timeout.as_secs(),
            "max_lifetime_secs": options.max_lifetime.as_secs(),
            "memory_locked": started.memory_locked,
        }))?;
    } else {
        out.text(&format!(
            "Unlocked {}; locks after {} idle (at most {})\n",
            path.display(),
            short(options.idle_timeout),
            short(options.max_lifetime)
        ))?;
    }
    Ok(())
}

fn already_unlocked(
    out: &mut Out,
    path: &Path,
    mut client: AgentClient,
    timeout: Option<Duration>,
) -> std::result::Result<(), RunError> {
    let in_force = client.extend(timeout)?;
    if out.json() {
        out.doc(&json!({
            "state": "unlocked",
            "already_unlocked": true,
            "idle_timeout_secs": in_force.as_secs(),
        }))?;
    } else {
        out.text(&format!(
            "{} is already unlocked; it locks after {} idle from now\n",
            path.display(),
            short(in_force)
        ))?;
    }
    Ok(())
}

/// `lock` (`--all`): wipe the keys and stop every agent that holds this vault (or
/// every agent of the user).
pub fn lock(out: &mut Out, path: &Path, all: bool) -> std::result::Result<(), RunError> {
    let target = if all {
        LockTarget::All
    } else {
        LockTarget::Vault(path)
    };
    let report = lock_agents(target)?;
    let stopped = report.stopped.len();
    if out.json() {
        out.doc(&json!({
            "state": if report.failures.is_empty() { "locked" } else { "unlocked" },
            "was_unlocked": stopped > 0 || !report.failures.is_empty(),
            "agents_stopped": report.stopped,
            "failures": report.failures,
        }))?;
    } else if all {
        out.text(&format!(
            "Locked: {stopped} agent(s) stopped, their keys wiped from memory\n"
        ))?;
    } else if stopped > 0 {
        out.text("Locked: the keys were wiped from memory and the agent stopped\n")?;
    } else if report.failures.is_empty() {
        out.text("Already locked: no agent holds this vault\n")?;
    }
    if !report.failures.is_empty() {
        out.flush()?;
        let error = Error::NotLocked(report.failures.join("; "));
        return Err(if out.json() {
            RunError::Reported(error)
        } else {
            error.into()
        });
    }
    Ok(())
}

/// `status`: through the agent when one runs, else read without a passphrase.
pub fn status(out: &mut Out, path: &Path) -> std::result::Result<(), RunError> {
    if let Some(mut client) = AgentClient::connect(path)? {
        let st = client.status()?;
        let state = format!(
            "unlocked, locks in {} (idle timeout {})",
            short(Duration::from_secs(st.idle_left_secs)),
            short(Duration::from_secs(st.idle_timeout_secs))
        );
        if out.json() {
            let mut doc =
                serde_json::to_value(&st.vault).map_err(|e| Error::Internal(e.to_string()))?;
            doc["state"] = json!("unlocked");
            doc["locks_in_secs"] = json!(st.idle_left_secs);
            doc["idle_timeout_secs"] = json!(st.idle_timeout_secs);
            doc["lifetime_left_secs"] = json!(st.lifetime_left_secs);
            doc["agent_pid"] = json!(st.pid);
            out.doc(&doc)?;
        } else {
            out.text(&output::status(&state, &st.vault))?;
            out.text(&format!("agent pid:      {}\n", st.pid))?;
        }
        return Ok(());
    }
    let st = vault::peek_status(path)?;
    if out.json() {
        let mut doc = serde_json::to_value(&st).map_err(|e| Error::Internal(e.to_string()))?;
        doc["state"] = json!("locked");
        out.doc(&doc)?;
    } else {
        out.text(&output::status("locked", &st))?;
    }
    Ok(())
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
pub fn serve(path: &Path, idle_secs: u64, lifetime_secs: u64, accept_rollback: bool) -> Result<()> {
    let never = keyvault::agent::launch::run_agent(
        path,
        AgentOptions {
            idle_timeout: Duration::from_secs(idle_secs.max(1)),
            max_lifetime: Duration::from_secs(lifetime_secs.max(1)),
            accept_rollback,
        },
    )?;
    match never {}
}
