//! The prototype's user story, one-shot (each command opens the vault itself), run under
//! each way of naming the vault (`KEYVAULT_PATH`, `--vault`), of passing the passphrase
//! (`KEYVAULT_PASSPHRASE_FILE`, `--passphrase-file`, `KEYVAULT_PASSPHRASE`) and of
//! output (text, `--json`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde_json::Value;
use sha2::Digest as _;

use crate::util::{
    FAST_KDF, PASSPHRASE, TestEnv, assert_error, assert_success, parse_json, pem_body, pkcs8_pem,
    rsa_key,
};

#[derive(Clone, Copy, Debug)]
enum VaultVia {
    /// `KEYVAULT_PATH`
    Env,
    /// `--vault DIR`
    Flag,
}

#[derive(Clone, Copy, Debug)]
enum PassVia {
    /// `KEYVAULT_PASSPHRASE_FILE`
    EnvFile,
    /// `--passphrase-file FILE`
    FlagFile,
    /// `KEYVAULT_PASSPHRASE`
    EnvVar,
}

#[derive(Clone, Copy, Debug)]
struct How {
    json: bool,
    vault: VaultVia,
    pass: PassVia,
    /// Global options after the subcommand's arguments instead of before.
    globals_last: bool,
}

/// The RSA-3072 key that `alice` imports, made once per test binary (it is slow).
fn alice_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_key(3072))
}

struct Story {
    env: TestEnv,
    how: How,
    vault: PathBuf,
}

impl Story {
    fn new(how: How) -> Story {
        let env = TestEnv::new();
        let vault = match how.vault {
            VaultVia::Env => env.vault(),
            VaultVia::Flag => env.root().join("flagged-vault"),
        };
        Story { env, how, vault }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.bare();
        let mut globals: Vec<OsString> = Vec::new();
        match self.how.vault {
            VaultVia::Env => {
                cmd.env("KEYVAULT_PATH", &self.vault);
            }
            VaultVia::Flag => {
                cmd.env_remove("KEYVAULT_PATH");
                globals.push("--vault".into());
                globals.push(self.vault.clone().into());
            }
        }
        match self.how.pass {
            PassVia::EnvFile => {
                cmd.env("KEYVAULT_PASSPHRASE_FILE", self.env.passphrase_file());
            }
            PassVia::FlagFile => {
                globals.push("--passphrase-file".into());
                globals.push(self.env.passphrase_file().into());
            }
            PassVia::EnvVar => {
                cmd.env("KEYVAULT_PASSPHRASE", PASSPHRASE);
            }
        }
        if self.how.json {
            globals.push("--json".into());
        }
        let args = args.iter().map(OsString::from);
        if self.how.globals_last {
            cmd.args(args).args(globals);
        } else {
            cmd.args(globals).args(args);
        }
        cmd.output().expect("run keyvault")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_success(
            &out,
            &format!("{:?}: keyvault {}", self.how, args.join(" ")),
        );
        out
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args).stdout).expect("UTF-8 stdout")
    }

    fn doc(&self, args: &[&str]) -> Value {
        assert!(self.how.json);
        parse_json(&self.ok(args).stdout, &args.join(" "))
    }
}

