//! Regressions of the agent's life cycle, driven through the real binary and the real
//! agent: how `lock` finds agents (by vault id, through the registry, across runtime
//! dirs, after the vault directory moved or went), an agent that finds its directory
//! replaced, a socket directory made by another user, `unlock`'s timeout and races,
//! and the daemon's hygiene (descriptors, working directory, symlinks, signals).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::util;
use crate::util::process::{process_gone, wait_gone};
use crate::util::{FAST_KDF, TestEnv, assert_error, assert_success, parse_json};

/// An environment with a vault holding one fernet key for bob.
fn with_vault() -> TestEnv {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env
}

/// Unlocks the test vault and returns the agent's pid.
fn unlock(env: &TestEnv, args: &[&str]) -> i32 {
    let out = env
        .kv()
        .args(["--json", "unlock"])
        .args(args)
        .output()
        .expect("unlock");
    assert_success(&out, "unlock");
    let doc = parse_json(&out.stdout, "unlock");
    doc["agent_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("unlock --json gave no agent_pid: {doc}")) as i32
}

fn lock_output(cmd: &mut assert_cmd::Command) -> (String, std::process::Output) {
    let out = cmd.output().expect("lock");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

/// The vault id of the test vault.
fn vault_id(vault: &Path) -> String {
    keyvault::vault::peek_id(vault)
        .expect("read the vault id")
        .expect("a vault of the current format")
}

/// The registry's directory of the test's user.
fn registry_dir(env: &TestEnv) -> PathBuf {
    env.root().join("state").join("keyvault").join("agents")
}

/// Every running `keyvault agent --vault PATH` process for `vault`.
fn agents_of(vault: &Path) -> Vec<i32> {
    let vault = fs::canonicalize(vault).unwrap_or_else(|_| vault.to_path_buf());
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_agent = args.get(1) == Some(&b"agent".as_slice())
            && args
                .windows(2)
                .any(|w| w[0] == b"--vault" && w[1] == vault.as_os_str().as_encoded_bytes());
        if is_agent && !process_gone(pid) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn lock_found_no_agent_after_the_vault_directory_was_moved() {
    let env = with_vault();
    let pid = unlock(&env, &[]);
    let moved = env.root().join("moved-vault");
    fs::rename(env.vault(), &moved).expect("move the vault");
    // At the new path: the vault's id names the agent.
    let (stdout, out) = lock_output(env.bare().arg("--vault").arg(&moved).arg("lock"));
    assert_success(&out, "lock at the new path");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );

    // At the old path, where nothing is left: the path it was unlocked at names it.
    fs::rename(&moved, env.vault()).expect("move it back");
    let pid = unlock(&env, &[]);
    fs::rename(env.vault(), &moved).expect("move the vault again");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock at the old path");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );
}

#[test]
fn lock_found_no_agent_after_the_vault_directory_was_deleted() {
    let env = with_vault();
    let pid = unlock(&env, &[]);
    fs::remove_dir_all(env.vault()).expect("delete the vault");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock of a deleted vault");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(!stdout.contains("Already locked"), "{stdout}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );
    assert!(agents_of(&env.vault()).is_empty());
}

#[test]
fn lock_and_commands_found_no_agent_when_the_runtime_dir_differs() {
    let env = with_vault();
    let pid = unlock(&env, &[]);
    let other_runtime = env.root().join("other-runtime");
    fs::create_dir(&other_runtime).expect("another runtime dir");
    // A session with another runtime dir (ssh, cron, sudo) and one with none at all:
    // commands reach the agent through the registry, without a passphrase.
    for session in [Some(other_runtime.as_path()), None] {
        let mut list = env.bare();
        match session {
            Some(dir) => list.env("XDG_RUNTIME_DIR", dir),
            None => list.env_remove("XDG_RUNTIME_DIR"),
        };
        let out = list.arg("list").output().expect("list");
        assert_success(&out, &format!("list through the agent from {session:?}"));
        assert!(String::from_utf8_lossy(&out.stdout).contains("bob"));
    }
    let (stdout, out) = lock_output(
        env.bare()
            .env("XDG_RUNTIME_DIR", &other_runtime)
            .arg("lock"),
    );
    assert_success(&out, "lock from another runtime dir");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );
    // The agent took its registry entry with it.
    let left: Vec<_> = fs::read_dir(registry_dir(&env))
        .expect("the registry exists")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "registry entries left: {left:?}");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "second lock");
    assert!(stdout.contains("Already locked"), "{stdout}");
}

