//! Backups under load and crashes a backup taken while four clients write
//! through the agent is a consistent snapshot, and a `passwd` or `restore` killed with
//! SIGKILL at a random moment leaves a vault that opens with one of the two passphrases,
//! and no half-restored directory under the target's name.

use std::collections::BTreeMap;
use std::fs;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::rng::Rng;
use crate::util::vault::{
    hidden_siblings, json_at, occurrences, ok_at, run_at, sealed_values_added_by, unlock,
    windows_of, with_pass,
};
use crate::util::{PASSPHRASE, TestEnv, assert_error, assert_success, copy_dir};

const WRITERS: usize = 4;

fn user_of(writer: usize, i: usize) -> String {
    format!("w{writer}-u{i:04}")
}

/// Waits (up to 60 s) until every writer has completed at least `at_least[w]` gens.
fn wait_for(counts: &[AtomicUsize; WRITERS], at_least: &[usize], stop: &AtomicBool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if counts
            .iter()
            .zip(at_least)
            .all(|(c, n)| c.load(Ordering::SeqCst) >= *n)
        {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_backup_taken_while_four_clients_write_is_a_consistent_prefix() {
    let env = TestEnv::new();
    env.init();
    let guard = unlock(&env);
    let counts: [AtomicUsize; WRITERS] = Default::default();
    let stop = AtomicBool::new(false);
    let file = env.root().join("live.kvb");
    let mut before = vec![0; WRITERS];
    let mut after = vec![0; WRITERS];

    thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (env, counts, stop) = (&env, &counts, &stop);
            writers.push(s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let out = env
                        .bare()
                        .args(["gen", &user_of(w, i)])
                        .output()
                        .expect("gen");
                    if !out.status.success() {
                        stop.store(true, Ordering::SeqCst);
                        panic!(
                            "writer {w}: gen {} failed with {:?}: {}",
                            user_of(w, i),
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    i += 1;
                    counts[w].store(i, Ordering::SeqCst);
                }
            }));
        }
        let started = wait_for(&counts, &[3; WRITERS], &stop);
        if started {
            for (b, c) in before.iter_mut().zip(&counts) {
                *b = c.load(Ordering::SeqCst);
            }
            let out = env
                .bare()
                .arg("backup")
                .arg(&file)
                .output()
                .expect("backup");
            for (a, c) in after.iter_mut().zip(&counts) {
                *a = c.load(Ordering::SeqCst);
            }
            if out.status.success() {
                let more: Vec<usize> = after.iter().map(|a| a + 2).collect();
                wait_for(&counts, &more, &stop);
            }
            stop.store(true, Ordering::SeqCst);
            assert_success(&out, "backup while four clients write");
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
        assert!(started, "the writers did not get going");
    });
    let total: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    drop(guard);
    println!("gens before the backup {before:?}, after it {after:?}, in all {total:?}");

    // The live vault holds everything written.
    assert_eq!(
        json_at(&env, &env.vault(), &["status"])["keys"].as_u64(),
        Some(total.iter().sum::<usize>() as u64)
    );

    let restored = env.root().join("restored");
    ok_at(
        &env,
        &env.vault(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    let check = json_at(&env, &restored, &["check"]);
    assert_eq!(check["ok"], true, "{check}");

    let listed = json_at(&env, &restored, &["list"]);
    let mut present: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for key in listed["keys"].as_array().unwrap() {
        let user = key["user"].as_str().unwrap();
        let (w, i) = user
            .strip_prefix('w')
            .and_then(|r| r.split_once("-u"))
            .map(|(w, i)| (w.parse::<usize>().unwrap(), i.parse::<usize>().unwrap()))
            .unwrap_or_else(|| panic!("unexpected user {user}"));
        present.entry(w).or_default().push(i);
    }
    for w in 0..WRITERS {
        let mut got = present.remove(&w).unwrap_or_default();
        got.sort_unstable();
        let k = got.len();
        assert_eq!(
            got,
            (0..k).collect::<Vec<_>>(),
            "writer {w}: the backup holds a gap"
        );
        // Everything finished before the backup began is in it; nothing begun after it
        // ended is (one gen may have committed before its reply arrived).
        assert!(
            k >= before[w] && k <= after[w] + 1,
            "writer {w}: {k} keys in the backup, {} done before it, {} after it",
            before[w],
            after[w]
        );
        for i in 0..k {
            let out = run_at(&env, &restored, ["export", &user_of(w, i), "fernet"]);
            assert_success(&out, &format!("export {} from the restore", user_of(w, i)));
            assert_eq!(out.stdout.len(), 45);
        }
    }
}

/// The outcome of one killed run, for the report.
#[derive(Default, Debug)]
struct Tally {
    old: usize,
    new: usize,
}

#[test]
fn a_passwd_killed_at_a_random_moment_leaves_one_of_the_two_passphrases_working() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob", "--type", "aes256-gcm"]);
    let key = env.ok(["export", "alice", "fernet"]);
    let mut rng = Rng::seeded("passwd kills");
    let mut current = PASSPHRASE.to_string();
    let mut tally = Tally::default();
    for round in 0..20 {
        let next = format!("passphrase of round {round}");
        let mut child = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE", &current)
            .env("KEYVAULT_NEW_PASSPHRASE", &next)
            .arg("passwd")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn passwd");
        thread::sleep(Duration::from_millis(rng.below(31)));
        let _ = child.kill();
        let status = child.wait().expect("wait for passwd");

        let old = with_pass(&env, &current)
            .args(["export", "alice", "fernet"])
            .output()
            .unwrap();
        let new = with_pass(&env, &next)
            .args(["export", "alice", "fernet"])
            .output()
            .unwrap();
        let (working, other) = match (old.status.code(), new.status.code()) {
            (Some(0), Some(3)) => {
                tally.old += 1;
                (current.clone(), new)
            }
            (Some(3), Some(0)) => {
                tally.new += 1;
                (next.clone(), old)
            }
            (a, b) => panic!(
                "round {round} (passwd {status:?}): old passphrase exit {a:?} ({}), new exit {b:?} ({})",
                String::from_utf8_lossy(&old.stderr).trim(),
                String::from_utf8_lossy(&new.stderr).trim()
            ),
        };
        assert_error(&other, 3, &format!("round {round}: the other passphrase"));
        let out = with_pass(&env, &working)
            .args(["export", "alice", "fernet"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), key, "round {round}");
        let out = with_pass(&env, &working).arg("check").output().unwrap();
        assert_success(&out, &format!("round {round}: check"));
        current = working;
    }
    println!("passwd kills: {tally:?} (old = killed before the change, new = after)");
}

