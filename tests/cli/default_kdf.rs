//! The one test that runs `init` with the default KDF parameters (Argon2id m=64 MiB,
//! t=3, p=4); every other test uses fast ones.

use crate::util::TestEnv;

#[test]
fn init_with_the_default_kdf_then_gen_and_list() {
    let env = TestEnv::new();
    let init = env.json(["init"]);
    assert_eq!(init["kdf"]["memory_kib"], 64 * 1024, "{init}");
    assert_eq!(init["kdf"]["iterations"], 3, "{init}");
    assert_eq!(init["kdf"]["parallelism"], 4, "{init}");

    let out = env.kv().arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(6), "a second init");

    let key = env.json(["gen", "User123"]);
    assert_eq!(key["name"], "fernet");
    let list = env.json(["list"]);
    assert_eq!(list["keys"][0]["user"], "User123");
    assert_eq!(list["keys"][0]["type"], "fernet");
    assert_eq!(env.json(["status"])["keys"], 1);
}
