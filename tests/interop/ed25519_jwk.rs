//! Ed25519 interop with Python's `cryptography` (PKCS#8 and SPKI keys, signatures both
//! ways) and our JWK exports (RSA private and public, Ed25519 private and public,
//! symmetric `oct`) loaded by Python's `jwcrypto` and matched against the PEM exports.

use std::fs;

use serde_json::Value;

use crate::util;
use crate::util::TestEnv;
use crate::util::python::{file_in, py, py_json, py_ok};

const MESSAGE: &[u8] = b"signed with ed25519\n";

fn key_info(file: &str, private: bool) -> Value {
    if private {
        py_json(["key-info", "--private", file])
    } else {
        py_json(["key-info", file])
    }
}

/// jwcrypto's view of a JWK file, without the fields a PEM has no counterpart for.
fn jwk_info(file: &str) -> (Value, Value) {
    let mut info = py_json(["jwk-info", file]);
    let obj = info.as_object_mut().expect("an object");
    let kid = obj.remove("kid").unwrap_or(Value::Null);
    let thumbprint = obj.remove("thumbprint");
    assert!(
        thumbprint.as_ref().and_then(Value::as_str).is_some(),
        "jwcrypto computes an RFC 7638 thumbprint: {info}"
    );
    (info, kid)
}

fn fingerprint(env: &TestEnv, name: &str, version: Option<u64>) -> Value {
    let doc = env.json(["list", "alice"]);
    let key = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name}: {doc}"))
        .clone();
    match version {
        None => key["fingerprint"].clone(),
        Some(v) => key["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .find(|x| x["version"] == v)
            .expect("that version")["fingerprint"]
            .clone(),
    }
}

