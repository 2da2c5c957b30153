//! Using keys without exporting them through the real binary: the user
//! story; AEAD envelopes of a few MiB for both AEAD types, one-shot and through the
//! agent; RSA and Ed25519 signatures; JWK export; per-version use counts in `list`;
//! `export --version`; `delete --version`; and all of it again through the agent.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::util;
use crate::util::{TestEnv, assert_error, assert_success};

/// Envelope layout (README, src/crypto/envelope.rs): 53-byte header, 64 KiB chunks,
/// 16-byte tags.
const HEADER_LEN: usize = 53;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// Bytes that are not all alike (so a misplaced chunk shows), without a RNG dependency.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A vault of a fresh environment.
fn vault() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    env
}

/// The `list --json` entry of one key.
fn key_doc(env: &TestEnv, user: &str, name: &str) -> Value {
    let doc = env.json(["list", user]);
    doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {user}/{name}: {doc}"))
        .clone()
}

/// (version, state, uses) of every version of a key, from `list --json`.
fn versions(env: &TestEnv, user: &str, name: &str) -> Vec<(u64, String, u64)> {
    key_doc(env, user, name)["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["state"].as_str().expect("state").to_string(),
                v["uses"].as_u64().expect("uses"),
            )
        })
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_user_story_of_issue_4() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    env.ok(["gen", "alice"]);

    // echo 'hello' | keyvault encrypt alice fernet > token.txt
    let out = env
        .kv()
        .args(["encrypt", "alice", "fernet"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    assert_success(&out, "encrypt hello");
    fs::write(at("token.txt"), &out.stdout).unwrap();
    // keyvault decrypt alice fernet < token.txt   # hello
    let decrypt = |env: &TestEnv| {
        env.kv()
            .args(["decrypt", "alice", "fernet"])
            .pipe_stdin(at("token.txt"))
            .unwrap()
            .output()
            .unwrap()
    };
    let out = decrypt(&env);
    assert_success(&out, "decrypt the token");
    assert_eq!(stdout(&out), "hello\n");
    // keyvault rotate alice fernet   # version 2 is primary now
    let text = env.ok(["rotate", "alice", "fernet"]);
    assert!(text.contains("version 2 is primary"), "{text}");
    // keyvault decrypt alice fernet < token.txt   # still hello
    let out = decrypt(&env);
    assert_success(&out, "decrypt the old token after rotate");
    assert_eq!(stdout(&out), "hello\n");

    // keyvault encrypt alice data --in big.bin --out big.kv
    env.ok(["gen", "alice", "--type", "aes256-gcm", "--name", "data"]);
    let big = data(3 * 1024 * 1024 + 12_345, 1);
    fs::write(at("big.bin"), &big).unwrap();
    env.ok([
        "encrypt",
        "alice",
        "data",
        "--in",
        s(&at("big.bin")),
        "--out",
        s(&at("big.kv")),
    ]);
    env.ok([
        "decrypt",
        "alice",
        "data",
        "--in",
        s(&at("big.kv")),
        "--out",
        s(&at("big.out")),
    ]);
    assert!(
        fs::read(at("big.out")).unwrap() == big,
        "big.bin did not round-trip"
    );

    // keyvault sign alice rsa-2048 --in contract.pdf > sig.bin
    env.ok(["gen", "alice", "--type", "rsa-2048"]);
    fs::write(at("contract.pdf"), data(50_000, 2)).unwrap();
    let sig = env.ok_bytes(["sign", "alice", "rsa-2048", "--in", s(&at("contract.pdf"))]);
    assert_eq!(sig.len(), 256, "an RSA-2048 signature is 256 bytes");
    fs::write(at("sig.bin"), &sig).unwrap();
    // keyvault verify alice rsa-2048 --signature sig.bin --in contract.pdf   # exit 0 / 1
    let verify = |env: &TestEnv| {
        env.run([
            "verify",
            "alice",
            "rsa-2048",
            "--signature",
            s(&at("sig.bin")),
            "--in",
            s(&at("contract.pdf")),
        ])
    };
    let out = verify(&env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out).trim(), "valid (version 1)");
    let mut altered = fs::read(at("contract.pdf")).unwrap();
    altered[1000] ^= 1;
    fs::write(at("contract.pdf"), altered).unwrap();
    let out = verify(&env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout(&out).trim(), "invalid");

    // keyvault gen alice --type ed25519; keyvault sign alice ed25519 --in m > s
    env.ok(["gen", "alice", "--type", "ed25519"]);
    fs::write(at("m"), b"a message").unwrap();
    let sig = env.ok_bytes(["sign", "alice", "ed25519", "--in", s(&at("m"))]);
    assert_eq!(sig.len(), 64);
    fs::write(at("s"), &sig).unwrap();
    let out = env.run([
        "verify",
        "alice",
        "ed25519",
        "--signature",
        s(&at("s")),
        "--in",
        s(&at("m")),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // keyvault export alice rsa-2048 --public --format jwk
    let jwk: Value = serde_json::from_str(
        &env.ok(["export", "alice", "rsa-2048", "--public", "--format", "jwk"]),
    )
    .expect("a JWK is JSON");
    assert_eq!(jwk["kty"], "RSA", "{jwk}");
    assert_eq!(jwk["e"], "AQAB", "{jwk}");
    assert!(jwk["n"].as_str().is_some_and(|n| n.len() >= 342), "{jwk}");
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(
            jwk.get(private).is_none(),
            "public JWK has {private}: {jwk}"
        );
    }
}

/// Round trips of an AEAD key type at sizes around the chunk size and of a few MiB,
/// through files and through stdin/stdout.
fn aead_round_trips(env: &TestEnv, bare: bool, key_type: &str) {
    let cmd = || if bare { env.bare() } else { env.kv() };
    let at = |n: &str| env.root().join(format!("{key_type}-{n}"));
    let name = format!("{key_type}-data");
    let out = cmd()
        .args(["gen", "alice", "--type", key_type, "--name", &name])
        .output()
        .unwrap();
    assert_success(&out, "gen");
    let algorithm_id = if key_type == "aes256-gcm" { 1 } else { 2 };
    for (i, len) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024 + 7]
        .into_iter()
        .enumerate()
    {
        let plain = data(len, i as u64 + 10);
        let (input, sealed, opened) = (
            at(&format!("{len}")),
            at(&format!("{len}.kv")),
            at(&format!("{len}.out")),
        );
        fs::write(&input, &plain).unwrap();
        let out = cmd()
            .args([
                "encrypt",
                "alice",
                &name,
                "--in",
                s(&input),
                "--out",
                s(&sealed),
            ])
            .output()
            .unwrap();
        assert_success(&out, &format!("{key_type}: encrypt {len} bytes"));
        let envelope = fs::read(&sealed).unwrap();
        assert_eq!(&envelope[..4], b"KVE1");
        assert_eq!(envelope[5], algorithm_id, "algorithm byte");
        assert_eq!(&envelope[6..10], &1u32.to_be_bytes(), "key version");
        if len % CHUNK != 0 || len == 0 {
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(
                envelope.len(),
                HEADER_LEN + len + chunks * TAG,
                "{len} bytes"
            );
        }
        let mode = fs::metadata(&sealed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the envelope file is private");
        let out = cmd()
            .args([
                "decrypt",
                "alice",
                &name,
                "--in",
                s(&sealed),
                "--out",
                s(&opened),
            ])
            .output()
            .unwrap();
        assert_success(&out, &format!("{key_type}: decrypt {len} bytes"));
        assert!(
            fs::read(&opened).unwrap() == plain,
            "{key_type}: {len} bytes changed"
        );
    }

    // stdin to stdout; and two envelopes of one plaintext differ (fresh salt and nonce).
    let plain = data(200_000, 99);
    let seal = || {
        let out = cmd()
            .args(["encrypt", "alice", &name])
            .write_stdin(plain.clone())
            .output()
            .unwrap();
        assert_success(&out, "encrypt from stdin");
        out.stdout
    };
    let (a, b) = (seal(), seal());
    assert_ne!(a, b, "two envelopes of one plaintext are equal");
    let out = cmd()
        .args(["decrypt", "alice", &name])
        .write_stdin(a)
        .output()
        .unwrap();
    assert_success(&out, "decrypt from stdin");
    assert!(
        out.stdout == plain,
        "stdin/stdout round trip changed the data"
    );
}

#[test]
fn aead_envelopes_of_a_few_mib_round_trip_for_both_aead_types() {
    let env = vault();
    for key_type in ["aes256-gcm", "chacha20-poly1305"] {
        aead_round_trips(&env, false, key_type);
    }
}

#[test]
fn aead_envelopes_round_trip_through_the_agent() {
    let env = vault();
    env.ok(["unlock"]);
    for key_type in ["aes256-gcm", "chacha20-poly1305"] {
        aead_round_trips(&env, true, key_type);
    }
    // An envelope made through the agent opens one-shot, and the other way round.
    let at = |n: &str| env.root().join(n);
    fs::write(at("p"), data(100_000, 5)).unwrap();
    let out = env
        .bare()
        .args([
            "encrypt",
            "alice",
            "aes256-gcm-data",
            "--in",
            s(&at("p")),
            "--out",
            s(&at("p.kv")),
        ])
        .output()
        .unwrap();
    assert_success(&out, "encrypt through the agent");
    let out = env.bare().arg("lock").output().unwrap();
    assert_success(&out, "lock");
    env.ok([
        "decrypt",
        "alice",
        "aes256-gcm-data",
        "--in",
        s(&at("p.kv")),
        "--out",
        s(&at("p.out")),
    ]);
    assert_eq!(fs::read(at("p.out")).unwrap(), fs::read(at("p")).unwrap());
    let out = env
        .bare()
        .args(["encrypt", "alice", "aes256-gcm-data", "--in", s(&at("p"))])
        .output()
        .unwrap();
    assert_error(&out, 4, "encrypt after lock without a passphrase");
}

#[test]
fn rsa_sign_and_verify_with_both_schemes_exit_0_or_1() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    env.ok(["gen", "alice", "--type", "rsa-2048"]);
    fs::write(at("m"), b"terms and conditions").unwrap();
    let m_path = at("m");
    let verify = |sig: &str, scheme: Option<&str>| {
        let mut args = vec![
            "verify",
            "alice",
            "rsa-2048",
            "--signature",
            sig,
            "--in",
            s(&m_path),
        ];
        if let Some(x) = scheme {
            args.extend(["--scheme", x]);
        }
        let out = env.run(&args);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        (out.status.code(), stdout(&out).trim().to_string())
    };
    env.ok([
        "sign",
        "alice",
        "rsa-2048",
        "--in",
        s(&at("m")),
        "--out",
        s(&at("pss")),
    ]);
    env.ok([
        "sign",
        "alice",
        "rsa-2048",
        "--scheme",
        "pkcs1v15",
        "--in",
        s(&at("m")),
        "--out",
        s(&at("v15")),
    ]);
    let valid = (Some(0), "valid (version 1)".to_string());
    let invalid = (Some(1), "invalid".to_string());
    assert_eq!(verify(s(&at("pss")), None), valid);
    assert_eq!(verify(s(&at("pss")), Some("pss")), valid);
    assert_eq!(verify(s(&at("v15")), Some("pkcs1v15")), valid);
    // The scheme must match.
    assert_eq!(verify(s(&at("pss")), Some("pkcs1v15")), invalid);
    assert_eq!(verify(s(&at("v15")), None), invalid);
    // PKCS#1 v1.5 is deterministic, PSS is not.
    let again = env.ok_bytes([
        "sign",
        "alice",
        "rsa-2048",
        "--scheme",
        "pkcs1v15",
        "--in",
        s(&at("m")),
    ]);
    assert_eq!(again, fs::read(at("v15")).unwrap());
    let again = env.ok_bytes(["sign", "alice", "rsa-2048", "--in", s(&at("m"))]);
    assert_ne!(again, fs::read(at("pss")).unwrap());

    // After rotate, signing uses version 2 and the version-1 signature still verifies.
    env.ok(["rotate", "alice", "rsa-2048"]);
    assert_eq!(verify(s(&at("pss")), None), valid);
    let doc = env.json([
        "sign",
        "alice",
        "rsa-2048",
        "--in",
        s(&at("m")),
        "--out",
        s(&at("pss2")),
    ]);
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(
        verify(s(&at("pss2")), None),
        (Some(0), "valid (version 2)".to_string())
    );
    let doc = env.json([
        "verify",
        "alice",
        "rsa-2048",
        "--signature",
        s(&at("pss")),
        "--in",
        s(&at("m")),
    ]);
    assert_eq!(
        (doc["valid"].clone(), doc["version"].clone()),
        (Value::Bool(true), Value::from(1))
    );
}

