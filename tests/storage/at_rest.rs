//! Nothing readable in the vault directory: no user id, key name, reason or
//! key material, in any encoding, in any file under the vault dir.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sha2::Digest as _;

use crate::util;
use crate::util::{
    PASSPHRASE, TestEnv, contains_bytes, files_under, pkcs8_der, pkcs8_pem, rsa_key,
};

const USER: &str = "User123";
const REVOKED_USER: &str = "Revoked-Zebra-User";
const REASON: &str = "zebra crossing laptop theft 4711";
const FERNET_NAME: &str = "known-fernet-key";
const AES_NAME: &str = "known-aes-key";
const RSA_NAME: &str = "known-rsa-key";
const GONE_NAME: &str = "soon-destroyed-key";

/// 32 bytes that look random and are known to the test.
fn known_bytes(label: &str) -> Vec<u8> {
    sha2::Sha256::digest(format!("keyvault at-rest test {label}").as_bytes()).to_vec()
}

/// Every encoding of `bytes` that must not appear: raw, and base64 in the standard and
/// url-safe alphabets, padded or not.
fn encodings(label: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(format!("{label} (raw)"), bytes.to_vec())];
    for (name, text) in [
        ("base64", STANDARD.encode(bytes)),
        ("base64, no padding", STANDARD_NO_PAD.encode(bytes)),
        ("url-safe base64", URL_SAFE.encode(bytes)),
        ("url-safe base64, no padding", URL_SAFE_NO_PAD.encode(bytes)),
    ] {
        out.push((format!("{label} ({name})"), text.into_bytes()));
    }
    out
}

#[test]
fn no_ids_names_reasons_or_key_material_in_any_vault_file() {
    let env = TestEnv::new();
    env.init();

    let fernet = known_bytes("fernet");
    let aes = known_bytes("aes");
    let rsa = rsa_key(2048);
    let rsa_der = pkcs8_der(&rsa);
    let rsa_pem = pkcs8_pem(&rsa);

    let import = |name: &str, ty: &str, file: &str, contents: &[u8]| {
        let path = env.write_private(file, contents);
        env.ok([
            "import",
            USER,
            name,
            "--type",
            ty,
            "--file",
            path.to_str().unwrap(),
        ]);
    };
    import(
        FERNET_NAME,
        "fernet",
        "f.key",
        URL_SAFE.encode(&fernet).as_bytes(),
    );
    import(
        AES_NAME,
        "aes256-gcm",
        "a.key",
        STANDARD.encode(&aes).as_bytes(),
    );
    import(RSA_NAME, "rsa-2048", "r.pem", rsa_pem.as_bytes());
    // A key of the revoked user, destroyed by the revocation, with known bytes too.
    let gone = known_bytes("destroyed");
    let path = env.write_private("g.key", URL_SAFE.encode(&gone).as_bytes());
    env.ok([
        "import",
        REVOKED_USER,
        GONE_NAME,
        "--type",
        "fernet",
        "--file",
        path.to_str().unwrap(),
    ]);
    env.ok(["revoke", REVOKED_USER, "--reason", REASON]);
    // Exports write audit entries too: they must not leak either.
    env.ok(["export", USER, FERNET_NAME]);
    env.ok(["export", USER, RSA_NAME, "--public"]);

    // The keys really are there (so the scan below is not vacuous).
    let listed = env.json(["list", USER]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(
        env.ok(["export", USER, AES_NAME]).trim(),
        STANDARD.encode(&aes)
    );

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for text in [
        USER,
        REVOKED_USER,
        REASON,
        FERNET_NAME,
        AES_NAME,
        RSA_NAME,
        GONE_NAME,
        PASSPHRASE,
    ] {
        needles.push((format!("{text:?}"), text.as_bytes().to_vec()));
    }
    needles.extend(encodings("the fernet key", &fernet));
    needles.extend(encodings("the aes256-gcm key", &aes));
    needles.extend(encodings("the revoked user's destroyed key", &gone));
    needles.push(("the RSA PKCS#8 DER".into(), rsa_der.clone()));
    let mid = rsa_der.len() / 2;
    needles.push((
        "32 bytes from the middle of the RSA PKCS#8 DER".into(),
        rsa_der[mid..mid + 32].to_vec(),
    ));
    let pem_line = rsa_pem.lines().nth(10).unwrap();
    assert_eq!(pem_line.len(), 64);
    needles.push(("a line of the RSA PEM".into(), pem_line.as_bytes().to_vec()));

    let files = files_under(&env.vault());
    assert!(!files.is_empty());
    let mut total = 0;
    let mut leaks = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        total += bytes.len();
        for (what, needle) in &needles {
            if contains_bytes(&bytes, needle) {
                leaks.push(format!("{what} in {}", file.display()));
            }
        }
    }
    assert!(total > 0, "the vault files are empty");
    // A control: the scan sees sled's uncompressed bytes (the meta tree's key
    // "revoked-ledger" is stored as is), so a plaintext id would be seen too.
    assert!(
        files
            .iter()
            .any(|f| contains_bytes(&std::fs::read(f).unwrap(), b"revoked-ledger")),
        "the scan cannot see the database's contents"
    );
    assert!(
        leaks.is_empty(),
        "plaintext in the vault dir:\n{}",
        leaks.join("\n")
    );
}

