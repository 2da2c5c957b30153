//! Load: 16 clients talk to one agent at once for a bounded time, over the
//! agent protocol directly, with a realistic mix — 90% reads and uses (export, list of a
//! user, encrypt then decrypt a small message), 10% writes (gen of new keys, rotate) —
//! then `check`. No request may fail and no acknowledged write may be lost, through the
//! agent and after lock and reopen. The figures (ops/s, p50/p99 latency, the agent's
//! peak RSS) are printed: `cargo test --test agent -- load:: --nocapture`.
//!
//! 10 s by default so CI stays fast; `KEYVAULT_LOAD_SECS=60` for the full run.
//!
//! And one-shot: two processes opening the same vault at once (no agent) each succeed
//! or get a clear "in use" error (exit 8), never corruption.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::process::{
    Finished, env_number, finish, lock_and_wait, proc_status_kib, run_limited, socket_of, spawn,
    unlock_with,
};
use crate::util::rng::Rng;
use crate::util::vault::{AgentGuard, open_store, wait_until_closed, with_pass};
use crate::util::{PASSPHRASE, TestEnv, assert_success};
use keyvault::agent::protocol::{
    AgentRequest, AgentResponse, MAX_RESPONSE_BYTES, read_message, write_message,
};
use keyvault::keytype::KeyType;
use keyvault::ops::{Request, Response};
use keyvault::vault::ExportOptions;

/// Concurrent clients.
const CLIENTS: usize = 16;
/// Users made before the run, each with one fernet key named "fernet".
const USERS: usize = 32;
/// The name of every user's base key.
const BASE_KEY: &str = "fernet";
/// The throughput is reported per window of this many seconds.
const WINDOW_SECS: u64 = 10;

fn user(i: usize) -> String {
    format!("load-user{i:02}")
}

/// Sends one request on a fresh connection (as each command of the CLI does) and reads
/// the answer.
fn call(socket: &Path, request: &AgentRequest) -> Result<AgentResponse, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    call_on(&mut stream, request)
}

fn call_on(stream: &mut UnixStream, request: &AgentRequest) -> Result<AgentResponse, String> {
    write_message(stream, request).map_err(|e| format!("send: {e}"))?;
    read_message(stream, MAX_RESPONSE_BYTES).map_err(|e| format!("receive: {e:?}"))
}

/// A vault operation through the agent; an error response is an error.
fn op(socket: &Path, request: Request) -> Result<Response, String> {
    match call(socket, &AgentRequest::Op(request))? {
        AgentResponse::Op(r) => Ok(r),
        AgentResponse::Error { code, message, .. } => Err(format!("exit {code}: {message}")),
        _ => Err("an unexpected answer".into()),
    }
}

fn op_on(stream: &mut UnixStream, request: Request) -> Result<Response, String> {
    match call_on(stream, &AgentRequest::Op(request))? {
        AgentResponse::Op(r) => Ok(r),
        AgentResponse::Error { code, message, .. } => Err(format!("exit {code}: {message}")),
        _ => Err("an unexpected answer".into()),
    }
}

/// The kinds of request of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Export,
    List,
    Encrypt,
    Decrypt,
    Gen,
    Rotate,
}

/// What one client did.
#[derive(Default)]
struct ClientLog {
    /// Latency of each request, in microseconds, by kind.
    latencies: BTreeMap<Kind, Vec<u64>>,
    /// Every failure.
    errors: Vec<String>,
    /// Keys whose gen was acknowledged.
    generated: Vec<(String, String)>,
    /// Acknowledged rotations of each user's base key.
    rotations: BTreeMap<String, u32>,
    /// Requests finished in each 10-second window of the run.
    per_window: BTreeMap<u64, u64>,
    /// When the run began.
    epoch: Option<Instant>,
}

impl ClientLog {
    fn timed<T>(&mut self, kind: Kind, f: impl FnOnce() -> Result<T, String>) -> Option<T> {
        let start = Instant::now();
        let result = f();
        let micros = start.elapsed().as_micros() as u64;
        self.latencies.entry(kind).or_default().push(micros);
        if let Some(epoch) = self.epoch {
            *self
                .per_window
                .entry(epoch.elapsed().as_secs() / WINDOW_SECS)
                .or_default() += 1;
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{kind:?}: {e}"));
                None
            }
        }
    }
}

