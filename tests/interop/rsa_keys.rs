//! RSA interop with Python's `cryptography` both directions: PKCS#8, SPKI and
//! PKCS#1 keys; PSS (any salt length on verify) and PKCS#1 v1.5 signatures; OAEP-SHA256;
//! and the keys the original Python prototype made, imported and used.
//!
//! To keep the suite fast, most tests use keys Python makes (quick) and only one test
//! makes an RSA key with keyvault.

use std::fs;

use serde_json::Value;

use crate::util;
use crate::util::TestEnv;
use crate::util::python::{file_in, py, py_json, py_ok};

const MESSAGE: &[u8] = b"contract.pdf, more or less\n\x00\xff";

/// A vault holding Python's RSA-2048 key as alice/py (from PKCS#8) and alice/pypub
/// (its SPKI, public only); the PEMs are left in `py8.pem`, `py1.pem`, `pyspki.pem`.
fn vault_with_python_rsa() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    py_ok([
        "rsa-generate",
        &at("py8.pem"),
        &at("py1.pem"),
        &at("pyspki.pem"),
    ]);
    env.ok([
        "import",
        "alice",
        "py",
        "--type",
        "rsa-2048",
        "--file",
        &at("py8.pem"),
    ]);
    env.ok([
        "import",
        "alice",
        "pypub",
        "--type",
        "rsa-2048",
        "--public",
        "--file",
        &at("pyspki.pem"),
    ]);
    fs::write(at("msg"), MESSAGE).unwrap();
    env
}

fn key_info(file: &str, private: bool) -> Value {
    if private {
        py_json(["key-info", "--private", file])
    } else {
        py_json(["key-info", file])
    }
}

/// The public half of a `key-info` document.
fn public_part(info: &Value) -> Value {
    serde_json::json!({
        "type": info["type"],
        "private": false,
        "n": info["n"],
        "e": info["e"],
        "bits": info["bits"],
    })
}

fn verify_exit(env: &TestEnv, name: &str, sig: &str, scheme: Option<&str>) -> (i32, String) {
    let at = |n: &str| file_in(env.root(), n);
    let mut args = vec![
        "verify".to_string(),
        "alice".into(),
        name.into(),
        "--signature".into(),
        sig.into(),
        "--in".into(),
        at("msg"),
    ];
    if let Some(s) = scheme {
        args.extend(["--scheme".into(), s.into()]);
    }
    let out = env.run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn our_rsa_key_exports_load_in_python_and_work_there() {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    env.ok(["gen", "alice", "--type", "rsa-2048"]);
    env.ok(["export", "alice", "rsa-2048", "--out", &at("priv.pem")]);
    env.ok([
        "export",
        "alice",
        "rsa-2048",
        "--format",
        "der",
        "--out",
        &at("priv.der"),
    ]);
    env.ok([
        "export",
        "alice",
        "rsa-2048",
        "--public",
        "--out",
        &at("pub.pem"),
    ]);
    env.ok([
        "export",
        "alice",
        "rsa-2048",
        "--public",
        "--format",
        "der",
        "--out",
        &at("pub.der"),
    ]);
    let pem = fs::read_to_string(at("priv.pem")).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8: {pem:.40}"
    );
    let spki = fs::read_to_string(at("pub.pem")).unwrap();
    assert!(
        spki.starts_with("-----BEGIN PUBLIC KEY-----"),
        "SPKI: {spki}"
    );

    let private = key_info(&at("priv.pem"), true);
    assert_eq!(private["type"], "rsa");
    assert_eq!(private["bits"], 2048);
    assert_eq!(private["e"], 65537);
    assert_eq!(key_info(&at("priv.der"), true), private);
    assert_eq!(key_info(&at("pub.pem"), false), public_part(&private));
    assert_eq!(key_info(&at("pub.der"), false), public_part(&private));

    // Signatures and OAEP of a key keyvault made, checked by Python.
    fs::write(at("msg"), MESSAGE).unwrap();
    env.ok([
        "sign",
        "alice",
        "rsa-2048",
        "--in",
        &at("msg"),
        "--out",
        &at("sig"),
    ]);
    assert_eq!(
        py_ok([
            "verify",
            &at("pub.pem"),
            &at("msg"),
            &at("sig"),
            "--alg",
            "pss-digest"
        ])
        .trim(),
        "valid"
    );
    fs::write(at("short"), b"a short secret").unwrap();
    env.ok([
        "encrypt",
        "alice",
        "rsa-2048",
        "--in",
        &at("short"),
        "--out",
        &at("ct"),
    ]);
    py_ok([
        "oaep-decrypt",
        &at("priv.pem"),
        &at("ct"),
        &at("short.plain"),
    ]);
    assert_eq!(fs::read(at("short.plain")).unwrap(), b"a short secret");
}