#[test]
fn lock_all_stops_every_agent_of_the_user() {
    let env = with_vault();
    let second = env.root().join("second-vault");
    let out = env
        .kv()
        .arg("--vault")
        .arg(&second)
        .arg("init")
        .args(FAST_KDF)
        .output()
        .expect("init");
    assert_success(&out, "init the second vault");
    let first_pid = unlock(&env, &[]);
    // The second agent in a session of its own runtime dir.
    let other_runtime = env.root().join("other-runtime");
    fs::create_dir(&other_runtime).expect("another runtime dir");
    let out = env
        .kv()
        .env("XDG_RUNTIME_DIR", &other_runtime)
        .arg("--vault")
        .arg(&second)
        .args(["--json", "unlock"])
        .output()
        .expect("unlock");
    assert_success(&out, "unlock the second vault");
    let second_pid = parse_json(&out.stdout, "unlock")["agent_pid"]
        .as_i64()
        .expect("agent_pid") as i32;

    let out = env
        .bare()
        .args(["--json", "lock", "--all"])
        .output()
        .expect("lock --all");
    assert_success(&out, "lock --all");
    let doc = parse_json(&out.stdout, "lock --all");
    let mut stopped: Vec<i64> = doc["agents_stopped"]
        .as_array()
        .expect("agents_stopped")
        .iter()
        .filter_map(|p| p.as_i64())
        .collect();
    stopped.sort_unstable();
    let mut want = vec![i64::from(first_pid), i64::from(second_pid)];
    want.sort_unstable();
    assert_eq!(stopped, want, "{doc}");
    for pid in [first_pid, second_pid] {
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "agent {pid} still runs"
        );
    }
}

#[test]
fn an_old_agent_served_a_vault_re_created_at_its_path() {
    let env = with_vault();
    let pid = unlock(&env, &[]);
    fs::remove_dir_all(env.vault()).expect("delete the vault");
    env.init();
    // With a passphrase: the request lands in the new vault (one-shot), never in the
    // deleted one through the old agent.
    let out = env.run(["gen", "carol"]);
    assert_success(&out, "gen carol in the new vault");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the old agent {pid} still runs"
    );
    let listed = env.ok(["--json", "list"]);
    assert!(
        listed.contains("carol") && !listed.contains("bob"),
        "{listed}"
    );
    // Without one, nothing serves it: the command asks for a passphrase (exit 4).
    let out = env.bare().args(["gen", "dave"]).output().expect("gen");
    assert_error(&out, 4, "gen without a passphrase after the re-creation");
}

#[test]
fn an_agent_answers_stopped_once_its_vault_directory_is_replaced() {
    let env = with_vault();
    let pid = unlock(&env, &["--timeout", "15m"]);
    let id = vault_id(&env.vault());
    let socket = env
        .runtime_dir()
        .join("keyvault")
        .join(keyvault::agent::socket_name(&id));
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    // The directory is replaced by a copy (same id, another inode) between requests.
    let copy = env.root().join("copy");
    util::copy_dir(&env.vault(), &copy);
    let old = env.root().join("old");
    fs::rename(env.vault(), &old).expect("move the vault away");
    fs::rename(&copy, env.vault()).expect("put the copy in its place");
    use keyvault::agent::protocol::{
        AgentRequest, AgentResponse, MAX_RESPONSE_BYTES, read_message, write_message,
    };
    write_message(&mut stream, &AgentRequest::Status).expect("send");
    match read_message::<AgentResponse>(&mut stream, MAX_RESPONSE_BYTES) {
        Ok(AgentResponse::Stopped { info, reason }) => {
            assert_eq!(info.vault_id, id);
            assert!(reason.contains("not the one it unlocked"), "{reason}");
        }
        // The watchdog (each second) may have found it first: then the agent is gone.
        Err(_) => {}
        Ok(_) => panic!("the agent served a directory it did not unlock"),
    }
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );
    // The copy in its place works one-shot.
    let listed = env.ok(["list"]);
    assert!(listed.contains("bob"), "{listed}");
}