/// One client: requests of the mix until `stop`.
fn client(
    id: usize,
    socket: &Path,
    seed: u64,
    exports: &BTreeMap<String, Vec<u8>>,
    stop: &AtomicBool,
    epoch: Instant,
) -> ClientLog {
    let mut rng = Rng::from_seed(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut log = ClientLog {
        epoch: Some(epoch),
        ..ClientLog::default()
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let who = user(rng.below(USERS as u64) as usize);
        let roll = rng.below(100);
        if roll < 30 {
            // Export the first version, whose bytes never change.
            let want = &exports[&who];
            log.timed(Kind::Export, || {
                match op(
                    socket,
                    Request::Export {
                        user: who.clone(),
                        name: BASE_KEY.into(),
                        options: ExportOptions {
                            version: Some(1),
                            ..Default::default()
                        },
                    },
                )? {
                    Response::Material(m) if m.as_slice() == want.as_slice() => Ok(()),
                    Response::Material(_) => Err(format!("export of {who}: other bytes")),
                    _ => Err("export: an unexpected answer".into()),
                }
            });
        } else if roll < 60 {
            log.timed(Kind::List, || {
                match op(
                    socket,
                    Request::List {
                        user: Some(who.clone()),
                    },
                )? {
                    Response::Keys(keys)
                        if keys.iter().all(|k| k.user == who)
                            && keys.iter().any(|k| k.name == BASE_KEY) =>
                    {
                        Ok(())
                    }
                    Response::Keys(_) => Err(format!("list of {who}: wrong keys")),
                    _ => Err("list: an unexpected answer".into()),
                }
            });
        } else if roll < 90 {
            // Encrypt then decrypt a small message, on one connection.
            let message = format!("message {n} of client {id}").into_bytes();
            let mut stream = match UnixStream::connect(socket) {
                Ok(s) => s,
                Err(e) => {
                    log.errors.push(format!("connect: {e}"));
                    continue;
                }
            };
            let token = log.timed(Kind::Encrypt, || {
                match op_on(
                    &mut stream,
                    Request::Encrypt {
                        user: who.clone(),
                        name: BASE_KEY.into(),
                        plaintext: message.clone().into(),
                    },
                )? {
                    Response::Produced(used) => Ok(used.value),
                    _ => Err("encrypt: an unexpected answer".into()),
                }
            });
            if let Some(token) = token {
                log.timed(Kind::Decrypt, || {
                    match op_on(
                        &mut stream,
                        Request::Decrypt {
                            user: who.clone(),
                            name: BASE_KEY.into(),
                            ciphertext: token,
                            ttl: None,
                        },
                    )? {
                        Response::Plaintext { plaintext, .. }
                            if plaintext.as_slice() == message.as_slice() =>
                        {
                            Ok(())
                        }
                        Response::Plaintext { .. } => Err("decrypt: other plaintext".into()),
                        _ => Err("decrypt: an unexpected answer".into()),
                    }
                });
            }
        } else if roll < 95 {
            let name = format!("c{id:02}-{n:06}");
            let key_type = if rng.below(2) == 0 {
                KeyType::Fernet
            } else {
                KeyType::Aes256Gcm
            };
            let done = log.timed(Kind::Gen, || {
                match op(
                    socket,
                    Request::Generate {
                        user: who.clone(),
                        name: Some(name.clone()),
                        key_type,
                    },
                )? {
                    Response::Key(k) if k.user == who && k.name == name => Ok(()),
                    _ => Err("gen: an unexpected answer".into()),
                }
            });
            if done.is_some() {
                log.generated.push((who, name));
            }
        } else {
            let done = log.timed(Kind::Rotate, || {
                match op(
                    socket,
                    Request::Rotate {
                        user: who.clone(),
                        name: BASE_KEY.into(),
                    },
                )? {
                    Response::Key(k) if k.user == who => Ok(()),
                    _ => Err("rotate: an unexpected answer".into()),
                }
            });
            if done.is_some() {
                *log.rotations.entry(who).or_default() += 1;
            }
        }
    }
    log
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// The keys of a listing: (user, name) → number of versions.
fn versions_of(keys: &[keyvault::vault::types::KeyInfo]) -> BTreeMap<(String, String), usize> {
    keys.iter()
        .map(|k| ((k.user.clone(), k.name.clone()), k.versions.len()))
        .collect()
}

fn versions_of_json(doc: &Value) -> BTreeMap<(String, String), usize> {
    doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    (
                        (
                            k["user"].as_str().unwrap_or_default().to_string(),
                            k["name"].as_str().unwrap_or_default().to_string(),
                        ),
                        k["versions"].as_array().map_or(0, Vec::len),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Problems of a listing against what was acknowledged: every acknowledged gen is
/// there, and each base key has one version more than its acknowledged rotations.
fn lost_writes(
    listed: &BTreeMap<(String, String), usize>,
    generated: &BTreeSet<(String, String)>,
    rotations: &BTreeMap<String, u32>,
) -> Vec<String> {
    let mut lost = Vec::new();
    for id in generated {
        if !listed.contains_key(id) {
            lost.push(format!(
                "the acknowledged gen of {}/{} is missing",
                id.0, id.1
            ));
        }
    }
    for i in 0..USERS {
        let u = user(i);
        let want = 1 + rotations.get(&u).copied().unwrap_or(0) as usize;
        match listed.get(&(u.clone(), BASE_KEY.to_string())) {
            Some(n) if *n == want => {}
            other => lost.push(format!(
                "{u}/{BASE_KEY} has {other:?} versions; {want} were acknowledged"
            )),
        }
    }
    let expected = generated.len() + USERS;
    if listed.len() != expected {
        lost.push(format!(
            "{} keys listed, {expected} acknowledged",
            listed.len()
        ));
    }
    lost
}

#[test]
fn sixteen_clients_through_the_agent_lose_nothing_and_fail_nothing() {
    let secs = env_number("KEYVAULT_LOAD_SECS", 10);
    let env = TestEnv::new();
    env.init();
    let _guard = AgentGuard(&env);
    let pid = unlock_with(&env, PASSPHRASE, "30m");
    let socket = socket_of(&env);
    let mut exports = BTreeMap::new();
    for i in 0..USERS {
        let u = user(i);
        op(
            &socket,
            Request::Generate {
                user: u.clone(),
                name: Some(BASE_KEY.into()),
                key_type: KeyType::Fernet,
            },
        )
        .expect("gen a base key");
        let Response::Material(m) = op(
            &socket,
            Request::Export {
                user: u.clone(),
                name: BASE_KEY.into(),
                options: ExportOptions::default(),
            },
        )
        .expect("export a base key") else {
            panic!("export: an unexpected answer");
        };
        exports.insert(u, m.to_vec());
    }
    let rss_before = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let seed = Rng::seeded("load").next_u64();

    let stop = AtomicBool::new(false);
    let logs = Mutex::new(Vec::new());
    let start = Instant::now();
    thread::scope(|s| {
        for id in 0..CLIENTS {
            let (socket, exports, stop, logs) = (&socket, &exports, &stop, &logs);
            s.spawn(move || {
                let log = client(id, socket, seed, exports, stop, start);
                logs.lock().unwrap_or_else(|p| p.into_inner()).push(log);
            });
        }
        thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    let logs = logs.into_inner().unwrap_or_else(|p| p.into_inner());
    let peak_kib = proc_status_kib(pid, "VmHWM").unwrap_or(0);

    let mut all: Vec<u64> = Vec::new();
    let mut by_kind: BTreeMap<Kind, Vec<u64>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut generated = BTreeSet::new();
    let mut rotations: BTreeMap<String, u32> = BTreeMap::new();
    let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
    for log in &logs {
        for (w, n) in &log.per_window {
            *per_window.entry(*w).or_default() += n;
        }
        for (kind, l) in &log.latencies {
            all.extend(l);
            by_kind.entry(*kind).or_default().extend(l);
        }
        errors.extend(log.errors.iter().cloned());
        generated.extend(log.generated.iter().cloned());
        for (u, n) in &log.rotations {
            *rotations.entry(u.clone()).or_default() += n;
        }
    }
    all.sort_unstable();
    let total = all.len();
    let writes = by_kind.get(&Kind::Gen).map_or(0, Vec::len)
        + by_kind.get(&Kind::Rotate).map_or(0, Vec::len);
    // An encrypt and its decrypt are one operation of the mix (two requests).
    let operations = total - by_kind.get(&Kind::Decrypt).map_or(0, Vec::len);
    eprintln!(
        "load: {CLIENTS} clients for {:.1} s: {total} requests ({operations} operations), {:.0} requests/s; latency p50 {}, p99 {}, max {}; {writes} writes ({:.1}% of operations); agent peak RSS (VmHWM) {} KiB (RSS {} KiB before the run); errors {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or(0)),
        100.0 * writes as f64 / operations.max(1) as f64,
        peak_kib,
        rss_before,
        errors.len()
    );
    for (kind, l) in &mut by_kind {
        l.sort_unstable();
        eprintln!(
            "load:   {kind:?}: {} requests, p50 {}, p99 {}, max {}",
            l.len(),
            ms(percentile(l, 0.50)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied().unwrap_or(0))
        );
    }
    let windows: Vec<String> = per_window
        .iter()
        .filter(|(w, _)| (*w + 1) * WINDOW_SECS <= elapsed.as_secs())
        .map(|(w, n)| {
            format!(
                "{}-{} s: {:.0}/s",
                w * WINDOW_SECS,
                (w + 1) * WINDOW_SECS,
                *n as f64 / WINDOW_SECS as f64
            )
        })
        .collect();
    eprintln!("load:   requests/s by window: {}", windows.join(", "));
    assert!(
        errors.is_empty(),
        "{} requests failed; the first: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(total > CLIENTS, "hardly any requests were made: {total}");

    // Through the agent: check, and every acknowledged write is there.
    match op(&socket, Request::Check).expect("check through the agent") {
        Response::Check(report) => assert!(report.ok(), "check: {:?}", report.problems),
        _ => panic!("check: an unexpected answer"),
    }
    let Response::Keys(keys) = op(&socket, Request::List { user: None }).expect("list") else {
        panic!("list: an unexpected answer");
    };
    let lost = lost_writes(&versions_of(&keys), &generated, &rotations);
    assert!(lost.is_empty(), "through the agent: {}", lost.join("; "));

    // After lock and reopen, one-shot.
    lock_and_wait(&env, pid);
    let out = with_pass(&env, PASSPHRASE)
        .args(["--json", "list"])
        .output()
        .expect("list");
    assert_success(&out, "list after lock");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    let lost = lost_writes(&versions_of_json(&doc), &generated, &rotations);
    assert!(
        lost.is_empty(),
        "after lock and reopen: {}",
        lost.join("; ")
    );
    let out = with_pass(&env, PASSPHRASE)
        .args(["--json", "check"])
        .output()
        .expect("check");
    assert_success(&out, "check after lock");
    eprintln!(
        "load: {} gens and {} rotations acknowledged, all there after lock and reopen; check ok",
        generated.len(),
        rotations.values().sum::<u32>()
    );
}

/// A one-shot command with the passphrase.
fn one_shot(env: &TestEnv, args: &[String]) -> Command {
    let mut cmd = env.bare_std();
    cmd.env("KEYVAULT_PASSPHRASE", PASSPHRASE).args(args);
    cmd
}

/// Whether a finished one-shot command either succeeded or said the vault is in use
/// (exit 8, one `error:` line naming it); the problem otherwise.
fn in_use_or_ok(fin: &Finished, what: &str) -> Result<bool, String> {
    if fin.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&fin.stderr);
    if fin.code() == Some(8)
        && fin.first_stderr_line().starts_with("error:")
        && stderr.contains("in use")
        && !fin.panicked()
    {
        return Ok(false);
    }
    Err(format!("{what}: {}", fin.describe()))
}

#[test]
fn two_processes_opening_the_vault_at_once_succeed_or_say_in_use() {
    let env = TestEnv::new();
    env.init();
    env.ok(["gen", "base"]);
    let base_export = env.ok_bytes(["export", "base", "fernet", "--version", "1"]);
    let mut rng = Rng::seeded("two processes");
    let mut generated = BTreeSet::new();
    let mut rotations = 0usize;
    let (mut both_ok, mut one_in_use) = (0, 0);
    let mut problems = Vec::new();
    for round in 0..40 {
        let mut pair = Vec::new();
        for side in 0..2 {
            let (args, gen_id): (Vec<String>, Option<(String, String)>) = match rng.below(5) {
                0 | 1 => {
                    let u = format!("r{round:02}-{side}");
                    (
                        vec!["gen".into(), u.clone()],
                        Some((u, "fernet".to_string())),
                    )
                }
                2 => (vec!["rotate".into(), "base".into(), "fernet".into()], None),
                3 => (
                    ["export", "base", "fernet", "--version", "1"]
                        .map(String::from)
                        .to_vec(),
                    None,
                ),
                _ => (vec!["list".into()], None),
            };
            pair.push((args, gen_id));
        }
        let started = Instant::now();
        let children: Vec<_> = pair
            .iter()
            .map(|(args, _)| spawn(&mut one_shot(&env, args)))
            .collect();
        let fins: Vec<Finished> = children
            .into_iter()
            .map(|c| finish(c, started, Duration::from_secs(60)))
            .collect();
        let mut oks = 0;
        for ((args, gen_id), fin) in pair.iter().zip(&fins) {
            let what = format!("round {round}: {}", args.join(" "));
            match in_use_or_ok(fin, &what) {
                Ok(true) => {
                    oks += 1;
                    if let Some(id) = gen_id {
                        generated.insert(id.clone());
                    }
                    if args[0] == "rotate" {
                        rotations += 1;
                    }
                    if args[0] == "export" && fin.stdout != base_export {
                        problems.push(format!("{what}: a wrong export"));
                    }
                }
                Ok(false) => {}
                Err(e) => problems.push(e),
            }
        }
        if oks == 2 {
            both_ok += 1;
        } else {
            one_in_use += 1;
        }
    }

    // Held longer than a command waits for it: both say "in use", and change nothing.
    let store = open_store(&env);
    let started = Instant::now();
    let held: Vec<_> = [
        vec!["gen".to_string(), "held".to_string()],
        vec!["list".into()],
    ]
    .iter()
    .map(|args| spawn(&mut one_shot(&env, args)))
    .collect();
    let fins: Vec<Finished> = held
        .into_iter()
        .map(|c| finish(c, started, Duration::from_secs(60)))
        .collect();
    drop(store);
    wait_until_closed(&env);
    for fin in &fins {
        match in_use_or_ok(fin, "while the test holds the vault") {
            Ok(false) => {}
            Ok(true) => problems.push(format!(
                "a command succeeded while the test held the vault: {}",
                fin.describe()
            )),
            Err(e) => problems.push(e),
        }
    }

    // Never corruption: check passes, every acknowledged change is there, nothing else.
    let out = run_limited(
        &mut one_shot(&env, &["--json".into(), "check".into()]),
        Duration::from_secs(60),
    );
    if !out.status.success() {
        problems.push(format!("check: {}", out.describe()));
    }
    let out = run_limited(
        &mut one_shot(&env, &["--json".into(), "list".into()]),
        Duration::from_secs(60),
    );
    let listed = versions_of_json(&serde_json::from_slice(&out.stdout).unwrap_or(Value::Null));
    for id in &generated {
        if !listed.contains_key(id) {
            problems.push(format!("the acknowledged gen of {}/{} is lost", id.0, id.1));
        }
    }
    let base = listed.get(&("base".to_string(), "fernet".to_string()));
    if base != Some(&(1 + rotations)) {
        problems.push(format!(
            "base/fernet has {base:?} versions, {} acknowledged",
            1 + rotations
        ));
    }
    if listed.len() != generated.len() + 1 {
        problems.push(format!(
            "{} keys listed, {} acknowledged",
            listed.len(),
            generated.len() + 1
        ));
    }
    println!(
        "two processes: 40 rounds, both succeeded in {both_ok}, one said \"in use\" in {one_in_use}; {} gens, {rotations} rotations acknowledged and there",
        generated.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
