//! `ssh` logging in to a throwaway `sshd` with a vault key (where `sshd` can run).

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::util::{TestEnv, assert_success};
use crate::*;

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