#[test]
fn a_restore_killed_at_a_random_moment_leaves_no_vault_or_a_whole_one() {
    let env = TestEnv::new();
    env.init();
    let guard = unlock(&env);
    for i in 0..40 {
        let out = env
            .bare()
            .args(["gen", &format!("user{i:02}")])
            .output()
            .unwrap();
        assert_success(&out, "gen through the agent");
    }
    drop(guard);
    let file = env.root().join("b.kvb");
    env.ok(["backup", file.to_str().unwrap()]);
    let keys = json_at(&env, &env.vault(), &["status"])["keys"].clone();
    assert_eq!(keys, 40);

    let parent = env.root().join("restores");
    fs::create_dir(&parent).unwrap();
    let mut rng = Rng::seeded("restore kills");
    let (mut complete, mut absent) = (0, 0);
    let mut leftovers = Vec::new();
    for round in 0..20 {
        let name = format!("r{round:02}");
        let target = parent.join(&name);
        let mut child = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE", PASSPHRASE)
            .arg("restore")
            .arg(&file)
            .arg("--to")
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn restore");
        thread::sleep(Duration::from_millis(rng.below(31)));
        let _ = child.kill();
        child.wait().expect("wait for restore");

        if target.exists() {
            assert!(
                target.join("header").is_file(),
                "round {round}: {} exists but holds no database",
                target.display()
            );
            let check = json_at(&env, &target, &["check"]);
            assert_eq!(check["ok"], true, "round {round}: {check}");
            assert_eq!(
                json_at(&env, &target, &["status"])["keys"],
                keys,
                "round {round}: a partial vault under the target's name"
            );
            complete += 1;
        } else {
            absent += 1;
        }
        for entry in fs::read_dir(&parent).unwrap() {
            let n = entry.unwrap().file_name().to_string_lossy().into_owned();
            if n.starts_with('.') {
                assert!(
                    n.contains(".restoring-"),
                    "round {round}: unexpected hidden entry {n}"
                );
                if !leftovers.contains(&n) {
                    leftovers.push(n);
                }
            } else {
                assert!(
                    n.len() == 3 && n.starts_with('r'),
                    "round {round}: unexpected entry {n}"
                );
            }
        }
    }
    leftovers.sort();
    println!(
        "restore kills: {complete} complete, {absent} absent; hidden work dirs left behind: {} {leftovers:?}",
        leftovers.len()
    );
    // A later restore to a fresh target still works beside the leftovers.
    let fine = parent.join("fine");
    ok_at(
        &env,
        &env.vault(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--to",
            fine.to_str().unwrap(),
        ],
    );
    let out = with_pass(&env, PASSPHRASE)
        .arg("--vault")
        .arg(&fine)
        .arg("check")
        .output()
        .unwrap();
    assert_success(&out, "check of a restore after the killed ones");
}

