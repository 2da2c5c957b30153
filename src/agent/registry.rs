//! The per-user registry of running agents: one small file per agent in
//! `$XDG_STATE_HOME/keyvault/agents/` (`~/.local/state/keyvault/agents/` by default),
//! naming its pid, the vault it holds (id and path) and its socket.
//!
//! Sockets live in the runtime dir, which differs between sessions of the same user
//! (a desktop session, ssh, cron, sudo); the registry is keyed on the user's home, so
//! `lock` finds an agent started from another session, and one whose vault directory
//! was moved or deleted. It is also what `lock` trusts to stop an agent that cannot be
//! asked (another protocol version): a pid is signalled only when the process behind it
//! is still the one that registered (same start time), runs as this user, and is
//! `keyvault agent --vault PATH` for the vault in question.
//!
//! Entries are written whole (a temporary file created with `O_EXCL | O_NOFOLLOW`,
//! then renamed over the name, which replaces a planted symlink instead of following
//! it) and read with `O_NOFOLLOW`. An entry whose process is gone is removed by
//! whoever reads it. The registry never holds a secret.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The registry's directory, when this process has a state dir.
pub fn dir() -> Option<PathBuf> {
    Some(dirs::state_dir()?.join("keyvault").join("agents"))
}

/// What an agent registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The agent's pid.
    pub pid: u32,
    /// The process's start time (clock ticks since boot, from `/proc/PID/stat`): tells
    /// the agent from a later process given the same pid.
    pub start_time: u64,
    /// The id of the vault it holds (hex).
    pub vault_id: String,
    /// The vault's directory when it was unlocked (canonical).
    pub vault_path: PathBuf,
    /// Its socket.
    pub socket: PathBuf,
    /// The protocol version it speaks.
    pub protocol: u32,
}

/// The largest entry file read.
const MAX_ENTRY_BYTES: u64 = 16 * 1024;

/// The subcommand an agent process runs under. `lock` tells a live agent from an
/// unrelated process that reuses its pid by the command line, so a program that starts
/// agents runs them as `PROGRAM agent --vault PATH …`.
pub const AGENT_SUBCOMMAND: &str = "agent";
const SUFFIX: &str = ".agent";

fn file_name(entry: &Entry) -> String {
    format!("{}.{}{SUFFIX}", entry.vault_id, entry.pid)
}

fn nofollow() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32
}

/// Records `entry`; returns the entry's file, for [`unregister`]. The directory is
/// created 0700 (its parents too, as the state dir's own would be).
pub fn register(entry: &Entry) -> Result<PathBuf> {
    let dir = dir().ok_or_else(|| Error::Internal("no state directory".into()))?;
    register_in(&dir, entry)
}

fn register_in(dir: &Path, entry: &Entry) -> Result<PathBuf> {
    let parent = dir.parent().unwrap_or(dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    let dir = super::private_dir(dir)?;
    let text = serde_json::to_vec(entry).map_err(|e| Error::Internal(e.to_string()))?;
    let target = dir.join(file_name(entry));
    let tmp = dir.join(format!(".tmp-{}", crate::store::layout::random_suffix()?));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nofollow())
            .open(&tmp)?;
        f.write_all(&text)?;
        // rename(2) replaces whatever is at the name, a symlink included, without
        // following it.
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("cannot write {}", target.display()), e));
    }
    Ok(target)
}

/// Removes an entry file (the agent's own, as it stops).
pub fn unregister(file: &Path) {
    let _ = fs::remove_file(file);
}