#[test]
fn our_ed25519_pkcs8_and_spki_load_in_python_and_our_signatures_verify_there() {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    env.ok(["gen", "alice", "--type", "ed25519"]);
    env.ok(["export", "alice", "ed25519", "--out", &at("priv.pem")]);
    env.ok([
        "export",
        "alice",
        "ed25519",
        "--format",
        "der",
        "--out",
        &at("priv.der"),
    ]);
    env.ok([
        "export",
        "alice",
        "ed25519",
        "--public",
        "--out",
        &at("pub.pem"),
    ]);
    assert!(
        fs::read_to_string(at("priv.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let private = key_info(&at("priv.pem"), true);
    assert_eq!(private["type"], "ed25519");
    assert_eq!(key_info(&at("priv.der"), true), private);
    let public = key_info(&at("pub.pem"), false);
    assert_eq!(public["public"], private["public"]);

    fs::write(at("msg"), MESSAGE).unwrap();
    env.ok([
        "sign",
        "alice",
        "ed25519",
        "--in",
        &at("msg"),
        "--out",
        &at("sig"),
    ]);
    assert_eq!(fs::read(at("sig")).unwrap().len(), 64);
    assert_eq!(
        py_ok([
            "verify",
            &at("pub.pem"),
            &at("msg"),
            &at("sig"),
            "--alg",
            "ed25519"
        ])
        .trim(),
        "valid"
    );
    fs::write(at("other"), b"not what was signed").unwrap();
    let out = py([
        "verify",
        &at("pub.pem"),
        &at("other"),
        &at("sig"),
        "--alg",
        "ed25519",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "Python accepted a wrong message"
    );
}

#[test]
fn python_ed25519_keys_import_and_signatures_verify_both_ways() {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    py_ok(["ed25519-generate", &at("py8.pem"), &at("pyspki.pem")]);
    env.ok([
        "import",
        "alice",
        "py",
        "--type",
        "ed25519",
        "--file",
        &at("py8.pem"),
    ]);
    env.ok([
        "import",
        "alice",
        "pypub",
        "--type",
        "ed25519",
        "--public",
        "--file",
        &at("pyspki.pem"),
    ]);
    env.ok(["export", "alice", "py", "--out", &at("py.export.pem")]);
    assert_eq!(
        key_info(&at("py.export.pem"), true),
        key_info(&at("py8.pem"), true)
    );

    fs::write(at("msg"), MESSAGE).unwrap();
    py_ok([
        "sign",
        &at("py8.pem"),
        &at("msg"),
        &at("pysig"),
        "--alg",
        "ed25519",
    ]);
    for name in ["py", "pypub"] {
        let out = env.run([
            "verify",
            "alice",
            name,
            "--signature",
            &at("pysig"),
            "--in",
            &at("msg"),
        ]);
        util::assert_success(
            &out,
            &format!("verify Python's signature with alice/{name}"),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "valid (version 1)"
        );
    }
    // We sign with the imported key; Python verifies with its own public key.
    env.ok([
        "sign",
        "alice",
        "py",
        "--in",
        &at("msg"),
        "--out",
        &at("oursig"),
    ]);
    py_ok([
        "verify",
        &at("pyspki.pem"),
        &at("msg"),
        &at("oursig"),
        "--alg",
        "ed25519",
    ]);
    // Ed25519 is deterministic: the same key signs the same message the same way.
    assert_eq!(
        fs::read(at("oursig")).unwrap(),
        fs::read(at("pysig")).unwrap()
    );
}

#[test]
fn our_jwk_exports_load_in_jwcrypto_and_match_the_pem_keys() {
    let env = TestEnv::new();
    env.init();
    let at = |n: &str| file_in(env.root(), n);
    for t in [
        "rsa-2048",
        "ed25519",
        "fernet",
        "aes256-gcm",
        "chacha20-poly1305",
    ] {
        env.ok(["gen", "alice", "--type", t]);
    }

    for name in ["rsa-2048", "ed25519"] {
        let priv_jwk = at(&format!("{name}.jwk"));
        let pub_jwk = at(&format!("{name}.pub.jwk"));
        let priv_pem = at(&format!("{name}.pem"));
        let pub_pem = at(&format!("{name}.pub.pem"));
        env.ok([
            "export", "alice", name, "--format", "jwk", "--out", &priv_jwk,
        ]);
        env.ok([
            "export", "alice", name, "--public", "--format", "jwk", "--out", &pub_jwk,
        ]);
        env.ok(["export", "alice", name, "--out", &priv_pem]);
        env.ok(["export", "alice", name, "--public", "--out", &pub_pem]);

        let doc: Value = serde_json::from_slice(&fs::read(&pub_jwk).unwrap()).unwrap();
        assert!(
            doc.get("d").is_none(),
            "a public JWK holds no private part: {doc}"
        );
        let doc: Value = serde_json::from_slice(&fs::read(&priv_jwk).unwrap()).unwrap();
        assert!(doc.get("d").is_some(), "{doc}");

        let (from_jwk, kid) = jwk_info(&priv_jwk);
        assert_eq!(from_jwk, key_info(&priv_pem, true), "{name} private JWK");
        assert_eq!(kid, fingerprint(&env, name, None), "{name}: kid");
        let (from_jwk, _) = jwk_info(&pub_jwk);
        assert_eq!(from_jwk, key_info(&pub_pem, false), "{name} public JWK");
    }

    for name in ["fernet", "aes256-gcm", "chacha20-poly1305"] {
        let jwk = at(&format!("{name}.jwk"));
        let b64 = at(&format!("{name}.b64"));
        env.ok(["export", "alice", name, "--format", "jwk", "--out", &jwk]);
        env.ok(["export", "alice", name, "--format", "base64", "--out", &b64]);
        let doc: Value = serde_json::from_slice(&fs::read(&jwk).unwrap()).unwrap();
        assert_eq!(doc["kty"], "oct", "{doc}");
        let (from_jwk, _) = jwk_info(&jwk);
        assert_eq!(from_jwk["bytes"], 32, "{name}: {from_jwk}");
        assert_eq!(from_jwk, py_json(["raw-info", &b64]), "{name} oct JWK");
    }

    // An older version exports as JWK too, and is that version's key.
    env.ok([
        "export",
        "alice",
        "ed25519",
        "--format",
        "jwk",
        "--out",
        &at("v1.jwk"),
    ]);
    env.ok(["rotate", "alice", "ed25519"]);
    env.ok([
        "export",
        "alice",
        "ed25519",
        "--version",
        "1",
        "--format",
        "jwk",
        "--out",
        &at("v1.again.jwk"),
    ]);
    assert_eq!(
        fs::read(at("v1.jwk")).unwrap(),
        fs::read(at("v1.again.jwk")).unwrap()
    );
    env.ok([
        "export",
        "alice",
        "ed25519",
        "--format",
        "jwk",
        "--out",
        &at("v2.jwk"),
    ]);
    let (v2, kid) = jwk_info(&at("v2.jwk"));
    assert_ne!(v2, jwk_info(&at("v1.jwk")).0);
    assert_eq!(kid, fingerprint(&env, "ed25519", Some(2)));
}
