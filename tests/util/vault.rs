//! Helpers for the tests of what rewrites or inspects a vault (backup, restore, check,
//! passwd, audit, compact, damage): commands on a vault other than the test's own, raw
//! store edits, and a guard that locks the agent even when a test fails.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use keyvault::store::{Store, Tree};
use serde_json::Value;

use super::{TestEnv, assert_success, contains_bytes, files_under, parse_json};

/// The passphrase a `passwd` test changes to.
pub const NEW_PASSPHRASE: &str = "a much better passphrase, surely";

/// The binary with the passphrase given through `KEYVAULT_PASSPHRASE`.
pub fn with_pass(env: &TestEnv, passphrase: &str) -> Command {
    let mut cmd = env.bare();
    cmd.env("KEYVAULT_PASSPHRASE", passphrase);
    cmd
}

/// The binary with the test passphrase, on the vault at `vault`.
pub fn at(env: &TestEnv, vault: &Path) -> Command {
    let mut cmd = env.kv();
    cmd.arg("--vault").arg(vault);
    cmd
}

/// Runs a command on the vault at `vault` and returns its output.
pub fn run_at<I, S>(env: &TestEnv, vault: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    at(env, vault).args(args).output().expect("run keyvault")
}

/// Runs a command on the vault at `vault` that must succeed; returns its stdout.
pub fn ok_at(env: &TestEnv, vault: &Path, args: &[&str]) -> Vec<u8> {
    let out = run_at(env, vault, args);
    assert_success(
        &out,
        &format!("keyvault --vault {} {}", vault.display(), args.join(" ")),
    );
    out.stdout
}

/// Runs `--json` plus a command on the vault at `vault` that must succeed.
pub fn json_at(env: &TestEnv, vault: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let stdout = ok_at(env, vault, &all);
    parse_json(&stdout, &all.join(" "))
}

/// The entries of `audit --json` of the vault at `vault`.
pub fn audit_of(env: &TestEnv, vault: &Path) -> Vec<Value> {
    json_at(env, vault, &["audit"])["entries"]
        .as_array()
        .expect("audit --json has an entries array")
        .clone()
}

/// A key of a test vault: user, name, and whether it has a public half to export.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef {
    /// The user.
    pub user: &'static str,
    /// The key name (= its type).
    pub name: &'static str,
    /// Whether `export --public` applies.
    pub asymmetric: bool,
}

/// Every export of every key (the default encoding, and `--public` of asymmetric
/// keys), in order, from the vault at `vault`.
pub fn exports_of(env: &TestEnv, vault: &Path, keys: &[KeyRef]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in keys {
        out.push(ok_at(env, vault, &["export", k.user, k.name]));
        if k.asymmetric {
            out.push(ok_at(env, vault, &["export", k.user, k.name, "--public"]));
        }
    }
    out
}

/// Names in `parent` that start with `.NAME.` — the hidden work dirs and temp files
/// keyvault makes beside `NAME`.
pub fn hidden_siblings(parent: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.");
    let mut found: Vec<String> = fs::read_dir(parent)
        .expect("read a dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    found.sort();
    found
}

/// Opens the test's vault database directly (no agent may run). sled's background
/// threads keep the file lock of a database this process just closed for a moment, so
/// "in use" is retried briefly.
pub fn open_store(env: &TestEnv) -> Store {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(&env.db_dir()) {
            Ok(store) => return store,
            Err(keyvault::Error::VaultInUse(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open the vault's database: {e:?}"),
        }
    }
}

/// Waits until nothing holds the lock of the test's vault database (sled takes an
/// exclusive `flock` on its `db` file), so the next command does not find it in use.
pub fn wait_until_closed(env: &TestEnv) {
    use rustix::fs::{FlockOperation, flock};
    let deadline = Instant::now() + Duration::from_secs(5);
    let file = fs::File::open(env.db_dir().join("db")).expect("open the db file");
    loop {
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = flock(&file, FlockOperation::Unlock);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the vault database stays locked after the test closed it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens the test's vault database directly, lets `edit` change it, then flushes and
/// closes it.
pub fn edit_store(env: &TestEnv, edit: impl FnOnce(&Store)) {
    let store = open_store(env);
    edit(&store);
    store.flush().expect("flush the edited database");
    drop(store);
    wait_until_closed(env);
}

/// Every entry of one tree of the test's vault (no agent may run).
pub fn tree_entries(env: &TestEnv, tree: Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    let entries = open_store(env).entries(tree).expect("read a tree");
    wait_until_closed(env);
    entries
}

/// Runs `lock` when dropped, so that a failing test does not leave its agent running.
pub struct AgentGuard<'a>(pub &'a TestEnv);

impl Drop for AgentGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.bare().arg("lock").output();
    }
}

/// Unlocks the test's vault (agent with a short idle timeout) and returns a guard
/// that locks it again.
pub fn unlock(env: &TestEnv) -> AgentGuard<'_> {
    env.ok(["unlock", "--timeout", "2m"]);
    AgentGuard(env)
}

/// The state of the agent as `status --json` reports it.
pub fn agent_state(env: &TestEnv) -> String {
    let out = env
        .bare()
        .args(["--json", "status"])
        .output()
        .expect("status");
    assert_success(&out, "status");
    parse_json(&out.stdout, "status")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The sealed values of the key records a `gen` adds, read from sled before and after.
pub fn sealed_values_added_by(env: &TestEnv, gens: &[&[&str]]) -> Vec<Vec<u8>> {
    let before: Vec<Vec<u8>> = tree_entries(env, Tree::Keys)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for g in gens {
        env.ok(*g);
    }
    let added: Vec<Vec<u8>> = tree_entries(env, Tree::Keys)
        .into_iter()
        .filter(|(k, _)| !before.contains(k))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(added.len(), gens.len(), "each gen adds one key record");
    added
}

/// A 32-byte window from the middle of each sealed value.
pub fn windows_of(values: &[Vec<u8>]) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|v| {
            assert!(v.len() >= 64, "a sealed key record is longer than 64 bytes");
            let mid = v.len() / 2;
            v[mid - 16..mid + 16].to_vec()
        })
        .collect()
}

/// How many of `windows` occur in some file under `dir`.
pub fn occurrences(dir: &Path, windows: &[Vec<u8>]) -> usize {
    let files: Vec<Vec<u8>> = files_under(dir)
        .iter()
        .map(|f| fs::read(f).expect("read a vault file"))
        .collect();
    windows
        .iter()
        .filter(|w| files.iter().any(|f| contains_bytes(f, w)))
        .count()
}
