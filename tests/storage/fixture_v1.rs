//! The committed format v1 vault (tests/fixtures/v1, see its README.md) opens with the
//! current keyvault and gives back exactly the keys and revocation it was made with; a
//! vault claiming a newer format is refused.

use std::fs;
use std::path::PathBuf;

use keyvault::store::records::meta_keys;
use keyvault::store::{Batch, Store, Tree};

use crate::util::fixture::Fixture;
use crate::util::{TestEnv, assert_error, pem_body};

/// The committed vault (its README gives the passphrase and what it holds).
const FIXTURE: Fixture = Fixture {
    version: "v1",
    passphrase: "keyvault fixture v1 passphrase",
};

/// Every key the fixture holds: user, name, type, public only, fingerprint as `gen` and
/// `import` printed it when the fixture was made.
const KEYS: [(&str, &str, &str, bool, &str); 6] = [
    (
        "User123",
        "aes256-gcm",
        "aes256-gcm",
        false,
        "SHA256:GxrM+LJbBQDqmjBU/qhmYPO6ZzmYWR9Gx8iA6rOUi4I",
    ),
    (
        "User123",
        "fernet",
        "fernet",
        false,
        "SHA256:lW4I8HwTZNTFYmixzanfql8ssCSOGHre3JhyFKbIs+0",
    ),
    (
        "alice",
        "chacha",
        "chacha20-poly1305",
        false,
        "SHA256:6P+uyh0cT2UI1anBmeml8/rQoilI2BeJY7pON/CRERc",
    ),
    (
        "alice",
        "signing",
        "rsa-2048",
        false,
        "SHA256:08j6stm0Ej/xGKp2P6nwV2kmAjl3G+0nvUczFThRXnE",
    ),
    (
        "carol",
        "verify",
        "rsa-2048",
        true,
        "SHA256:08j6stm0Ej/xGKp2P6nwV2kmAjl3G+0nvUczFThRXnE",
    ),
    (
        "dave",
        "generated",
        "aes256-gcm",
        false,
        "SHA256:RjlNzSKYSShDoeSOL+dIo7bahzPJPm/c3rYHEeZ7iBE",
    ),
];

