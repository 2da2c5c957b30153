//! `check`: open and authenticate every record of every tree, check that every
//! database key matches its record's ids, that the audit chain holds, and that the
//! format version is known. Read-only; reports each problem with its tree and position,
//! never a secret.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::crypto::seal::Keyring;
use crate::error::Result;
use crate::store::Tree;
use crate::store::records::{self, Header, KeyRecord, RevokedRecord, VersionState, meta_keys};
use crate::vault::migrate::{CURRENT_FORMAT, LAST_IN_DATABASE_FORMAT};

use super::{audit, epoch, key_db_key, ledger, open_record, user_hash, validate};

/// One problem `check` found, with where it found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The tree the damaged record is in (`meta`, `keys`, `revoked`, `audit`).
    pub tree: String,
    /// The record's position in the tree, from 1, in key order.
    pub position: u64,
    /// What is wrong, for a person to read.
    pub message: String,
}

/// What `check` found: the records it read and the problems among them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The format version recorded.
    pub format_version: u32,
    /// Key records read and authenticated.
    pub keys: u64,
    /// Revocation records read and authenticated.
    pub revoked: u64,
    /// Audit entries whose chain was verified.
    pub audit_entries: u64,
    /// Every problem; empty when all is well.
    pub problems: Vec<Problem>,
    /// What is not wrong but deserves a look: user ids stored before today's rules
    /// on ids (not NFC, invisible or bidirectional characters). They are never renamed;
    /// they stay reachable by their exact spelling.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// Whether the check passed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, tree: Tree, position: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            tree: tree.name().to_string(),
            position,
            message: message.into(),
        });
    }
}

/// The records of every tree, in key order.
pub(crate) type TreeRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Checks the records of a vault (or of a backup) of `format` against its keyring and
/// header (the keyring of that format: see `MasterKey::keyring_for_format`).
pub(crate) fn check_records(
    keyring: &Keyring,
    header: &Header,
    format: u32,
    records: &dyn Fn(Tree) -> Result<TreeRecords>,
) -> Result<CheckReport> {
    let mut report = CheckReport {
        format_version: format,
        ..CheckReport::default()
    };
    let meta = records(Tree::Meta)?;
    if format > LAST_IN_DATABASE_FORMAT {
        check_meta(keyring, &meta, &mut report);
    } else {
        check_legacy_meta(header, &meta, &mut report);
    }

    // Keys: each opens, decodes, sits under the key its ids give, and is well formed.
    let mut users_with_keys = BTreeSet::new();
    for (i, (k, v)) in records(Tree::Keys)?.iter().enumerate() {
        let pos = i as u64 + 1;
        report.keys += 1;
        match open_record::<KeyRecord>(keyring, Tree::Keys, k, v) {
            Err(e) => report.problem(Tree::Keys, pos, e.to_string()),
            Ok(r) => {
                if key_db_key(keyring, &r.user, &r.name) != *k {
                    report.problem(
                        Tree::Keys,
                        pos,
                        "the record's ids do not match its database key",
                    );
                }
                let primaries = r
                    .versions
                    .iter()
                    .filter(|v| v.state == VersionState::Primary)
                    .count();
                if r.versions.is_empty() || primaries != 1 {
                    report.problem(Tree::Keys, pos, format!(
                        "the key has {} versions and {primaries} primary ones; expected one primary",
                        r.versions.len()
                    ));
                }
                if r.versions.windows(2).any(|w| w[0].version >= w[1].version) {
                    report.problem(Tree::Keys, pos, "the key's versions are out of order");
                }
                users_with_keys.insert(r.user);
            }
        }
    }

    // Revoked: the set matches its sealed ledger (format 3 on); each record opens and
    // sits under its user's hash; a revoked user keeps no key.
    let revoked = records(Tree::Revoked)?;
    if report.format_version >= 3 {
        let sealed = meta
            .iter()
            .find(|(k, _)| k.as_slice() == ledger::LEDGER_KEY)
            .map(|(_, v)| v.as_slice());
        if let Err(message) =
            ledger::compare(keyring, revoked.iter().map(|(k, _)| k.clone()), sealed)
        {
            report.problem(Tree::Revoked, 0, message);
        }
    }
    for (i, (k, v)) in revoked.iter().enumerate() {
        let pos = i as u64 + 1;
        report.revoked += 1;
        match open_record::<RevokedRecord>(keyring, Tree::Revoked, k, v) {
            Err(e) => report.problem(Tree::Revoked, pos, e.to_string()),
            Ok(r) => {
                if user_hash(keyring, &r.user).as_slice() != k.as_slice() {
                    report.problem(
                        Tree::Revoked,
                        pos,
                        "the record's user does not match its database key",
                    );
                }
                if users_with_keys.contains(&r.user) {
                    report.problem(Tree::Revoked, pos, "a revoked user still has keys");
                }
            }
        }
    }

    // Ids stored before today's rules on user ids: reported, never renamed.
    let mut ids: BTreeSet<String> = users_with_keys;
    for (k, v) in &revoked {
        if let Ok(r) = open_record::<RevokedRecord>(keyring, Tree::Revoked, k, v) {
            ids.insert(r.user);
        }
    }
    for id in ids {
        if let Some(why) = validate::nonconforming(&id) {
            report.warnings.push(format!(
                "the user id \"{}\" breaks the rules on user ids ({why}); it still works when typed exactly as stored, and is not renamed: to move its keys to a valid id, export and import them",
                validate::escape(&id)
            ));
        }
    }

    // Audit: the chain holds from the first entry to the stored head.
    let audit = records(Tree::Audit)?;
    report.audit_entries = audit.len() as u64;
    let head_record = meta
        .iter()
        .find(|(k, _)| k.as_slice() == audit::HEAD_KEY)
        .map(|(_, v)| v.as_slice());
    match audit::stored_head(keyring, head_record) {
        Err(e) => report.problem(Tree::Meta, 0, e.to_string()),
        Ok(head) => {
            // From format 2 on, a log with entries has a head; format 1 had none.
            let head = if report.format_version >= 2 {
                head.or(Some(audit::head_of(None)))
            } else {
                head
            };
            if let Err(b) = audit::verify_chain(keyring, &audit, head) {
                report.problem(Tree::Audit, b.position, b.message);
            }
        }
    }
    Ok(report)
}