fn names(keys: &Value) -> Vec<(String, String, String)> {
    keys.as_array()
        .expect("a key array")
        .iter()
        .map(|k| {
            (
                k["user"].as_str().unwrap().to_string(),
                k["name"].as_str().unwrap().to_string(),
                k["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn triple(user: &str, name: &str, ty: &str) -> (String, String, String) {
    (user.to_string(), name.to_string(), ty.to_string())
}

fn spki_fingerprint(spki_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(sha2::Sha256::digest(spki_der))
    )
}

/// The whole story of the issue; checks text or JSON output as `how` says.
fn user_story(how: How) {
    let s = Story::new(how);
    let key_file = s
        .env
        .write_private("key.pem", pkcs8_pem(alice_key()).as_bytes());
    let key_file = key_file.to_str().unwrap();

    // init
    let mut init: Vec<&str> = vec!["init"];
    init.extend(FAST_KDF);
    if how.json {
        let d = s.doc(&init);
        assert_eq!(d["created"], s.vault.display().to_string());
        assert_eq!(
            d["format_version"],
            keyvault::store::migrate::CURRENT_FORMAT
        );
        assert_eq!(d["kdf"]["memory_kib"], 1024);
        assert_eq!(d["kdf"]["iterations"], 1);
        assert_eq!(d["kdf"]["parallelism"], 1);
    } else {
        let t = s.text(&init);
        assert!(t.contains("Created a vault at"), "{t}");
    }
    assert!(
        s.vault.join("header").is_file(),
        "no vault at {}",
        s.vault.display()
    );

    // gen: fernet by default, named "fernet"; never prints the secret.
    let gen_fernet = s.text(&["gen", "User123"]);
    if how.json {
        let d: Value = serde_json::from_str(&gen_fernet).unwrap();
        assert_eq!(d["user"], "User123");
        assert_eq!(d["name"], "fernet");
        assert_eq!(d["type"], "fernet");
        assert_eq!(d["primary_version"], 1);
        assert_eq!(d["public_only"], false);
        assert!(d["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
        assert_eq!(d["id"].as_str().unwrap().len(), 32);
    } else {
        assert!(
            gen_fernet.contains("Stored fernet key \"fernet\" for User123"),
            "{gen_fernet}"
        );
        assert!(gen_fernet.contains("fingerprint: SHA256:"), "{gen_fernet}");
    }

    // gen --type rsa-2048
    let gen_rsa = s.text(&["gen", "User123", "--type", "rsa-2048"]);
    if how.json {
        let d: Value = serde_json::from_str(&gen_rsa).unwrap();
        assert_eq!(d["name"], "rsa-2048");
        assert_eq!(d["type"], "rsa-2048");
    } else {
        assert!(
            gen_rsa.contains("Stored rsa-2048 key \"rsa-2048\" for User123"),
            "{gen_rsa}"
        );
    }
    assert!(!gen_rsa.contains("PRIVATE KEY"), "{gen_rsa}");

    // import of an RSA-3072 PKCS#8 PEM
    let imported = s.text(&[
        "import",
        "alice",
        "backup-key",
        "--type",
        "rsa-3072",
        "--file",
        key_file,
    ]);
    let alice_spki = {
        use rsa::pkcs8::EncodePublicKey;
        alice_key()
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    if how.json {
        let d: Value = serde_json::from_str(&imported).unwrap();
        assert_eq!(d["user"], "alice");
        assert_eq!(d["name"], "backup-key");
        assert_eq!(d["type"], "rsa-3072");
        assert_eq!(d["fingerprint"], spki_fingerprint(&alice_spki));
    } else {
        assert!(
            imported.contains("Imported rsa-3072 key \"backup-key\" for alice"),
            "{imported}"
        );
        assert!(
            imported.contains(&spki_fingerprint(&alice_spki)),
            "{imported}"
        );
    }

    // list; list USER
    if how.json {
        let all = s.doc(&["list"]);
        assert_eq!(
            names(&all["keys"]),
            vec![
                triple("User123", "fernet", "fernet"),
                triple("User123", "rsa-2048", "rsa-2048"),
                triple("alice", "backup-key", "rsa-3072"),
            ]
        );
        for k in all["keys"].as_array().unwrap() {
            assert_eq!(k["versions"].as_array().unwrap().len(), 1);
            assert_eq!(k["versions"][0]["version"], 1);
            assert_eq!(k["versions"][0]["state"], "primary");
        }
        let one = s.doc(&["list", "User123"]);
        assert_eq!(
            names(&one["keys"]),
            vec![
                triple("User123", "fernet", "fernet"),
                triple("User123", "rsa-2048", "rsa-2048"),
            ]
        );
    } else {
        let all = s.text(&["list"]);
        let header = all.lines().next().unwrap();
        for col in ["USER", "NAME", "TYPE", "VERSIONS", "CREATED", "FINGERPRINT"] {
            assert!(header.contains(col), "{all}");
        }
        assert_eq!(all.lines().count(), 4, "{all}");
        assert!(all.contains("backup-key"), "{all}");
        assert!(all.contains("rsa-3072"), "{all}");
        let one = s.text(&["list", "User123"]);
        assert_eq!(one.lines().count(), 3, "{one}");
        assert!(!one.contains("alice"), "{one}");
        assert!(one.contains("rsa-2048") && one.contains("fernet"), "{one}");
    }

    // export --public: an SPKI PEM, whose fingerprint is the one gen printed.
    let public_pem = if how.json {
        let d = s.doc(&["export", "User123", "rsa-2048", "--public"]);
        assert_eq!(d["user"], "User123");
        assert_eq!(d["name"], "rsa-2048");
        d["material"].as_str().unwrap().to_string()
    } else {
        s.text(&["export", "User123", "rsa-2048", "--public"])
    };
    assert!(
        public_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{public_pem}"
    );
    let public = rsa::PublicKey::from_public_key_pem(&public_pem).expect("an SPKI PEM");
    assert_eq!(rsa::traits::PublicKeyParts::size(&public), 256);
    assert!(
        gen_rsa.contains(&spki_fingerprint(&pem_body(&public_pem))),
        "gen printed another fingerprint than the exported key's: {gen_rsa}"
    );

    // export fernet: url-safe base64 of 32 bytes, that Fernet takes.
    let fernet_text = if how.json {
        s.doc(&["export", "User123", "fernet"])["material"]
            .as_str()
            .unwrap()
            .to_string()
    } else {
        s.text(&["export", "User123", "fernet"])
    };
    let fernet_key = fernet_text.trim();
    assert_eq!(fernet_key.len(), 44, "{fernet_key:?}");
    assert!(
        !fernet_key.contains(['+', '/']),
        "not url-safe: {fernet_key}"
    );
    assert_eq!(
        URL_SAFE.decode(fernet_key).expect("url-safe base64").len(),
        32
    );
    let f = fernet::Fernet::new(fernet_key).expect("Fernet takes the exported key");
    let token = f.encrypt(b"hello");
    assert_eq!(f.decrypt(&token).unwrap(), b"hello");
    assert!(!gen_fernet.contains(fernet_key), "gen printed the secret");

    // export of the imported key gives back the same private key.
    let alice_pem = if how.json {
        s.doc(&["export", "alice", "backup-key"])["material"]
            .as_str()
            .unwrap()
            .to_string()
    } else {
        s.text(&["export", "alice", "backup-key"])
    };
    assert!(
        alice_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{alice_pem}"
    );
    let back = rsa::PrivateKey::from_pkcs8_pem(&alice_pem).expect("a PKCS#8 PEM");
    assert!(
        back == *alice_key(),
        "the exported key is not the imported one"
    );

    // the listing shows no secret
    let listing = s.text(&["list"]);
    assert!(!listing.contains(fernet_key));
    assert!(!listing.contains("PRIVATE KEY"));

    // delete
    let deleted = s.text(&["delete", "User123", "fernet"]);
    if how.json {
        let d: Value = serde_json::from_str(&deleted).unwrap();
        assert_eq!(d["deleted"]["user"], "User123");
        assert_eq!(d["deleted"]["name"], "fernet");
        assert_eq!(
            names(&s.doc(&["list", "User123"])["keys"]),
            vec![triple("User123", "rsa-2048", "rsa-2048")]
        );
    } else {
        assert!(
            deleted.contains("Deleted fernet key \"fernet\" of User123"),
            "{deleted}"
        );
        let one = s.text(&["list", "User123"]);
        assert!(!one.contains("fernet"), "{one}");
    }
    let gone = s.run(&["export", "User123", "fernet"]);
    assert_error(&gone, 5, "export of a deleted key");

    // revoke with a reason: destroys the remaining key, prints a receipt.
    let receipt = s.text(&["revoke", "User123", "--reason", "laptop stolen"]);
    if how.json {
        let d: Value = serde_json::from_str(&receipt).unwrap();
        assert_eq!(d["already_revoked"], false);
        assert_eq!(d["receipt"]["user"], "User123");
        assert_eq!(d["receipt"]["reason"], "laptop stolen");
        let destroyed = d["receipt"]["destroyed"].as_array().unwrap();
        assert_eq!(destroyed.len(), 1);
        assert_eq!(destroyed[0]["name"], "rsa-2048");
        assert_eq!(destroyed[0]["type"], "rsa-2048");
        assert_eq!(destroyed[0]["versions"], serde_json::json!([1]));
        assert!(gen_rsa.contains(destroyed[0]["fingerprint"].as_str().unwrap()));
    } else {
        assert!(receipt.contains("Revoked User123 at"), "{receipt}");
        assert!(receipt.contains("reason: laptop stolen"), "{receipt}");
        assert!(receipt.contains("destroyed keys: 1"), "{receipt}");
        assert!(receipt.contains("rsa-2048"), "{receipt}");
    }

    // is-revoked: exit 0 "revoked" / exit 1 "not revoked"
    let yes = s.run(&["is-revoked", "User123"]);
    assert_eq!(yes.status.code(), Some(0), "{yes:?}");
    let no = s.run(&["is-revoked", "alice"]);
    assert_eq!(no.status.code(), Some(1), "{no:?}");
    if how.json {
        let y = parse_json(&yes.stdout, "is-revoked");
        assert_eq!(y["user"], "User123");
        assert_eq!(y["revoked"], true);
        assert_eq!(y["revocation"]["reason"], "laptop stolen");
        let n = parse_json(&no.stdout, "is-revoked");
        assert_eq!(n["revoked"], false);
        assert_eq!(n["revocation"], Value::Null);
    } else {
        assert_eq!(String::from_utf8_lossy(&yes.stdout), "revoked\n");
        assert_eq!(String::from_utf8_lossy(&no.stdout), "not revoked\n");
    }

    // revoked
    if how.json {
        let d = s.doc(&["revoked"]);
        let list = d["revoked"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["user"], "User123");
        assert_eq!(list[0]["reason"], "laptop stolen");
        assert!(list[0]["revoked_at"].as_str().unwrap().ends_with('Z'));
    } else {
        let t = s.text(&["revoked"]);
        assert_eq!(t.lines().count(), 1, "{t}");
        assert!(t.starts_with("User123 "), "{t}");
        assert!(t.contains("laptop stolen"), "{t}");
    }

    // a revoked user gets no new key
    for refused in [
        &["gen", "User123"][..],
        &["gen", "User123", "--type", "aes256-gcm", "--name", "other"][..],
        &[
            "import", "User123", "k", "--type", "rsa-3072", "--file", key_file,
        ][..],
    ] {
        let out = s.run(refused);
        let err = assert_error(&out, 6, &refused.join(" "));
        assert!(err.contains("\"User123\" was revoked at"), "{err}");
        if how.json {
            let d = parse_json(&out.stdout, "an error");
            assert_eq!(d["error"]["code"], 6);
            assert!(
                d["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("\"User123\" was revoked at")
            );
        }
    }

    // the revoked user keeps no key, and listing them says they are revoked; alice is
    // untouched
    let out = s.run(&["list", "User123"]);
    let err = assert_error(&out, 6, "list of a revoked user");
    assert!(err.contains("\"User123\" was revoked at"), "{err}");
    if how.json {
        assert_eq!(
            names(&s.doc(&["list"])["keys"]),
            vec![triple("alice", "backup-key", "rsa-3072")]
        );
    }

    // status
    if how.json {
        let d = s.doc(&["status"]);
        assert_eq!(d["state"], "locked");
        assert_eq!(d["path"], s.vault.display().to_string());
        assert_eq!(
            d["format_version"],
            keyvault::store::migrate::CURRENT_FORMAT
        );
        assert_eq!(d["users"], 1);
        assert_eq!(d["keys"], 1);
        assert_eq!(d["revoked_users"], 1);
    } else {
        let t = s.text(&["status"]);
        for line in [
            "state:          locked".to_string(),
            format!("vault:          {}", s.vault.display()),
            format!(
                "format version: {}",
                keyvault::store::migrate::CURRENT_FORMAT
            ),
            "users:          1".to_string(),
            "keys:           1".to_string(),
            "revoked users:  1".to_string(),
        ] {
            assert!(t.lines().any(|l| l == line), "no {line:?} in\n{t}");
        }
    }

    // completions
    let script = s.text(&["completions", "bash"]);
    assert!(script.contains("complete -F _keyvault"), "{script}");
    for sub in ["init", "gen", "import", "export", "revoke", "is-revoked"] {
        assert!(script.contains(sub), "no {sub} in the bash completions");
    }

    // Only the named vault was written: nothing at the default path or at the other
    // way of naming the vault.
    assert!(!s.env.data_home().join("keyvault").exists());
    assert!(!s.env.home().join(".local").exists());
    if let VaultVia::Flag = how.vault {
        assert!(!s.env.vault().exists());
    }
}

#[test]
fn story_text_keyvault_path_passphrase_file_env() {
    user_story(How {
        json: false,
        vault: VaultVia::Env,
        pass: PassVia::EnvFile,
        globals_last: false,
    });
}

#[test]
fn story_json_vault_flag_passphrase_file_flag() {
    user_story(How {
        json: true,
        vault: VaultVia::Flag,
        pass: PassVia::FlagFile,
        globals_last: false,
    });
}

#[test]
fn story_json_keyvault_path_passphrase_env() {
    user_story(How {
        json: true,
        vault: VaultVia::Env,
        pass: PassVia::EnvVar,
        globals_last: true,
    });
}

#[test]
fn story_text_vault_flag_passphrase_env_globals_after_subcommand() {
    user_story(How {
        json: false,
        vault: VaultVia::Flag,
        pass: PassVia::EnvVar,
        globals_last: true,
    });
}

#[test]
fn story_text_vault_flag_passphrase_file_flag_globals_after_subcommand() {
    user_story(How {
        json: false,
        vault: VaultVia::Flag,
        pass: PassVia::FlagFile,
        globals_last: true,
    });
}

#[test]
fn story_json_keyvault_path_passphrase_file_env() {
    user_story(How {
        json: true,
        vault: VaultVia::Env,
        pass: PassVia::EnvFile,
        globals_last: false,
    });
}

#[test]
fn without_vault_or_keyvault_path_the_vault_is_in_the_xdg_data_dir() {
    let env = TestEnv::new();
    let out = env
        .kv()
        .env_remove("KEYVAULT_PATH")
        .arg("init")
        .args(FAST_KDF)
        .output()
        .unwrap();
    assert_success(&out, "init at the default path");
    let default = env.data_home().join("keyvault").join("default");
    assert!(default.join("header").is_file(), "no vault at {default:?}");
    assert!(!env.vault().exists());
    let out = env
        .kv()
        .env_remove("KEYVAULT_PATH")
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert_success(&out, "status at the default path");
    assert_eq!(
        parse_json(&out.stdout, "status")["path"],
        default.display().to_string()
    );
}

#[test]
fn passphrase_file_flag_wins_over_the_environment() {
    let env = TestEnv::new();
    env.init();
    let wrong = env.write_private("wrong", b"not the passphrase\n");
    // --passphrase-file beats KEYVAULT_PASSPHRASE_FILE and KEYVAULT_PASSPHRASE.
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE_FILE", &wrong)
        .env("KEYVAULT_PASSPHRASE", "not the passphrase either")
        .arg("--passphrase-file")
        .arg(env.passphrase_file())
        .args(["gen", "User123"])
        .output()
        .unwrap();
    assert_success(&out, "gen with --passphrase-file");
    // KEYVAULT_PASSPHRASE_FILE beats KEYVAULT_PASSPHRASE.
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE_FILE", env.passphrase_file())
        .env("KEYVAULT_PASSPHRASE", "not the passphrase")
        .args(["list"])
        .output()
        .unwrap();
    assert_success(&out, "list with KEYVAULT_PASSPHRASE_FILE");
    // And each is really read: a wrong one fails.
    let out = env
        .bare()
        .env("KEYVAULT_PASSPHRASE", PASSPHRASE)
        .arg("--passphrase-file")
        .arg(&wrong)
        .args(["list"])
        .output()
        .unwrap();
    assert_error(&out, 3, "a wrong --passphrase-file");
}
