//! Makes a vault of format 3 holding N Fernet keys (one per user), with the library of
//! the last keyvault that wrote format 3. `benches/scripts/migration.sh` copies this file into a
//! checkout of that commit as an example and runs it; it is not part of this crate.

use std::path::Path;

use keyvault::crypto::kdf::KdfParams;
use keyvault::{KeyType, Vault};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: make_v3_vault DIR N");
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: make_v3_vault DIR N");
    let fast = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let vault = Vault::create(Path::new(&path), b"bench-only passphrase", fast, true)
        .expect("create the vault");
    vault.set_deferred_flush(true);
    let users: Vec<String> = (0..n).map(|i| format!("user{i:06}")).collect();
    for chunk in users.chunks(1000) {
        let items: Vec<(&str, Option<&str>, KeyType)> = chunk
            .iter()
            .map(|u| (u.as_str(), None, KeyType::Fernet))
            .collect();
        vault.generate_batch(&items).expect("generate a batch");
    }
    vault.revoke("user000000", Some("bench")).expect("revoke one");
    vault.flush().expect("flush");
}
