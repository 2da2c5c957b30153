//! Rendering results as text or as one JSON document.

use std::io::{self, Write};

use serde::Serialize;

use keyvault::vault::lifecycle::CompactReport;
use keyvault::vault::types::{KeyInfo, RevocationInfo, RevokeOutcome, VaultStatus};
pub use keyvault::vault::validate::escape;

/// Writes to stdout; a closed pipe (e.g. `| head`) ends the program quietly.
pub struct Out {
    json: bool,
    stdout: io::StdoutLock<'static>,
}

impl Out {
    /// Output in JSON or text.
    pub fn new(json: bool) -> Self {
        Out {
            json,
            stdout: io::stdout().lock(),
        }
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes text.
    pub fn text(&mut self, s: &str) -> io::Result<()> {
        self.stdout.write_all(s.as_bytes())
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.stdout.write_all(b)?;
        self.stdout.flush()
    }

    /// Writes one JSON document and a newline.
    pub fn doc<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        // Serialized first, so that a closed pipe surfaces as `BrokenPipe` (quiet), not
        // as a JSON error.
        let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        text.push(b'\n');
        self.stdout.write_all(&text)?;
        self.stdout.flush()
    }

    /// Flushes stdout.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }
}

/// The lines describing a key that was stored.
pub fn stored_key(verb: &str, k: &KeyInfo) -> String {
    let mut s = format!(
        "{verb} {} key {:?} for {}\nid:          {}\nversion:     {}\nfingerprint: {}\n",
        k.key_type.0,
        k.name,
        escape(&k.user),
        k.id,
        k.primary_version,
        k.fingerprint
    );
    if k.public_only {
        s.push_str("public only: yes\n");
    }
    s
}

/// A table of keys.
///
/// Written straight into one buffer: a listing of thousands of keys costs a few
/// allocations per row, not a `format!` per cell (which made rendering most of the
/// client's time for a large `list`).
pub fn key_table(keys: &[KeyInfo]) -> String {
    use std::borrow::Cow;
    if keys.is_empty() {
        return "no keys\n".to_string();
    }
    let header = [
        "USER",
        "NAME",
        "TYPE",
        "VERSIONS",
        "USES",
        "CREATED",
        "FINGERPRINT",
    ];
    // Keys made in the same second share their `CREATED` cell's text.
    let mut created: Option<(u64, String)> = None;
    let rows: Vec<[Cow<'_, str>; 7]> = keys
        .iter()
        .map(|k| {
            let mut versions = String::new();
            let mut uses = String::new();
            for (i, v) in k.versions.iter().enumerate() {
                if i > 0 {
                    versions.push(',');
                    uses.push(',');
                }
                push_decimal(&mut versions, u64::from(v.version));
                push_decimal(&mut uses, v.uses);
            }
            let when = match &created {
                Some((secs, text)) if *secs == k.created.0 => text.clone(),
                _ => {
                    let text = k.created.to_string();
                    created = Some((k.created.0, text.clone()));
                    text
                }
            };
            let key_type = if k.public_only {
                Cow::Owned(format!("{} (public)", k.key_type.0))
            } else {
                Cow::Borrowed(k.key_type.0.as_str())
            };
            [
                escape(&k.user),
                escape(&k.name),
                key_type,
                Cow::Owned(versions),
                Cow::Owned(uses),
                Cow::Owned(when),
                Cow::Borrowed(k.fingerprint.as_str()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(text_width(cell));
        }
    }
    let line_len: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity((rows.len() + 1) * (line_len + 1));
    // Each cell but the last is left-aligned to its column's width (counted in chars,
    // as `format!("{cell:<w$}")` pads) and followed by two spaces; the line loses its
    // trailing whitespace.
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let start = out.len();
        let mut cells = cells.zip(widths).peekable();
        while let Some((cell, w)) = cells.next() {
            out.push_str(cell);
            if cells.peek().is_some() {
                let pad = w.saturating_sub(text_width(cell)) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(|c| c.as_ref()));
    }
    out
}

/// A cell's width as `format!`'s padding counts it: in chars.
fn text_width(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// The receipt of a revocation.
pub fn receipt(outcome: &RevokeOutcome) -> String {
    let r = &outcome.receipt;
    let mut s = if outcome.already_revoked {
        format!(
            "{} was already revoked at {}\n",
            escape(&r.user),
            r.revoked_at
        )
    } else {
        format!("Revoked {} at {}\n", escape(&r.user), r.revoked_at)
    };
    if let Some(reason) = &r.reason {
        s.push_str(&format!("reason: {}\n", escape(reason)));
    }
    s.push_str(&format!("destroyed keys: {}\n", r.destroyed.len()));
    for d in &r.destroyed {
        let versions: Vec<String> = d.versions.iter().map(u32::to_string).collect();
        s.push_str(&format!(
            "  {}  {}  {}  versions {}  {}\n",
            d.id,
            escape(&d.name),
            d.key_type.0,
            versions.join(","),
            d.fingerprint
        ));
    }
    s
}

/// The list of revoked users.
pub fn revocations(list: &[RevocationInfo]) -> String {
    if list.is_empty() {
        return "no revoked users\n".to_string();
    }
    let mut s = String::new();
    for r in list {
        s.push_str(&format!(
            "{}  {}  {}\n",
            escape(&r.user),
            r.revoked_at,
            escape(r.reason.as_deref().unwrap_or("-"))
        ));
    }
    s
}

/// The status lines.
pub fn status(state: &str, st: &VaultStatus) -> String {
    let mut s = format!(
        "state:          {state}\nvault:          {}\nformat version: {}\n",
        st.path, st.format_version
    );
    if let Some(kdf) = &st.kdf {
        s.push_str(&format!("kdf:            Argon2id {kdf}\n"));
    }
    s.push_str(&format!(
        "users:          {}\nkeys:           {}\nrevoked users:  {}\n",
        st.users, st.keys, st.revoked_users
    ));
    s
}

/// The line after a compaction.
pub fn compacted(r: &CompactReport) -> String {
    format!(
        "Compacted the vault: {} records, {} bytes before, {} bytes after\n",
        r.records, r.bytes_before, r.bytes_after
    )
}

/// `1 version`, `2 versions`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The versions of a key, e.g. `1,2,3 (primary 3)`.
pub fn version_list(k: &KeyInfo) -> String {
    let list: Vec<String> = k.versions.iter().map(|v| v.version.to_string()).collect();
    format!("{} (primary {})", list.join(","), k.primary_version)
}
