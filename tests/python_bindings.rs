//! The Python package (bindings/python): built with maturin into a venv and exercised
//! by its pytest suite (bindings/python/tests), against the real `keyvault` binary for
//! the agent path.
//!
//! `cargo test --locked` is the whole test command, so this test provisions Python
//! itself: it creates `target/python-venv` with `python3 -m venv`, installs the pinned
//! `bindings/python/tests/requirements.txt` (maturin, pytest, cryptography) from PyPI,
//! and writes `.ready` holding the requirements it was made from, so later runs reuse
//! it. It then builds the wheel with `maturin build --release --locked` with its own
//! `CARGO_TARGET_DIR` (`target/python-build`; incremental after the first run),
//! installs it into the venv, and runs pytest. The venv is made under an exclusive `flock(2)`, released by the kernel if the
//! test dies.
//!
//! Without `python3` or its `venv` module the test prints why and passes; with them,
//! any failure (PyPI unreachable, build error, failing pytest) fails it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory `cargo` builds into (`target/`, or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Whether `python3` with a working `venv` module is there.
fn python3_with_venv() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 has no usable venv module (on Debian/Ubuntu: the python3-venv package): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_step(log: &mut fs::File, mut cmd: Command, what: &str) -> Result<(), String> {
    let _ = writeln!(log, "$ {cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    let _ = log.write_all(&out.stdout);
    let _ = log.write_all(&out.stderr);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed with {:?}", out.status.code()))
    }
}

/// The venv with the pinned requirements; made once.
fn provision(log: &mut fs::File) -> Result<PathBuf, String> {
    let requirements_path = repo().join("bindings/python/tests/requirements.txt");
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
    let target = target_dir();
    let venv = target.join("python-venv");
    let ready = venv.join(".ready");
    let is_ready = || {
        fs::read_to_string(&ready).is_ok_and(|r| r == requirements)
            && venv.join("bin/python").exists()
    };
    if is_ready() {
        return Ok(venv);
    }
    if venv.exists() {
        fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove the half-made {}: {e}", venv.display()))?;
    }
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    run_step(log, make, "python3 -m venv target/python-venv")?;
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        // Wheels only: maturin and cryptography from source would need minutes.
        "--only-binary=:all:",
        "-r",
    ])
    .arg(&requirements_path);
    run_step(
        log,
        pip,
        "pip install -r bindings/python/tests/requirements.txt (does this machine reach PyPI?)",
    )?;
    let ready_tmp = venv.join(".ready.tmp");
    fs::write(&ready_tmp, &requirements)
        .and_then(|()| fs::rename(&ready_tmp, &ready))
        .map_err(|e| format!("cannot write {}: {e}", ready.display()))?;
    Ok(venv)
}

/// Builds the wheel and installs it into the venv (a wheel rather than `maturin
/// develop`, whose editable install would put the compiled module into the source tree).
fn build(log: &mut fs::File, venv: &Path) -> Result<(), String> {
    let mut path = std::ffi::OsString::from(venv.join("bin"));
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    let wheels = target_dir().join("python-wheels");
    if wheels.exists() {
        fs::remove_dir_all(&wheels)
            .map_err(|e| format!("cannot empty {}: {e}", wheels.display()))?;
    }
    let mut maturin = Command::new(venv.join("bin/maturin"));
    maturin
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(repo().join("bindings/python/Cargo.toml"))
        .arg("--interpreter")
        .arg(venv.join("bin/python"))
        .arg("--out")
        .arg(&wheels)
        .current_dir(repo())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir().join("python-build"));
    run_step(log, maturin, "maturin build --release --locked")?;
    let wheel = fs::read_dir(&wheels)
        .map_err(|e| format!("cannot read {}: {e}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("maturin left no wheel in {}", wheels.display()))?;
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
        "--force-reinstall",
    ])
    .arg(&wheel);
    run_step(log, pip, "pip install the keyvault wheel")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn python_package_passes_its_pytest_suite() {
    if let Err(why) = python3_with_venv() {
        eprintln!("SKIPPED python_package_passes_its_pytest_suite: {why}");
        return;
    }
    let target = target_dir();
    fs::create_dir_all(&target).expect("create the target dir");
    let lock_path = target.join("python-venv.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the venv lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock the venv");

    let log_path = target.join("python-bindings.log");
    let mut log = fs::File::create(&log_path).expect("create the log");
    let started = Instant::now();
    let venv = provision(&mut log).unwrap_or_else(|e| {
        panic!(
            "cannot provision the Python venv: {e}\nlast lines of {}:\n{}",
            log_path.display(),
            tail(&log_path, 30)
        )
    });
    let provisioned = started.elapsed();
    build(&mut log, &venv).unwrap_or_else(|e| {
        panic!(
            "cannot build the Python package: {e}\nlast lines of {}:\n{}",
            log_path.display(),
            tail(&log_path, 40)
        )
    });
    let built = started.elapsed();

    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(repo().join("bindings/python/tests"))
        .current_dir(repo())
        .env("KEYVAULT_BIN", env!("CARGO_BIN_EXE_keyvault"))
        .env_remove("KEYVAULT_PASSPHRASE")
        .env_remove("KEYVAULT_PASSPHRASE_FILE")
        .env_remove("KEYVAULT_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "python bindings: venv ready after {:.1?}, extension built after {:.1?}, pytest done after {:.1?}",
        provisioned,
        built,
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "pytest failed with {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    // A run that collected nothing is no pass.
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "pytest ran no test, or skipped some:\n{stdout}"
    );
    drop(lock);
}