/// Meta records of format 4 on: a sealed epoch, and neither a format nor a header record
/// (those live in the header file).
fn check_meta(keyring: &Keyring, meta: &TreeRecords, report: &mut CheckReport) {
    let mut saw_epoch = false;
    for (i, (k, v)) in meta.iter().enumerate() {
        let pos = i as u64 + 1;
        if k.as_slice() == meta_keys::FORMAT || k.as_slice() == meta_keys::HEADER {
            report.problem(
                Tree::Meta,
                pos,
                format!(
                    "a {:?} record in the database, where format {} keeps none (planted)",
                    String::from_utf8_lossy(k),
                    report.format_version
                ),
            );
        } else if k.as_slice() == epoch::EPOCH_KEY {
            saw_epoch = true;
            match epoch::open(keyring, v) {
                Err(e) => report.problem(Tree::Meta, pos, e.to_string()),
                Ok(record) => {
                    // Against the ledger record as stored (the revoked users are
                    // compared with that ledger below) and the stored audit head.
                    let ledger = meta
                        .iter()
                        .find(|(k, _)| k.as_slice() == ledger::LEDGER_KEY)
                        .and_then(|(_, v)| ledger::Ledger::open(keyring, v).ok());
                    let head = meta
                        .iter()
                        .find(|(k, _)| k.as_slice() == audit::HEAD_KEY)
                        .and_then(|(_, v)| audit::stored_head(keyring, Some(v)).ok().flatten())
                        .unwrap_or_default();
                    if let Some(ledger) = ledger
                        && let Err(e) = record.check(&ledger, head.seq())
                    {
                        report.problem(Tree::Meta, pos, e.to_string());
                    }
                }
            }
        }
    }
    if !saw_epoch {
        report.problem(Tree::Meta, 0, "no epoch record");
    }
}

/// Meta records of formats 1 to 3: a known format version and the header that unlocked
/// the vault.
fn check_legacy_meta(header: &Header, meta: &TreeRecords, report: &mut CheckReport) {
    let mut saw_format = false;
    let mut saw_header = false;
    for (i, (k, v)) in meta.iter().enumerate() {
        let pos = i as u64 + 1;
        if k.as_slice() == meta_keys::FORMAT {
            saw_format = true;
            match <[u8; 4]>::try_from(v.as_slice()) {
                Ok(b) => {
                    let recorded = u32::from_be_bytes(b);
                    if recorded == 0 || recorded > LAST_IN_DATABASE_FORMAT {
                        report.problem(
                            Tree::Meta,
                            pos,
                            format!(
                                "format version {recorded} is not one a database records (1 to {LAST_IN_DATABASE_FORMAT}; this keyvault writes {CURRENT_FORMAT})"
                            ),
                        );
                    } else if recorded != report.format_version {
                        report.problem(
                            Tree::Meta,
                            pos,
                            format!(
                                "the database records format {recorded}, its backup header {}",
                                report.format_version
                            ),
                        );
                    }
                }
                Err(_) => report.problem(Tree::Meta, pos, "the format version is malformed"),
            }
        } else if k.as_slice() == meta_keys::HEADER {
            saw_header = true;
            match records::decode::<Header>(v, "header") {
                Ok(h) if &h == header => {}
                Ok(_) => report.problem(
                    Tree::Meta,
                    pos,
                    "the header differs from the one that unlocked the vault",
                ),
                Err(e) => report.problem(Tree::Meta, pos, e.to_string()),
            }
        }
    }
    if !saw_format {
        report.problem(Tree::Meta, 0, "no format version record");
    }
    if !saw_header {
        report.problem(Tree::Meta, 0, "no header record");
    }
}