#[test]
fn a_compact_killed_at_a_random_moment_leaves_a_whole_vault() {
    let env = TestEnv::new();
    env.init();
    let guard = unlock(&env);
    for i in 0..30 {
        let out = env
            .bare()
            .args(["gen", &format!("user{i:02}")])
            .output()
            .unwrap();
        assert_success(&out, "gen through the agent");
    }
    drop(guard);
    let sealed = sealed_values_added_by(
        &env,
        &[&["gen", "alice"], &["gen", "alice", "--type", "ed25519"]],
    );
    let windows = windows_of(&sealed);
    env.ok(["revoke", "alice"]);
    let key = env.ok(["export", "user07", "fernet"]);

    let mut rng = Rng::seeded("compact kills");
    for round in 0..20 {
        let mut child = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE", PASSPHRASE)
            .arg("compact")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn compact");
        thread::sleep(Duration::from_millis(rng.below(31)));
        let _ = child.kill();
        child.wait().expect("wait for compact");
        let check = json_at(&env, &env.vault(), &["check"]);
        assert_eq!(check["ok"], true, "round {round}: {check}");
        assert_eq!(check["keys"], 30, "round {round}: {check}");
        assert_eq!(env.ok(["export", "user07", "fernet"]), key, "round {round}");
    }
    let leftovers = hidden_siblings(env.root(), "vault");
    let holding: Vec<&String> = leftovers
        .iter()
        .filter(|l| occurrences(&env.root().join(l.as_str()), &windows) > 0)
        .collect();
    println!(
        "compact kills: hidden work dirs left beside the vault: {} {leftovers:?}; holding destroyed records: {}",
        leftovers.len(),
        holding.len()
    );
    // One that completes leaves the destroyed records nowhere in the vault. (Whether the
    // work dirs of the killed ones keep them depends on where the kill landed; the test
    // below sets up the bad case deterministically.)
    env.ok(["compact"]);
    assert_eq!(occurrences(&env.vault(), &windows), 0);
    assert_eq!(json_at(&env, &env.vault(), &["check"])["ok"], true);
}

