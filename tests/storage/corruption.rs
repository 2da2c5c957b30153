//! Corruption and tampering: damage the files of a vault directory (bit flips,
//! truncations, zeroed ranges in sled's `db`, `conf`, `snap.*` and blobs, at seeded
//! random positions) and tamper with its records through sled directly (flipped bytes in
//! sealed values, records swapped between users or keys, moved to another tree, a
//! wrapped master key from another vault). Then every command — `status`, `list`,
//! `export`, `check`, `gen`, … — either works, with the exact original results, or fails
//! with exit 7 (8 for unreadable files; 3 where a damaged header cannot be told from a
//! wrong passphrase) and one `error:` line. None panics, none returns a wrong key or a
//! wrong listing silently, none runs past its time limit.
//!
//! Each test prints its seed; `KEYVAULT_TEST_SEED` repeats a run, and
//! `KEYVAULT_CORRUPTION_CASES` sets the number of random file-damage cases (100).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::util;
use crate::util::process::{Finished, env_number, run_limited};
use crate::util::rng::Rng;
use crate::util::vault::{edit_store, tree_entries, wait_until_closed};
use crate::util::{PASSPHRASE, TestEnv, copy_dir, files_under};
use keyvault::keytype::KeyType;
use keyvault::store::migrate::CURRENT_FORMAT;
use keyvault::store::{Batch, Tree};
use keyvault::vault::Vault;

/// No command may run longer than this on a damaged vault (they take well under a
/// second).
const COMMAND_LIMIT: Duration = Duration::from_secs(10);
/// Random file-damage cases per run.
const DEFAULT_CASES: u64 = 100;
/// Keys of the user whose revocation receipt is big enough for a blob file.
const BIG_RECEIPT_KEYS: usize = 1800;

/// One key version of the template vault, and what `export` prints for it.
#[derive(Clone, Debug)]
struct Known {
    user: &'static str,
    name: &'static str,
    version: Option<u32>,
    export: Vec<u8>,
}

/// A key as `list --json` shows it: its type and version fingerprints.
type Listed = BTreeMap<(String, String), (String, Vec<String>)>;

/// A vault with keys of every kind, an older version, an import, a revoked user and an
/// audit log; and everything its commands print.
struct Template {
    env: TestEnv,
    known: Vec<Known>,
    /// The database key of each key record (and of dave's, revoked since).
    db_keys: BTreeMap<(String, String), Vec<u8>>,
    listed: Listed,
    revoked: BTreeSet<String>,
    status: Value,
}

