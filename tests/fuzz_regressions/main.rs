//! Inputs kept from fuzzing (`fuzz/`), replayed on every `cargo test`.
//!
//! `tests/fuzz_regressions/<target>/` holds inputs for the fuzz target of that name
//! (crashes it found, and inputs that showed a defect). Each is fed to the same library
//! functions the target calls, with the same fixed keys, and must not panic. Defects that
//! are not panics have their own tests below, named after what broke.

use std::fs;
use std::path::{Path, PathBuf};

use keyvault::KeyType;
use keyvault::agent::protocol::{
    AgentRequest, AgentResponse, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, read_message,
};
use keyvault::backup::{BackupHeader, read_header, verify_body};
use keyvault::crypto::envelope;
use keyvault::crypto::fernet_token;
use keyvault::crypto::keys::{self, ExportFormat, KeyMaterial};
use keyvault::crypto::seal::MasterKey;
use keyvault::store::records::{
    self, AuditRecord, FailedUnlocks, Header, KeyRecord, RevokedRecord,
};
use zeroize::Zeroizing;

/// The fixed keys of the fuzz targets (`fuzz/src/lib.rs`).
const MASTER_KEY: [u8; 32] = *b"keyvault fuzz master key 000001!";
const ENVELOPE_KEY: [u8; 32] = [0x5A; 32];
const FERNET_V1: [u8; 32] = [0x11; 32];
const FERNET_V2: [u8; 32] = [0x22; 32];

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn input(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target)
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn record_decode_inputs_do_not_panic() {
    for (_, data) in inputs("record_decode") {
        let _ = records::decode::<Header>(&data, "header");
        let _ = records::decode::<KeyRecord>(&data, "key");
        let _ = records::decode::<RevokedRecord>(&data, "revoked");
        let _ = records::decode::<AuditRecord>(&data, "audit");
        let _ = records::decode::<FailedUnlocks>(&data, "failed unlocks");
        let _ = records::decode::<BackupHeader>(&data, "backup header");
    }
}

#[test]
fn agent_protocol_inputs_do_not_panic() {
    for (_, data) in inputs("agent_protocol") {
        let mut stream = data.as_slice();
        while read_message::<AgentRequest>(&mut stream, MAX_REQUEST_BYTES).is_ok() {}
        let mut stream = data.as_slice();
        while read_message::<AgentResponse>(&mut stream, MAX_RESPONSE_BYTES).is_ok() {}
    }
}

#[test]
fn backup_reader_inputs_do_not_panic() {
    let keyring = MasterKey::from_bytes(Zeroizing::new(MASTER_KEY)).keyring();
    for (_, data) in inputs("backup_reader") {
        if let Ok((header, start)) = read_header(&data) {
            let _ = verify_body(&data, start, &header, &keyring);
        }
    }
}

#[test]
fn key_import_inputs_do_not_panic() {
    for (_, data) in inputs("key_import") {
        for key_type in KeyType::ALL {
            for public in [false, true] {
                let _ = keys::import(key_type, &data, public);
            }
        }
    }
}

#[test]
fn envelope_reader_inputs_do_not_panic() {
    for (_, data) in inputs("envelope_reader") {
        let mut reader = data.as_slice();
        if let Ok(header) = envelope::read_header(&mut reader) {
            let _ =
                envelope::decrypt_stream(&header, &ENVELOPE_KEY, &mut reader, &mut std::io::sink());
        }
    }
}

#[test]
fn fernet_token_inputs_do_not_panic() {
    let keys: [(u32, &[u8]); 2] = [(2, &FERNET_V2), (1, &FERNET_V1)];
    for (_, data) in inputs("fernet_token") {
        let _ = fernet_token::decrypt(&keys, &data);
        let _ = fernet_token::decrypt_with_ttl(&keys, &data, 60);
        let _ = fernet_token::decrypt_with_ttl(&keys, &data, u64::MAX);
    }
}

/// `export --format der` writes a symmetric key as its 32 raw bytes; one whose first
/// non-blank byte is `{` (about 1 key in 256) is then taken for a JWK on import and
/// refused, so the exported key cannot be imported back.
#[test]
fn raw_symmetric_key_starting_with_a_brace_imports_back() {
    let raw = input("key_import", "raw-symmetric-key-starting-with-brace");
    assert_eq!(raw.len(), 32);
    for key_type in [
        KeyType::Fernet,
        KeyType::Aes256Gcm,
        KeyType::ChaCha20Poly1305,
    ] {
        let material = KeyMaterial {
            secret: Zeroizing::new(raw.clone()),
            public: None,
        };
        let der = keys::export(key_type, &material, false, ExportFormat::Der).unwrap();
        assert_eq!(der.as_slice(), raw.as_slice());
        let back = keys::import(key_type, &der, false)
            .unwrap_or_else(|e| panic!("{key_type}: the exported raw key does not import: {e}"));
        assert_eq!(back.secret.as_slice(), raw.as_slice());
    }
}

/// A symmetric key given as 32 characters of text is taken as 32 raw bytes: the base64
/// of a 24-byte key (or the hex of a 16-byte one) typed without a trailing newline is
/// stored as a "key" made of its ASCII characters instead of being refused as the wrong
/// length (with a newline it is refused).
#[test]
fn a_wrong_length_key_as_32_characters_of_text_is_refused() {
    let text = input("key_import", "base64-of-a-24-byte-key-without-newline");
    assert_eq!(text.len(), 32);
    for input in [&text[..], b"00112233445566778899aabbccddeeff"] {
        let result = keys::import(KeyType::Aes256Gcm, input, false);
        assert!(
            matches!(result, Err(keyvault::Error::Usage(_))),
            "{:?} was accepted as a 32-byte key",
            String::from_utf8_lossy(input)
        );
    }
}
