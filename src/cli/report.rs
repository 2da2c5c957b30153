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

use keyvault::vault::types::{KeyInfo, Timestamp};

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
/// Cells are written one after another into one buffer (no `String` per cell), then
/// laid out into one output buffer handed to the formatter once: a `list` of thousands
/// of keys must not cost an allocation per cell, a date formatted per row and a write
/// per line (that was most of the client's instructions for 1,000 keys).
pub(super) struct Table {
    /// How many cells make a row.
    columns: usize,
    /// Every cell's text, header first, row after row.
    text: String,
    /// Where each cell ends in `text`, and its width in chars.
    cells: Vec<(usize, usize)>,
    /// The widest cell of each column, in chars.
    widths: Vec<usize>,
    /// The last date written, as seconds and as text: keys made in the same second
    /// (a batch of `gen`, an import) format their date once.
    last_date: Option<(u64, String)>,
}

impl Table {
    /// A table with this header, and room for `rows` rows of about `row_len` bytes.
    pub(super) fn new(header: &[&str], rows: usize, row_len: usize) -> Self {
        let mut table = Table {
            columns: header.len(),
            text: String::with_capacity(rows.saturating_add(1).saturating_mul(row_len)),
            cells: Vec::with_capacity(rows.saturating_add(1).saturating_mul(header.len())),
            widths: vec![0; header.len()],
            last_date: None,
        };
        for h in header {
            table.push_str(h);
            table.end_cell();
        }
        table
    }

    /// Adds text to the current cell.
    pub(super) fn push_str(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Adds a number to the current cell.
    pub(super) fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = u8::try_from(n % 10).map_or(b'0', |d| b'0' + d);
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.text
            .push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
    }

    /// Adds numbers to the current cell, comma-separated: `1,2,3`.
    pub(super) fn push_list(&mut self, numbers: impl Iterator<Item = u64>) {
        for (i, n) in numbers.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.push_u64(n);
        }
    }

    /// Adds a date to the current cell, as [`Timestamp`]'s `Display` writes it.
    pub(super) fn push_date(&mut self, t: Timestamp) {
        match &mut self.last_date {
            Some((secs, text)) if *secs == t.0 => self.text.push_str(text),
            last => {
                let text = t.to_string();
                self.text.push_str(&text);
                *last = Some((t.0, text));
            }
        }
    }

    /// Ends the current cell: the next text starts the next one.
    pub(super) fn end_cell(&mut self) {
        let column = self.cells.len() % self.columns;
        // The last column is not padded: its width is never needed.
        let mut width = 0;
        if column + 1 < self.columns {
            let start = self.cells.last().map_or(0, |&(end, _)| end);
            width = text_width(&self.text[start..]);
            self.widths[column] = self.widths[column].max(width);
        }
        self.cells.push((self.text.len(), width));
    }

    /// Writes the table to `f`, in one write.
    pub(super) fn write(&self, f: &mut Formatter<'_>) -> fmt::Result {
        const SPACES: &str = "                                                                ";
        let line_len: usize = self.widths.iter().map(|w| w + 2).sum();
        let lines = self.cells.len().div_ceil(self.columns.max(1));
        let mut out = String::with_capacity(self.text.len() + lines * (line_len + 1));
        let mut start = 0;
        for row in self.cells.chunks(self.columns.max(1)) {
            let line = out.len();
            for (i, (&(end, width), w)) in row.iter().zip(&self.widths).enumerate() {
                out.push_str(&self.text[start..end]);
                start = end;
                if i + 1 < row.len() {
                    let mut pad = w.saturating_sub(width) + 2;
                    while pad > 0 {
                        let n = pad.min(SPACES.len());
                        out.push_str(&SPACES[..n]);
                        pad -= n;
                    }
                }
            }
            let kept = out[line..].trim_end().len();
            out.truncate(line + kept);
            out.push('\n');
        }
        f.write_str(&out)
    }
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