#[test]
fn a_fallback_dir_made_by_another_user_broke_every_command() {
    let env = with_vault();
    let uid = rustix::process::getuid();
    if !uid.is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let fallback = env.tmp().join(format!("keyvault-{}", uid.as_raw()));
    fs::create_dir(&fallback).expect("the other user's dir");
    std::os::unix::fs::chown(&fallback, Some(65534), Some(65534)).expect("chown");
    let before = env.snapshot();
    let no_runtime = |mut cmd: assert_cmd::Command| {
        cmd.env_remove("XDG_RUNTIME_DIR");
        cmd
    };
    // Everything but `unlock` works without an agent.
    for args in [
        &["gen", "carol"][..],
        &["list"][..],
        &["status"][..],
        &["export", "bob", "fernet"][..],
    ] {
        let out = no_runtime(env.kv()).args(args).output().expect("run");
        assert_success(&out, &format!("{args:?} with a foreign fallback dir"));
    }
    let out = no_runtime(env.bare()).arg("lock").output().expect("lock");
    assert_success(&out, "lock with a foreign fallback dir");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Already locked"));
    // `unlock` fails, naming the directory and its owner, and starts nothing.
    let after_gen = env.snapshot();
    let out = no_runtime(env.kv()).arg("unlock").output().expect("unlock");
    let stderr = assert_error(&out, 8, "unlock with a foreign fallback dir");
    assert!(
        stderr.contains(&fallback.display().to_string()) && stderr.contains("uid 65534"),
        "{stderr}"
    );
    assert!(agents_of(&env.vault()).is_empty());
    assert_eq!(env.snapshot(), after_gen, "unlock changed the vault");
    assert_ne!(before, after_gen);
    assert_eq!(
        fs::read_dir(&fallback)
            .expect("read the foreign dir")
            .count(),
        0,
        "something was put in another user's directory"
    );
}

#[test]
fn a_plain_unlock_reset_the_idle_timeout_to_the_default() {
    let env = with_vault();
    unlock(&env, &["--timeout", "30m"]);
    let out = env.bare().arg("unlock").output().expect("unlock again");
    assert_success(&out, "plain unlock while unlocked");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("already unlocked") && text.contains("30m"),
        "{text}"
    );
    let status = env.json(["status"]);
    assert_eq!(status["idle_timeout_secs"], 1800, "{status}");
    // A timeout given is taken.
    let out = env
        .bare()
        .args(["--json", "unlock", "--timeout", "5m"])
        .output()
        .expect("unlock --timeout");
    assert_success(&out, "unlock --timeout while unlocked");
    assert_eq!(parse_json(&out.stdout, "unlock")["idle_timeout_secs"], 300);
    assert_eq!(env.json(["status"])["idle_timeout_secs"], 300);
    env.ok(["lock"]);
}

#[test]
fn two_unlocks_at_the_same_moment_failed_with_in_use() {
    for round in 0..3 {
        let env = with_vault();
        let passphrase = env.passphrase_file();
        let children: Vec<_> = (0..4)
            .map(|_| {
                let mut cmd = env.bare_std();
                cmd.env("KEYVAULT_PASSPHRASE_FILE", &passphrase)
                    .arg("unlock")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                cmd.spawn().expect("spawn unlock")
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for unlock"))
            .collect();
        let mut fresh = 0;
        for out in &outputs {
            assert_success(out, &format!("round {round}: a concurrent unlock"));
            let text = String::from_utf8_lossy(&out.stdout);
            if text.starts_with("Unlocked") {
                fresh += 1;
            } else {
                assert!(text.contains("already unlocked"), "{text}");
            }
        }
        assert_eq!(fresh, 1, "round {round}: {outputs:?}");
        assert_eq!(agents_of(&env.vault()).len(), 1, "round {round}");
        env.ok(["lock"]);
    }
}

#[test]
fn the_agent_kept_descriptors_of_unlocks_caller_open() {
    let env = with_vault();
    // A pipe whose write end `unlock` inherits (no close-on-exec), as a shell's
    // `$(keyvault unlock)` or a parent waiting for EOF would hand it.
    // It is made close-on-exec and handed to `unlock` alone, in its pre_exec, so that
    // the commands other tests spawn meanwhile never hold it.
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("make a pipe");
    let mut cmd = env.bare_std();
    cmd.env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file())
        .args(["--json", "unlock"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec; fcntl(2), which clears the write
    // end's close-on-exec flag in this child only, is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            rustix::io::fcntl_setfd(&write_end, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let out = cmd.output().expect("unlock");
    // The command owns the pre_exec closure and with it our write end.
    drop(cmd);
    assert_success(&out, "unlock");
    let pid = parse_json(&out.stdout, "unlock")["agent_pid"]
        .as_i64()
        .expect("agent_pid") as i32;
    let mut reader = fs::File::from(read_end);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = tx.send(reader.read_to_end(&mut buf).map(|_| buf.len()));
    });
    let eof = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(eof, Ok(Ok(0))),
        "the agent {pid} holds the pipe of unlock's caller open"
    );
    // It runs in /, holding no directory busy.
    if rustix::process::getuid().is_root() {
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("the agent's cwd");
        assert_eq!(cwd, Path::new("/"));
    }
    env.ok(["lock"]);
    assert!(wait_gone(pid, Duration::from_secs(5)));
}