#[test]
fn list_shows_versions_and_use_counts_that_grow_with_encrypt_and_sign() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    for t in ["fernet", "aes256-gcm", "ed25519"] {
        env.ok(["gen", "alice", "--type", t]);
    }
    fs::write(at("m"), b"count me").unwrap();
    let m_path = at("m");
    let m = s(&m_path);
    let fresh = |n: &str| vec![(1, "primary".to_string(), n.parse::<u64>().unwrap())];
    assert_eq!(versions(&env, "alice", "fernet"), fresh("0"));

    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("t1")),
    ]);
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("t2")),
    ]);
    env.ok([
        "encrypt",
        "alice",
        "aes256-gcm",
        "--in",
        m,
        "--out",
        s(&at("e1")),
    ]);
    for i in 0..3 {
        env.ok([
            "sign",
            "alice",
            "ed25519",
            "--in",
            m,
            "--out",
            s(&at(&format!("s{i}"))),
        ]);
    }
    assert_eq!(versions(&env, "alice", "fernet"), fresh("2"));
    assert_eq!(versions(&env, "alice", "aes256-gcm"), fresh("1"));
    assert_eq!(versions(&env, "alice", "ed25519"), fresh("3"));

    // Decrypting and verifying are not counted uses.
    env.ok(["decrypt", "alice", "fernet", "--in", s(&at("t1"))]);
    env.ok(["decrypt", "alice", "aes256-gcm", "--in", s(&at("e1"))]);
    env.ok([
        "verify",
        "alice",
        "ed25519",
        "--signature",
        s(&at("s0")),
        "--in",
        m,
    ]);
    assert_eq!(versions(&env, "alice", "fernet"), fresh("2"));
    assert_eq!(versions(&env, "alice", "aes256-gcm"), fresh("1"));
    assert_eq!(versions(&env, "alice", "ed25519"), fresh("3"));

    // After rotate, new uses count on version 2; version 1 keeps its count.
    env.ok(["rotate", "alice", "fernet"]);
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("t3")),
    ]);
    assert_eq!(
        versions(&env, "alice", "fernet"),
        vec![(1, "decrypt-only".into(), 2), (2, "primary".into(), 1)]
    );
    let doc = key_doc(&env, "alice", "fernet");
    assert_eq!(doc["primary_version"], 2, "{doc}");
    // The text listing shows the versions and their counts.
    let text = env.ok(["list", "alice"]);
    let line = text
        .lines()
        .find(|l| l.contains(" fernet "))
        .unwrap_or_else(|| panic!("no fernet line: {text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert!(cols.contains(&"1,2") && cols.contains(&"2,1"), "{text}");
}

#[test]
fn use_counts_through_the_agent_survive_lock() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "chacha20-poly1305"]);
    env.ok(["unlock"]);
    fs::write(at("m"), b"count me").unwrap();
    for i in 0..5 {
        let out = env
            .bare()
            .args([
                "encrypt",
                "alice",
                "fernet",
                "--in",
                s(&at("m")),
                "--out",
                s(&at(&format!("t{i}"))),
            ])
            .output()
            .unwrap();
        assert_success(&out, "encrypt through the agent");
    }
    for i in 0..2 {
        let out = env
            .bare()
            .args([
                "encrypt",
                "alice",
                "chacha20-poly1305",
                "--in",
                s(&at("m")),
                "--out",
                s(&at(&format!("e{i}"))),
            ])
            .output()
            .unwrap();
        assert_success(&out, "encrypt through the agent");
    }
    let out = env.bare().args(["--json", "list"]).output().unwrap();
    assert_success(&out, "list through the agent");
    let doc = util::parse_json(&out.stdout, "list");
    let uses: Vec<u64> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["versions"][0]["uses"].as_u64().unwrap())
        .collect();
    assert_eq!(uses.iter().sum::<u64>(), 7, "{doc}");
    let out = env.bare().arg("lock").output().unwrap();
    assert_success(&out, "lock");
    // A clean lock persists the exact counts (a crash may only overcount).
    assert_eq!(
        versions(&env, "alice", "fernet"),
        vec![(1, "primary".into(), 5)]
    );
    assert_eq!(
        versions(&env, "alice", "chacha20-poly1305"),
        vec![(1, "primary".into(), 2)]
    );
}

