//! Backups, restore, check, passphrase change, the audit log and compaction,
//! driven through the real binary. Damaged backups and tampered
//! vaults are in `lifecycle_damage.rs`; concurrency and crashes in
//! `lifecycle_stress.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util;
use crate::util::vault::{
    KeyRef, NEW_PASSPHRASE, agent_state, at, audit_of, exports_of, hidden_siblings, json_at,
    occurrences, ok_at, run_at, sealed_values_added_by, unlock, windows_of, with_pass,
};
use crate::util::{TestEnv, assert_error, assert_success, contains_bytes, pem_body};
use serde_json::Value;

/// The keys of the round-trip vault: one of each kind of type (one RSA key only, to
/// keep the suite fast).
const KEYS: [KeyRef; 5] = [
    KeyRef {
        user: "alice",
        name: "fernet",
        asymmetric: false,
    },
    KeyRef {
        user: "alice",
        name: "aes256-gcm",
        asymmetric: false,
    },
    KeyRef {
        user: "bob",
        name: "rsa-2048",
        asymmetric: true,
    },
    KeyRef {
        user: "carol",
        name: "chacha20-poly1305",
        asymmetric: false,
    },
    KeyRef {
        user: "carol",
        name: "ed25519",
        asymmetric: true,
    },
];

/// A vault with the keys of [`KEYS`], a user revoked with keys, and one revoked
/// without any.
fn populated() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    for k in KEYS {
        env.ok(["gen", k.user, "--type", k.name]);
    }
    env.ok(["gen", "dave"]);
    env.ok(["revoke", "dave", "--reason", "left the team"]);
    env.ok(["revoke", "erin"]);
    env
}

/// The entries of an audit log without their `time`, for "nothing was logged" checks.
fn seq_ops(entries: &[Value]) -> Vec<(u64, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["operation"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn backup_restore_round_trip_keeps_every_key_revocation_and_audit_entry() {
    let env = populated();
    let vault = env.vault();
    let before = exports_of(&env, &vault, &KEYS);
    let revoked_before = json_at(&env, &vault, &["revoked"]);

    let file = env.root().join("vault.kvb");
    let report = json_at(&env, &vault, &["backup", file.to_str().unwrap()]);
    assert_eq!(report["path"], file.to_str().unwrap(), "{report}");
    let mode = fs::metadata(&file)
        .expect("the backup exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "backup mode {mode:o}");
    assert_eq!(
        report["bytes"].as_u64(),
        Some(fs::metadata(&file).unwrap().len())
    );
    assert!(
        hidden_siblings(env.root(), "vault.kvb").is_empty(),
        "temp files left beside the backup: {:?}",
        hidden_siblings(env.root(), "vault.kvb")
    );
    // The audit log as the backup holds it (its own `backup` entry last).
    let audit_at_backup = audit_of(&env, &vault);
    assert_eq!(
        audit_at_backup.last().unwrap()["operation"],
        "backup",
        "{audit_at_backup:?}"
    );

    let restored = env.root().join("restored");
    let out = run_at(
        &env,
        &vault,
        [
            "restore",
            file.to_str().unwrap(),
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_success(&out, "restore");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("revocations made after this backup"),
        "restore without --revocations-from must warn: {stderr}"
    );
    assert!(restored.join("header").is_file());

    // The audit log came over, entry for entry, followed by the restore.
    let audit_restored = audit_of(&env, &restored);
    assert_eq!(
        audit_restored.len(),
        audit_at_backup.len() + 1,
        "{audit_restored:#?}"
    );
    for (orig, copy) in audit_at_backup.iter().zip(&audit_restored) {
        for field in [
            "seq",
            "operation",
            "user",
            "key",
            "outcome",
            "detail",
            "time",
        ] {
            assert_eq!(orig[field], copy[field], "field {field}: {orig} vs {copy}");
        }
    }
    let last = audit_restored.last().unwrap();
    assert_eq!(last["operation"], "restore", "{last}");
    assert_eq!(last["seq"].as_u64(), Some(audit_at_backup.len() as u64 + 1));

    for v in [&vault, &restored] {
        let check = json_at(&env, v, &["check"]);
        assert_eq!(check["ok"], true, "{}: {check}", v.display());
        assert_eq!(check["keys"], KEYS.len(), "{check}");
        assert_eq!(check["revoked"], 2, "{check}");
        let verify = ok_at(&env, v, &["audit", "--verify"]);
        assert!(
            String::from_utf8_lossy(&verify).contains("audit chain verified"),
            "{}",
            String::from_utf8_lossy(&verify)
        );
    }
    assert_eq!(json_at(&env, &restored, &["revoked"]), revoked_before);
    assert_eq!(
        json_at(&env, &restored, &["list"]),
        json_at(&env, &vault, &["list"])
    );
    let after = exports_of(&env, &restored, &KEYS);
    assert_eq!(after.len(), before.len());
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        assert_eq!(a, b, "export {i} differs after the round trip");
    }
    let is_revoked = run_at(&env, &restored, ["is-revoked", "dave"]);
    assert_eq!(is_revoked.status.code(), Some(0));
    // No key comes back for the revoked user.
    let gone = run_at(&env, &restored, ["export", "dave", "fernet"]);
    let err = assert_error(
        &gone,
        6,
        "export a revoked user's key from the restored vault",
    );
    assert!(err.contains("\"dave\" was revoked at"), "{err}");
    // The backup itself checks.
    let checked = ok_at(&env, &vault, &["check", "--backup", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&checked).contains("ok"));
}

#[test]
fn backup_through_the_agent_restores_the_same_keys() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "ed25519"]);
    let keys = [
        KeyRef {
            user: "alice",
            name: "fernet",
            asymmetric: false,
        },
        KeyRef {
            user: "alice",
            name: "ed25519",
            asymmetric: true,
        },
    ];
    let before = exports_of(&env, &env.vault(), &keys);
    let guard = unlock(&env);
    let file = env.root().join("agent.kvb");
    let out = env
        .bare()
        .arg("backup")
        .arg(&file)
        .output()
        .expect("backup");
    assert_success(&out, "backup through the agent");
    let mode = fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "backup mode {mode:o}");
    let out = env
        .bare()
        .arg("check")
        .arg("--backup")
        .arg(&file)
        .output()
        .expect("check --backup");
    // `check --backup` needs the backup's passphrase even while the vault is unlocked.
    assert_error(&out, 4, "check --backup without a passphrase");
    drop(guard);
    let restored = env.root().join("r");
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
    assert_eq!(exports_of(&env, &restored, &keys), before);
    assert_eq!(json_at(&env, &restored, &["check"])["ok"], true);
}

