//! The Python package (bindings/python): built with maturin into a venv and exercised
//! by its pytest suite (bindings/python/tests), against the real `keyvault` binary for
//! the agent path.
//!
//! `cargo test --locked` is the whole test command, so this test provisions Python
//! itself, as the interop tests do (`util::python::provision`): `target/python-venv`
//! with the pinned `bindings/python/tests/requirements.txt` (maturin, pytest,
//! cryptography) from PyPI, made once and reused. It then builds the wheel with
//! `maturin build --release --locked` into its own `CARGO_TARGET_DIR`
//! (`target/python-build`; incremental after the first run), installs it into the venv
//! and runs pytest, under an exclusive `flock(2)` on `target/python-build.lock`.
//!
//! Without `python3` or its `venv` module the test prints why and passes; with them,
//! any failure (PyPI unreachable, build error, failing pytest) fails it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::python::{Venv, provision, repo, run_step, tail, target_dir};

/// The package's test venv: maturin, pytest and `cryptography`.
const BINDINGS: Venv = Venv {
    name: "python-venv",
    requirements: "bindings/python/tests/requirements.txt",
    check: "import cryptography, pytest",
};

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
    run_step(
        log,
        maturin,
        "maturin build --release --locked",
        "see the log",
    )?;
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
    run_step(log, pip, "pip install the keyvault wheel", "see the log")
}

#[test]
fn python_package_passes_its_pytest_suite() {
    if let Err(why) = python3_with_venv() {
        eprintln!("SKIPPED python_package_passes_its_pytest_suite: {why}");
        return;
    }
    let target = target_dir();
    fs::create_dir_all(&target).expect("create the target dir");
    // One build and pytest run at a time (two `cargo test`s at once share target/).
    let lock_path = target.join("python-build.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the build lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock the build");

    let log_path = target.join("python-bindings.log");
    let mut log = fs::File::create(&log_path).expect("create the log");
    let started = Instant::now();
    let venv =
        provision(&BINDINGS).unwrap_or_else(|e| panic!("cannot provision the Python venv: {e}"));
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
