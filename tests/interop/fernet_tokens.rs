//! Fernet interop with Python's `cryptography.fernet` both directions: our
//! tokens open in `Fernet` and, after `rotate`, in a `MultiFernet` of the exported
//! versions newest first; Python's tokens (of any version) open with us; `--ttl`
//! refuses an old Python token.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util;
use crate::util::python::{file_in, py, py_ok};
use crate::util::{TestEnv, assert_error};

/// A message with a newline, a NUL and bytes that are not UTF-8.
const MESSAGE: &[u8] = b"interop \x00\xff\xfe message\nsecond line\n";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn vault_with_fernet() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);
    env
}

#[test]
fn our_fernet_tokens_decrypt_in_python_fernet() {
    let env = vault_with_fernet();
    let at = |n: &str| file_in(env.root(), n);
    fs::write(at("msg"), MESSAGE).unwrap();
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        &at("msg"),
        "--out",
        &at("tok"),
    ]);
    env.ok(["export", "alice", "fernet", "--out", &at("key")]);

    py_ok(["fernet-decrypt", &at("key"), &at("tok"), &at("plain")]);
    assert_eq!(fs::read(at("plain")).unwrap(), MESSAGE);

    // stdin to stdout, as in the story: the token is one line.
    let out = env
        .kv()
        .args(["encrypt", "alice", "fernet"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    util::assert_success(&out, "encrypt from stdin");
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(
        token.ends_with('\n') && token.trim().lines().count() == 1,
        "{token:?}"
    );
    fs::write(at("tok2"), &token).unwrap();
    py_ok(["fernet-decrypt", &at("key"), &at("tok2"), &at("plain2")]);
    assert_eq!(fs::read(at("plain2")).unwrap(), b"hello\n");
}

#[test]
fn our_large_fernet_tokens_decrypt_in_python_fernet() {
    // 1 MiB and 5 bytes: above the size from which the base64 is made on a second
    // thread, and not a whole number of its pieces or of cipher blocks.
    let env = vault_with_fernet();
    let at = |n: &str| file_in(env.root(), n);
    let message: Vec<u8> = (0..(1u32 << 20) + 5)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(at("big"), &message).unwrap();
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        &at("big"),
        "--out",
        &at("big.tok"),
    ]);
    env.ok(["export", "alice", "fernet", "--out", &at("key")]);
    py_ok([
        "fernet-decrypt",
        &at("key"),
        &at("big.tok"),
        &at("big.plain"),
    ]);
    assert!(
        fs::read(at("big.plain")).unwrap() == message,
        "Python's plaintext differs"
    );
}

#[test]
fn python_fernet_tokens_decrypt_with_us() {
    let env = vault_with_fernet();
    let at = |n: &str| file_in(env.root(), n);
    env.ok(["export", "alice", "fernet", "--out", &at("key")]);
    fs::write(at("msg"), MESSAGE).unwrap();
    py_ok(["fernet-encrypt", &at("key"), &at("msg"), &at("tok")]);

    env.ok([
        "decrypt",
        "alice",
        "fernet",
        "--in",
        &at("tok"),
        "--out",
        &at("plain"),
    ]);
    assert_eq!(fs::read(at("plain")).unwrap(), MESSAGE);
    // Python writes no newline after the token; with one (as a shell leaves it) too.
    let mut with_newline = fs::read(at("tok")).unwrap();
    with_newline.push(b'\n');
    let out = env
        .kv()
        .args(["decrypt", "alice", "fernet"])
        .write_stdin(with_newline)
        .output()
        .unwrap();
    util::assert_success(&out, "decrypt a Python token from stdin");
    assert_eq!(out.stdout, MESSAGE);
}