#[test]
fn backup_refuses_an_existing_file_and_changes_nothing() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let file = env.write_private("precious.kvb", b"not to be overwritten\n");
    let audit_before = audit_of(&env, &env.vault());
    let snapshot = env.snapshot();
    let out = env.run(["backup", file.to_str().unwrap()]);
    assert_error(&out, 6, "backup onto an existing file");
    assert_eq!(fs::read(&file).unwrap(), b"not to be overwritten\n");
    assert!(
        hidden_siblings(env.root(), "precious.kvb").is_empty(),
        "temp files left: {:?}",
        hidden_siblings(env.root(), "precious.kvb")
    );
    assert_eq!(env.snapshot(), snapshot);
    // A refused backup must not be logged as a backup that happened.
    let audit_after = audit_of(&env, &env.vault());
    let added: Vec<_> = audit_after[audit_before.len()..]
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .collect();
    assert!(
        added.is_empty(),
        "the refused backup left audit entries with outcome ok: {added:?}"
    );
    assert_eq!(
        seq_ops(&audit_after[..audit_before.len()]),
        seq_ops(&audit_before)
    );
}

#[test]
fn restore_refuses_an_existing_target_and_a_missing_backup() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let file = env.root().join("b.kvb");
    env.ok(["backup", file.to_str().unwrap()]);

    // An existing (empty) directory, and one holding a file: both refused, untouched.
    let empty = env.root().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = env.run([
        "restore",
        file.to_str().unwrap(),
        "--to",
        empty.to_str().unwrap(),
    ]);
    assert_error(&out, 6, "restore onto an existing empty dir");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    let full = env.root().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("notes.txt"), b"mine").unwrap();
    let out = env.run([
        "restore",
        file.to_str().unwrap(),
        "--to",
        full.to_str().unwrap(),
    ]);
    assert_error(&out, 6, "restore onto an existing dir");
    assert_eq!(fs::read(full.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(fs::read_dir(&full).unwrap().count(), 1);
    // Onto the live vault itself.
    let snapshot = env.snapshot();
    let out = env.run([
        "restore",
        file.to_str().unwrap(),
        "--to",
        env.vault().to_str().unwrap(),
    ]);
    assert_error(&out, 6, "restore onto the vault");
    assert_eq!(env.snapshot(), snapshot);

    let target = env.root().join("t");
    let missing = env.root().join("missing.kvb");
    let out = env.run([
        "restore",
        missing.to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_error(&out, 5, "restore of a missing backup");
    assert!(!target.exists());
    let out = env.run(["check", "--backup", missing.to_str().unwrap()]);
    assert_error(&out, 5, "check of a missing backup");
}

#[test]
fn restore_with_a_wrong_passphrase_leaves_nothing_behind() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let file = env.root().join("b.kvb");
    env.ok(["backup", file.to_str().unwrap()]);
    let target = env.root().join("restored");
    let out = with_pass(&env, "not the passphrase")
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&target)
        .output()
        .expect("restore");
    assert_error(&out, 3, "restore with a wrong passphrase");
    assert!(!target.exists(), "a target dir was left behind");
    assert!(
        hidden_siblings(env.root(), "restored").is_empty(),
        "work dirs left behind: {:?}",
        hidden_siblings(env.root(), "restored")
    );
    let out = with_pass(&env, "not the passphrase")
        .arg("check")
        .arg("--backup")
        .arg(&file)
        .output()
        .expect("check --backup");
    assert_error(&out, 3, "check --backup with a wrong passphrase");
    // Without any passphrase: exit 4, and still nothing.
    let out = env
        .bare()
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&target)
        .output()
        .expect("restore");
    assert_error(&out, 4, "restore without a passphrase");
    assert!(!target.exists());
}

