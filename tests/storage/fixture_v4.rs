//! The committed format 4 vault (tests/fixtures/v4, see its README.md) opens with the
//! current keyvault and gives back exactly the keys, revocation and audit log it was made
//! with; its header file is authenticated: a format set back is tampering, a format set
//! forward is a newer vault, and a changed vault id fails the header's MAC.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use crate::util;
use crate::util::fixture::{Fixture, FixtureKey};
use crate::util::{TestEnv, assert_error};

/// The committed vault (its README gives the passphrase and what it holds).
const FIXTURE: Fixture = Fixture {
    version: "v4",
    passphrase: "keyvault fixture v4 passphrase",
};

/// Every key the fixture holds, in `list` order.
const KEYS: [FixtureKey; 7] = [
    (
        "User123",
        "aes256-gcm",
        "aes256-gcm",
        false,
        1,
        &[(
            1,
            "primary",
            "SHA256:GxrM+LJbBQDqmjBU/qhmYPO6ZzmYWR9Gx8iA6rOUi4I",
            1,
        )],
    ),
    (
        "User123",
        "fernet",
        "fernet",
        false,
        1,
        &[(
            1,
            "primary",
            "SHA256:lW4I8HwTZNTFYmixzanfql8ssCSOGHre3JhyFKbIs+0",
            1,
        )],
    ),
    (
        "alice",
        "chacha",
        "chacha20-poly1305",
        false,
        3,
        &[
            (
                1,
                "decrypt-only",
                "SHA256:6P+uyh0cT2UI1anBmeml8/rQoilI2BeJY7pON/CRERc",
                0,
            ),
            (
                3,
                "primary",
                "SHA256:sKB4ege90bJrJ/qsoD/N0vVWJiZWziXo33ru+IZAjak",
                0,
            ),
        ],
    ),
    (
        "alice",
        "signing",
        "rsa-2048",
        false,
        1,
        &[(
            1,
            "primary",
            "SHA256:08j6stm0Ej/xGKp2P6nwV2kmAjl3G+0nvUczFThRXnE",
            1,
        )],
    ),
    (
        "carol",
        "verify",
        "rsa-2048",
        true,
        1,
        &[(
            1,
            "primary",
            "SHA256:08j6stm0Ej/xGKp2P6nwV2kmAjl3G+0nvUczFThRXnE",
            0,
        )],
    ),
    (
        "dave",
        "generated",
        "aes256-gcm",
        false,
        1,
        &[(
            1,
            "primary",
            "SHA256:jdLJHTZj5CgNRuyIxWzYd+8saHQtGvx+GNihuRnGJqQ",
            0,
        )],
    ),
    (
        "erin",
        "signing",
        "ed25519",
        false,
        1,
        &[(
            1,
            "primary",
            "SHA256:ja/yrZvwpR7eZy9C1qCaPBxVDyU+xb71pMuauFV6g3A",
            1,
        )],
    ),
];

/// The fixture's audit log: operation, user, key (`-` for none). It holds an entry of
/// every kind keyvault writes in a vault made at format 4.
const AUDIT: [(&str, &str, &str); 32] = [
    ("init", "-", "-"),
    ("import", "User123", "fernet"),
    ("import", "User123", "aes256-gcm"),
    ("import", "alice", "chacha"),
    ("import", "alice", "signing"),
    ("import", "carol", "verify"),
    ("import", "erin", "signing"),
    ("gen", "dave", "generated"),
    ("rotate", "alice", "chacha"),
    ("rotate", "alice", "chacha"),
    ("delete-version", "alice", "chacha"),
    ("gen", "dave", "temporary"),
    ("delete", "dave", "temporary"),
    ("gen", "bob", "fernet"),
    ("import", "bob", "backup"),
    ("revoke", "bob", "-"),
    ("encrypt", "User123", "fernet"),
    ("decrypt", "User123", "fernet"),
    ("sign", "alice", "signing"),
    ("sign", "erin", "signing"),
    ("export", "dave", "generated"),
    ("export", "alice", "chacha"),
    ("unlock-failures", "-", "-"),
    ("passwd", "-", "-"),
    ("backup", "-", "-"),
    ("restore", "-", "-"),
    ("compact", "-", "-"),
    ("unlock", "-", "-"),
    ("encrypt", "User123", "aes256-gcm"),
    ("decrypt", "User123", "aes256-gcm"),
    ("uses", "-", "-"),
    ("accept-rollback", "-", "-"),
];

/// Where the vault id starts in the header file: after the magic (8 bytes), the format
/// (4), the body length (4) and the body's record-format byte (1).
const VAULT_ID_AT: usize = 17;

/// Entries of the test's temp dir that a migration's backup would be.
fn backups_beside(env: &TestEnv) -> usize {
    fs::read_dir(env.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("backup")
        })
        .count()
}

