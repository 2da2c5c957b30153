//! The agent, driven through the real binary: unlock, use without a
//! passphrase, lock, idle timeout, a killed agent, socket modes, hostile clients, many
//! concurrent clients, and a client of another protocol version.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::util;
use crate::util::process::{process_gone, socket_of};
use crate::util::{TestEnv, assert_error, assert_success};
use keyvault::agent::protocol::{
    AgentRequest, AgentResponse, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, read_message, write_message,
};
use keyvault::ops::{Request, Response};

/// An environment with a vault holding one fernet key for bob, unlocked.
fn unlocked(timeout: &str) -> TestEnv {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["unlock", "--timeout", timeout]);
    env
}

fn agent_pid(env: &TestEnv) -> i32 {
    let out = env
        .bare()
        .args(["--json", "status"])
        .output()
        .expect("status");
    assert_success(&out, "status");
    let doc = util::parse_json(&out.stdout, "status");
    assert_eq!(doc["state"], "unlocked", "{doc}");
    doc["agent_pid"].as_i64().expect("agent_pid") as i32
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn lock(env: &TestEnv) {
    let out = env.bare().arg("lock").output().expect("lock");
    assert_success(&out, "lock");
}

fn call(stream: &mut UnixStream, request: &AgentRequest) -> AgentResponse {
    write_message(stream, request).expect("send a request");
    read_message(stream, MAX_RESPONSE_BYTES).unwrap_or_else(|e| panic!("read a response: {e:?}"))
}

#[test]
fn unlock_operate_without_passphrase_then_lock_asks_again() {
    let env = unlocked("15m");
    // `bare` has no passphrase at all: everything below goes through the agent.
    let out = env
        .bare()
        .args(["gen", "alice", "--type", "aes256-gcm"])
        .output()
        .expect("gen");
    assert_success(&out, "gen through the agent");
    let listed = env.bare().args(["list"]).output().expect("list");
    assert_success(&listed, "list through the agent");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    let exported = env
        .bare()
        .args(["export", "bob", "fernet"])
        .output()
        .expect("export");
    assert_success(&exported, "export through the agent");
    assert_eq!(
        exported.stdout.len(),
        45,
        "a fernet key is 44 base64 chars and a newline"
    );

    let status = env.bare().arg("status").output().expect("status");
    assert_success(&status, "status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("unlocked, locks in"), "{text}");
    assert!(text.contains("(idle timeout 15m)"), "{text}");

    let pid = agent_pid(&env);
    lock(&env);
    assert!(
        wait_until(Duration::from_secs(3), || process_gone(pid)),
        "agent {pid} still runs"
    );
    assert!(!socket_of_exists(&env), "the socket is left behind");

    let after = env.bare().arg("list").output().expect("list");
    let stderr = assert_error(&after, 4, "list after lock");
    assert!(stderr.contains("KEYVAULT_PASSPHRASE"), "{stderr}");
    let status = env.bare().arg("status").output().expect("status");
    assert!(String::from_utf8_lossy(&status.stdout).contains("locked"));
}

fn socket_of_exists(env: &TestEnv) -> bool {
    let dir = env.runtime_dir().join("keyvault");
    fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "sock"))
        })
        .unwrap_or(false)
}

#[test]
fn same_output_and_exit_codes_through_the_agent() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["revoke", "carol", "--reason", "left"]);
    let cases: Vec<Vec<&str>> = vec![
        vec!["--json", "list"],
        vec!["list", "bob"],
        vec!["export", "bob", "fernet"],
        vec!["is-revoked", "carol"],
        vec!["is-revoked", "bob"],
        vec!["--json", "revoked"],
        vec!["export", "bob", "nope"],
        vec!["gen", "carol"],
        vec!["gen", "bob"],
        vec!["gen", ""],
    ];
    let one_shot: Vec<_> = cases.iter().map(|c| env.run(c)).collect();
    env.ok(["unlock"]);
    for (case, before) in cases.iter().zip(&one_shot) {
        let through = env.bare().args(case).output().expect("run");
        assert_eq!(through.status.code(), before.status.code(), "{case:?}");
        assert_eq!(through.stdout, before.stdout, "{case:?}");
        assert_eq!(through.stderr, before.stderr, "{case:?}");
    }
    lock(&env);
}

