//! The committed format 3 vault (tests/fixtures/v3, see its README.md), written by the
//! last keyvault of format 3: the current keyvault reads every key and the revocation in
//! it, migrates it to format 4 after a backup beside it, and keeps its audit log whole.
//! A copy whose format record was set back (after a revocation or the newest audit
//! entries were removed) is refused as tampering and left as it is.

use std::fs;
use std::path::PathBuf;

use keyvault::store::records::meta_keys;
use keyvault::store::{Batch, Store, Tree};

use crate::util::fixture::{Fixture, FixtureKey};
use crate::util::{TestEnv, assert_error};

/// The committed vault (its README gives the passphrase and what it holds).
const FIXTURE: Fixture = Fixture {
    version: "v3",
    passphrase: "keyvault fixture v3 passphrase",
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
                "SHA256:vozb6PnEsZSLDvtoWPha6uJdRYcngqBNrNU0rm3QbkI",
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
            "SHA256:VdvAeHeKCDAEsE2rPqiXk2QxdzYg0NISdonzGwADoIo",
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

/// The fixture's audit log as the format 3 keyvault wrote it: operation, user, key
/// (`-` for none). It holds an entry of every kind that keyvault wrote.
const AUDIT: [(&str, &str, &str); 31] = [
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
];

/// The meta-tree key of the sealed audit chain head (format 2 on).
const AUDIT_HEAD_KEY: &[u8] = b"audit-head";

/// The names in the test's temp dir of the backups written before a migration to
/// format 4.
fn pre_v4_backups(env: &TestEnv) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("vault.pre-v4-backup-") && p.extension().is_some_and(|e| e == "kvb")
        })
        .collect();
    found.sort();
    found
}

/// Whether the test's vault still has the format 3 layout: the database's files in the
/// vault directory, no header file.
fn is_format_3_layout(env: &TestEnv) -> bool {
    let v = env.vault();
    v.join("db").is_file() && v.join("conf").is_file() && !v.join("header").exists()
}

#[test]
fn the_v3_fixture_gives_back_its_keys_and_is_migrated_to_format_4() {
    let before = FIXTURE.files();
    assert!(
        before.keys().any(|p| p.ends_with("vault/db")),
        "the fixture vault is missing"
    );
    let env = FIXTURE.copy();

    // Before any unlocked command: format 3, by the old layout.
    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(status["format_version"], 3, "{status}");
    assert_eq!(status["users"], 5, "{status}");
    assert_eq!(status["keys"], 7, "{status}");
    assert_eq!(status["revoked_users"], 1, "{status}");
    assert!(is_format_3_layout(&env), "status changed the layout");
    assert!(pre_v4_backups(&env).is_empty(), "status wrote a backup");

    // list (the first unlocked command): every key, type, version and fingerprint
    FIXTURE.check_listing(&env, &KEYS);

    // The first unlocked command migrated the vault to format 4, after a backup.
    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(status["format_version"], 4, "{status}");
    assert_eq!(status["users"], 5, "{status}");
    assert_eq!(status["keys"], 7, "{status}");
    assert_eq!(status["revoked_users"], 1, "{status}");
    let v = env.vault();
    assert!(v.join("header").is_file(), "no header file after migrating");
    assert!(
        v.join("db").is_dir(),
        "db/ is not a directory after migrating"
    );
    assert!(v.join("db").join("db").is_file(), "no database in db/");
    for old in ["conf", "blobs"] {
        assert!(!v.join(old).exists(), "{old} is left at the top level");
    }
    for e in fs::read_dir(&v).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("snap."),
            "{name} is left at the top level"
        );
        assert!(
            !name.starts_with(".kv-"),
            "{name}: a migration work entry is left"
        );
    }
    let backups = pre_v4_backups(&env);
    assert_eq!(backups.len(), 1, "expected one pre-migration backup");

    FIXTURE.check_shared_content(&env);
    let err = assert_error(
        &FIXTURE.run(&env, &["gen", "bob"]),
        6,
        "gen for the revoked bob",
    );
    assert!(err.contains("\"bob\" was revoked at"), "{err}");
    let err = assert_error(
        &FIXTURE.run(&env, &["list", "bob"]),
        6,
        "list of the revoked bob",
    );
    assert!(err.contains("\"bob\" was revoked at"), "{err}");

    // The migrated vault checks, and so does the backup written before the migration,
    // as a backup of format 3.
    let checked = FIXTURE.json(&env, &["check"]);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["format_version"], 4, "{checked}");
    assert_eq!(checked["keys"], 7, "{checked}");
    assert_eq!(checked["revoked"], 1, "{checked}");
    let b = backups[0].to_str().unwrap();
    let checked = FIXTURE.json(&env, &["check", "--backup", b]);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["format_version"], 3, "{checked}");
    assert_eq!(checked["keys"], 7, "{checked}");
    assert_eq!(checked["revoked"], 1, "{checked}");

    // The audit log: the fixture's entries, in order, then the migration's.
    FIXTURE.ok(&env, &["audit", "--verify"]);
    let audit = FIXTURE.json(&env, &["audit"]);
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.len() > AUDIT.len(), "{audit}");
    for (i, (op, user, key)) in AUDIT.iter().enumerate() {
        let e = &entries[i];
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert_eq!(e["operation"], *op, "{e}");
        assert_eq!(e["user"].as_str().unwrap_or("-"), *user, "{e}");
        assert_eq!(e["key"].as_str().unwrap_or("-"), *key, "{e}");
    }
    let migrate = &entries[AUDIT.len()];
    assert_eq!(migrate["operation"], "migrate", "{migrate}");
    assert_eq!(migrate["outcome"], "ok", "{migrate}");
    assert!(
        migrate["detail"].as_str().unwrap().contains("format 3 → 4"),
        "{migrate}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["operation"] == "migrate")
            .count(),
        1,
        "{audit}"
    );

    // the wrong passphrase is still refused
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "not the fixture passphrase")
        .arg("list")
        .output()
        .unwrap();
    assert_error(&out, 3, "the migrated fixture with a wrong passphrase");

    // The current binary writes to the migrated vault; no second migration or backup.
    FIXTURE.ok(&env, &["gen", "frank", "--type", "ed25519"]);
    FIXTURE.ok(&env, &["delete", "User123", "fernet"]);
    let text = |args: &[&str]| String::from_utf8(FIXTURE.ok(&env, args)).unwrap();
    assert_eq!(FIXTURE.json(&env, &["status"])["keys"], 7);
    assert_eq!(
        text(&["export", "User123", "aes256-gcm"]),
        FIXTURE.known("user123-aes256-gcm.key")
    );
    assert_eq!(pre_v4_backups(&env), backups);
    let checked = FIXTURE.json(&env, &["check"]);
    assert_eq!(checked["ok"], true, "{checked}");
    FIXTURE.ok(&env, &["audit", "--verify"]);

    // the committed fixture itself was not touched
    assert_eq!(
        FIXTURE.files(),
        before,
        "the test changed the committed fixture"
    );
}

