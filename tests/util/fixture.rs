//! The committed vaults of each released format (`tests/fixtures/vN/`, each described by
//! its README): copied into a test's private environment, never opened in place, and
//! driven with their own passphrase.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::{TestEnv, assert_error, assert_success, copy_dir, files_under, parse_json, pem_body};

/// A key of a fixture: user, name, type, public only, primary version, and each version
/// as (number, state, fingerprint, uses), as keyvault listed them when the fixture was
/// made.
pub type FixtureKey = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    u64,
    &'static [(u64, &'static str, &'static str, u64)],
);

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

    /// `list --json` shows exactly `keys`: every key, type, version, fingerprint and use
    /// count, in order.
    pub fn check_listing(&self, env: &TestEnv, keys: &[FixtureKey]) {
        let listed = self.json(env, &["list"]);
        let got: Vec<String> = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let versions: Vec<String> = k["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {} {} {}",
                            v["version"], v["state"], v["fingerprint"], v["uses"]
                        )
                    })
                    .collect();
                format!(
                    "{} {} {} {} {} [{}]",
                    k["user"],
                    k["name"],
                    k["type"],
                    k["public_only"],
                    k["primary_version"],
                    versions.join(", ")
                )
            })
            .collect();
        let want: Vec<String> = keys
            .iter()
            .map(|(user, name, ty, public, primary, versions)| {
                let versions: Vec<String> = versions
                    .iter()
                    .map(|(n, state, fp, uses)| format!("{n} \"{state}\" \"{fp}\" {uses}"))
                    .collect();
                format!(
                    "\"{user}\" \"{name}\" \"{ty}\" {public} {primary} [{}]",
                    versions.join(", ")
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    /// Checks what the v3 and v4 fixtures both hold (their READMEs give the same
    /// commands): every key exports its known material, what was encrypted and signed
    /// when the fixture was made decrypts and verifies, and bob's revocation stands with
    /// its receipt.
    pub fn check_shared_content(&self, env: &TestEnv) {
        // exports: the exact known material
        let text = |args: &[&str]| String::from_utf8(self.ok(env, args)).unwrap();
        assert_eq!(
            text(&["export", "User123", "fernet"]),
            self.known("user123-fernet.key")
        );
        assert_eq!(
            self.ok(env, &["export", "User123", "fernet", "--format", "der"]),
            (0x00..0x20).collect::<Vec<u8>>()
        );
        assert_eq!(
            text(&["export", "User123", "aes256-gcm"]),
            self.known("user123-aes256-gcm.key")
        );
        assert_eq!(
            text(&["export", "alice", "chacha"]),
            self.known("alice-chacha-v3.key")
        );
        assert_eq!(
            text(&["export", "alice", "chacha", "--version", "3"]),
            self.known("alice-chacha-v3.key")
        );
        assert_eq!(
            text(&["export", "alice", "chacha", "--version", "1"]),
            self.known("alice-chacha.key")
        );
        assert_error(
            &self.run(env, &["export", "alice", "chacha", "--version", "2"]),
            5,
            "export of the deleted version 2",
        );
        assert_eq!(
            text(&["export", "alice", "signing"]),
            self.known("alice-signing.pem")
        );
        assert_eq!(
            self.ok(env, &["export", "alice", "signing", "--format", "der"]),
            pem_body(&self.known("alice-signing.pem"))
        );
        assert_eq!(
            text(&["export", "alice", "signing", "--public"]),
            self.known("alice-signing.pub.pem")
        );
        assert_eq!(
            text(&["export", "carol", "verify", "--public"]),
            self.known("alice-signing.pub.pem")
        );
        assert_eq!(
            text(&["export", "dave", "generated"]),
            self.known("dave-generated.key")
        );
        assert_eq!(
            text(&["export", "erin", "signing"]),
            self.known("erin-ed25519.pem")
        );
        let mut erin_der = pem_body(&self.known("erin-ed25519.pem"));
        assert_eq!(
            self.ok(env, &["export", "erin", "signing", "--format", "der"]),
            erin_der
        );
        assert_eq!(
            erin_der.split_off(erin_der.len() - 32),
            (0x80..0xa0).collect::<Vec<u8>>()
        );
        assert_eq!(
            text(&["export", "erin", "signing", "--public"]),
            self.known("erin-ed25519.pub.pem")
        );

        // What the format 3 keyvault encrypted and signed still decrypts and verifies.
        let message = fs::read(self.dir().join("data/message.txt")).unwrap();
        for (user, name, file) in [
            ("User123", "fernet", "message.fernet"),
            ("User123", "aes256-gcm", "message.aes256-gcm"),
        ] {
            assert_eq!(
                self.ok(env, &["decrypt", user, name, "--in", &self.data(file)]),
                message,
                "decrypt {file}"
            );
        }
        for (user, name, sig) in [
            ("alice", "signing", "message.rsa-pss.sig"),
            ("carol", "verify", "message.rsa-pss.sig"),
            ("erin", "signing", "message.ed25519.sig"),
        ] {
            let args = [
                "verify",
                user,
                name,
                "--signature",
                &self.data(sig),
                "--in",
                &self.data("message.txt"),
            ];
            assert_eq!(
                self.run(env, &args).status.code(),
                Some(0),
                "{}",
                args.join(" ")
            );
        }

        // the revocation
        let revoked = self.json(env, &["revoked"]);
        let list = revoked["revoked"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{revoked}");
        assert_eq!(list[0]["user"], "bob");
        assert_eq!(list[0]["reason"], "fixture: bob left");
        let mut destroyed: Vec<(&str, &str)> = list[0]["destroyed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].as_str().unwrap(), d["type"].as_str().unwrap()))
            .collect();
        destroyed.sort_unstable();
        assert_eq!(destroyed, vec![("backup", "fernet"), ("fernet", "fernet")]);
        let out = self.run(env, &["is-revoked", "bob"]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "revoked\n");
        let out = self.run(env, &["is-revoked", "alice"]);
        assert_eq!(out.status.code(), Some(1));
    }
}
