//! Processes: commands run with a time limit, SIGKILL by pid, whether a process is gone,
//! the agent's pid and socket, and figures from `/proc` (crash consistency, corruption,
//! load and agent tests).

use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{TestEnv, assert_success, parse_json};

/// How a process ended, with its output.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status (signalled if killed).
    pub status: ExitStatus,
    /// What it wrote on stdout.
    pub stdout: Vec<u8>,
    /// What it wrote on stderr.
    pub stderr: Vec<u8>,
    /// From the moment it was started until it ended.
    pub elapsed: Duration,
    /// Whether it was still running at the time limit (and was killed for it).
    pub timed_out: bool,
}

impl Finished {
    /// The exit code (none if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether SIGKILL ended it.
    pub fn killed(&self) -> bool {
        self.status.signal() == Some(rustix::process::Signal::KILL.as_raw())
    }

    /// Whether it panicked: exit 101 or a panic message (a backtrace) on stderr.
    pub fn panicked(&self) -> bool {
        self.code() == Some(101) || String::from_utf8_lossy(&self.stderr).contains("panicked")
    }

    /// The first line of stderr.
    pub fn first_stderr_line(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}{}, after {:?}; stderr: {}; stdout: {}",
            self.status,
            if self.timed_out { " (timed out)" } else { "" },
            self.elapsed,
            String::from_utf8_lossy(&self.stderr).trim(),
            truncate(&String::from_utf8_lossy(&self.stdout), 400),
        )
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.trim().to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s[..end].trim())
}

/// Spawns `cmd` with stdin closed and stdout and stderr captured.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyvault")
}

/// Waits for `child` (started at `started`) up to `limit`, reading its output
/// meanwhile; a child still running at the limit is killed and marked timed out.
pub fn finish(mut child: Child, started: Instant, limit: Duration) -> Finished {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for keyvault") {
            break status;
        }
        if started.elapsed() >= limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for keyvault");
        }
        thread::sleep(Duration::from_millis(1));
    };
    let elapsed = started.elapsed();
    Finished {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed,
        timed_out,
    }
}

/// Runs `cmd` to its end, or kills it after `limit`.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Finished {
    let child = spawn(cmd);
    finish(child, Instant::now(), limit)
}

/// Sends SIGKILL to `pid`; true if the signal was delivered.
pub fn sigkill(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|pid| {
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
    })
}

/// Whether a process is gone: no longer there, or a zombie all of whose threads have
/// ended. (The main thread of a killed process turns zombie while its other threads may
/// still be exiting and holding its files, such as the agent's listening socket.)
pub fn process_gone(pid: i32) -> bool {
    let zombie = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => return true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    };
    zombie
        && fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() <= 1)
            .unwrap_or(true)
}

/// Waits up to `limit` for a process to be gone; true if it is.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if process_gone(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    process_gone(pid)
}

/// Starts the agent of the test's vault with `passphrase` and returns its pid.
pub fn unlock_with(env: &TestEnv, passphrase: &str, timeout: &str) -> i32 {
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", passphrase)
        .args(["--json", "unlock", "--timeout", timeout])
        .output()
        .expect("run unlock");
    assert_success(&out, "unlock");
    let doc = parse_json(&out.stdout, "unlock");
    doc["agent_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("unlock --json gave no agent_pid: {doc}")) as i32
}

/// Locks the agent of the test's vault and waits until its process `pid` is gone.
pub fn lock_and_wait(env: &TestEnv, pid: i32) {
    let out = env.bare().arg("lock").output().expect("run lock");
    assert_success(&out, "lock");
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "the agent {pid} still runs 10 s after lock"
    );
}

/// The socket of the agent of the test's vault.
pub fn socket_of(env: &TestEnv) -> PathBuf {
    let dir = env.runtime_dir().join("keyvault");
    fs::read_dir(&dir)
        .expect("the socket dir exists")
        .map(|e| e.expect("dir entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("an agent socket")
}

/// A field (in KiB) of `/proc/PID/status`, e.g. `VmHWM` (peak resident set) or `VmRSS`.
pub fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// A number from the environment, or `default`.
pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