#[test]
fn python_pkcs8_and_pkcs1_pems_import_into_us_as_the_same_key() {
    let env = vault_with_python_rsa();
    let at = |n: &str| file_in(env.root(), n);
    env.ok([
        "import",
        "alice",
        "py1",
        "--type",
        "rsa-2048",
        "--file",
        &at("py1.pem"),
    ]);
    let python_key = key_info(&at("py8.pem"), true);
    assert_eq!(key_info(&at("py1.pem"), true), python_key);

    for name in ["py", "py1"] {
        let out = format!("{name}.export.pem");
        env.ok(["export", "alice", name, "--out", &at(&out)]);
        assert_eq!(key_info(&at(&out), true), python_key, "{name}");
    }
    env.ok([
        "export",
        "alice",
        "pypub",
        "--public",
        "--out",
        &at("pypub.export.pem"),
    ]);
    assert_eq!(
        key_info(&at("pypub.export.pem"), false),
        public_part(&python_key)
    );

    // One key, one fingerprint, whichever encoding it came in.
    let doc = env.json(["list", "alice"]);
    let keys = doc["keys"].as_array().expect("keys");
    let fingerprints: Vec<&Value> = keys.iter().map(|k| &k["fingerprint"]).collect();
    assert_eq!(fingerprints.len(), 3, "{doc}");
    assert!(
        fingerprints.iter().all(|f| *f == fingerprints[0]),
        "fingerprints differ: {doc}"
    );
}

