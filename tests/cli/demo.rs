//! `keyvault demo`: the prototype's scenario on a temporary vault it removes.

use crate::util::{TestEnv, assert_success, parse_json};

const PROTOTYPE: [&str; 6] = [
    "Stored symmetric key for User123",
    "Stored private key for User123",
    "Stored public key for User123",
    "Revoked all keys for User123",
    "Revoked Keys List:",
    "- User123",
];

fn assert_tmp_is_empty(env: &TestEnv) {
    let left: Vec<_> = std::fs::read_dir(env.tmp())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "demo left {left:?} behind in TMPDIR");
}

#[test]
fn demo_prints_the_prototype_lines_and_leaves_no_vault_behind() {
    let env = TestEnv::new();
    // No passphrase of any kind, and no terminal: the demo must not ask.
    let out = env.bare().arg("demo").output().unwrap();
    assert_success(&out, "demo");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let found = lines
        .windows(PROTOTYPE.len())
        .any(|w| w == PROTOTYPE.as_slice());
    assert!(
        found,
        "the six prototype lines are not there, contiguous:\n{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert_tmp_is_empty(&env);
    // It never touched the user's vault.
    assert!(!env.vault().exists());
    assert!(!env.data_home().join("keyvault").exists());
}

#[test]
fn demo_json() {
    let env = TestEnv::new();
    let out = env.bare().args(["--json", "demo"]).output().unwrap();
    assert_success(&out, "demo --json");
    let d = parse_json(&out.stdout, "demo --json");
    assert_eq!(d["prototype_output"], serde_json::json!(PROTOTYPE), "{d}");
    assert_eq!(d["removed"], true);
    assert_tmp_is_empty(&env);
    assert!(!env.vault().exists());
}
