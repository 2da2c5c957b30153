//! The agent compacts a vault whose files have grown past three times its records, on
//! its own, once nobody has used it for a moment (the bound on the vault
//! directory's size; `agent::upkeep`). Driven through the real binary and agent.

use std::time::{Duration, Instant};

use crate::util::{PASSPHRASE, TestEnv};
use keyvault::agent::upkeep::{MAX_SPACE_RATIO, MIN_BYTES};
use keyvault::vault::lifecycle::dir_size;
use keyvault::{KeyType, Vault};

/// Fills the vault with one-key gens (one sled transaction each, as through the agent)
/// until its files are over the agent's floor and over the ratio. Returns the key count.
fn bloat(env: &TestEnv) -> usize {
    let vault = Vault::open(&env.vault(), PASSPHRASE.as_bytes()).expect("open");
    vault.set_deferred_flush(true);
    let mut made = 0;
    loop {
        for _ in 0..1000 {
            vault
                .generate(&format!("u{made}"), None, KeyType::Fernet)
                .expect("gen");
            made += 1;
        }
        vault.flush().expect("flush");
        let space = vault.space_use().expect("space use");
        if space.on_disk > MIN_BYTES + (4 << 20) && space.ratio() > MAX_SPACE_RATIO + 0.2 {
            return made;
        }
        assert!(
            made < 200_000,
            "the files never grew past the ratio: {space:?}"
        );
    }
}

fn automatic_compactions(env: &TestEnv) -> Vec<String> {
    let doc = env.json(["audit"]);
    doc.as_array()
        .or_else(|| doc["entries"].as_array())
        .expect("audit entries")
        .iter()
        .filter(|e| e["operation"] == "compact")
        .filter_map(|e| e["detail"].as_str().map(str::to_string))
        .filter(|d| d.contains("automatic"))
        .collect()
}

#[test]
fn an_idle_agent_compacts_a_bloated_vault_and_keeps_every_key() {
    let env = TestEnv::new();
    env.init();
    let keys = bloat(&env);
    let before = Vault::open(&env.vault(), PASSPHRASE.as_bytes())
        .expect("open")
        .space_use()
        .expect("space");
    assert!(before.ratio() > MAX_SPACE_RATIO, "{before:?}");

    env.ok(["unlock", "--timeout", "120s"]);
    // Watch the files, not the agent: every request would restart its quiet period.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dir_size(&env.vault()) >= before.on_disk {
        assert!(
            Instant::now() < deadline,
            "the agent did not compact a vault at {:.1}× its records",
            before.ratio()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let details = automatic_compactions(&env);
    assert_eq!(details.len(), 1, "one compaction: {details:?}");
    assert!(
        details[0].contains("(automatic: the files were") && details[0].contains(" records, "),
        "{details:?}"
    );

    // Every key is still there and usable through the agent.
    let listed = env.json(["list"]);
    let count = listed
        .as_array()
        .or_else(|| listed["keys"].as_array())
        .expect("keys")
        .len();
    assert_eq!(count, keys);
    env.ok(["export", "u0", "fernet"]);
    env.ok(["gen", "after-compaction"]);

    // Quiet again and under the ratio: no second compaction.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(automatic_compactions(&env).len(), 1);
    env.ok(["lock"]);

    let vault = Vault::open(&env.vault(), PASSPHRASE.as_bytes()).expect("reopen");
    let after = vault.space_use().expect("space");
    assert!(
        after.ratio() < MAX_SPACE_RATIO,
        "{before:?} → {after:?}: still over the ratio"
    );
    assert!(after.on_disk < before.on_disk, "{before:?} → {after:?}");
    assert!(vault.check().expect("check").ok());
    assert_eq!(vault.list(None).expect("list").len(), keys + 1);
}

#[test]
fn a_vault_under_the_floor_is_left_alone() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "bob"]);
    env.ok(["unlock", "--timeout", "120s"]);
    for i in 0..50 {
        env.ok(["gen", &format!("user{i}")]);
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(automatic_compactions(&env).is_empty());
    env.ok(["lock"]);
}
