//! The audit log: an append-only chain of sealed entries.
//!
//! Each entry carries a MAC (under the MK's audit/backup subkey) over its content and
//! the previous entry's MAC, so deleting, reordering or editing an entry breaks the
//! chain. Entries say who, what, when and the outcome — never key material.

use subtle::ConstantTimeEq;

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
    /// An entry for `operation` (a command's name), with outcome `ok` until told otherwise.
    pub fn new(operation: &'static str) -> Self {
        AuditEvent {
            operation,
            user: None,
            key: None,
            outcome: "ok".into(),
            detail: None,
        }
    }

    /// Names the user the operation concerned.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Names the key the operation concerned.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Sets the outcome (default `ok`).
    pub fn outcome(&mut self, outcome: &str) {
        self.outcome = outcome.to_string();
    }

    /// Adds details, which the log keeps in the clear: never a secret.
    pub fn detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The last entry of the chain: its sequence number and MAC. It is also kept, sealed,
/// in the meta tree (updated in the same batch as each entry), so that removing the
/// newest entries is detected too.
#[derive(Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    seq: u64,
    mac: [u8; 32],
    /// Set when the log was found truncated at open: the position where it breaks.
    /// Appending would hide that, so every change is refused until it is dealt with
    /// (restore from a backup); reads, `audit` and `check` still report it.
    #[serde(skip)]
    broken_at: Option<u64>,
}

/// The meta-tree key of the sealed chain head.
pub const HEAD_KEY: &[u8] = b"audit-head";

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

/// The head of a chain whose last entry is `last`.
pub(crate) fn head_of(last: Option<&AuditRecord>) -> AuditHead {
    last.map(|e| AuditHead {
        seq: e.seq,
        mac: e.mac,
        broken_at: None,
    })
    .unwrap_or_default()
}

/// Reads the sealed chain head from meta records, if there is one.
pub(crate) fn stored_head(keyring: &Keyring, sealed: Option<&[u8]>) -> Result<Option<AuditHead>> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = keyring
        .records
        .open(&record_aad(Tree::Meta.name(), HEAD_KEY), sealed)
        .map_err(|_| Error::Integrity("the audit chain head failed to authenticate".into()))?;
    records::decode(&plain, "audit head").map(Some)
}

impl AuditHead {
    /// How many entries the chain has.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Reads the head of the chain from the store (format 2 and later). A log with
    /// entries but no head was truncated: an integrity error, since appending to it would
    /// hide that.
    pub fn load(store: &Store, keyring: &Keyring) -> Result<AuditHead> {
        if let Some(head) = stored_head(keyring, store.get(Tree::Meta, HEAD_KEY)?.as_deref())? {
            return Ok(head);
        }
        match store.last(Tree::Audit)? {
            None => Ok(AuditHead::default()),
            Some((db_key, _)) => {
                let n = <[u8; 8]>::try_from(db_key.as_slice())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Ok(AuditHead {
                    seq: n,
                    mac: [0; 32],
                    broken_at: Some(n + 1),
                })
            }
        }
    }

    /// Adds the sealed entry for `event` to `batch` and returns the new head (to be
    /// staged with [`AuditHead::stage`] in the same batch, and kept once it is applied).
    pub fn append(
        &self,
        keyring: &Keyring,
        event: AuditEvent,
        batch: &mut Batch,
        seal: impl Fn(Tree, &[u8], &[u8]) -> Result<Vec<u8>>,
    ) -> Result<AuditHead> {
        if let Some(position) = self.broken_at {
            return Err(Error::Integrity(format!(
                "audit chain broken at position {position}: the sealed chain head is missing (the log was truncated or tampered with); no change is made until the vault is restored from a backup"
            )));
        }
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
            seal(Tree::Audit, &db_key, &records::encode(&entry)?)?,
        );
        Ok(AuditHead {
            seq: entry.seq,
            mac: entry.mac,
            broken_at: None,
        })
    }

    /// Adds this head, sealed, to `batch` (once per batch, after its last entry).
    pub(crate) fn stage(
        &self,
        batch: &mut Batch,
        seal: impl Fn(Tree, &[u8], &[u8]) -> Result<Vec<u8>>,
    ) -> Result<()> {
        batch.insert(
            Tree::Meta,
            HEAD_KEY.to_vec(),
            seal(Tree::Meta, HEAD_KEY, &records::encode(self)?)?,
        );
        Ok(())
    }
}

/// A break in the audit chain: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainBreak {
    /// The position (from 1) of the first entry that does not fit.
    pub position: u64,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl From<ChainBreak> for Error {
    fn from(b: ChainBreak) -> Error {
        Error::Integrity(b.message)
    }
}

/// Reads and verifies the whole chain (format 2 and later: the head must be there when
/// there are entries).
pub(crate) fn read_all(store: &Store, keyring: &Keyring) -> Result<Vec<AuditRecord>> {
    let head = stored_head(keyring, store.get(Tree::Meta, HEAD_KEY)?.as_deref())?
        .or(Some(AuditHead::default()));
    let entries: Vec<_> = store.scan_prefix(Tree::Audit, &[]).collect::<Result<_>>()?;
    verify_chain(keyring, &entries, head).map_err(Error::from)
}

/// Verifies a chain of sealed entries given in key order against the stored head, and
/// returns the entries.
pub(crate) fn verify_chain(
    keyring: &Keyring,
    entries: &[(Vec<u8>, Vec<u8>)],
    head: Option<AuditHead>,
) -> std::result::Result<Vec<AuditRecord>, ChainBreak> {
    let mut out = Vec::with_capacity(entries.len());
    let mut prev = AuditHead::default();
    for (db_key, sealed) in entries {
        let position = prev.seq + 1;
        let broken = |what: &str| ChainBreak {
            position,
            message: format!("audit chain broken at position {position}: {what}"),
        };
        let entry = open_entry(keyring, db_key, sealed)
            .map_err(|_| broken("the entry failed to authenticate"))?;
        if entry.seq != position || db_key.as_slice() != entry.seq.to_be_bytes() {
            return Err(broken(&format!(
                "found entry {} (an entry was removed or reordered)",
                entry.seq
            )));
        }
        let mac = entry_mac(keyring, &entry).map_err(|_| broken("the entry does not encode"))?;
        // MACs are compared in constant time.
        let chained = entry.prev_mac.ct_eq(&prev.mac) & mac.ct_eq(&entry.mac);
        if !bool::from(chained) {
            return Err(broken("the entry does not chain to the previous one"));
        }
        prev = AuditHead {
            seq: entry.seq,
            mac: entry.mac,
            broken_at: None,
        };
        out.push(entry);
    }
    if let Some(head) = head
        && head.seq == 0
        && prev.seq > 0
    {
        let position = prev.seq + 1;
        return Err(ChainBreak {
            position,
            message: format!(
                "audit chain broken at position {position}: the sealed chain head is missing (the log was truncated or tampered with)"
            ),
        });
    }
    if let Some(head) = head
        && !(head.seq == prev.seq && bool::from(head.mac.ct_eq(&prev.mac)))
    {
        let position = prev.seq + 1;
        return Err(ChainBreak {
            position,
            message: format!(
                "audit chain broken at position {position}: the log ends at entry {} but {} were written",
                prev.seq, head.seq
            ),
        });
    }
    Ok(out)
}