#[test]
fn the_v1_fixture_opens_and_gives_back_its_keys() {
    let before = FIXTURE.files();
    assert!(!before.is_empty(), "the fixture vault is missing");
    let env = FIXTURE.copy();

    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(status["format_version"], 1, "{status}");
    assert_eq!(status["users"], 4, "{status}");
    assert_eq!(status["keys"], 6, "{status}");
    assert_eq!(status["revoked_users"], 1, "{status}");

    // list: exactly the expected users, keys, types and fingerprints
    let listed = FIXTURE.json(&env, &["list"]);
    let got: Vec<(String, String, String, bool, String)> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["primary_version"], 1, "{k}");
            (
                k["user"].as_str().unwrap().to_string(),
                k["name"].as_str().unwrap().to_string(),
                k["type"].as_str().unwrap().to_string(),
                k["public_only"].as_bool().unwrap(),
                k["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, bool, String)> = KEYS
        .iter()
        .map(|(u, n, t, p, f)| {
            (
                u.to_string(),
                n.to_string(),
                t.to_string(),
                *p,
                f.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let alice = FIXTURE.json(&env, &["list", "alice"]);
    assert_eq!(alice["keys"].as_array().unwrap().len(), 2);

    // exports: the exact known material
    let text = |args: &[&str]| String::from_utf8(FIXTURE.ok(&env, args)).unwrap();
    assert_eq!(
        text(&["export", "User123", "fernet"]),
        FIXTURE.known("user123-fernet.key")
    );
    assert_eq!(
        FIXTURE.ok(&env, &["export", "User123", "fernet", "--format", "der"]),
        (0x00..0x20).collect::<Vec<u8>>()
    );
    assert_eq!(
        text(&["export", "User123", "aes256-gcm"]),
        FIXTURE.known("user123-aes256-gcm.key")
    );
    assert_eq!(
        text(&["export", "alice", "chacha"]),
        FIXTURE.known("alice-chacha.key")
    );
    assert_eq!(
        FIXTURE.ok(&env, &["export", "alice", "signing", "--format", "der"]),
        pem_body(&FIXTURE.known("alice-signing.pem"))
    );
    assert_eq!(
        text(&["export", "alice", "signing"]),
        FIXTURE.known("alice-signing.pem")
    );
    assert_eq!(
        text(&["export", "alice", "signing", "--public"]),
        FIXTURE.known("alice-signing.pub.pem")
    );
    assert_eq!(
        text(&["export", "carol", "verify", "--public"]),
        FIXTURE.known("alice-signing.pub.pem")
    );
    let generated = text(&["export", "dave", "generated"]);
    {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(generated.trim())
            .unwrap();
        assert_eq!(raw.len(), 32);
    }

    // the revocation
    let revoked = FIXTURE.json(&env, &["revoked"]);
    let list = revoked["revoked"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{revoked}");
    assert_eq!(list[0]["user"], "bob");
    assert_eq!(list[0]["reason"], "fixture: bob left");
    let mut destroyed: Vec<(&str, &str)> = list[0]["destroyed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["type"].as_str().unwrap()))
        .collect();
    destroyed.sort_unstable();
    assert_eq!(destroyed, vec![("backup", "fernet"), ("fernet", "fernet")]);
    assert_eq!(
        FIXTURE.run(&env, &["is-revoked", "bob"]).status.code(),
        Some(0)
    );
    assert_eq!(
        FIXTURE.run(&env, &["is-revoked", "alice"]).status.code(),
        Some(1)
    );
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

    // the wrong passphrase is still refused
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "not the fixture passphrase")
        .arg("list")
        .output()
        .unwrap();
    assert_error(&out, 3, "the fixture with a wrong passphrase");

    // the current binary writes to an old vault too
    FIXTURE.ok(&env, &["gen", "erin", "--type", "rsa-2048"]);
    FIXTURE.ok(&env, &["delete", "User123", "fernet"]);
    assert_eq!(FIXTURE.json(&env, &["status"])["keys"], 6);
    assert_eq!(
        text(&["export", "User123", "aes256-gcm"]),
        FIXTURE.known("user123-aes256-gcm.key")
    );

    // the committed fixture itself was not touched
    assert_eq!(
        FIXTURE.files(),
        before,
        "the test changed the committed fixture"
    );
}

/// Marks the test's vault (a copy of the fixture, migrated by a first command) as
/// written by a future keyvault: its header file says format 99.
fn mark_as_format_99(env: &TestEnv) -> Vec<u8> {
    FIXTURE.ok(env, &["list"]);
    let path = env.vault().join("header");
    let mut header = fs::read(&path).expect("read the header file");
    header[8..12].copy_from_slice(&99u32.to_be_bytes());
    fs::write(&path, &header).expect("mark the copy as format 99");
    header
}

#[test]
fn a_vault_of_a_newer_format_is_refused() {
    let env = FIXTURE.copy();
    let marked = mark_as_format_99(&env);
    for args in [
        &["list"][..],
        &["gen", "User123", "--name", "new"][..],
        &["revoked"][..],
    ] {
        let out = FIXTURE.run(&env, args);
        let err = assert_error(&out, 8, &format!("{} on a format 99 vault", args.join(" ")));
        assert!(err.contains("format version 99"), "{err}");
        assert!(err.contains("newer"), "{err}");
        assert!(err.contains("upgrade keyvault"), "{err}");
    }
    // The refusal changed nothing: the vault still says 99 (no downgrade, no migration).
    assert_eq!(fs::read(env.vault().join("header")).unwrap(), marked);
}

/// A format version in the database of an older-format vault above the last format
/// that kept it there cannot have been written by any keyvault: tampering (exit 7).
#[test]
fn a_database_format_record_above_three_is_tampering() {
    let env = FIXTURE.copy();
    let store = Store::open(&env.vault()).expect("open the copy as a store");
    let mut batch = Batch::new();
    batch.insert(Tree::Meta, meta_keys::FORMAT, 99u32.to_be_bytes().to_vec());
    store.apply(&batch).expect("mark the copy as format 99");
    store.flush().expect("flush");
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = FIXTURE.run(&env, &["list"]);
    let err = assert_error(&out, 7, "list on a v1 layout that says format 99");
    assert!(err.contains("format 99"), "{err}");
    assert!(!env.vault().join("header").exists(), "nothing was migrated");
}

/// A vault of a newer format is refused with exit 8. `status` counts users and keys by
/// this format's layout, which a newer format need not have, so it must refuse too
/// rather than print counts it cannot know.
#[test]
fn status_of_a_vault_of_a_newer_format_is_refused() {
    let env = FIXTURE.copy();
    mark_as_format_99(&env);
    for args in [&["status"][..], &["--json", "status"][..]] {
        let out = FIXTURE.run(&env, args);
        let err = assert_error(&out, 8, &format!("{} on a format 99 vault", args.join(" ")));
        assert!(err.contains("format version 99"), "{err}");
    }
}

#[test]
fn opening_the_v1_fixture_migrates_it_to_the_current_format_after_a_backup() {
    let env = FIXTURE.copy();
    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(status["format_version"], 1, "{status}");
    // The first unlocked open runs the pending steps, after a backup next to the vault.
    FIXTURE.ok(&env, &["list"]);
    let status = FIXTURE.json(&env, &["status"]);
    assert_eq!(
        status["format_version"],
        keyvault::store::migrate::CURRENT_FORMAT,
        "{status}"
    );
    let backups: Vec<PathBuf> = fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vault.pre-v4-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "expected one pre-migration backup");
    // The migrated vault checks (audit chain head now sealed), and the pre-migration
    // backup checks too, as a format-1 backup.
    let checked = FIXTURE.json(&env, &["check"]);
    assert_eq!(checked["ok"], true, "{checked}");
    let b = backups[0].to_str().unwrap();
    let checked = FIXTURE.json(&env, &["check", "--backup", b]);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["format_version"], 1, "{checked}");
    // A second open migrates nothing more and writes no second backup.
    FIXTURE.ok(&env, &["list"]);
    let count = fs::read_dir(env.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("vault.pre-v4-backup-")
        })
        .count();
    assert_eq!(count, 1);
    // The audit log still verifies end to end.
    FIXTURE.ok(&env, &["audit", "--verify"]);
}

/// The migration to the current format (here from format 1: three steps in the
/// database, then the new layout) killed at random moments: each time, the next
/// command finds a whole vault, of the old format or the new one, never a mix; every
/// key exports exactly; `check` passes; and the directory holds no work entry and no
/// file of the old layout once it is migrated.
#[test]
fn a_migration_killed_at_random_moments_leaves_the_old_or_the_new_vault() {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    let rounds = std::env::var("KEYVAULT_MIGRATION_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24u64);
    // How long an uninterrupted migration takes, to spread the kills over it.
    let timing = FIXTURE.copy();
    let started = Instant::now();
    FIXTURE.ok(&timing, &["list"]);
    let whole = started.elapsed().max(Duration::from_millis(20));
    let mut killed_old = 0;
    let mut killed_new = 0;
    for round in 0..rounds {
        let env = FIXTURE.copy();
        let pass = env.write_private("fixture-passphrase", FIXTURE.passphrase.as_bytes());
        let mut child = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE_FILE", &pass)
            .arg("list")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn list");
        // From the start to a little past the usual end, in even steps.
        let at = whole.mul_f64(1.2 * round as f64 / rounds as f64);
        std::thread::sleep(at);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let was_killed = status.signal().is_some();
        let migrated_before = env.vault().join("header").is_file();
        match (was_killed, migrated_before) {
            (true, false) => killed_old += 1,
            (true, true) => killed_new += 1,
            _ => {}
        }
        // Whatever the kill left, the next command works on a whole vault.
        let listed = FIXTURE.json(&env, &["list"]);
        assert_eq!(
            listed["keys"].as_array().map(Vec::len),
            Some(KEYS.len()),
            "round {round} (killed after {at:?}): {listed}"
        );
        assert_eq!(
            String::from_utf8(FIXTURE.ok(&env, &["export", "User123", "fernet"])).unwrap(),
            FIXTURE.known("user123-fernet.key"),
            "round {round}"
        );
        let checked = FIXTURE.json(&env, &["check"]);
        assert_eq!(checked["ok"], true, "round {round}: {checked}");
        assert_eq!(
            checked["format_version"],
            keyvault::store::migrate::CURRENT_FORMAT,
            "round {round}"
        );
        let mut left: Vec<String> = fs::read_dir(env.vault())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["db", "header", "lock"], "round {round}");
        assert!(env.vault().join("db").is_dir(), "round {round}");
        let revoked = FIXTURE.run(&env, &["is-revoked", "bob"]);
        assert_eq!(revoked.status.code(), Some(0), "round {round}");
    }
    println!(
        "migration kills: {rounds} rounds, {killed_old} killed before the switch, {killed_new} after it, uninterrupted migration {whole:?}"
    );
}