/// Sets the format record of the test's vault (a copy of the fixture, still of format
/// 3) to `format` after removing bob's revocation, and, when `truncate` is given, the
/// newest `truncate` audit entries and the sealed chain head too: what someone without
/// the passphrase could do to make an older migration step rebuild the safeguards.
fn relabel(env: &TestEnv, format: u32, truncate: usize) {
    let store = Store::open(&env.vault()).expect("open the copy as a store");
    let revoked = store.entries(Tree::Revoked).expect("read the revoked tree");
    assert_eq!(revoked.len(), 1, "the fixture has one revoked user");
    let mut batch = Batch::new();
    batch.remove(Tree::Revoked, revoked[0].0.clone());
    batch.insert(Tree::Meta, meta_keys::FORMAT, format.to_be_bytes().to_vec());
    if truncate > 0 {
        let audit = store.entries(Tree::Audit).expect("read the audit tree");
        assert_eq!(audit.len(), AUDIT.len());
        for (key, _) in &audit[audit.len() - truncate..] {
            batch.remove(Tree::Audit, key.clone());
        }
        assert!(
            store.contains(Tree::Meta, AUDIT_HEAD_KEY).unwrap(),
            "the fixture has a sealed audit chain head"
        );
        batch.remove(Tree::Meta, AUDIT_HEAD_KEY);
    }
    store.apply(&batch).expect("relabel the copy");
    store.flush().expect("flush");
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn assert_refused_as_downgrade(env: &TestEnv, format: u32) {
    for args in [
        &["list"][..],
        &["is-revoked", "bob"][..],
        &["gen", "bob"][..],
    ] {
        let out = FIXTURE.run(env, args);
        let what = format!("{} on a format 3 vault relabelled {format}", args.join(" "));
        let err = assert_error(&out, 7, &what);
        assert!(
            err.contains("altered") || err.contains("downgrade"),
            "{what}: {err}"
        );
        assert!(is_format_3_layout(env), "{what}: the vault was migrated");
        assert!(
            pre_v4_backups(env).is_empty(),
            "{what}: a refused migration wrote a backup of the tampered data"
        );
    }
    // Still as relabelled: nothing was rebuilt over the tampered data.
    let status = FIXTURE.json(env, &["status"]);
    assert_eq!(status["format_version"], format, "{status}");
    assert_eq!(status["revoked_users"], 0, "{status}");
    assert!(is_format_3_layout(env), "status migrated the vault");
}

/// A format 3 vault relabelled format 2 after a revocation was removed would have the
/// step to format 3 compute a new revocation ledger that forgets bob: refused.
#[test]
fn a_v3_vault_relabelled_format_2_is_refused_as_a_downgrade() {
    let env = FIXTURE.copy();
    relabel(&env, 2, 0);
    assert_refused_as_downgrade(&env, 2);
}

/// The same relabelled format 1, with the newest audit entries and the sealed chain
/// head removed too, would have the step to format 2 seal the truncated log: refused.
#[test]
fn a_v3_vault_relabelled_format_1_is_refused_as_a_downgrade() {
    let env = FIXTURE.copy();
    relabel(&env, 1, 3);
    assert_refused_as_downgrade(&env, 1);
}
