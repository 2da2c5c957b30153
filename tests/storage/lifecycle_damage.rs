//! Damaged backups and tampered vaults a flipped bit or a
//! truncation anywhere in a backup is an integrity failure (exit 7) for `check --backup`
//! and `restore`, and restores nothing; deleting, editing or reordering audit entries or
//! swapping key records through sled directly is caught by `audit --verify`, `check`
//! and the commands that read them.

use std::fs;
use std::process::Output;

use crate::util;
use crate::util::rng::Rng;
use crate::util::vault::{audit_of, edit_store, hidden_siblings, tree_entries};
use crate::util::{TestEnv, assert_error, copy_dir, error_problems};
use keyvault::store::{Batch, Store, Tree};

/// A vault with a few keys, a revoked user and some audit entries, and its backup.
fn vault_and_backup() -> (TestEnv, Vec<u8>) {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "aes256-gcm"]);
    env.ok(["gen", "bob", "--type", "ed25519"]);
    env.ok(["revoke", "carol", "--reason", "left"]);
    let file = env.root().join("good.kvb");
    env.ok(["backup", file.to_str().unwrap()]);
    // The intact backup checks and restores.
    env.ok(["check", "--backup", file.to_str().unwrap()]);
    let bytes = fs::read(&file).unwrap();
    (env, bytes)
}

/// The length of the backup's header block, from its length field.
fn header_len(bytes: &[u8]) -> usize {
    assert_eq!(&bytes[..8], b"KVBACKUP");
    u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize
}

