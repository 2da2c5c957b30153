//! OpenSSH formats and marks: fingerprints, key files from ssh-keygen (also protected
//! ones), export, bad input, and marks that follow keys and backups.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{TestEnv, assert_error, assert_success};
use crate::*;

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