#[test]
fn export_version_n_is_that_versions_key() {
    let env = vault();
    env.ok(["gen", "alice"]);
    let v1 = env.ok(["export", "alice", "fernet"]);
    env.ok(["rotate", "alice", "fernet"]);
    env.ok(["rotate", "alice", "fernet"]);
    assert_eq!(env.ok(["export", "alice", "fernet", "--version", "1"]), v1);
    let v2 = env.ok(["export", "alice", "fernet", "--version", "2"]);
    let v3 = env.ok(["export", "alice", "fernet", "--version", "3"]);
    assert!(v1 != v2 && v2 != v3 && v1 != v3);
    assert_eq!(
        env.ok(["export", "alice", "fernet"]),
        v3,
        "the primary is the newest"
    );
    for missing in ["4", "0"] {
        let out = env.run(["export", "alice", "fernet", "--version", missing]);
        let stderr = assert_error(&out, 5, &format!("export --version {missing}"));
        assert!(out.stdout.is_empty(), "{stderr}");
    }
}

#[test]
fn delete_version_destroys_one_version_never_the_only_one() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    fs::write(at("m"), b"versioned").unwrap();
    let m_path = at("m");
    let m = s(&m_path);
    for t in ["fernet", "aes256-gcm", "ed25519"] {
        env.ok(["gen", "alice", "--type", t]);
        let out = env.run(["delete", "alice", t, "--version", "1"]);
        let stderr = assert_error(&out, 2, &format!("{t}: delete the only version"));
        assert!(stderr.contains("only version"), "{stderr}");
    }
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("t1")),
    ]);
    env.ok([
        "encrypt",
        "alice",
        "aes256-gcm",
        "--in",
        m,
        "--out",
        s(&at("e1")),
    ]);
    env.ok(["sign", "alice", "ed25519", "--in", m, "--out", s(&at("s1"))]);
    for t in ["fernet", "aes256-gcm", "ed25519"] {
        env.ok(["rotate", "alice", t]);
    }
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("t2")),
    ]);
    env.ok([
        "encrypt",
        "alice",
        "aes256-gcm",
        "--in",
        m,
        "--out",
        s(&at("e2")),
    ]);
    env.ok(["sign", "alice", "ed25519", "--in", m, "--out", s(&at("s2"))]);
    for t in ["fernet", "aes256-gcm", "ed25519"] {
        env.ok(["delete", "alice", t, "--version", "1"]);
        assert_eq!(
            versions(&env, "alice", t),
            vec![(2, "primary".into(), 1)],
            "{t}"
        );
        let out = env.run(["export", "alice", t, "--version", "1"]);
        assert_error(&out, 5, &format!("{t}: export a deleted version"));
        let out = env.run(["delete", "alice", t, "--version", "1"]);
        assert_error(&out, 5, &format!("{t}: delete a deleted version"));
        let out = env.run(["delete", "alice", t, "--version", "2"]);
        assert_error(&out, 2, &format!("{t}: delete the version left"));
    }
    // What the deleted version made no longer opens or verifies; version 2's still does.
    let out = env.run(["decrypt", "alice", "fernet", "--in", s(&at("t1"))]);
    assert_error(&out, 7, "decrypt a token of a deleted version");
    let out = env.run(["decrypt", "alice", "aes256-gcm", "--in", s(&at("e1"))]);
    assert_error(&out, 5, "decrypt an envelope of a deleted version");
    let out = env.run([
        "verify",
        "alice",
        "ed25519",
        "--signature",
        s(&at("s1")),
        "--in",
        m,
    ]);
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(1), "invalid")
    );
    assert_eq!(
        env.ok_bytes(["decrypt", "alice", "fernet", "--in", s(&at("t2"))]),
        b"versioned"
    );
    assert_eq!(
        env.ok_bytes(["decrypt", "alice", "aes256-gcm", "--in", s(&at("e2"))]),
        b"versioned"
    );
    let out = env.run([
        "verify",
        "alice",
        "ed25519",
        "--signature",
        s(&at("s2")),
        "--in",
        m,
    ]);
    assert_eq!(
        (out.status.code(), stdout(&out).trim()),
        (Some(0), "valid (version 2)")
    );

    // The primary is never deleted (rotate first), so a version number is never
    // given out twice.
    env.ok(["rotate", "alice", "fernet"]);
    let out = env.run(["delete", "alice", "fernet", "--version", "3"]);
    let stderr = assert_error(&out, 2, "delete the primary version");
    assert!(stderr.contains("rotate first"), "{stderr}");
    assert_eq!(
        versions(&env, "alice", "fernet"),
        vec![(2, "decrypt-only".into(), 1), (3, "primary".into(), 0)]
    );
}

