//! Reports of `ssh enable|disable|socket|list`, and of `gen --ssh` / `import --ssh`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use keyvault::vault::ssh::{SshKey, SshMarkOutcome};

use super::{Report, Stored, escape};

/// A key that `gen --ssh` or `import --ssh` stored and marked for SSH.
#[derive(Serialize)]
pub(crate) struct StoredForSsh {
    /// The key.
    pub key: Stored,
    /// Its mark.
    pub ssh: SshMarked,
}

impl Report for StoredForSsh {}

impl Display for StoredForSsh {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.key, self.ssh)
    }
}

/// What `ssh enable` or `ssh disable` did.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct SshMarked(pub SshMarkOutcome);

impl Report for SshMarked {}

impl Display for SshMarked {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let o = &self.0;
        let key = format!("{}/{}", escape(&o.user), escape(&o.name));
        let fp = o
            .fingerprint
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        match (o.enabled, o.changed) {
            (true, true) => writeln!(f, "Serving {key} to ssh{fp}"),
            (true, false) => writeln!(f, "{key} was already served to ssh{fp}"),
            (false, true) => writeln!(f, "No longer serving {key} to ssh"),
            (false, false) => writeln!(f, "{key} was not served to ssh"),
        }
    }
}

/// The SSH socket `ssh socket` found.
#[derive(Serialize)]
pub(crate) struct SshSocket {
    /// Its path.
    pub ssh_socket: String,
}

impl Report for SshSocket {}

impl Display for SshSocket {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.ssh_socket)
    }
}

/// The keys `ssh list` shows.
#[derive(Serialize)]
pub(crate) struct SshKeyList {
    /// The keys served to ssh.
    pub ssh_keys: Vec<SshKey>,
}

impl Report for SshKeyList {}

impl Display for SshKeyList {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.ssh_keys.is_empty() {
            return writeln!(
                f,
                "No keys are served to ssh; mark one with `keyvault ssh enable USER NAME`"
            );
        }
        for k in &self.ssh_keys {
            writeln!(f, "{}  {}", k.fingerprint, escape(&k.public_key))?;
        }
        Ok(())
    }
}