#[test]
fn unlock_twice_reports_already_unlocked_and_wrong_passphrase_starts_nothing() {
    let env = TestEnv::new();
    env.init();
    let wrong = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", "not it")
        .arg("unlock")
        .output()
        .expect("unlock");
    assert_error(&wrong, 3, "unlock with a wrong passphrase");
    assert!(!socket_of_exists(&env));

    env.ok(["unlock"]);
    let again = env.bare().arg("unlock").output().expect("unlock again");
    assert_success(&again, "second unlock");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already unlocked"));
    lock(&env);
    let again = env.bare().arg("lock").output().expect("lock again");
    assert_success(&again, "second lock");
    assert!(String::from_utf8_lossy(&again.stdout).contains("Already locked"));
}

#[test]
fn idle_timeout_locks_by_itself() {
    let env = unlocked("1s");
    let pid = agent_pid(&env);
    assert!(
        wait_until(Duration::from_secs(5), || process_gone(pid)),
        "the agent did not lock after its idle timeout"
    );
    assert!(!socket_of_exists(&env));
    let out = env.bare().arg("list").output().expect("list");
    assert_error(&out, 4, "list after the idle timeout");
}

#[test]
fn status_does_not_reset_the_idle_timer_but_use_does() {
    let env = unlocked("2s");
    let pid = agent_pid(&env);
    // Uses keep it alive past its timeout…
    for _ in 0..6 {
        thread::sleep(Duration::from_millis(500));
        let out = env.bare().args(["list"]).output().expect("list");
        assert_success(&out, "list keeps the agent busy");
    }
    assert!(!process_gone(pid));
    // …status alone does not.
    let start = Instant::now();
    while !process_gone(pid) && start.elapsed() < Duration::from_secs(5) {
        let _ = env.bare().arg("status").output();
        thread::sleep(Duration::from_millis(200));
    }
    assert!(process_gone(pid), "status requests kept the agent alive");
}

#[test]
fn killed_agent_leaves_a_stale_socket_that_the_next_command_replaces() {
    let env = unlocked("15m");
    let pid = agent_pid(&env);
    let socket = socket_of(&env);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill the agent");
    assert!(wait_until(Duration::from_secs(3), || process_gone(pid)));
    assert!(socket.exists(), "SIGKILL leaves the socket behind");
    // One-shot with the passphrase works, and the stale socket is cleaned away.
    let listed = env.ok(["list"]);
    assert!(listed.contains("bob"));
    assert!(!socket.exists(), "the stale socket was not removed");
    // A new agent starts in its place.
    env.ok(["unlock"]);
    let out = env.bare().arg("list").output().expect("list");
    assert_success(&out, "list through the new agent");
    lock(&env);
}

