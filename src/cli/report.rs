//! What each command prints when it succeeds: one report type per outcome, rendered as
//! text by its `Display` and as the `--json` document by its `Serialize` (see
//! [`Report`]). Command code builds a report and hands it to
//! [`super::output::Out::emit`]; how it looks lives here, and only here.
//!
//! A JSON document's field names and their order are a stable interface: a report keeps
//! the shape its document has always had. Text a user supplied (ids, names, reasons,
//! audit details) is escaped in text output and given as it is in JSON.

//!
//! One module per command family; a new command's report goes in its family's module
//! (or a new one), is re-exported here, and implements `Serialize`, `Display` and
//! [`Report`]. The helpers below (tables, counts, durations) are shared by them.

use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use keyvault::vault::types::KeyInfo;

pub(crate) use super::output::{Report, escape};

mod agent;
mod demo;
mod keys;
mod keyuse;
mod lifecycle;
mod revocation;
mod ssh;

pub(crate) use agent::{AgentFacts, AlreadyUnlocked, Locked, Status, Unlocked};
pub(crate) use demo::Demo;
pub(crate) use keys::{Deleted, Exported, KeyList, Rotated, Stored, Written};
pub(crate) use keyuse::{KeyUsed, Verified};
pub(crate) use lifecycle::{
    AuditLog, AuditVerified, BackedUp, Checked, Created, PassphraseChanged, Restored,
};
pub(crate) use revocation::{Compacted, Receipt, RevocationAnswer, RevokeReceipt, RevokedList};
pub(crate) use ssh::{SshKeyList, SshMarked, SshSocket, StoredForSsh};

/// `1 version`, `2 versions`.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1,2,3`.
pub(super) fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// The versions of a key, e.g. `1,2,3 (primary 3)`.
pub(super) struct VersionList<'a>(&'a KeyInfo);

impl Display for VersionList<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let k = self.0;
        let list = join(k.versions.iter().map(|v| v.version.to_string()));
        write!(f, "{list} (primary {})", k.primary_version)
    }
}

/// A duration in whole seconds, short: `15m`, `1h30m`.
pub(crate) fn short_secs(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs))
        .to_string()
        .replace(' ', "")
}

/// A table: columns padded to their widest cell (counted in chars) and two spaces
/// apart, the last one unpadded, no trailing blanks.
///
/// Written into one buffer and handed to `f` once: a `list` of thousands of keys must
/// not cost a `format!` per cell and a write per line (that was half of the client's
/// instructions for 1,000 keys).
pub(super) fn table(f: &mut Formatter<'_>, header: &[String], rows: &[Vec<String>]) -> fmt::Result {
    let mut widths: Vec<usize> = header.iter().map(|h| text_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(text_width(cell));
        }
    }
    let line_len: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity((rows.len() + 1) * (line_len + 1));
    for cells in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let start = out.len();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = w.saturating_sub(text_width(cell)) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
    f.write_str(&out)
}

/// A cell's width as `format!`'s padding counts it: in chars.
fn text_width(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::{Exported, KeyUsed, Report};

    /// A report printed in field order (`SORTED_KEYS = false`) must declare its fields
    /// in alphabetical order, or its document would change shape.
    fn declared_in_sorted_order<R: Report>(report: &R) {
        assert!(!R::SORTED_KEYS);
        let direct = serde_json::to_string_pretty(report).unwrap();
        let sorted = serde_json::to_value(report).unwrap();
        assert_eq!(direct, serde_json::to_string_pretty(&sorted).unwrap());
    }

    #[test]
    fn reports_printed_in_field_order_declare_their_fields_alphabetically() {
        declared_in_sorted_order(&KeyUsed {
            ciphertext: Some("c".into()),
            name: "n",
            plaintext: Some(Zeroizing::new("p".into())),
            signature: Some("s".into()),
            key_type: Some("fernet"),
            user: "u",
            version: 1,
            written: Some("w".into()),
        });
        declared_in_sorted_order(&Exported {
            material: Zeroizing::new("m".into()),
            name: "n",
            user: "u",
        });
    }
}
