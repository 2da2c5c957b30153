//! A model test of the `Vault` API: random sequences of operations (gen, import of
//! material exported earlier, export, delete, delete-version, rotate, revoke, is-revoked,
//! list, and closing and reopening the vault) run against a real vault and against the
//! Python prototype's model: a dict of users to their keys and a set of revoked users.
//! After every step the two must agree on which keys exist, their types, versions,
//! primary version, fingerprints and ids, on the revoked users and their receipts, and
//! on the error each refused operation returns (`UserRevoked`, `AlreadyExists`,
//! `KeyNotFound`, `VersionNotFound`, `Usage`). Each case ends by reopening the vault
//! and running `check`.
//!
//! Failing cases are shrunk and saved beside this file (`model.proptest-regressions`),
//! and replayed first on the next run. `--nocapture` prints how often each operation
//! succeeded or was refused; `PROPTEST_CASES=1000` searches longer than the default 64
//! cases of up to 40 operations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::keys::ExportFormat;
use keyvault::vault::types::{KeyInfo, RevocationInfo, VersionStateName};
use keyvault::{Error, ExportOptions, KeyType, Vault};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use zeroize::Zeroizing;

const PASSPHRASE: &[u8] = b"model passphrase";
const USERS: [&str; 4] = ["alice", "bob", "User123", "Ünïcode user"];
/// Two free names and the default names of four types, so that `gen` without a name
/// collides with them.
const NAMES: [&str; 6] = [
    "k1",
    "k2",
    "fernet",
    "aes256-gcm",
    "chacha20-poly1305",
    "ed25519",
];
const REASONS: [Option<&str>; 3] = [None, Some("left"), Some("key compromised\nsee ticket")];
const FORMATS: [ExportFormat; 4] = [
    ExportFormat::Pem,
    ExportFormat::Der,
    ExportFormat::Base64,
    ExportFormat::Jwk,
];

/// Which version an operation names.
#[derive(Clone, Copy, Debug)]
enum VersionSel {
    /// None (the primary).
    Primary,
    /// The n-th existing version (modulo their count).
    Existing(Index),
    /// A version that does not exist.
    Missing,
}

/// The key an operation names: mostly one the model holds, so that most operations
/// reach a key, else any (user, name), which usually names no key.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The n-th key of the model (modulo their count), or this pair if it has none.
    Held(Index, &'static str, &'static str),
    /// This pair.
    Named(&'static str, &'static str),
}

