//! Helpers shared by every integration test crate; each crate includes this directory
//! once, with `#[path = "../util/mod.rs"] mod util;` in its `main.rs`.
//!
//! Every test gets a [`TestEnv`]: its own temp dir holding HOME, the XDG dirs, TMPDIR
//! and the vault, so tests never touch the real user's files and run in parallel. The
//! binary runs in a new session with no controlling terminal, so a command that would
//! ask for a passphrase fails (exit 4) instead of waiting on the developer's terminal.
//!
//! - this module: [`TestEnv`], running the binary, and assertions on its output;
//! - [`fixture`]: the committed vaults of each released format;
//! - [`process`]: processes with a time limit, SIGKILL, the agent's pid and socket;
//! - [`vault`]: commands on another vault, raw store edits, an agent guard;
//! - [`rng`]: a seeded generator for randomised runs;
//! - [`python`]: the interop tests' Python and its helper script.
//!
//! A new test file joins the crate of its theme (`tests/cli`, `tests/agent`,
//! `tests/storage`, `tests/interop`): `tests/<crate>/<name>.rs`, declared with
//! `mod <name>;` in that crate's `main.rs`, importing what it needs with
//! `use crate::util::{TestEnv, assert_error};` (or `crate::util::process::…`, …). A
//! test that changes process-wide state (environment variables, umask, signal
//! dispositions, the current directory, rlimits) does so in a child process only: the
//! other tests of its crate run on threads of the same process.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod fixture;
pub mod process;
pub mod python;
pub mod rng;
pub mod vault;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The passphrase of every test vault (but the fixture's).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The fast KDF flags of `init` (far below the floor, hence `--allow-weak-kdf`).
pub const FAST_KDF: [&str; 7] = [
    "--kdf-memory",
    "1",
    "--kdf-iterations",
    "1",
    "--kdf-parallelism",
    "1",
    "--allow-weak-kdf",
];

/// Environment variables that carry a passphrase or a vault path; removed from every
/// child unless a test sets them (as is any other `KEYVAULT_*` of the parent).
const KEYVAULT_VARS: [&str; 5] = [
    "KEYVAULT_PATH",
    "KEYVAULT_PASSPHRASE",
    "KEYVAULT_PASSPHRASE_FILE",
    "KEYVAULT_NEW_PASSPHRASE",
    "KEYVAULT_NEW_PASSPHRASE_FILE",
];

/// No single command of the suite should take this long; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A private environment for one test; everything lives under one temp dir that is
/// removed when the value is dropped.
pub struct TestEnv {
    dir: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Creates the temp dir and its HOME, XDG and TMPDIR subdirectories.
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("keyvault-test-")
            .tempdir()
            .expect("create a temp dir");
        let env = TestEnv { dir };
        for sub in ["home", "data", "config", "cache", "state", "runtime", "tmp"] {
            fs::create_dir_all(env.root().join(sub)).expect("create a test subdir");
        }
        fs::set_permissions(env.runtime_dir(), fs::Permissions::from_mode(0o700))
            .expect("chmod the runtime dir");
        env
    }

    /// The temp dir of this test.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The vault of this test (`KEYVAULT_PATH`).
    pub fn vault(&self) -> PathBuf {
        self.root().join("vault")
    }

    /// The database directory of the test vault.
    pub fn db_dir(&self) -> PathBuf {
        self.vault().join("db")
    }

    /// `HOME`.
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// `XDG_DATA_HOME`.
    pub fn data_home(&self) -> PathBuf {
        self.root().join("data")
    }

    /// `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root().join("runtime")
    }

    /// `TMPDIR`.
    pub fn tmp(&self) -> PathBuf {
        self.root().join("tmp")
    }

    /// Writes a file created 0600 under the temp dir and returns its path.
    pub fn write_private(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.root().join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .expect("create a private file");
        f.write_all(contents).expect("write a private file");
        path
    }

    /// A 0600 file holding the passphrase (and a newline, as an editor leaves it).
    pub fn passphrase_file(&self) -> PathBuf {
        self.write_private("passphrase", format!("{PASSPHRASE}\n").as_bytes())
    }

    /// The private environment of this test: `HOME`, the XDG dirs, `TMPDIR` and
    /// `KEYVAULT_PATH`, all under its temp dir.
    pub fn vars(&self) -> [(&'static str, PathBuf); 8] {
        [
            ("HOME", self.home()),
            ("XDG_DATA_HOME", self.data_home()),
            ("XDG_CONFIG_HOME", self.root().join("config")),
            ("XDG_CACHE_HOME", self.root().join("cache")),
            ("XDG_STATE_HOME", self.root().join("state")),
            ("XDG_RUNTIME_DIR", self.runtime_dir()),
            ("TMPDIR", self.tmp()),
            ("KEYVAULT_PATH", self.vault()),
        ]
    }

    /// The binary with this test's private environment and no passphrase at all; it
    /// runs in a new session, without a controlling terminal.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::from_std(self.bare_std());
        cmd.timeout(TIMEOUT);
        cmd
    }

    /// What [`TestEnv::bare`] runs, as a plain `std::process::Command` (no timeout), for
    /// tests that spawn the binary and kill it.
    pub fn bare_std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keyvault"));
        for var in KEYVAULT_VARS {
            cmd.env_remove(var);
        }
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("KEYVAULT_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(self.vars()).current_dir(self.root());
        // SAFETY: the closure runs in the forked child before exec and calls only
        // setsid(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                Ok(())
            });
        }
        cmd
    }

    /// The binary with the passphrase given through `KEYVAULT_PASSPHRASE_FILE`.
    pub fn kv(&self) -> Command {
        let mut cmd = self.bare();
        cmd.env("KEYVAULT_PASSPHRASE_FILE", self.passphrase_file());
        cmd
    }

    /// Creates the test vault with fast KDF parameters.
    pub fn init(&self) {
        let out = self
            .kv()
            .arg("init")
            .args(FAST_KDF)
            .output()
            .expect("run init");
        assert_success(&out, "init");
        assert!(
            self.vault().join("header").is_file() && self.db_dir().join("db").is_file(),
            "init made no vault"
        );
    }

    /// Creates the test vault with the passphrase given through `KEYVAULT_PASSPHRASE`.
    pub fn init_with_env_passphrase(&self) {
        let out = self
            .bare()
            .env("KEYVAULT_PASSPHRASE", PASSPHRASE)
            .arg("init")
            .args(FAST_KDF)
            .output()
            .expect("run init");
        assert_success(&out, "init");
    }

    /// Runs a command with the passphrase and returns its output, whatever it is.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kv().args(args).output().expect("run keyvault")
    }

    /// Runs a command that must succeed and returns its stdout as text.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let what = describe(&args);
        let out = self.run(&args);
        assert_success(&out, &what);
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs a command that must succeed and returns its raw stdout.
    pub fn ok_bytes<I, S>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let what = describe(&args);
        let out = self.run(&args);
        assert_success(&out, &what);
        out.stdout
    }

    /// Runs `--json` plus a command that must succeed, and parses its stdout.
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["--json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        let what = describe(&all);
        let out = self.run(&all);
        assert_success(&out, &what);
        parse_json(&out.stdout, &what)
    }

    /// What the vault holds, as the binary reports it: for "nothing changed" checks.
    pub fn snapshot(&self) -> Snapshot {
        let exists = self.vault().exists();
        let mut reports = Vec::new();
        for args in [
            &["--json", "list"][..],
            &["--json", "revoked"][..],
            &["--json", "status"][..],
        ] {
            let out = self.run(args);
            reports.push((
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ));
        }
        Snapshot { exists, reports }
    }
}

