//! Bad input, as a table: each case gives its arguments, how the passphrase is passed,
//! the exit code and a piece of the message (the cases refused while the command line is
//! parsed are case files under `tests/cmd/`, run by `cmd.rs` against the same vault). Every case must fail with that code and one
//! `error:` line first on stderr, never panic, and change nothing (the vault reports the
//! same keys, revocations and status, and no file appears next to it). Each case runs
//! twice: as text and with `--json` (which must then print a JSON error document).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use crate::util::{FAST_KDF, TestEnv, error_problems, parse_json, pkcs8_pem, rsa_key, spki_pem};

/// How a case passes the passphrase.
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// The right one, through `KEYVAULT_PASSPHRASE_FILE`.
    Right,
    /// A wrong one, through `KEYVAULT_PASSPHRASE`.
    Wrong,
    /// None at all, and there is no terminal.
    Nothing,
}

struct Case {
    what: String,
    args: Vec<OsString>,
    pass: Pass,
    code: i32,
    stderr_has: String,
}

fn case(what: &str, args: &[&str], code: i32, stderr_has: &str) -> Case {
    Case {
        what: what.to_string(),
        args: args.iter().map(OsString::from).collect(),
        pass: Pass::Right,
        code,
        stderr_has: stderr_has.to_string(),
    }
}

impl Case {
    fn pass(mut self, pass: Pass) -> Case {
        self.pass = pass;
        self
    }
}

