//! The input/output contract, as a user and as hostile input meet it: look-alike user
//! ids are one user or refused, text a user gave cannot forge lines of output, a revoked
//! user's keys say so, inputs are read within known bounds, exit codes follow README's
//! table, and mistakes are caught before any passphrase is asked for.

use std::fs;

use crate::util;
use crate::util::{PASSPHRASE, TestEnv, assert_error, assert_success, parse_json};
use keyvault::Vault;
use keyvault::vault::types::{RevocationInfo, Timestamp};

/// "José" with a precomposed é (NFC) and with e + U+0301 (NFD).
const JOSE_NFC: &str = "Jos\u{e9}";
const JOSE_NFD: &str = "Jose\u{301}";

#[test]
fn a_decomposed_id_is_the_same_user_as_the_precomposed_one() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", JOSE_NFC]);
    env.ok(["revoke", JOSE_NFC, "--reason", "left"]);
    // The other spelling is the same, revoked, user: no fresh start for a look-alike.
    let err = assert_error(&env.run(["gen", JOSE_NFD]), 6, "gen of the NFD spelling");
    assert!(err.contains("was revoked at"), "{err}");
    assert_success(&env.run(["is-revoked", JOSE_NFD]), "is-revoked, NFD");
    // A key made under the NFD spelling is stored under the NFC id.
    env.ok(["gen", "Zo\u{308}e"]);
    let doc = env.json(["list"]);
    assert_eq!(
        doc["keys"][0]["user"],
        "Zo\u{308}e".replace("o\u{308}", "\u{f6}")
    );
    env.ok(["export", "Z\u{f6}e", "fernet"]);
    let revoked = env.json(["revoked"]);
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(revoked["revoked"][0]["user"], JOSE_NFC);
}