/// Runs `check --backup` and `restore` on a damaged backup; returns what went wrong
/// (empty when both failed with exit 7 and restored nothing).
fn damaged_backup_problems(env: &TestEnv, bytes: &[u8], label: &str) -> Vec<String> {
    let file = env.root().join(format!("{label}.kvb"));
    fs::write(&file, bytes).unwrap();
    let mut problems = Vec::new();
    let mut judge = |what: &str, out: &Output| {
        for p in error_problems(out, 7, None) {
            problems.push(format!(
                "{label}: {what}: {p} (stderr: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    };
    let out = env
        .kv()
        .arg("check")
        .arg("--backup")
        .arg(&file)
        .output()
        .unwrap();
    judge("check --backup", &out);
    let target_name = format!("restored-{label}");
    let target = env.root().join(&target_name);
    let out = env
        .kv()
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&target)
        .output()
        .unwrap();
    judge("restore", &out);
    if target.exists() {
        problems.push(format!("{label}: restore created {}", target.display()));
    }
    let leftovers = hidden_siblings(env.root(), &target_name);
    if !leftovers.is_empty() {
        problems.push(format!("{label}: restore left {leftovers:?}"));
    }
    fs::remove_file(&file).unwrap();
    problems
}

#[test]
fn every_flipped_bit_of_a_backup_is_detected_and_restores_nothing() {
    let (env, good) = vault_and_backup();
    let n = header_len(&good);
    let len = good.len();
    let body = 16 + n + 32;
    // Fixed positions first: magic, version, header length, across the header (which
    // holds the KDF parameters, salt and wrapped master key), its checksum, the first
    // record, the end marker and the MAC; then random ones up to 50.
    let mut positions: Vec<usize> = vec![0, 7, 8, 11, 12, 15];
    positions.extend((0..10).map(|i| 16 + i * n / 10));
    positions.extend([16 + n - 1, 16 + n, 16 + n + 31, body, body + 1, body + 5]);
    positions.extend([len - 33, len - 32, len - 16, len - 1]);
    let mut rng = Rng::seeded("bit flips");
    while positions.len() < 50 {
        let p = rng.below(len as u64) as usize;
        if !positions.contains(&p) {
            positions.push(p);
        }
    }
    positions.sort_unstable();
    positions.dedup();
    let mut problems = Vec::new();
    for &pos in &positions {
        let bit = rng.below(8) as u8;
        let mut bytes = good.clone();
        bytes[pos] ^= 1 << bit;
        problems.extend(damaged_backup_problems(
            &env,
            &bytes,
            &format!("flip-{pos}-{bit}"),
        ));
    }
    assert!(
        problems.is_empty(),
        "{} of {} flips not handled as exit 7 (backup {len} bytes, header {n}):\n{}",
        problems.len(),
        positions.len(),
        problems.join("\n")
    );
}

#[test]
fn every_truncation_of_a_backup_is_detected_and_restores_nothing() {
    let (env, good) = vault_and_backup();
    let n = header_len(&good);
    let len = good.len();
    let body = 16 + n + 32;
    let mut lengths: Vec<usize> = vec![
        0,
        1,
        8,
        12,
        15,
        16,
        16 + n / 2,
        16 + n,
        16 + n + 16,
        body,
        body + 1,
        body + 3,
        body + 9,
        len - 34,
        len - 33,
        len - 32,
        len - 31,
        len - 1,
    ];
    let mut rng = Rng::seeded("truncations");
    while lengths.len() < 30 {
        let l = rng.below(len as u64) as usize;
        if !lengths.contains(&l) {
            lengths.push(l);
        }
    }
    lengths.sort_unstable();
    let mut problems = Vec::new();
    for &l in &lengths {
        problems.extend(damaged_backup_problems(
            &env,
            &good[..l],
            &format!("cut-{l}"),
        ));
    }
    // Bytes appended after the MAC are damage too.
    let mut longer = good.clone();
    longer.extend_from_slice(b"\0");
    problems.extend(damaged_backup_problems(&env, &longer, "appended"));
    assert!(
        problems.is_empty(),
        "{} of {} truncations not handled as exit 7 (backup {len} bytes, header {n}):\n{}",
        problems.len(),
        lengths.len() + 1,
        problems.join("\n")
    );
}

#[test]
fn a_backup_of_another_vault_with_the_same_passphrase_header_swapped_is_detected() {
    // Two vaults with the same passphrase: the header of one on the body of the other
    // must not restore (the MAC is under the master key).
    let (env, a) = vault_and_backup();
    let (_other, b) = vault_and_backup();
    let na = header_len(&a);
    let nb = header_len(&b);
    let mut spliced = a[..16 + na + 32].to_vec();
    spliced.extend_from_slice(&b[16 + nb + 32..]);
    let problems = damaged_backup_problems(&env, &spliced, "spliced");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A vault with a known audit log (the entries and their count); no agent runs.
fn audited_vault() -> (TestEnv, u64) {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "aes256-gcm"]);
    env.ok(["gen", "bob"]);
    env.ok(["revoke", "carol"]);
    env.ok(["export", "alice", "fernet"]);
    let entries = audit_of(&env, &env.vault());
    let n = entries.len() as u64;
    assert!(n >= 6, "{entries:#?}");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
    }
    assert_eq!(
        tree_entries(&env, Tree::Audit).len() as u64,
        n,
        "one sled record per audit entry"
    );
    (env, n)
}

/// The meta-tree key of the sealed audit chain head (`HEAD_KEY` of the private
/// `vault::audit` module).
const AUDIT_HEAD_KEY: &[u8] = b"audit-head";

fn audit_key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// `audit --verify`, `audit` and `check` all exit 7 and name the position (or, with
/// `position` None, at least a problem in some tree).
fn assert_audit_break(env: &TestEnv, position: Option<u64>, what: &str) {
    let out = env.run(["audit", "--verify"]);
    let stderr = assert_error(&out, 7, &format!("audit --verify after {what}"));
    if let Some(p) = position {
        assert!(
            stderr.contains(&format!("position {p}")),
            "audit --verify after {what} does not name position {p}: {stderr}"
        );
    }
    let out = env.run(["audit"]);
    assert_error(&out, 7, &format!("audit after {what}"));
    let out = env.run(["check"]);
    assert_error(&out, 7, &format!("check after {what}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let wanted = match position {
        Some(p) => format!("problem: tree audit, position {p}"),
        None => "problem: tree ".to_string(),
    };
    assert!(
        stdout.contains(&wanted),
        "check after {what} does not report {wanted:?}: {stdout}"
    );
    // Still detected on the second look (check is read-only, nothing "repaired" it).
    let out = env.run(["audit", "--verify"]);
    assert_error(&out, 7, &format!("audit --verify again after {what}"));
}

#[test]
fn deleting_an_audit_entry_in_the_middle_is_detected() {
    let (env, n) = audited_vault();
    let mid = n / 2;
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.remove(Tree::Audit, audit_key(mid));
        s.apply(&b).unwrap();
    });
    assert_audit_break(&env, Some(mid), &format!("deleting entry {mid} of {n}"));
}