/// How `passwd` gets the new passphrase.
#[derive(Clone, Copy, Debug)]
enum NewVia {
    Env,
    FileFlag,
    FileEnv,
}

fn passwd_changes_the_passphrase(via: NewVia) {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "bob", "--type", "aes256-gcm"]);
    let keys = [
        KEYS[0],
        KeyRef {
            user: "bob",
            ..KEYS[1]
        },
    ];
    let before = exports_of(&env, &env.vault(), &keys);
    let old_backup = env.root().join("before.kvb");
    env.ok(["backup", old_backup.to_str().unwrap()]);

    let mut cmd = env.kv();
    cmd.arg("passwd");
    let new_file = env.write_private("new-passphrase", format!("{NEW_PASSPHRASE}\n").as_bytes());
    match via {
        NewVia::Env => {
            cmd.env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE);
        }
        NewVia::FileFlag => {
            cmd.arg("--new-passphrase-file").arg(&new_file);
        }
        NewVia::FileEnv => {
            cmd.env("KEYVAULT_NEW_PASSPHRASE_FILE", &new_file);
        }
    }
    let out = cmd.output().expect("passwd");
    assert_success(&out, &format!("passwd ({via:?})"));

    let old = with_pass(&env, util::PASSPHRASE)
        .arg("list")
        .output()
        .unwrap();
    assert_error(&old, 3, "the old passphrase after passwd");
    let new = with_pass(&env, NEW_PASSPHRASE)
        .arg("list")
        .output()
        .unwrap();
    assert_success(&new, "the new passphrase after passwd");
    for (k, expected) in keys.iter().zip(&before) {
        let out = with_pass(&env, NEW_PASSPHRASE)
            .args(["export", k.user, k.name])
            .output()
            .unwrap();
        assert_success(&out, "export with the new passphrase");
        assert_eq!(&out.stdout, expected, "{k:?} changed across passwd");
    }
    let check = with_pass(&env, NEW_PASSPHRASE)
        .arg("check")
        .output()
        .unwrap();
    assert_success(&check, "check after passwd");
    let log = with_pass(&env, NEW_PASSPHRASE)
        .args(["--json", "audit"])
        .output()
        .unwrap();
    assert_success(&log, "audit after passwd");
    let log = util::parse_json(&log.stdout, "audit");
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["operation"] == "passwd"),
        "{log}"
    );
    // The text must not carry either passphrase.
    let text = log.to_string();
    assert!(!text.contains(NEW_PASSPHRASE) && !text.contains(util::PASSPHRASE));

    // A backup from before restores with the old passphrase only.
    let r_new = env.root().join("r-new");
    let out = with_pass(&env, NEW_PASSPHRASE)
        .arg("restore")
        .arg(&old_backup)
        .arg("--to")
        .arg(&r_new)
        .output()
        .unwrap();
    assert_error(&out, 3, "restore of an old backup with the new passphrase");
    assert!(!r_new.exists());
    assert!(hidden_siblings(env.root(), "r-new").is_empty());
    let r_old = env.root().join("r-old");
    let out = with_pass(&env, util::PASSPHRASE)
        .arg("restore")
        .arg(&old_backup)
        .arg("--to")
        .arg(&r_old)
        .output()
        .unwrap();
    assert_success(&out, "restore of an old backup with the old passphrase");
    assert_eq!(exports_of(&env, &r_old, &keys), before);
}