#[test]
fn after_rotate_multifernet_reads_our_tokens_and_we_read_python_tokens_of_every_version() {
    let env = vault_with_fernet();
    let at = |n: &str| file_in(env.root(), n);
    fs::write(at("m1"), b"made under version 1").unwrap();
    fs::write(at("m2"), b"made under version 2").unwrap();
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        &at("m1"),
        "--out",
        &at("t1"),
    ]);
    env.ok(["rotate", "alice", "fernet"]);
    let doc = env.json([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        &at("m2"),
        "--out",
        &at("t2"),
    ]);
    assert_eq!(doc["version"], 2, "{doc}");
    env.ok([
        "export",
        "alice",
        "fernet",
        "--version",
        "1",
        "--out",
        &at("k1"),
    ]);
    env.ok([
        "export",
        "alice",
        "fernet",
        "--version",
        "2",
        "--out",
        &at("k2"),
    ]);
    env.ok(["export", "alice", "fernet", "--out", &at("primary")]);
    assert_eq!(
        fs::read(at("primary")).unwrap(),
        fs::read(at("k2")).unwrap(),
        "export without --version gives the primary version"
    );
    assert_ne!(fs::read(at("k1")).unwrap(), fs::read(at("k2")).unwrap());

    // MultiFernet([v2, v1]) opens the tokens of both versions.
    for (token, message) in [("t1", "m1"), ("t2", "m2")] {
        let plain = format!("{token}.plain");
        py_ok([
            "multifernet-decrypt",
            &at(token),
            &at(&plain),
            &at("k2"),
            &at("k1"),
        ]);
        assert_eq!(
            fs::read(at(&plain)).unwrap(),
            fs::read(at(message)).unwrap()
        );
    }
    // A plain Fernet of version 1 does not open version 2's token: the versions differ.
    let out = py(["fernet-decrypt", &at("k1"), &at("t2"), &at("never")]);
    assert!(!out.status.success(), "Fernet(v1) opened a version-2 token");

    // Python's token made with the older version 1 opens with us (MultiFernet order).
    fs::write(at("m3"), b"python, old key").unwrap();
    py_ok(["fernet-encrypt", &at("k1"), &at("m3"), &at("t3")]);
    let doc = env.json(["decrypt", "alice", "fernet", "--in", &at("t3")]);
    assert_eq!(doc["plaintext"], "python, old key", "{doc}");
    assert_eq!(doc["version"], 1, "{doc}");

    // MultiFernet.rotate re-encrypts our version-1 token under version 2: we read that too.
    py_ok([
        "multifernet-rotate",
        &at("t1"),
        &at("t4"),
        &at("k2"),
        &at("k1"),
    ]);
    let doc = env.json(["decrypt", "alice", "fernet", "--in", &at("t4")]);
    assert_eq!(doc["plaintext"], "made under version 1", "{doc}");
    assert_eq!(doc["version"], 2, "{doc}");
}

#[test]
fn ttl_rejects_an_old_python_token_and_accepts_a_fresh_one() {
    let env = vault_with_fernet();
    let at = |n: &str| file_in(env.root(), n);
    env.ok(["export", "alice", "fernet", "--out", &at("key")]);
    fs::write(at("msg"), b"an hour old").unwrap();
    let hour_ago = (now() - 3600).to_string();
    py_ok([
        "fernet-encrypt",
        &at("key"),
        &at("msg"),
        &at("old"),
        "--at-time",
        &hour_ago,
    ]);

    fs::create_dir(at("outdir")).unwrap();
    let target = format!("{}/plain", at("outdir"));
    let out = env.run([
        "decrypt",
        "alice",
        "fernet",
        "--in",
        &at("old"),
        "--out",
        &target,
        "--ttl",
        "60",
    ]);
    let stderr = assert_error(&out, 7, "decrypt --ttl 60 of an hour-old token");
    assert!(
        fs::read_dir(at("outdir")).unwrap().next().is_none(),
        "a refused token left output behind; stderr: {stderr}"
    );
    // A generous TTL, or none, accepts it.
    assert_eq!(
        env.ok_bytes([
            "decrypt",
            "alice",
            "fernet",
            "--in",
            &at("old"),
            "--ttl",
            "7200"
        ]),
        b"an hour old"
    );
    assert_eq!(
        env.ok_bytes(["decrypt", "alice", "fernet", "--in", &at("old")]),
        b"an hour old"
    );
    // A token Python just made passes a short TTL.
    py_ok(["fernet-encrypt", &at("key"), &at("msg"), &at("fresh")]);
    assert_eq!(
        env.ok_bytes([
            "decrypt",
            "alice",
            "fernet",
            "--in",
            &at("fresh"),
            "--ttl",
            "60"
        ]),
        b"an hour old"
    );
    // And Python's TTL check accepts a token we just made.
    env.ok([
        "encrypt",
        "alice",
        "fernet",
        "--in",
        &at("msg"),
        "--out",
        &at("ours"),
    ]);
    py_ok([
        "fernet-decrypt",
        &at("key"),
        &at("ours"),
        &at("ours.plain"),
        "--ttl",
        "60",
    ]);
}