/// Every entry of a running agent, with its file. Entries of processes that are gone
/// (or whose pid now names another process) are removed; unreadable ones are skipped.
pub fn entries() -> Vec<(PathBuf, Entry)> {
    let Some(dir) = dir() else {
        return Vec::new();
    };
    let Ok(Some(dir)) = super::usable_dir(&dir) else {
        return Vec::new();
    };
    let Ok(listing) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for item in listing.flatten() {
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(SUFFIX) {
            continue;
        }
        let path = item.path();
        let Some(entry) = read_entry(&path) else {
            continue;
        };
        if file_name(&entry) != name {
            continue;
        }
        if start_time(entry.pid) != Some(entry.start_time) {
            unregister(&path);
            continue;
        }
        found.push((path, entry));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn read_entry(path: &Path) -> Option<Entry> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != rustix::process::getuid().as_raw() {
        return None;
    }
    let mut text = Vec::new();
    file.take(MAX_ENTRY_BYTES).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: count the
    // fields after its closing one (which is field 3, the state).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Checks that process `entry.pid` is the agent `entry` describes, before anything
/// signals it: the same process that registered (start time), running as this user,
/// and whose command line is `keyvault agent --vault PATH` with this entry's vault.
/// The error says what did not match.
pub fn verify_agent_process(entry: &Entry) -> std::result::Result<(), String> {
    let pid = entry.pid;
    if start_time(pid) != Some(entry.start_time) {
        return Err(format!(
            "process {pid} is not the one that registered (it ended, or the pid was reused)"
        ));
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the status of process {pid}: {e}"))?;
    let uid = rustix::process::getuid().as_raw();
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if uids.len() < 2 || uids[0] != uid || uids[1] != uid {
        return Err(format!("process {pid} does not run as this user"));
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("cannot read the command line of process {pid}: {e}"))?;
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|b| *b == 0)
        .collect();
    if !is_agent_command_line(&args, &entry.vault_path) {
        return Err(format!(
            "process {pid} is not `keyvault agent --vault {}`",
            entry.vault_path.display()
        ));
    }
    Ok(())
}

/// The vault path on the command line of process `pid` (`keyvault agent --vault
/// PATH`), if it has one.
pub fn agent_vault_path(pid: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|b| *b == 0)
        .collect();
    args.windows(2)
        .find(|w| w[0] == b"--vault")
        .map(|w| PathBuf::from(std::ffi::OsStr::from_bytes(w[1])))
}

/// Whether `args` (argv, split on NULs) is `…/keyvault agent … --vault PATH …`.
fn is_agent_command_line(args: &[&[u8]], vault: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let program_ok = args.first().is_some_and(|a0| {
        let name = Path::new(std::ffi::OsStr::from_bytes(a0))
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let ours = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()));
        name == b"keyvault" || Some(&name) == ours.as_ref()
    });
    let subcommand_ok = args.get(1) == Some(&AGENT_SUBCOMMAND.as_bytes());
    let vault_ok = args
        .windows(2)
        .any(|w| w[0] == b"--vault" && w[1] == vault.as_os_str().as_bytes());
    program_ok && subcommand_ok && vault_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_command_line_names_the_program_the_subcommand_and_the_vault() {
        let vault = Path::new("/home/u/v");
        let ok: Vec<&[u8]> = vec![
            b"/usr/bin/keyvault",
            b"agent",
            b"--vault",
            b"/home/u/v",
            b"--idle-secs",
            b"900",
        ];
        assert!(is_agent_command_line(&ok, vault));
        let other_vault: Vec<&[u8]> = vec![b"/usr/bin/keyvault", b"agent", b"--vault", b"/x"];
        assert!(!is_agent_command_line(&other_vault, vault));
        let not_agent: Vec<&[u8]> = vec![b"/usr/bin/keyvault", b"list", b"--vault", b"/home/u/v"];
        assert!(!is_agent_command_line(&not_agent, vault));
        let other_program: Vec<&[u8]> = vec![b"/bin/sleep", b"agent", b"--vault", b"/home/u/v"];
        assert!(!is_agent_command_line(&other_program, vault));
        // A process that rewrote its argv into one string (as `$0 = …` does) is not it.
        let one_string: Vec<&[u8]> = vec![b"keyvault agent --vault /home/u/v"];
        assert!(!is_agent_command_line(&one_string, vault));
    }

    #[test]
    fn a_symlink_planted_at_the_entry_name_is_replaced_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/keyvault/agents");
        let victim = root.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let entry = Entry {
            pid: std::process::id(),
            start_time: start_time(std::process::id()).unwrap(),
            vault_id: "ab".repeat(16),
            vault_path: root.path().join("vault"),
            socket: root.path().join("s.sock"),
            protocol: 2,
        };
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .recursive(true)
            .create(&dir)
            .unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(file_name(&entry))).unwrap();
        let written = register_in(&dir, &entry).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&written).unwrap().is_file());
        assert_eq!(read_entry(&written), Some(entry));
        // A symlink is never read through either.
        fs::remove_file(&written).unwrap();
        std::os::unix::fs::symlink(&victim, &written).unwrap();
        assert_eq!(read_entry(&written), None);
    }

    #[test]
    fn the_start_time_of_this_process_is_known_and_of_no_process_is_none() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
