//! Bad input to encrypt, decrypt, sign and verify, as a table: each case's
//! exit code, its `error:` line (and a word of its message or hint), and that nothing is
//! left behind: a case given `--out DIR/out` must leave DIR empty, neither the file nor
//! a `.out.tmp-*` temporary. Then the AEAD envelope tampered with every way: a bit of
//! every header byte, a bit in a chunk, truncation, appended bytes, chunks swapped or
//! dropped (exit 7). Signatures that do not verify exit 1 and say "invalid".

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util;
use crate::util::{TestEnv, error_problems};

const HEADER_LEN: usize = 53;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// A sealed chunk on the wire: ciphertext and tag.
const SEGMENT: usize = CHUNK + TAG;

/// One bad invocation and what it must do.
struct Case {
    what: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// The exit codes accepted (usually one).
    codes: Vec<i32>,
    /// A piece of stderr (message or hint) it must contain.
    stderr_has: Option<&'static str>,
    /// Add `--out DIR/out` and check DIR stays empty.
    with_out: bool,
}

fn case(what: impl Into<String>, args: &[&str], code: i32) -> Case {
    Case {
        what: what.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        codes: vec![code],
        stderr_has: None,
        with_out: false,
    }
}

impl Case {
    fn says(mut self, needle: &'static str) -> Case {
        self.stderr_has = Some(needle);
        self
    }
    fn out(mut self) -> Case {
        self.with_out = true;
        self
    }
    fn stdin(mut self, bytes: &[u8]) -> Case {
        self.stdin = Some(bytes.to_vec());
        self
    }
    fn or_code(mut self, code: i32) -> Case {
        self.codes.push(code);
        self
    }
}

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

