//! Revocation: revoking a user (every key destroyed, time and reason recorded, the
//! sealed ledger updated in the same batch), answering whether a user is revoked, and
//! never serving a key of a revoked user.

use crate::error::{Error, RecordKind, Result};
use crate::store::records::{DestroyedKey, KeyRecord, RevokedRecord};
use crate::store::{Batch, Tree};

use super::types::{DestroyedKeyInfo, KeyTypeName, RevocationInfo, RevokeOutcome, Timestamp};
use super::{AuditEvent, Vault, hex, key_info, ledger, validate};

impl Vault {
    /// Revokes a user: destroys every key of theirs and records the time and reason.
    /// Revoking an already revoked user changes nothing and returns the first receipt.
    pub fn revoke(&self, user: &str, reason: Option<&str>) -> Result<RevokeOutcome> {
        let user = &self.resolve_user(user)?;
        if let Some(reason) = reason {
            validate::reason(reason)?;
        }
        let head = self.lock_writer();
        self.trusted_ledger()?;
        if let Some(existing) = self.revoked_record(user)? {
            return Ok(RevokeOutcome {
                already_revoked: true,
                receipt: revocation_info(&existing),
            });
        }
        let keys = self.keys_of(user)?;
        let mut batch = Batch::new();
        let mut destroyed = Vec::with_capacity(keys.len());
        let mut forget = Vec::with_capacity(keys.len());
        for (db_key, record) in keys {
            destroyed.push(destroyed_key(&record));
            batch.remove(Tree::Keys, db_key.clone());
            forget.push(db_key);
        }
        let revoked = RevokedRecord {
            user: user.to_string(),
            revoked_at: Timestamp::now().0,
            reason: reason.map(str::to_string),
            destroyed,
        };
        let db_key = self.user_hash(user);
        self.stage(&mut batch, Tree::Revoked, &db_key, &revoked)?;
        self.commit_revocation(
            head,
            batch,
            &db_key,
            AuditEvent::new("revoke")
                .user(user)
                .detail(format!("{} key(s) destroyed", revoked.destroyed.len())),
        )?;
        for db_key in forget {
            self.forget_uses(&db_key);
        }
        Ok(RevokeOutcome {
            already_revoked: false,
            receipt: revocation_info(&revoked),
        })
    }

    /// The revocation of a user, if revoked.
    pub fn revocation(&self, user: &str) -> Result<Option<RevocationInfo>> {
        let user = &self.resolve_user(user)?;
        self.trusted_ledger()?;
        Ok(self.revoked_record(user)?.map(|r| revocation_info(&r)))
    }

    /// Every revoked user, oldest revocation first.
    pub fn revoked_users(&self) -> Result<Vec<RevocationInfo>> {
        self.trusted_ledger()?;
        let mut out = Vec::new();
        for item in self.store.scan_prefix(Tree::Revoked, &[]) {
            let (db_key, sealed) = item?;
            let record: RevokedRecord = self.open_record(Tree::Revoked, &db_key, &sealed)?;
            if db_key != self.user_hash(&record.user) {
                return Err(Error::IndexMismatch {
                    kind: RecordKind::Revocation,
                });
            }
            out.push(revocation_info(&record));
        }
        out.sort_by(|a, b| (a.revoked_at, &a.user).cmp(&(b.revoked_at, &b.user)));
        Ok(out)
    }

    /// A key of a revoked user is never served: revoking destroys every key in the same
    /// atomic change, so one that is there was copied back from an older copy of the
    /// vault's files. When the revoked users no longer match the sealed ledger, no
    /// revocation answer can be trusted, so no key is served either.
    pub(super) fn refuse_key_of_revoked(&self, user: &str) -> Result<()> {
        if self.trusted_ledger()?.count == 0 {
            return Ok(());
        }
        if self.store.contains(Tree::Revoked, &self.user_hash(user))? {
            return Err(Error::Integrity(format!(
                "{user:?} is revoked, yet a key of theirs is in the vault: it was copied back from an older copy of the vault's files (tampering); restore from a backup and re-apply revocations"
            )));
        }
        Ok(())
    }
    pub(super) fn revoked_record(&self, user: &str) -> Result<Option<RevokedRecord>> {
        let db_key = self.user_hash(user);
        let Some(sealed) = self.store.get(Tree::Revoked, &db_key)? else {
            return Ok(None);
        };
        let record: RevokedRecord = self.open_record(Tree::Revoked, &db_key, &sealed)?;
        if record.user != user {
            return Err(Error::IndexMismatch {
                kind: RecordKind::Revocation,
            });
        }
        Ok(Some(record))
    }
    /// The verified revocation ledger, or an integrity error if a revocation was
    /// removed: then no revocation answer can be trusted and no key may be added.
    pub(super) fn trusted_ledger(&self) -> Result<ledger::Ledger> {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map_err(Error::Integrity)
    }
}

/// What a revocation receipt keeps of a destroyed key.
pub(super) fn destroyed_key(record: &KeyRecord) -> DestroyedKey {
    DestroyedKey {
        id: record.id,
        name: record.name.clone(),
        key_type: record.key_type,
        versions: record.versions.iter().map(|v| v.version).collect(),
        fingerprint: key_info(record).fingerprint,
    }
}

pub(super) fn revocation_info(record: &RevokedRecord) -> RevocationInfo {
    RevocationInfo {
        user: record.user.clone(),
        revoked_at: Timestamp(record.revoked_at),
        reason: record.reason.clone(),
        destroyed: record
            .destroyed
            .iter()
            .map(|d| DestroyedKeyInfo {
                id: hex(&d.id),
                name: d.name.clone(),
                key_type: KeyTypeName(d.key_type),
                versions: d.versions.clone(),
                fingerprint: d.fingerprint.clone(),
            })
            .collect(),
    }
}