/// A destroyed version's number names it in every envelope and audit entry made under
/// it: no later version may take that number, and what it made reports it gone (5).
#[test]
fn a_deleted_versions_number_is_never_given_out_again() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    fs::write(at("m"), b"made by version 3").unwrap();
    env.ok(["gen", "alice", "--type", "aes256-gcm"]);
    env.ok(["rotate", "alice", "aes256-gcm"]);
    env.ok(["rotate", "alice", "aes256-gcm"]);
    env.ok([
        "encrypt",
        "alice",
        "aes256-gcm",
        "--in",
        s(&at("m")),
        "--out",
        s(&at("e3")),
    ]);
    // The newest version is the primary, which cannot be deleted ...
    let out = env.run(["delete", "alice", "aes256-gcm", "--version", "3"]);
    assert_error(&out, 2, "delete the newest (primary) version");
    // ... until a rotate made a newer one; then the new numbers go on from the top.
    env.ok(["rotate", "alice", "aes256-gcm"]);
    env.ok(["delete", "alice", "aes256-gcm", "--version", "3"]);
    env.ok(["rotate", "alice", "aes256-gcm"]);
    let numbers: Vec<u64> = versions(&env, "alice", "aes256-gcm")
        .iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(numbers, vec![1, 2, 4, 5]);
    let out = env.run(["decrypt", "alice", "aes256-gcm", "--in", s(&at("e3"))]);
    let stderr = assert_error(&out, 5, "decrypt an envelope of a deleted version");
    assert!(
        stderr.contains("no version 3"),
        "names the version: {stderr}"
    );
    let out = env.run(["export", "alice", "aes256-gcm", "--version", "3"]);
    assert_error(&out, 5, "export a deleted version");
}

