//! Reports of `encrypt`, `decrypt`, `sign` and `verify`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;
use zeroize::Zeroizing;

use super::Report;

/// What `encrypt`, `decrypt` or `sign` made, said with `--json` only (as text, the
/// output itself went to stdout or the file).
#[derive(Default, Serialize)]
pub(crate) struct KeyUsed<'a> {
    /// `encrypt`'s output, without `--out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// The key's name.
    pub name: &'a str,
    /// `decrypt`'s output, without `--out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<Zeroizing<String>>,
    /// `sign`'s output, without `--out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The key's type (`encrypt`, `sign`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub key_type: Option<&'static str>,
    /// The key's owner.
    pub user: &'a str,
    /// The key version used.
    pub version: u32,
    /// The file written, with `--out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
}

impl Report for KeyUsed<'_> {
    // Fields in alphabetical order: a plaintext is never copied into a JSON value.
    const SORTED_KEYS: bool = false;
}

impl Display for KeyUsed<'_> {
    fn fmt(&self, _: &mut Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// The answer of `verify`.
#[derive(Serialize)]
pub(crate) struct Verified<'a> {
    /// The key's name.
    pub name: &'a str,
    /// The key's owner.
    pub user: &'a str,
    /// Whether the signature verifies.
    pub valid: bool,
    /// The other RSA scheme, when the signature verifies with it only.
    pub verifies_with_scheme: Option<&'static str>,
    /// The version it verifies under.
    pub version: Option<u32>,
}

impl Report for Verified<'_> {}

impl Display for Verified<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => writeln!(f, "valid (version {v})"),
            None => writeln!(f, "invalid"),
        }
    }
}
