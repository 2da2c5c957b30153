//! Tests of JWK import and export: RFC 8037's vector, round trips through PEM, and the
//! members refused.

use super::*;
use crate::crypto::keys::{self, ExportFormat, generate};

fn json(bytes: &[u8]) -> serde_json::Value {
    assert_eq!(bytes.last(), Some(&b'\n'));
    assert!(!bytes[..bytes.len() - 1].contains(&b'\n'), "compact JSON");
    serde_json::from_slice(bytes).unwrap()
}

fn b64(v: &serde_json::Value, name: &str) -> Vec<u8> {
    let s = v[name].as_str().unwrap();
    assert!(!s.contains(['=', '+', '/']), "{name} is unpadded base64url");
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[test]
fn ed25519_rfc8037_appendix_a_vector() {
    // RFC 8037 appendix A.1 / A.2.
    let d = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap();
    let m = ed25519_keys::material_from_seed(d.as_slice().try_into().unwrap()).unwrap();
    let out = export(KeyType::Ed25519, &m, false).unwrap();
    let v = json(&out);
    assert_eq!(v["kty"], "OKP");
    assert_eq!(v["crv"], "Ed25519");
    assert_eq!(v["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(v["d"], "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    assert_eq!(v["kid"], keys::fingerprint(KeyType::Ed25519, &m));
    let public = export(KeyType::Ed25519, &m, true).unwrap();
    let pv = json(&public);
    assert!(pv.get("d").is_none());
    assert_eq!(pv["kid"], v["kid"]);
    let back = import(KeyType::Ed25519, &out, false).unwrap();
    assert_eq!(back.secret.as_slice(), m.secret.as_slice());
    assert!(matches!(
        import(KeyType::Ed25519, &public, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
    let only = import(KeyType::Ed25519, &public, true).unwrap();
    assert!(only.secret.is_empty());
    assert_eq!(only.public, m.public);
}

#[test]
fn rsa_private_and_public_round_trip() {
    let m = generate(KeyType::Rsa2048).unwrap();
    let out = export(KeyType::Rsa2048, &m, false).unwrap();
    let v = json(&out);
    assert_eq!(v["kty"], "RSA");
    assert_eq!(v["e"], "AQAB");
    assert_eq!(b64(&v, "n").len(), 256);
    for name in ["d", "p", "q", "dp", "dq", "qi"] {
        let bytes = b64(&v, name);
        assert!(!bytes.is_empty() && bytes[0] != 0, "{name} is minimal");
    }
    let back = import(KeyType::Rsa2048, &out, false).unwrap();
    assert_eq!(back.secret.as_slice(), m.secret.as_slice());
    assert_eq!(back.public, m.public);
    assert_eq!(export(KeyType::Rsa2048, &back, false).unwrap(), out);

    let public = export(KeyType::Rsa2048, &m, true).unwrap();
    let pv = json(&public);
    assert_eq!(pv.as_object().unwrap().len(), 4, "kty, n, e, kid");
    assert_eq!(pv["n"], v["n"]);
    assert_eq!(pv["kid"], v["kid"]);
    let only = import(KeyType::Rsa2048, &public, true).unwrap();
    assert!(only.secret.is_empty());
    assert_eq!(only.public, m.public);
    assert!(matches!(
        import(KeyType::Rsa2048, &public, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
    // Size mismatch: a usage error with the key's real size.
    match import(KeyType::Rsa3072, &out, false) {
        Err(Error::RsaSizeMismatch { found: 2048, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    // The same key through keys::import (JSON detected) and the PEM it exports.
    let via_keys = keys::import(KeyType::Rsa2048, &out, false).unwrap();
    assert_eq!(via_keys.public, m.public);
    let pem = keys::export(KeyType::Rsa2048, &m, false, ExportFormat::Pem).unwrap();
    assert_eq!(
        keys::import(KeyType::Rsa2048, &pem, false).unwrap().public,
        m.public
    );
}

#[test]
fn rsa_inconsistent_or_incomplete_is_refused() {
    let m = generate(KeyType::Rsa2048).unwrap();
    let out = export(KeyType::Rsa2048, &m, false).unwrap();
    let v = json(&out);
    let mut wrong_qi = v.clone();
    wrong_qi["qi"] = v["dp"].clone();
    let bytes = serde_json::to_vec(&wrong_qi).unwrap();
    match import(KeyType::Rsa2048, &bytes, false) {
        Err(Error::Usage(msg)) => assert!(msg.contains("inconsistent"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    let mut wrong_d = v.clone();
    wrong_d["d"] = v["p"].clone();
    let bytes = serde_json::to_vec(&wrong_d).unwrap();
    assert!(matches!(
        import(KeyType::Rsa2048, &bytes, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
    let mut no_primes = v.clone();
    for name in ["p", "q", "dp", "dq", "qi"] {
        no_primes.as_object_mut().unwrap().remove(name);
    }
    let bytes = serde_json::to_vec(&no_primes).unwrap();
    assert!(matches!(
        import(KeyType::Rsa2048, &bytes, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
    let mut oth = v.clone();
    oth["oth"] = serde_json::json!([]);
    let bytes = serde_json::to_vec(&oth).unwrap();
    assert!(matches!(
        import(KeyType::Rsa2048, &bytes, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
}

#[test]
fn oct_round_trip_and_sizes() {
    for kt in [
        KeyType::Fernet,
        KeyType::Aes256Gcm,
        KeyType::ChaCha20Poly1305,
    ] {
        let m = generate(kt).unwrap();
        let out = export(kt, &m, false).unwrap();
        let v = json(&out);
        assert_eq!(v["kty"], "oct");
        assert_eq!(b64(&v, "k"), m.secret.as_slice());
        assert_eq!(v["kid"], keys::fingerprint(kt, &m));
        let back = keys::import(kt, &out, false).unwrap();
        assert_eq!(back.secret.as_slice(), m.secret.as_slice());
        assert!(
            matches!(export(kt, &m, true), Err(e) if e.exit_code() == crate::error::Exit::Usage)
        );
    }
    let short = br#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"}"#;
    match import(KeyType::Aes256Gcm, short, false) {
        Err(Error::Usage(msg)) => assert!(msg.contains("128 bits"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn kty_mismatch_says_what_was_expected() {
    let ed = ed25519_keys::generate().unwrap();
    let ed_jwk = export(KeyType::Ed25519, &ed, false).unwrap();
    match import(KeyType::Rsa2048, &ed_jwk, false) {
        Err(Error::Usage(msg)) => {
            assert!(msg.contains("expects kty \"RSA\""), "{msg}");
            assert!(msg.contains("found kty \"OKP\""), "{msg}");
        }
        other => panic!("{:?}", other.err()),
    }
    match import(KeyType::Fernet, &ed_jwk, false) {
        Err(Error::Usage(msg)) => assert!(msg.contains("kty \"oct\""), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    let x25519 = br#"{"kty":"OKP","crv":"X25519","x":"AAAA"}"#;
    match import(KeyType::Ed25519, x25519, true) {
        Err(Error::Usage(msg)) => assert!(msg.contains("crv \"X25519\""), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    let fernet = keys::generate(KeyType::Fernet).unwrap();
    let oct = export(KeyType::Fernet, &fernet, false).unwrap();
    assert!(matches!(
        import(KeyType::Ed25519, &oct, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
}

#[test]
fn malformed_jwks_are_usage_errors_without_echoing_input() {
    let secretish = br#"{"kty":"oct","k":12345678901234}"#;
    match import(KeyType::Fernet, secretish, false) {
        Err(Error::Usage(msg)) => assert!(!msg.contains("12345678901234"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    for bad in [
        &br#"{"kty":"oct""#[..],
        br#"{"kty":"oct","k":"not base64!!"}"#,
        br#"{"kty":"oct"}"#,
        br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#,
        br#"{}"#,
        br#"[1,2]"#,
    ] {
        assert!(
            matches!(import(KeyType::Fernet, bad, false), Err(e) if e.exit_code() == crate::error::Exit::Usage),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let ed = ed25519_keys::generate().unwrap();
    let v = json(&export(KeyType::Ed25519, &ed, false).unwrap());
    let mut wrong_x = v.clone();
    wrong_x["x"] = serde_json::Value::String(URL_SAFE_NO_PAD.encode([9u8; 32]));
    let bytes = serde_json::to_vec(&wrong_x).unwrap();
    assert!(matches!(
        import(KeyType::Ed25519, &bytes, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
    let mut short_d = v.clone();
    short_d["d"] = serde_json::Value::String("AAAA".into());
    let bytes = serde_json::to_vec(&short_d).unwrap();
    assert!(matches!(
        import(KeyType::Ed25519, &bytes, false),
        Err(e) if e.exit_code() == crate::error::Exit::Usage
    ));
}

#[test]
fn jwks_from_a_python_library_import_as_the_same_keys() {
    use crate::crypto::python_vectors as py;
    for (kt, name, pem) in [
        (KeyType::Rsa2048, "JWKRSA", 0),
        (KeyType::Ed25519, "JWKOKP", 1),
    ] {
        let from_jwk = import(kt, py::text(name).as_bytes(), false).unwrap();
        let from_pem = keys::import(kt, py::pem(pem).as_bytes(), false).unwrap();
        assert_eq!(
            from_jwk.secret.as_slice(),
            from_pem.secret.as_slice(),
            "{name}"
        );
        assert_eq!(from_jwk.public, from_pem.public, "{name}");
    }
}

#[test]
fn writer_grows_without_losing_text() {
    let mut w = Writer::new();
    w.text("kty", "oct");
    let big = vec![0xfbu8; 10_000];
    w.bytes("k", &big);
    w.text("kid", "SHA256:x");
    let v = json(&w.finish());
    assert_eq!(b64(&v, "k"), big);
    assert_eq!(v["kid"], "SHA256:x");
}

#[test]
fn detects_json() {
    assert!(looks_like_jwk(b"  \n{\"kty\":1}"));
    assert!(!looks_like_jwk(b"-----BEGIN"));
    assert!(!looks_like_jwk(b""));
}