#[test]
fn look_alike_user_ids_are_refused_naming_the_code_point() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123"]);
    let before = env.snapshot();
    for (id, says) in [
        ("User\u{200B}123", "U+200B"),
        ("User\u{202E}321", "U+202E"),
        ("User123 ", "ends with whitespace (U+0020)"),
        (" User123", "starts with whitespace (U+0020)"),
        ("User\u{2028}123", "U+2028"),
        ("User\u{2066}123", "bidirectional"),
        ("User\u{FEFF}123", "U+FEFF"),
        ("User\u{AD}123", "U+00AD"),
    ] {
        for args in [
            vec!["gen", id],
            vec!["export", id, "fernet"],
            vec!["list", id],
            vec!["revoke", id],
            vec!["is-revoked", id],
        ] {
            let err = assert_error(&env.run(&args), 2, &format!("{args:?}"));
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
    assert_eq!(env.snapshot(), before, "a refused id changed the vault");
}

/// Writes revocations of ids that break today's rules, as a vault made before them
/// could hold (restoring revocations takes stored ids as they are).
fn revoke_legacy_ids(env: &TestEnv, ids: &[&str]) {
    let vault = Vault::open(&env.vault(), PASSPHRASE.as_bytes()).expect("open the vault");
    let list: Vec<RevocationInfo> = ids
        .iter()
        .map(|id| RevocationInfo {
            user: id.to_string(),
            revoked_at: Timestamp(1_700_000_000),
            reason: Some("from an older vault".into()),
            destroyed: Vec::new(),
        })
        .collect();
    vault
        .apply_revocations(&list)
        .expect("apply the revocations");
}

#[test]
fn ids_stored_before_the_rules_are_reported_by_check_and_still_reachable() {
    let env = TestEnv::new();
    env.init();
    revoke_legacy_ids(&env, &[JOSE_NFD, "zero\u{200B}width"]);
    let out = env.run(["check"]);
    assert_success(&out, "check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("not in Unicode NFC form"), "{text}");
    assert!(text.contains("zero\\u{200b}width"), "{text}");
    assert!(text.contains("U+200B"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    let doc = env.json(["check"]);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 2, "{doc}");
    // Typed exactly as stored, the ids still answer; nothing was renamed.
    assert_success(&env.run(["is-revoked", JOSE_NFD]), "is-revoked, stored NFD");
    assert_success(
        &env.run(["is-revoked", "zero\u{200B}width"]),
        "is-revoked, stored zero-width",
    );
    let users: Vec<String> = env.json(["revoked"])["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap().to_string())
        .collect();
    assert!(users.contains(&JOSE_NFD.to_string()), "{users:?}");
    // `revoked` shows the invisible character escaped, not as nothing.
    let text = env.ok(["revoked"]);
    assert!(text.contains("zero\\u{200b}width"), "{text}");
}

#[test]
fn a_reason_with_a_newline_cannot_forge_a_line_of_revoked() {
    let env = TestEnv::new();
    env.init();
    let forged = "left\nUser999  2026-01-01T00:00:00Z  forged\tx";
    let receipt = env.ok(["revoke", "alice", "--reason", forged]);
    assert!(
        receipt.contains("reason: left\\nUser999  2026-01-01T00:00:00Z  forged\\tx\n"),
        "{receipt}"
    );
    let text = env.ok(["revoked"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("alice  "), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("User999")), "{text}");
    // JSON carries the text as it was given.
    assert_eq!(env.json(["revoked"])["revoked"][0]["reason"], forged);
}

#[test]
fn a_revoked_users_keys_say_revoked_and_a_typo_gets_the_closest_ids() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123", "--type", "rsa-2048"]);
    env.ok(["gen", "User456"]);
    fs::write(env.root().join("msg"), b"m").unwrap();
    let sig = env.root().join("sig");
    env.ok([
        "sign",
        "User123",
        "rsa-2048",
        "--in",
        env.root().join("msg").to_str().unwrap(),
        "--out",
        sig.to_str().unwrap(),
    ]);
    env.ok(["revoke", "User123"]);
    for args in [
        vec!["export", "User123", "rsa-2048"],
        vec!["export", "User123", "rsa-2048", "--public"],
        vec!["list", "User123"],
        vec!["delete", "User123", "rsa-2048"],
        vec![
            "verify",
            "User123",
            "rsa-2048",
            "--signature",
            sig.to_str().unwrap(),
            "--in",
            env.root().join("msg").to_str().unwrap(),
        ],
    ] {
        let out = env.run(&args);
        let err = assert_error(&out, 6, &format!("{args:?}"));
        assert!(
            err.contains("\"User123\" was revoked at 20"),
            "{args:?}: {err}"
        );
    }
    // A typo: no such user, and the ids close to it (revoked ones too).
    let out = env.run(["export", "user123", "rsa-2048"]);
    let err = assert_error(&out, 5, "export of a typo'd user");
    assert!(err.contains("no such user \"user123\""), "{err}");
    assert!(err.contains("hint: the vault holds \"User123\""), "{err}");
    let out = env.run(["list", "User45"]);
    let err = assert_error(&out, 5, "list of a typo'd user");
    assert!(err.contains("\"User456\""), "{err}");
    let out = env.run(["--json", "export", "User456", "nope"]);
    assert_error(&out, 5, "a missing key of an existing user");
    let doc = parse_json(&out.stdout, "error");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no key \"nope\" for user \"User456\""),
        "{doc}"
    );
}

/// Runs `cmd` to its end under GNU time and returns its output and its peak resident
/// memory in KiB, or `None` where /usr/bin/time is not installed. (The peak must come
/// from a process that GNU time forks: one forked from this test process would count
/// the test's own memory from before its exec.)
fn run_measured(cmd: std::process::Command) -> (std::process::Output, Option<u64>) {
    let time = std::path::Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("/usr/bin/time not found: peak memory is not checked");
        let mut cmd = cmd;
        return (cmd.output().expect("run keyvault"), None);
    }
    let report = tempfile::NamedTempFile::new().expect("a temp file");
    let mut timed = std::process::Command::new(time);
    timed.arg("-f").arg("%M").arg("-o").arg(report.path());
    timed.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // setsid(2), which is async-signal-safe: no controlling terminal, as for every test.
    unsafe {
        timed.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let out = timed.output().expect("run keyvault under GNU time");
    let text = fs::read_to_string(report.path()).unwrap_or_default();
    let kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    (out, kib)
}

/// A bound on the peak memory of a command that must not hold its input: far below
/// the inputs these tests give (the binary alone takes a few MiB).
const SMALL_RSS_KIB: u64 = 64 * 1024;

fn key_use_vault() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    for t in ["fernet", "aes256-gcm", "ed25519", "rsa-2048"] {
        env.ok(["gen", "alice", "--type", t]);
    }
    fs::write(env.root().join("msg"), b"a message").unwrap();
    env
}

