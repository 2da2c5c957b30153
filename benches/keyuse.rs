//! Benchmarks of key use through the library API (`keyvault::Vault`), without the CLI
//! or the agent around it: RSA-2048 (PSS-SHA256) and Ed25519 sign and verify per
//! second; Fernet encrypt and decrypt of 1 MiB; and the AEAD envelope of 1 MiB for
//! both AEAD types (the key step through the vault, then streaming in memory).
//!
//! The vault is created with fast KDF parameters (the KDF runs once, at creation, and is
//! not what is measured). Uses are counted as the agent counts them, reserving blocks
//! of 256 (`set_use_reservation`), so a signature is not one fsync; a decryption
//! appends an audit entry (flushed later, in the background), which is measured.
//!
//! Run with `cargo bench --bench keyuse`; benches/scripts/keyuse.sh runs the CLI numbers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyvault::crypto::envelope;
use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::sign::RsaScheme;
use keyvault::{KeyType, Vault};

const MIB: usize = 1024 * 1024;

struct Fixture {
    vault: Vault,
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
    vault.set_use_reservation(256);
    for t in [
        KeyType::Rsa2048,
        KeyType::Ed25519,
        KeyType::Fernet,
        KeyType::Aes256Gcm,
        KeyType::ChaCha20Poly1305,
    ] {
        vault.generate("bench", None, t).expect("generate");
    }
    Fixture { vault, _dir: dir }
}

/// Bytes that are not all alike.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn signatures(c: &mut Criterion, f: &Fixture) {
    let vault = &f.vault;
    let message = data(1024);
    let mut group = c.benchmark_group("sign_verify_1KiB");
    // One element is one operation: criterion's throughput is operations per second.
    group.throughput(Throughput::Elements(1));
    for (name, scheme) in [
        ("rsa-2048", Some(RsaScheme::Pss)),
        ("rsa-2048", Some(RsaScheme::Pkcs1v15)),
        ("ed25519", None),
    ] {
        let label = match scheme {
            Some(RsaScheme::Pkcs1v15) => format!("{name}-pkcs1v15"),
            Some(RsaScheme::Pss) => format!("{name}-pss"),
            None => name.to_string(),
        };
        group.bench_function(format!("sign/{label}"), |b| {
            b.iter(|| {
                black_box(
                    vault
                        .sign_message("bench", name, scheme, &message)
                        .expect("sign"),
                )
            })
        });
        let sig = vault
            .sign_message("bench", name, scheme, &message)
            .expect("sign")
            .value;
        group.bench_function(format!("verify/{label}"), |b| {
            b.iter(|| {
                let v = vault
                    .verify_message("bench", name, scheme, &message, &sig)
                    .expect("verify");
                assert_eq!(v, Some(1));
                black_box(v)
            })
        });
    }
    group.finish();
}

fn fernet(c: &mut Criterion, f: &Fixture) {
    let vault = &f.vault;
    let plain = data(MIB);
    let mut group = c.benchmark_group("fernet_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(20);
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            black_box(
                vault
                    .encrypt_message("bench", "fernet", &plain)
                    .expect("encrypt"),
            )
        })
    });
    let token = vault
        .encrypt_message("bench", "fernet", &plain)
        .expect("encrypt")
        .value;
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            let (_, p) = vault
                .decrypt_message("bench", "fernet", &token, None)
                .expect("decrypt");
            assert_eq!(p.len(), MIB);
            black_box(p)
        })
    });
    group.finish();
}

fn aead(c: &mut Criterion, f: &Fixture) {
    let vault = &f.vault;
    let plain = data(MIB);
    let mut group = c.benchmark_group("aead_envelope_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.sample_size(20);
    for name in ["aes256-gcm", "chacha20-poly1305"] {
        group.bench_function(format!("encrypt/{name}"), |b| {
            b.iter(|| {
                let used = vault.envelope_key("bench", name, None).expect("key");
                let (header, key) = used.value;
                let mut out = Vec::with_capacity(MIB + 1024);
                envelope::encrypt_with_message_key(&header, &key, &mut plain.as_slice(), &mut out)
                    .expect("encrypt");
                black_box(out)
            })
        });
        let sealed = {
            let (header, key) = vault.envelope_key("bench", name, None).expect("key").value;
            let mut out = Vec::new();
            envelope::encrypt_with_message_key(&header, &key, &mut plain.as_slice(), &mut out)
                .expect("encrypt");
            out
        };
        group.bench_function(format!("decrypt/{name}"), |b| {
            b.iter(|| {
                let mut input = sealed.as_slice();
                let header = envelope::read_header(&mut input).expect("header");
                let (header, key) = vault
                    .envelope_key("bench", name, Some(&header))
                    .expect("key")
                    .value;
                let mut out = Vec::with_capacity(MIB);
                envelope::decrypt_with_message_key(&header, &key, &mut input, &mut out)
                    .expect("decrypt");
                assert_eq!(out.len(), MIB);
                black_box(out)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    signatures(c, &f);
    fernet(c, &f);
    aead(c, &f);
}

criterion_group! {
    name = keyuse;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(keyuse);