#[test]
fn socket_dir_is_0700_socket_0600_and_core_dumps_are_off() {
    let env = unlocked("15m");
    let socket = socket_of(&env);
    let dir_mode = fs::metadata(socket.parent().expect("dir"))
        .expect("stat dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let meta = fs::symlink_metadata(&socket).expect("stat socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pid = agent_pid(&env);
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    // A new session: the agent has no controlling terminal and leads its session.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(rest[3], pid.to_string(), "session id is the agent's pid");
    assert_eq!(rest[4], "0", "no controlling terminal");
    // Its environment holds no passphrase.
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(!util::contains_bytes(&environ, b"KEYVAULT_PASSPHRASE"));
    lock(&env);
}

#[test]
fn hostile_clients_do_not_block_crash_or_bloat_the_agent() {
    let env = unlocked("15m");
    let socket = socket_of(&env);
    let pid = agent_pid(&env);

    // A client that connects and says nothing.
    let _silent = UnixStream::connect(&socket).expect("connect");
    // A client that sends half a frame and stalls.
    let mut stalled = UnixStream::connect(&socket).expect("connect");
    stalled.write_all(&[0, 0, 0, 50, 1]).expect("write");

    // A 1 GiB length prefix: refused at once, nothing allocated.
    let mut huge = UnixStream::connect(&socket).expect("connect");
    huge.write_all(&(1u32 << 30).to_be_bytes()).expect("write");
    let reply: AgentResponse = read_message(&mut huge, MAX_RESPONSE_BYTES).expect("a reply");
    assert!(matches!(
        reply,
        AgentResponse::Error {
            code: keyvault::error::Exit::Usage,
            ..
        }
    ));

    // Garbage after a valid length.
    let mut garbage = UnixStream::connect(&socket).expect("connect");
    garbage
        .write_all(&[0, 0, 0, 4, PROTOCOL_VERSION as u8, 0xff, 0xff, 0xff])
        .expect("write");
    let reply: AgentResponse = read_message(&mut garbage, MAX_RESPONSE_BYTES).expect("a reply");
    assert!(matches!(
        reply,
        AgentResponse::Error {
            code: keyvault::error::Exit::Usage,
            ..
        }
    ));

    // Random bytes of every kind on many connections.
    for i in 0..50u8 {
        let mut s = UnixStream::connect(&socket).expect("connect");
        let junk: Vec<u8> = (0..64)
            .map(|j| i.wrapping_mul(31).wrapping_add(j))
            .collect();
        let _ = s.write_all(&junk);
    }

    // Meanwhile real clients are served promptly.
    let start = Instant::now();
    let out = env.bare().args(["list"]).output().expect("list");
    assert_success(&out, "list while hostile clients are connected");
    assert!(start.elapsed() < Duration::from_secs(5));

    let rss_kib = fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmRSS");
    assert!(
        rss_kib < 256 * 1024,
        "agent RSS {rss_kib} KiB after hostile clients"
    );
    lock(&env);
}

#[test]
fn eight_clients_times_a_thousand_requests_all_answered_correctly() {
    let env = unlocked("15m");
    env.ok(["gen", "carol", "--type", "chacha20-poly1305"]);
    let socket = socket_of(&env);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let socket = socket.clone();
            thread::spawn(move || {
                let mut stream = UnixStream::connect(&socket).expect("connect");
                for n in 0..1000 {
                    let user = if (i + n) % 2 == 0 { "bob" } else { "carol" };
                    let response = call(
                        &mut stream,
                        &AgentRequest::Op(Request::List {
                            user: Some(user.to_string()),
                        }),
                    );
                    match response {
                        AgentResponse::Op(Response::Keys(keys)) => {
                            assert_eq!(keys.len(), 1);
                            assert_eq!(keys[0].user, user);
                        }
                        _ => panic!("client {i} request {n}: wrong answer"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    lock(&env);
}

#[test]
fn a_client_of_another_protocol_version_is_told_to_lock_and_unlock() {
    let env = unlocked("15m");
    let socket = socket_of(&env);
    // An old client talking to this agent gets a frame carrying the agent's version.
    let mut old = UnixStream::connect(&socket).expect("connect");
    let mut frame = vec![0, 0, 0, 2];
    frame.extend_from_slice(&[PROTOCOL_VERSION as u8 + 41, 0]);
    old.write_all(&frame).expect("write");
    let mut len = [0u8; 4];
    old.read_exact(&mut len).expect("a reply");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    old.read_exact(&mut body).expect("the reply body");
    assert_eq!(u32::from(body[0]), PROTOCOL_VERSION);
    lock(&env);

    // This client talking to an agent of another version: a fake agent answers with
    // version 99.
    let env = TestEnv::new();
    env.init();
    let dir = env.runtime_dir().join("keyvault");
    fs::create_dir_all(&dir).expect("socket dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    let vault_id = keyvault::vault::peek_id(&env.vault())
        .expect("read the vault id")
        .expect("a vault of the current format");
    let socket = dir.join(keyvault::agent::socket_name(&vault_id));
    let listener = UnixListener::bind(&socket).expect("bind the fake agent");
    let fake = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("read");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("read");
        s.write_all(&[0, 0, 0, 2, 99, 0]).expect("write");
    });
    let out = env.bare().arg("list").output().expect("list");
    let stderr = assert_error(&out, 8, "list against an agent of another version");
    assert!(stderr.contains("protocol version 99"), "{stderr}");
    assert!(stderr.contains("keyvault lock"), "{stderr}");
    fake.join().expect("fake agent");
}

#[test]
fn agents_of_two_vaults_are_not_confused() {
    let a = unlocked("15m");
    // A second vault in its own dir but the same runtime dir as the first.
    let b_path = a.root().join("second-vault");
    let init = a
        .kv()
        .env("KEYVAULT_PATH", &b_path)
        .arg("init")
        .args(util::FAST_KDF)
        .output()
        .expect("init b");
    assert_success(&init, "init b");
    let gen_b = a
        .kv()
        .env("KEYVAULT_PATH", &b_path)
        .args(["gen", "zed"])
        .output()
        .expect("gen b");
    assert_success(&gen_b, "gen in b, one-shot");
    let list_a = a.bare().arg("list").output().expect("list a");
    assert_success(&list_a, "list a through its agent");
    let text = String::from_utf8_lossy(&list_a.stdout);
    assert!(text.contains("bob") && !text.contains("zed"), "{text}");
    // Vault b has no agent: without a passphrase it asks (and fails without a terminal).
    let list_b = a
        .bare()
        .env("KEYVAULT_PATH", &b_path)
        .arg("list")
        .output()
        .expect("list b");
    assert_error(&list_b, 4, "list b without its agent");
    lock(&a);
}

#[test]
fn one_shot_while_the_agent_holds_the_db_routes_to_the_agent() {
    let env = unlocked("15m");
    // With a passphrase available, a command still goes through the agent (the only
    // process with the database open) rather than failing on the lock.
    let out = env.run(["gen", "dave"]);
    assert_success(&out, "gen with a passphrase while unlocked");
    let out = env.bare().args(["list", "dave"]).output().expect("list");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dave"));
    lock(&env);
}

#[test]
fn a_peer_of_another_uid_is_refused() {
    let root = rustix::process::getuid().is_root();
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok();
    if !root || !setpriv || !Path::new("/usr/bin/perl").exists() {
        eprintln!("skipped: needs root, setpriv and perl to run a client as another uid");
        return;
    }
    let env = unlocked("15m");
    let socket = socket_of(&env);
    // Open the way through the file modes so that only SO_PEERCRED stands between the
    // other user and the agent.
    for p in [
        env.root().to_path_buf(),
        env.runtime_dir(),
        socket.parent().unwrap().to_path_buf(),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o777)).expect("chmod socket");
    // A Ping frame: length 2, version, variant 0. The answer's sixth byte (after the
    // length and version) is the response variant: 0 is Pong, 4 is Error.
    let script = format!(
        "use IO::Socket::UNIX; $SIG{{PIPE}} = q(IGNORE); my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die $!; \
         print $s pack('C*', 0, 0, 0, 2, {PROTOCOL_VERSION}, 0); my $d = ''; \
         while (length($d) < 6) {{ my $n = sysread($s, my $c, 4096); last unless $n; $d .= $c; }} \
         print length($d) > 5 ? ord(substr($d, 5, 1)) : 'closed';"
    );
    // Retried: under heavy load the other-uid client can lose its connection to the
    // scheduler's whims; three tries tell a refusal from a hiccup.
    let run_other = || {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/perl",
                "-e",
                &script,
            ])
            .arg(&socket)
            .output()
            .expect("run the other-uid client")
    };
    let mut out = run_other();
    for _ in 0..2 {
        if out.status.success() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
        out = run_other();
    }
    assert!(
        out.status.success(),
        "the other-uid client failed: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer == "4" || answer == "closed",
        "the agent answered another uid: {answer}"
    );
    // Our own uid is still served.
    let mut own = UnixStream::connect(&socket).expect("connect");
    assert!(matches!(
        call(&mut own, &AgentRequest::Ping),
        AgentResponse::Pong { .. }
    ));
    // Our own client refuses a socket dir open to others…
    let out = env.bare().arg("list").output().expect("list");
    assert_error(&out, 8, "list with an open socket dir");
    // …and works again once it is private.
    fs::set_permissions(socket.parent().unwrap(), fs::Permissions::from_mode(0o700))
        .expect("chmod back");
    lock(&env);
}

#[test]
fn max_lifetime_locks_even_a_busy_agent() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["unlock", "--timeout", "15m", "--max-lifetime", "2s"]);
    let pid = agent_pid(&env);
    let start = Instant::now();
    while !process_gone(pid) && start.elapsed() < Duration::from_secs(6) {
        let _ = env.bare().arg("list").output();
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        process_gone(pid),
        "a busy agent outlived its maximum lifetime"
    );
    assert!(start.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn the_agent_locks_its_key_memory_where_allowed() {
    let env = unlocked("15m");
    let pid = agent_pid(&env);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("VmLck");
    // Root (CI here) may always lock memory; elsewhere RLIMIT_MEMLOCK decides, and
    // `unlock` warns instead of failing.
    if rustix::process::getuid().is_root() {
        assert!(locked_kib > 0, "the agent locked no memory: {status}");
    }
    lock(&env);
}

#[test]
fn sigterm_sigint_and_sighup_lock_the_agent() {
    for signal in [
        rustix::process::Signal::TERM,
        rustix::process::Signal::INT,
        rustix::process::Signal::HUP,
    ] {
        let env = unlocked("15m");
        let pid = agent_pid(&env);
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).expect("pid"), signal)
            .expect("signal the agent");
        assert!(
            wait_until(Duration::from_secs(5), || process_gone(pid)),
            "the agent outlived {signal:?}"
        );
        // It wiped and cleaned up: no socket left, and the next command asks again.
        assert!(!socket_of_exists(&env), "{signal:?} left the socket");
        let out = env.bare().arg("list").output().expect("list");
        assert_error(&out, 4, "list after the agent was signalled");
    }
}