#[test]
fn passwd_with_the_new_passphrase_in_the_environment() {
    passwd_changes_the_passphrase(NewVia::Env);
}

#[test]
fn passwd_with_new_passphrase_file() {
    passwd_changes_the_passphrase(NewVia::FileFlag);
}

#[test]
fn passwd_with_new_passphrase_file_in_the_environment() {
    passwd_changes_the_passphrase(NewVia::FileEnv);
}

#[test]
fn passwd_with_a_wrong_old_passphrase_changes_nothing() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let snapshot = env.snapshot();
    let out = with_pass(&env, "wrong")
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .arg("passwd")
        .output()
        .unwrap();
    assert_error(&out, 3, "passwd with a wrong old passphrase");
    assert_eq!(env.snapshot(), snapshot);
    let new = with_pass(&env, NEW_PASSPHRASE)
        .arg("list")
        .output()
        .unwrap();
    assert_error(&new, 3, "the would-be new passphrase");
    // No passphrase at all: exit 4, nothing changed.
    let out = env
        .bare()
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .arg("passwd")
        .output()
        .unwrap();
    assert_error(&out, 4, "passwd without the old passphrase");
    assert_eq!(env.snapshot(), snapshot);
}

#[test]
fn passwd_refuses_weak_kdf_parameters_without_allow_weak_kdf() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let snapshot = env.snapshot();
    let audit_before = audit_of(&env, &env.vault());
    let out = env
        .kv()
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .args([
            "passwd",
            "--kdf-memory",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
        ])
        .output()
        .unwrap();
    assert_error(&out, 6, "passwd with weak KDF parameters");
    assert_eq!(env.snapshot(), snapshot);
    assert_eq!(
        seq_ops(&audit_of(&env, &env.vault())),
        seq_ops(&audit_before)
    );
    let new = with_pass(&env, NEW_PASSPHRASE)
        .arg("list")
        .output()
        .unwrap();
    assert_error(&new, 3, "the refused new passphrase");

    // With consent, the parameters change (and say so in the audit log).
    let out = env
        .kv()
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .args([
            "passwd",
            "--kdf-memory",
            "2",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
            "--allow-weak-kdf",
        ])
        .output()
        .unwrap();
    assert_success(&out, "passwd with weak KDF parameters allowed");
    let log = with_pass(&env, NEW_PASSPHRASE)
        .args(["--json", "audit"])
        .output()
        .unwrap();
    let log = util::parse_json(&log.stdout, "audit");
    let last = log["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["operation"], "passwd", "{last}");
    assert!(
        last["detail"].as_str().unwrap_or("").contains("m=2 MiB"),
        "{last}"
    );
}

#[test]
fn passwd_through_the_agent_keeps_the_session_unlocked() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let before = exports_of(&env, &env.vault(), &KEYS[..1]);
    let guard = unlock(&env);
    // A wrong old passphrase is refused by the agent too.
    let out = with_pass(&env, "wrong")
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .arg("passwd")
        .output()
        .unwrap();
    assert_error(
        &out,
        3,
        "passwd through the agent with a wrong old passphrase",
    );
    assert_eq!(agent_state(&env), "unlocked");

    let out = env
        .kv()
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .arg("passwd")
        .output()
        .unwrap();
    assert_success(&out, "passwd through the agent");
    assert_eq!(agent_state(&env), "unlocked", "passwd locked the session");
    let out = env
        .bare()
        .args(["export", "alice", "fernet"])
        .output()
        .unwrap();
    assert_success(&out, "export through the agent after passwd");
    assert_eq!(out.stdout, before[0]);
    // A backup taken now, through the agent, carries the new passphrase.
    let file = env.root().join("after.kvb");
    let out = env.bare().arg("backup").arg(&file).output().unwrap();
    assert_success(&out, "backup through the agent after passwd");
    drop(guard);
    assert_eq!(agent_state(&env), "locked");

    let old = with_pass(&env, util::PASSPHRASE)
        .arg("list")
        .output()
        .unwrap();
    assert_error(&old, 3, "the old passphrase after passwd through the agent");
    let out = with_pass(&env, NEW_PASSPHRASE)
        .args(["export", "alice", "fernet"])
        .output()
        .unwrap();
    assert_success(&out, "the new passphrase one-shot");
    assert_eq!(out.stdout, before[0]);
    let out = with_pass(&env, NEW_PASSPHRASE)
        .arg("check")
        .arg("--backup")
        .arg(&file)
        .output()
        .unwrap();
    assert_success(
        &out,
        "check --backup of a post-passwd backup, new passphrase",
    );
}