#[test]
fn editing_an_audit_entry_is_detected() {
    let (env, n) = audited_vault();
    let mid = n / 2;
    edit_store(&env, |s| {
        let mut v = s.get(Tree::Audit, &audit_key(mid)).unwrap().unwrap();
        let i = v.len() / 2;
        v[i] ^= 0x01;
        let mut b = Batch::new();
        b.insert(Tree::Audit, audit_key(mid), v);
        s.apply(&b).unwrap();
    });
    assert_audit_break(&env, Some(mid), &format!("editing entry {mid} of {n}"));
}

#[test]
fn reordering_audit_entries_is_detected() {
    let (env, n) = audited_vault();
    let (a, b) = (2, n - 1);
    edit_store(&env, |s| {
        let va = s.get(Tree::Audit, &audit_key(a)).unwrap().unwrap();
        let vb = s.get(Tree::Audit, &audit_key(b)).unwrap().unwrap();
        let mut batch = Batch::new();
        batch.insert(Tree::Audit, audit_key(a), vb);
        batch.insert(Tree::Audit, audit_key(b), va);
        s.apply(&batch).unwrap();
    });
    assert_audit_break(&env, Some(a), &format!("swapping entries {a} and {b}"));
}

#[test]
fn deleting_the_last_audit_entry_is_detected_by_the_chain_head() {
    let (env, n) = audited_vault();
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.remove(Tree::Audit, audit_key(n));
        s.apply(&b).unwrap();
    });
    assert_audit_break(&env, Some(n), &format!("deleting the last entry ({n})"));
}

/// The sealed chain head can be deleted as easily as an entry; a vault whose audit log
/// has entries but whose head is gone was tampered with too.
#[test]
fn deleting_the_last_audit_entry_and_the_chain_head_is_detected() {
    let (env, n) = audited_vault();
    let head_key = AUDIT_HEAD_KEY;
    assert!(
        tree_entries(&env, Tree::Meta)
            .iter()
            .any(|(k, _)| k.as_slice() == head_key),
        "no chain head in the meta tree"
    );
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.remove(Tree::Audit, audit_key(n));
        b.remove(Tree::Meta, head_key.to_vec());
        s.apply(&b).unwrap();
    });
    assert_audit_break(&env, None, "deleting the last entry and the chain head");
}

#[test]
fn rolling_back_the_chain_head_is_detected() {
    // The head as it was one entry ago, with the last entry deleted, is a consistent
    // older state; but an older head with the newer entries kept is not.
    let (env, _) = audited_vault();
    let head_key = AUDIT_HEAD_KEY;
    let old_head = tree_entries(&env, Tree::Meta)
        .into_iter()
        .find(|(k, _)| k.as_slice() == head_key)
        .map(|(_, v)| v)
        .unwrap();
    env.ok(["gen", "dave"]);
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.insert(Tree::Meta, head_key.to_vec(), old_head);
        s.apply(&b).unwrap();
    });
    let out = env.run(["audit", "--verify"]);
    assert_error(&out, 7, "audit --verify with a rolled-back head");
    let out = env.run(["check"]);
    assert_error(&out, 7, "check with a rolled-back head");
}

