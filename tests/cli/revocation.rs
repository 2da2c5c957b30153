//! Revocation as README says: it destroys every key of the user, records time and
//! reason (also for a user with no keys), and a second revocation reports the first.

use crate::util::{TestEnv, assert_error};

#[test]
fn revoking_a_user_with_no_keys_still_records_the_revocation() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "alice"]);

    let receipt = env.ok(["revoke", "ghost", "--reason", "never had keys"]);
    assert!(receipt.contains("Revoked ghost at"), "{receipt}");
    assert!(receipt.contains("reason: never had keys"), "{receipt}");
    assert!(receipt.contains("destroyed keys: 0"), "{receipt}");

    let out = env.run(["is-revoked", "ghost"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "revoked\n");

    let revoked = env.json(["revoked"]);
    let list = revoked["revoked"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{revoked}");
    assert_eq!(list[0]["user"], "ghost");
    assert_eq!(list[0]["reason"], "never had keys");
    assert_eq!(list[0]["destroyed"], serde_json::json!([]));

    let status = env.json(["status"]);
    assert_eq!(status["revoked_users"], 1);
    assert_eq!(status["users"], 1);
    assert_eq!(status["keys"], 1);

    // The revocation holds: no key for ghost, ever.
    let before = env.snapshot();
    for args in [
        &["gen", "ghost"][..],
        &["gen", "ghost", "--type", "rsa-2048"][..],
    ] {
        let err = assert_error(&env.run(args), 6, "gen for a revoked user");
        assert!(err.contains("\"ghost\" was revoked at"), "{err}");
    }
    assert_eq!(env.snapshot(), before);
    // alice is untouched
    assert_eq!(env.json(["list", "alice"])["keys"][0]["name"], "fernet");
}

#[test]
fn revoking_twice_reports_already_revoked_and_keeps_the_first_receipt() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["gen", "bob", "--type", "aes256-gcm"]);

    let first = env.json(["revoke", "bob", "--reason", "first reason"]);
    assert_eq!(first["already_revoked"], false);
    assert_eq!(first["receipt"]["destroyed"].as_array().unwrap().len(), 2);

    let before = env.snapshot();
    let again = env.ok(["revoke", "bob", "--reason", "second reason"]);
    assert!(again.contains("bob was already revoked at"), "{again}");
    assert!(again.contains("reason: first reason"), "{again}");
    let again = env.json(["revoke", "bob"]);
    assert_eq!(again["already_revoked"], true);
    assert_eq!(again["receipt"], first["receipt"]);
    assert_eq!(
        env.snapshot(),
        before,
        "a second revocation changed the vault"
    );

    let list = env.json(["revoked"]);
    assert_eq!(list["revoked"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["revoked"][0]["reason"], "first reason");
}

#[test]
fn revoke_without_a_reason() {
    let env = TestEnv::new();
    env.init();
    let receipt = env.json(["revoke", "carol"]);
    assert_eq!(receipt["receipt"]["reason"], serde_json::Value::Null);
    let text = env.ok(["revoked"]);
    assert!(text.starts_with("carol "), "{text}");
    assert!(text.trim_end().ends_with(" -"), "{text}");
    let none = env.run(["is-revoked", "dave"]);
    assert_eq!(none.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&none.stdout), "not revoked\n");
}

#[test]
fn an_empty_vault_lists_nothing() {
    let env = TestEnv::new();
    env.init();
    assert_eq!(env.ok(["list"]), "no keys\n");
    assert_eq!(env.ok(["revoked"]), "no revoked users\n");
    assert_eq!(env.json(["list"])["keys"], serde_json::json!([]));
    assert_eq!(env.json(["revoked"])["revoked"], serde_json::json!([]));
    let out = env.run(["is-revoked", "anyone"]);
    assert_eq!(out.status.code(), Some(1));
}
