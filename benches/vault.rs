//! Benchmarks of the library API (`keyvault::Vault`) on a vault holding 10,000 keys.
//!
//! One vault is created in a temporary directory with fast KDF parameters (the KDF runs
//! once, at creation, and is not what is measured) and filled with 10,000 Fernet keys:
//! 1,000 users with 10 keys each. Every change the API makes is flushed before it
//! returns, so `gen` and `revoke` include sled's flush (on Linux a `sync_file_range`
//! of its log; see README, Durability); the reads do not write.
//!
//! Run with `cargo bench --bench vault`. The whole run takes about a minute on a
//! 2-core machine once built; filling the vault takes a few seconds of it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyvault::crypto::kdf::KdfParams;
use keyvault::{KeyType, Vault};

const USERS: usize = 1_000;
const KEYS_PER_USER: usize = 10;
const TOTAL_KEYS: usize = USERS * KEYS_PER_USER;

/// The vault under test and the names of what it holds.
struct Fixture {
    vault: Vault,
    users: Vec<String>,
    names: Vec<String>,
    // Dropped last: the directory must outlive the open vault.
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("keyvault-bench-")
        .tempdir()
        .expect("create a temporary directory");
    let fast = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let vault = Vault::create(&dir.path().join("vault"), b"bench passphrase", fast, true)
        .expect("create the vault");
    let users: Vec<String> = (0..USERS).map(|i| format!("user-{i:04}")).collect();
    let names: Vec<String> = (0..KEYS_PER_USER).map(|j| format!("key-{j}")).collect();
    let started = Instant::now();
    for user in &users {
        for name in &names {
            vault
                .generate(user, Some(name), KeyType::Fernet)
                .expect("fill the vault");
        }
    }
    let status = vault.status().expect("status");
    assert_eq!(status.keys, TOTAL_KEYS as u64);
    assert_eq!(status.users, USERS as u64);
    eprintln!(
        "filled a vault with {TOTAL_KEYS} fernet keys of {USERS} users in {:.1?}",
        started.elapsed()
    );
    Fixture {
        vault,
        users,
        names,
        _dir: dir,
    }
}

/// A small deterministic generator (xorshift64*), so runs pick the same keys.
struct Picker(u64);

impl Picker {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let vault = &f.vault;
    let mut group = c.benchmark_group("vault_10k_keys");
    // Each element is one API call, so criterion's throughput is operations per second.
    group.throughput(Throughput::Elements(1));

    let mut pick = Picker(0x9E37_79B9_7F4A_7C15);
    group.bench_function("get", |b| {
        b.iter(|| {
            let user = &f.users[pick.below(USERS)];
            let name = &f.names[pick.below(KEYS_PER_USER)];
            black_box(vault.key_info(user, name).expect("key_info"))
        })
    });

    group.bench_function("list_user", |b| {
        b.iter(|| {
            let user = &f.users[pick.below(USERS)];
            let keys = vault.list(Some(user)).expect("list one user");
            assert_eq!(keys.len(), KEYS_PER_USER);
            black_box(keys)
        })
    });

    group.bench_function("list_all", |b| {
        b.iter(|| {
            let keys = vault.list(None).expect("list all");
            assert_eq!(keys.len(), TOTAL_KEYS);
            black_box(keys)
        })
    });

    // A new user and key per iteration. The keys are deleted again outside the timed
    // part, so the vault stays at 10,000 keys for the benches that follow.
    let mut next_gen = 0u64;
    group.bench_function("gen_fernet", |b| {
        b.iter_custom(|iters| {
            let users: Vec<String> = (0..iters)
                .map(|_| {
                    next_gen += 1;
                    format!("gen-{next_gen}")
                })
                .collect();
            let start = Instant::now();
            for user in &users {
                black_box(
                    vault
                        .generate(user, None, KeyType::Fernet)
                        .expect("generate"),
                );
            }
            let elapsed = start.elapsed();
            for user in &users {
                vault.delete(user, "fernet").expect("delete");
            }
            elapsed
        })
    });

    // Revoking a user with 10 keys; the users are created outside the timed part.
    let mut next_revoke = 0u64;
    group.bench_function("revoke_10_keys", |b| {
        b.iter_custom(|iters| {
            let mut users = Vec::new();
            for _ in 0..iters {
                next_revoke += 1;
                let user = format!("revoke-{next_revoke}");
                for name in &f.names {
                    vault
                        .generate(&user, Some(name), KeyType::Fernet)
                        .expect("create a user to revoke");
                }
                users.push(user);
            }
            let start = Instant::now();
            for user in &users {
                let outcome = vault.revoke(user, Some("bench")).expect("revoke");
                assert_eq!(outcome.receipt.destroyed.len(), KEYS_PER_USER);
                black_box(outcome);
            }
            start.elapsed()
        })
    });

    group.finish();
    assert_eq!(
        vault.status().expect("status").keys,
        TOTAL_KEYS as u64,
        "the benches left the vault at its size"
    );
}

criterion_group! {
    name = vault;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(vault);