#[test]
fn swapping_key_records_between_users_is_detected() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob"]);
    let keys = tree_entries(&env, Tree::Keys);
    assert_eq!(keys.len(), 2);
    let pristine = env.root().join("pristine");
    copy_dir(&env.vault(), &pristine);
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.insert(Tree::Keys, keys[0].0.clone(), keys[1].1.clone());
        b.insert(Tree::Keys, keys[1].0.clone(), keys[0].1.clone());
        s.apply(&b).unwrap();
    });
    let out = env.run(["check"]);
    assert_error(&out, 7, "check after swapping key records");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("problem: tree keys, position 1")
            && stdout.contains("problem: tree keys, position 2"),
        "{stdout}"
    );
    for user in ["alice", "bob"] {
        assert!(!stdout.contains(user), "check names a user: {stdout}");
    }
    let out = env.run(["list"]);
    assert_error(&out, 7, "list after swapping key records");
    for user in ["alice", "bob"] {
        let out = env.run(["export", user, "fernet"]);
        assert_error(
            &out,
            7,
            &format!("export {user} after swapping key records"),
        );
    }
    // A backup of a tampered vault is refused or, if written, does not restore.
    let file = env.root().join("tampered.kvb");
    let out = env.run(["backup", file.to_str().unwrap()]);
    if out.status.success() {
        let target = env.root().join("from-tampered");
        let out = env
            .kv()
            .arg("restore")
            .arg(&file)
            .arg("--to")
            .arg(&target)
            .output()
            .unwrap();
        assert_error(&out, 7, "restore of a backup of a tampered vault");
        assert!(!target.exists());
    }
    // The copy taken before the edit is fine (the check reads the right vault).
    let out = env
        .kv()
        .arg("--vault")
        .arg(&pristine)
        .arg("check")
        .output()
        .unwrap();
    util::assert_success(&out, "check of the untouched copy");
}

#[test]
fn a_key_record_moved_to_the_revoked_tree_is_detected() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["revoke", "bob"]);
    let keys = tree_entries(&env, Tree::Keys);
    let revoked = tree_entries(&env, Tree::Revoked);
    assert_eq!((keys.len(), revoked.len()), (1, 1));
    edit_store(&env, |s: &Store| {
        let mut b = Batch::new();
        b.insert(Tree::Revoked, revoked[0].0.clone(), keys[0].1.clone());
        s.apply(&b).unwrap();
    });
    let out = env.run(["check"]);
    assert_error(&out, 7, "check after moving a record between trees");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("problem: tree revoked, position 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = env.run(["revoked"]);
    assert_error(&out, 7, "revoked after moving a record between trees");
}

/// `check` must never print a secret: no key material, no user id of a record it
/// could not open.
#[test]
fn check_reports_problems_without_secret_content() {
    let (env, _) = audited_vault();
    let exported = env.ok(["export", "alice", "aes256-gcm"]);
    edit_store(&env, |s| {
        let mut b = Batch::new();
        b.remove(Tree::Audit, audit_key(2));
        s.apply(&b).unwrap();
    });
    let out = env.run(["--json", "check"]);
    assert_error(&out, 7, "check --json of a tampered vault");
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("check --json prints JSON");
    let doc = &docs[0];
    assert_eq!(doc["ok"], false, "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["tree"] == "audit" && p["position"] == 2),
        "{doc}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(exported.trim()));
    // `--json` prints one JSON document on stdout, failure or not.
    assert_eq!(
        docs.len(),
        1,
        "check --json printed {} JSON documents: {text}",
        docs.len()
    );
}

/// Regression: deleting a record from the `revoked` tree (which needs no passphrase)
/// used to give a revoked user the right to new keys, undetected.
#[test]
fn removing_a_revocation_record_is_detected_and_gives_no_new_keys() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "mallory"]);
    env.ok(["revoke", "mallory", "--reason", "gone"]);
    env.ok(["revoke", "trent"]);
    let revoked = tree_entries(&env, Tree::Revoked);
    assert_eq!(revoked.len(), 2);
    edit_store(&env, |store| {
        let mut batch = keyvault::store::Batch::new();
        for (k, _) in &revoked {
            batch.remove(Tree::Revoked, k.clone());
        }
        store.apply(&batch).expect("delete the revocations");
    });
    let out = env.run(["gen", "mallory"]);
    let stderr = assert_error(&out, 7, "gen for a user whose revocation was removed");
    assert!(stderr.contains("revocation ledger"), "{stderr}");
    let out = env.run(["is-revoked", "mallory"]);
    assert_error(&out, 7, "is-revoked after the revocation was removed");
    let out = env.run(["revoked"]);
    assert_error(&out, 7, "revoked after the revocation was removed");
    let out = env.run(["check"]);
    assert_error(&out, 7, "check after the revocation was removed");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("problem: tree revoked"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing was added.
    let listed = env.json(["list"]);
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(0), "{listed}");
}