/// A compact killed after swapping the databases but before deleting the old one leaves
/// the old database (with the destroyed records) in its hidden work dir inside the vault
/// directory. Seen with the random kills above; set up here exactly: a copy of the
/// database from before the compaction under the work dir's name. The next command that
/// takes the vault's lock must remove it, and a completed compaction leaves the
/// destroyed records nowhere.
#[test]
fn a_completed_compact_removes_what_a_killed_one_left_behind() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    let sealed = sealed_values_added_by(
        &env,
        &[&["gen", "alice"], &["gen", "alice", "--type", "aes256-gcm"]],
    );
    let windows = windows_of(&sealed);
    env.ok(["revoke", "alice"]);
    let stale = env.vault().join(".kv-compact-0123456789ab");
    copy_dir(&env.db_dir(), &stale);
    assert_eq!(occurrences(&stale, &windows), windows.len());
    let out = env.run(["revoke", "carol", "--purge"]);
    assert_success(&out, "revoke --purge");
    assert!(
        !stale.exists(),
        "the killed compaction's work dir is still there"
    );
    assert_eq!(occurrences(&env.vault(), &windows), 0);
    assert!(
        hidden_siblings(env.root(), "vault").is_empty(),
        "a compaction left work beside the vault directory"
    );
}

#[test]
fn a_backup_killed_at_a_random_moment_leaves_no_file_or_a_whole_one() {
    let env = TestEnv::new();
    env.init();
    let guard = unlock(&env);
    for i in 0..30 {
        let out = env
            .bare()
            .args(["gen", &format!("user{i:02}")])
            .output()
            .unwrap();
        assert_success(&out, "gen through the agent");
    }
    drop(guard);
    let dir = env.root().join("backups");
    fs::create_dir(&dir).unwrap();
    let mut rng = Rng::seeded("backup kills");
    let (mut whole, mut absent) = (0, 0);
    let mut leftovers = Vec::new();
    for round in 0..20 {
        let name = format!("b{round:02}.kvb");
        let file = dir.join(&name);
        let mut child = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE", PASSPHRASE)
            .arg("backup")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn backup");
        thread::sleep(Duration::from_millis(rng.below(31)));
        let _ = child.kill();
        child.wait().expect("wait for backup");
        if file.exists() {
            let out = run_at(
                &env,
                &env.vault(),
                ["check", "--backup", file.to_str().unwrap()],
            );
            assert_success(
                &out,
                &format!("round {round}: check of a backup left by a kill"),
            );
            whole += 1;
        } else {
            absent += 1;
        }
        leftovers.extend(hidden_siblings(&dir, &name));
        let check = run_at(&env, &env.vault(), ["check"]);
        assert_success(&check, &format!("round {round}: check of the vault"));
    }
    println!(
        "backup kills: {whole} whole, {absent} absent; temp files left behind: {} {leftovers:?}",
        leftovers.len()
    );
}

/// `compact` closes the database it built and reopens it under the vault's name in the
/// same process; sled releases its file lock a moment after a database is dropped, so
/// the reopen can find the vault "in use by another process" (exit 8) although the
/// compaction itself went through. No compaction may fail that way.
#[test]
fn repeated_compactions_never_find_the_vault_in_use() {
    let env = TestEnv::new();
    env.init();
    let guard = unlock(&env);
    for i in 0..20 {
        let out = env
            .bare()
            .args(["gen", &format!("user{i:02}")])
            .output()
            .unwrap();
        assert_success(&out, "gen through the agent");
    }
    drop(guard);
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut runs = 0;
    while runs < 120 && start.elapsed() < Duration::from_secs(10) {
        runs += 1;
        let out = env.run(["compact"]);
        if !out.status.success() {
            failures.push(format!(
                "run {runs}: exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    let check = json_at(&env, &env.vault(), &["check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["keys"], 20, "{check}");
    assert!(
        failures.is_empty(),
        "{} of {runs} compactions failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