#[test]
fn the_v4_fixture_opens_and_gives_back_its_keys() {
    let before = FIXTURE.files();
    assert!(
        before.keys().any(|p| p.ends_with("vault/header")),
        "the fixture vault is missing"
    );
    let env = FIXTURE.copy();

    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(status["format_version"], 4, "{status}");
    assert_eq!(status["users"], 5, "{status}");
    assert_eq!(status["keys"], 7, "{status}");
    assert_eq!(status["revoked_users"], 1, "{status}");

    // list: every key, type, version and fingerprint
    FIXTURE.check_listing(&env, &KEYS);

    // Opening a vault of the current format migrates nothing.
    assert_eq!(FIXTURE.json(&env, &["status"])["format_version"], 4);
    assert_eq!(backups_beside(&env), 0, "opening wrote a backup");
    assert!(env.vault().join("lock").is_file());
    assert!(env.vault().join("db").is_dir());

    FIXTURE.check_shared_content(&env);
    let err = assert_error(
        &FIXTURE.run(&env, &["gen", "bob"]),
        6,
        "gen for the revoked bob",
    );
    assert!(err.contains("\"bob\" was revoked at"), "{err}");

    // check, and the audit log as it was made (then this test's own entries)
    let checked = FIXTURE.json(&env, &["check"]);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["format_version"], 4, "{checked}");
    assert_eq!(checked["keys"], 7, "{checked}");
    assert_eq!(checked["revoked"], 1, "{checked}");
    FIXTURE.ok(&env, &["audit", "--verify"]);
    let audit = FIXTURE.json(&env, &["audit"]);
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.len() >= AUDIT.len(), "{audit}");
    for (i, (op, user, key)) in AUDIT.iter().enumerate() {
        let e = &entries[i];
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert_eq!(e["operation"], *op, "{e}");
        assert_eq!(e["user"].as_str().unwrap_or("-"), *user, "{e}");
        assert_eq!(e["key"].as_str().unwrap_or("-"), *key, "{e}");
    }
    assert!(
        entries.iter().all(|e| e["operation"] != "migrate"),
        "{audit}"
    );

    // the wrong passphrase is refused
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "not the fixture passphrase")
        .arg("list")
        .output()
        .unwrap();
    assert_error(&out, 3, "the fixture with a wrong passphrase");

    // the current binary writes to it
    FIXTURE.ok(&env, &["gen", "frank", "--type", "ed25519"]);
    FIXTURE.ok(&env, &["delete", "User123", "fernet"]);
    assert_eq!(FIXTURE.json(&env, &["status"])["keys"], 7);
    assert_eq!(FIXTURE.json(&env, &["check"])["ok"], true);
    assert_eq!(backups_beside(&env), 0);

    // the committed fixture itself was not touched
    assert_eq!(
        FIXTURE.files(),
        before,
        "the test changed the committed fixture"
    );
}

/// Rewrites the header file of the test's vault with `change` applied; returns the new
/// bytes.
fn change_header(env: &TestEnv, change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let path = env.vault().join("header");
    let mut header = fs::read(&path).expect("read the header file");
    assert_eq!(&header[..8], b"KVHEADER");
    assert_eq!(header[8..12], 4u32.to_be_bytes());
    change(&mut header);
    fs::write(&path, &header).expect("rewrite the header file");
    header
}

/// The vault's files but the lock file, with their bytes: for "nothing changed".
fn vault_files(env: &TestEnv) -> BTreeMap<PathBuf, Vec<u8>> {
    util::files_under(&env.vault())
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "lock")
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn a_header_relabelled_format_3_is_tampering() {
    let env = FIXTURE.copy();
    let changed = change_header(&env, |h| h[8..12].copy_from_slice(&3u32.to_be_bytes()));
    for args in [&["list"][..], &["status"][..], &["gen", "User123"][..]] {
        let what = format!("{} with a header saying format 3", args.join(" "));
        let err = assert_error(&FIXTURE.run(&env, args), 7, &what);
        assert!(err.contains("format 3"), "{what}: {err}");
        assert!(err.contains("altered"), "{what}: {err}");
    }
    // Nothing was migrated or rewritten.
    assert_eq!(fs::read(env.vault().join("header")).unwrap(), changed);
    assert!(!env.vault().join("conf").exists());
    assert_eq!(backups_beside(&env), 0);
}

#[test]
fn a_header_of_format_5_is_a_newer_vault() {
    let env = FIXTURE.copy();
    let changed = change_header(&env, |h| h[8..12].copy_from_slice(&5u32.to_be_bytes()));
    let files = vault_files(&env);
    for args in [&["list"][..], &["status"][..], &["gen", "User123"][..]] {
        let what = format!("{} with a header saying format 5", args.join(" "));
        let err = assert_error(&FIXTURE.run(&env, args), 8, &what);
        assert!(err.contains("format version 5"), "{what}: {err}");
        assert!(err.contains("newer"), "{what}: {err}");
    }
    assert_eq!(fs::read(env.vault().join("header")).unwrap(), changed);
    assert_eq!(vault_files(&env), files, "a refused vault was changed");
}

/// The vault id is not needed to unwrap the master key, so a changed id unlocks with the
/// right passphrase: it is the header's MAC that catches it (exit 7), not the
/// passphrase check (exit 3).
#[test]
fn a_changed_vault_id_fails_the_header_mac() {
    let env = FIXTURE.copy();
    for (i, bit) in [(0usize, 0x01u8), (15, 0x80)] {
        let env_copy = FIXTURE.copy();
        let at = VAULT_ID_AT + i;
        change_header(&env_copy, |h| h[at] ^= bit);
        for args in [&["list"][..], &["gen", "User123"][..], &["check"][..]] {
            let what = format!("{} with byte {at} of the header changed", args.join(" "));
            let err = assert_error(&FIXTURE.run(&env_copy, args), 7, &what);
            assert!(err.contains("header"), "{what}: {err}");
            assert!(err.contains("authenticate"), "{what}: {err}");
        }
    }
    // The unchanged copy opens: the failure above was the change.
    FIXTURE.ok(&env, &["list"]);
    // A changed vault id with a wrong passphrase is a wrong passphrase: the MAC is
    // checked with the unlocked keys only.
    change_header(&env, |h| h[VAULT_ID_AT] ^= 0x01);
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "not the fixture passphrase")
        .arg("list")
        .output()
        .unwrap();
    assert_error(&out, 3, "a changed vault id and a wrong passphrase");
}