pub(crate) fn entries(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

/// Runs every case against `env`'s vault and reports every failure at once.
fn run_table(env: &TestEnv, cases: Vec<Case>) {
    let mut before = env.snapshot();
    // The passphrase file is rewritten by every snapshot; make it exist up front.
    env.passphrase_file();
    let mut files_before = entries(env.root());
    let mut failures = Vec::new();
    for c in &cases {
        for json in [false, true] {
            let mut cmd = env.bare();
            match c.pass {
                Pass::Right => {
                    cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file());
                }
                Pass::Wrong => {
                    cmd.env("KEYVAULT_PASSPHRASE", "not the passphrase");
                }
                Pass::Nothing => {}
            }
            if json {
                cmd.arg("--json");
            }
            let out = cmd.args(&c.args).output().expect("run keyvault");
            let mut problems = error_problems(&out, c.code, Some(&c.stderr_has));
            if json && !out.stdout.is_empty() {
                let doc = parse_json(&out.stdout, &c.what);
                if doc["error"]["code"] != c.code {
                    problems.push(format!("the JSON error document is {doc}"));
                }
            } else if !out.stdout.is_empty() {
                problems.push("it printed on stdout".to_string());
            }
            if json {
                // Checked once per pair of runs: a snapshot takes three commands.
                // A change is reported once, by the case that made it.
                let now = env.snapshot();
                if now != before {
                    problems.push("the vault changed (text or --json run)".to_string());
                    before = now;
                }
                let files_now = entries(env.root());
                if files_now != files_before {
                    problems.push(format!(
                        "files appeared or vanished next to the vault: {files_before:?} -> {files_now:?}"
                    ));
                    files_before = files_now;
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{}{} (keyvault {:?}): {}\n    stderr: {}",
                    c.what,
                    if json { " [--json]" } else { "" },
                    c.args,
                    problems.join("; "),
                    String::from_utf8_lossy(&out.stderr)
                        .trim_end()
                        .replace('\n', "\n            ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input runs went wrong:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

/// A vault with a few keys and a revoked user, so that refusals have something to
/// leave unchanged.
pub(crate) fn populated() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123"]);
    env.ok(["gen", "User123", "--type", "rsa-2048"]);
    env.ok([
        "gen",
        "alice",
        "--type",
        "chacha20-poly1305",
        "--name",
        "k1",
    ]);
    env.ok(["revoke", "mallory", "--reason", "left"]);
    env
}

#[test]
fn passphrase_and_vault_errors() {
    let env = populated();
    let root = env.root().to_str().unwrap().to_string();
    let missing = format!("{root}/missing-vault");
    let mut init_fast = vec!["init"];
    init_fast.extend(FAST_KDF);
    let cases = vec![
        case("wrong passphrase (list)", &["list"], 3, "wrong passphrase").pass(Pass::Wrong),
        case(
            "wrong passphrase (gen)",
            &["gen", "bob"],
            3,
            "wrong passphrase",
        )
        .pass(Pass::Wrong),
        case(
            "wrong passphrase (revoke)",
            &["revoke", "alice"],
            3,
            "wrong passphrase",
        )
        .pass(Pass::Wrong),
        case(
            "wrong passphrase (export)",
            &["export", "User123", "fernet"],
            3,
            "wrong passphrase",
        )
        .pass(Pass::Wrong),
        case(
            "no passphrase, no terminal (list)",
            &["list"],
            4,
            "--passphrase-file",
        )
        .pass(Pass::Nothing),
        case(
            "no passphrase, no terminal (gen)",
            &["gen", "bob"],
            4,
            "KEYVAULT_PASSPHRASE",
        )
        .pass(Pass::Nothing),
        case(
            "no passphrase, no terminal (delete)",
            &["delete", "User123", "fernet"],
            4,
            "KEYVAULT_PASSPHRASE_FILE",
        )
        .pass(Pass::Nothing),
        case(
            "no passphrase, no terminal (init)",
            &init_fast,
            6,
            "already exists",
        )
        .pass(Pass::Nothing),
        case("init on an existing vault", &init_fast, 6, "already exists"),
        case(
            "init on an existing vault, default KDF",
            &["init"],
            6,
            "already exists",
        ),
        case(
            "missing vault (list)",
            &["--vault", &missing, "list"],
            5,
            "no vault at",
        ),
        case(
            "missing vault (gen)",
            &["--vault", &missing, "gen", "bob"],
            5,
            "no vault at",
        ),
        case(
            "missing vault (status)",
            &["--vault", &missing, "status"],
            5,
            "no vault at",
        ),
        case(
            "missing vault (is-revoked)",
            &["--vault", &missing, "is-revoked", "bob"],
            5,
            "no vault at",
        ),
        case(
            "missing vault without a passphrase",
            &["--vault", &missing, "revoked"],
            5,
            "no vault at",
        )
        .pass(Pass::Nothing),
        case(
            "missing passphrase file",
            &["--passphrase-file", &format!("{root}/nope"), "list"],
            4,
            "nope",
        ),
    ];
    run_table(&env, cases);
    assert!(!Path::new(&missing).exists());
}

#[test]
fn bad_user_ids() {
    let env = populated();
    let fernet = env.write_private("fernet.key", URL_SAFE.encode([3u8; 32]).as_bytes());
    let fernet = fernet.to_str().unwrap();
    let long_user = "x".repeat(129);
    let long_utf8_user = "é".repeat(65); // 65 characters, 130 bytes
    let mut cases = Vec::new();
    for (what, user, msg) in [
        ("empty user id", "", "empty"),
        ("user id over 128 bytes", long_user.as_str(), "129 bytes"),
        (
            "user id over 128 bytes in UTF-8",
            long_utf8_user.as_str(),
            "130 bytes",
        ),
        ("user id with a newline", "User\n123", "control character"),
        ("user id with a bell", "User\u{7}123", "control character"),
        (
            "user id with an ANSI escape",
            "User\u{1b}[31m",
            "control character",
        ),
        (
            "user id with a C1 control",
            "User\u{85}",
            "control character",
        ),
        ("user id with a zero-width space", "Us\u{200B}er", "U+200B"),
        (
            "user id with a right-to-left override",
            "User\u{202E}321",
            "U+202E",
        ),
        ("user id with a trailing space", "User123 ", "U+0020"),
        ("user id with a line separator", "User\u{2028}1", "U+2028"),
        ("user id with a word joiner", "Us\u{2060}er", "U+2060"),
    ] {
        cases.push(case(&format!("gen: {what}"), &["gen", user], 2, msg));
        cases.push(case(
            &format!("import: {what}"),
            &["import", user, "k", "--type", "fernet", "--file", fernet],
            2,
            msg,
        ));
        cases.push(case(
            &format!("export: {what}"),
            &["export", user, "fernet"],
            2,
            msg,
        ));
        cases.push(case(
            &format!("delete: {what}"),
            &["delete", user, "fernet"],
            2,
            msg,
        ));
        cases.push(case(&format!("list: {what}"), &["list", user], 2, msg));
        cases.push(case(&format!("revoke: {what}"), &["revoke", user], 2, msg));
        cases.push(case(
            &format!("is-revoked: {what}"),
            &["is-revoked", user],
            2,
            msg,
        ));
    }
    run_table(&env, cases);
}

#[test]
fn bad_key_types_names_and_missing_keys() {
    let env = populated();
    let fernet = env.write_private("fernet.key", URL_SAFE.encode([3u8; 32]).as_bytes());
    let fernet = fernet.to_str().unwrap();
    let long_name = "k".repeat(65);
    let mut cases = Vec::new();
    cases.push(case(
        "import with an unknown key type",
        &["import", "bob", "k", "--type", "ed448", "--file", fernet],
        2,
        "unknown key type",
    ));
    for (what, name) in [
        ("key name with a space", "a b"),
        ("key name with a slash", "a/b"),
        ("key name of 65 characters", long_name.as_str()),
        ("empty key name", ""),
        ("key name with a non-ASCII letter", "clé"),
        ("key name with a newline", "a\nb"),
    ] {
        cases.push(case(
            &format!("gen --name: {what}"),
            &["gen", "User123", "--name", name],
            2,
            "invalid key name",
        ));
        cases.push(case(
            &format!("import: {what}"),
            &[
                "import", "User123", name, "--type", "fernet", "--file", fernet,
            ],
            2,
            "invalid key name",
        ));
        cases.push(case(
            &format!("export: {what}"),
            &["export", "User123", name],
            2,
            "invalid key name",
        ));
        cases.push(case(
            &format!("delete: {what}"),
            &["delete", "User123", name],
            2,
            "invalid key name",
        ));
    }
    cases.push(case(
        "gen of an existing name",
        &["gen", "User123"],
        6,
        "already has a key named",
    ));
    cases.push(case(
        "gen of an existing name with another type",
        &[
            "gen",
            "User123",
            "--type",
            "aes256-gcm",
            "--name",
            "rsa-2048",
        ],
        6,
        "already has a key named",
    ));
    cases.push(case(
        "import over an existing name",
        &[
            "import", "User123", "fernet", "--type", "fernet", "--file", fernet,
        ],
        6,
        "already has a key named",
    ));
    cases.push(case(
        "export of a missing key",
        &["export", "User123", "nope"],
        5,
        "no key \"nope\"",
    ));
    cases.push(case(
        "export for a missing user",
        &["export", "nobody", "fernet"],
        5,
        "no such user \"nobody\"",
    ));
    cases.push(case(
        "export for a revoked user",
        &["export", "mallory", "fernet"],
        6,
        "\"mallory\" was revoked at",
    ));
    cases.push(case(
        "delete of a missing key",
        &["delete", "User123", "nope"],
        5,
        "no key \"nope\"",
    ));
    cases.push(case(
        "delete for a missing user",
        &["delete", "nobody", "fernet"],
        5,
        "no such user",
    ));
    cases.push(case(
        "export of a missing version",
        &["export", "User123", "fernet", "--version", "9"],
        5,
        "no version 9",
    ));
    cases.push(case(
        "export of version 0",
        &["export", "User123", "rsa-2048", "--version", "0"],
        5,
        "no version 0",
    ));
    cases.push(case(
        "export --format pem of a fernet key",
        &["export", "User123", "fernet", "--format", "pem"],
        2,
        "not pem",
    ));
    cases.push(case(
        "export --public of a fernet key",
        &["export", "User123", "fernet", "--public"],
        2,
        "no public part",
    ));
    cases.push(case(
        "revoke reason with a control character",
        &["revoke", "alice", "--reason", "a\u{7}b"],
        2,
        "control character",
    ));
    let long_reason = "r".repeat(1025);
    cases.push(case(
        "revoke reason over 1 KiB",
        &["revoke", "alice", "--reason", &long_reason],
        2,
        "1025 bytes",
    ));
    run_table(&env, cases);
}

#[test]
fn bad_key_material_on_import() {
    let env = populated();
    let key = rsa_key(2048);
    let pem = pkcs8_pem(&key);
    let half = &pem[..pem.len() / 2];
    let mut lines: Vec<&str> = pem.lines().collect();
    lines.drain(3..8);
    let gutted = lines.join("\n");
    // A 1024-bit key, made here: too weak to import.
    let weak = pkcs8_pem(&rsa_key(1024));

    let file = |name: &str, contents: &[u8]| {
        env.write_private(name, contents)
            .to_str()
            .unwrap()
            .to_string()
    };
    let garbage = file("garbage.txt", b"this is not a key at all\n");
    let binary = file(
        "binary.bin",
        &[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x10, 0x80],
    );
    let empty = file("empty", b"");
    let truncated = file("truncated.pem", half.as_bytes());
    let gutted = file("gutted.pem", gutted.as_bytes());
    let public = file("public.pem", spki_pem(&key).as_bytes());
    let weak = file("weak.pem", weak.as_bytes());
    let rsa2048 = file("rsa2048.pem", pem.as_bytes());
    let short_fernet = file("short.key", URL_SAFE.encode([1u8; 16]).as_bytes());
    let long_aes = file("long.key", STANDARD.encode([1u8; 48]).as_bytes());
    let cert = file(
        "cert.pem",
        b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    );
    let encrypted = file(
        "enc.pem",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let missing = format!("{}/no-such-file", env.root().display());

    let imp = |ty: &str, f: &str| -> Vec<String> {
        ["import", "bob", "k", "--type", ty, "--file", f]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut cases = Vec::new();
    let mut add = |what: &str, args: Vec<String>, code: i32, msg: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(case(what, &args, code, msg));
    };
    add(
        "garbage as rsa-2048",
        imp("rsa-2048", &garbage),
        2,
        "expected a PEM",
    );
    add(
        "binary garbage as rsa-2048",
        imp("rsa-2048", &binary),
        2,
        "expected a PEM",
    );
    add(
        "garbage as fernet",
        imp("fernet", &garbage),
        2,
        "expected a Fernet key",
    );
    add(
        "binary garbage as aes256-gcm",
        imp("aes256-gcm", &binary),
        2,
        "expected base64 of a 32-byte key",
    );
    add(
        "empty file as rsa-2048",
        imp("rsa-2048", &empty),
        2,
        "empty",
    );
    add(
        "empty file as chacha20-poly1305",
        imp("chacha20-poly1305", &empty),
        2,
        "empty",
    );
    add("truncated PEM", imp("rsa-2048", &truncated), 2, "truncated");
    add(
        "PEM with lines cut out",
        imp("rsa-2048", &gutted),
        2,
        "expected a PEM",
    );
    add(
        "public-only PEM as a private key",
        imp("rsa-2048", &public),
        2,
        "expected a private key",
    );
    add("1024-bit RSA key", imp("rsa-2048", &weak), 6, "too weak");
    add(
        "1024-bit RSA key as rsa-3072",
        imp("rsa-3072", &weak),
        6,
        "too weak",
    );
    add(
        "rsa-2048 key as rsa-3072",
        imp("rsa-3072", &rsa2048),
        2,
        "2048-bit",
    );
    add(
        "PEM as a fernet key",
        imp("fernet", &rsa2048),
        2,
        "expected a Fernet key",
    );
    add(
        "16-byte fernet key",
        imp("fernet", &short_fernet),
        2,
        "16 bytes",
    );
    add(
        "48-byte aes256-gcm key",
        imp("aes256-gcm", &long_aes),
        2,
        "48 bytes",
    );
    add("a certificate", imp("rsa-2048", &cert), 2, "CERTIFICATE");
    add(
        "an encrypted PKCS#8 key",
        imp("rsa-2048", &encrypted),
        2,
        "encrypted",
    );
    add(
        "a missing file",
        imp("rsa-2048", &missing),
        5,
        "no-such-file",
    );
    let mut public_weak = imp("rsa-2048", &weak);
    public_weak.push("--public".into());
    add("1024-bit key with --public", public_weak, 6, "too weak");
    run_table(&env, cases);
}

#[test]
fn refused_init_creates_nothing() {
    let env = TestEnv::new();
    let empty = env.write_private("empty-passphrase", b"\n");
    let empty = empty.to_str().unwrap();
    // Default KDF parameters: with fast ones, `init` warns about them on stderr before
    // it fails, and both refusals come before any key derivation.
    let init_empty = ["--passphrase-file", empty, "init"];
    let cases = vec![
        case(
            "KDF far below the floor",
            &[
                "init",
                "--kdf-memory",
                "1",
                "--kdf-iterations",
                "1",
                "--kdf-parallelism",
                "1",
            ],
            6,
            "--allow-weak-kdf",
        ),
        case(
            "memory below the floor",
            &["init", "--kdf-memory", "18"],
            6,
            "below the floor",
        ),
        case(
            "one pass",
            &["init", "--kdf-iterations", "1"],
            6,
            "below the floor",
        ),
        case(
            "just under the floor",
            &["init", "--kdf", "interactive", "--kdf-memory", "18"],
            6,
            "below the floor",
        ),
        case(
            "zero lanes, even with --allow-weak-kdf",
            &["init", "--kdf-parallelism", "0", "--allow-weak-kdf"],
            2,
            "parallelism",
        ),
        case(
            "zero passes, even with --allow-weak-kdf",
            &["init", "--kdf-iterations", "0", "--allow-weak-kdf"],
            2,
            "iterations",
        ),
        case(
            "absurd memory, even with --allow-weak-kdf",
            &["init", "--kdf-memory", "4294967295", "--allow-weak-kdf"],
            2,
            "memory",
        ),
        case(
            "an unknown profile",
            &["init", "--kdf", "paranoid"],
            2,
            "invalid value",
        ),
        case(
            "init with no passphrase and no terminal",
            &["init"],
            4,
            "--passphrase-file",
        )
        .pass(Pass::Nothing),
        case("init with an empty passphrase", &init_empty, 2, "empty"),
    ];
    run_table(&env, cases);
    assert!(
        !env.vault().exists(),
        "a refused init left {:?}",
        env.vault()
    );
    assert!(!env.data_home().join("keyvault").exists());
}
