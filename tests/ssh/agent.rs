//! The SSH socket: listing, signing (Ed25519; RSA with rsa-sha2-512 and -256), refusals,
//! malformed frames, a locked vault, and git signing through it.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::util::{TestEnv, assert_error, assert_success};
use crate::*;

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