fn p(env: &TestEnv, name: &str) -> String {
    env.root().join(name).to_str().unwrap().to_string()
}

#[test]
fn verify_reads_no_more_of_a_signature_than_the_key_needs() {
    let env = key_use_vault();
    for key in ["ed25519", "rsa-2048"] {
        let mut cmd = env.bare_std();
        cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file());
        cmd.args([
            "verify",
            "alice",
            key,
            "--signature",
            "/dev/zero",
            "--in",
            &p(&env, "msg"),
        ]);
        let (out, rss) = run_measured(cmd);
        assert_eq!(out.status.code(), Some(1), "{key}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "invalid\n");
        assert!(
            rss.is_none_or(|r| r < SMALL_RSS_KIB),
            "{key}: peak RSS {rss:?} KiB"
        );
    }
}

#[test]
fn a_whole_message_input_over_the_limit_is_refused_before_it_is_read() {
    let env = key_use_vault();
    // 2 GiB + 1 byte, sparse: refused from its size, never read into memory.
    let big = env.root().join("big");
    fs::File::create(&big)
        .unwrap()
        .set_len(2 * 1024 * 1024 * 1024 + 1)
        .unwrap();
    for args in [
        vec!["decrypt", "alice", "fernet", "--in", big.to_str().unwrap()],
        vec!["encrypt", "alice", "fernet", "--in", big.to_str().unwrap()],
        vec!["sign", "alice", "ed25519", "--in", big.to_str().unwrap()],
    ] {
        let mut cmd = env.bare_std();
        cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file());
        cmd.args(&args);
        let (out, rss) = run_measured(cmd);
        let err = assert_error(&out, 2, &format!("{args:?}"));
        assert!(err.contains("2 GiB"), "{err}");
        assert!(
            rss.is_none_or(|r| r < SMALL_RSS_KIB),
            "{args:?}: peak RSS {rss:?} KiB"
        );
    }
}

#[test]
fn json_output_over_its_limit_is_refused_before_any_work() {
    let env = key_use_vault();
    let plain = vec![7u8; 17 * 1024 * 1024];
    fs::write(env.root().join("plain"), &plain).unwrap();
    env.ok([
        "encrypt",
        "alice",
        "aes256-gcm",
        "--in",
        &p(&env, "plain"),
        "--out",
        &p(&env, "plain.kv"),
    ]);
    // A file: refused from its size, before the vault is opened.
    for args in [
        vec![
            "--json",
            "decrypt",
            "alice",
            "aes256-gcm",
            "--in",
            &p(&env, "plain.kv"),
        ],
        vec![
            "--json",
            "encrypt",
            "alice",
            "aes256-gcm",
            "--in",
            &p(&env, "plain"),
        ],
    ] {
        let mut cmd = env.bare_std();
        cmd.args(&args);
        let (out, rss) = run_measured(cmd);
        let err = assert_error(&out, 2, &format!("{args:?} without a passphrase"));
        assert!(err.contains("--json prints at most 16 MiB"), "{err}");
        assert!(
            rss.is_none_or(|r| r < SMALL_RSS_KIB),
            "{args:?}: peak RSS {rss:?} KiB"
        );
    }
    // A pipe: refused when the output passes the limit, holding no more than it.
    let out = env
        .kv()
        .args(["--json", "decrypt", "alice", "aes256-gcm"])
        .write_stdin(fs::read(env.root().join("plain.kv")).unwrap())
        .output()
        .unwrap();
    let err = assert_error(&out, 2, "--json decrypt from a pipe");
    assert!(err.contains("--out FILE"), "{err}");
    // With --out, the same decrypts.
    env.ok([
        "--json",
        "decrypt",
        "alice",
        "aes256-gcm",
        "--in",
        &p(&env, "plain.kv"),
        "--out",
        &p(&env, "plain.out"),
    ]);
    assert_eq!(fs::read(env.root().join("plain.out")).unwrap(), plain);
}