#[test]
fn our_pss_and_pkcs1v15_signatures_verify_in_python() {
    let env = vault_with_python_rsa();
    let at = |n: &str| file_in(env.root(), n);
    env.ok([
        "sign",
        "alice",
        "py",
        "--in",
        &at("msg"),
        "--out",
        &at("pss.sig"),
    ]);
    env.ok([
        "sign",
        "alice",
        "py",
        "--scheme",
        "pss",
        "--in",
        &at("msg"),
        "--out",
        &at("pss2.sig"),
    ]);
    env.ok([
        "sign",
        "alice",
        "py",
        "--scheme",
        "pkcs1v15",
        "--in",
        &at("msg"),
        "--out",
        &at("v15.sig"),
    ]);
    assert_eq!(fs::read(at("pss.sig")).unwrap().len(), 256);
    // PSS is randomized; PKCS#1 v1.5 is deterministic.
    assert_ne!(
        fs::read(at("pss.sig")).unwrap(),
        fs::read(at("pss2.sig")).unwrap()
    );

    // The salt is as long as the digest (32 bytes): Python's strict DIGEST_LENGTH check
    // passes, and so does AUTO.
    for (sig, alg) in [
        ("pss.sig", "pss-digest"),
        ("pss.sig", "pss-auto"),
        ("pss2.sig", "pss-digest"),
        ("v15.sig", "pkcs1v15"),
    ] {
        let out = py([
            "verify",
            &at("pyspki.pem"),
            &at("msg"),
            &at(sig),
            "--alg",
            alg,
        ]);
        assert!(
            out.status.success(),
            "Python rejects our {sig} as {alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Python is not just saying yes: another message, or the other scheme, fails.
    fs::write(at("other"), b"another message").unwrap();
    let out = py([
        "verify",
        &at("pyspki.pem"),
        &at("other"),
        &at("pss.sig"),
        "--alg",
        "pss-auto",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "Python accepted a signature of another message"
    );
    let out = py([
        "verify",
        &at("pyspki.pem"),
        &at("msg"),
        &at("pss.sig"),
        "--alg",
        "pkcs1v15",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a PSS signature verified as PKCS#1 v1.5"
    );
}

#[test]
fn python_pss_max_and_digest_salts_and_pkcs1v15_signatures_verify_with_us() {
    let env = vault_with_python_rsa();
    let at = |n: &str| file_in(env.root(), n);
    for alg in ["pss-max", "pss-digest", "pkcs1v15"] {
        py_ok(["sign", &at("py8.pem"), &at("msg"), &at(alg), "--alg", alg]);
    }
    // Both the private key and the public-only import verify, by default (PSS) …
    for name in ["py", "pypub"] {
        for alg in ["pss-max", "pss-digest"] {
            let (code, stdout) = verify_exit(&env, name, &at(alg), None);
            assert_eq!(
                (code, stdout.trim()),
                (0, "valid (version 1)"),
                "Python's {alg} signature under alice/{name}"
            );
            let (code, _) = verify_exit(&env, name, &at(alg), Some("pss"));
            assert_eq!(code, 0, "{alg} with --scheme pss under alice/{name}");
        }
        // … and PKCS#1 v1.5 with --scheme pkcs1v15.
        let (code, stdout) = verify_exit(&env, name, &at("pkcs1v15"), Some("pkcs1v15"));
        assert_eq!(
            (code, stdout.trim()),
            (0, "valid (version 1)"),
            "pkcs1v15 alice/{name}"
        );
    }
    // A signature of another message does not verify (exit 1, "invalid").
    fs::write(at("msg"), b"a different message").unwrap();
    for (alg, scheme) in [
        ("pss-max", None),
        ("pss-digest", None),
        ("pkcs1v15", Some("pkcs1v15")),
    ] {
        let (code, stdout) = verify_exit(&env, "py", &at(alg), scheme);
        assert_eq!(
            (code, stdout.trim()),
            (1, "invalid"),
            "{alg} over another message"
        );
    }
}

#[test]
fn oaep_sha256_both_ways() {
    let env = vault_with_python_rsa();
    let at = |n: &str| file_in(env.root(), n);
    env.ok([
        "export",
        "alice",
        "py",
        "--public",
        "--out",
        &at("ours.pub.pem"),
    ]);
    env.ok(["export", "alice", "py", "--out", &at("ours.priv.pem")]);
    // 1 byte and 190 bytes, the most RSA-2048 with OAEP-SHA256 holds.
    let longest: Vec<u8> = (0..190u32).map(|i| (i * 7 % 256) as u8).collect();
    for (name, plain) in [("one", vec![0x42u8]), ("longest", longest)] {
        fs::write(at(name), &plain).unwrap();
        // Python encrypts with our exported public key; we decrypt.
        let ct = format!("{name}.python.ct");
        py_ok(["oaep-encrypt", &at("ours.pub.pem"), &at(name), &at(&ct)]);
        assert_eq!(fs::read(at(&ct)).unwrap().len(), 256);
        assert_eq!(
            env.ok_bytes(["decrypt", "alice", "py", "--in", &at(&ct)]),
            plain,
            "{name}: Python's OAEP ciphertext"
        );
        // We encrypt (with the private key's record and with the public-only import);
        // Python decrypts with our exported private key.
        for key in ["py", "pypub"] {
            let ct = format!("{name}.{key}.ct");
            let back = format!("{name}.{key}.plain");
            env.ok([
                "encrypt",
                "alice",
                key,
                "--in",
                &at(name),
                "--out",
                &at(&ct),
            ]);
            py_ok(["oaep-decrypt", &at("ours.priv.pem"), &at(&ct), &at(&back)]);
            assert_eq!(
                fs::read(at(&back)).unwrap(),
                plain,
                "{name} via alice/{key}"
            );
        }
    }
}

#[test]
fn the_python_prototypes_keys_import_and_work() {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    fs::create_dir(at("proto")).unwrap();
    py_ok(["prototype-keys", &at("proto")]);
    let sym = at("proto/symmetric.key");
    let private = at("proto/private.pem");
    let public = at("proto/public.pem");
    env.ok([
        "import", "User123", "sym", "--type", "fernet", "--file", &sym,
    ]);
    env.ok([
        "import", "User123", "rsa", "--type", "rsa-2048", "--file", &private,
    ]);
    env.ok([
        "import", "User123", "rsa-pub", "--type", "rsa-2048", "--public", "--file", &public,
    ]);
    // The vault holds the very keys the prototype made.
    env.ok(["export", "User123", "sym", "--out", &at("sym.export")]);
    assert_eq!(
        fs::read_to_string(at("sym.export")).unwrap().trim(),
        fs::read_to_string(&sym).unwrap().trim()
    );
    env.ok(["export", "User123", "rsa", "--out", &at("rsa.export")]);
    assert_eq!(key_info(&at("rsa.export"), true), key_info(&private, true));

    // Fernet both ways with the prototype's key.
    fs::write(at("msg"), MESSAGE).unwrap();
    env.ok([
        "encrypt",
        "User123",
        "sym",
        "--in",
        &at("msg"),
        "--out",
        &at("tok"),
    ]);
    py_ok(["fernet-decrypt", &sym, &at("tok"), &at("tok.plain")]);
    assert_eq!(fs::read(at("tok.plain")).unwrap(), MESSAGE);
    py_ok(["fernet-encrypt", &sym, &at("msg"), &at("pytok")]);
    assert_eq!(
        env.ok_bytes(["decrypt", "User123", "sym", "--in", &at("pytok")]),
        MESSAGE
    );

    // Signatures both ways, OAEP from the prototype's public key.
    env.ok([
        "sign",
        "User123",
        "rsa",
        "--in",
        &at("msg"),
        "--out",
        &at("sig"),
    ]);
    py_ok([
        "verify",
        &public,
        &at("msg"),
        &at("sig"),
        "--alg",
        "pss-digest",
    ]);
    py_ok([
        "sign",
        &private,
        &at("msg"),
        &at("pysig"),
        "--alg",
        "pss-max",
    ]);
    for name in ["rsa", "rsa-pub"] {
        let out = env.run([
            "verify",
            "User123",
            name,
            "--signature",
            &at("pysig"),
            "--in",
            &at("msg"),
        ]);
        util::assert_success(
            &out,
            &format!("verify the prototype's signature with {name}"),
        );
    }
    fs::write(at("secret"), b"for User123 only").unwrap();
    py_ok(["oaep-encrypt", &public, &at("secret"), &at("secret.ct")]);
    assert_eq!(
        env.ok_bytes(["decrypt", "User123", "rsa", "--in", &at("secret.ct")]),
        b"for User123 only"
    );
}