#[test]
fn a_symlink_planted_at_the_socket_path_was_followed() {
    let env = with_vault();
    let victim = env.root().join("victim");
    fs::write(&victim, b"precious").expect("victim");
    let dir = env.runtime_dir().join("keyvault");
    fs::create_dir(&dir).expect("socket dir");
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let socket = dir.join(keyvault::agent::socket_name(&vault_id(&env.vault())));
    std::os::unix::fs::symlink(&victim, &socket).expect("plant a symlink");
    let out = env.run(["unlock"]);
    let stderr = assert_error(&out, 8, "unlock with a planted symlink");
    assert!(
        stderr.contains("symbolic link") && stderr.contains(&socket.display().to_string()),
        "{stderr}"
    );
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    assert!(fs::symlink_metadata(&socket).expect("link").is_symlink());
    assert!(agents_of(&env.vault()).is_empty());
}

/// A stand-in for an agent of another protocol version on `socket`: it answers every
/// request with a frame of version 99, until the test ends.
fn agent_of_version_99(socket: &Path) {
    agent_of_version(socket, 99);
}

/// A stand-in for an agent of protocol `version` on `socket`, until the test ends.
fn agent_of_version(socket: &Path, version: u8) {
    let listener = UnixListener::bind(socket).expect("bind the stand-in agent");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = s.write_all(&[0, 0, 0, 2, version, 0]);
        }
    });
}

