//! `unlock`, `lock` and `status`: the commands that start, stop and ask the agent.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use keyvault::agent::client::{AgentClient, terminate_by_pid};
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

/// `unlock`: start the agent, or extend a running one.
pub fn unlock(
    out: &mut Out,
    path: &Path,
    source: &PassphraseSource,
    options: AgentOptions,
) -> std::result::Result<(), RunError> {
    if !keyvault::store::layout::exists(path) {
        return Err(Error::VaultNotFound(path.to_path_buf()).into());
    }
    if let Some(mut client) = AgentClient::connect(path)? {
        client.extend(options.idle_timeout)?;
        if out.json() {
            out.doc(&json!({
                "state": "unlocked",
                "already_unlocked": true,
                "idle_timeout_secs": options.idle_timeout.as_secs(),
            }))?;
        } else {
            out.text(&format!(
                "{} is already unlocked; idle timeout reset to {}\n",
                path.display(),
                short(options.idle_timeout)
            ))?;
        }
        return Ok(());
    }
    let passphrase = source.unlock()?;
    let master = Vault::unlock_master_key(path, &passphrase)?;
    drop(passphrase);
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find this program", e))?;
    let started = start_agent(&exe, path, master, options)?;
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

/// `lock`: wipe the keys and stop the agent.
pub fn lock(out: &mut Out, path: &Path) -> std::result::Result<(), RunError> {
    let was_unlocked = match AgentClient::connect(path) {
        Ok(Some(client)) => match client.lock() {
            Ok(()) => true,
            Err(Error::ProtocolMismatch { .. }) => terminate_by_pid(path)?,
            Err(e) => return Err(e.into()),
        },
        Ok(None) => false,
        Err(Error::VaultNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if out.json() {
        out.doc(&json!({ "state": "locked", "was_unlocked": was_unlocked }))?;
    } else if was_unlocked {
        out.text("Locked: the keys were wiped from memory and the agent stopped\n")?;
    } else {
        out.text("Already locked: no agent runs for this vault\n")?;
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

/// The hidden `agent` subcommand.
pub fn serve(path: &Path, idle_secs: u64, lifetime_secs: u64, accept_rollback: bool) -> Result<()> {
    keyvault::agent::launch::run_agent(
        path,
        AgentOptions {
            idle_timeout: Duration::from_secs(idle_secs.max(1)),
            max_lifetime: Duration::from_secs(lifetime_secs.max(1)),
            accept_rollback,
        },
    )
}
