//! How the library API's costs grow with the vault's size: vaults of 1k, 10k and 100k
//! Fernet keys (spread over users of 10 keys each), and per size: the files' size against
//! the records (before and after `compact`), backup and restore of the vault as filled,
//! then gen (fernet, one flush per batch of 1,000 as a bulk load does; and flushed per
//! call), get, list one user, rotate, revoke, encrypt/decrypt 64 B and 1 MiB,
//! sign/verify; and unlock at the default KDF (reported apart).
//!
//! Run: `cargo bench --bench scale` (about 6 minutes; `KEYVAULT_BENCH_SIZES=1000,10000`
//! to skip the largest).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyvault::crypto::kdf::KdfParams;
use keyvault::{KeyType, Vault};

const FAST: KdfParams = KdfParams {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};
const PASS: &[u8] = b"bench passphrase";
/// Keys per `generate_batch` call.
const BATCH: usize = 1000;

fn sizes() -> Vec<usize> {
    std::env::var("KEYVAULT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

/// A vault of `n` Fernet keys: users u0…, 10 keys each, loaded with deferred flushes.
fn filled(dir: &Path, n: usize) -> Vault {
    let vault = Vault::create(&dir.join("v"), PASS, FAST, true).expect("create");
    vault.set_deferred_flush(true);
    let start = Instant::now();
    for i in 0..n {
        let user = format!("u{}", i / 10);
        let name = format!("k{}", i % 10);
        vault
            .generate(&user, Some(&name), KeyType::Fernet)
            .expect("generate");
    }
    vault.flush().expect("flush");
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "filled {n} keys in {secs:.2} s: {:.0} gen/s with one flush at the end",
        n as f64 / secs
    );
    vault.set_deferred_flush(false);
    vault
}

fn bench(c: &mut Criterion) {
    let message = vec![7u8; 64];
    let mib = vec![7u8; 1 << 20];
    for n in sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = filled(dir.path(), n);
        vault
            .generate("signer", Some("rsa"), KeyType::Rsa2048)
            .expect("rsa");
        vault
            .generate("signer", Some("ed"), KeyType::Ed25519)
            .expect("ed");
        vault
            .generate("signer2", Some("f"), KeyType::Fernet)
            .expect("fernet");
        vault.set_use_reservation(256);
        // Raw material + metadata: 32 key bytes, the user id and name, per key.
        let raw: u64 = (0..n)
            .map(|i| 32 + format!("u{}", i / 10).len() as u64 + 2)
            .sum();
        // What is stored, sealed (keys, audit entries, metadata): a backup's size.
        let sealed = {
            let b = dir.path().join("size.kvb");
            let r = vault.backup(&b, &mut |_, _| {}).expect("backup");
            let _ = std::fs::remove_file(&b);
            r.bytes
        };
        let space = vault.space_use().expect("space use");
        let (vault, _) = vault.compact().expect("compact");
        let compacted = vault.space_use().expect("space use");
        eprintln!(
            "{n} keys: vault dir {} bytes for {} bytes of records ({:.2}×; the agent compacts \
             above {:.0}× and 16 MiB) → {} bytes after compact ({:.2}×); raw key material and \
             ids {raw} bytes; a backup {sealed} bytes",
            space.on_disk,
            space.records,
            space.ratio(),
            keyvault::agent::upkeep::MAX_SPACE_RATIO,
            compacted.on_disk,
            compacted.ratio(),
        );

        // Backup and restore of the whole vault of `n` keys, before the benches below add
        // to it (timed once each: they are seconds).
        let backup = dir.path().join("b.kvb");
        let start = Instant::now();
        let report = vault.backup(&backup, &mut |_, _| {}).expect("backup");
        let backup_secs = start.elapsed().as_secs_f64();
        let restored = dir.path().join("r");
        let start = Instant::now();
        Vault::restore(&backup, &restored, PASS, None).expect("restore");
        let restore_secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{n} keys: backup of {} records ({} bytes) in {backup_secs:.2} s; restore in {restore_secs:.2} s",
            report.records, report.bytes
        );
        let _ = std::fs::remove_dir_all(&restored);
        let _ = std::fs::remove_file(&backup);

        let mut next = 0u64;
        // One iteration is one whole batch of 1,000 (one transaction, one flush), so
        // criterion's small samples do not cut batches short; its throughput line is
        // keys per second. Short warm-up and measurement: each batch grows the vault,
        // and the figure is meant for a vault of about `n` keys (it ends with about
        // `n` + 100,000).
        let mut g = c.benchmark_group(format!("{n} keys"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function("gen fernet, batches of 1000 (generate_batch)", |b| {
            b.iter_custom(|iters| {
                let users: Vec<String> = (0..iters * BATCH as u64)
                    .map(|_| {
                        next += 1;
                        format!("batch{next}")
                    })
                    .collect();
                let start = Instant::now();
                for chunk in users.chunks(BATCH) {
                    let items: Vec<(&str, Option<&str>, KeyType)> = chunk
                        .iter()
                        .map(|u| (u.as_str(), None, KeyType::Fernet))
                        .collect();
                    vault.generate_batch(&items).expect("gen batch");
                }
                start.elapsed()
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("{n} keys"));
        g.sample_size(20).measurement_time(Duration::from_secs(3));
        g.bench_function("gen fernet, flushed", |b| {
            b.iter(|| {
                next += 1;
                vault
                    .generate(&format!("flushed{next}"), None, KeyType::Fernet)
                    .expect("gen")
            })
        });
        let mut k = 0usize;
        g.bench_function("get (key_info)", |b| {
            b.iter(|| {
                k = (k + 7919) % n;
                vault
                    .key_info(&format!("u{}", k / 10), &format!("k{}", k % 10))
                    .expect("get")
            })
        });
        g.bench_function("list one user (10 keys)", |b| {
            b.iter(|| {
                k = (k + 7919) % n;
                vault.list(Some(&format!("u{}", k / 10))).expect("list")
            })
        });
        g.bench_function("rotate fernet", |b| {
            b.iter(|| {
                k = (k + 7919) % n;
                vault
                    .rotate(&format!("u{}", k / 10), &format!("k{}", k % 10))
                    .expect("rotate")
            })
        });
        let mut victims = 0u64;
        g.bench_function("revoke a user of 10 keys", |b| {
            b.iter_custom(|iters| {
                // Fresh users of 10 keys each, loaded untimed.
                vault.set_deferred_flush(true);
                let first = victims;
                for v in 0..iters {
                    for j in 0..10 {
                        vault
                            .generate(
                                &format!("victim{}", first + v),
                                Some(&format!("k{j}")),
                                KeyType::Fernet,
                            )
                            .expect("gen");
                    }
                }
                vault.flush().expect("flush");
                vault.set_deferred_flush(false);
                victims += iters;
                let start = Instant::now();
                for v in 0..iters {
                    vault
                        .revoke(&format!("victim{}", first + v), Some("bench"))
                        .expect("revoke");
                }
                start.elapsed()
            })
        });
        g.throughput(Throughput::Bytes(64));
        g.bench_function("fernet encrypt+decrypt 64 B", |b| {
            b.iter(|| {
                let t = vault
                    .encrypt_message("signer2", "f", &message)
                    .expect("enc");
                vault
                    .decrypt_message("signer2", "f", &t.value, None)
                    .expect("dec")
            })
        });
        g.throughput(Throughput::Bytes(1 << 20));
        g.bench_function("fernet encrypt+decrypt 1 MiB", |b| {
            b.iter(|| {
                let t = vault.encrypt_message("signer2", "f", &mib).expect("enc");
                vault
                    .decrypt_message("signer2", "f", &t.value, None)
                    .expect("dec")
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function("rsa-2048 PSS sign", |b| {
            b.iter(|| {
                vault
                    .sign_message("signer", "rsa", None, &message)
                    .expect("sign")
            })
        });
        let sig = vault
            .sign_message("signer", "rsa", None, &message)
            .expect("sign")
            .value;
        g.bench_function("rsa-2048 PSS verify", |b| {
            b.iter(|| {
                vault
                    .verify_message("signer", "rsa", None, &message, &sig)
                    .expect("verify")
            })
        });
        g.bench_function("ed25519 sign", |b| {
            b.iter(|| {
                vault
                    .sign_message("signer", "ed", None, &message)
                    .expect("sign")
            })
        });
        g.finish();
    }

    // Unlock at the default KDF, against the KDF alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let params = KdfParams::default();
    drop(Vault::create(&dir.path().join("d"), PASS, params, false).expect("create"));
    let mut g = c.benchmark_group("unlock (default KDF m=64 MiB, t=3, p=4)");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("KDF alone", "argon2id"), |b| {
        b.iter(|| params.derive_kek(PASS, &[9u8; 16]).expect("kdf"))
    });
    g.bench_function(BenchmarkId::new("Vault::open", "unlock"), |b| {
        b.iter_batched(
            || (),
            |()| Vault::open(&dir.path().join("d"), PASS).expect("open"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
