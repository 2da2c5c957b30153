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

#[path = "../util/mod.rs"]
mod util;

mod agent;
mod formats;
mod sshd;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output};

use util::{TestEnv, assert_success};

/// Whether the OpenSSH tools are here; says so visibly when they are not.
pub fn have_openssh(test: &str) -> bool {
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
pub struct Unlocked {
    pub env: TestEnv,
    pub socket: PathBuf,
}

impl Drop for Unlocked {
    fn drop(&mut self) {
        let _ = self.env.bare().arg("lock").output();
    }
}

pub fn unlock(env: TestEnv) -> Unlocked {
    let text = env.ok(["unlock"]);
    assert!(text.contains("SSH agent socket: "), "{text}");
    let socket = PathBuf::from(env.ok(["ssh", "socket"]).trim_end());
    assert!(text.contains(&socket.display().to_string()), "{text}");
    Unlocked { env, socket }
}

/// An OpenSSH tool with `SSH_AUTH_SOCK` set to the vault's SSH socket, in the test's
/// directory.
pub fn tool(u: &Unlocked, program: &str, args: &[&str]) -> Output {
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

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -Y sign` then `-Y verify` of one message with the key whose public line
/// is `public`, the private half staying in the agent.
pub fn sign_and_verify(u: &Unlocked, public: &str, label: &str) {
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

pub fn public_line(env: &TestEnv, user: &str, name: &str) -> String {
    env.ok(["export", user, name, "--public", "--format", "openssh"])
}

/// The SSH fingerprint `keyvault ssh list --json` gives for alice's key `name`.
pub fn ssh_fingerprint(u: &Unlocked, name: &str) -> String {
    let doc = u.env.json(["ssh", "list"]);
    doc["ssh_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .map(|k| k["fingerprint"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{name} is not served: {doc}"))
}

/// Sends one raw agent-protocol frame body and reads the answer's body.
pub fn raw(stream: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).unwrap();
    answer
}

pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn take_string(bytes: &mut &[u8]) -> Vec<u8> {
    let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let s = bytes[4..4 + n].to_vec();
    *bytes = &bytes[4 + n..];
    s
}
