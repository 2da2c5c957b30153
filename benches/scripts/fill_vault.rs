//! Makes a vault of N Fernet keys (users `u0`, `u1`, … of 10 keys `k0` … `k9` each) with
//! fast KDF parameters and the passphrase `bench-only passphrase`, in batches of 1,000:
//! the large vault of `benches/scripts/agent_rss.sh` (`KEYS=100000`). Built as the example
//! `fill_vault`.

use std::path::Path;

use keyvault::crypto::kdf::KdfParams;
use keyvault::{KeyType, Vault};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: fill_vault DIR N");
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: fill_vault DIR N");
    let fast = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let vault = Vault::create(Path::new(&path), b"bench-only passphrase", fast, true)
        .expect("create the vault");
    vault.set_deferred_flush(true);
    let names: Vec<(String, String)> = (0..n)
        .map(|i| (format!("u{}", i / 10), format!("k{}", i % 10)))
        .collect();
    for chunk in names.chunks(1000) {
        let items: Vec<(&str, Option<&str>, KeyType)> = chunk
            .iter()
            .map(|(u, k)| (u.as_str(), Some(k.as_str()), KeyType::Fernet))
            .collect();
        vault.generate_batch(&items).expect("generate");
    }
    vault.flush().expect("flush");
}