/// The state of a vault as `list --json`, `revoked --json` and `status --json` report
/// it (sled may rewrite its files on open, so raw bytes would not do).
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    exists: bool,
    reports: Vec<(String, Option<i32>, String)>,
}

fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| format!("{:?}", a.as_ref().to_string_lossy()))
        .collect();
    format!("keyvault {}", parts.join(" "))
}

/// Asserts that a command exited 0, printing its output otherwise.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that a command failed as README's exit codes say errors fail: the exit code, one
/// `error:` line first on stderr, no panic; and returns stderr.
pub fn assert_error(out: &Output, code: i32, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let problems = error_problems(out, code, None);
    assert!(
        problems.is_empty(),
        "{what}: {}\nstdout: {}\nstderr: {stderr}",
        problems.join("; "),
        String::from_utf8_lossy(&out.stdout),
    );
    stderr
}

/// What is wrong with a failed command's output, measured against the expected exit
/// code and (optionally) a stderr substring; empty when all is well.
pub fn error_problems(out: &Output, code: i32, stderr_has: Option<&str>) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if out.status.code() != Some(code) {
        problems.push(format!(
            "exit code {:?}, expected {code}",
            out.status.code()
        ));
    }
    if !stderr.lines().next().unwrap_or("").starts_with("error:") {
        problems.push("stderr does not start with an `error:` line".to_string());
    }
    if let Some(needle) = stderr_has
        && !stderr.contains(needle)
    {
        problems.push(format!("stderr does not contain {needle:?}"));
    }
    problems
}