/// Compaction after a revocation: the destroyed records' sealed bytes leave the files.
/// `how` runs the revocation (and the compaction) of alice.
fn destroyed_records_leave_the_files(how: &str) {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["gen", "carol", "--type", "aes256-gcm"]);
    let sealed = sealed_values_added_by(
        &env,
        &[
            &["gen", "alice"],
            &["gen", "alice", "--type", "ed25519"],
            &["gen", "alice", "--type", "chacha20-poly1305"],
        ],
    );
    let windows = windows_of(&sealed);
    assert_eq!(
        occurrences(&env.vault(), &windows),
        windows.len(),
        "the sealed records are not in the vault files to begin with: the search is broken"
    );
    let others = [
        KeyRef {
            user: "bob",
            name: "fernet",
            asymmetric: false,
        },
        KeyRef {
            user: "carol",
            name: "aes256-gcm",
            asymmetric: false,
        },
    ];
    let before = exports_of(&env, &env.vault(), &others);

    let mut guard = None;
    match how {
        "compact" => {
            env.ok(["revoke", "alice", "--reason", "gone"]);
            env.ok(["compact"]);
        }
        "purge" => {
            let receipt = env.json(["revoke", "alice", "--purge"]);
            assert_eq!(
                receipt["receipt"]["destroyed"].as_array().map(Vec::len),
                Some(3),
                "{receipt}"
            );
            assert!(receipt["compacted"].is_object(), "{receipt}");
        }
        "agent" => {
            guard = Some(unlock(&env));
            let out = env.bare().args(["revoke", "alice"]).output().unwrap();
            assert_success(&out, "revoke through the agent");
            let out = env.bare().arg("compact").output().unwrap();
            assert_success(&out, "compact through the agent");
            assert_eq!(agent_state(&env), "unlocked", "compact locked the session");
            let out = env.bare().arg("check").output().unwrap();
            assert_success(&out, "check through the agent after compact");
            for (k, expected) in others.iter().zip(&before) {
                let out = env
                    .bare()
                    .args(["export", k.user, k.name])
                    .output()
                    .unwrap();
                assert_success(&out, "export through the agent after compact");
                assert_eq!(&out.stdout, expected);
            }
            // The agent still writes to the compacted database.
            let out = env.bare().args(["gen", "dave"]).output().unwrap();
            assert_success(&out, "gen through the agent after compact");
            assert_eq!(
                occurrences(&env.vault(), &windows),
                0,
                "destroyed records are still in the files while the agent runs"
            );
        }
        _ => unreachable!(),
    }
    drop(guard);
    assert_eq!(
        occurrences(&env.vault(), &windows),
        0,
        "sealed bytes of destroyed records remain in the vault files after {how}"
    );
    let leftovers = hidden_siblings(env.root(), "vault");
    assert!(
        leftovers.is_empty(),
        "work dirs left beside the vault: {leftovers:?}"
    );
    let check = env.json(["check"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(exports_of(&env, &env.vault(), &others), before);
    let out = env.run(["export", "alice", "fernet"]);
    let err = assert_error(&out, 6, "export of a revoked user's key after compaction");
    assert!(err.contains("\"alice\" was revoked at"), "{err}");
    let log = audit_of(&env, &env.vault());
    assert!(
        log.iter().any(|e| e["operation"] == "compact"),
        "no compact entry: {log:?}"
    );
}

#[test]
fn revoke_then_compact_removes_destroyed_records_from_the_files() {
    destroyed_records_leave_the_files("compact");
}

#[test]
fn revoke_purge_removes_destroyed_records_from_the_files() {
    destroyed_records_leave_the_files("purge");
}

#[test]
fn compact_through_the_agent_removes_destroyed_records_from_the_files() {
    destroyed_records_leave_the_files("agent");
}

#[test]
fn failed_unlocks_are_logged_on_the_next_successful_unlock() {
    let env = TestEnv::new();
    env.init();
    for _ in 0..2 {
        let out = with_pass(&env, "wrong").arg("unlock").output().unwrap();
        assert_error(&out, 3, "unlock with a wrong passphrase");
    }
    let guard = unlock(&env);
    let out = env.bare().args(["--json", "audit"]).output().unwrap();
    assert_success(&out, "audit through the agent");
    let log = util::parse_json(&out.stdout, "audit");
    let entries = log["entries"].as_array().unwrap();
    let failures: Vec<_> = entries
        .iter()
        .filter(|e| e["operation"] == "unlock-failures")
        .collect();
    assert_eq!(failures.len(), 1, "{log:#}");
    let detail = failures[0]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("2 failed attempt(s)"), "{detail}");
    assert_ne!(failures[0]["outcome"], "ok", "{}", failures[0]);
    let pos = entries
        .iter()
        .position(|e| e["operation"] == "unlock-failures")
        .unwrap();
    assert!(
        entries[pos + 1..]
            .iter()
            .any(|e| e["operation"] == "unlock"),
        "no unlock entry after the failures: {log:#}"
    );
    drop(guard);
    // Counted once: a later unlock does not report them again.
    let guard = unlock(&env);
    let out = env.bare().args(["--json", "audit"]).output().unwrap();
    let log = util::parse_json(&out.stdout, "audit");
    let count = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "unlock-failures")
        .count();
    assert_eq!(count, 1, "{log:#}");
    drop(guard);
}

