//! The Python interpreter of the interop tests, with Python's `cryptography` and
//! `jwcrypto` (tests/interop/requirements.txt), and a runner for tests/interop/kv_interop.py.
//!
//! `cargo test --locked` is the whole test command (README, .ci/run), so the tests
//! provision Python themselves: the first test that needs it creates
//! `target/interop-venv` with `python3 -m venv`, installs the pinned requirements into it
//! and writes `.ready` (holding the requirements it was made from); later tests, later
//! test binaries and later runs reuse it. Test binaries may run at once (nextest, two
//! `cargo test`s), so the venv is made under an exclusive `flock(2)` on
//! `target/interop-venv.lock`: the kernel releases it if a test process dies, so a killed
//! run never leaves a lock that blocks the next one (as a `create_new` lock file would).
//!
//! `KEYVAULT_TEST_PYTHON=/path/to/python` uses that interpreter instead (it must import
//! `cryptography` and `jwcrypto`). If Python cannot be provisioned the test fails and
//! says why: an interop test never skips silently.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Names an interpreter to use instead of the venv.
pub const PYTHON_ENV: &str = "KEYVAULT_TEST_PYTHON";

/// No helper call should take this long; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A virtualenv the tests make under the target dir from a pinned requirements file.
pub struct Venv {
    /// Its directory's name under the target dir (`interop-venv`, `python-venv`).
    pub name: &'static str,
    /// The pinned requirements, relative to the repository root.
    pub requirements: &'static str,
    /// A Python statement that must run in the finished venv (the imports it is for).
    pub check: &'static str,
}

/// The interop tests' venv: Python's `cryptography` and `jwcrypto`.
pub const INTEROP: Venv = Venv {
    name: "interop-venv",
    requirements: "tests/interop/requirements.txt",
    check: "import cryptography, jwcrypto",
};

/// The interpreter with the interop requirements installed; panics (failing the test)
/// with the reason if there is none.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(interop_python) {
        Ok(p) => p.clone(),
        Err(e) => panic!(
            "the interop tests need Python 3 with the packages of tests/interop/requirements.txt \
             and could not provision it: {e}\n\
             (they install them into target/interop-venv from PyPI; or set {PYTHON_ENV} to an \
             interpreter that imports cryptography and jwcrypto)"
        ),
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The source tree's `tests/interop` directory.
pub fn interop_dir() -> PathBuf {
    repo().join("tests/interop")
}

/// The directory `cargo` builds into (`target/`, or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// The interop venv (which benches/scripts/keyuse.sh reuses).
pub fn venv_dir() -> PathBuf {
    target_dir().join(INTEROP.name)
}

fn interop_python() -> Result<PathBuf, String> {
    if let Some(given) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        let python = PathBuf::from(given);
        check_imports(&python, INTEROP.check)
            .map_err(|e| format!("{PYTHON_ENV}={}: {e}", python.display()))?;
        return Ok(python);
    }
    Ok(provision(&INTEROP)?.join("bin/python"))
}

/// Makes `venv` (once: later tests, test binaries and runs reuse it) and returns its
/// directory. It is made under an exclusive `flock(2)` on `target/<name>.lock`, so test
/// binaries running at once make it once, and a killed run never leaves a lock behind.
/// `.ready` (holding the requirements it was made from) is written last: a venv without
/// it, or made from other requirements, is made again.
pub fn provision(venv: &Venv) -> Result<PathBuf, String> {
    let requirements_path = repo().join(venv.requirements);
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let target = target_dir();
    let dir = target.join(venv.name);
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    let is_ready =
        || fs::read_to_string(&ready).is_ok_and(|r| r == requirements) && python.exists();
    if is_ready() {
        return Ok(dir);
    }

    fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let lock_path = target.join(format!("{}.lock", venv.name));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have made it while this one waited for the lock.
    if is_ready() {
        return Ok(dir);
    }
    let log_path = target.join(format!("{}.log", venv.name));
    if let Err(e) = build_venv(&dir, venv, &log_path) {
        return Err(format!(
            "{e}\nlast lines of {}:\n{}",
            log_path.display(),
            tail(&log_path, 25)
        ));
    }
    check_imports(&python, venv.check)?;
    // Written last, and atomically: a venv without it is half made and is made again.
    let ready_tmp = dir.join(".ready.tmp");
    fs::write(&ready_tmp, &requirements)
        .and_then(|()| fs::rename(&ready_tmp, &ready))
        .map_err(|e| format!("cannot write {}: {e}", ready.display()))?;
    drop(lock);
    Ok(dir)
}

fn build_venv(dir: &Path, venv: &Venv, log_path: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir)
            .map_err(|e| format!("cannot remove the half-made {}: {e}", dir.display()))?;
    }
    let mut log = fs::File::create(log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(dir);
    run_step(
        &mut log,
        make,
        &format!("python3 -m venv target/{}", venv.name),
        "is Python 3 installed and on PATH? on Debian/Ubuntu the venv module is the python3-venv package",
    )?;
    let mut pip = Command::new(dir.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        // Wheels only: building `cryptography` or maturin from source needs a Rust and
        // an OpenSSL toolchain and many minutes; better to fail at once and say so.
        "--only-binary=:all:",
        "-r",
    ])
    .arg(repo().join(venv.requirements));
    run_step(
        &mut log,
        pip,
        &format!("pip install -r {}", venv.requirements),
        "does this machine reach PyPI?",
    )
}

/// Runs one provisioning step, its output appended to `log`.
pub fn run_step(
    log: &mut fs::File,
    mut cmd: Command,
    what: &str,
    hint: &str,
) -> Result<(), String> {
    let _ = writeln!(log, "$ {cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e} ({hint})"))?;
    let _ = log.write_all(&out.stdout);
    let _ = log.write_all(&out.stderr);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed with {:?} ({hint})",
            out.status.code()
        ))
    }
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn check_imports(python: &Path, check: &str) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-I", "-c", check])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot run `{check}`: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs `kv_interop.py` with `args` (file paths and options, never key bytes) and returns
/// its output, whatever it is.
pub fn py<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = assert_cmd::Command::new(python());
    cmd.arg("-I")
        .arg(interop_dir().join("kv_interop.py"))
        .args(args)
        .timeout(TIMEOUT);
    cmd.output().expect("run kv_interop.py")
}

/// Runs `kv_interop.py` with `args`, which must succeed; returns its stdout.
pub fn py_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let what: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = py(&args);
    assert!(
        out.status.success(),
        "python kv_interop.py {} failed with {:?}\nstdout: {}\nstderr: {}",
        what.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python's stdout is UTF-8")
}

/// Runs a `kv_interop.py` command that prints one JSON document, and parses it.
pub fn py_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let text = py_ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("python printed no JSON ({e}): {text}"))
}

/// `root/name` as a string argument (test paths are ASCII).
pub fn file_in(root: &Path, name: &str) -> String {
    root.join(name)
        .to_str()
        .expect("a test path is UTF-8")
        .to_string()
}
