//! Writes the seed corpora under `fuzz/corpus_seed/<target>/`: small, valid inputs of
//! each kind (records, frames, a backup of a real vault, keys in every encoding,
//! envelopes, Fernet tokens), for the fuzzer to mutate.
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! Keys and ids are random, so the files differ from run to run; their shapes do not.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use keyvault::KeyType;
use keyvault::agent::protocol::{AgentRequest, AgentResponse, write_message};
use keyvault::backup::{BACKUP_FORMAT, BackupHeader, read_header, verify_body, write_backup};
use keyvault::crypto::envelope::{AeadAlgorithm, encrypt_stream};
use keyvault::crypto::fernet_token;
use keyvault::crypto::kdf::KdfParams;
use keyvault::crypto::keys::{self, ExportFormat};
use keyvault::ops;
use keyvault::store::records::{
    self, AuditRecord, DestroyedKey, FailedUnlocks, Header, KeyRecord, KeyVersionRecord,
    RevokedRecord, VersionState, meta_keys,
};
use keyvault::store::{Store, Tree};
use keyvault::{ExportOptions, Vault};
use keyvault_fuzz::{ENVELOPE_KEY, FERNET_V1, FERNET_V2, keyring, repair_backup};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, LineEnding};
use zeroize::Zeroizing;

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Seeds {
        let dir = root.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Seeds { dir, count: 0 }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) {
        self.count += 1;
        fs::write(self.dir.join(format!("{:02}-{name}", self.count)), bytes).unwrap();
    }
}

fn kdf() -> KdfParams {
    KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    }
}

fn header() -> Header {
    Header {
        kdf: kdf(),
        salt: vec![0xAB; 16],
        wrapped_master_key: vec![0xCD; 24 + 32 + 16],
        created: 1_700_000_000,
    }
}

fn record_seeds(root: &Path) {
    let mut s = Seeds::new(root, "record_decode");
    s.put("header", &records::encode(&header()).unwrap());
    let key = KeyRecord {
        id: [7; 16],
        user: "User123".into(),
        name: "fernet".into(),
        key_type: KeyType::Fernet,
        created: 1_700_000_001,
        versions: vec![
            KeyVersionRecord {
                version: 1,
                created: 1_700_000_001,
                state: VersionState::DecryptOnly,
                secret: Zeroizing::new(vec![1; 32]),
                public: None,
                uses: 3,
            },
            KeyVersionRecord {
                version: 2,
                created: 1_700_000_002,
                state: VersionState::Primary,
                secret: Zeroizing::new(vec![2; 32]),
                public: Some(vec![0x30, 0x2a, 0x30, 0x05]),
                uses: 0,
            },
        ],
    };
    s.put("key", &records::encode(&key).unwrap());
    let revoked = RevokedRecord {
        user: "User123".into(),
        revoked_at: 1_700_000_003,
        reason: Some("left".into()),
        destroyed: vec![DestroyedKey {
            id: [7; 16],
            name: "fernet".into(),
            key_type: KeyType::Fernet,
            versions: vec![1, 2],
            fingerprint: "SHA256:abc".into(),
        }],
    };
    s.put("revoked", &records::encode(&revoked).unwrap());
    let audit = AuditRecord {
        seq: 9,
        time: 1_700_000_004,
        operation: "revoke".into(),
        user: Some("User123".into()),
        key: None,
        outcome: "ok".into(),
        detail: Some("1 key(s) destroyed".into()),
        prev_mac: [1; 32],
        mac: [2; 32],
    };
    s.put("audit", &records::encode(&audit).unwrap());
    let failed = FailedUnlocks {
        count: 2,
        first: 1,
        last: 2,
    };
    s.put("failed-unlocks", &records::encode(&failed).unwrap());
    let backup = BackupHeader {
        vault_format: 1,
        created: 1_700_000_005,
        vault_header: header(),
        records: 3,
    };
    s.put("backup-header", &records::encode(&backup).unwrap());
    println!("record_decode: {} seeds", s.count);
}

fn frame<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, message).unwrap();
    out
}