#[test]
fn audit_since_filters_by_date_and_never_holds_key_material() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "aes256-gcm"]);
    env.ok(["gen", "bob", "--type", "ed25519"]);
    let fernet = env.ok(["export", "alice", "fernet"]);
    let aes = env.ok(["export", "alice", "aes256-gcm"]);
    let ed = env.ok(["export", "bob", "ed25519"]);
    let ed_der = env.ok_bytes(["export", "bob", "ed25519", "--format", "der"]);
    env.ok(["revoke", "alice", "--reason", "rotation test"]);

    let all = audit_of(&env, &env.vault());
    assert!(all.len() >= 8, "{all:#?}");
    for op in ["init", "gen", "export", "revoke"] {
        assert!(
            all.iter().any(|e| e["operation"] == op),
            "no {op} entry: {all:#?}"
        );
    }
    let since_old = env.json(["audit", "--since", "2000-01-01"]);
    assert_eq!(since_old["entries"].as_array().unwrap(), &all);
    let since_rfc = env.json(["audit", "--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(since_rfc["entries"].as_array().unwrap().len(), all.len());
    let since_future = env.json(["audit", "--since", "2999-01-01"]);
    assert_eq!(
        since_future["entries"].as_array().map(Vec::len),
        Some(0),
        "{since_future}"
    );
    let text = env.ok(["audit", "--since", "2999-01-01"]);
    assert!(text.contains("no audit entries"), "{text}");
    for bad in ["garbage", "2024-13-45", ""] {
        let out = env.run(["audit", "--since", bad]);
        assert_error(&out, 2, &format!("audit --since {bad:?}"));
    }

    let json_text = env.ok(["--json", "audit"]);
    let table = env.ok(["audit"]);
    let mut secrets: Vec<String> = vec![fernet.trim().into(), aes.trim().into()];
    secrets.extend(
        ed.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(str::to_string),
    );
    {
        use base64::Engine as _;
        secrets.push(base64::engine::general_purpose::STANDARD.encode(&ed_der));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(pem_body(&ed)));
    }
    for s in &secrets {
        assert!(!s.is_empty());
        assert!(!json_text.contains(s.as_str()), "audit --json holds {s}");
        assert!(!table.contains(s.as_str()), "audit holds {s}");
    }
    assert!(!contains_bytes(
        json_text.as_bytes(),
        &ed_der[ed_der.len() - 32..]
    ));
    // Nor the passphrase.
    assert!(!json_text.contains(util::PASSPHRASE));
}

#[test]
fn check_of_a_vault_or_backup_that_does_not_exist() {
    let env = TestEnv::new();
    let out = env.run(["check"]);
    assert_error(&out, 5, "check without a vault");
    let out = at(&env, &env.root().join("nowhere"))
        .arg("audit")
        .output()
        .unwrap();
    assert_error(&out, 5, "audit without a vault");
    let out = env.run(["backup", env.root().join("x.kvb").to_str().unwrap()]);
    assert_error(&out, 5, "backup without a vault");
    assert!(!env.root().join("x.kvb").exists());
    let out = env.run(["compact"]);
    assert_error(&out, 5, "compact without a vault");
    assert!(!env.vault().exists(), "compact created a vault");
}

