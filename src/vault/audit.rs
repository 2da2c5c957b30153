//! The audit log: an append-only chain of sealed entries.
//!
//! Each entry carries a MAC (under the MK's audit/backup subkey) over its content and
//! the previous entry's MAC, so deleting, reordering or editing an entry breaks the
//! chain. Entries say who, what, when and the outcome — never key material.

use crate::crypto::seal::{Keyring, record_aad};
use crate::error::{Error, Result};
use crate::store::records::{self, AuditRecord};
use crate::store::{Batch, Store, Tree};

use super::types::Timestamp;

/// An event to record.
pub struct AuditEvent {
    operation: &'static str,
    user: Option<String>,
    key: Option<String>,
    outcome: String,
    detail: Option<String>,
}

impl AuditEvent {
    /// A successful `operation`.
    pub fn new(operation: &'static str) -> Self {
        AuditEvent {
            operation,
            user: None,
            key: None,
            outcome: "ok".into(),
            detail: None,
        }
    }

    /// The user concerned.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// The key concerned.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Non-secret details.
    pub fn detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The last entry of the chain: its sequence number and MAC.
#[derive(Clone, Copy, Default)]
pub struct AuditHead {
    seq: u64,
    mac: [u8; 32],
}

fn entry_mac(keyring: &Keyring, entry: &AuditRecord) -> Result<[u8; 32]> {
    let mut unmacd = entry.clone();
    unmacd.mac = [0; 32];
    let bytes = records::encode(&unmacd)?;
    Ok(keyring
        .mac
        .mac(&[b"keyvault audit v1", &bytes, &entry.prev_mac]))
}

fn open_entry(keyring: &Keyring, db_key: &[u8], sealed: &[u8]) -> Result<AuditRecord> {
    let plain = keyring
        .records
        .open(&record_aad(Tree::Audit.name(), db_key), sealed)
        .map_err(|_| Error::Integrity("an audit entry failed to authenticate".into()))?;
    records::decode(&plain, "audit")
}

impl AuditHead {
    /// Reads the head of the chain from the store.
    pub fn load(store: &Store, keyring: &Keyring) -> Result<AuditHead> {
        match store.last(Tree::Audit)? {
            None => Ok(AuditHead::default()),
            Some((db_key, sealed)) => {
                let entry = open_entry(keyring, &db_key, &sealed)?;
                Ok(AuditHead {
                    seq: entry.seq,
                    mac: entry.mac,
                })
            }
        }
    }

    /// Adds the sealed entry for `event` to `batch` and returns the new head (to be
    /// kept once the batch is applied).
    pub fn append(
        &self,
        keyring: &Keyring,
        event: AuditEvent,
        batch: &mut Batch,
        seal: impl Fn(&[u8], &[u8]) -> Result<Vec<u8>>,
    ) -> Result<AuditHead> {
        let mut entry = AuditRecord {
            seq: self.seq + 1,
            time: Timestamp::now().0,
            operation: event.operation.to_string(),
            user: event.user,
            key: event.key,
            outcome: event.outcome,
            detail: event.detail,
            prev_mac: self.mac,
            mac: [0; 32],
        };
        entry.mac = entry_mac(keyring, &entry)?;
        let db_key = entry.seq.to_be_bytes();
        batch.insert(
            Tree::Audit,
            db_key.to_vec(),
            seal(&db_key, &records::encode(&entry)?)?,
        );
        Ok(AuditHead {
            seq: entry.seq,
            mac: entry.mac,
        })
    }
}

/// Reads and verifies the whole chain.
pub fn read_all(store: &Store, keyring: &Keyring) -> Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    let mut prev = AuditHead::default();
    for item in store.scan_prefix(Tree::Audit, &[]) {
        let (db_key, sealed) = item?;
        let position = prev.seq + 1;
        let entry = open_entry(keyring, &db_key, &sealed).map_err(|_| {
            Error::Integrity(format!(
                "audit entry at position {position} failed to authenticate"
            ))
        })?;
        if entry.seq != position || db_key != entry.seq.to_be_bytes() {
            return Err(Error::Integrity(format!(
                "audit chain broken at position {position}: found entry {}",
                entry.seq
            )));
        }
        if entry.prev_mac != prev.mac || entry_mac(keyring, &entry)? != entry.mac {
            return Err(Error::Integrity(format!(
                "audit chain broken at position {position}"
            )));
        }
        prev = AuditHead {
            seq: entry.seq,
            mac: entry.mac,
        };
        out.push(entry);
    }
    Ok(out)
}