#[test]
fn lock_signalled_a_pid_of_another_version_agent_without_checking_it() {
    let env = with_vault();
    let id = vault_id(&env.vault());
    // An agent of another version listens for this vault, and the registry names a
    // process of ours that is not a keyvault agent.
    let dir = env.runtime_dir().join("keyvault");
    fs::create_dir(&dir).expect("socket dir");
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let socket = dir.join(keyvault::agent::socket_name(&id));
    agent_of_version_99(&socket);
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = bystander.id();
    let entry = keyvault::agent::registry::Entry {
        pid,
        start_time: keyvault::agent::registry::start_time(pid).expect("its start time"),
        vault_id: id.clone(),
        vault_path: fs::canonicalize(env.vault()).expect("canonical"),
        socket: socket.clone(),
        protocol: 99,
    };
    let registry = registry_dir(&env);
    fs::create_dir_all(&registry).expect("registry dir");
    fs::set_permissions(
        &registry,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    fs::write(
        registry.join(format!("{id}.{pid}.agent")),
        serde_json::to_vec(&entry).expect("entry"),
    )
    .expect("write the entry");
    let out = env.bare().arg("lock").output().expect("lock");
    let stderr = assert_error(&out, 8, "lock against an unverified process");
    assert!(
        stderr.contains("protocol version 99") && stderr.contains("not signalled"),
        "{stderr}"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        bystander.try_wait().expect("wait").is_none(),
        "lock signalled a process that is not a keyvault agent"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn lock_stops_an_agent_of_another_version_once_its_process_is_verified() {
    let env = with_vault();
    let pid = unlock(&env, &[]);
    // The agent's socket now leads to a stand-in of another version: `lock` cannot ask,
    // and stops the registered process, which is verified to be this vault's agent.
    let id = vault_id(&env.vault());
    let socket = env
        .runtime_dir()
        .join("keyvault")
        .join(keyvault::agent::socket_name(&id));
    fs::remove_file(&socket).expect("remove the agent's socket");
    agent_of_version_99(&socket);
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock of an agent of another version");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} still runs"
    );
    // A bystander is never touched: SIGTERM went to the verified pid only.
    assert!(agents_of(&env.vault()).is_empty());
}

/// Unlocks the test vault with a fault the agent hits on purpose (debug builds only).
fn unlock_with_fault(env: &TestEnv, fault: &str, timeout: &str) -> i32 {
    let out = env
        .kv()
        .env(keyvault::agent::test_faults::ENV, fault)
        .args(["--json", "unlock", "--timeout", timeout])
        .output()
        .expect("unlock");
    assert_success(&out, "unlock");
    parse_json(&out.stdout, "unlock")["agent_pid"]
        .as_i64()
        .expect("agent_pid") as i32
}

fn socket_of(env: &TestEnv) -> PathBuf {
    env.runtime_dir()
        .join("keyvault")
        .join(keyvault::agent::socket_name(&vault_id(&env.vault())))
}

#[test]
fn a_panicking_request_stalled_the_idle_lock_and_used_up_the_connections() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the agent's test faults exist in debug builds only");
        return;
    }
    use keyvault::agent::protocol::{
        AgentRequest, AgentResponse, MAX_RESPONSE_BYTES, read_message, write_message,
    };
    use keyvault::ops::Request;
    let env = with_vault();
    let pid = unlock_with_fault(&env, "panic-for-user:mallory", "2s");
    let out = env.bare().args(["gen", "mallory"]).output().expect("gen");
    let stderr = assert_error(&out, 8, "a request that panics in the agent");
    assert!(
        stderr.contains("unexpected condition at ") && stderr.contains(".rs:"),
        "the error names where: {stderr}"
    );
    assert!(
        !stderr.contains("test fault"),
        "the panic's message is not shown"
    );
    // More panicking requests than the agent has connection slots: each is answered,
    // and each slot comes back.
    let socket = socket_of(&env);
    for i in 0..(keyvault::agent::server::MAX_CONNECTIONS + 20) {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        write_message(
            &mut s,
            &AgentRequest::Op(Request::KeyInfo {
                user: "mallory".into(),
                name: "fernet".into(),
            }),
        )
        .expect("send");
        match read_message::<AgentResponse>(&mut s, MAX_RESPONSE_BYTES) {
            Ok(AgentResponse::Error {
                code: keyvault::error::Exit::Other,
                message,
                ..
            }) => {
                assert!(message.contains("unexpected condition"), "{message}")
            }
            _ => panic!("request {i} that panicked was not answered with an internal error"),
        }
    }
    let out = env.bare().arg("list").output().expect("list");
    assert_success(&out, "list after the panics");
    assert!(String::from_utf8_lossy(&out.stdout).contains("bob"));
    // Nothing is left in flight: the idle lock fires 2 s after that last use.
    assert!(
        wait_gone(pid, Duration::from_secs(6)),
        "the agent {pid} did not lock after its idle timeout"
    );
}

#[test]
fn a_panic_in_the_middle_of_a_purge_left_the_agent_running_without_its_vault() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the agent's test faults exist in debug builds only");
        return;
    }
    let env = with_vault();
    let pid = unlock_with_fault(&env, "panic-for-user:mallory", "15m");
    let out = env
        .bare()
        .args(["revoke", "mallory", "--purge"])
        .output()
        .expect("revoke");
    assert_error(&out, 8, "a purge that panics in the agent");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} lingers"
    );
    assert!(!socket_of(&env).exists(), "the socket is left behind");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock");
    assert!(stdout.contains("Already locked"), "{stdout}");
    let listed = env.ok(["list"]);
    assert!(listed.contains("bob"), "{listed}");
    assert!(env.ok(["check"]).contains("ok"));
}

#[test]
fn a_compaction_that_lost_the_vault_left_the_agent_running_out_of_reach() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the agent's test faults exist in debug builds only");
        return;
    }
    let env = with_vault();
    let pid = unlock_with_fault(&env, "lose-vault-on-compact", "15m");
    let out = env.bare().arg("compact").output().expect("compact");
    let stderr = assert_error(&out, 8, "a compaction that loses the vault");
    assert!(stderr.contains("could not be reopened"), "{stderr}");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "the agent {pid} lingers"
    );
    assert!(!socket_of(&env).exists(), "the socket is left behind");
    let entries = fs::read_dir(registry_dir(&env))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "the registry entry is left behind");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock");
    assert!(stdout.contains("Already locked"), "{stdout}");
    let listed = env.ok(["list"]);
    assert!(listed.contains("bob"), "{listed}");
}