/// A vault with alice, bob and carol (carol revoked), backed up; then alice is revoked
/// in the live vault. Returns the env and the backup.
fn revoked_after_backup() -> (TestEnv, std::path::PathBuf) {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "aes256-gcm"]);
    env.ok(["gen", "bob"]);
    env.ok(["gen", "carol"]);
    env.ok(["revoke", "carol", "--reason", "before the backup"]);
    let file = env.root().join("old.kvb");
    env.ok(["backup", file.to_str().unwrap()]);
    env.ok(["revoke", "alice", "--reason", "after the backup"]);
    (env, file)
}

/// What a restored vault must look like once alice's later revocation is re-applied.
fn assert_alice_revoked_in(env: &TestEnv, restored: &std::path::Path) {
    let out = run_at(env, restored, ["is-revoked", "alice"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "alice came back from the backup"
    );
    let out = run_at(env, restored, ["export", "alice", "fernet"]);
    let err = assert_error(&out, 6, "export of alice's key from the restore");
    assert!(err.contains("\"alice\" was revoked at"), "{err}");
    let listed = json_at(env, restored, &["list"]);
    assert!(
        !listed.to_string().contains("\"alice\""),
        "alice still has keys: {listed}"
    );
    let revoked = json_at(env, restored, &["revoked"]);
    let alice = revoked["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "alice")
        .cloned()
        .expect("alice in the revoked list");
    assert_eq!(alice["reason"], "after the backup", "{alice}");
    assert_eq!(json_at(env, restored, &["check"])["ok"], true);
    ok_at(env, restored, &["export", "bob", "fernet"]);
}

#[test]
fn restore_with_revocations_from_reapplies_later_revocations() {
    let (env, file) = revoked_after_backup();
    // Without the flag the old backup brings alice back (and says so).
    let plain = env.root().join("plain");
    ok_at(
        &env,
        &env.vault(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--to",
            plain.to_str().unwrap(),
        ],
    );
    let out = run_at(&env, &plain, ["is-revoked", "alice"]);
    assert_eq!(out.status.code(), Some(1));

    let restored = env.root().join("restored");
    let report = json_at(
        &env,
        &env.vault(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--to",
            restored.to_str().unwrap(),
            "--revocations-from",
            env.vault().to_str().unwrap(),
        ],
    );
    assert_eq!(
        report["revocations_applied"],
        serde_json::json!(["alice"]),
        "{report}"
    );
    assert_alice_revoked_in(&env, &restored);
    let log = audit_of(&env, &restored);
    assert!(
        log.iter()
            .any(|e| e["operation"] == "revoke" && e["user"] == "alice"),
        "no revoke entry for the re-applied revocation: {log:#?}"
    );
}

#[test]
fn restore_with_revocations_from_an_unlocked_vault() {
    let (env, file) = revoked_after_backup();
    let guard = unlock(&env);
    let restored = env.root().join("restored");
    let out = env
        .kv()
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&restored)
        .arg("--revocations-from")
        .arg(env.vault())
        .output()
        .unwrap();
    assert_success(&out, "restore --revocations-from an unlocked vault");
    assert_eq!(agent_state(&env), "unlocked");
    drop(guard);
    assert_alice_revoked_in(&env, &restored);
}

/// A backup made before `passwd` opens with the old passphrase; the live vault now
/// wants the new one. If the revocations cannot be read, the restore must fail as a
/// whole: leaving the restored vault in place would bring the revoked user back, which
/// is what `--revocations-from` exists to prevent.
#[test]
fn restore_with_revocations_from_a_vault_it_cannot_open_restores_nothing() {
    let (env, file) = revoked_after_backup();
    let out = env
        .kv()
        .env("KEYVAULT_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .arg("passwd")
        .output()
        .unwrap();
    assert_success(&out, "passwd");
    let restored = env.root().join("restored");
    let out = with_pass(&env, util::PASSPHRASE)
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&restored)
        .arg("--revocations-from")
        .arg(env.vault())
        .output()
        .unwrap();
    assert_error(
        &out,
        3,
        "restore --revocations-from a vault of another passphrase",
    );
    assert!(
        !restored.exists(),
        "the failed restore left {} in place, with the revoked user's keys",
        restored.display()
    );
    assert!(hidden_siblings(env.root(), "restored").is_empty());

    // A missing revocations vault is refused before anything is written.
    let out = with_pass(&env, util::PASSPHRASE)
        .arg("restore")
        .arg(&file)
        .arg("--to")
        .arg(&restored)
        .arg("--revocations-from")
        .arg(env.root().join("no-such-vault"))
        .output()
        .unwrap();
    assert_error(&out, 5, "restore --revocations-from a missing vault");
    assert!(!restored.exists());
}

#[test]
fn backup_with_a_relative_path_through_the_agent_lands_in_the_callers_directory() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let guard = unlock(&env);
    let sub = env.root().join("sub");
    fs::create_dir(&sub).unwrap();
    let out = env
        .bare()
        .current_dir(&sub)
        .args(["backup", "rel.kvb"])
        .output()
        .unwrap();
    assert_success(&out, "backup rel.kvb through the agent");
    drop(guard);
    assert!(
        sub.join("rel.kvb").is_file(),
        "the backup is not in the caller's dir"
    );
    ok_at(
        &env,
        &env.vault(),
        &["check", "--backup", sub.join("rel.kvb").to_str().unwrap()],
    );
}