impl Target {
    fn resolve(self, model: &Model) -> (String, String) {
        match self {
            Target::Held(i, user, name) => {
                let held: Vec<(&String, &String)> = model
                    .dict
                    .iter()
                    .flat_map(|(u, keys)| keys.keys().map(move |n| (u, n)))
                    .collect();
                if held.is_empty() {
                    (user.to_string(), name.to_string())
                } else {
                    let (u, n) = held[i.index(held.len())];
                    (u.clone(), n.clone())
                }
            }
            Target::Named(user, name) => (user.to_string(), name.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Gen {
        user: &'static str,
        name: Option<&'static str>,
        key_type: KeyType,
    },
    /// Imports one of the materials exported so far (or, with none yet, garbage).
    Import {
        user: &'static str,
        name: &'static str,
        pick: Index,
    },
    Export {
        target: Target,
        format: ExportFormat,
        public: bool,
        version: VersionSel,
    },
    Delete {
        target: Target,
    },
    DeleteVersion {
        target: Target,
        version: VersionSel,
    },
    Rotate {
        target: Target,
    },
    Revoke {
        user: &'static str,
        reason: Option<&'static str>,
    },
    IsRevoked {
        user: &'static str,
    },
    List {
        user: Option<&'static str>,
    },
    Reopen,
}

fn key_type() -> impl Strategy<Value = KeyType> {
    // Symmetric keys mostly; RSA and Ed25519 rarely, to keep key generation fast.
    prop_oneof![
        5 => Just(KeyType::Fernet),
        5 => Just(KeyType::Aes256Gcm),
        5 => Just(KeyType::ChaCha20Poly1305),
        2 => Just(KeyType::Ed25519),
        1 => Just(KeyType::Rsa2048),
    ]
}

fn version_sel() -> impl Strategy<Value = VersionSel> {
    prop_oneof![
        4 => Just(VersionSel::Primary),
        3 => any::<Index>().prop_map(VersionSel::Existing),
        1 => Just(VersionSel::Missing),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let user = || select(&USERS[..]);
    let name = || select(&NAMES[..]);
    prop_oneof![
        4 => (any::<Index>(), user(), name()).prop_map(|(i, u, n)| Target::Held(i, u, n)),
        1 => (user(), name()).prop_map(|(u, n)| Target::Named(u, n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = || select(&USERS[..]);
    let name = || select(&NAMES[..]);
    prop_oneof![
        6 => (user(), prop::option::weighted(0.5, name()), key_type())
            .prop_map(|(user, name, key_type)| Op::Gen { user, name, key_type }),
        3 => (user(), name(), any::<Index>())
            .prop_map(|(user, name, pick)| Op::Import { user, name, pick }),
        4 => (target(), select(&FORMATS[..]), prop::bool::weighted(0.25), version_sel())
            .prop_map(|(target, format, public, version)| Op::Export {
                target,
                format,
                public,
                version,
            }),
        2 => target().prop_map(|target| Op::Delete { target }),
        1 => (target(), version_sel())
            .prop_map(|(target, version)| Op::DeleteVersion { target, version }),
        3 => target().prop_map(|target| Op::Rotate { target }),
        1 => (user(), select(&REASONS[..])).prop_map(|(user, reason)| Op::Revoke { user, reason }),
        1 => user().prop_map(|user| Op::IsRevoked { user }),
        1 => prop::option::of(user()).prop_map(|user| Op::List { user }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model knows of one key.
#[derive(Clone, Debug)]
struct ModelKey {
    id: String,
    key_type: KeyType,
    /// (version, fingerprint), oldest first.
    versions: Vec<(u32, String)>,
    primary: u32,
    public_only: bool,
}

/// Material exported earlier, to import later.
struct Exported {
    key_type: KeyType,
    bytes: Zeroizing<Vec<u8>>,
    public: bool,
    /// The fingerprint of the version exported.
    fingerprint: String,
}

/// The prototype's state: a dict of users to their keys, and the set of revoked users
/// (here with the receipt of each revocation).
#[derive(Default)]
struct Model {
    dict: BTreeMap<String, BTreeMap<String, ModelKey>>,
    revoked: BTreeMap<String, RevocationInfo>,
    exported: Vec<Exported>,
}

impl Model {
    fn key(&self, user: &str, name: &str) -> Option<&ModelKey> {
        self.dict.get(user).and_then(|keys| keys.get(name))
    }

    fn key_count(&self) -> usize {
        self.dict.values().map(BTreeMap::len).sum()
    }
}

impl Model {
    /// What a key of `user` that the model lacks is refused with: the user is revoked,
    /// is not in the vault at all, or lacks that one key.
    fn missing(&self, user: &str) -> Refusal {
        if self.revoked.contains_key(user) {
            Refusal::UserRevoked
        } else if self.dict.contains_key(user) {
            Refusal::KeyNotFound
        } else {
            Refusal::UserNotFound
        }
    }
}

/// The error a refused operation must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    UserRevoked,
    AlreadyExists,
    UserNotFound,
    KeyNotFound,
    VersionNotFound,
    Usage,
}

fn refusal_of(e: &Error) -> Option<Refusal> {
    Some(match e {
        Error::UserRevoked { .. } => Refusal::UserRevoked,
        Error::UserNotFound { .. } => Refusal::UserNotFound,
        Error::AlreadyExists(_) => Refusal::AlreadyExists,
        Error::KeyNotFound { .. } => Refusal::KeyNotFound,
        Error::VersionNotFound { .. } => Refusal::VersionNotFound,
        Error::Usage(_) => Refusal::Usage,
        _ => return None,
    })
}

/// How often each operation succeeded or was refused, over the whole run.
static STATS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count(event: String) {
    count_n(event, 1);
}

fn count_n(event: String, n: u64) {
    *STATS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(event)
        .or_default() += n;
}

/// Checks `result` is the refusal `expected` (or a success when `None`), and returns
/// the value on success.
fn expect<T: std::fmt::Debug>(
    what: &str,
    result: keyvault::Result<T>,
    expected: Option<Refusal>,
) -> Result<Option<T>, TestCaseError> {
    match (result, expected) {
        (Ok(v), None) => {
            count(format!("{what}: ok"));
            Ok(Some(v))
        }
        (Err(e), Some(want)) if refusal_of(&e) == Some(want) => {
            count(format!("{what}: {want:?}"));
            Ok(None)
        }
        (Ok(v), Some(want)) => Err(TestCaseError::fail(format!(
            "{what}: expected {want:?}, got success {v:?}"
        ))),
        (Err(e), want) => Err(TestCaseError::fail(format!(
            "{what}: expected {}, got error {e:?}",
            want.map_or("success".to_string(), |w| format!("{w:?}"))
        ))),
    }
}

fn version_number(sel: VersionSel, key: Option<&ModelKey>) -> Option<u32> {
    match sel {
        VersionSel::Primary => None,
        VersionSel::Missing => Some(99),
        VersionSel::Existing(i) => Some(match key {
            Some(k) => k.versions[i.index(k.versions.len())].0,
            None => 1,
        }),
    }
}

fn fast_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    }
}

fn open(path: &Path) -> Vault {
    let vault = Vault::open(path, PASSPHRASE).expect("the vault reopens");
    vault.set_deferred_flush(true);
    vault
}

/// The model's description of a key, to compare with the vault's.
fn check_info(info: &KeyInfo, user: &str, name: &str, key: &ModelKey) -> Result<(), TestCaseError> {
    let at = format!("{user}/{name}");
    prop_assert_eq!(&info.user, user, "{}", at);
    prop_assert_eq!(&info.name, name, "{}", at);
    prop_assert_eq!(&info.id, &key.id, "{}: the id changed", at);
    prop_assert_eq!(info.key_type.0, key.key_type, "{}", at);
    prop_assert_eq!(info.primary_version, key.primary, "{}", at);
    prop_assert_eq!(
        key.versions.last().map(|v| v.0),
        Some(key.primary),
        "{}: the primary is the newest version",
        at
    );
    prop_assert_eq!(info.public_only, key.public_only, "{}", at);
    let versions: Vec<(u32, String)> = info
        .versions
        .iter()
        .map(|v| (v.version, v.fingerprint.clone()))
        .collect();
    prop_assert_eq!(&versions, &key.versions, "{}: versions", at);
    for v in &info.versions {
        let want = if v.version == key.primary {
            VersionStateName::Primary
        } else {
            VersionStateName::DecryptOnly
        };
        prop_assert_eq!(v.state, want, "{}: state of version {}", at, v.version);
    }
    let primary_fp = &key
        .versions
        .iter()
        .find(|(v, _)| *v == key.primary)
        .expect("the model's primary exists")
        .1;
    prop_assert_eq!(&info.fingerprint, primary_fp, "{}", at);
    Ok(())
}

/// The whole state: every key, every revoked user, the counts.
fn check_all(vault: &Vault, model: &Model) -> Result<(), TestCaseError> {
    let listed = vault
        .list(None)
        .map_err(|e| TestCaseError::fail(format!("list: {e}")))?;
    let expected: Vec<(&String, &String, &ModelKey)> = model
        .dict
        .iter()
        .flat_map(|(u, keys)| keys.iter().map(move |(n, k)| (u, n, k)))
        .collect();
    let listed_ids: Vec<(&str, &str)> = listed
        .iter()
        .map(|i| (i.user.as_str(), i.name.as_str()))
        .collect();
    let expected_ids: Vec<(&str, &str)> = expected
        .iter()
        .map(|(u, n, _)| (u.as_str(), n.as_str()))
        .collect();
    prop_assert_eq!(listed_ids, expected_ids, "the keys listed");
    for (info, (user, name, key)) in listed.iter().zip(&expected) {
        check_info(info, user, name, key)?;
    }

    let revoked = vault
        .revoked_users()
        .map_err(|e| TestCaseError::fail(format!("revoked: {e}")))?;
    let revoked_users: BTreeSet<&str> = revoked.iter().map(|r| r.user.as_str()).collect();
    let model_revoked: BTreeSet<&str> = model.revoked.keys().map(String::as_str).collect();
    prop_assert_eq!(revoked_users, model_revoked, "the revoked users");
    for r in &revoked {
        prop_assert_eq!(r, &model.revoked[&r.user], "the receipt of {}", r.user);
    }

    let status = vault
        .status()
        .map_err(|e| TestCaseError::fail(format!("status: {e}")))?;
    prop_assert_eq!(status.users, model.dict.len() as u64, "users with keys");
    prop_assert_eq!(status.keys, model.key_count() as u64, "keys");
    prop_assert_eq!(
        status.revoked_users,
        model.revoked.len() as u64,
        "revoked users"
    );
    Ok(())
}

fn fail(what: &str, e: Error) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e}"))
}

/// Runs one operation on both sides and compares what each says.
fn step(vault: &Vault, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Gen {
            user,
            name,
            key_type,
        } => {
            let name_s = name.unwrap_or(key_type.as_str());
            let refusal = if model.revoked.contains_key(user) {
                Some(Refusal::UserRevoked)
            } else if model.key(user, name_s).is_some() {
                Some(Refusal::AlreadyExists)
            } else {
                None
            };
            let result = vault.generate(user, name, key_type);
            if let Some(info) = expect("gen", result, refusal)? {
                prop_assert_eq!(&info.name, name_s);
                prop_assert_eq!(info.key_type.0, key_type);
                prop_assert_eq!(info.versions.len(), 1);
                let key = ModelKey {
                    id: info.id.clone(),
                    key_type,
                    versions: vec![(1, info.fingerprint.clone())],
                    primary: 1,
                    public_only: false,
                };
                check_info(&info, user, name_s, &key)?;
                model
                    .dict
                    .entry(user.to_string())
                    .or_default()
                    .insert(name_s.to_string(), key);
            }
        }
        Op::Import { user, name, pick } => {
            let refusal = if model.revoked.contains_key(user) {
                Some(Refusal::UserRevoked)
            } else if model.key(user, name).is_some() {
                Some(Refusal::AlreadyExists)
            } else {
                None
            };
            if model.exported.is_empty() {
                // Nothing exported yet: garbage, refused after the revoked and
                // duplicate checks.
                let result = vault.import(user, name, KeyType::Fernet, b"not a key", false);
                expect("import garbage", result, refusal.or(Some(Refusal::Usage)))?;
                return Ok(());
            }
            let e = &model.exported[pick.index(model.exported.len())];
            let result = vault.import(user, name, e.key_type, &e.bytes, e.public);
            if let Some(info) = expect("import", result, refusal)? {
                prop_assert_eq!(
                    &info.fingerprint,
                    &e.fingerprint,
                    "an imported key is the key exported"
                );
                let key = ModelKey {
                    id: info.id.clone(),
                    key_type: e.key_type,
                    versions: vec![(1, e.fingerprint.clone())],
                    primary: 1,
                    public_only: e.public && e.key_type.is_asymmetric(),
                };
                check_info(&info, user, name, &key)?;
                model
                    .dict
                    .entry(user.to_string())
                    .or_default()
                    .insert(name.to_string(), key);
            }
        }
        Op::Export {
            target,
            format,
            public,
            version,
        } => {
            let (user, name) = target.resolve(model);
            let (user, name) = (user.as_str(), name.as_str());
            let key = model.key(user, name);
            let number = version_number(version, key);
            let refusal = match key {
                None => Some(model.missing(user)),
                Some(k) if number.is_some_and(|n| !k.versions.iter().any(|v| v.0 == n)) => {
                    Some(Refusal::VersionNotFound)
                }
                Some(k) if !k.key_type.is_asymmetric() => {
                    (public || format == ExportFormat::Pem).then_some(Refusal::Usage)
                }
                Some(k) => (!public && k.public_only).then_some(Refusal::Usage),
            };
            let options = ExportOptions {
                public,
                version: number,
                format: Some(format),
            };
            let result = vault.export(user, name, &options);
            if let Some(bytes) = expect("export", result, refusal)? {
                let k = key.expect("exported a key the model has");
                let v = number.unwrap_or(k.primary);
                let fingerprint = k.versions.iter().find(|x| x.0 == v).unwrap().1.clone();
                model.exported.push(Exported {
                    key_type: k.key_type,
                    bytes,
                    public,
                    fingerprint,
                });
            }
        }
        Op::Delete { target } => {
            let (user, name) = target.resolve(model);
            let (user, name) = (user.as_str(), name.as_str());
            let refusal = model.key(user, name).is_none().then(|| model.missing(user));
            let result = vault.delete(user, name);
            if let Some(info) = expect("delete", result, refusal)? {
                let keys = model.dict.get_mut(user).unwrap();
                let key = keys.remove(name).unwrap();
                if keys.is_empty() {
                    model.dict.remove(user);
                }
                check_info(&info, user, name, &key)?;
            }
        }
        Op::DeleteVersion { target, version } => {
            let (user, name) = target.resolve(model);
            let (user, name) = (user.as_str(), name.as_str());
            let key = model.key(user, name);
            let number = version_number(version, key).unwrap_or(1);
            let refusal = match key {
                None => Some(model.missing(user)),
                Some(k) if !k.versions.iter().any(|v| v.0 == number) => {
                    Some(Refusal::VersionNotFound)
                }
                // The only version, or the primary: refused (the primary is always the
                // newest version, so a version number is never given out twice).
                Some(k) if k.versions.len() == 1 || k.primary == number => Some(Refusal::Usage),
                Some(_) => None,
            };
            let result = vault.delete_version(user, name, number);
            if let Some(info) = expect("delete-version", result, refusal)? {
                let k = model.dict.get_mut(user).unwrap().get_mut(name).unwrap();
                k.versions.retain(|v| v.0 != number);
                let k = k.clone();
                check_info(&info, user, name, &k)?;
            }
        }
        Op::Rotate { target } => {
            let (user, name) = target.resolve(model);
            let (user, name) = (user.as_str(), name.as_str());
            let key = model.key(user, name);
            let refusal = match key {
                None => Some(model.missing(user)),
                Some(k) if k.public_only => Some(Refusal::Usage),
                Some(_) => None,
            };
            let result = vault.rotate(user, name);
            if let Some(info) = expect("rotate", result, refusal)? {
                let k = model.dict.get_mut(user).unwrap().get_mut(name).unwrap();
                // The next version follows the primary, the newest.
                let next = k.primary + 1;
                let fresh = info
                    .versions
                    .last()
                    .map(|v| (v.version, v.fingerprint.clone()))
                    .unwrap();
                prop_assert_eq!(fresh.0, next, "the new version's number");
                prop_assert!(
                    k.versions.iter().all(|v| v.1 != fresh.1),
                    "a rotated version repeats an older key"
                );
                k.versions.push(fresh);
                k.primary = next;
                let k = k.clone();
                check_info(&info, user, name, &k)?;
            }
        }
        Op::Revoke { user, reason } => {
            let outcome = vault.revoke(user, reason).map_err(|e| fail("revoke", e))?;
            count(format!(
                "revoke: {}",
                if outcome.already_revoked {
                    "again"
                } else {
                    "new"
                }
            ));
            if let Some(first) = model.revoked.get(user) {
                prop_assert!(outcome.already_revoked, "a second revocation of {}", user);
                prop_assert_eq!(&outcome.receipt, first, "the first receipt");
            } else {
                prop_assert!(!outcome.already_revoked);
                let receipt = &outcome.receipt;
                prop_assert_eq!(&receipt.user, user);
                prop_assert_eq!(receipt.reason.as_deref(), reason);
                let keys = model.dict.remove(user).unwrap_or_default();
                let destroyed: BTreeMap<&str, _> = receipt
                    .destroyed
                    .iter()
                    .map(|d| (d.name.as_str(), d))
                    .collect();
                let names: Vec<&str> = keys.keys().map(String::as_str).collect();
                prop_assert_eq!(destroyed.keys().copied().collect::<Vec<_>>(), names);
                for (name, k) in &keys {
                    let d = destroyed[name.as_str()];
                    prop_assert_eq!(&d.id, &k.id);
                    prop_assert_eq!(d.key_type.0, k.key_type);
                    let versions: Vec<u32> = k.versions.iter().map(|v| v.0).collect();
                    prop_assert_eq!(&d.versions, &versions);
                    let primary_fp = &k.versions.iter().find(|v| v.0 == k.primary).unwrap().1;
                    prop_assert_eq!(&d.fingerprint, primary_fp);
                }
                model.revoked.insert(user.to_string(), outcome.receipt);
            }
        }
        Op::IsRevoked { user } => {
            let r = vault.revocation(user).map_err(|e| fail("is-revoked", e))?;
            count(format!("is-revoked: {}", r.is_some()));
            prop_assert_eq!(r.as_ref(), model.revoked.get(user), "is-revoked {}", user);
        }
        Op::List { user } => {
            // A user with no keys is said to be revoked or unknown, not listed empty.
            let refusal = user
                .filter(|u| !model.dict.contains_key(*u))
                .map(|u| model.missing(u));
            let Some(listed) = expect("list", vault.list(user), refusal)? else {
                return Ok(());
            };
            let names: Vec<(String, String)> = listed
                .iter()
                .map(|i| (i.user.clone(), i.name.clone()))
                .collect();
            let expected: Vec<(String, String)> = model
                .dict
                .iter()
                .filter(|(u, _)| user.is_none_or(|x| x == u.as_str()))
                .flat_map(|(u, keys)| keys.keys().map(move |n| (u.clone(), n.clone())))
                .collect();
            prop_assert_eq!(names, expected, "list {:?}", user);
        }
        Op::Reopen => unreachable!("run() reopens"),
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let mut vault = Vault::create(&path, PASSPHRASE, fast_kdf(), true).unwrap();
    vault.set_deferred_flush(true);
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Reopen = op {
            count("reopen".into());
            vault.flush().map_err(|e| fail("flush", e))?;
            // The old handle (and its database lock) goes before the vault opens again.
            drop(vault);
            vault = open(&path);
        } else {
            step(&vault, &mut model, op)
                .map_err(|e| TestCaseError::fail(format!("step {i} {op:?}: {e}")))?;
        }
        check_all(&vault, &model)
            .map_err(|e| TestCaseError::fail(format!("after step {i} {op:?}: {e}")))?;
    }
    vault.flush().map_err(|e| fail("flush", e))?;
    drop(vault);
    let vault = open(&path);
    check_all(&vault, &model).map_err(|e| TestCaseError::fail(format!("after reopen: {e}")))?;
    let report = vault.check().map_err(|e| fail("check", e))?;
    prop_assert!(report.ok(), "check: {:?}", report.problems.len());
    prop_assert_eq!(report.keys, model.key_count() as u64);
    prop_assert_eq!(report.revoked, model.revoked.len() as u64);
    Ok(())
}

#[test]
fn vault_agrees_with_the_prototype_model() {
    // 64 cases keep the test under ~10 s; PROPTEST_CASES=1000 for a longer search.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        count("cases".into());
        count_n("steps".into(), ops.len() as u64);
        run(&ops)
    });
    let stats = STATS.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!("model test: {:.1} s", started.elapsed().as_secs_f64());
    for (event, n) in stats.iter() {
        eprintln!("  {event}: {n}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}
