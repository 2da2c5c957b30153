//! keyvault's keys served to the real OpenSSH tools: `ssh-add` lists only the keys
//! marked for SSH, `ssh-keygen -Y sign` signs through the agent and `-Y verify`
//! accepts the signatures (Ed25519, RSA-3072 with rsa-sha2-512 and rsa-sha2-256),
//! OpenSSH key files import (also passphrase-protected ones) and export, fingerprints
//! equal `ssh-keygen -lf`'s, requests to change the agent's keys are refused, malformed
//! frames are answered without harm, and a locked vault serves nothing.
//!
//! With `sshd` installed and usable, `ssh` also logs in to a throwaway server with a
//! vault key, and the signature's audit entry names that server's host key.
//!
//! The tests need `ssh-keygen` and `ssh-add` (OpenSSH); without them (or without
//! `sshd`, for its one test) a test says SKIPPED on stderr and checks nothing.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{TestEnv, assert_error, assert_success};

/// Whether the OpenSSH tools are here; says so visibly when they are not.
fn have_openssh(test: &str) -> bool {
    let found = ["ssh-keygen", "ssh-add"].iter().all(|tool| {
        Command::new(tool)
            .arg("-?")
            .output()
            .map(|_| true)
            .unwrap_or(false)
    });
    if !found {
        eprintln!("SKIPPED {test}: ssh-keygen and ssh-add (OpenSSH) are not installed");
    }
    found
}

/// An unlocked vault that is locked again when the test ends, however it ends.
struct Unlocked {
    env: TestEnv,
    socket: PathBuf,
}

impl Drop for Unlocked {
    fn drop(&mut self) {
        let _ = self.env.bare().arg("lock").output();
    }
}

fn unlock(env: TestEnv) -> Unlocked {
    let text = env.ok(["unlock"]);
    assert!(text.contains("SSH agent socket: "), "{text}");
    let socket = PathBuf::from(env.ok(["ssh", "socket"]).trim_end());
    assert!(text.contains(&socket.display().to_string()), "{text}");
    Unlocked { env, socket }
}

