//! Reports of `revoke`, `is-revoked`, `revoked` and `compact`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use keyvault::vault::lifecycle::CompactReport;
use keyvault::vault::types::{RevocationInfo, RevokeOutcome};

use super::{Report, escape, join};

/// What `revoke` did.
#[derive(Serialize)]
pub(crate) struct RevokeReceipt {
    /// The revocation and its receipt.
    #[serde(flatten)]
    pub outcome: RevokeOutcome,
    /// The compaction `--purge` ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted: Option<CompactReport>,
    /// Why the compaction `--purge` asked for failed (the revocation stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_failed: Option<String>,
}

impl Report for RevokeReceipt {}

impl Display for RevokeReceipt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Receipt(&self.outcome))?;
        if let Some(report) = &self.compacted {
            write!(f, "{}", Compacted(report.clone()))?;
        }
        Ok(())
    }
}

/// The text of a revocation's receipt (also part of `demo`'s story).
pub(crate) struct Receipt<'a>(pub &'a RevokeOutcome);

impl Display for Receipt<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.0.receipt;
        if self.0.already_revoked {
            writeln!(
                f,
                "{} was already revoked at {}",
                escape(&r.user),
                r.revoked_at
            )?;
        } else {
            writeln!(f, "Revoked {} at {}", escape(&r.user), r.revoked_at)?;
        }
        if let Some(reason) = &r.reason {
            writeln!(f, "reason: {}", escape(reason))?;
        }
        writeln!(f, "destroyed keys: {}", r.destroyed.len())?;
        for d in &r.destroyed {
            writeln!(
                f,
                "  {}  {}  {}  versions {}  {}",
                d.id,
                escape(&d.name),
                d.key_type.0,
                join(d.versions.iter().map(u32::to_string)),
                d.fingerprint
            )?;
        }
        Ok(())
    }
}

/// The answer of `is-revoked`.
#[derive(Serialize)]
pub(crate) struct RevocationAnswer {
    /// The revocation, if the user is revoked.
    pub revocation: Option<RevocationInfo>,
    /// Whether the user is revoked.
    pub revoked: bool,
    /// The user asked about.
    pub user: String,
}

impl Report for RevocationAnswer {}

impl Display for RevocationAnswer {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.revoked {
            "revoked\n"
        } else {
            "not revoked\n"
        })
    }
}

/// The revoked users, oldest first (`revoked`).
#[derive(Serialize)]
pub(crate) struct RevokedList {
    /// The revocations.
    pub revoked: Vec<RevocationInfo>,
}

impl Report for RevokedList {}

impl Display for RevokedList {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.revoked.is_empty() {
            return writeln!(f, "no revoked users");
        }
        for r in &self.revoked {
            writeln!(
                f,
                "{}  {}  {}",
                escape(&r.user),
                r.revoked_at,
                escape(r.reason.as_deref().unwrap_or("-"))
            )?;
        }
        Ok(())
    }
}

/// A compaction (`compact`, and `revoke --purge`).
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Compacted(pub CompactReport);

impl Report for Compacted {
    const SORTED_KEYS: bool = false;
}

impl Display for Compacted {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "Compacted the vault: {} records, {} bytes before, {} bytes after",
            r.records, r.bytes_before, r.bytes_after
        )
    }
}
