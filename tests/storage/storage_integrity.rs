//! The integrity of the vault's storage, driven through the real binary: compactions
//! racing writers (one-shot and through the agent), no old wrapping of the master key
//! surviving a passphrase change, older copies put back, symlinked vault directories,
//! files in the vault directory that keyvault did not make, restore re-applying
//! revocations of any date, leftovers of killed restores and backups, keys of a revoked
//! user copied back, read-only and full filesystems, and a relabelled header format.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Instant;

use crate::util;
use crate::util::vault::{
    AgentGuard, NEW_PASSPHRASE, agent_state, at, audit_of, edit_store, json_at, ok_at, run_at,
    tree_entries, unlock, with_pass,
};
use crate::util::{
    FAST_KDF, PASSPHRASE, TestEnv, assert_error, assert_success, contains_bytes, copy_dir,
    error_problems, files_under, parse_json,
};
use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::seal::MasterKey;
use keyvault::store::records::Header;
use keyvault::store::{Batch, Tree};
use keyvault::vault::header::HeaderFile;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// What a directory holds, recursively: relative path → file bytes (`None` for a
/// directory, the target for a symlink), for "nothing changed" checks.
fn contents_of(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).expect("read a dir") {
            let entry = entry.expect("read a dir entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).expect("read a symlink");
                let mut bytes = b"symlink -> ".to_vec();
                bytes.extend_from_slice(target.as_os_str().as_encoded_bytes());
                out.insert(rel, Some(bytes));
            } else {
                out.insert(rel, Some(fs::read(&path).expect("read a file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// [`contents_of`] without the storage engine's snapshot files (`db/snap.*`): sled
/// writes a fresh snapshot of its page table each time a database is opened, whatever
/// the command then does, so their names and bytes say nothing of the vault's records.
fn contents_but_engine_snapshots(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    contents_of(dir)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("db/snap."))
        .collect()
}

/// Asserts that two [`contents_of`] maps are equal, naming the entries that differ.
#[track_caller]
fn assert_same(
    now: &BTreeMap<String, Option<Vec<u8>>>,
    before: &BTreeMap<String, Option<Vec<u8>>>,
    what: &str,
) {
    let gone: Vec<&String> = before.keys().filter(|k| !now.contains_key(*k)).collect();
    let added: Vec<&String> = now.keys().filter(|k| !before.contains_key(*k)).collect();
    let changed: Vec<&String> = now
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        gone.is_empty() && added.is_empty() && changed.is_empty(),
        "{what}: removed {gone:?}, added {added:?}, changed {changed:?}"
    );
}

/// Names of the entries of a directory (not recursive).
fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read a dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// What is wrong with a failed command's output against the expected exit code and
/// one of `needles` in stderr (any case), with an `error:` line anywhere on stderr
/// (looser than [`error_problems`]: a read-only vault prints a note first).
fn failure_problems(out: &Output, code: i32, needles: &[&str]) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lower = stderr.to_lowercase();
    let mut problems = Vec::new();
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if out.status.code() != Some(code) {
        problems.push(format!(
            "exit code {:?}, expected {code}",
            out.status.code()
        ));
    }
    if !stderr.lines().any(|l| l.starts_with("error:")) {
        problems.push("no `error:` line on stderr".to_string());
    }
    if !needles.iter().any(|n| lower.contains(&n.to_lowercase())) {
        problems.push(format!("stderr mentions none of {needles:?}"));
    }
    problems
}

/// Asserts that a command failed as [`failure_problems`] checks; returns stderr.
#[track_caller]
fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let problems = failure_problems(out, code, needles);
    assert!(
        problems.is_empty(),
        "{what}: {}\nstdout: {}\nstderr: {stderr}",
        problems.join("; "),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// [`assert_error`] (one `error:` line first) and a stderr substring (any case).
fn assert_error_saying(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = assert_error(out, code, what);
    let lower = stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{what}: stderr mentions none of {needles:?}: {stderr}"
    );
    stderr
}

/// The (user, key name) pairs of a `--json list` document.
fn listed(doc: &Value) -> BTreeSet<(String, String)> {
    doc["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("list --json has a keys array: {doc}"))
        .iter()
        .map(|k| {
            (
                k["user"].as_str().unwrap_or_default().to_string(),
                k["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The header file of the vault at `dir`, parsed (not authenticated).
fn header_of(dir: &Path) -> Header {
    let bytes = fs::read(dir.join("header")).expect("read the header file");
    HeaderFile::parse(bytes)
        .expect("parse the header file")
        .header
        .unlock
}

/// How many rounds the races run.
fn race_rounds() -> usize {
    std::env::var("KEYVAULT_RACE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

/// How the racing commands reach the vault.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Each process opens the vault itself (passphrase from a file).
    OneShot,
    /// Through the running agent (no passphrase at all: a command that does not reach
    /// the agent fails).
    Agent,
}

/// What runs against the writers in a race round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Maintenance {
    Compact,
    RevokePurge,
}

/// What a race saw, for the report.
#[derive(Default)]
struct Tally {
    rounds: usize,
    acknowledged: usize,
    writers_in_use: usize,
    maintenance_ok: usize,
    maintenance_in_use: usize,
    /// The keys the vault must hold after the last round.
    expected: BTreeSet<(String, String)>,
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Starts `keyvault ARGS` without waiting for it.
fn spawn(env: &TestEnv, via: Via, passphrase_file: &Path, args: &[String]) -> Child {
    let mut cmd = env.bare_std();
    if via == Via::OneShot {
        cmd.env("KEYVAULT_PASSPHRASE_FILE", passphrase_file);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyvault")
}

/// Runs `keyvault ARGS` the way the race does (through the agent or one-shot).
fn run_via(env: &TestEnv, via: Via, args: &[&str]) -> Output {
    match via {
        Via::OneShot => env.run(args),
        Via::Agent => env.bare().args(args).output().expect("run keyvault"),
    }
}

/// Rounds of one maintenance command (`maintenance` picks it per round) started at the
/// same moment as six `gen`s. A gen that exits 0 is acknowledged and must be in every
/// later listing; a gen may fail only as "in use" (exit 8), and then adds nothing.
/// After every round `check` passes and the listing is exactly the acknowledged keys.
fn race(env: &TestEnv, via: Via, maintenance: impl Fn(usize) -> Maintenance) -> Tally {
    const WRITERS: usize = 6;
    let passphrase_file = env.passphrase_file();
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tally = Tally::default();
    for round in 0..race_rounds() {
        let what = maintenance(round);
        let victim = format!("victim{round}");
        if what == Maintenance::RevokePurge {
            let out = run_via(env, via, &["gen", &victim]);
            assert_success(&out, &format!("round {round}: gen {victim}"));
            expected.insert((victim.clone(), "fernet".to_string()));
        }
        let maintenance_args: Vec<String> = match what {
            Maintenance::Compact => vec!["compact".into()],
            Maintenance::RevokePurge => vec!["revoke".into(), victim.clone(), "--purge".into()],
        };
        let gens: Vec<(String, String)> = (0..WRITERS)
            .map(|n| (format!("user{n}"), format!("k{round}_{n}")))
            .collect();
        // The maintenance command starts at a different place among the writers each
        // round.
        let at_slot = round % (WRITERS + 1);
        let mut children: Vec<(Option<usize>, Child)> = Vec::new();
        for (slot, (user, name)) in gens.iter().enumerate() {
            if slot == at_slot {
                children.push((None, spawn(env, via, &passphrase_file, &maintenance_args)));
            }
            let args = vec![
                "gen".to_string(),
                user.clone(),
                "--name".to_string(),
                name.clone(),
            ];
            children.push((Some(slot), spawn(env, via, &passphrase_file, &args)));
        }
        if at_slot == WRITERS {
            children.push((None, spawn(env, via, &passphrase_file, &maintenance_args)));
        }
        let outputs: Vec<(Option<usize>, Output)> = children
            .into_iter()
            .map(|(slot, child)| (slot, child.wait_with_output().expect("wait for keyvault")))
            .collect();
        let mut maintenance_done = false;
        for (slot, out) in &outputs {
            match slot {
                Some(n) => {
                    let (user, name) = &gens[*n];
                    if out.status.success() {
                        expected.insert((user.clone(), name.clone()));
                        tally.acknowledged += 1;
                    } else {
                        let problems = error_problems(out, 8, Some("in use"));
                        assert!(
                            problems.is_empty(),
                            "round {round}: gen {user} --name {name} failed otherwise than \"in use\": {}; {}",
                            problems.join("; "),
                            describe(out)
                        );
                        tally.writers_in_use += 1;
                    }
                }
                None => {
                    if out.status.success() {
                        maintenance_done = true;
                        tally.maintenance_ok += 1;
                    } else {
                        let problems = error_problems(out, 8, Some("in use"));
                        assert!(
                            problems.is_empty(),
                            "round {round}: {} failed otherwise than \"in use\": {}; {}",
                            maintenance_args.join(" "),
                            problems.join("; "),
                            describe(out)
                        );
                        tally.maintenance_in_use += 1;
                    }
                }
            }
        }
        if what == Maintenance::RevokePurge && maintenance_done {
            expected.remove(&(victim.clone(), "fernet".to_string()));
        }

        let out = run_via(env, via, &["check"]);
        assert_success(&out, &format!("round {round}: check after the race"));
        let out = run_via(env, via, &["--json", "list"]);
        assert_success(&out, &format!("round {round}: list after the race"));
        let got = listed(&parse_json(&out.stdout, "list"));
        let lost: Vec<_> = expected.difference(&got).collect();
        let extra: Vec<_> = got.difference(&expected).collect();
        assert!(
            lost.is_empty() && extra.is_empty(),
            "round {round} ({}): acknowledged keys missing {lost:?}; keys nobody acknowledged {extra:?}",
            maintenance_args.join(" ")
        );
        if what == Maintenance::RevokePurge {
            let out = run_via(env, via, &["is-revoked", &victim]);
            let revoked = out.status.code() == Some(0);
            assert!(
                out.status.code() == Some(0) || out.status.code() == Some(1),
                "round {round}: is-revoked {victim}: {}",
                describe(&out)
            );
            assert_eq!(
                revoked, maintenance_done,
                "round {round}: {victim} revoked = {revoked}, yet revoke --purge succeeded = {maintenance_done}"
            );
        }
        tally.rounds += 1;
    }
    tally.expected = expected;
    tally
}

fn report(name: &str, tally: &Tally) {
    println!(
        "{name}: {} rounds, {} acknowledged writes, {} writes refused as in use; maintenance {} done, {} refused as in use",
        tally.rounds,
        tally.acknowledged,
        tally.writers_in_use,
        tally.maintenance_ok,
        tally.maintenance_in_use
    );
}

// ---------------------------------------------------------------------------------------
// Compaction and purges racing writers
// ---------------------------------------------------------------------------------------

#[test]
fn compact_racing_one_shot_writers_loses_nothing() {
    let env = TestEnv::new();
    env.init();
    let tally = race(&env, Via::OneShot, |_| Maintenance::Compact);
    report("compact vs one-shot gens", &tally);
    assert!(tally.maintenance_ok > 0, "no compaction ever ran");
}

#[test]
fn revoke_purge_racing_one_shot_writers_loses_nothing() {
    let env = TestEnv::new();
    env.init();
    let tally = race(&env, Via::OneShot, |_| Maintenance::RevokePurge);
    report("revoke --purge vs one-shot gens", &tally);
    assert!(tally.maintenance_ok > 0, "no revoke --purge ever ran");
}

#[test]
fn compact_racing_writers_through_the_agent_loses_nothing() {
    let env = TestEnv::new();
    env.init();
    let tally = {
        let _guard = unlock(&env);
        race(&env, Via::Agent, |round| {
            if round % 2 == 0 {
                Maintenance::Compact
            } else {
                Maintenance::RevokePurge
            }
        })
    };
    report(
        "compact and revoke --purge vs gens, through the agent",
        &tally,
    );
    assert_eq!(
        tally.writers_in_use + tally.maintenance_in_use,
        0,
        "the agent serializes every request: nothing should find the vault in use"
    );
    // Locked again: the vault opens one-shot and holds what the agent acknowledged.
    let check = env.json(["check"]);
    assert_eq!(check["ok"], true, "{check}");
    let keys = listed(&env.json(["list"]));
    assert_eq!(keys, tally.expected, "one-shot list after lock");
    assert_eq!(
        keys.iter().filter(|(u, _)| u.starts_with("user")).count(),
        tally.acknowledged
    );
}

// ---------------------------------------------------------------------------------------
// Passphrase change
// ---------------------------------------------------------------------------------------

/// Every (file, offset) under `dir` where the window of `len` bytes unwraps under the
/// old passphrase's KEK. Whether a window unwraps depends on its bytes alone, so each
/// distinct window is tried once (the engine's files are mostly zero-filled).
fn unwrappable_windows(dir: &Path, kek: &[u8; 32], aad: &[u8], len: usize) -> (Vec<String>, usize) {
    let files: Vec<(PathBuf, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = fs::read(&f).expect("read a copied file");
            (f, bytes)
        })
        .collect();
    let mut tried: HashMap<&[u8], bool> = HashMap::new();
    let mut found = Vec::new();
    for (file, bytes) in &files {
        for (off, window) in bytes.windows(len).enumerate() {
            let opens = *tried
                .entry(window)
                .or_insert_with(|| MasterKey::unwrap(kek, aad, window).is_some());
            if opens {
                found.push(format!("{} at {off}", file.display()));
            }
        }
    }
    (found, tried.len())
}

#[test]
fn a_copy_taken_after_passwd_holds_no_wrapping_the_old_passphrase_opens() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob", "--type", "aes256-gcm"]);
    env.ok(["gen", "carol", "--type", "ed25519"]);
    let old = header_of(&env.vault());
    let old_kek = old
        .kdf
        .derive_kek(PASSPHRASE.as_bytes(), &old.salt)
        .expect("derive the old KEK");
    let old_aad = keyvault::vault::header_aad(&old.kdf, &old.salt).expect("header aad");
    assert!(
        MasterKey::unwrap(&old_kek, &old_aad, &old.wrapped_master_key).is_some(),
        "the old passphrase does not unwrap the header it came from: the test derives the KEK wrongly"
    );
    let before = env.root().join("copy-before-passwd");
    copy_dir(&env.vault(), &before);

    let new_file = env.write_private("new-passphrase", format!("{NEW_PASSPHRASE}\n").as_bytes());
    let out = env
        .kv()
        .arg("passwd")
        .arg("--new-passphrase-file")
        .arg(&new_file)
        .output()
        .unwrap();
    assert_success(&out, "passwd");
    for user in ["dave", "erin"] {
        let out = with_pass(&env, NEW_PASSPHRASE)
            .args(["gen", user])
            .output()
            .unwrap();
        assert_success(&out, "gen after passwd");
    }
    let after = env.root().join("copy-after-passwd");
    copy_dir(&env.vault(), &after);

    let len = old.wrapped_master_key.len();
    let started = Instant::now();
    let (control, tried_before) = unwrappable_windows(&before, &old_kek, &old_aad, len);
    assert!(
        !control.is_empty(),
        "the scan finds no wrapping in a copy from before passwd: the scan is broken"
    );
    let (found, tried_after) = unwrappable_windows(&after, &old_kek, &old_aad, len);
    println!(
        "scanned two copies ({} and {} bytes, {tried_before} and {tried_after} distinct windows) in {:?}; before passwd the old wrapping is at {control:?}",
        files_under(&before)
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum::<u64>(),
        files_under(&after)
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum::<u64>(),
        started.elapsed()
    );
    assert!(
        found.is_empty(),
        "the old passphrase still unwraps the master key from a copy taken after passwd: {found:?}"
    );
    let all_before: Vec<Vec<u8>> = files_under(&before)
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    assert!(
        all_before
            .iter()
            .any(|b| contains_bytes(b, &old.wrapped_master_key))
    );
    assert!(all_before.iter().any(|b| contains_bytes(b, &old.salt)));
    for file in files_under(&after) {
        let bytes = fs::read(&file).unwrap();
        assert!(
            !contains_bytes(&bytes, &old.wrapped_master_key),
            "{} holds the old wrapped master key",
            file.display()
        );
        assert!(
            !contains_bytes(&bytes, &old.salt),
            "{} holds the old salt",
            file.display()
        );
    }

    let out = with_pass(&env, PASSPHRASE).arg("list").output().unwrap();
    assert_error_saying(
        &out,
        3,
        &["wrong passphrase"],
        "list with the old passphrase",
    );
    let out = with_pass(&env, NEW_PASSPHRASE)
        .args(["--json", "list"])
        .output()
        .unwrap();
    assert_success(&out, "list with the new passphrase");
    assert_eq!(listed(&parse_json(&out.stdout, "list")).len(), 5);
}

#[test]
fn passwd_keeps_the_kdf_values_it_is_not_given() {
    let env = TestEnv::new();
    let out = env
        .kv()
        .args([
            "init",
            "--kdf-memory",
            "20",
            "--kdf-iterations",
            "2",
            "--kdf-parallelism",
            "2",
        ])
        .output()
        .unwrap();
    assert_success(&out, "init at m=20 MiB, t=2, p=2 (above the floor)");
    env.ok(["gen", "alice"]);
    assert_eq!(
        header_of(&env.vault()).kdf,
        KdfParams {
            memory_kib: 20 * 1024,
            iterations: 2,
            parallelism: 2
        }
    );
    let new_file = env.write_private("new-passphrase", format!("{NEW_PASSPHRASE}\n").as_bytes());
    let out = env
        .kv()
        .arg("passwd")
        .arg("--new-passphrase-file")
        .arg(&new_file)
        .args(["--kdf-iterations", "5"])
        .output()
        .unwrap();
    assert_success(&out, "passwd --kdf-iterations 5");
    assert_eq!(
        header_of(&env.vault()).kdf,
        KdfParams {
            memory_kib: 20 * 1024,
            iterations: 5,
            parallelism: 2
        },
        "passwd --kdf-iterations 5 changed other KDF values"
    );
    // And one more: only the memory.
    let third = env.write_private("third-passphrase", b"a third passphrase\n");
    let out = with_pass(&env, NEW_PASSPHRASE)
        .arg("passwd")
        .arg("--new-passphrase-file")
        .arg(&third)
        .args(["--kdf-memory", "24"])
        .output()
        .unwrap();
    assert_success(&out, "passwd --kdf-memory 24");
    assert_eq!(
        header_of(&env.vault()).kdf,
        KdfParams {
            memory_kib: 24 * 1024,
            iterations: 5,
            parallelism: 2
        },
        "passwd --kdf-memory 24 changed other KDF values"
    );
    let out = with_pass(&env, "a third passphrase")
        .args(["export", "alice", "fernet"])
        .output()
        .unwrap();
    assert_success(&out, "export with the third passphrase");

    // Through the agent: only the lanes.
    let out = with_pass(&env, "a third passphrase")
        .args(["unlock", "--timeout", "2m"])
        .output()
        .unwrap();
    assert_success(&out, "unlock");
    let _locks = AgentGuard(&env);
    let out = with_pass(&env, "a third passphrase")
        .env("KEYVAULT_NEW_PASSPHRASE", "a fourth passphrase")
        .args(["passwd", "--kdf-parallelism", "3"])
        .output()
        .unwrap();
    assert_success(&out, "passwd --kdf-parallelism 3 through the agent");
    assert_eq!(
        header_of(&env.vault()).kdf,
        KdfParams {
            memory_kib: 24 * 1024,
            iterations: 5,
            parallelism: 3
        },
        "passwd --kdf-parallelism 3 through the agent changed other KDF values"
    );
}

// ---------------------------------------------------------------------------------------
// Older copies
// ---------------------------------------------------------------------------------------

/// Replaces the vault directory with a copy of `from` (as `rm -rf` and `cp -r` would).
fn put_back(env: &TestEnv, from: &Path) {
    fs::remove_dir_all(env.vault()).expect("remove the vault");
    copy_dir(from, &env.vault());
}

#[test]
fn an_older_copy_put_back_is_refused_until_accepted() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "mallory"]);
    let older = env.root().join("older-copy");
    copy_dir(&env.vault(), &older);
    env.ok(["revoke", "mallory", "--reason", "left"]);
    let backup = env.root().join("after-revoke.kvb");
    env.ok(["backup", backup.to_str().unwrap()]);
    let newer = env.root().join("newer-copy");
    copy_dir(&env.vault(), &newer);

    put_back(&env, &older);
    let files = contents_but_engine_snapshots(&env.vault());
    let _locks_if_unlocked = AgentGuard(&env);
    let refused_backup = env.root().join("from-older.kvb");
    for args in [
        &["list"][..],
        &["is-revoked", "mallory"],
        &["gen", "bob"],
        &["export", "mallory", "fernet"],
        &["unlock", "--timeout", "2m"],
        &["backup", refused_backup.to_str().unwrap()],
    ] {
        let out = env.run(args);
        assert_error_saying(
            &out,
            7,
            &["older copy"],
            &format!("{args:?} on an older copy"),
        );
    }
    assert_eq!(
        agent_state(&env),
        "locked",
        "unlock of an older copy started an agent"
    );
    assert!(
        !refused_backup.exists(),
        "a backup of a refused older copy was written"
    );
    // Its revocations are not taken for the vault's either.
    let target = env.root().join("restored-from-older");
    let out = restore_to(
        &env,
        &backup,
        &target,
        &["--revocations-from", env.vault().to_str().unwrap()],
    );
    assert_error_saying(
        &out,
        7,
        &["older copy"],
        "restore --revocations-from an older copy",
    );
    assert!(!target.exists());
    assert_same(
        &contents_but_engine_snapshots(&env.vault()),
        &files,
        "a refused older copy was changed",
    );

    let out = env
        .kv()
        .args(["--accept-rollback", "--json", "list"])
        .output()
        .unwrap();
    assert_success(&out, "--accept-rollback list");
    assert_eq!(
        listed(&parse_json(&out.stdout, "list")),
        [("alice", "fernet"), ("mallory", "fernet")]
            .iter()
            .map(|(u, n)| (u.to_string(), n.to_string()))
            .collect(),
        "the accepted copy is not the older one"
    );
    let log = audit_of(&env, &env.vault());
    assert!(
        log.iter().any(|e| e["operation"] == "accept-rollback"),
        "no accept-rollback entry in the audit log: {log:?}"
    );
    // Accepted once: later commands open it without the flag.
    env.ok(["list"]);

    // Now the newer copy is the stale one.
    put_back(&env, &newer);
    let files = contents_but_engine_snapshots(&env.vault());
    for args in [&["list"][..], &["is-revoked", "mallory"], &["gen", "bob"]] {
        let out = env.run(args);
        assert_error_saying(
            &out,
            7,
            &["older copy"],
            &format!("{args:?} on the newer copy put back after the older one was accepted"),
        );
    }
    assert_same(
        &contents_but_engine_snapshots(&env.vault()),
        &files,
        "the newer copy, refused, was changed",
    );

    // A restore makes a new vault: no rollback error, and it opens.
    let restored = env.root().join("restored");
    let out = env
        .kv()
        .arg("restore")
        .arg(&backup)
        .arg("--to")
        .arg(&restored)
        .output()
        .unwrap();
    assert_success(&out, "restore into a new path");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("older copy"));
    let status = json_at(&env, &restored, &["status"]);
    assert_eq!(status["keys"], 1, "{status}");
    assert_eq!(status["revoked_users"], 1, "{status}");
    let out = run_at(&env, &restored, ["is-revoked", "mallory"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let epochs = env.root().join("state/keyvault/epochs");
    assert_eq!(
        names_in(&epochs).len(),
        2,
        "the restored vault should be remembered under an id of its own"
    );
}

/// Every change that removes something (or replaces the passphrase, or rewrites the
/// files) raises the epoch: the copy taken just before it is an older copy.
#[test]
fn a_copy_from_before_any_removing_change_is_an_older_copy() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob"]);
    env.ok(["rotate", "bob", "fernet"]);
    env.ok(["gen", "carol"]);
    env.ok(["gen", "dave"]);
    let new_file = env.write_private("new-passphrase", format!("{NEW_PASSPHRASE}\n").as_bytes());
    let changes: [(&str, Vec<&str>); 6] = [
        ("revoke", vec!["revoke", "carol"]),
        ("delete", vec!["delete", "dave", "fernet"]),
        (
            "delete --version",
            vec!["delete", "bob", "fernet", "--version", "1"],
        ),
        ("compact", vec!["compact"]),
        ("revoke --purge", vec!["revoke", "erin", "--purge"]),
        (
            "passwd",
            vec![
                "passwd",
                "--new-passphrase-file",
                new_file.to_str().unwrap(),
            ],
        ),
    ];
    let mut passphrase = PASSPHRASE;
    for (i, (what, args)) in changes.iter().enumerate() {
        let before = env.root().join(format!("before-{i}"));
        copy_dir(&env.vault(), &before);
        let out = with_pass(&env, passphrase).args(args).output().unwrap();
        assert_success(&out, what);
        let after = env.root().join(format!("after-{i}"));
        copy_dir(&env.vault(), &after);
        put_back(&env, &before);
        let out = with_pass(&env, passphrase).arg("list").output().unwrap();
        assert_error_saying(
            &out,
            7,
            &["older copy"],
            &format!("list on the copy from before {what}"),
        );
        put_back(&env, &after);
        if *what == "passwd" {
            passphrase = NEW_PASSPHRASE;
        }
        let out = with_pass(&env, passphrase).arg("list").output().unwrap();
        assert_success(&out, &format!("list on the copy from after {what}"));
    }
}

// ---------------------------------------------------------------------------------------
// The vault directory
// ---------------------------------------------------------------------------------------

#[test]
fn compact_and_purge_through_a_symlink_swap_inside_the_real_directory() {
    let env = TestEnv::new();
    let real = env.root().join("real-vault");
    let link = env.root().join("vault-link");
    let out = at(&env, &real).arg("init").args(FAST_KDF).output().unwrap();
    assert_success(&out, "init the real directory");
    symlink(&real, &link).expect("make the symlink");
    for user in ["alice", "bob", "x", "y"] {
        ok_at(&env, &link, &["gen", user]);
    }
    let beside = names_in(env.root());
    let inside = names_in(&real);

    let out = run_at(&env, &link, ["compact"]);
    assert_success(&out, "--vault LINK compact");
    let out = run_at(&env, &link, ["revoke", "x", "--purge"]);
    assert_success(&out, "--vault LINK revoke x --purge");

    let check = |when: &str| {
        let meta = fs::symlink_metadata(&link).expect("the link");
        assert!(
            meta.file_type().is_symlink(),
            "{when}: the link was replaced"
        );
        assert_eq!(
            fs::read_link(&link).unwrap(),
            real,
            "{when}: the link moved"
        );
        assert!(
            real.join("db").is_dir(),
            "{when}: no db directory in the real one"
        );
        assert!(
            real.join("db/db").is_file(),
            "{when}: db/ holds no database"
        );
        assert_eq!(
            names_in(env.root()),
            beside,
            "{when}: entries appeared beside the vault"
        );
        assert_eq!(
            names_in(&real),
            inside,
            "{when}: entries appeared in the vault"
        );
    };
    check("after compact and revoke --purge through the link");
    let keys = listed(&json_at(&env, &link, &["list"]));
    assert_eq!(keys.len(), 3, "{keys:?}");
    let keys_real = listed(&json_at(&env, &real, &["list"]));
    assert_eq!(keys, keys_real);

    for args in [&["compact"][..], &["revoke", "y", "--purge"]] {
        let out = env
            .kv()
            .current_dir(&real)
            .args(["--vault", "."])
            .args(args)
            .output()
            .unwrap();
        assert_success(&out, &format!("--vault . {args:?} from inside the vault"));
    }
    check("after compact and revoke --purge as --vault .");
    let keys = listed(&json_at(&env, &real, &["list"]));
    assert_eq!(
        keys,
        [("alice", "fernet"), ("bob", "fernet")]
            .iter()
            .map(|(u, n)| (u.to_string(), n.to_string()))
            .collect()
    );
    let check = json_at(&env, &real, &["check"]);
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn compact_leaves_files_it_did_not_create() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "victim"]);
    let vault = env.vault();
    let backup = vault.join("mybackup.kvb");
    env.ok(["backup", backup.to_str().unwrap()]);
    fs::write(vault.join("NOTES.txt"), b"the user's own notes\n").unwrap();
    fs::write(vault.join(".kv-compact-mine"), b"not keyvault's").unwrap();
    fs::write(vault.join(".kv-header-mine"), b"not keyvault's either").unwrap();
    fs::create_dir(vault.join(".kv-compact-0123456789AB")).unwrap();
    fs::write(
        vault.join(".kv-compact-0123456789AB/inside"),
        b"upper-case hex",
    )
    .unwrap();
    fs::create_dir(vault.join("scripts")).unwrap();
    fs::write(vault.join("scripts/rotate.sh"), b"#!/bin/sh\n").unwrap();
    let theirs = [
        "mybackup.kvb",
        "NOTES.txt",
        ".kv-compact-mine",
        ".kv-header-mine",
        ".kv-compact-0123456789AB",
        "scripts",
    ];
    let snapshot = |dir: &Path| -> BTreeMap<String, Option<Vec<u8>>> {
        contents_of(dir)
            .into_iter()
            .filter(|(name, _)| {
                theirs
                    .iter()
                    .any(|t| name == t || name.starts_with(&format!("{t}/")))
            })
            .collect()
    };
    let before = snapshot(&vault);
    assert_eq!(before.len(), 8, "{:?}", before.keys());

    env.ok(["compact"]);
    assert_same(
        &snapshot(&vault),
        &before,
        "compact changed files it did not create",
    );
    env.ok(["revoke", "victim", "--purge"]);
    assert_same(
        &snapshot(&vault),
        &before,
        "revoke --purge changed files it did not create",
    );
    let mut expected: BTreeSet<String> = theirs.iter().map(|s| s.to_string()).collect();
    expected.extend(["db", "header", "lock"].map(String::from));
    assert_eq!(names_in(&vault), expected);
    env.ok(["check", "--backup", backup.to_str().unwrap()]);
    let check = env.json(["check"]);
    assert_eq!(check["ok"], true, "{check}");
}

// ---------------------------------------------------------------------------------------
// Restore and revocations
// ---------------------------------------------------------------------------------------

fn restore_to(env: &TestEnv, backup: &Path, to: &Path, extra: &[&str]) -> Output {
    env.kv()
        .arg("restore")
        .arg(backup)
        .arg("--to")
        .arg(to)
        .args(extra)
        .output()
        .unwrap()
}

/// `xavier` is revoked in the vault at `dir`, with no key, and alice and bob keep theirs.
fn assert_xavier_revoked(env: &TestEnv, dir: &Path, what: &str) {
    let out = run_at(env, dir, ["is-revoked", "xavier"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: xavier is not revoked: {}",
        describe(&out)
    );
    let keys = listed(&json_at(env, dir, &["list"]));
    assert!(
        keys.iter().all(|(u, _)| u != "xavier"),
        "{what}: xavier still has keys: {keys:?}"
    );
    assert!(
        keys.contains(&("alice".into(), "fernet".into())),
        "{what}: {keys:?}"
    );
    assert!(
        keys.contains(&("bob".into(), "ed25519".into())),
        "{what}: {keys:?}"
    );
    let revoked = json_at(env, dir, &["revoked"]);
    assert!(
        revoked.to_string().contains("left the company"),
        "{what}: the revocation's reason is not carried: {revoked}"
    );
    let check = json_at(env, dir, &["check"]);
    assert_eq!(check["ok"], true, "{what}: {check}");
}

#[test]
fn restore_applies_revocations_older_than_the_backup() {
    let env = TestEnv::new();
    env.init();
    let a = env.vault();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "xavier"]);
    env.ok(["gen", "xavier", "--type", "aes256-gcm"]);
    env.ok(["gen", "bob", "--type", "ed25519"]);
    let b1 = env.root().join("b1.kvb");
    env.ok(["backup", b1.to_str().unwrap()]);
    env.ok(["revoke", "xavier", "--reason", "left the company"]);

    // A copy of the vault from before the revocation, made into a vault again, and
    // backed up after the revocation happened elsewhere.
    let c = env.root().join("c");
    assert_success(&restore_to(&env, &b1, &c, &[]), "restore B1 to C");
    let out = run_at(&env, &c, ["is-revoked", "xavier"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let b2 = env.root().join("b2.kvb");
    ok_at(&env, &c, &["backup", b2.to_str().unwrap()]);

    let d = env.root().join("d");
    let out = restore_to(
        &env,
        &b2,
        &d,
        &["--json", "--revocations-from", a.to_str().unwrap()],
    );
    assert_success(&out, "restore B2 --revocations-from A");
    let report = parse_json(&out.stdout, "restore");
    assert_eq!(
        report["revocations_applied"],
        serde_json::json!(["xavier"]),
        "{report}"
    );
    assert_xavier_revoked(&env, &d, "restore --revocations-from A");

    // A's passphrase changes: its own passphrase is needed to read its revocations.
    let new_file = env.write_private("new-passphrase", format!("{NEW_PASSPHRASE}\n").as_bytes());
    let out = env
        .kv()
        .arg("passwd")
        .arg("--new-passphrase-file")
        .arg(&new_file)
        .output()
        .unwrap();
    assert_success(&out, "passwd of A");

    let e = env.root().join("e");
    let out = restore_to(
        &env,
        &b2,
        &e,
        &[
            "--revocations-from",
            a.to_str().unwrap(),
            "--revocations-passphrase-file",
            new_file.to_str().unwrap(),
        ],
    );
    assert_success(
        &out,
        "restore B2 --revocations-from A --revocations-passphrase-file",
    );
    assert_xavier_revoked(&env, &e, "restore with --revocations-passphrase-file");

    let f = env.root().join("f");
    let out = env
        .kv()
        .env("KEYVAULT_REVOCATIONS_PASSPHRASE", NEW_PASSPHRASE)
        .arg("restore")
        .arg(&b2)
        .arg("--to")
        .arg(&f)
        .arg("--revocations-from")
        .arg(&a)
        .output()
        .unwrap();
    assert_success(&out, "restore with KEYVAULT_REVOCATIONS_PASSPHRASE");
    assert_xavier_revoked(&env, &f, "restore with KEYVAULT_REVOCATIONS_PASSPHRASE");

    // Falling back to the backup's passphrase, which no longer opens A: nothing made.
    let g = env.root().join("g");
    let out = restore_to(&env, &b2, &g, &["--revocations-from", a.to_str().unwrap()]);
    assert_error_saying(
        &out,
        3,
        &["wrong passphrase"],
        "restore whose A passphrase is stale",
    );
    assert!(!g.exists(), "a failed restore left its target");
    assert!(
        names_in(env.root()).iter().all(|n| !n.starts_with(".g.")),
        "a failed restore left work beside its target: {:?}",
        names_in(env.root())
    );
}

// ---------------------------------------------------------------------------------------
// Leftovers of killed commands
// ---------------------------------------------------------------------------------------

/// A file created with `contents`.
fn plant(path: &Path, contents: &[u8]) {
    let mut f = fs::File::create(path).expect("plant a file");
    f.write_all(contents).expect("write a planted file");
}

/// A restore's work directory as a killed restore leaves it: a lock file and a
/// half-built vault.
fn plant_restoring(dir: &Path) {
    fs::create_dir(dir).expect("plant a restoring dir");
    plant(&dir.join("lock"), b"");
    fs::create_dir(dir.join("db")).unwrap();
    plant(&dir.join("db/conf"), b"segment_size: 524288\n");
    plant(&dir.join("db/db"), &[0u8; 64]);
}

/// Holds an exclusive `flock` on a file for as long as it lives.
struct Flocked {
    file: fs::File,
}

impl Drop for Flocked {
    fn drop(&mut self) {
        // Unlocked explicitly: a process that other tests fork meanwhile shares the
        // open file (until it execs), and closing ours alone would leave it locked.
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

fn flock(path: &Path) -> Flocked {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open a file to lock");
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    Flocked { file }
}

#[test]
fn killed_restores_and_backups_leave_nothing_after_the_next_command() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let vault = env.vault();
    let parent = env.root().to_path_buf();
    let mut backup_magic = b"KVBACKUP".to_vec();
    backup_magic.extend_from_slice(&[0x5a; 200]);

    // Leftovers: removed by the next command that opens the vault.
    let leftovers = [
        parent.join(".b.kvb.tmp-0123456789ab"),
        parent.join(".empty.kvb.tmp-a1b2c3d4e5f6"),
        vault.join(".b.kvb.tmp-0123456789ab"),
        vault.join(".c.kvb.tmp-fedcba987654"),
        parent.join(".vault.restoring-0123456789ab"),
    ];
    plant(&leftovers[0], &backup_magic);
    plant(&leftovers[1], b"");
    plant(&leftovers[2], &backup_magic);
    plant(&leftovers[3], b"");
    plant_restoring(&leftovers[4]);

    // Decoys: names or contents that are not exactly keyvault's, and work that is
    // still in progress (locked).
    let temp_decoys = [
        ".b.kvb.tmp-0123456789AB",
        ".b.kvb.tmp-0123456789a",
        ".b.kvb.tmp-0123456789abc",
        "b.kvb.tmp-0123456789ab",
        ".b.kvb.tmp_0123456789ab",
        ".d.kvb.tmp-0123456789ab",
        ".k.kvb.tmp-0123456789ab",
        ".e.kvb.tmp-0123456789ab",
        ".s.kvb.tmp-0123456789ab",
    ];
    for dir in [&parent, &vault] {
        for name in &temp_decoys[..5] {
            plant(&dir.join(name), &backup_magic);
        }
        plant(&dir.join(temp_decoys[5]), b"the user's own notes");
        plant(&dir.join(temp_decoys[6]), b"KVBACKU");
        fs::create_dir(dir.join(temp_decoys[7])).unwrap();
        plant(&dir.join(temp_decoys[7]).join("inside"), &backup_magic);
        symlink(&leftovers[0], dir.join(temp_decoys[8])).unwrap();
    }
    let restoring_decoys = [
        ".vault.restoring-abcdefabcdef",
        ".vault.restoring-0123456789AB",
        ".vault.restoringx0123456789ab",
        "vault.restoring-0123456789ab",
        ".vault2.restoring-0123456789ab",
        ".vault.restoring-aaaaaaaaaaaa",
    ];
    fs::create_dir(parent.join(restoring_decoys[0])).unwrap();
    plant(
        &parent.join(restoring_decoys[0]).join("mine"),
        b"no lock file here",
    );
    for name in &restoring_decoys[1..5] {
        plant_restoring(&parent.join(name));
    }
    // A symlink under a restore's work name, to a directory of the user's.
    let users_dir = env.root().join("users-dir");
    plant_restoring(&users_dir);
    symlink(&users_dir, parent.join(restoring_decoys[5])).unwrap();
    let busy_backup_name = ".busy.kvb.tmp-00000000abcd";
    plant(&parent.join(busy_backup_name), &backup_magic);
    let busy_backup = flock(&parent.join(busy_backup_name));
    let busy_restore_name = ".vault.restoring-fedcba987654";
    plant_restoring(&parent.join(busy_restore_name));
    let busy_restore = flock(&parent.join(busy_restore_name).join("lock"));

    // Everything under the given top-level names of `dir`.
    let under = |dir: &Path, names: &[&str]| -> BTreeMap<String, Option<Vec<u8>>> {
        contents_of(dir)
            .into_iter()
            .filter(|(name, _)| names.contains(&name.split('/').next().unwrap_or("")))
            .collect()
    };
    let mut parent_decoys: Vec<&str> = temp_decoys.to_vec();
    parent_decoys.extend(restoring_decoys);
    parent_decoys.extend([busy_backup_name, busy_restore_name, "users-dir"]);
    let decoys_parent = under(&parent, &parent_decoys);
    let decoys_vault = under(&vault, &temp_decoys);
    assert_eq!(
        decoys_parent.keys().filter(|k| !k.contains('/')).count(),
        parent_decoys.len()
    );
    assert_eq!(
        decoys_vault.keys().filter(|k| !k.contains('/')).count(),
        temp_decoys.len()
    );

    let out = env.run(["--json", "list"]);
    assert_success(&out, "list with leftovers around");
    for l in &leftovers {
        assert!(
            fs::symlink_metadata(l).is_err(),
            "{} is still there after the next command",
            l.display()
        );
    }
    assert_same(
        &under(&parent, &parent_decoys),
        &decoys_parent,
        "a decoy beside the vault was touched",
    );
    assert_same(
        &under(&vault, &temp_decoys),
        &decoys_vault,
        "a decoy in the vault was touched",
    );

    // Once their commands end (their locks go), the next command removes them.
    drop(busy_backup);
    drop(busy_restore);
    env.ok(["list"]);
    assert!(!parent.join(busy_backup_name).exists());
    assert!(!parent.join(busy_restore_name).exists());

    // A restore removes what killed restores to the same target left, and nothing else.
    let backup = env.root().join("b.kvb");
    env.ok(["backup", backup.to_str().unwrap()]);
    let vault2 = parent.join("vault2");
    assert!(parent.join(".vault2.restoring-0123456789ab").is_dir());
    assert_success(
        &restore_to(&env, &backup, &vault2, &[]),
        "restore to vault2",
    );
    assert!(
        !parent.join(".vault2.restoring-0123456789ab").exists(),
        "restore --to vault2 left the killed restore's work dir"
    );
    let keys = listed(&json_at(&env, &vault2, &["list"]));
    assert_eq!(keys.len(), 1);
    let still: Vec<&str> = parent_decoys
        .iter()
        .copied()
        .filter(|n| {
            ![
                ".vault2.restoring-0123456789ab",
                busy_backup_name,
                busy_restore_name,
            ]
            .contains(n)
        })
        .collect();
    let mut expected = decoys_parent.clone();
    expected.retain(|k, _| still.contains(&k.split('/').next().unwrap_or("")));
    assert_same(
        &under(&parent, &still),
        &expected,
        "a decoy was touched by restore",
    );
    assert_same(
        &under(&vault, &temp_decoys),
        &decoys_vault,
        "a decoy in the vault was touched later on",
    );
}

/// A killed backup's temporary file is `.NAME.tmp-<12 hex>` beside its target, NAME
/// being the target's (non-empty) name. A file named `.tmp-<12 hex>` is not one: no
/// backup target has an empty name. It may be another program's, and the vault's parent
/// directory may be the user's home.
#[test]
fn a_dot_tmp_file_with_no_backup_name_is_not_taken_for_a_killed_backup() {
    let env = TestEnv::new();
    env.init();
    let mut backup_magic = b"KVBACKUP".to_vec();
    backup_magic.extend_from_slice(&[0x5a; 32]);
    let planted = [
        (env.root().join(".tmp-0123456789ab"), Vec::new()),
        (env.root().join(".tmp-abcdef012345"), backup_magic.clone()),
        (env.vault().join(".tmp-0123456789ab"), Vec::new()),
        (env.vault().join(".tmp-abcdef012345"), backup_magic),
    ];
    for (path, contents) in &planted {
        plant(path, contents);
    }
    env.ok(["list"]);
    let gone: Vec<String> = planted
        .iter()
        .filter(|(path, _)| !path.exists())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        gone.is_empty(),
        "files that no keyvault backup could have made were removed: {gone:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Revoked users' keys copied back
// ---------------------------------------------------------------------------------------

#[test]
fn a_revoked_users_keys_copied_back_are_never_served() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let before: BTreeSet<Vec<u8>> = tree_entries(&env, Tree::Keys)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    env.ok(["gen", "mallory"]);
    env.ok(["gen", "mallory", "--type", "ed25519"]);
    let mallorys: Vec<(Vec<u8>, Vec<u8>)> = tree_entries(&env, Tree::Keys)
        .into_iter()
        .filter(|(k, _)| !before.contains(k))
        .collect();
    assert_eq!(mallorys.len(), 2);
    env.ok(["revoke", "mallory"]);
    let remaining: BTreeSet<Vec<u8>> = tree_entries(&env, Tree::Keys)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(remaining, before, "revoke left mallory's records");

    edit_store(&env, |store| {
        let mut batch = Batch::new();
        for (k, v) in &mallorys {
            batch.insert(Tree::Keys, k.clone(), v.clone());
        }
        store.apply(&batch).expect("copy mallory's records back");
    });

    let copied_back = ["copied back", "tamper"];
    for args in [
        &["list"][..],
        &["list", "mallory"],
        &["export", "mallory", "fernet"],
        &["export", "mallory", "ed25519", "--public"],
        &["encrypt", "mallory", "fernet", "--in", "/dev/null"],
    ] {
        let out = env.run(args);
        assert_error_saying(
            &out,
            7,
            &copied_back,
            &format!("{args:?} with mallory's keys copied back"),
        );
    }
    let out = env.run(["check"]);
    assert_error(&out, 7, "check with mallory's keys copied back");

    // Through the agent too.
    let _guard = unlock(&env);
    for args in [&["list", "mallory"][..], &["export", "mallory", "fernet"]] {
        let out = env.bare().args(args).output().unwrap();
        assert_error_saying(
            &out,
            7,
            &copied_back,
            &format!("{args:?} through the agent with mallory's keys copied back"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Read-only media and a full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted for one test, unmounted when dropped (even on a panic).
struct TmpfsMount(PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Mounts a tmpfs of `size` at `dir`, or says why not (not root, no mount allowed).
fn mount_tmpfs(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root".into());
    }
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(TmpfsMount(dir.to_path_buf()))
}

/// Runs `lock` on the vault at a path when dropped.
struct LockAt<'a>(&'a TestEnv, PathBuf);

impl Drop for LockAt<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .bare()
            .arg("--vault")
            .arg(&self.1)
            .arg("lock")
            .output();
    }
}

/// The reads that must work on a vault whose filesystem takes no writes, with the
/// answers they gave while it did.
fn assert_reads_work(env: &TestEnv, vault: &Path, list: &Value, exports: &[Vec<u8>], what: &str) {
    let out = run_at(env, vault, ["--json", "list"]);
    assert_success(&out, &format!("{what}: list"));
    assert_eq!(
        &parse_json(&out.stdout, "list"),
        list,
        "{what}: list differs"
    );
    let out = run_at(env, vault, ["--json", "status"]);
    assert_success(&out, &format!("{what}: status"));
    let status = parse_json(&out.stdout, "status");
    assert_eq!(
        status["keys"].as_u64(),
        Some(exports.len() as u64),
        "{what}: {status}"
    );
    for (user, expected) in ["alice", "bob", "carol"].iter().zip(exports) {
        let out = run_at(env, vault, ["export", user, "fernet"]);
        assert_success(&out, &format!("{what}: export {user}"));
        assert_eq!(&out.stdout, expected, "{what}: export {user} differs");
    }
    let out = run_at(env, vault, ["--json", "check"]);
    assert_success(&out, &format!("{what}: check"));
    assert_eq!(parse_json(&out.stdout, "check")["ok"], true, "{what}");
    // Using a key needs no write either (a Fernet token needs no use count).
    let out = at(env, vault)
        .args(["encrypt", "alice", "fernet"])
        .write_stdin("a message")
        .output()
        .unwrap();
    assert_success(&out, &format!("{what}: encrypt"));
    let out = at(env, vault)
        .args(["decrypt", "alice", "fernet"])
        .write_stdin(out.stdout)
        .output()
        .unwrap();
    assert_success(&out, &format!("{what}: decrypt"));
    assert_eq!(out.stdout, b"a message", "{what}: decrypt differs");
}

/// The writes that must fail (exit 8) and change nothing.
fn assert_writes_refused(env: &TestEnv, vault: &Path, needles: &[&str], what: &str) {
    let files = contents_of(vault);
    for args in [
        &["gen", "dave"][..],
        &["revoke", "bob"],
        &["rotate", "alice", "fernet"],
        &["compact"],
    ] {
        let out = run_at(env, vault, args);
        assert_fails(&out, 8, needles, &format!("{what}: {args:?}"));
    }
    assert_same(
        &contents_of(vault),
        &files,
        "{what}: a refused write changed the vault",
    );
}

fn populate(env: &TestEnv, vault: &Path) -> (Value, Vec<Vec<u8>>) {
    let out = at(env, vault).arg("init").args(FAST_KDF).output().unwrap();
    assert_success(&out, "init on the tmpfs");
    let mut exports = Vec::new();
    for user in ["alice", "bob", "carol"] {
        ok_at(env, vault, &["gen", user]);
        exports.push(ok_at(env, vault, &["export", user, "fernet"]));
    }
    (json_at(env, vault, &["list"]), exports)
}

/// Fills the filesystem at `mnt` completely with a file (until ENOSPC) and returns it.
fn fill(mnt: &Path) -> PathBuf {
    let filler = mnt.join("filler");
    let mut f = fs::File::create(&filler).expect("create the filler");
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0xa5u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(rustix::io::Errno::NOSPC.raw_os_error()),
                        "filling: {e}"
                    );
                    break;
                }
            }
        }
    }
    let _ = f.sync_all();
    assert!(
        fs::write(mnt.join("probe"), b"x").is_err(),
        "the filesystem is not full"
    );
    filler
}

#[test]
fn reads_work_on_read_only_media_and_a_full_disk() {
    let env = TestEnv::new();

    // (a) Read-only media.
    let mnt = env.root().join("ro-media");
    let mount = match mount_tmpfs(&mnt, "64m") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let vault = mnt.join("vault");
    let (list, exports) = populate(&env, &vault);
    let status = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(status.success(), "remount read-only");
    assert!(
        fs::write(mnt.join("probe"), b"x").is_err(),
        "the remount took no effect"
    );
    let files = contents_of(&vault);
    assert_reads_work(&env, &vault, &list, &exports, "read-only media");
    assert_writes_refused(&env, &vault, &["read-only"], "read-only media");
    {
        let out = env
            .kv()
            .arg("--vault")
            .arg(&vault)
            .args(["unlock", "--timeout", "2m"])
            .output()
            .unwrap();
        assert_success(&out, "unlock on read-only media");
        let _locked = LockAt(&env, vault.clone());
        let out = env
            .bare()
            .arg("--vault")
            .arg(&vault)
            .args(["--json", "list"])
            .output()
            .unwrap();
        assert_success(&out, "list through the agent on read-only media");
        assert_eq!(listed(&parse_json(&out.stdout, "list")), listed(&list));
        let out = env
            .bare()
            .arg("--vault")
            .arg(&vault)
            .args(["export", "alice", "fernet"])
            .output()
            .unwrap();
        assert_success(&out, "export through the agent on read-only media");
        assert_eq!(out.stdout, exports[0]);
        let out = env
            .bare()
            .arg("--vault")
            .arg(&vault)
            .args(["gen", "dave"])
            .output()
            .unwrap();
        assert_fails(
            &out,
            8,
            &["read-only"],
            "gen through the agent on read-only media",
        );
    }
    assert_same(&contents_of(&vault), &files, "the read-only vault changed");
    drop(mount);

    // (b) A full disk.
    let mnt = env.root().join("full-disk");
    let mount = mount_tmpfs(&mnt, "6m").expect("mount a second tmpfs");
    let vault = mnt.join("vault");
    let (list, exports) = populate(&env, &vault);
    let filler = fill(&mnt);
    let files = contents_of(&vault);
    assert_reads_work(&env, &vault, &list, &exports, "full disk");
    assert_writes_refused(&env, &vault, &["read-only"], "full disk");
    // Checked last, so that the checks below run whatever this finds.
    let changed_on_the_full_disk = (contents_of(&vault) != files).then(|| {
        let now = contents_of(&vault);
        let differ: Vec<&String> = now
            .keys()
            .chain(files.keys())
            .filter(|k| now.get(*k) != files.get(*k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        format!("reads and refused writes on a full disk changed the vault's files: {differ:?}")
    });
    fs::remove_file(&filler).expect("remove the filler");
    assert_reads_work(&env, &vault, &list, &exports, "after the disk was freed");
    ok_at(&env, &vault, &["gen", "dave"]);
    let check = json_at(&env, &vault, &["check"]);
    assert_eq!(check["ok"], true, "{check}");
    drop(mount);
    if let Some(problem) = changed_on_the_full_disk {
        panic!("{problem}");
    }
}

/// On a full disk the vault must open read-only: a write exits 8 ("read-only") and
/// nothing changes. The first command after the disk fills is the telling one: after
/// what `populate` does, the storage engine opens the database in place without needing
/// a new block (it writes no new snapshot), so only a check of the filesystem itself
/// can tell that it is full; a write would then land in the database file's existing
/// blocks. (Later opens write a snapshot, fail with ENOSPC and fall back to the copy,
/// leaving an empty `snap.*.generating` behind.)
#[test]
fn a_write_on_a_just_filled_disk_is_refused_and_changes_nothing() {
    let env = TestEnv::new();
    let mnt = env.root().join("full-disk");
    let _mount = match mount_tmpfs(&mnt, "6m") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let vault = mnt.join("vault");
    let (list, exports) = populate(&env, &vault);
    let _filler = fill(&mnt);
    let files = contents_of(&vault);
    let mut problems = Vec::new();
    let out = run_at(&env, &vault, ["gen", "dave"]);
    let refused = failure_problems(&out, 8, &["read-only"]);
    if !refused.is_empty() {
        problems.push(format!(
            "gen dave on the full disk: {} ({})",
            refused.join("; "),
            describe(&out)
        ));
    }
    let out = run_at(&env, &vault, ["export", "alice", "fernet"]);
    assert_success(&out, "export on the full disk");
    assert_eq!(out.stdout, exports[0]);
    let now = contents_of(&vault);
    let differ: BTreeSet<&String> = now
        .keys()
        .chain(files.keys())
        .filter(|k| now.get(*k) != files.get(*k))
        .collect();
    if !differ.is_empty() {
        problems.push(format!("the vault's files changed: {differ:?}"));
    }
    let got = listed(&json_at(&env, &vault, &["list"]));
    if got != listed(&list) {
        problems.push(format!("the keys are now {got:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `revoke --purge` makes sure a compaction can run before it commits the revocation:
/// where the filesystem has no room for a fresh copy of the database (and 16 MiB to
/// spare), it fails and revokes nothing.
#[test]
fn revoke_purge_without_room_to_compact_changes_nothing() {
    let env = TestEnv::new();
    let mnt = env.root().join("small-disk");
    let _mount = match mount_tmpfs(&mnt, "8m") {
        Ok(m) => m,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let vault = mnt.join("vault");
    let (list, exports) = populate(&env, &vault);
    let log = audit_of(&env, &vault).len();
    let files = contents_but_engine_snapshots(&vault);
    let out = run_at(&env, &vault, ["revoke", "bob", "--purge"]);
    assert_error_saying(
        &out,
        8,
        &["compact"],
        "revoke --purge on a disk without room to compact",
    );
    assert_same(
        &contents_but_engine_snapshots(&vault),
        &files,
        "a refused revoke --purge changed the vault",
    );
    let out = run_at(&env, &vault, ["is-revoked", "bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(json_at(&env, &vault, &["list"]), list);
    assert_eq!(
        ok_at(&env, &vault, &["export", "bob", "fernet"]),
        exports[1]
    );
    assert_eq!(
        audit_of(&env, &vault).len(),
        log + 1,
        "only the export above is logged"
    );
    // A plain revoke needs no room for a copy.
    ok_at(&env, &vault, &["revoke", "bob"]);
}

// ---------------------------------------------------------------------------------------
// The header's format
// ---------------------------------------------------------------------------------------

#[test]
fn a_relabelled_header_format_is_refused() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let header_path = env.vault().join("header");
    let original = fs::read(&header_path).unwrap();
    assert_eq!(&original[8..12], &4u32.to_be_bytes());
    for (format, code, needles) in [
        (3u32, 7, &["altered", "integrity"][..]),
        (5u32, 8, &["newer", "format version 5"][..]),
    ] {
        let mut bytes = original.clone();
        bytes[8..12].copy_from_slice(&format.to_be_bytes());
        fs::write(&header_path, &bytes).unwrap();
        let files = contents_of(&env.vault());
        for args in [&["list"][..], &["gen", "bob"], &["check"], &["passwd"]] {
            let out = env
                .kv()
                .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
                .args(args)
                .output()
                .unwrap();
            assert_error_saying(
                &out,
                code,
                needles,
                &format!("{args:?} with the header relabelled format {format}"),
            );
        }
        assert_same(
            &contents_of(&env.vault()),
            &files,
            &format!("a vault relabelled format {format} was changed"),
        );
    }
    fs::write(&header_path, &original).unwrap();
    let check = env.json(["check"]);
    assert_eq!(check["ok"], true, "{check}");
    let keys = listed(&env.json(["list"]));
    assert_eq!(keys.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Records lifted from one copy into another
// ---------------------------------------------------------------------------------------

/// Sealed records open in any copy of the same vault, so someone who can write the
/// directory (no passphrase) can lift the newer copy's epoch record into an older copy
/// that still holds a revoked user's keys. The epoch record carries the revocation
/// ledger it was written with: in the older copy it disagrees with the revocations there.
#[test]
fn an_older_copy_with_the_newer_epoch_record_lifted_into_it_is_refused() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "mallory"]);
    let older = env.root().join("older-copy");
    copy_dir(&env.vault(), &older);
    env.ok(["revoke", "mallory", "--reason", "left"]);
    let newer_epoch = tree_entries(&env, Tree::Meta)
        .into_iter()
        .find(|(k, _)| k.as_slice() == b"epoch")
        .map(|(_, v)| v)
        .expect("an epoch record");
    put_back(&env, &older);
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.insert(Tree::Meta, b"epoch".to_vec(), newer_epoch.clone());
        s.apply(&b).expect("lift the epoch record");
    });
    for args in [
        &["list"][..],
        &["is-revoked", "mallory"],
        &["export", "mallory", "fernet"],
        &["gen", "bob"],
    ] {
        assert_error_saying(
            &env.run(args),
            7,
            &["another copy", "mixed in"],
            &format!("{} on an older copy with a lifted epoch", args.join(" ")),
        );
    }
    let out = env.run(["check"]);
    assert_eq!(out.status.code(), Some(7), "check: {}", describe(&out));
}

/// Deleting every audit entry together with the sealed chain head left an empty log
/// that read as a vault nobody had used. The epoch record keeps how long the log was at
/// the last removing change.
#[test]
fn an_audit_log_deleted_with_its_head_is_detected() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob"]);
    env.ok(["delete", "bob", "fernet"]);
    env.ok(["export", "alice", "fernet"]);
    edit_store(&env, |s| {
        let mut b = Batch::new();
        for (k, _) in s.entries(Tree::Audit).expect("audit entries") {
            b.remove(Tree::Audit, k);
        }
        b.remove(Tree::Meta, b"audit-head".to_vec());
        s.apply(&b).expect("delete the log");
    });
    for args in [&["list"][..], &["audit"], &["gen", "carol"]] {
        assert_error_saying(
            &env.run(args),
            7,
            &["truncated"],
            &format!("{} with the audit log deleted", args.join(" ")),
        );
    }
}

/// Two `init`s of one directory at once: one vault is made, the other command is refused
/// (exit 6, or 8 while the first holds the lock) and removes nothing of it.
#[test]
fn two_inits_of_one_directory_at_once_make_one_whole_vault() {
    for round in 0..8 {
        let env = TestEnv::new();
        // Written once: the helper rewrites the file on each call.
        let passphrase = env.passphrase_file();
        let spawn_init = || {
            env.bare_std()
                .env("KEYVAULT_PASSPHRASE_FILE", &passphrase)
                .args(["init"])
                .args(util::FAST_KDF)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn init")
        };
        let a = spawn_init();
        let b = spawn_init();
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == Some(0)).count(),
            1,
            "round {round}: {codes:?}: {} / {}",
            describe(&outs[0]),
            describe(&outs[1])
        );
        assert!(
            codes.iter().all(|c| matches!(c, Some(0 | 6 | 8))),
            "round {round}: {codes:?}"
        );
        env.ok(["gen", "alice"]);
        let checked: Value =
            serde_json::from_str(&env.ok(["--json", "check"])).expect("check's JSON");
        assert_eq!(checked["ok"], true, "round {round}: {checked}");
    }
}