/// Runs the cases; returns every problem found, each naming its case.
/// With `agent`, through the running agent (no passphrase at all); else one-shot.
fn run_cases(env: &TestEnv, agent: bool, cases: Vec<Case>) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let dir = env.root().join(format!("out-{i}"));
        fs::create_dir(&dir).unwrap();
        let mut args = c.args.clone();
        if c.with_out {
            args.extend(["--out".into(), s(&dir.join("out"))]);
        }
        let mut cmd = if agent { env.bare() } else { env.kv() };
        cmd.args(&args);
        cmd.write_stdin(c.stdin.clone().unwrap_or_default());
        let out: Output = cmd.output().expect("run keyvault");
        let code = out.status.code().unwrap_or(-1);
        let expected = if c.codes.contains(&code) {
            code
        } else {
            c.codes[0]
        };
        let mut found = error_problems(&out, expected, c.stderr_has);
        let left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if !left.is_empty() {
            found.push(format!("left behind in the output dir: {left:?}"));
        }
        if !found.is_empty() {
            problems.push(format!(
                "{} ({}): {}\n    stderr: {}",
                c.what,
                args.join(" "),
                found.join("; "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    problems
}

fn assert_no_problems(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} case(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A vault holding alice's keys of every type, bob's aes256-gcm and fernet keys, carol's
/// fernet key, and a message.
struct Fixture {
    env: TestEnv,
}

impl Fixture {
    fn new() -> Fixture {
        let env = TestEnv::new();
        env.init();
        for t in [
            "fernet",
            "aes256-gcm",
            "chacha20-poly1305",
            "rsa-2048",
            "ed25519",
        ] {
            env.ok(["gen", "alice", "--type", t]);
        }
        env.ok(["gen", "bob", "--type", "aes256-gcm"]);
        env.ok(["gen", "bob"]);
        env.ok(["gen", "carol"]);
        let f = Fixture { env };
        fs::write(f.at("msg"), b"a message").unwrap();
        f
    }

    fn at(&self, name: &str) -> PathBuf {
        self.env.root().join(name)
    }

    fn p(&self, name: &str) -> String {
        s(&self.at(name))
    }

    /// Encrypts `plain` with alice's `key` into the file `name`; returns its bytes.
    fn seal(&self, key: &str, plain: &[u8], name: &str) -> Vec<u8> {
        fs::write(self.at(&format!("{name}.plain")), plain).unwrap();
        self.env.ok([
            "encrypt",
            "alice",
            key,
            "--in",
            &self.p(&format!("{name}.plain")),
            "--out",
            &self.p(name),
        ]);
        fs::read(self.at(name)).unwrap()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        fs::write(self.at(name), bytes).unwrap();
        self.p(name)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Fernet token (spec: 0x80, 8-byte timestamp, IV, ciphertext, HMAC-SHA256 under the
/// key's first 16 bytes) made `secs` seconds earlier than `token` was.
fn backdate(token: &str, key: &str, secs: u64) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE;
    use hmac::{KeyInit as _, Mac as _};
    let key = URL_SAFE.decode(key).expect("a Fernet key is base64url");
    let mut raw = URL_SAFE
        .decode(token.trim())
        .expect("a Fernet token is base64url");
    assert_eq!(raw[0], 0x80, "Fernet version byte");
    let at = u64::from_be_bytes(raw[1..9].try_into().unwrap());
    assert!(at.abs_diff(now()) < 600, "the token was made just now");
    raw[1..9].copy_from_slice(&(at - secs).to_be_bytes());
    let body = raw.len() - 32;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key[..16]).unwrap();
    mac.update(&raw[..body]);
    let tag = mac.finalize().into_bytes();
    raw[body..].copy_from_slice(&tag);
    URL_SAFE.encode(raw)
}

/// Flips one base64url character of a Fernet token to another one.
fn tamper_token(token: &str, pos: usize) -> String {
    let mut chars: Vec<char> = token.trim().chars().collect();
    chars[pos] = if chars[pos] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn bad_input_to_key_use_fails_with_its_exit_code_and_leaves_no_output() {
    bad_input_table(false);
}

#[test]
fn bad_input_through_the_agent_fails_the_same_way() {
    bad_input_table(true);
}

fn bad_input_table(agent: bool) {
    let f = Fixture::new();
    let env = &f.env;
    let msg = f.p("msg");

    let token = String::from_utf8(f.seal("fernet", b"secret", "token")).unwrap();
    let tampered_mid = f.write(
        "tampered-mid",
        tamper_token(&token, token.len() / 2).as_bytes(),
    );
    let tampered_head = f.write("tampered-head", tamper_token(&token, 3).as_bytes());
    let tampered_tail = f.write(
        "tampered-tail",
        tamper_token(&token, token.trim().len() - 5).as_bytes(),
    );
    let not_a_token = f.write("not-a-token", b"this is not a fernet token\n");
    let truncated_token = f.write("truncated-token", &token.as_bytes()[..token.len() / 2]);
    // A Fernet token of alice's key made an hour ago: our token with its timestamp set
    // back and its HMAC made again with the exported key.
    let key = env.ok(["export", "alice", "fernet"]);
    let old_token = f.write("old-token", backdate(&token, key.trim(), 3600).as_bytes());

    f.seal("aes256-gcm", b"small", "small.kv");
    f.seal("chacha20-poly1305", b"small", "chacha.kv");
    env.ok([
        "sign",
        "alice",
        "rsa-2048",
        "--in",
        &msg,
        "--out",
        &f.p("rsa.sig"),
    ]);
    env.ok([
        "sign",
        "alice",
        "ed25519",
        "--in",
        &msg,
        "--out",
        &f.p("ed.sig"),
    ]);
    let mut bad_rsa = fs::read(f.at("rsa.sig")).unwrap();
    bad_rsa[100] ^= 0x10;
    let bad_rsa = f.write("bad-rsa.sig", &bad_rsa);
    let mut bad_ed = fs::read(f.at("ed.sig")).unwrap();
    bad_ed[10] ^= 0x01;
    let bad_ed = f.write("bad-ed.sig", &bad_ed);
    let short_ed = f.write("short-ed.sig", &fs::read(f.at("ed.sig")).unwrap()[..63]);
    let empty_sig = f.write("empty.sig", b"");
    let oaep_max = f.write("190", &[7u8; 190]);
    let oaep_over = f.write("191", &[7u8; 191]);
    let rsa_garbage = f.write("rsa-garbage", &[0x55u8; 256]);
    let public_pem = env.ok(["export", "alice", "rsa-2048", "--public"]);
    let public_file = f.write("public.pem", public_pem.as_bytes());
    env.ok([
        "import",
        "alice",
        "pub",
        "--type",
        "rsa-2048",
        "--public",
        "--file",
        &public_file,
    ]);
    let existing = f.write("existing", b"do not overwrite me");

    // carol made a token, then was revoked: her key is gone.
    let carol_token = {
        fs::write(f.at("carol.plain"), b"carol's").unwrap();
        env.ok([
            "encrypt",
            "carol",
            "fernet",
            "--in",
            &f.p("carol.plain"),
            "--out",
            &f.p("carol.tok"),
        ]);
        f.p("carol.tok")
    };
    env.ok(["revoke", "carol", "--reason", "left"]);
    // The most OAEP holds is fine (the control for the 191-byte case).
    env.ok_bytes(["encrypt", "alice", "rsa-2048", "--in", &oaep_max]);
    let before = env.snapshot();

    let missing = f.p("no-such-file");
    let small_kv = f.p("small.kv");
    let chacha_kv = f.p("chacha.kv");
    let mut cases = vec![
        // Tampered or malformed Fernet tokens.
        case(
            "a Fernet token with a character changed mid-way",
            &["decrypt", "alice", "fernet", "--in", &tampered_mid],
            7,
        )
        .out(),
        case(
            "a Fernet token with its version/time changed",
            &["decrypt", "alice", "fernet", "--in", &tampered_head],
            7,
        )
        .out(),
        case(
            "a Fernet token with its HMAC changed",
            &["decrypt", "alice", "fernet", "--in", &tampered_tail],
            7,
        )
        .out(),
        case(
            "a truncated Fernet token",
            &["decrypt", "alice", "fernet", "--in", &truncated_token],
            7,
        )
        .out(),
        case(
            "not a Fernet token",
            &["decrypt", "alice", "fernet", "--in", &not_a_token],
            7,
        )
        .out(),
        case(
            "a Fernet token past --ttl",
            &[
                "decrypt", "alice", "fernet", "--in", &old_token, "--ttl", "60",
            ],
            7,
        )
        .out(),
        case(
            "a Fernet token of another key",
            &["decrypt", "bob", "fernet", "--in", &f.p("token")],
            7,
        )
        .out(),
        case(
            "a Fernet token to an aead key",
            &["decrypt", "alice", "aes256-gcm", "--in", &f.p("token")],
            7,
        )
        .out(),
        // Empty input.
        case(
            "empty input to fernet decrypt",
            &["decrypt", "alice", "fernet"],
            7,
        )
        .says("empty")
        .stdin(b"")
        .out(),
        case(
            "empty input to aead decrypt",
            &["decrypt", "alice", "aes256-gcm"],
            7,
        )
        .says("empty")
        .stdin(b"")
        .out(),
        case(
            "empty input to chacha decrypt",
            &["decrypt", "alice", "chacha20-poly1305"],
            7,
        )
        .says("empty")
        .stdin(b"")
        .out(),
        case(
            "empty input to rsa decrypt",
            &["decrypt", "alice", "rsa-2048"],
            7,
        )
        .says("empty")
        .stdin(b"")
        .out(),
        // Envelopes of another key.
        case(
            "an aes256-gcm envelope to a chacha20-poly1305 key",
            &["decrypt", "alice", "chacha20-poly1305", "--in", &small_kv],
            7,
        )
        .out(),
        case(
            "an envelope of alice's key to bob's",
            &["decrypt", "bob", "aes256-gcm", "--in", &small_kv],
            7,
        )
        .out(),
        case(
            "a chacha envelope to an aes key",
            &["decrypt", "alice", "aes256-gcm", "--in", &chacha_kv],
            7,
        )
        .out(),
        // RSA-OAEP.
        case(
            "191 bytes to RSA-2048 OAEP",
            &["encrypt", "alice", "rsa-2048", "--in", &oaep_over],
            2,
        )
        .says("190")
        .out(),
        case(
            "191 bytes to a public-only RSA-2048 key",
            &["encrypt", "alice", "pub", "--in", &oaep_over],
            2,
        )
        .says("190")
        .out(),
        case(
            "an RSA ciphertext that is not one",
            &["decrypt", "alice", "rsa-2048", "--in", &rsa_garbage],
            7,
        )
        .out(),
        case(
            "decrypt with a public-only key",
            &["decrypt", "alice", "pub", "--in", &rsa_garbage],
            2,
        )
        .out(),
        case(
            "sign with a public-only key",
            &["sign", "alice", "pub", "--in", &msg],
            2,
        )
        .says("public-only")
        .out(),
        // Wrong key type for the operation, with a hint.
        case(
            "encrypt with an ed25519 key",
            &["encrypt", "alice", "ed25519", "--in", &msg],
            2,
        )
        .says("use a fernet or aead")
        .out(),
        case(
            "decrypt with an ed25519 key",
            &["decrypt", "alice", "ed25519", "--in", &small_kv],
            2,
        )
        .says("use a fernet or aead")
        .out(),
        case(
            "sign with a fernet key",
            &["sign", "alice", "fernet", "--in", &msg],
            2,
        )
        .says("use an rsa or ed25519 key")
        .out(),
        case(
            "sign with an aes256-gcm key",
            &["sign", "alice", "aes256-gcm", "--in", &msg],
            2,
        )
        .says("use an rsa or ed25519 key")
        .out(),
        case(
            "verify with a chacha20-poly1305 key",
            &[
                "verify",
                "alice",
                "chacha20-poly1305",
                "--signature",
                &f.p("ed.sig"),
                "--in",
                &msg,
            ],
            2,
        )
        .says("use an rsa or ed25519 key"),
        case(
            "--scheme with an ed25519 key",
            &["sign", "alice", "ed25519", "--scheme", "pss", "--in", &msg],
            2,
        )
        .out(),
        case(
            "--ttl with an aead key",
            &[
                "decrypt",
                "alice",
                "aes256-gcm",
                "--in",
                &small_kv,
                "--ttl",
                "60",
            ],
            2,
        )
        .says("--ttl")
        .out(),
        case(
            "--ttl with an rsa key",
            &[
                "decrypt",
                "alice",
                "rsa-2048",
                "--in",
                &rsa_garbage,
                "--ttl",
                "60",
            ],
            2,
        )
        .says("--ttl")
        .out(),
        // Missing things.
        case(
            "a missing --in file (encrypt fernet)",
            &["encrypt", "alice", "fernet", "--in", &missing],
            5,
        )
        .out(),
        case(
            "a missing --in file (encrypt aead)",
            &["encrypt", "alice", "aes256-gcm", "--in", &missing],
            5,
        )
        .out(),
        case(
            "a missing --in file (decrypt aead)",
            &["decrypt", "alice", "aes256-gcm", "--in", &missing],
            5,
        )
        .out(),
        case(
            "a missing --in file (sign)",
            &["sign", "alice", "ed25519", "--in", &missing],
            5,
        )
        .out(),
        case(
            "a missing --signature file",
            &[
                "verify",
                "alice",
                "ed25519",
                "--signature",
                &missing,
                "--in",
                &msg,
            ],
            5,
        ),
        case(
            "an unknown key",
            &["encrypt", "alice", "nope", "--in", &msg],
            5,
        )
        .out(),
        case(
            "an unknown user",
            &["sign", "nobody", "ed25519", "--in", &msg],
            5,
        )
        .out(),
        case(
            "a version that does not exist",
            &["export", "alice", "fernet", "--version", "9"],
            5,
        ),
        case(
            "--out that exists",
            &[
                "encrypt",
                "alice",
                "aes256-gcm",
                "--in",
                &msg,
                "--out",
                &existing,
            ],
            6,
        ),
        case(
            "--out that exists (fernet)",
            &[
                "encrypt", "alice", "fernet", "--in", &msg, "--out", &existing,
            ],
            6,
        ),
        // A revoked user.
        case("gen for a revoked user", &["gen", "carol"], 6).says("carol"),
        case(
            "import for a revoked user",
            &[
                "import",
                "carol",
                "k",
                "--type",
                "rsa-2048",
                "--file",
                &public_file,
                "--public",
            ],
            6,
        )
        .says("carol"),
        case(
            "encrypt with a revoked user's key",
            &["encrypt", "carol", "fernet", "--in", &msg],
            6,
        )
        .says("was revoked at")
        .out(),
        case(
            "decrypt a revoked user's token",
            &["decrypt", "carol", "fernet", "--in", &carol_token],
            6,
        )
        .says("was revoked at")
        .out(),
    ];
    cases.push(case(
        "an existing --out is left as it was",
        &[
            "decrypt",
            "alice",
            "aes256-gcm",
            "--in",
            &small_kv,
            "--out",
            &existing,
        ],
        6,
    ));

    if agent {
        env.ok(["unlock"]);
    }
    let mut problems = run_cases(env, agent, cases);

    // Signatures that do not verify: exit 1, "invalid", no error.
    for (what, key, sig) in [
        ("a tampered RSA signature", "rsa-2048", bad_rsa.as_str()),
        ("a tampered Ed25519 signature", "ed25519", bad_ed.as_str()),
        (
            "a truncated Ed25519 signature",
            "ed25519",
            short_ed.as_str(),
        ),
        ("an empty Ed25519 signature", "ed25519", empty_sig.as_str()),
        ("an empty RSA signature", "rsa-2048", empty_sig.as_str()),
        (
            "an Ed25519 signature to an RSA key",
            "rsa-2048",
            &f.p("ed.sig"),
        ),
        (
            "an RSA signature to an Ed25519 key",
            "ed25519",
            &f.p("rsa.sig"),
        ),
    ] {
        let mut cmd = if agent { env.bare() } else { env.kv() };
        let out = cmd
            .args(["verify", "alice", key, "--signature", sig, "--in", &msg])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if (out.status.code(), stdout.trim()) != (Some(1), "invalid") {
            problems.push(format!(
                "{what}: exit {:?}, stdout {stdout:?}, expected 1 and \"invalid\"; stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if agent {
        let out = env.bare().arg("lock").output().unwrap();
        util::assert_success(&out, "lock");
    }
    assert_eq!(
        fs::read(f.at("existing")).unwrap(),
        b"do not overwrite me",
        "an existing --out file was changed"
    );
    assert_no_problems(problems);
    assert_eq!(env.snapshot(), before, "a failed command changed the vault");
}

/// Every way of damaging an envelope, for one AEAD key type.
fn envelope_damage_cases(f: &Fixture, key: &str) -> Vec<Case> {
    // 3 full chunks and a partial one.
    let plain: Vec<u8> = (0..3 * CHUNK + 1000).map(|i| (i % 251) as u8).collect();
    let good = f.seal(key, &plain, &format!("{key}.kv"));
    assert_eq!(good.len(), HEADER_LEN + plain.len() + 4 * TAG);
    let mut cases = Vec::new();
    let mut add = |what: String, bytes: Vec<u8>, codes: &[i32]| {
        let path = f.write(&format!("{key}-damaged-{}", cases.len()), &bytes);
        let mut c = case(what, &["decrypt", "alice", key, "--in", &path], codes[0]).out();
        for extra in &codes[1..] {
            c = c.or_code(*extra);
        }
        cases.push(c);
    };

    // A bit of every header byte: an altered envelope, whichever byte (the key version
    // field then names a version the key lacks: still exit 7, never "not found").
    for i in 0..HEADER_LEN {
        let mut b = good.clone();
        b[i] ^= 0x01;
        add(format!("{key}: header byte {i} flipped"), b, &[7]);
    }
    // The algorithm byte set to the other algorithm.
    let mut b = good.clone();
    b[5] ^= 0x03;
    add(
        format!("{key}: algorithm byte set to the other one"),
        b,
        &[7],
    );
    let chunk = |n: usize| HEADER_LEN + n * SEGMENT..HEADER_LEN + (n + 1) * SEGMENT;
    for (what, pos) in [
        ("first byte of chunk 0", HEADER_LEN),
        ("a byte inside chunk 1", chunk(1).start + 5000),
        ("the tag of chunk 2", chunk(2).end - 1),
        ("the last byte of the last chunk", good.len() - 1),
    ] {
        let mut b = good.clone();
        b[pos] ^= 0x80;
        add(format!("{key}: {what} flipped"), b, &[7]);
    }
    for (what, len) in [
        ("truncated inside the header", 30),
        ("truncated to the header", HEADER_LEN),
        ("truncated inside chunk 1", chunk(1).start + 100),
        ("truncated at a chunk boundary", chunk(3).start),
        ("truncated by one byte", good.len() - 1),
    ] {
        add(format!("{key}: {what}"), good[..len].to_vec(), &[7]);
    }
    for (what, extra) in [
        ("one byte appended", vec![0u8]),
        ("a tag's worth appended", vec![0u8; TAG]),
        (
            "the last chunk appended again",
            good[chunk(3).start..].to_vec(),
        ),
    ] {
        let mut b = good.clone();
        b.extend_from_slice(&extra);
        add(format!("{key}: {what}"), b, &[7]);
    }
    let mut swapped = good[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&good[chunk(1)]);
    swapped.extend_from_slice(&good[chunk(0)]);
    swapped.extend_from_slice(&good[chunk(2).start..]);
    add(format!("{key}: chunks 0 and 1 swapped"), swapped, &[7]);
    let mut dropped = good[..HEADER_LEN].to_vec();
    dropped.extend_from_slice(&good[chunk(0)]);
    dropped.extend_from_slice(&good[chunk(2).start..]);
    add(format!("{key}: chunk 1 dropped"), dropped, &[7]);
    let mut duplicated = good[..chunk(1).end].to_vec();
    duplicated.extend_from_slice(&good[chunk(1).start..]);
    add(format!("{key}: chunk 1 duplicated"), duplicated, &[7]);
    cases
}

#[test]
fn a_damaged_envelope_fails_with_exit_7_and_leaves_no_plaintext() {
    let f = Fixture::new();
    let mut cases = envelope_damage_cases(&f, "aes256-gcm");
    cases.extend(envelope_damage_cases(&f, "chacha20-poly1305"));
    assert_no_problems(run_cases(&f.env, false, cases));
    // The undamaged envelopes still open (the control).
    for key in ["aes256-gcm", "chacha20-poly1305"] {
        let out = f
            .env
            .ok_bytes(["decrypt", "alice", key, "--in", &f.p(&format!("{key}.kv"))]);
        assert_eq!(out.len(), 3 * CHUNK + 1000);
    }
}

#[test]
fn a_damaged_envelope_fails_through_the_agent_too() {
    let f = Fixture::new();
    let env = &f.env;
    let plain: Vec<u8> = (0..2 * CHUNK + 10).map(|i| (i % 13) as u8).collect();
    let good = f.seal("aes256-gcm", &plain, "agent.kv");
    let mut bad = good.clone();
    bad[HEADER_LEN + SEGMENT + 7] ^= 0x04;
    let bad_path = f.write("agent-bad.kv", &bad);
    env.ok(["unlock"]);
    fs::create_dir(f.at("outdir")).unwrap();
    let out = env
        .bare()
        .args([
            "decrypt",
            "alice",
            "aes256-gcm",
            "--in",
            &bad_path,
            "--out",
            &f.p("outdir/plain"),
        ])
        .output()
        .unwrap();
    let problems = error_problems(&out, 7, None);
    assert!(
        problems.is_empty(),
        "{problems:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read_dir(f.at("outdir")).unwrap().next().is_none(),
        "plaintext left behind"
    );
    let out = env.bare().arg("lock").output().unwrap();
    util::assert_success(&out, "lock");
}
