//! Import and export: the encodings keyvault takes and gives, and `export --out`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};

use crate::util::{
    TestEnv, assert_error, assert_success, parse_json, pkcs8_der, pkcs8_pem, rsa_key, spki_pem,
};

const SYMMETRIC: [&str; 3] = ["fernet", "aes256-gcm", "chacha20-poly1305"];

#[test]
fn import_of_a_pkcs1_rsa_private_key_pem() {
    let env = TestEnv::new();
    env.init();
    let key = rsa_key(2048);
    let pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let file = env.write_private("pkcs1.pem", pem.as_bytes());
    let out = env.ok([
        "import",
        "User123",
        "legacy",
        "--type",
        "rsa-2048",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.contains("Imported rsa-2048 key \"legacy\" for User123"),
        "{out}"
    );
    // It comes back as PKCS#8, the same key.
    let der = env.ok_bytes(["export", "User123", "legacy", "--format", "der"]);
    assert_eq!(der, pkcs8_der(&key));
    let pem = env.ok(["export", "User123", "legacy"]);
    assert_eq!(pem, pkcs8_pem(&key));
}

#[test]
fn import_of_a_public_only_pem_with_public() {
    let env = TestEnv::new();
    env.init();
    let key = rsa_key(2048);
    let spki = spki_pem(&key);
    let file = env.write_private("pub.pem", spki.as_bytes());
    let d = env.json([
        "import",
        "User123",
        "verify-only",
        "--type",
        "rsa-2048",
        "--public",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(d["public_only"], true);
    assert_eq!(d["type"], "rsa-2048");
    let listed = env.json(["list", "User123"]);
    assert_eq!(listed["keys"][0]["public_only"], true);
    let text = env.ok(["list", "User123"]);
    assert!(text.contains("rsa-2048 (public)"), "{text}");

    assert_eq!(
        env.ok(["export", "User123", "verify-only", "--public"]),
        spki
    );
    let der = env.ok_bytes([
        "export",
        "User123",
        "verify-only",
        "--public",
        "--format",
        "der",
    ]);
    assert_eq!(
        der,
        key.to_public_key().to_public_key_der().unwrap().as_bytes()
    );
    // There is no private half to export.
    let before = env.snapshot();
    let out = env.run(["export", "User123", "verify-only"]);
    let err = assert_error(&out, 2, "export of a public-only key's private half");
    assert!(err.contains("public-only"), "{err}");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn import_reads_stdin_with_dash_and_by_default() {
    let env = TestEnv::new();
    env.init();
    let fernet = URL_SAFE.encode([7u8; 32]);
    let aes = STANDARD.encode([9u8; 32]);
    let out = env
        .kv()
        .args([
            "import",
            "User123",
            "from-dash",
            "--type",
            "fernet",
            "--file",
            "-",
        ])
        .write_stdin(format!("{fernet}\n"))
        .output()
        .unwrap();
    assert_success(&out, "import --file -");
    let out = env
        .kv()
        .args(["import", "User123", "from-stdin", "--type", "aes256-gcm"])
        .write_stdin(aes.clone())
        .output()
        .unwrap();
    assert_success(&out, "import from stdin");
    assert_eq!(env.ok(["export", "User123", "from-dash"]).trim(), fernet);
    assert_eq!(env.ok(["export", "User123", "from-stdin"]).trim(), aes);
}

#[test]
fn export_out_creates_a_0600_file_and_never_overwrites() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123"]);
    env.ok(["gen", "User123", "--type", "rsa-2048"]);
    let printed = env.ok(["export", "User123", "fernet"]);

    let target = env.root().join("fernet.key");
    let out = env
        .kv()
        .args(["export", "User123", "fernet", "--out"])
        .arg(&target)
        .output()
        .unwrap();
    assert_success(&out, "export --out");
    assert!(out.stdout.is_empty(), "the secret went to stdout too");
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(fs::read_to_string(&target).unwrap(), printed);

    // Again: refused, the file is untouched.
    let before = env.snapshot();
    let out = env
        .kv()
        .args(["export", "User123", "rsa-2048", "--out"])
        .arg(&target)
        .output()
        .unwrap();
    let err = assert_error(&out, 6, "export --out over an existing file");
    assert!(err.contains("exists"), "{err}");
    assert_eq!(fs::read_to_string(&target).unwrap(), printed);
    assert_eq!(env.snapshot(), before);

    // A file the user made is not overwritten either, even with --json.
    let mine = env.write_private("mine.txt", b"precious\n");
    let out = env
        .kv()
        .args(["--json", "export", "User123", "fernet", "-o"])
        .arg(&mine)
        .output()
        .unwrap();
    assert_error(&out, 6, "export -o over a user's file");
    assert_eq!(fs::read(&mine).unwrap(), b"precious\n");

    // With --json, the document names the file written; RSA keys too are 0600.
    let rsa_file = env.root().join("rsa.pem");
    let out = env
        .kv()
        .args(["--json", "export", "User123", "rsa-2048", "--out"])
        .arg(&rsa_file)
        .output()
        .unwrap();
    assert_success(&out, "export --json --out");
    let d = parse_json(&out.stdout, "export --json --out");
    assert_eq!(d["written"], rsa_file.display().to_string());
    assert_eq!(
        fs::metadata(&rsa_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        fs::read_to_string(&rsa_file)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

#[test]
fn rsa_export_formats_round_trip_through_import() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123", "--type", "rsa-2048", "--name", "orig"]);
    let der = env.ok_bytes(["export", "User123", "orig", "--format", "der"]);
    let public_der = env.ok_bytes(["export", "User123", "orig", "--public", "--format", "der"]);
    let pem = env.ok(["export", "User123", "orig", "--format", "pem"]);
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let b64 = env.ok(["export", "User123", "orig", "--format", "base64"]);
    assert_eq!(STANDARD.decode(b64.trim()).unwrap(), der);

    for format in ["pem", "der", "base64"] {
        for public in [false, true] {
            let name = format!(
                "copy-{format}-{}",
                if public { "public" } else { "private" }
            );
            let file = env.root().join(&name);
            let mut export = env.kv();
            export.args(["export", "User123", "orig", "--format", format, "--out"]);
            export.arg(&file);
            if public {
                export.arg("--public");
            }
            assert_success(&export.output().unwrap(), &format!("export {name}"));

            let mut import = env.kv();
            import.args(["import", "User123", &name, "--type", "rsa-2048", "--file"]);
            import.arg(&file);
            if public {
                import.arg("--public");
            }
            assert_success(&import.output().unwrap(), &format!("import {name}"));

            let back = env.ok_bytes(["export", "User123", &name, "--public", "--format", "der"]);
            assert_eq!(back, public_der, "{name}: another public key came back");
            if !public {
                let back = env.ok_bytes(["export", "User123", &name, "--format", "der"]);
                assert_eq!(back, der, "{name}: another private key came back");
            }
        }
    }
    // Every copy has the fingerprint of the original.
    let listed = env.json(["list", "User123"]);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 7);
    for k in keys {
        assert_eq!(k["fingerprint"], keys[0]["fingerprint"], "{k}");
    }
}

#[test]
fn symmetric_base64_export_round_trips_through_import() {
    let env = TestEnv::new();
    env.init();
    for ty in SYMMETRIC {
        env.ok(["gen", "User123", "--type", ty]);
        let text = env.ok(["export", "User123", ty]);
        let explicit = env.ok(["export", "User123", ty, "--format", "base64"]);
        assert_eq!(text, explicit);
        let raw = env.ok_bytes(["export", "User123", ty, "--format", "der"]);
        assert_eq!(raw.len(), 32, "{ty}");
        // Fernet keys are url-safe base64 (as Python's Fernet takes them); the others
        // standard base64.
        let engine = if ty == "fernet" { &URL_SAFE } else { &STANDARD };
        assert_eq!(engine.decode(text.trim()).unwrap(), raw, "{ty}");

        let file = env.write_private(&format!("{ty}.b64"), text.as_bytes());
        let copy = format!("{ty}-copy");
        env.ok([
            "import",
            "User123",
            &copy,
            "--type",
            ty,
            "--file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(env.ok(["export", "User123", &copy]), text, "{ty}");
    }
    // symmetric keys have no PEM form and no public half
    for ty in SYMMETRIC {
        let before = env.snapshot();
        let out = env.run(["export", "User123", ty, "--format", "pem"]);
        assert_error(&out, 2, "export --format pem of a symmetric key");
        let out = env.run(["export", "User123", ty, "--public"]);
        assert_error(&out, 2, "export --public of a symmetric key");
        assert_eq!(env.snapshot(), before);
    }
}

/// `export --format der` of a symmetric key gives its 32 raw bytes; `import`'s help says
/// it takes "PEM …, DER, or base64", so those bytes must import back.
#[test]
fn symmetric_der_export_round_trips_through_import() {
    let env = TestEnv::new();
    env.init();
    for ty in SYMMETRIC {
        env.ok(["gen", "User123", "--type", ty]);
        let file = env.root().join(format!("{ty}.der"));
        let out = env
            .kv()
            .args(["export", "User123", ty, "--format", "der", "--out"])
            .arg(&file)
            .output()
            .unwrap();
        assert_success(&out, "export --format der");
        let copy = format!("{ty}-copy");
        let out = env
            .kv()
            .args(["import", "User123", &copy, "--type", ty, "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert_success(&out, &format!("import of the DER export of a {ty} key"));
        assert_eq!(
            env.ok(["export", "User123", &copy]),
            env.ok(["export", "User123", ty]),
            "{ty}"
        );
    }
}

#[test]
fn export_of_version_1_is_the_primary_version() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "User123", "--type", "aes256-gcm"]);
    assert_eq!(
        env.ok(["export", "User123", "aes256-gcm", "--version", "1"]),
        env.ok(["export", "User123", "aes256-gcm"])
    );
}