#[test]
fn slowly_dripping_connections_locked_out_every_other_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let env = with_vault();
    unlock(&env, &["--timeout", "15m"]);
    let socket = socket_of(&env);
    let stop = Arc::new(AtomicBool::new(false));
    let longest_ms = Arc::new(AtomicU64::new(0));
    // More dripping clients than the agent has slots: each claims a 1,000-byte
    // request and sends one byte of it every 100 ms, reconnecting when closed.
    let drippers: Vec<_> = (0..keyvault::agent::server::MAX_CONNECTIONS + 32)
        .map(|_| {
            let (socket, stop, longest_ms) =
                (socket.clone(), Arc::clone(&stop), Arc::clone(&longest_ms));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) else {
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let opened = std::time::Instant::now();
                    let mut alive = s.write_all(&1000u32.to_be_bytes()).is_ok();
                    while alive && !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(100));
                        alive = s.write_all(&[2]).is_ok();
                    }
                    if !alive {
                        let held = opened.elapsed().as_millis() as u64;
                        longest_ms.fetch_max(held, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    // A normal client keeps getting answers, promptly, for longer than the deadline.
    let start = std::time::Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(13) {
        let asked = std::time::Instant::now();
        let out = env.bare().arg("list").output().expect("list");
        assert_success(&out, "list among dripping clients");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "list took {:?} among dripping clients",
            asked.elapsed()
        );
        answered += 1;
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for d in drippers {
        d.join().expect("a dripping client");
    }
    assert!(answered >= 10, "only {answered} answers");
    // No request may take longer than the deadline to arrive, however it drips.
    let longest = Duration::from_millis(longest_ms.load(Ordering::Relaxed));
    assert!(
        longest <= keyvault::agent::server::REQUEST_DEADLINE + Duration::from_secs(2),
        "a dripping connection was held {longest:?}"
    );
    env.ok(["lock"]);
}

#[test]
fn a_command_that_read_its_input_for_longer_than_the_deadline_lost_its_agent() {
    let env = with_vault();
    unlock(&env, &["--timeout", "15m"]);
    let mut child = env
        .bare_std()
        .args(["encrypt", "bob", "fernet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn encrypt");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"slow ").expect("write");
    // Longer than the agent keeps an idle connection open.
    thread::sleep(keyvault::agent::server::REQUEST_DEADLINE + Duration::from_secs(1));
    stdin.write_all(b"input").expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("encrypt");
    assert_success(&out, "encrypt of a slow input through the agent");
    let token = env.write_private("token", &out.stdout);
    let out = env
        .bare()
        .args(["decrypt", "bob", "fernet", "-i"])
        .arg(&token)
        .output()
        .expect("decrypt");
    assert_success(&out, "decrypt");
    assert_eq!(out.stdout, b"slow input");
    env.ok(["lock"]);
}

#[test]
fn an_open_fallback_dir_broke_commands_that_use_the_runtime_dir() {
    let env = with_vault();
    let fallback = env
        .tmp()
        .join(format!("keyvault-{}", rustix::process::getuid().as_raw()));
    fs::create_dir(&fallback).expect("fallback dir");
    fs::set_permissions(
        &fallback,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let pid = unlock(&env, &[]);
    let out = env.bare().arg("list").output().expect("list");
    assert_success(&out, "list through the agent with an open fallback dir");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock with an open fallback dir");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    assert!(wait_gone(pid, Duration::from_secs(5)));
}

#[test]
fn lock_left_an_agent_of_the_previous_keyvault_running() {
    use sha2::Digest as _;
    let env = with_vault();
    let vault = fs::canonicalize(env.vault()).expect("canonical");
    // A process just like an agent of the keyvault before the registry: `keyvault agent
    // --vault PATH`, here waiting for its key on stdin; its socket and pid file named
    // after a hash of the vault's path; protocol version 1.
    let mut old = env
        .bare_std()
        .arg("agent")
        .arg("--vault")
        .arg(&vault)
        .args(["--idle-secs", "60", "--lifetime-secs", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the old agent");
    let digest = sha2::Sha256::digest(vault.as_os_str().as_encoded_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let dir = env.runtime_dir().join("keyvault");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dir.is_dir() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in never started"
        );
        thread::sleep(Duration::from_millis(20));
    }
    agent_of_version(&dir.join(format!("{name}.sock")), 1);
    fs::write(dir.join(format!("{name}.pid")), format!("{}\n", old.id())).expect("pid file");
    let (stdout, out) = lock_output(env.bare().arg("lock"));
    assert_success(&out, "lock of an agent of the previous keyvault");
    assert!(stdout.starts_with("Locked"), "{stdout}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while old.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old agent still runs"
        );
        thread::sleep(Duration::from_millis(20));
    }
}