#[test]
fn an_export_that_could_not_be_written_is_audited_as_failed() {
    let env = key_use_vault();
    let mut cmd = env.bare_std();
    cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file());
    cmd.args(["export", "alice", "fernet"]);
    cmd.stdout(
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    );
    let out = cmd.output().unwrap();
    let err = assert_error(&out, 8, "export to /dev/full");
    assert!(err.contains("cannot write to stdout"), "{err}");
    let entries = env.json(["audit"])["entries"].as_array().unwrap().clone();
    let exports: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["operation"] == "export")
        .collect();
    let last = exports.last().expect("an export entry");
    assert_eq!(last["outcome"], "failed", "{entries:?}");
    assert!(
        last["detail"].as_str().unwrap().contains("not written"),
        "{last}"
    );
    // A written export is audited ok, and only once.
    env.ok(["export", "alice", "fernet", "--out", &p(&env, "k")]);
    let entries = env.json(["audit"])["entries"].as_array().unwrap().clone();
    assert_eq!(entries.last().unwrap()["outcome"], "ok");
}

#[test]
fn a_signature_of_the_other_rsa_scheme_is_invalid_with_a_hint() {
    let env = key_use_vault();
    for (made, checked, hint) in [
        ("pkcs1v15", None, "--scheme pkcs1v15"),
        ("pss", Some("pkcs1v15"), "--scheme pss"),
    ] {
        let sig = p(&env, &format!("{made}.sig"));
        env.ok([
            "sign",
            "alice",
            "rsa-2048",
            "--scheme",
            made,
            "--in",
            &p(&env, "msg"),
            "--out",
            &sig,
        ]);
        let mut args = vec!["verify", "alice", "rsa-2048", "--signature", &sig, "--in"];
        let msg = p(&env, "msg");
        args.push(&msg);
        if let Some(s) = checked {
            args.extend(["--scheme", s]);
        }
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{made}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "invalid\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(hint), "{made}: {stderr}");
        let mut json_args = vec!["--json"];
        json_args.extend(&args);
        let out = env.run(&json_args);
        assert_eq!(out.status.code(), Some(1));
        let doc = parse_json(&out.stdout, "verify --json");
        assert_eq!(doc["valid"], false);
        assert_eq!(doc["verifies_with_scheme"], made);
    }
    // A signature that verifies with neither: no hint.
    fs::write(env.root().join("junk.sig"), [1u8; 256]).unwrap();
    let out = env.run([
        "verify",
        "alice",
        "rsa-2048",
        "--signature",
        &p(&env, "junk.sig"),
        "--in",
        &p(&env, "msg"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hint"));
}

#[test]
fn mistakes_are_caught_before_the_passphrase_is_asked_for() {
    let env = key_use_vault();
    let before = env.snapshot();
    let existing = p(&env, "msg");
    let garbage = env.write_private("garbage.pem", b"not a key\n");
    let short = env.write_private("short.key", b"c2hvcnQ=\n");
    let weak = env.write_private("weak.pem", util::pkcs8_pem(&util::rsa_key(1024)).as_bytes());
    let encrypted = env.write_private(
        "enc.pem",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    fs::create_dir(env.root().join("nonempty")).unwrap();
    fs::write(env.root().join("nonempty/file"), b"x").unwrap();
    let long_id = "x".repeat(129);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let imp = |ty: &str, f: &str| -> Vec<String> {
        ["import", "bob", "k", "--type", ty, "--file", f]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let owned = |a: &[&str]| -> Vec<String> { a.iter().map(|x| x.to_string()).collect() };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            owned(&["gen", "alice", "-n", "my key"]),
            2,
            "invalid key name",
        ),
        (owned(&["gen", ""]), 2, "empty"),
        (owned(&["gen", &long_id]), 2, "129 bytes"),
        (owned(&["gen", "a\u{202E}b"]), 2, "U+202E"),
        (imp("rsa-2048", &s(&garbage)), 2, "expected a PEM"),
        (imp("fernet", &s(&short)), 2, "5 bytes"),
        (imp("rsa-2048", &s(&weak)), 6, "too weak"),
        (imp("rsa-2048", &s(&encrypted)), 2, "encrypted"),
        (imp("rsa-2048", &p(&env, "missing")), 5, "missing"),
        (
            owned(&[
                "encrypt", "alice", "fernet", "--in", &existing, "-o", &existing,
            ]),
            6,
            "exists",
        ),
        (
            owned(&[
                "sign", "alice", "ed25519", "--in", &existing, "-o", &existing,
            ]),
            6,
            "exists",
        ),
        (
            owned(&["export", "alice", "fernet", "-o", &existing]),
            6,
            "exists",
        ),
        (owned(&["backup", &existing]), 6, "exists"),
        (
            owned(&["--vault", &p(&env, "nonempty"), "init"]),
            6,
            "is not empty",
        ),
        (
            owned(&["revoke", "alice", "--reason", "a\u{7}"]),
            2,
            "control",
        ),
        (owned(&["export", "", "fernet"]), 2, "empty"),
        (owned(&["delete", "alice", "a/b"]), 2, "invalid key name"),
    ];
    let mut problems = Vec::new();
    for (args, code, says) in &cases {
        // No passphrase source at all: each gives its own error, never "no passphrase".
        let out = env.bare().args(args).output().unwrap();
        let found = util::error_problems(&out, *code, Some(says));
        if !found.is_empty() {
            problems.push(format!(
                "{args:?}: {found:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        env.snapshot(),
        before,
        "a refused command changed the vault"
    );
    assert_eq!(fs::read(env.root().join("msg")).unwrap(), b"a message");
    assert!(env.root().join("nonempty/file").exists());
}

/// Runs the binary with stdout on a pseudo-terminal (stdin and stderr as usual).
fn on_a_terminal(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let (master, slave) = util::open_pty();
    let mut cmd = env.bare_std();
    cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file());
    cmd.args(args)
        .stdout(slave)
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    drop(master);
    out
}

#[test]
fn binary_output_to_a_terminal_is_refused() {
    let env = key_use_vault();
    let msg = p(&env, "msg");
    for args in [
        vec!["export", "alice", "ed25519", "--format", "der"],
        vec!["export", "alice", "fernet", "--format", "der"],
        vec!["encrypt", "alice", "aes256-gcm", "--in", &msg],
        vec!["encrypt", "alice", "rsa-2048", "--in", &msg],
        vec!["sign", "alice", "ed25519", "--in", &msg],
    ] {
        let out = on_a_terminal(&env, &args);
        let err = assert_error(&out, 2, &format!("{args:?} to a terminal"));
        assert!(err.contains("stdout is a terminal"), "{err}");
        assert!(err.contains("--out FILE"), "{err}");
    }
    // Text goes to a terminal as before; binary goes to a file or a pipe.
    let out = on_a_terminal(&env, &["encrypt", "alice", "fernet", "--in", &msg]);
    assert_success(&out, "a Fernet token to a terminal");
    let out = on_a_terminal(&env, &["export", "alice", "ed25519"]);
    assert_success(&out, "a PEM to a terminal");
    let der = env.ok_bytes(["export", "alice", "ed25519", "--format", "der"]);
    assert!(!der.is_empty());
}

#[test]
fn an_rsassa_pss_key_and_a_raw_ed25519_key_import_for_verify() {
    let env = key_use_vault();
    // A raw 32-byte Ed25519 public key, in hex and in base64, with --public.
    let pem = env.ok(["export", "alice", "ed25519", "--public"]);
    let raw = &util::pem_body(&pem)[12..];
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let sig = p(&env, "ed.sig");
    env.ok([
        "sign",
        "alice",
        "ed25519",
        "--in",
        &p(&env, "msg"),
        "--out",
        &sig,
    ]);
    for (name, text) in [("hex", &hex), ("b64", &b64)] {
        let file = env.write_private(name, text.as_bytes());
        let args = ["import", "bob", name, "--type", "ed25519", "--file"];
        let out = env.run(args.iter().copied().chain([file.to_str().unwrap()]));
        let err = assert_error(&out, 2, "a raw key without --public");
        assert!(err.contains("--public"), "{err}");
        env.ok(args
            .iter()
            .copied()
            .chain([file.to_str().unwrap(), "--public"]));
        let out = env.run([
            "verify",
            "bob",
            name,
            "--signature",
            &sig,
            "--in",
            &p(&env, "msg"),
        ]);
        assert_success(&out, "verify with the raw public key");
    }
    // An RSASSA-PSS key made by OpenSSL, where it is installed.
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(env.root())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !openssl(&["version"]) {
        eprintln!("openssl not found: the RSASSA-PSS part is skipped");
        return;
    }
    assert!(openssl(&[
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-pkeyopt",
        "rsa_pss_keygen_md:sha256",
        "-pkeyopt",
        "rsa_pss_keygen_mgf1_md:sha256",
        "-pkeyopt",
        "rsa_pss_keygen_saltlen:32",
        "-out",
        "pss.key",
    ]));
    assert!(openssl(&[
        "pkey", "-in", "pss.key", "-pubout", "-out", "pss.pub"
    ]));
    assert!(openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        "pss.key",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-out",
        "pss.sig",
        "msg",
    ]));
    env.ok([
        "import",
        "bob",
        "pss",
        "--type",
        "rsa-2048",
        "--public",
        "--file",
        &p(&env, "pss.pub"),
    ]);
    let out = env.run([
        "verify",
        "bob",
        "pss",
        "--signature",
        &p(&env, "pss.sig"),
        "--in",
        &p(&env, "msg"),
    ]);
    assert_success(&out, "verify an OpenSSL RSASSA-PSS signature");
    // Its parameters come back out unchanged, and it does not encrypt.
    let exported = env.ok(["export", "bob", "pss", "--public"]);
    assert_eq!(
        exported,
        fs::read_to_string(env.root().join("pss.pub")).unwrap()
    );
    let out = env.run([
        "encrypt",
        "bob",
        "pss",
        "--in",
        &p(&env, "msg"),
        "--out",
        &p(&env, "x"),
    ]);
    let err = assert_error(&out, 2, "encrypt with an RSASSA-PSS key");
    assert!(err.contains("PSS signatures only"), "{err}");
}

#[test]
fn a_weak_new_passphrase_or_a_readable_passphrase_file_warns_and_is_never_refused() {
    let env = TestEnv::new();
    let weak = env.write_private("weak", b"abc\n");
    let out = env
        .bare()
        .args([
            "--json",
            "--passphrase-file",
            weak.to_str().unwrap(),
            "init",
        ])
        .args(util::FAST_KDF)
        .output()
        .unwrap();
    assert_success(&out, "init with a weak passphrase");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the new passphrase is weak: zxcvbn scores it 0 of 4"),
        "{stderr}"
    );
    let doc = parse_json(&out.stdout, "init --json");
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("passphrase is weak")),
        "{doc}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("OWASP")),
        "{doc}"
    );
    // passwd to a strong one: no strength warning; a file others can read: a warning.
    let strong = env.root().join("strong");
    fs::write(&strong, "plinth-marsupial-ocelot-gravy-tundra-47\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&strong, fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .bare()
        .args([
            "--json",
            "--passphrase-file",
            weak.to_str().unwrap(),
            "passwd",
        ])
        .args(["--new-passphrase-file", strong.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out, "passwd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("is weak"), "{stderr}");
    assert!(
        stderr.contains("can be read by other users (mode 0644)"),
        "{stderr}"
    );
    let doc = parse_json(&out.stdout, "passwd --json");
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1, "{doc}");
}

/// Runs `keyvault init` with a pseudo-terminal as its controlling terminal and checks,
/// when the prompt shows, that the terminal no longer echoes.
#[test]
fn echo_is_off_before_the_passphrase_prompt_shows() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::process::CommandExt as _;
    let env = TestEnv::new();
    let (mut master, slave) = util::open_pty();
    let mut cmd = env.bare_std();
    cmd.arg("init").args(util::FAST_KDF);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: runs in the child after its setsid (the earlier pre_exec) and before exec,
    // when its stdin is the terminal; ioctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let echoing = || {
        rustix::termios::tcgetattr(&slave)
            .expect("tcgetattr")
            .local_modes
            .contains(rustix::termios::LocalModes::ECHO)
    };
    let mut seen = Vec::new();
    let wait_for = |master: &mut fs::File, text: &str, seen: &mut Vec<u8>| {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(seen).contains(text) {
            let n = master.read(&mut buf).expect("read the terminal");
            assert!(
                n > 0,
                "the terminal closed: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    wait_for(&mut master, "New passphrase: ", &mut seen);
    assert!(
        !echoing(),
        "the prompt shows while the terminal still echoes"
    );
    master
        .write_all(format!("{PASSPHRASE}\n").as_bytes())
        .unwrap();
    wait_for(&mut master, "Repeat the passphrase: ", &mut seen);
    assert!(
        !echoing(),
        "the second prompt shows while the terminal echoes"
    );
    master
        .write_all(format!("{PASSPHRASE}\n").as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "init: {}", String::from_utf8_lossy(&seen));
    assert!(echoing(), "the terminal's echo was not put back");
    let mut rest = [0u8; 4096];
    // The output so far (without blocking: the child is gone).
    rustix::io::ioctl_fionbio(&master, true).expect("make the terminal non-blocking");
    if let Ok(n) = master.read(&mut rest) {
        seen.extend_from_slice(&rest[..n]);
    }
    let shown = String::from_utf8_lossy(&seen);
    assert!(
        !shown.contains(PASSPHRASE),
        "the passphrase was echoed: {shown}"
    );
    assert!(shown.contains("Created a vault"), "{shown}");
}

#[test]
fn small_output_and_help_defects_are_gone() {
    let env = key_use_vault();
    // status shows the KDF parameters, without a passphrase.
    let text = String::from_utf8(env.bare().arg("status").output().unwrap().stdout).unwrap();
    assert!(
        text.contains("kdf:            Argon2id m=1 MiB, t=1, p=1"),
        "{text}"
    );
    let out = env.bare().args(["--json", "status"]).output().unwrap();
    let doc = parse_json(&out.stdout, "status --json");
    assert_eq!(doc["kdf"]["memory_kib"], 1024, "{doc}");
    // The hidden agent command is offered nowhere.
    for shell in ["bash", "zsh", "fish"] {
        let script = env.ok(["completions", shell]);
        assert!(!script.contains("idle-secs"), "{shell} completes `agent`");
        assert!(script.contains("vault"), "{shell} lost the global options");
    }
    let out = env.bare().arg("--json").output().unwrap();
    let err = assert_error(&out, 2, "no command");
    assert!(!err.contains("agent"), "{err}");
    // "1 version", not "1 version(s)".
    env.ok(["gen", "carol"]);
    let text = env.ok(["delete", "carol", "fernet"]);
    assert!(text.contains("(1 version, SHA256:"), "{text}");
    // export --json: text material without its final newline, as encrypt --json.
    let doc = env.json(["export", "alice", "fernet"]);
    let material = doc["material"].as_str().unwrap();
    assert!(
        !material.ends_with('\n') && material.len() == 44,
        "{material:?}"
    );
    // An expired Fernet token says so (still exit 7).
    let token = env.write_private("old.tok", b"gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==");
    env.write_private("fk", b"cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=");
    env.ok([
        "import",
        "dave",
        "f",
        "--type",
        "fernet",
        "--file",
        &p(&env, "fk"),
    ]);
    let out = env.run([
        "decrypt",
        "dave",
        "f",
        "--in",
        token.to_str().unwrap(),
        "--ttl",
        "60",
    ]);
    let err = assert_error(&out, 7, "an expired token");
    assert!(err.starts_with("error: the token expired"), "{err}");
    // --help of export names Ed25519.
    let help = env.ok(["export", "--help"]);
    assert!(help.contains("Ed25519"), "{help}");
}
