//! The cost of a CLI call through the agent against a one-shot call, requests per
//! second through the agent's socket with 1 and 8 clients, and the vault's files against
//! its records after those writes, before and after the agent's idle compaction.
//!
//! Run: `cargo bench --bench agent`. The vault uses fast KDF parameters, so the
//! one-shot figure is process start + open + a near-free KDF; at the default KDF a
//! one-shot call pays ~0.15 s more.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyvault::agent::protocol::{
    AgentRequest, AgentResponse, MAX_RESPONSE_BYTES, read_message, write_message,
};
use keyvault::ops::{Request, Response};
use keyvault::vault::lifecycle::dir_size;

struct Env {
    _dir: tempfile::TempDir,
    vault: PathBuf,
    runtime: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).expect("runtime dir");
        let env = Env {
            vault: dir.path().join("vault"),
            runtime,
            _dir: dir,
        };
        env.run(&[
            "init",
            "--kdf-memory",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
            "--allow-weak-kdf",
        ]);
        env.run(&["gen", "U"]);
        env
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyvault"));
        c.args(args)
            .env("KEYVAULT_PATH", &self.vault)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("KEYVAULT_PASSPHRASE", "bench passphrase");
        c
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().expect("run keyvault");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn socket(&self) -> PathBuf {
        std::fs::read_dir(self.runtime.join("keyvault"))
            .expect("socket dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
            .expect("agent socket")
    }
}

fn request(stream: &mut UnixStream) {
    write_message(
        stream,
        &AgentRequest::Op(Request::List {
            user: Some("U".into()),
        }),
    )
    .expect("send");
    match read_message(stream, MAX_RESPONSE_BYTES).expect("answer") {
        AgentResponse::Op(Response::Keys(k)) => assert_eq!(k.len(), 1),
        _ => panic!("wrong answer"),
    }
}

fn clients(socket: &Path, n: usize, total: u64) -> Duration {
    let per = total.div_ceil(n as u64);
    let start = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let socket = socket.to_path_buf();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).expect("connect");
                for _ in 0..per {
                    request(&mut s);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let env = Env::new();
    let mut g = c.benchmark_group("cli");
    g.sample_size(50).measurement_time(Duration::from_secs(8));
    g.bench_function("export fernet, one-shot (fast KDF)", |b| {
        b.iter(|| env.run(&["export", "U", "fernet"]))
    });
    env.run(&["unlock"]);
    g.bench_function("export fernet, through the agent", |b| {
        b.iter(|| env.run(&["export", "U", "fernet"]))
    });
    let counter = std::cell::Cell::new(0u64);
    g.bench_function("gen fernet, through the agent (durable)", |b| {
        b.iter(|| {
            counter.set(counter.get() + 1);
            env.run(&["gen", &format!("user{}", counter.get())])
        })
    });
    g.finish();

    let socket = env.socket();
    let mut g = c.benchmark_group("socket");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("list request, 1 client", |b| {
        let mut s = UnixStream::connect(&socket).expect("connect");
        b.iter(|| request(&mut s))
    });
    g.bench_function("list request, 8 clients", |b| {
        b.iter_custom(|iters| clients(&socket, 8, iters.max(8)))
    });
    // Durable writes: each gen returns only once flushed (group commit shares flushes).
    let next = std::sync::atomic::AtomicU64::new(0);
    for n in [1usize, 8] {
        g.bench_function(format!("gen request (durable), {n} client(s)"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(n as u64).max(1);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..n {
                        let socket = socket.clone();
                        let next = &next;
                        scope.spawn(move || {
                            let mut s = UnixStream::connect(&socket).expect("connect");
                            for _ in 0..per {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                write_message(
                                    &mut s,
                                    &AgentRequest::Op(Request::Generate {
                                        user: format!("w{i}"),
                                        name: None,
                                        key_type: keyvault::KeyType::Fernet,
                                    }),
                                )
                                .expect("send");
                                match read_message(&mut s, MAX_RESPONSE_BYTES).expect("answer") {
                                    AgentResponse::Op(Response::Key(_)) => {}
                                    _ => panic!("wrong answer"),
                                }
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * n as u64) as f64)
            })
        });
    }
    g.finish();
    space(&env);
}

/// The vault's files after the benches above wrote keys one transaction each, and after
/// the agent's idle upkeep (`agent::upkeep`): it compacts once the files are over 3× the
/// records and 16 MiB, after 2 s without a request.
fn space(env: &Env) {
    let before = dir_size(&env.vault);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = before;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = dir_size(&env.vault);
        if after < before {
            // Let the swap and the removal of the old files finish.
            std::thread::sleep(Duration::from_secs(1));
            after = dir_size(&env.vault);
            break;
        }
    }
    env.run(&["lock"]);
    let vault = keyvault::Vault::open(&env.vault, b"bench passphrase").expect("open");
    let space = vault.space_use().expect("space use");
    let keys = vault.list(None).expect("list").len();
    eprintln!(
        "space: {keys} keys written one by one through the agent: files {before} bytes \
         ({:.2}× the {} bytes of records); after the agent's idle upkeep {after} bytes \
         ({:.2}×){}",
        before as f64 / space.records as f64,
        space.records,
        after as f64 / space.records as f64,
        if after < before {
            ""
        } else {
            " (no compaction within 30 s)"
        }
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