/// The database keys of the keys tree.
fn key_ids(env: &TestEnv) -> BTreeSet<Vec<u8>> {
    tree_entries(env, Tree::Keys)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Runs a command that adds one key and returns the key's database key.
fn added_key(env: &TestEnv, args: &[&str]) -> Vec<u8> {
    let before = key_ids(env);
    env.ok(args);
    let added: Vec<Vec<u8>> = key_ids(env).difference(&before).cloned().collect();
    assert_eq!(added.len(), 1, "{args:?} adds one key record");
    added.into_iter().next().unwrap_or_default()
}

fn build_template(big_key: bool) -> Template {
    let env = TestEnv::new();
    env.init();
    let mut db_keys = BTreeMap::new();
    let mut add = |user: &str, name: &str, args: &[&str]| {
        db_keys.insert((user.to_string(), name.to_string()), added_key(&env, args));
    };
    add("alice", "fernet", &["gen", "alice"]);
    env.ok(["rotate", "alice", "fernet"]);
    add(
        "alice",
        "aes256-gcm",
        &["gen", "alice", "--type", "aes256-gcm"],
    );
    add("bob", "ed25519", &["gen", "bob", "--type", "ed25519"]);
    let material = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode([0x5au8; 32])
    );
    let file = env.write_private("imported.key", material.as_bytes());
    add(
        "bob",
        "imported",
        &[
            "import",
            "bob",
            "imported",
            "--type",
            "chacha20-poly1305",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    add("carol", "rsa-2048", &["gen", "carol", "--type", "rsa-2048"]);
    add("dave", "fernet", &["gen", "dave"]);
    env.ok(["revoke", "dave", "--reason", "left"]);
    if big_key {
        // A user with many keys, revoked: the receipt lists every destroyed key, so the
        // revocation record outgrows sled's inline limit (a quarter of a 512 KiB segment)
        // and sled keeps it in a blob file.
        let vault = Vault::open(&env.vault(), PASSPHRASE.as_bytes()).expect("open the vault");
        vault.set_deferred_flush(true);
        for i in 0..BIG_RECEIPT_KEYS {
            vault
                .generate("mallory", Some(&format!("k{i:04}")), KeyType::Fernet)
                .expect("gen");
        }
        vault.flush().expect("flush");
        drop(vault);
        wait_until_closed(&env);
        env.ok(["revoke", "mallory", "--reason", "a long receipt"]);
        // Rewrite the database, so that it holds the current pages only and copies of
        // it are quick.
        env.ok(["compact"]);
    }
    let mut known = vec![
        Known {
            user: "alice",
            name: "fernet",
            version: None,
            export: Vec::new(),
        },
        Known {
            user: "alice",
            name: "fernet",
            version: Some(1),
            export: Vec::new(),
        },
        Known {
            user: "alice",
            name: "aes256-gcm",
            version: None,
            export: Vec::new(),
        },
        Known {
            user: "bob",
            name: "ed25519",
            version: None,
            export: Vec::new(),
        },
        Known {
            user: "bob",
            name: "imported",
            version: None,
            export: material.into_bytes(),
        },
        Known {
            user: "carol",
            name: "rsa-2048",
            version: None,
            export: Vec::new(),
        },
    ];
    for k in &mut known {
        let out = env.ok_bytes(export_args(k));
        if k.export.is_empty() {
            k.export = out;
        } else {
            assert_eq!(out, k.export, "the import exports as given");
        }
    }
    let listed = parse_listed(&env.json(["list"])).expect("the template lists");
    let revoked = parse_revoked(&env.json(["revoked"]));
    let status = env.json(["status"]);
    assert_eq!(env.json(["check"])["ok"], true);
    Template {
        env,
        known,
        db_keys,
        listed,
        revoked,
        status,
    }
}

fn export_args(k: &Known) -> Vec<String> {
    let mut a = vec!["export".to_string(), k.user.into(), k.name.into()];
    if let Some(v) = k.version {
        a.push("--version".into());
        a.push(v.to_string());
    }
    a
}

fn parse_listed(doc: &Value) -> Result<Listed, String> {
    let mut out = Listed::new();
    for k in doc["keys"]
        .as_array()
        .ok_or_else(|| format!("no keys array: {doc}"))?
    {
        let fps = k["versions"]
            .as_array()
            .ok_or_else(|| format!("no versions: {k}"))?
            .iter()
            .map(|v| v["fingerprint"].as_str().unwrap_or_default().to_string())
            .collect();
        out.insert(
            (
                k["user"].as_str().unwrap_or_default().to_string(),
                k["name"].as_str().unwrap_or_default().to_string(),
            ),
            (k["type"].as_str().unwrap_or_default().to_string(), fps),
        );
    }
    Ok(out)
}

fn parse_revoked(doc: &Value) -> BTreeSet<String> {
    doc["revoked"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["user"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What a command must print when it succeeds.
#[derive(Clone, Debug)]
enum Expect {
    /// `status --json`: the template's format and counts.
    Status,
    /// `list --json`: the template's keys and versions.
    List,
    /// `export`: these exact bytes.
    Export(Vec<u8>),
    /// `check --json`: a report saying ok (exit 0 only if nothing is wrong).
    Check,
    /// `revoked --json`: the template's revoked users.
    Revoked,
    /// `is-revoked USER`: 0 (revoked) or 1 (not), as in the template.
    IsRevoked(bool),
    /// A write (`gen` of a new user): success is fine.
    Write,
}

/// One command to run on a damaged vault.
#[derive(Clone, Debug)]
struct Probe {
    args: Vec<String>,
    expect: Expect,
}

fn probe(args: &[&str], expect: Expect) -> Probe {
    Probe {
        args: args.iter().map(|s| s.to_string()).collect(),
        expect,
    }
}

/// The commands run on every damaged vault, reads first, then `check`, then a write.
/// `status` reads without the passphrase, so it cannot tell a tampered record from a
/// genuine one: its counts are compared only when `strict_status` (damaged files, where
/// a record lost silently would show there).
fn probes(tpl: &Template, strict_status: bool) -> Vec<Probe> {
    let status = if strict_status {
        Expect::Status
    } else {
        Expect::Write
    };
    let mut list = vec![
        probe(&["--json", "status"], status),
        probe(&["--json", "list"], Expect::List),
    ];
    for k in &tpl.known {
        let args = export_args(k);
        list.push(Probe {
            args,
            expect: Expect::Export(k.export.clone()),
        });
    }
    list.push(probe(&["--json", "revoked"], Expect::Revoked));
    for user in &tpl.revoked {
        list.push(probe(&["is-revoked", user], Expect::IsRevoked(true)));
    }
    list.push(probe(&["is-revoked", "alice"], Expect::IsRevoked(false)));
    list.push(probe(&["--json", "check"], Expect::Check));
    list.push(probe(&["gen", "newcomer"], Expect::Write));
    list
}

/// What one command did on a damaged vault.
#[derive(Debug)]
struct Outcome {
    args: String,
    code: Option<i32>,
    /// Why the outcome is not acceptable, if it is not.
    problem: Option<String>,
}

/// Runs a command on `vault` with the test passphrase, under the time limit.
fn run_on(tpl: &Template, vault: &Path, args: &[String], limit: Duration) -> Finished {
    let mut cmd = tpl.env.bare_std();
    cmd.env("KEYVAULT_PASSPHRASE", PASSPHRASE)
        .arg("--vault")
        .arg(vault)
        .args(args);
    run_limited(&mut cmd, limit)
}

/// Judges one command's outcome. `allowed` are the failure codes accepted (7, 8, and 3
/// where a damaged header reads as a wrong passphrase).
fn judge(tpl: &Template, p: &Probe, fin: &Finished, allowed: &[i32]) -> Option<String> {
    if fin.timed_out {
        return Some(format!(
            "ran longer than {:?} (a loop or a hang)",
            fin.elapsed
        ));
    }
    if fin.panicked() {
        return Some(format!("panicked: {}", fin.describe()));
    }
    if let Some(sig) = fin.status.signal() {
        return Some(format!("died of signal {sig}: {}", fin.describe()));
    }
    let code = fin.code().unwrap_or(-1);
    let failure_ok = |code: i32| -> Option<String> {
        if !allowed.contains(&code) {
            return Some(format!("exit {code}: {}", fin.describe()));
        }
        if !fin.first_stderr_line().starts_with("error:") {
            return Some(format!("no `error:` line: {}", fin.describe()));
        }
        None
    };
    let json = || serde_json::from_slice::<Value>(&fin.stdout);
    match (&p.expect, code) {
        (Expect::Export(bytes), 0) => (fin.stdout != *bytes).then(|| {
            format!(
                "returned a wrong key silently ({} bytes, expected {})",
                fin.stdout.len(),
                bytes.len()
            )
        }),
        (Expect::List, 0) => match json()
            .map_err(|e| e.to_string())
            .and_then(|d| parse_listed(&d))
        {
            Ok(l) if l == tpl.listed => None,
            Ok(l) => Some(format!(
                "listed other keys silently: {:?}",
                diff_keys(&tpl.listed, &l)
            )),
            Err(e) => Some(format!("printed no listing: {e}")),
        },
        (Expect::Status, 0) => match json() {
            Ok(d) => {
                let fields = ["format_version", "users", "keys", "revoked_users"];
                let differ: Vec<String> = fields
                    .iter()
                    .filter(|f| d[**f] != tpl.status[**f])
                    .map(|f| format!("{f} {} (was {})", d[*f], tpl.status[*f]))
                    .collect();
                (!differ.is_empty())
                    .then(|| format!("reported other facts silently: {}", differ.join(", ")))
            }
            Err(e) => Some(format!("printed no JSON: {e}")),
        },
        (Expect::Revoked, 0) => match json() {
            Ok(d) if parse_revoked(&d) == tpl.revoked => None,
            Ok(d) => Some(format!(
                "listed other revoked users silently: {:?}",
                parse_revoked(&d)
            )),
            Err(e) => Some(format!("printed no JSON: {e}")),
        },
        (Expect::IsRevoked(revoked), 0 | 1) => {
            (*revoked != (code == 0)).then(|| format!("answered {code} silently"))
        }
        (Expect::Check, 0) => match json() {
            Ok(d) if d["ok"] == true => None,
            Ok(d) => Some(format!("exit 0 with problems: {d}")),
            Err(e) => Some(format!("printed no JSON: {e}")),
        },
        (Expect::Write, 0) => None,
        (_, code) => failure_ok(code),
    }
}

fn diff_keys(want: &Listed, got: &Listed) -> Vec<String> {
    let mut out = Vec::new();
    for (id, v) in want {
        match got.get(id) {
            None => out.push(format!("{}/{} missing", id.0, id.1)),
            Some(g) if g != v => out.push(format!("{}/{} changed", id.0, id.1)),
            _ => {}
        }
    }
    for id in got.keys() {
        if !want.contains_key(id) {
            out.push(format!("{}/{} appeared", id.0, id.1));
        }
    }
    out
}

/// Hangs seen so far in this test binary: after a few (the test fails anyway), later
/// commands get a shorter limit, so that a command that always hangs on some damage
/// does not hold the run up for the full limit in every case.
static HANGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const HANGS_AT_FULL_LIMIT: usize = 3;
const LIMIT_AFTER_HANGS: Duration = Duration::from_secs(3);

/// Runs every probe on `vault`, in order, and judges each.
fn run_probes(tpl: &Template, vault: &Path, list: &[Probe], allowed: &[i32]) -> Vec<Outcome> {
    use std::sync::atomic::Ordering;
    list.iter()
        .map(|p| {
            let limit = if HANGS.load(Ordering::Relaxed) < HANGS_AT_FULL_LIMIT {
                COMMAND_LIMIT
            } else {
                LIMIT_AFTER_HANGS
            };
            let fin = run_on(tpl, vault, &p.args, limit);
            if fin.timed_out {
                HANGS.fetch_add(1, Ordering::Relaxed);
            }
            Outcome {
                args: p.args.join(" "),
                code: fin.code(),
                problem: judge(tpl, p, &fin, allowed),
            }
        })
        .collect()
}

/// A fresh copy of the template vault under `name`.
fn fresh_copy(tpl: &Template, name: &str) -> PathBuf {
    let dir = tpl.env.root().join("cases").join(name);
    copy_dir(&tpl.env.vault(), &dir);
    dir
}

/// How a file is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Flip these bits (byte offset, bit).
    Flip(Vec<(usize, u8)>),
    /// Cut the file to this length.
    Truncate(usize),
    /// Zero this many bytes from this offset.
    Zero(usize, usize),
    /// Overwrite this many bytes from this offset with random ones.
    Garbage(usize, usize),
}

fn apply_damage(path: &Path, damage: &Damage, rng: &mut Rng) {
    let mut bytes = fs::read(path).expect("read a vault file");
    match damage {
        Damage::Flip(bits) => {
            for (at, bit) in bits {
                bytes[*at] ^= 1 << bit;
            }
        }
        Damage::Truncate(len) => bytes.truncate(*len),
        Damage::Zero(at, n) => bytes[*at..*at + *n].fill(0),
        Damage::Garbage(at, n) => {
            for b in &mut bytes[*at..*at + *n] {
                *b = rng.below(256) as u8;
            }
        }
    }
    fs::write(path, bytes).expect("write a damaged vault file");
}

/// One past the last non-zero byte: sled preallocates its segments, so most of a small
/// `db` file is zeros that no reader looks at.
fn used_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// Draws a damage for a file of these bytes, mostly within its used part.
fn draw_damage(rng: &mut Rng, bytes: &[u8]) -> Damage {
    let len = bytes.len();
    let used = used_len(bytes).max(1);
    let pos = |rng: &mut Rng| -> usize {
        if rng.below(10) < 8 {
            rng.below(used.min(len) as u64) as usize
        } else {
            rng.below(len as u64) as usize
        }
    };
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(3) as usize;
            let first = pos(rng);
            let bits = (0..n)
                .map(|i| {
                    // Sometimes clustered, sometimes spread.
                    let at = if i == 0 || rng.below(2) == 0 {
                        first
                    } else {
                        pos(rng)
                    };
                    (at, rng.below(8) as u8)
                })
                .collect();
            Damage::Flip(bits)
        }
        1 => Damage::Truncate(if rng.below(10) == 0 { 0 } else { pos(rng) }),
        2 => {
            let at = pos(rng);
            let n = 1 + rng.below((len - at).min(4096) as u64) as usize;
            Damage::Zero(at, n)
        }
        _ => {
            let at = pos(rng);
            let n = 1 + rng.below((len - at).min(64) as u64) as usize;
            Damage::Garbage(at, n)
        }
    }
}

/// Names a file of the vault by its role (the database's files by their name in `db/`).
fn role(rel: &Path) -> String {
    let s = rel.display().to_string();
    let s = s.strip_prefix("db/").map(str::to_string).unwrap_or(s);
    if s.starts_with("snap.") {
        "snap.*".into()
    } else if s.starts_with("blobs") {
        "blobs/*".into()
    } else {
        s
    }
}

#[test]
fn damaged_vault_files_fail_cleanly_or_work_exactly() {
    let tpl = build_template(true);
    let list = probes(&tpl, true);
    let files: Vec<PathBuf> = files_under(&tpl.env.vault())
        .into_iter()
        .map(|f| {
            f.strip_prefix(tpl.env.vault())
                .expect("under the vault")
                .to_path_buf()
        })
        .collect();
    let roles: BTreeSet<String> = files.iter().map(|f| role(f)).collect();
    for needed in ["db", "conf", "snap.*", "blobs/*", "header"] {
        assert!(
            roles.contains(needed),
            "the template vault has no {needed} file to damage: {files:?}"
        );
    }
    let mut rng = Rng::seeded("file damage");
    let cases = env_number("KEYVAULT_CORRUPTION_CASES", DEFAULT_CASES);
    let mut problems = Vec::new();
    // role → (cases, commands that worked, failure exit codes seen)
    let mut tally: BTreeMap<String, (u64, u64, BTreeMap<i32, u64>)> = BTreeMap::new();
    let mut by_role: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in &files {
        by_role.entry(role(f)).or_default().push(f.clone());
    }
    for (role, files) in &by_role {
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| fs::metadata(tpl.env.vault().join(f)).map_or(0, |m| m.len()))
            .collect();
        println!("file damage: the template has {role}: sizes {sizes:?}");
    }
    // Most cases on `db`, where the records live; the rest shared by the others.
    const CYCLE: [&str; 10] = [
        "db", "snap.*", "db", "conf", "db", "blobs/*", "db", "snap.*", "header", "db",
    ];
    // Within a role, the files in turn (a stale blob is read by nothing).
    let mut turn: BTreeMap<&str, usize> = BTreeMap::new();
    for case in 0..cases {
        let role_name = CYCLE[case as usize % CYCLE.len()];
        let group = &by_role[role_name];
        let t = turn.entry(role_name).or_default();
        let rel = &group[*t % group.len()];
        *t += 1;
        let dir = fresh_copy(&tpl, &format!("f{case:03}"));
        let path = dir.join(rel);
        let bytes = fs::read(&path).expect("read a vault file");
        if bytes.is_empty() {
            continue;
        }
        let damage = draw_damage(&mut rng, &bytes);
        apply_damage(&path, &damage, &mut rng);
        let outcomes = run_probes(&tpl, &dir, &list, &[3, 7, 8]);
        let t = tally.entry(role(rel)).or_default();
        t.0 += 1;
        for o in &outcomes {
            match o.code {
                Some(0) | Some(1) if o.problem.is_none() => t.1 += 1,
                Some(c) => *t.2.entry(c).or_default() += 1,
                None => *t.2.entry(-1).or_default() += 1,
            }
            if let Some(p) = &o.problem {
                problems.push(format!(
                    "case {case}: {} {damage:?}: `{}`: {p}",
                    rel.display(),
                    o.args
                ));
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
    for (role, (n, worked, failed)) in &tally {
        println!(
            "file damage: {role}: {n} cases; commands that worked exactly: {worked}; failures by exit code: {failed:?}"
        );
    }
    println!(
        "file damage: {cases} cases of {} commands each; {} problems",
        list.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A copy of the template, tampered with through sled, then probed with `extra` probes
/// too; returns the outcomes by command.
fn tamper(
    tpl: &Template,
    edit: impl FnOnce(&keyvault::store::Store),
    extra: &[Probe],
    allowed: &[i32],
) -> BTreeMap<String, Outcome> {
    let case = TestEnv::new();
    copy_dir(&tpl.env.vault(), &case.vault());
    edit_store(&case, edit);
    let mut list = probes(tpl, false);
    list.extend_from_slice(extra);
    run_probes(tpl, &case.vault(), &list, allowed)
        .into_iter()
        .map(|o| (o.args.clone(), o))
        .collect()
}

/// Problems of a tamper case: every outcome must be acceptable (but for the
/// `tolerated` (command, exit code) pairs), and the `detected` commands must fail with
/// exit 7.
fn tamper_problems(
    name: &str,
    outcomes: &BTreeMap<String, Outcome>,
    detected: &[String],
    tolerated: &[(String, i32)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for o in outcomes.values() {
        if tolerated
            .iter()
            .any(|(args, code)| *args == o.args && o.code == Some(*code))
        {
            continue;
        }
        if let Some(p) = &o.problem {
            problems.push(format!("{name}: `{}`: {p}", o.args));
        }
    }
    for d in detected {
        match outcomes.get(d) {
            Some(o) if o.code == Some(7) => {}
            Some(o) => problems.push(format!(
                "{name}: `{d}` did not detect it: exit {:?}{}",
                o.code,
                o.problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            )),
            None => problems.push(format!("{name}: no outcome for `{d}`")),
        }
    }
    problems
}

/// The `export` commands of one key (every known version).
fn exports_of(tpl: &Template, user: &str, name: &str) -> Vec<String> {
    tpl.known
        .iter()
        .filter(|k| k.user == user && k.name == name)
        .map(|k| export_args(k).join(" "))
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const LIST: &str = "--json list";
const CHECK: &str = "--json check";

fn db_key(tpl: &Template, user: &str, name: &str) -> Vec<u8> {
    tpl.db_keys
        .get(&(user.to_string(), name.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no db key for {user}/{name}"))
}

fn value_of(tpl: &Template, tree: Tree, key: &[u8]) -> Vec<u8> {
    tree_entries(&tpl.env, tree)
        .into_iter()
        .find(|(k, _)| k.as_slice() == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no record under that key in {tree:?}"))
}

fn put(tree: Tree, key: &[u8], value: Vec<u8>) -> Batch {
    let mut b = Batch::new();
    b.insert(tree, key.to_vec(), value);
    b
}

#[test]
fn flipped_bytes_in_sealed_records_are_detected() {
    let tpl = build_template(false);
    let mut rng = Rng::seeded("record flips");
    let mut problems = Vec::new();
    let mut cases = 0;
    let dave_hash = db_key(&tpl, "dave", "fernet")[..32].to_vec();
    // Each key record, dave's revocation record, and audit entries and the chain head.
    let mut targets: Vec<(String, Tree, Vec<u8>, Vec<String>)> = Vec::new();
    for ((user, name), key) in &tpl.db_keys {
        if user == "dave" {
            continue;
        }
        let mut detected = exports_of(&tpl, user, name);
        detected.push(LIST.into());
        detected.push(CHECK.into());
        targets.push((
            format!("key {user}/{name}"),
            Tree::Keys,
            key.clone(),
            detected,
        ));
    }
    targets.push((
        "dave's revocation".into(),
        Tree::Revoked,
        dave_hash,
        vec![
            "--json revoked".into(),
            "is-revoked dave".into(),
            CHECK.into(),
        ],
    ));
    let audit = tree_entries(&tpl.env, Tree::Audit);
    for i in [0, audit.len() / 2, audit.len() - 1] {
        targets.push((
            format!("audit entry {}", i + 1),
            Tree::Audit,
            audit[i].0.clone(),
            vec![CHECK.into()],
        ));
    }
    targets.push((
        "audit chain head".into(),
        Tree::Meta,
        b"audit-head".to_vec(),
        vec![CHECK.into()],
    ));
    for (what, tree, key, detected) in &targets {
        let original = value_of(&tpl, *tree, key);
        for _ in 0..3 {
            let at = rng.below(original.len() as u64) as usize;
            let bit = rng.below(8) as u8;
            let mut v = original.clone();
            v[at] ^= 1 << bit;
            let name = format!("{what}, byte {at} of {}, bit {bit}", original.len());
            let outcomes = tamper(
                &tpl,
                |s| s.apply(&put(*tree, key, v)).expect("apply"),
                &[],
                &[7],
            );
            problems.extend(tamper_problems(&name, &outcomes, detected, &[]));
            cases += 1;
        }
        // Cut short, emptied, or replaced by random bytes of the same length.
        let random: Vec<u8> = (0..original.len()).map(|_| rng.below(256) as u8).collect();
        for (how, v) in [
            ("cut short", original[..original.len() / 2].to_vec()),
            ("emptied", Vec::new()),
            ("random bytes", random),
        ] {
            let name = format!("{what}, {how}");
            let outcomes = tamper(
                &tpl,
                |s| s.apply(&put(*tree, key, v)).expect("apply"),
                &[],
                &[7],
            );
            problems.extend(tamper_problems(&name, &outcomes, detected, &[]));
            cases += 1;
        }
    }
    println!(
        "record tampering: {cases} cases, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sealed_records_swapped_between_users_or_keys_are_detected() {
    let tpl = build_template(false);
    let pairs = [
        (("alice", "fernet"), ("carol", "rsa-2048"), "between users"),
        (
            ("alice", "aes256-gcm"),
            ("bob", "imported"),
            "between users",
        ),
        (
            ("alice", "fernet"),
            ("alice", "aes256-gcm"),
            "between keys of a user",
        ),
        (
            ("bob", "ed25519"),
            ("bob", "imported"),
            "between keys of a user",
        ),
    ];
    let mut problems = Vec::new();
    for ((u1, n1), (u2, n2), how) in pairs {
        let (k1, k2) = (db_key(&tpl, u1, n1), db_key(&tpl, u2, n2));
        let (v1, v2) = (
            value_of(&tpl, Tree::Keys, &k1),
            value_of(&tpl, Tree::Keys, &k2),
        );
        let mut detected = exports_of(&tpl, u1, n1);
        detected.extend(exports_of(&tpl, u2, n2));
        detected.push(LIST.into());
        detected.push(CHECK.into());
        // Swapped both ways.
        let name = format!("{u1}/{n1} and {u2}/{n2} swapped ({how})");
        let (a, b) = (v1.clone(), v2.clone());
        let outcomes = tamper(
            &tpl,
            |s| {
                let mut batch = put(Tree::Keys, &k1, b);
                batch.insert(Tree::Keys, k2.clone(), a);
                s.apply(&batch).expect("apply");
            },
            &[],
            &[7],
        );
        problems.extend(tamper_problems(&name, &outcomes, &detected, &[]));
        // One copied over the other.
        let name = format!("{u1}/{n1} copied over {u2}/{n2} ({how})");
        let mut detected = exports_of(&tpl, u2, n2);
        detected.push(LIST.into());
        detected.push(CHECK.into());
        let outcomes = tamper(
            &tpl,
            |s| s.apply(&put(Tree::Keys, &k2, v1)).expect("apply"),
            &[],
            &[7],
        );
        problems.extend(tamper_problems(&name, &outcomes, &detected, &[]));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn records_moved_to_another_tree_are_detected() {
    let tpl = build_template(false);
    let alice_fernet = db_key(&tpl, "alice", "fernet");
    let alice_hash = alice_fernet[..32].to_vec();
    let dave_key = db_key(&tpl, "dave", "fernet");
    let dave_hash = dave_key[..32].to_vec();
    let key_value = value_of(&tpl, Tree::Keys, &alice_fernet);
    let revoked_value = value_of(&tpl, Tree::Revoked, &dave_hash);
    let audit = tree_entries(&tpl.env, Tree::Audit);
    let (last_seq, _) = audit.last().cloned().expect("audit entries");
    // Well past the end: the next entries the commands append must not overwrite it.
    let far_seq = (u64::from_be_bytes(last_seq.as_slice().try_into().expect("8-byte seq")) + 1000)
        .to_be_bytes()
        .to_vec();
    let gen_alice = probe(&["gen", "alice", "--name", "extra"], Expect::Write);
    let is_revoked_alice = "is-revoked alice".to_string();
    let mut problems = Vec::new();

    // A key record copied into the revoked tree, under its user's hash.
    let outcomes = tamper(
        &tpl,
        |s| {
            s.apply(&put(Tree::Revoked, &alice_hash, key_value.clone()))
                .expect("apply")
        },
        std::slice::from_ref(&gen_alice),
        &[7],
    );
    problems.extend(tamper_problems(
        "a key record copied into the revoked tree",
        &outcomes,
        &args(&[
            "--json revoked",
            "is-revoked alice",
            "gen alice --name extra",
            CHECK,
        ]),
        &[],
    ));

    // The same, moved (gone from the keys tree): its exports may say "not found".
    let outcomes = tamper(
        &tpl,
        |s| {
            let mut b = put(Tree::Revoked, &alice_hash, key_value.clone());
            b.remove(Tree::Keys, alice_fernet.clone());
            s.apply(&b).expect("apply");
        },
        std::slice::from_ref(&gen_alice),
        &[7],
    );
    let mut tolerated: Vec<(String, i32)> = exports_of(&tpl, "alice", "fernet")
        .into_iter()
        .map(|e| (e, 5))
        .collect();
    tolerated.push((LIST.into(), 0));
    problems.extend(tamper_problems(
        "a key record moved into the revoked tree",
        &outcomes,
        &args(&["--json revoked", &is_revoked_alice, CHECK]),
        &tolerated,
    ));

    // A revocation record copied into the keys tree (under dave's old key).
    let outcomes = tamper(
        &tpl,
        |s| {
            s.apply(&put(Tree::Keys, &dave_key, revoked_value.clone()))
                .expect("apply")
        },
        &[],
        &[7],
    );
    problems.extend(tamper_problems(
        "a revocation record copied into the keys tree",
        &outcomes,
        &args(&[LIST, CHECK]),
        &[],
    ));

    // An audit entry copied over a key record.
    let audit_value = audit[audit.len() / 2].1.clone();
    let mut detected = exports_of(&tpl, "alice", "fernet");
    detected.extend(args(&[LIST, CHECK]));
    let outcomes = tamper(
        &tpl,
        |s| {
            s.apply(&put(Tree::Keys, &alice_fernet, audit_value))
                .expect("apply")
        },
        &[],
        &[7],
    );
    problems.extend(tamper_problems(
        "an audit entry copied over a key record",
        &outcomes,
        &detected,
        &[],
    ));

    // A key record appended to the audit log.
    let outcomes = tamper(
        &tpl,
        |s| {
            s.apply(&put(Tree::Audit, &far_seq, key_value.clone()))
                .expect("apply")
        },
        &[probe(&["audit", "--verify"], Expect::Write)],
        &[7],
    );
    problems.extend(tamper_problems(
        "a key record appended to the audit log",
        &outcomes,
        &args(&[CHECK, "audit --verify"]),
        &[],
    ));

    // A key record as the audit chain head.
    let outcomes = tamper(
        &tpl,
        |s| {
            s.apply(&put(Tree::Meta, b"audit-head", key_value.clone()))
                .expect("apply")
        },
        &[],
        &[7],
    );
    problems.extend(tamper_problems(
        "a key record as the audit chain head",
        &outcomes,
        &args(&[CHECK]),
        &[],
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The header file of a fresh vault made with `passphrase`.
fn foreign_header(passphrase: &str) -> Vec<u8> {
    let other = TestEnv::new();
    let out = other
        .bare()
        .env("KEYVAULT_PASSPHRASE", passphrase)
        .arg("init")
        .args(util::FAST_KDF)
        .output()
        .expect("init");
    util::assert_success(&out, "init of another vault");
    fs::read(other.vault().join("header")).expect("read the other vault's header")
}

/// A copy of the template whose header file is replaced by `header`, probed.
fn with_header(tpl: &Template, header: &[u8], list: &[Probe], allowed: &[i32]) -> Vec<Outcome> {
    let case = TestEnv::new();
    copy_dir(&tpl.env.vault(), &case.vault());
    fs::write(case.vault().join("header"), header).expect("replace the header file");
    run_probes(tpl, &case.vault(), list, allowed)
}

/// Every command that needs the passphrase fails with 3 or 7 (or works exactly); none
/// crashes. `status` needs no passphrase and still works.
#[test]
fn a_wrapped_master_key_from_another_vault_is_refused() {
    let tpl = build_template(false);
    let mut problems = Vec::new();
    let unlocking: Vec<String> = probes(&tpl, false)
        .iter()
        .map(|p| p.args.join(" "))
        .filter(|a| a != "--json status")
        .collect();
    for (how, header) in [
        ("same passphrase", foreign_header(PASSPHRASE)),
        (
            "other passphrase",
            foreign_header("another vault's passphrase"),
        ),
    ] {
        let name = format!("the header of another vault ({how})");
        let outcomes: BTreeMap<String, Outcome> =
            with_header(&tpl, &header, &probes(&tpl, false), &[3, 7])
                .into_iter()
                .map(|o| (o.args.clone(), o))
                .collect();
        problems.extend(tamper_problems(&name, &outcomes, &[], &[]));
        for a in &unlocking {
            match outcomes.get(a).and_then(|o| o.code) {
                Some(3 | 7) => {}
                other => problems.push(format!("{name}: `{a}` gave {other:?}, not 3 or 7")),
            }
        }
        match outcomes.get("--json status").and_then(|o| o.code) {
            Some(0) => {}
            other => problems.push(format!("{name}: status gave {other:?}")),
        }
    }

    // Each byte of the header file flipped in turn; cut short; emptied; grown.
    let header = fs::read(tpl.env.vault().join("header")).expect("read the header file");
    let quick = [
        probe(&["--json", "list"], Expect::List),
        probe(&["--json", "status"], Expect::Status),
    ];
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for at in 0..header.len() {
        let mut v = header.clone();
        v[at] ^= 0x41;
        variants.push((format!("header byte {at} of {} flipped", header.len()), v));
    }
    variants.push((
        "header cut short".into(),
        header[..header.len() / 2].to_vec(),
    ));
    variants.push(("header emptied".into(), Vec::new()));
    let mut grown = header.clone();
    grown.resize(1 << 20, 0x5a);
    variants.push(("header grown to 1 MiB".into(), grown));
    let mut codes: BTreeMap<Option<i32>, u64> = BTreeMap::new();
    for (name, v) in variants {
        // A flipped format word can read as a newer format: exit 8 is right there.
        for o in with_header(&tpl, &v, &quick, &[3, 7, 8]) {
            if o.args == LIST {
                *codes.entry(o.code).or_default() += 1;
            }
            if let Some(p) = o.problem {
                problems.push(format!("{name}: `{}`: {p}", o.args));
            }
        }
    }
    println!("header tampering: list exit codes {codes:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The format version in the header file: older (relabelled, exit 7), newer (exit 8),
/// or a format record planted in the database, which the current format never reads
/// (it works) and `check` reports (exit 7).
#[test]
fn a_tampered_format_fails_cleanly() {
    let tpl = build_template(false);
    let mut problems = Vec::new();
    let header = fs::read(tpl.env.vault().join("header")).expect("read the header file");
    let quick = [
        probe(&["--json", "list"], Expect::List),
        probe(&["--json", "status"], Expect::Status),
    ];
    for (value, code) in [
        (0u32, 7),
        (1, 7),
        (2, 7),
        (3, 7),
        (CURRENT_FORMAT + 1, 8),
        (u32::MAX, 8),
    ] {
        let mut v = header.clone();
        v[8..12].copy_from_slice(&value.to_be_bytes());
        for o in with_header(&tpl, &v, &quick, &[code]) {
            if o.args == LIST && o.code != Some(code) {
                problems.push(format!(
                    "format {value}: list gave {:?}, not {code}",
                    o.code
                ));
            }
            if let Some(p) = o.problem {
                problems.push(format!("format {value}: `{}`: {p}", o.args));
            }
        }
    }
    for (how, value) in [
        ("format 2", 2u32.to_be_bytes().to_vec()),
        (
            "the next format",
            (CURRENT_FORMAT + 1).to_be_bytes().to_vec(),
        ),
    ] {
        let outcomes = tamper(
            &tpl,
            |s| {
                let mut b = Batch::new();
                b.insert(Tree::Meta, b"format".to_vec(), value);
                s.apply(&b).expect("apply");
            },
            &[],
            &[7, 8],
        );
        problems.extend(tamper_problems(
            &format!("a format record planted in the database: {how}"),
            &outcomes,
            &args(&[CHECK]),
            &[],
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `status` counts the revoked users by walking sled's tree; on an unreadable page
/// sled's iterator yields the same error again and again without moving on, so a count
/// that does not stop at the first error never ends. Found by the file damage above:
/// a damaged blob holding the revocation records made `status` spin forever (and the
/// agent's status thread with it).
#[test]
fn status_on_a_vault_with_an_unreadable_revocation_page_fails_instead_of_spinning() {
    let tpl = build_template(true);
    let blobs = files_under(&tpl.env.db_dir().join("blobs"));
    assert!(!blobs.is_empty(), "the template has no blob file");
    let mut problems = Vec::new();
    for blob in &blobs {
        let name = blob
            .file_name()
            .expect("a blob name")
            .to_string_lossy()
            .to_string();
        let dir = fresh_copy(&tpl, &format!("blob-{name}"));
        let path = dir.join("db").join("blobs").join(&name);
        let mut bytes = fs::read(&path).expect("read the blob");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&path, bytes).expect("damage the blob");
        let p = probe(&["--json", "status"], Expect::Status);
        let fin = run_on(&tpl, &dir, &p.args, COMMAND_LIMIT);
        if let Some(problem) = judge(&tpl, &p, &fin, &[7, 8]) {
            problems.push(format!("blob {name} damaged: `status`: {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