/// No secret in backups, the audit log, the stdout of non-export commands,
/// stderr, or `--json` errors; and no id, name or reason in plaintext in a backup.
#[test]
fn no_secret_in_backups_audit_outputs_or_errors() {
    let env = TestEnv::new();
    env.init();
    let fernet = known_bytes("output fernet");
    let rsa = rsa_key(2048);
    let rsa_der = pkcs8_der(&rsa);
    let fpath = env.write_private("f.key", URL_SAFE.encode(&fernet).as_bytes());
    let rpath = env.write_private("r.pem", pkcs8_pem(&rsa).as_bytes());
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.run(args);
        outputs.push((format!("stdout of {args:?}"), out.stdout));
        outputs.push((format!("stderr of {args:?}"), out.stderr));
    };
    run(&[
        "import",
        USER,
        FERNET_NAME,
        "--type",
        "fernet",
        "--file",
        fpath.to_str().unwrap(),
    ]);
    run(&[
        "--json",
        "import",
        USER,
        RSA_NAME,
        "--type",
        "rsa-2048",
        "--file",
        rpath.to_str().unwrap(),
    ]);
    // Non-export commands, successes and failures, text and JSON.
    for args in [
        &["list"][..],
        &["--json", "list"],
        &["status"],
        &["--json", "status"],
        &["rotate", USER, FERNET_NAME],
        &["--json", "gen", USER, "--name", FERNET_NAME],
        &["gen", USER, "--name", FERNET_NAME],
        &["export", USER, "missing"],
        &["--json", "export", USER, "missing"],
        &[
            "import",
            USER,
            "x",
            "--type",
            "fernet",
            "--file",
            "/nonexistent",
        ],
        &["audit"],
        &["--json", "audit"],
        &["check"],
        &["--json", "check"],
        &["revoke", REVOKED_USER, "--reason", REASON],
        &["--json", "revoked"],
    ] {
        run(args);
    }
    let backup = env.root().join("scan.kvb");
    run(&["backup", backup.to_str().unwrap()]);
    // Wrong passphrase, through --json.
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "wrong")
        .args(["--json", "list"])
        .output()
        .unwrap();
    outputs.push(("--json error, wrong passphrase".into(), out.stdout));
    outputs.push(("stderr, wrong passphrase".into(), out.stderr));

    let mut secrets = encodings("fernet key", &fernet);
    secrets.push(("RSA PKCS#8 DER".into(), rsa_der.clone()));
    secrets.push(("RSA DER window".into(), rsa_der[100..132].to_vec()));
    secrets.push(("passphrase".into(), PASSPHRASE.as_bytes().to_vec()));
    let rsa_pem = pkcs8_pem(&rsa);
    let pem_line = rsa_pem.lines().nth(3).unwrap().as_bytes().to_vec();
    secrets.push(("RSA PEM line".into(), pem_line));
    for (where_, text) in &outputs {
        for (what, needle) in &secrets {
            assert!(!contains_bytes(text, needle), "{what} appears in {where_}");
        }
    }
    let file = std::fs::read(&backup).expect("read the backup");
    let mut plain = secrets.clone();
    for id in [USER, REVOKED_USER, REASON, FERNET_NAME, RSA_NAME] {
        plain.push((format!("{id:?}"), id.as_bytes().to_vec()));
    }
    for (what, needle) in &plain {
        assert!(
            !contains_bytes(&file, needle),
            "{what} appears in the backup file"
        );
    }
}

/// Every file keyvault writes (the vault's lock, header and database, a compaction's and
/// a passphrase change's replacements, backups, a restored vault, the rollback record) is
/// readable by the user alone, even when started with umask 000.
#[test]
fn every_file_is_private_even_under_umask_000() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    let new_pass = env.write_private("new-passphrase", b"another passphrase");
    let run = |args: &[&str], passphrase: &std::path::Path| {
        let mut cmd = env.bare_std();
        cmd.env("KEYVAULT_PASSPHRASE_FILE", passphrase).args(args);
        // SAFETY: umask(2) in the forked child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::empty());
                Ok(())
            });
        }
        let out = cmd.output().expect("run keyvault");
        util::assert_success(&out, &args.join(" "));
    };
    let pass = env.passphrase_file();
    run(
        &[
            "init",
            "--kdf-memory",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
            "--allow-weak-kdf",
        ],
        &pass,
    );
    run(&["gen", "alice"], &pass);
    run(&["gen", "bob"], &pass);
    run(&["revoke", "bob", "--purge"], &pass);
    let backup = env.root().join("b.kvb");
    run(&["backup", backup.to_str().unwrap()], &pass);
    run(
        &[
            "passwd",
            "--new-passphrase-file",
            new_pass.to_str().unwrap(),
        ],
        &pass,
    );
    let restored = env.root().join("restored");
    run(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--to",
            restored.to_str().unwrap(),
        ],
        &pass,
    );
    let mut checked = 0;
    let mut loose = Vec::new();
    let mut look = |path: &std::path::Path| {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        checked += 1;
        if mode & 0o077 != 0 {
            loose.push(format!("{} is {mode:o}", path.display()));
        }
    };
    for root in [
        env.vault(),
        restored.clone(),
        env.root().join("state/keyvault"),
    ] {
        look(&root);
        for file in files_under(&root) {
            look(&file);
            let mut dir = file.parent().unwrap().to_path_buf();
            while dir.starts_with(&root) && dir != root {
                look(&dir);
                dir = dir.parent().unwrap().to_path_buf();
            }
        }
    }
    look(&backup);
    assert!(checked > 10, "only {checked} paths looked at");
    assert!(loose.is_empty(), "{loose:?}");
}
