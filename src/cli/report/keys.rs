//! Reports of `gen`, `import`, `rotate`, `delete`, `list` and `export`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;
use zeroize::Zeroizing;

use keyvault::vault::ssh::SshKey;
use keyvault::vault::types::KeyInfo;

use super::{Report, Table, VersionList, count, escape};

/// A key that `gen` or `import` stored.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Stored {
    /// `Stored` or `Imported`.
    #[serde(skip)]
    pub verb: &'static str,
    /// The key.
    pub key: KeyInfo,
}

impl Report for Stored {
    const SORTED_KEYS: bool = false;
}

impl Display for Stored {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        writeln!(
            f,
            "{} {} key {:?} for {}",
            self.verb,
            k.key_type.0,
            k.name,
            escape(&k.user)
        )?;
        writeln!(f, "id:          {}", k.id)?;
        writeln!(f, "version:     {}", k.primary_version)?;
        writeln!(f, "fingerprint: {}", k.fingerprint)?;
        if k.public_only {
            writeln!(f, "public only: yes")?;
        }
        Ok(())
    }
}

/// A key that `rotate` gave a new version.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Rotated(pub KeyInfo);

impl Report for Rotated {
    const SORTED_KEYS: bool = false;
}

impl Display for Rotated {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let k = &self.0;
        writeln!(
            f,
            "Rotated {} key {:?} of {}: version {} is primary ({}); versions: {}",
            k.key_type.0,
            k.name,
            escape(&k.user),
            k.primary_version,
            k.fingerprint,
            VersionList(k)
        )
    }
}

/// A key, or one version of it, that `delete` destroyed.
#[derive(Serialize)]
pub(crate) struct Deleted {
    /// The key as it was (without `version`), or as it is left.
    pub deleted: KeyInfo,
    /// The version destroyed alone, if one was.
    pub version: Option<u32>,
}

impl Report for Deleted {}

impl Display for Deleted {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let k = &self.deleted;
        match self.version {
            Some(v) => writeln!(
                f,
                "Deleted version {v} of {} key {:?} of {}; versions left: {}",
                k.key_type.0,
                k.name,
                escape(&k.user),
                VersionList(k)
            ),
            None => writeln!(
                f,
                "Deleted {} key {:?} of {} ({}, {})",
                k.key_type.0,
                k.name,
                escape(&k.user),
                count(k.versions.len(), "version", "versions"),
                k.fingerprint
            ),
        }
    }
}

/// The keys `list` shows, and which of them are served to ssh.
#[derive(Serialize)]
pub(crate) struct KeyList {
    /// The keys.
    pub keys: Vec<KeyInfo>,
    /// The keys served to ssh, with their SSH fingerprints.
    pub ssh: Vec<SshKey>,
}

impl Report for KeyList {}

/// How one cell of `list`'s table is written from a key.
type Cell = fn(&KeyInfo, &mut Table);

/// The columns of `list`'s table: the header, and the cell of each key. A new column is
/// one more entry.
const KEY_COLUMNS: &[(&str, Cell)] = &[
    ("USER", |k, t| t.push_str(&escape(&k.user))),
    ("NAME", |k, t| t.push_str(&escape(&k.name))),
    ("TYPE", |k, t| {
        t.push_str(k.key_type.0.as_str());
        if k.public_only {
            t.push_str(" (public)");
        }
    }),
    ("VERSIONS", |k, t| {
        t.push_list(k.versions.iter().map(|v| u64::from(v.version)));
    }),
    ("USES", |k, t| {
        t.push_list(k.versions.iter().map(|v| v.uses))
    }),
    ("CREATED", |k, t| t.push_date(k.created)),
    ("FINGERPRINT", |k, t| t.push_str(&k.fingerprint)),
];

impl Display for KeyList {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.keys.is_empty() {
            return writeln!(f, "no keys");
        }
        let header: Vec<&str> = KEY_COLUMNS.iter().map(|(h, _)| *h).collect();
        // A typical row: a user and a name, a type, a version or two, a date and a
        // fingerprint.
        let mut table = Table::new(&header, self.keys.len(), 160);
        for k in &self.keys {
            for (_, cell) in KEY_COLUMNS {
                cell(k, &mut table);
                table.end_cell();
            }
        }
        table.write(f)?;
        if !self.ssh.is_empty() {
            writeln!(f, "\nServed to ssh (SSH fingerprints):")?;
            for k in &self.ssh {
                let (user, name) = (escape(&k.user), escape(&k.name));
                writeln!(f, "  {user}/{name}  {}  {}", k.key_type.0, k.fingerprint)?;
            }
        }
        Ok(())
    }
}

/// Key material `export` printed (with `--json`, and no `--out`).
#[derive(Serialize)]
pub(crate) struct Exported<'a> {
    /// Text material less its final newline, or binary material in base64.
    pub material: Zeroizing<String>,
    /// The key's name.
    pub name: &'a str,
    /// The key's owner.
    pub user: &'a str,
}

impl Report for Exported<'_> {
    // Fields in alphabetical order: the material is never copied into a JSON value.
    const SORTED_KEYS: bool = false;
}

impl Exported<'_> {
    /// Text material as it is, less its final newline (as `encrypt --json` gives a
    /// token); binary material in base64.
    pub(crate) fn material(material: &[u8]) -> Zeroizing<String> {
        match std::str::from_utf8(material) {
            Ok(t) => Zeroizing::new(t.trim_end_matches('\n').to_string()),
            Err(_) => {
                use base64::Engine as _;
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(material))
            }
        }
    }
}

impl Display for Exported<'_> {
    fn fmt(&self, _: &mut Formatter<'_>) -> fmt::Result {
        // As text, the material itself is the output (see `Out::raw`).
        Ok(())
    }
}

/// A file that `export --out` wrote: said with `--json` only.
#[derive(Serialize)]
pub(crate) struct Written {
    /// The file.
    pub written: String,
}

impl Report for Written {}

impl Display for Written {
    fn fmt(&self, _: &mut Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}
