//! Writing to stdout: each command's report, rendered once, as text or as one JSON
//! document. Command code builds a report value and hands it to [`Out::emit`]; it never
//! asks which of the two was wanted (the reports themselves are in `report.rs`).

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;

pub(crate) use keyvault::vault::validate::escape;

/// What a command prints when it succeeds: text through [`fmt::Display`], the `--json`
/// document through [`Serialize`].
pub(crate) trait Report: Serialize + fmt::Display {
    /// Whether the document's object keys come out in alphabetical order, nested ones
    /// too, rather than in field order. Most documents have always been printed this
    /// way (serde_json sorts the keys of a JSON value), and scripts may read them as
    /// text: a report keeps the order its document has. A report that carries secret
    /// material sets this to `false` and declares its fields in alphabetical order, so
    /// the material is never copied into an intermediate JSON value.
    const SORTED_KEYS: bool = true;
}

/// Writes to stdout; a closed pipe (e.g. `| head`) ends the program quietly.
pub(crate) struct Out {
    json: bool,
    stdout: io::StdoutLock<'static>,
}

impl Out {
    /// Output in JSON or text.
    pub(crate) fn new(json: bool) -> Self {
        Out {
            json,
            stdout: io::stdout().lock(),
        }
    }

    /// Whether `--json` was given: for what to read or refuse, never for how to render
    /// (that is [`Out::emit`]'s business).
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Prints a command's report: its JSON document with `--json`, else its text.
    pub(crate) fn emit<R: Report>(&mut self, report: &R) -> io::Result<()> {
        match (self.json, R::SORTED_KEYS) {
            (true, true) => self.doc(&serde_json::to_value(report).map_err(io::Error::other)?),
            (true, false) => self.doc(report),
            (false, _) => self.text(&report.to_string()),
        }
    }

    /// Prints output that may be binary (exported key material): raw as text output,
    /// or with `--json` the report `doc` makes of it.
    pub(crate) fn raw<R: Report>(
        &mut self,
        bytes: &[u8],
        doc: impl FnOnce() -> R,
    ) -> io::Result<()> {
        if self.json {
            self.emit(&doc())
        } else {
            self.bytes(bytes)
        }
    }

    /// Writes raw bytes.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.stdout.write_all(b)?;
        self.stdout.flush()
    }

    /// Flushes stdout.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }

    fn text(&mut self, s: &str) -> io::Result<()> {
        self.stdout.write_all(s.as_bytes())
    }

    /// Writes one JSON document and a newline.
    fn doc<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        // Serialized first, so that a closed pipe surfaces as `BrokenPipe` (quiet), not
        // as a JSON error.
        let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        text.push(b'\n');
        self.stdout.write_all(&text)?;
        self.stdout.flush()
    }
}