fn agent_seeds(root: &Path) {
    let mut s = Seeds::new(root, "agent_protocol");
    s.put("ping", &frame(&AgentRequest::Ping));
    s.put("status", &frame(&AgentRequest::Status));
    s.put(
        "extend",
        &frame(&AgentRequest::Extend {
            timeout_secs: Some(900),
        }),
    );
    s.put("lock", &frame(&AgentRequest::Lock));
    s.put(
        "gen",
        &frame(&AgentRequest::Op(ops::Request::Generate {
            user: "User123".into(),
            name: None,
            key_type: KeyType::Ed25519,
        })),
    );
    s.put(
        "import",
        &frame(&AgentRequest::Op(ops::Request::Import {
            user: "User123".into(),
            name: "k".into(),
            key_type: KeyType::Aes256Gcm,
            material: Zeroizing::new(vec![b'A'; 44]),
            public_only: false,
        })),
    );
    s.put(
        "export",
        &frame(&AgentRequest::Op(ops::Request::Export {
            user: "User123".into(),
            name: "k".into(),
            options: ExportOptions {
                public: true,
                version: Some(2),
                format: Some(ExportFormat::Jwk),
            },
        })),
    );
    s.put(
        "list",
        &frame(&AgentRequest::Op(ops::Request::List {
            user: Some("User123".into()),
        })),
    );
    s.put(
        "revoke",
        &frame(&AgentRequest::Op(ops::Request::Revoke {
            user: "User123".into(),
            reason: Some("left".into()),
            purge: true,
        })),
    );
    let mut two = frame(&AgentRequest::Ping);
    two.extend_from_slice(&frame(&AgentRequest::Op(ops::Request::Status)));
    s.put("two-frames", &two);
    s.put(
        "response-pong",
        &frame(&AgentResponse::Pong(keyvault::agent::protocol::AgentInfo {
            pid: 42,
            vault_id: "ab".repeat(16),
            vault_path: b"/tmp/v".to_vec(),
            dev: 1,
            ino: 2,
        })),
    );
    s.put(
        "response-error",
        &frame(&AgentResponse::Error {
            code: 5,
            message: "no key".into(),
            hint: Some("list".into()),
        }),
    );
    println!("agent_protocol: {} seeds", s.count);
}

fn backup_seeds(root: &Path) {
    let mut s = Seeds::new(root, "backup_reader");
    let tmp = tempfile::tempdir().unwrap();
    // A real vault's records, in a backup MACed under the fuzz keyring.
    let vault_dir = tmp.path().join("vault");
    {
        let vault = Vault::create(&vault_dir, b"pw", kdf(), true).unwrap();
        vault.generate("User123", None, KeyType::Fernet).unwrap();
        vault.generate("User123", None, KeyType::Aes256Gcm).unwrap();
        vault.generate("bob", None, KeyType::Ed25519).unwrap();
        vault.revoke("bob", Some("left")).unwrap();
    }
    let store = Store::open(&vault_dir).unwrap();
    let vault_header: Header = records::decode(
        &store.get(Tree::Meta, meta_keys::HEADER).unwrap().unwrap(),
        "h",
    )
    .unwrap();
    let mut all = Vec::new();
    for tree in Tree::ALL {
        for (k, v) in store.entries(tree).unwrap() {
            all.push((tree, k, v));
        }
    }
    drop(store);
    let mut write = |name: &str, records: Vec<(Tree, Vec<u8>, Vec<u8>)>| {
        let header = BackupHeader {
            vault_format: 1,
            created: 1_700_000_000,
            vault_header: vault_header.clone(),
            records: records.len() as u64,
        };
        let path = tmp.path().join(format!("{name}.kvbackup"));
        let mut items = records.into_iter().map(Ok);
        write_backup(&path, &header, keyring(), &mut items, &mut |_, _| {}).unwrap();
        let bytes = fs::read(&path).unwrap();
        // The harness's sanity: the seed verifies as written and as "repaired".
        for b in [bytes.clone(), repair_backup(&bytes)] {
            let (h, start) = read_header(&b).unwrap();
            let records = verify_body(&b, start, &h, keyring()).unwrap();
            assert_eq!(records.len() as u64, header.records);
        }
        s.put(name, &bytes);
    };
    write("empty", Vec::new());
    write(
        "one-per-tree",
        Tree::ALL
            .into_iter()
            .map(|t| (t, vec![t.index() as u8; 3], vec![0xEE; 5]))
            .collect(),
    );
    write("vault", all);
    assert_eq!(BACKUP_FORMAT, 1);
    println!("backup_reader: {} seeds", s.count);
}