/// Parses one JSON document.
pub fn parse_json(stdout: &[u8], what: &str) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// Copies a directory tree (a vault) to `to`, which must not exist.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy's dir");
    for entry in fs::read_dir(from).expect("read a dir to copy") {
        let entry = entry.expect("read a dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read a dir") {
            let entry = entry.expect("read a dir entry");
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER inside a PEM text (one block).
pub fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("PEM body is base64")
}

/// A fresh RSA key of `bits` bits, made by the test itself (not by keyvault).
pub fn rsa_key(bits: usize) -> rsa::PrivateKey {
    rsa::PrivateKey::new(&mut getrandom::SysRng, bits).expect("generate an RSA key")
}

/// The PKCS#8 PEM of a key.
pub fn pkcs8_pem(key: &rsa::PrivateKey) -> String {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("encode PKCS#8")
        .to_string()
}

/// The PKCS#8 DER of a key.
pub fn pkcs8_der(key: &rsa::PrivateKey) -> Vec<u8> {
    use rsa::pkcs8::EncodePrivateKey;
    key.to_pkcs8_der()
        .expect("encode PKCS#8")
        .as_bytes()
        .to_vec()
}

/// The SPKI PEM of a key's public half.
pub fn spki_pem(key: &rsa::PrivateKey) -> String {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("encode SPKI")
}

/// A new pseudo-terminal: its master and its slave, both close-on-exec, so that the
/// commands other tests spawn meanwhile never inherit them; a child gets the slave as
/// one of its standard streams, or by clearing the flag in its own `pre_exec`.
pub fn open_pty() -> (fs::File, fs::File) {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .expect("open a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open the pseudo-terminal's slave");
    (fs::File::from(master), fs::File::from(slave))
}

/// What a command run on a terminal did: its exit status, and everything it wrote on
/// the terminal (prompts; never the answers, which it reads with echo off).
#[derive(Debug)]
pub struct OnTerminal {
    /// How it ended (`None` if it had to be killed).
    pub code: Option<i32>,
    /// What it wrote on the terminal.
    pub terminal: String,
    /// Its stdout.
    pub stdout: Vec<u8>,
}

/// Runs `cmd` (from [`TestEnv::bare_std`]) with a new pseudo-terminal as its
/// controlling terminal, answering each prompt it writes there: `answer` gets the
/// terminal's text since the last answer and returns the line to type, if that text is
/// a prompt it knows.
pub fn run_on_terminal(
    mut cmd: std::process::Command,
    mut answer: impl FnMut(&str) -> Option<String>,
) -> OnTerminal {
    use std::io::Read;
    use std::time::Instant;
    let (mut terminal, slave) = open_pty();
    // SAFETY: runs in the forked child, after `bare_std`'s setsid(2) and before exec:
    // ioctl(2) makes the terminal the controlling one, and fcntl(2) keeps the slave open
    // across exec in this child alone (it is close-on-exec, so that commands other tests
    // spawn meanwhile never inherit it); both are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::ioctl_tiocsctty(&slave)?;
            rustix::io::fcntl_setfd(&slave, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn on a terminal");
    // The command owns the pre_exec closure and with it this process's slave: the
    // child's is the only one left.
    drop(cmd);
    let mut writer = terminal.try_clone().expect("clone the terminal");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child and its terminal are gone.
        while let Ok(n) = terminal.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let child_out = std::thread::spawn(move || child.wait_with_output());
    let start = Instant::now();
    let mut transcript = String::new();
    let mut pending = String::new();
    while let Ok(chunk) = rx.recv_timeout(TIMEOUT.saturating_sub(start.elapsed())) {
        let text = String::from_utf8_lossy(&chunk);
        transcript.push_str(&text);
        pending.push_str(&text);
        if let Some(line) = answer(&pending) {
            pending.clear();
            writer
                .write_all(format!("{line}\n").as_bytes())
                .expect("type on the terminal");
        }
    }
    let out = child_out
        .join()
        .expect("the waiting thread")
        .expect("wait for the command");
    OnTerminal {
        code: out.status.code(),
        terminal: transcript,
        stdout: out.stdout,
    }
}