/// An OpenSSH tool with `SSH_AUTH_SOCK` set to the vault's SSH socket, in the test's
/// directory.
fn tool(u: &Unlocked, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SSH_AUTH_SOCK", &u.socket)
        .env("HOME", u.env.home())
        .env_remove("DISPLAY")
        .env_remove("SSH_ASKPASS")
        .current_dir(u.env.root())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -Y sign` then `-Y verify` of one message with the key whose public line
/// is `public`, the private half staying in the agent.
fn sign_and_verify(u: &Unlocked, public: &str, label: &str) {
    let dir = u.env.root();
    let pubfile = dir.join(format!("{label}.pub"));
    fs::write(&pubfile, public).unwrap();
    let msg = dir.join(format!("{label}.msg"));
    fs::write(&msg, format!("a message signed by {label}\n")).unwrap();
    let signed = tool(
        u,
        "ssh-keygen",
        &[
            "-Y",
            "sign",
            "-f",
            pubfile.to_str().unwrap(),
            "-n",
            "file",
            msg.to_str().unwrap(),
        ],
    );
    assert_success(&signed, &format!("ssh-keygen -Y sign with {label}"));
    let allowed = dir.join(format!("{label}.allowed"));
    fs::write(&allowed, format!("signer@example {public}")).unwrap();
    let sig = format!("{}.sig", msg.display());
    let verify = |data: &str| {
        Command::new("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-f",
                allowed.to_str().unwrap(),
                "-I",
                "signer@example",
            ])
            .args(["-n", "file", "-s", &sig])
            .stdin(fs::File::open(data).unwrap())
            .output()
            .unwrap()
    };
    assert_success(&verify(msg.to_str().unwrap()), &format!("verify {label}"));
    let other = dir.join(format!("{label}.other"));
    fs::write(&other, "another message").unwrap();
    assert!(
        !verify(other.to_str().unwrap()).status.success(),
        "{label}: a signature verified over another message"
    );
}

fn public_line(env: &TestEnv, user: &str, name: &str) -> String {
    env.ok(["export", user, name, "--public", "--format", "openssh"])
}

#[test]
fn ssh_add_lists_only_marked_keys_and_ssh_keygen_signs_through_the_agent() {
    if !have_openssh("ssh_add_lists_only_marked_keys") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    env.ok(["gen", "alice", "--type", "rsa-3072", "--name", "deploy"]);
    env.ok(["ssh", "enable", "alice", "deploy"]);
    env.ok(["gen", "alice", "--type", "ed25519", "--name", "unmarked"]);
    env.ok([
        "gen",
        "alice",
        "--type",
        "ed25519",
        "--name",
        "backup-key",
        "--ssh",
    ]);
    env.ok(["ssh", "disable", "alice", "backup-key"]);
    env.ok(["gen", "bob", "--type", "fernet"]);
    let laptop = public_line(&env, "alice", "laptop");
    let deploy = public_line(&env, "alice", "deploy");
    assert!(laptop.starts_with("ssh-ed25519 AAAA") && laptop.ends_with(" alice/laptop\n"));
    assert!(deploy.starts_with("ssh-rsa AAAA") && deploy.ends_with(" alice/deploy\n"));

    let u = unlock(env);
    let meta = fs::symlink_metadata(&u.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir_mode = fs::metadata(u.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let listed = tool(&u, "ssh-add", &["-L"]);
    assert_success(&listed, "ssh-add -L");
    let mut lines: Vec<String> = text(&listed).lines().map(|l| format!("{l}\n")).collect();
    lines.sort();
    let mut expected = vec![deploy.clone(), laptop.clone()];
    expected.sort();
    assert_eq!(lines, expected, "ssh-add -L lists exactly the marked keys");

    // Marks made while unlocked take effect at once.
    u.env.ok(["ssh", "enable", "alice", "unmarked"]);
    assert_eq!(text(&tool(&u, "ssh-add", &["-L"])).lines().count(), 3);
    u.env.ok(["ssh", "disable", "alice", "unmarked"]);
    assert_eq!(text(&tool(&u, "ssh-add", &["-L"])).lines().count(), 2);
    let again = u.env.ok(["unlock"]);
    assert!(again.contains(&u.socket.display().to_string()), "{again}");

    sign_and_verify(&u, &laptop, "laptop");
    // ssh-keygen asks for rsa-sha2-512 signatures.
    sign_and_verify(&u, &deploy, "deploy");

    // Every signature is a use of the key version, audited with its fingerprint.
    let info = u.env.json(["list", "alice"]);
    let uses = |name: &str| {
        info["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .map(|k| k["versions"][0]["uses"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(uses("laptop"), 1);
    assert_eq!(uses("deploy"), 1);
    let audit = u.env.ok(["audit"]);
    let fp = ssh_fingerprint(&u, "laptop");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("ssh-sign") && l.contains(&fp)),
        "no ssh-sign audit entry naming {fp}:\n{audit}"
    );
    assert!(
        !audit.contains("a message signed by"),
        "the audit log holds signed data"
    );
}

/// The SSH fingerprint `keyvault ssh list --json` gives for alice's key `name`.
fn ssh_fingerprint(u: &Unlocked, name: &str) -> String {
    let doc = u.env.json(["ssh", "list"]);
    doc["ssh_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .map(|k| k["fingerprint"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{name} is not served: {doc}"))
}

#[test]
fn fingerprints_equal_ssh_keygen_and_list_shows_them() {
    if !have_openssh("fingerprints_equal_ssh_keygen") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    env.ok([
        "gen", "alice", "--type", "rsa-3072", "--name", "deploy", "--ssh",
    ]);
    let u = unlock(env);
    let listing = u.env.ok(["list"]);
    for name in ["laptop", "deploy"] {
        let pubfile = u.env.root().join(format!("{name}.pub"));
        fs::write(&pubfile, public_line(&u.env, "alice", name)).unwrap();
        let lf = Command::new("ssh-keygen")
            .args(["-lf", pubfile.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&lf, "ssh-keygen -lf");
        let theirs = text(&lf).split_whitespace().nth(1).unwrap().to_string();
        assert!(theirs.starts_with("SHA256:"), "{theirs}");
        assert_eq!(ssh_fingerprint(&u, name), theirs);
        assert!(
            listing
                .lines()
                .any(|l| l.contains(&format!("alice/{name}")) && l.contains(&theirs)),
            "list does not show {theirs} for {name}:\n{listing}"
        );
    }
}

/// Sends one raw agent-protocol frame body and reads the answer's body.
fn raw(stream: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).unwrap();
    answer
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_string(bytes: &mut &[u8]) -> Vec<u8> {
    let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let s = bytes[4..4 + n].to_vec();
    *bytes = &bytes[4 + n..];
    s
}

#[test]
fn rsa_sha2_256_signatures_verify_as_pkcs1v15_sha256() {
    if !have_openssh("rsa_sha2_256_signatures") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "rsa-3072", "--name", "deploy", "--ssh",
    ]);
    let u = unlock(env);
    let mut stream = UnixStream::connect(&u.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ids = raw(&mut stream, &[11]);
    assert_eq!(ids[0], 12);
    assert_eq!(&ids[1..5], &1u32.to_be_bytes());
    let mut rest = &ids[5..];
    let blob = take_string(&mut rest);
    assert_eq!(take_string(&mut rest), b"alice/deploy");
    for (flag, algorithm) in [(2u32, "rsa-sha2-256"), (4, "rsa-sha2-512")] {
        let mut req = vec![13];
        string(&mut req, &blob);
        string(&mut req, b"data to sign");
        req.extend_from_slice(&flag.to_be_bytes());
        let answer = raw(&mut stream, &req);
        assert_eq!(answer[0], 14, "sign with flag {flag}");
        let mut rest = &answer[1..];
        let mut sigblob: &[u8] = &take_string(&mut rest);
        assert_eq!(take_string(&mut sigblob), algorithm.as_bytes());
        let sig = take_string(&mut sigblob);
        assert_eq!(sig.len(), 384);
        if flag == 2 {
            // rsa-sha2-256 is PKCS#1 v1.5 with SHA-256: keyvault's own scheme.
            let data = u.env.write_private("signed-data", b"data to sign");
            let sigfile = u.env.write_private("signed-data.sig", &sig);
            let out = u.env.run([
                "verify",
                "alice",
                "deploy",
                "--scheme",
                "pkcs1v15",
                "--signature",
                sigfile.to_str().unwrap(),
                "--in",
                data.to_str().unwrap(),
            ]);
            assert_success(&out, "verify the rsa-sha2-256 signature");
        }
    }
    // SHA-1 (ssh-rsa, no flag) is refused.
    let mut req = vec![13];
    string(&mut req, &blob);
    string(&mut req, b"data");
    req.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(raw(&mut stream, &req), vec![5]);
}

#[test]
fn requests_to_add_remove_or_lock_and_malformed_frames_are_refused() {
    if !have_openssh("requests_to_add_remove_or_lock") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    let u = unlock(env);
    let key = u.env.root().join("other");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&made, "ssh-keygen");
    let add = tool(&u, "ssh-add", &[key.to_str().unwrap()]);
    assert!(!add.status.success(), "ssh-add of a key was accepted");
    let remove = tool(&u, "ssh-add", &["-d", &format!("{}.pub", key.display())]);
    assert!(!remove.status.success(), "ssh-add -d was accepted");
    let remove_all = tool(&u, "ssh-add", &["-D"]);
    assert!(!remove_all.status.success(), "ssh-add -D was accepted");

    let mut stream = UnixStream::connect(&u.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut lock = vec![22];
    string(&mut lock, b"a passphrase");
    assert_eq!(raw(&mut stream, &lock), vec![5], "lock");
    assert_eq!(raw(&mut stream, &[23, 0, 0, 0, 0]), vec![5], "unlock");
    assert_eq!(raw(&mut stream, &[200]), vec![5], "an unknown type");
    assert_eq!(raw(&mut stream, &[]), vec![5], "an empty message");
    assert_eq!(
        raw(&mut stream, &[13, 0xff, 0xff, 0xff, 0xff]),
        vec![5],
        "a cut string"
    );
    assert_eq!(raw(&mut stream, &[11, 0]), vec![5], "trailing bytes");
    let mut ext = vec![27];
    string(&mut ext, b"query");
    assert_eq!(raw(&mut stream, &ext), vec![5], "an unknown extension");
    // The same connection still answers.
    assert_eq!(raw(&mut stream, &[11])[0], 12);
    // A frame over the limit closes the connection, and only that one.
    stream.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        stream.read(&mut buf).unwrap_or(0),
        0,
        "connection not closed"
    );

    let listed = tool(&u, "ssh-add", &["-L"]);
    assert_success(&listed, "ssh-add -L after the refusals");
    assert_eq!(text(&listed).lines().count(), 1);
}

#[test]
fn a_locked_vault_serves_nothing_to_ssh() {
    if !have_openssh("a_locked_vault_serves_nothing") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    let u = unlock(env);
    assert_success(&tool(&u, "ssh-add", &["-L"]), "ssh-add -L while unlocked");
    u.env.ok(["lock"]);
    assert!(!u.socket.exists(), "the SSH socket outlived the lock");
    let listed = tool(&u, "ssh-add", &["-L"]);
    assert!(!listed.status.success());
    assert!(
        text(&listed).is_empty(),
        "a locked vault listed {}",
        text(&listed)
    );
    let out = u.env.run(["ssh", "socket"]);
    let stderr = assert_error(&out, 4, "ssh socket while locked");
    assert!(stderr.contains("locked"), "{stderr}");
}

#[test]
fn a_passphrase_protected_openssh_key_imports_and_exports() {
    if !have_openssh("a_passphrase_protected_openssh_key") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    let key = env.root().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass", "-C", "me@host", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert_success(&made, "ssh-keygen -N pass");
    let theirs = fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let key_arg = key.to_str().unwrap();

    // No passphrase source and no terminal: exit 4, nothing stored.
    let before = env.snapshot();
    let out = env.run([
        "import", "alice", "imported", "--type", "ed25519", "--file", key_arg,
    ]);
    let stderr = assert_error(&out, 4, "import without the key's passphrase");
    assert!(stderr.contains("--key-passphrase-file"), "{stderr}");
    // A wrong passphrase: exit 3, nothing stored.
    let wrong = env.write_private("wrong", b"nope");
    let out = env.run([
        "import",
        "alice",
        "imported",
        "--type",
        "ed25519",
        "--file",
        key_arg,
        "--key-passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    let stderr = assert_error(&out, 3, "import with a wrong key passphrase");
    assert!(
        stderr.contains("wrong passphrase for the key file"),
        "{stderr}"
    );
    assert!(!stderr.contains("nope"));
    // The wrong type: exit 2, nothing stored.
    let right = env.write_private("right", b"pass");
    let out = env.run([
        "import",
        "alice",
        "imported",
        "--type",
        "rsa-3072",
        "--file",
        key_arg,
        "--key-passphrase-file",
        right.to_str().unwrap(),
    ]);
    assert_error(&out, 2, "import an ed25519 key as rsa-3072");
    assert_eq!(env.snapshot(), before, "a failed import changed the vault");

    env.ok([
        "import",
        "alice",
        "imported",
        "--type",
        "ed25519",
        "--file",
        key_arg,
        "--key-passphrase-file",
        right.to_str().unwrap(),
        "--ssh",
    ]);
    let ours = public_line(&env, "alice", "imported");
    let key_part = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(key_part(&ours), key_part(&theirs));
    assert!(
        !ours.contains("me@host"),
        "the comment is user/name only: {ours}"
    );

    // The private key exports as an OpenSSH file ssh-keygen reads.
    let exported = env.root().join("exported");
    env.ok([
        "export",
        "alice",
        "imported",
        "--format",
        "openssh",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let y = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&exported)
        .output()
        .unwrap();
    assert_success(&y, "ssh-keygen -y of the exported key");
    assert_eq!(key_part(&text(&y)), key_part(&theirs));

    let u = unlock(env);
    sign_and_verify(&u, &ours, "imported");
}

#[test]
fn an_rsa_key_from_ssh_keygen_imports_and_signs() {
    if !have_openssh("an_rsa_key_from_ssh_keygen") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    let key = env.root().join("id_rsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert_success(&made, "ssh-keygen -t rsa");
    env.ok([
        "import",
        "alice",
        "deploy",
        "--type",
        "rsa-3072",
        "--file",
        key.to_str().unwrap(),
        "--ssh",
    ]);
    let theirs = fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let ours = public_line(&env, "alice", "deploy");
    let key_part = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(key_part(&ours), key_part(&theirs));
    let u = unlock(env);
    sign_and_verify(&u, &ours, "deploy");
}

#[test]
fn ssh_marks_refuse_bad_input_and_change_nothing() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice", "--type", "fernet", "--name", "f"]);
    env.ok(["gen", "alice", "--type", "ed25519", "--name", "e"]);
    let pubkey = env.root().join("e.pub");
    fs::write(&pubkey, public_line(&env, "alice", "e")).unwrap();
    env.ok([
        "import",
        "alice",
        "pubonly",
        "--type",
        "ed25519",
        "--public",
        "--file",
        pubkey.to_str().unwrap(),
    ]);
    let before = env.snapshot();
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["gen", "alice", "--type", "fernet", "--name", "g", "--ssh"],
            2,
            "--ssh applies to ed25519 and rsa keys",
        ),
        (
            &["ssh", "enable", "alice", "f"],
            2,
            "only ed25519 and rsa keys",
        ),
        (&["ssh", "enable", "alice", "pubonly"], 2, "public-only"),
        (&["ssh", "enable", "alice", "nosuch"], 5, "nosuch"),
        (&["ssh", "enable", "nobody", "e"], 5, "nobody"),
        (
            &["export", "alice", "f", "--format", "openssh"],
            2,
            "no OpenSSH form",
        ),
        (&["ssh", "socket"], 4, "locked"),
    ];
    for (args, code, needle) in cases {
        let out = env.run(args);
        let stderr = assert_error(&out, code, &args.join(" "));
        assert!(stderr.contains(needle), "{}: {stderr}", args.join(" "));
    }
    let junk = env.write_private(
        "junk",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    let out = env.run([
        "import",
        "alice",
        "j",
        "--type",
        "ed25519",
        "--file",
        junk.to_str().unwrap(),
    ]);
    assert_error(&out, 2, "import a malformed OpenSSH key");
    assert_eq!(
        env.snapshot(),
        before,
        "a refused command changed the vault"
    );
}

#[test]
fn marks_survive_a_backup_and_follow_the_key_not_its_name() {
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    let listed = env.json(["ssh", "list"]);
    assert_eq!(listed["ssh_keys"].as_array().unwrap().len(), 1);
    // The marks travel with a backup.
    let backup = env.root().join("backup.kvb");
    env.ok(["backup", backup.to_str().unwrap()]);
    let restored = env.root().join("restored");
    env.ok([
        "restore",
        backup.to_str().unwrap(),
        "--to",
        restored.to_str().unwrap(),
    ]);
    let there = env.json(["--vault", restored.to_str().unwrap(), "ssh", "list"]);
    assert_eq!(there["ssh_keys"], listed["ssh_keys"]);
    env.ok(["delete", "alice", "laptop"]);
    env.ok(["gen", "alice", "--type", "ed25519", "--name", "laptop"]);
    let listed = env.json(["ssh", "list"]);
    assert!(
        listed["ssh_keys"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    let check = env.run(["check"]);
    assert_success(&check, "check after SSH marks");
}

#[test]
fn git_signs_a_commit_with_a_vault_key_through_the_agent() {
    if !have_openssh("git_signs_a_commit") {
        return;
    }
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("SKIPPED git_signs_a_commit: git is not installed");
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    let public = public_line(&env, "alice", "laptop");
    let u = unlock(env);
    let root = u.env.root().to_path_buf();
    let pubfile = root.join("laptop.pub");
    fs::write(&pubfile, &public).unwrap();
    let allowed = root.join("allowed_signers");
    fs::write(&allowed, format!("alice@example {public}")).unwrap();
    let repo = root.join("repo");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=Alice", "-c", "user.email=alice@example"])
            .args(["-c", "gpg.format=ssh"])
            .arg("-c")
            .arg(format!("user.signingkey={}", pubfile.display()))
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
            .args(args)
            .env("SSH_AUTH_SOCK", &u.socket)
            .env("HOME", u.env.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    };
    fs::create_dir(&repo).unwrap();
    assert_success(&git(&["init", "-q"]), "git init");
    assert_success(
        &git(&[
            "commit",
            "-q",
            "--allow-empty",
            "-S",
            "-m",
            "signed by the vault",
        ]),
        "git commit -S",
    );
    let verified = git(&["verify-commit", "HEAD"]);
    assert_success(&verified, "git verify-commit");
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(said.contains("Good \"git\" signature"), "{said}");
}

/// A throwaway `sshd` on a free port of 127.0.0.1, stopped when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sshd` with a fresh host key and `authorized` as the only authorized key,
/// or says why it cannot (then the test is skipped with that message).
fn start_sshd(dir: &std::path::Path, authorized: &str) -> Result<(Sshd, String), String> {
    let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("sshd is not installed")?;
    let host_key = dir.join("host_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .map_err(|e| e.to_string())?;
    if !made.status.success() {
        return Err("cannot make a host key".into());
    }
    let host_pub = fs::read_to_string(dir.join("host_ed25519.pub")).map_err(|e| e.to_string())?;
    let authorized_keys = dir.join("authorized_keys");
    fs::write(&authorized_keys, authorized).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n",
            host_key.display(),
            authorized_keys.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let test = Command::new(sshd).arg("-t").arg("-f").arg(&config).output();
    match test {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(format!(
                "sshd -t: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let server = Sshd { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((server, host_pub));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("sshd did not start listening".into())
}

#[test]
fn ssh_logs_in_to_a_throwaway_sshd_with_the_vault_key() {
    if !have_openssh("ssh_logs_in_to_a_throwaway_sshd") {
        return;
    }
    let env = TestEnv::new();
    env.init();
    env.ok([
        "gen", "alice", "--type", "ed25519", "--name", "laptop", "--ssh",
    ]);
    let public = public_line(&env, "alice", "laptop");
    let dir = env.root().join("sshd");
    fs::create_dir(&dir).unwrap();
    let (server, host_pub) = match start_sshd(&dir, &public) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED ssh_logs_in_to_a_throwaway_sshd: {why}");
            return;
        }
    };
    let u = unlock(env);
    let user = text(&Command::new("id").arg("-un").output().unwrap())
        .trim()
        .to_string();
    let known = dir.join("known_hosts");
    let login = tool(
        &u,
        "ssh",
        &[
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!("UserKnownHostsFile={}", known.display()),
            "-p",
            &server.port.to_string(),
            &format!("{user}@127.0.0.1"),
            "echo logged in with the vault key",
        ],
    );
    assert_success(&login, "ssh to the throwaway sshd");
    assert_eq!(text(&login).trim(), "logged in with the vault key");
    // The signature was audited with the host the connection was bound to.
    let host_pubfile = dir.join("host_ed25519.pub");
    fs::write(&host_pubfile, host_pub).unwrap();
    let lf = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&host_pubfile)
        .output()
        .unwrap();
    let host_fp = text(&lf).split_whitespace().nth(1).unwrap().to_string();
    let audit = u.env.ok(["audit"]);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("ssh-sign") && l.contains(&format!("for host {host_fp}"))),
        "no ssh-sign entry for host {host_fp}:\n{audit}"
    );
}