fn key_seeds(root: &Path) {
    let mut s = Seeds::new(root, "key_import");
    for key_type in KeyType::ALL {
        let material = keys::generate(key_type).unwrap();
        for format in [
            ExportFormat::Pem,
            ExportFormat::Der,
            ExportFormat::Base64,
            ExportFormat::Jwk,
        ] {
            for public in [false, true] {
                let big = matches!(key_type, KeyType::Rsa3072 | KeyType::Rsa4096);
                // The larger RSA keys only as PEM and JWK: the shapes are the same.
                if big && matches!(format, ExportFormat::Der | ExportFormat::Base64) {
                    continue;
                }
                if let Ok(out) = keys::export(key_type, &material, public, format) {
                    let kind = if public { "public" } else { "private" };
                    s.put(&format!("{key_type}-{kind}.{format:?}"), &out);
                }
            }
        }
        if key_type == KeyType::Rsa2048 {
            let k = rsa::PrivateKey::from_pkcs8_der(&material.secret).unwrap();
            s.put(
                "rsa-2048-pkcs1-private.pem",
                k.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes(),
            );
            s.put(
                "rsa-2048-pkcs1-private.der",
                k.to_pkcs1_der().unwrap().as_bytes(),
            );
            let p = k.to_public_key();
            s.put(
                "rsa-2048-pkcs1-public.pem",
                p.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes(),
            );
        }
    }
    s.put(
        "fernet-spec-key",
        b"cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=\n",
    );
    println!("key_import: {} seeds", s.count);
}

fn envelope_seeds(root: &Path) {
    let mut s = Seeds::new(root, "envelope_reader");
    for (alg, name) in [
        (AeadAlgorithm::Aes256Gcm, "aes"),
        (AeadAlgorithm::ChaCha20Poly1305, "chacha"),
    ] {
        for len in [0usize, 5, 100] {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut out = Vec::new();
            encrypt_stream(alg, &ENVELOPE_KEY, 1, &mut plain.as_slice(), &mut out).unwrap();
            s.put(&format!("{name}-{len}"), &out);
        }
    }
    // Differential cases: alg, chunk, mutation kind, position (u16), byte, plaintext.
    for (kind, pos) in [(0u8, 0u16), (1, 60), (2, 70), (3, 0), (4, 53)] {
        let mut case = vec![kind, 15, kind, (pos >> 8) as u8, pos as u8, 3];
        case.extend_from_slice(b"the quick brown fox jumps over the lazy dog");
        s.put(&format!("case-{kind}"), &case);
    }
    println!("envelope_reader: {} seeds", s.count);
}

fn fernet_seeds(root: &Path) {
    let mut s = Seeds::new(root, "fernet_token");
    for (key, name) in [(&FERNET_V1, "v1"), (&FERNET_V2, "v2")] {
        for plain in [&b""[..], b"hello", b"sixteen bytes!!!"] {
            let token = fernet_token::encrypt(key, plain).unwrap();
            s.put(&format!("{name}-{}", plain.len()), token.as_bytes());
            if name == "v1" {
                // The token's body (no HMAC), which the forged mode MACs itself.
                let raw = URL_SAFE.decode(&token).unwrap();
                s.put(&format!("body-{}", plain.len()), &raw[..raw.len() - 32]);
            }
        }
    }
    s.put(
        "spec-token",
        b"gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==\n",
    );
    println!("fernet_token: {} seeds", s.count);
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus_seed"));
    record_seeds(&root);
    agent_seeds(&root);
    backup_seeds(&root);
    key_seeds(&root);
    envelope_seeds(&root);
    fernet_seeds(&root);
}