#[test]
fn everything_through_the_agent() {
    let env = vault();
    let at = |n: &str| env.root().join(n);
    env.ok(["unlock"]);
    // `bare` has no passphrase: every command below goes through the agent.
    let ok = |args: &[&str]| -> Vec<u8> {
        let out = env.bare().args(args).output().unwrap();
        assert_success(&out, &format!("{args:?} through the agent"));
        out.stdout
    };
    let code = |args: &[&str]| -> (Option<i32>, String) {
        let out = env.bare().args(args).output().unwrap();
        (out.status.code(), stdout(&out).trim().to_string())
    };
    for t in ["fernet", "rsa-2048", "ed25519"] {
        ok(&["gen", "alice", "--type", t]);
    }
    fs::write(at("m"), b"via the agent").unwrap();
    let m_path = at("m");
    let m = s(&m_path);

    // Fernet: encrypt, rotate, the old token still decrypts.
    let out = env
        .bare()
        .args(["encrypt", "alice", "fernet"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    assert_success(&out, "encrypt");
    fs::write(at("token"), &out.stdout).unwrap();
    ok(&["rotate", "alice", "fernet"]);
    assert_eq!(
        ok(&["decrypt", "alice", "fernet", "--in", s(&at("token"))]),
        b"hello\n"
    );
    ok(&[
        "encrypt",
        "alice",
        "fernet",
        "--in",
        m,
        "--out",
        s(&at("token2")),
    ]);

    // RSA: PSS and PKCS#1 v1.5 signatures, OAEP.
    ok(&[
        "sign",
        "alice",
        "rsa-2048",
        "--in",
        m,
        "--out",
        s(&at("pss")),
    ]);
    ok(&[
        "sign",
        "alice",
        "rsa-2048",
        "--scheme",
        "pkcs1v15",
        "--in",
        m,
        "--out",
        s(&at("v15")),
    ]);
    assert_eq!(
        code(&[
            "verify",
            "alice",
            "rsa-2048",
            "--signature",
            s(&at("pss")),
            "--in",
            m
        ]),
        (Some(0), "valid (version 1)".into())
    );
    assert_eq!(
        code(&[
            "verify",
            "alice",
            "rsa-2048",
            "--scheme",
            "pkcs1v15",
            "--signature",
            s(&at("v15")),
            "--in",
            m
        ]),
        (Some(0), "valid (version 1)".into())
    );
    assert_eq!(
        code(&[
            "verify",
            "alice",
            "rsa-2048",
            "--signature",
            s(&at("v15")),
            "--in",
            m
        ]),
        (Some(1), "invalid".into())
    );
    ok(&[
        "encrypt",
        "alice",
        "rsa-2048",
        "--in",
        m,
        "--out",
        s(&at("oaep")),
    ]);
    assert_eq!(
        ok(&["decrypt", "alice", "rsa-2048", "--in", s(&at("oaep"))]),
        b"via the agent"
    );

    // Ed25519.
    ok(&["sign", "alice", "ed25519", "--in", m, "--out", s(&at("ed"))]);
    assert_eq!(
        code(&[
            "verify",
            "alice",
            "ed25519",
            "--signature",
            s(&at("ed")),
            "--in",
            m
        ]),
        (Some(0), "valid (version 1)".into())
    );

    // JWK and versioned exports.
    let jwk: Value = serde_json::from_slice(&ok(&[
        "export", "alice", "ed25519", "--public", "--format", "jwk",
    ]))
    .unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let v1 = ok(&["export", "alice", "fernet", "--version", "1"]);
    let v2 = ok(&["export", "alice", "fernet", "--version", "2"]);
    assert_ne!(v1, v2);

    // Use counts.
    let out = env
        .bare()
        .args(["--json", "list", "alice"])
        .output()
        .unwrap();
    assert_success(&out, "list");
    let doc = util::parse_json(&out.stdout, "list");
    let uses = |name: &str| -> Vec<u64> {
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["uses"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(uses("fernet"), vec![1, 1], "{doc}");
    assert_eq!(uses("rsa-2048"), vec![3], "{doc}");
    assert_eq!(uses("ed25519"), vec![1], "{doc}");

    // delete --version: never the only one; a deleted version is gone.
    assert_eq!(
        code(&["delete", "alice", "ed25519", "--version", "1"]).0,
        Some(2)
    );
    ok(&["delete", "alice", "fernet", "--version", "1"]);
    let out = env
        .bare()
        .args(["decrypt", "alice", "fernet", "--in", s(&at("token"))])
        .output()
        .unwrap();
    assert_error(&out, 7, "decrypt a token of a deleted version");
    let out = env
        .bare()
        .args(["export", "alice", "fernet", "--version", "1"])
        .output()
        .unwrap();
    assert_error(&out, 5, "export a deleted version");
    assert_eq!(
        ok(&["decrypt", "alice", "fernet", "--in", s(&at("token2"))]),
        b"via the agent"
    );

    let out = env.bare().arg("lock").output().unwrap();
    assert_success(&out, "lock");
    let out = env
        .bare()
        .args(["decrypt", "alice", "fernet", "--in", s(&at("token2"))])
        .output()
        .unwrap();
    assert_error(&out, 4, "decrypt after lock without a passphrase");
}

/// Regression: without an agent, `encrypt | decrypt` raced for the vault (decrypt opened
/// it before its input arrived, and encrypt then found it "in use").
#[test]
fn encrypt_piped_into_decrypt_works_without_an_agent() {
    use std::process::Stdio;
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "chacha20-poly1305", "--name", "c"]);
    let pass = env.passphrase_file();
    for name in ["fernet", "c", "fernet", "c"] {
        let mut enc = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE_FILE", &pass)
            .args(["encrypt", "alice", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn encrypt");
        let enc_out = enc.stdout.take().expect("encrypt stdout");
        let dec = env
            .bare_std()
            .env("KEYVAULT_PASSPHRASE_FILE", &pass)
            .args(["decrypt", "alice", name])
            .stdin(Stdio::from(enc_out))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn decrypt");
        {
            use std::io::Write;
            let mut stdin = enc.stdin.take().expect("encrypt stdin");
            stdin.write_all(b"through a pipe\n").expect("write");
        }
        let enc = enc.wait_with_output().expect("encrypt");
        let dec = dec.wait_with_output().expect("decrypt");
        assert!(
            enc.status.success(),
            "encrypt: {}",
            String::from_utf8_lossy(&enc.stderr)
        );
        assert!(
            dec.status.success(),
            "decrypt: {}",
            String::from_utf8_lossy(&dec.stderr)
        );
        assert_eq!(dec.stdout, b"through a pipe\n");
    }
}

/// Runs `keyvault encrypt|decrypt USER NAME -i INPUT` piped into `keyvault
/// decrypt|encrypt USER OTHER`, one-shot (no agent), and returns both outputs.
fn pipe_one_shot(
    env: &TestEnv,
    first: [&str; 3],
    input: &Path,
    second: [&str; 3],
) -> (Output, Output) {
    use std::process::Stdio;
    let pass = env.passphrase_file();
    let mut writer = env
        .bare_std()
        .env("KEYVAULT_PASSPHRASE_FILE", &pass)
        .args(first)
        .arg("-i")
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writer");
    let piped = writer.stdout.take().expect("the writer's stdout");
    let reader = env
        .bare_std()
        .env("KEYVAULT_PASSPHRASE_FILE", &pass)
        .args(second)
        .stdin(Stdio::from(piped))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the reader");
    // The reader first: it drains the pipe the writer fills.
    let read = reader.wait_with_output().expect("the reader");
    let written = writer.wait_with_output().expect("the writer");
    (written, read)
}

/// Regression: without an agent, `encrypt | decrypt` failed with "in use by another
/// process" (exit 8) once the output passed the pipe's buffer (about 50 KB of Fernet
/// token, 64 KiB of envelope): `encrypt` held the vault while it waited for `decrypt`
/// to drain the pipe, and `decrypt` waited for the vault. Each side now closes the vault
/// as soon as it has what it needs, before it writes.
#[test]
fn encrypt_piped_into_decrypt_deadlocked_past_the_pipe_buffer_without_an_agent() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env.ok(["gen", "alice", "--type", "chacha20-poly1305", "--name", "c"]);
    env.ok(["gen", "alice", "--type", "aes256-gcm", "--name", "g"]);
    for (name, len) in [
        ("fernet", 100_000),
        ("fernet", 6 << 20),
        ("c", 70_000),
        ("c", 24 << 20),
        ("g", 5 << 20),
    ] {
        let plain = data(len, len as u64);
        let input = env.write_private("plain.bin", &plain);
        let (enc, dec) = pipe_one_shot(
            &env,
            ["encrypt", "alice", name],
            &input,
            ["decrypt", "alice", name],
        );
        assert_success(&enc, &format!("encrypt {name} {len} B into a pipe"));
        assert_success(&dec, &format!("decrypt {name} {len} B from a pipe"));
        assert!(
            dec.stdout == plain,
            "{name} {len} B: the round trip differs"
        );
    }
    // And the other way round: decrypt one key's output straight into another's
    // encryption (a re-encryption), then back.
    let plain = data(5 << 20, 99);
    let input = env.write_private("plain.bin", &plain);
    let token = env.ok_bytes(["encrypt", "alice", "fernet", "-i", s(&input)]);
    let token_file = env.write_private("token", &token);
    let (dec, enc) = pipe_one_shot(
        &env,
        ["decrypt", "alice", "fernet"],
        &token_file,
        ["encrypt", "alice", "c"],
    );
    assert_success(&dec, "decrypt into a pipe");
    assert_success(&enc, "encrypt from a pipe");
    let envelope = env.write_private("envelope", &enc.stdout);
    let back = env.ok_bytes(["decrypt", "alice", "c", "-i", s(&envelope)]);
    assert!(back == plain, "the re-encrypted round trip differs");
}

/// Regression: `sign` and `verify` of a message over 63 MiB failed while the vault was
/// unlocked (the message went to the agent whole), with advice about AEAD keys. RSA
/// keys now sign and verify a SHA-256 digest computed by the client; Ed25519 keys, which
/// sign the whole message, get an error naming the agent's limit.
#[test]
fn sign_and_verify_over_63_mib_failed_through_the_agent() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice", "--type", "rsa-2048"]);
    env.ok(["gen", "alice", "--type", "ed25519"]);
    let big = data(70 << 20, 7);
    let input = env.write_private("big.bin", &big);
    let at = |name: &str| env.root().join(name);
    // One-shot PKCS#1 v1.5 signature, for comparison (it is deterministic).
    let one_shot = env.ok_bytes([
        "sign",
        "alice",
        "rsa-2048",
        "--scheme",
        "pkcs1v15",
        "-i",
        s(&input),
    ]);
    env.ok(["unlock"]);
    for scheme in ["pss", "pkcs1v15"] {
        let sig_file = at(&format!("sig-{scheme}"));
        let out = env
            .bare()
            .args([
                "sign",
                "alice",
                "rsa-2048",
                "--scheme",
                scheme,
                "-i",
                s(&input),
            ])
            .args(["-o", s(&sig_file)])
            .output()
            .expect("sign");
        assert_success(&out, &format!("{scheme} sign of 70 MiB through the agent"));
        let out = env
            .bare()
            .args(["verify", "alice", "rsa-2048", "--scheme", scheme])
            .args(["-s", s(&sig_file), "-i", s(&input)])
            .output()
            .expect("verify");
        assert_success(
            &out,
            &format!("{scheme} verify of 70 MiB through the agent"),
        );
        assert_eq!(stdout(&out).trim(), "valid (version 1)");
        if scheme == "pkcs1v15" {
            assert!(
                fs::read(&sig_file).expect("sig") == one_shot,
                "not the same signature"
            );
        }
    }
    // Ed25519 signs the whole message: a clear error with the limit, nothing signed.
    let before = key_doc(&env, "alice", "ed25519");
    let out = env
        .bare()
        .args(["sign", "alice", "ed25519", "-i", s(&input)])
        .output()
        .expect("sign");
    let stderr = assert_error(&out, 2, "Ed25519 sign of 70 MiB through the agent");
    let limit = u64::from(keyvault::agent::protocol::MAX_REQUEST_BYTES) - 4096;
    assert!(
        stderr.contains("ed25519") && stderr.contains(&limit.to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("aes256-gcm"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        key_doc(&env, "alice", "ed25519"),
        before,
        "a use was counted"
    );
    env.ok(["lock"]);
    // One-shot, the agent's signatures verify and Ed25519 signs the whole message.
    for scheme in ["pss", "pkcs1v15"] {
        let sig_file = at(&format!("sig-{scheme}"));
        let out = env.run([
            "verify",
            "alice",
            "rsa-2048",
            "--scheme",
            scheme,
            "-s",
            s(&sig_file),
            "-i",
            s(&input),
        ]);
        assert_success(
            &out,
            &format!("one-shot verify of the agent's {scheme} signature"),
        );
    }
    let ed_sig = env.ok_bytes(["sign", "alice", "ed25519", "-i", s(&input)]);
    let ed_file = env.write_private("ed.sig", &ed_sig);
    let out = env.run([
        "verify",
        "alice",
        "ed25519",
        "-s",
        s(&ed_file),
        "-i",
        s(&input),
    ]);
    assert_success(&out, "one-shot Ed25519 verify of 70 MiB");
}