#[test]
fn backup_into_a_missing_directory_fails_cleanly_and_logs_no_backup() {
    let env = TestEnv::new();
    env.init();
    let before = audit_of(&env, &env.vault());
    let file = env.root().join("no-such-dir").join("x.kvb");
    let out = env.run(["backup", file.to_str().unwrap()]);
    assert_error(&out, 8, "backup into a missing directory");
    assert!(!env.root().join("no-such-dir").exists());
    let after = audit_of(&env, &env.vault());
    let added: Vec<_> = after[before.len()..]
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .collect();
    assert!(
        added.is_empty(),
        "the failed backup left audit entries with outcome ok: {added:?}"
    );
}

#[test]
fn a_file_that_is_not_a_backup_or_of_a_newer_format_is_refused() {
    use sha2::Digest as _;
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let file = env.root().join("b.kvb");
    env.ok(["backup", file.to_str().unwrap()]);

    let text = env.write_private("notes.txt", b"hello, not a backup\n");
    let out = env.run(["check", "--backup", text.to_str().unwrap()]);
    assert_error(&out, 7, "check --backup of a text file");
    let target = env.root().join("t");
    let out = env.run([
        "restore",
        text.to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_error(&out, 7, "restore of a text file");
    assert!(!target.exists());

    // A well-formed header of backup format 2 (checksum recomputed): a newer keyvault
    // wrote it, which is exit 8, not damage.
    let mut bytes = fs::read(&file).unwrap();
    let n = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    bytes[8..12].copy_from_slice(&2u32.to_be_bytes());
    let sum = sha2::Sha256::digest(&bytes[..16 + n]);
    bytes[16 + n..16 + n + 32].copy_from_slice(&sum);
    let newer = env.write_private("newer.kvb", &bytes);
    let out = env.run(["check", "--backup", newer.to_str().unwrap()]);
    let err = assert_error(&out, 8, "check --backup of a format 2 backup");
    assert!(err.contains("upgrade keyvault"), "{err}");
    let out = env.run([
        "restore",
        newer.to_str().unwrap(),
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_error(&out, 8, "restore of a format 2 backup");
    assert!(!target.exists());
}

/// Regression: `passwd` on a locked vault asked for the current passphrase twice on a
/// terminal (once for itself, once more to open the vault) and ran the KDF on it twice.
#[test]
fn passwd_asked_for_the_current_passphrase_twice_on_a_terminal() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    let mut asked_current = 0;
    let mut cmd = env.bare_std();
    cmd.arg("passwd");
    let run = util::run_on_terminal(cmd, |text| {
        if text.ends_with("New passphrase: ") || text.ends_with("Repeat the passphrase: ") {
            Some(NEW_PASSPHRASE.to_string())
        } else if text.ends_with("Passphrase: ") {
            asked_current += 1;
            Some(util::PASSPHRASE.to_string())
        } else {
            None
        }
    });
    assert_eq!(run.code, Some(0), "passwd on a terminal: {run:?}");
    assert_eq!(
        asked_current, 1,
        "the current passphrase was asked for {asked_current} times: {:?}",
        run.terminal
    );
    assert!(
        !run.terminal.contains(util::PASSPHRASE),
        "a passphrase was echoed"
    );
    let out = with_pass(&env, NEW_PASSPHRASE)
        .args(["export", "alice", "fernet"])
        .output()
        .expect("export");
    assert_success(&out, "export with the new passphrase");
}
