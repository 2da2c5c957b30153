//! The committed vaults of each released format (`tests/fixtures/vN/`, each described by
//! its README): copied into a test's private environment, never opened in place, and
//! driven with their own passphrase.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{TestEnv, assert_success, copy_dir, files_under, parse_json};

/// One committed fixture.
pub struct Fixture {
    /// `v1`, `v3`, `v4`: its directory under `tests/fixtures/`.
    pub version: &'static str,
    /// The passphrase its README gives.
    pub passphrase: &'static str,
}

impl Fixture {
    /// The fixture's directory.
    pub fn dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(self.version)
    }

    /// Every file of the fixture (vault, key material, data, README) with its bytes: a
    /// test compares them before and after, to show it changed nothing committed.
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        files_under(&self.dir())
            .into_iter()
            .map(|p| {
                let bytes = fs::read(&p).expect("read a fixture file");
                (p, bytes)
            })
            .collect()
    }

    /// A test env whose vault is a fresh copy of the fixture's.
    pub fn copy(&self) -> TestEnv {
        let env = TestEnv::new();
        copy_dir(&self.dir().join("vault"), &env.vault());
        env
    }

    /// Runs keyvault on `env`'s vault with the fixture's passphrase (from a file).
    pub fn run(&self, env: &TestEnv, args: &[&str]) -> Output {
        let pass = env.write_private("fixture-passphrase", self.passphrase.as_bytes());
        env.bare()
            .env("KEYVAULT_PASSPHRASE_FILE", pass)
            .args(args)
            .output()
            .expect("run keyvault")
    }

    /// [`Fixture::run`], which must succeed; its stdout.
    pub fn ok(&self, env: &TestEnv, args: &[&str]) -> Vec<u8> {
        let out = self.run(env, args);
        assert_success(&out, &args.join(" "));
        out.stdout
    }

    /// [`Fixture::ok`] with `--json`, parsed.
    pub fn json(&self, env: &TestEnv, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend(args);
        parse_json(&self.ok(env, &all), &args.join(" "))
    }

    /// A key file of the fixture's `keys/`, as text.
    pub fn known(&self, file: &str) -> String {
        fs::read_to_string(self.dir().join("keys").join(file)).expect("read a fixture key")
    }

    /// The path of a file of the fixture's `data/`.
    pub fn data(&self, file: &str) -> String {
        self.dir().join("data").join(file).display().to_string()
    }
}
