//! `Vault::generate_batch`: many keys in one atomic change and one flush.

use keyvault::crypto::kdf::KdfParams;
use keyvault::{Error, KeyType, Vault};

const FAST: KdfParams = KdfParams {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

#[test]
fn a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, b"pw", FAST, true).unwrap();
    let users: Vec<String> = (0..100).map(|i| format!("user{i}")).collect();
    let items: Vec<(&str, Option<&str>, KeyType)> = users
        .iter()
        .map(|u| (u.as_str(), None, KeyType::Fernet))
        .collect();
    let made = vault.generate_batch(&items).unwrap();
    assert_eq!(made.len(), 100);
    assert_eq!(vault.list(None).unwrap().len(), 100);
    let audit = vault.audit_entries(None).unwrap();
    let audit_before = audit.len();
    // One audit entry records the batch and names every key it made.
    let last = audit.last().unwrap();
    assert_eq!(last.operation, "gen");
    assert_eq!(last.user, None);
    let detail = last.detail.as_deref().unwrap();
    assert!(detail.starts_with("batch of 100 keys"), "{detail}");
    for user in &users {
        assert!(
            detail.contains(&format!("{user}/fernet (fernet)")),
            "{user} missing from {detail}"
        );
    }
    assert_eq!(
        audit.iter().filter(|e| e.operation == "gen").count(),
        1,
        "one entry for the whole batch"
    );

    // A batch for one user names that user; an empty batch writes nothing.
    let one = [
        ("solo", Some("a"), KeyType::Fernet),
        ("solo", Some("b"), KeyType::Aes256Gcm),
    ];
    vault.generate_batch(&one).unwrap();
    assert!(vault.generate_batch(&[]).unwrap().is_empty());
    let audit = vault.audit_entries(None).unwrap();
    assert_eq!(audit.len(), audit_before + 1);
    let last = audit.last().unwrap();
    assert_eq!(last.user.as_deref(), Some("solo"));
    assert_eq!(
        last.detail.as_deref(),
        Some("batch of 2 keys, version 1: solo/a (fernet), solo/b (aes256-gcm)")
    );
    let audit_before = audit.len();

    // A name twice in one batch: refused, nothing written.
    let dup = [("a", None, KeyType::Fernet), ("a", None, KeyType::Fernet)];
    assert!(matches!(
        vault.generate_batch(&dup),
        Err(Error::AlreadyExists(_))
    ));
    // A revoked user anywhere in the batch: the whole batch is refused.
    vault.revoke("mallory", None).unwrap();
    let mixed = [
        ("fresh", None, KeyType::Fernet),
        ("mallory", None, KeyType::Fernet),
    ];
    assert!(matches!(
        vault.generate_batch(&mixed),
        Err(Error::UserRevoked { .. })
    ));
    // An existing key anywhere in the batch: refused too.
    let existing = [
        ("fresh2", None, KeyType::Fernet),
        ("user7", None, KeyType::Fernet),
    ];
    match vault.generate_batch(&existing) {
        Err(Error::AlreadyExists(e)) => assert!(e.contains("user7"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(vault.list(None).unwrap().len(), 102);
    assert!(vault.key_info("fresh", "fernet").is_err());
    // Only the revoke was logged since.
    assert_eq!(vault.audit_entries(None).unwrap().len(), audit_before + 1);

    // Durable and whole after reopening; the audit chain holds.
    drop(vault);
    let vault = Vault::open(&path, b"pw").unwrap();
    assert_eq!(vault.list(None).unwrap().len(), 102);
    assert!(vault.check().unwrap().ok());
}

#[test]
fn a_long_batch_is_refused_whole_for_a_revoked_user_or_an_existing_key_in_either_half() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(&dir.path().join("v"), b"pw", FAST, true).unwrap();
    vault.generate("taken", None, KeyType::Fernet).unwrap();
    vault.revoke("mallory", None).unwrap();
    let audit_before = vault.audit_entries(None).unwrap().len();
    let users: Vec<String> = (0..300).map(|i| format!("bulk{i}")).collect();
    // Long batches are sealed on two threads: put the bad item first (first half) and
    // last (second half).
    for bad in ["mallory", "taken"] {
        for at_end in [false, true] {
            let mut items: Vec<(&str, Option<&str>, KeyType)> = users
                .iter()
                .map(|u| (u.as_str(), None, KeyType::Fernet))
                .collect();
            if at_end {
                items.push((bad, None, KeyType::Fernet));
            } else {
                items.insert(0, (bad, None, KeyType::Fernet));
            }
            match (bad, vault.generate_batch(&items)) {
                ("mallory", Err(Error::UserRevoked { user, .. })) => assert_eq!(user, "mallory"),
                ("taken", Err(Error::AlreadyExists(e))) => assert!(e.contains("taken"), "{e}"),
                (_, other) => panic!("{bad} at end {at_end}: {other:?}"),
            }
        }
    }
    assert_eq!(vault.list(None).unwrap().len(), 1);
    assert_eq!(vault.audit_entries(None).unwrap().len(), audit_before);

    // And the same batch without the bad item goes in whole, in order.
    let items: Vec<(&str, Option<&str>, KeyType)> = users
        .iter()
        .map(|u| (u.as_str(), None, KeyType::Fernet))
        .collect();
    let made = vault.generate_batch(&items).unwrap();
    let made_users: Vec<&str> = made.iter().map(|k| k.user.as_str()).collect();
    assert_eq!(
        made_users,
        users.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(vault.list(None).unwrap().len(), 301);
    assert!(vault.check().unwrap().ok());
}
