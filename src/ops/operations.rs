//! [`Operations`]: the typed face of [`Request`] and [`Response`]. Whoever carries
//! requests out (a [`Vault`] this process opened, the agent's client, the command
//! line's session that picks one of the two) implements one method, and callers get a
//! typed result from each operation; an answer of the wrong kind is turned into an
//! error here, and nowhere else.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::crypto::sign::RsaScheme;
use crate::error::Result;
use crate::keytype::KeyType;
use crate::vault::check::CheckReport;
use crate::vault::keyuse::Used;
use crate::vault::lifecycle::{AuditEntry, BackupReport, CompactReport};
use crate::vault::ssh::{SshKey, SshMarkOutcome};
use crate::vault::types::{KeyInfo, RevocationInfo, RevokeOutcome, VaultStatus};
use crate::vault::{ExportOptions, Vault};

use super::{Request, Response};

/// What `revoke` did: the revocation, and with `purge` the compaction or why it failed
/// (the revocation then stands).
pub struct Revoked {
    /// The revocation and its receipt.
    pub outcome: RevokeOutcome,
    /// The compaction that followed, with `purge`.
    pub compacted: Option<CompactReport>,
    /// Why the compaction that `purge` asked for failed.
    pub purge_failed: Option<String>,
}

/// The key of one AEAD envelope, as [`Operations::envelope_key`] hands it out.
pub struct EnvelopeKey {
    /// The envelope header (new, or the one given).
    pub header: Vec<u8>,
    /// The envelope's key (opens that envelope only).
    pub key: Zeroizing<Vec<u8>>,
    /// A warning for the user.
    pub warning: Option<String>,
}

/// The error for an answer of the wrong kind: a bug (or a mismatched agent), never
/// something a user did.
fn wrong_answer(asked: &str, answer: &Response) -> crate::Error {
    crate::Error::Internal(format!("unexpected response to {asked}: {}", answer.kind()))
}

impl Response {
    /// The variant's name, for error messages (never its contents).
    fn kind(&self) -> &'static str {
        match self {
            Response::Status(_) => "Status",
            Response::Key(_) => "Key",
            Response::Deleted(_) => "Deleted",
            Response::Keys(_) => "Keys",
            Response::Material(_) => "Material",
            Response::Revoke(_) => "Revoke",
            Response::Revocation(_) => "Revocation",
            Response::Revocations(_) => "Revocations",
            Response::Backup(_) => "Backup",
            Response::Check(_) => "Check",
            Response::Done => "Done",
            Response::Audit(_) => "Audit",
            Response::Compacted(..) => "Compacted",
            Response::PurgeFailed { .. } => "PurgeFailed",
            Response::Produced(_) => "Produced",
            Response::Plaintext { .. } => "Plaintext",
            Response::EnvelopeKey { .. } => "EnvelopeKey",
            Response::Verified(_) => "Verified",
            Response::SshMark(_) => "SshMark",
            Response::SshKeys(_) => "SshKeys",
        }
    }

    /// `Done`, or the error for any other answer to `asked`.
    pub fn into_done(self, asked: &str) -> Result<()> {
        match self {
            Response::Done => Ok(()),
            other => Err(wrong_answer(asked, &other)),
        }
    }
}

/// Runs `$request` and takes the answer apart with `$pattern => $value`; any other
/// answer is a wrong-kind error. The one place requests meet their responses.
macro_rules! ask {
    ($self:ident, $request:expr, $pattern:pat => $value:expr) => {{
        let request = $request;
        let asked = request.name();
        match $self.execute(request)? {
            $pattern => Ok($value),
            other => Err(wrong_answer(asked, &other)),
        }
    }};
}

/// The operations a command runs on an unlocked vault, wherever the vault is: a
/// [`Vault`] this process opened, or the agent that holds it
/// ([`crate::agent::client::AgentClient`]). An implementation provides [`execute`];
/// every other method builds its [`Request`] and takes the matching [`Response`] apart
/// here, so callers get typed results and never see an answer of the wrong kind.
///
/// [`execute`]: Operations::execute
pub trait Operations {
    /// Carries out one request.
    fn execute(&mut self, request: Request) -> Result<Response>;

    /// Counts and facts.
    fn status(&mut self) -> Result<VaultStatus> {
        ask!(self, Request::Status, Response::Status(s) => s)
    }

    /// Generates a key (named after its type unless `name` is given).
    fn generate(&mut self, user: &str, name: Option<&str>, key_type: KeyType) -> Result<KeyInfo> {
        ask!(self, Request::Generate {
            user: user.to_string(),
            name: name.map(str::to_string),
            key_type,
        }, Response::Key(k) => k)
    }

    /// Stores an existing key.
    fn import(
        &mut self,
        user: &str,
        name: &str,
        key_type: KeyType,
        material: Zeroizing<Vec<u8>>,
        public_only: bool,
    ) -> Result<KeyInfo> {
        ask!(self, Request::Import {
            user: user.to_string(),
            name: name.to_string(),
            key_type,
            material,
            public_only,
        }, Response::Key(k) => k)
    }

    /// Exports key material.
    fn export(
        &mut self,
        user: &str,
        name: &str,
        options: ExportOptions,
    ) -> Result<Zeroizing<Vec<u8>>> {
        ask!(self, Request::Export {
            user: user.to_string(),
            name: name.to_string(),
            options,
        }, Response::Material(m) => m)
    }

    /// Marks a key for SSH (`enabled`), or removes its mark.
    fn ssh_mark(&mut self, user: &str, name: &str, enabled: bool) -> Result<SshMarkOutcome> {
        ask!(self, Request::SshMark {
            user: user.to_string(),
            name: name.to_string(),
            enabled,
        }, Response::SshMark(o) => o)
    }

    /// The keys served to `ssh`.
    fn ssh_keys(&mut self) -> Result<Vec<SshKey>> {
        ask!(self, Request::SshKeys, Response::SshKeys(k) => k)
    }

    /// Records that exported material could not be written where it was going.
    fn export_failed(
        &mut self,
        user: &str,
        name: &str,
        options: ExportOptions,
        error: String,
    ) -> Result<()> {
        ask!(self, Request::ExportFailed {
            user: user.to_string(),
            name: name.to_string(),
            options,
            error,
        }, Response::Done => ())
    }

    /// Lists keys (only `user`'s if given).
    fn list(&mut self, user: Option<&str>) -> Result<Vec<KeyInfo>> {
        ask!(self, Request::List { user: user.map(str::to_string) }, Response::Keys(k) => k)
    }

    /// Describes one key.
    fn key_info(&mut self, user: &str, name: &str) -> Result<KeyInfo> {
        ask!(self, Request::KeyInfo {
            user: user.to_string(),
            name: name.to_string(),
        }, Response::Key(k) => k)
    }

    /// Destroys one key, every version.
    fn delete(&mut self, user: &str, name: &str) -> Result<KeyInfo> {
        ask!(self, Request::Delete {
            user: user.to_string(),
            name: name.to_string(),
        }, Response::Deleted(k) => k)
    }

    /// Destroys one version of a key.
    fn delete_version(&mut self, user: &str, name: &str, version: u32) -> Result<KeyInfo> {
        ask!(self, Request::DeleteVersion {
            user: user.to_string(),
            name: name.to_string(),
            version,
        }, Response::Deleted(k) => k)
    }

    /// Adds a version to a key.
    fn rotate(&mut self, user: &str, name: &str) -> Result<KeyInfo> {
        ask!(self, Request::Rotate {
            user: user.to_string(),
            name: name.to_string(),
        }, Response::Key(k) => k)
    }

    /// Revokes a user (and with `purge`, compacts afterwards).
    fn revoke(&mut self, user: &str, reason: Option<&str>, purge: bool) -> Result<Revoked> {
        let request = Request::Revoke {
            user: user.to_string(),
            reason: reason.map(str::to_string),
            purge,
        };
        let asked = request.name();
        let (outcome, compacted, purge_failed) = match self.execute(request)? {
            Response::Revoke(o) => (o, None, None),
            Response::Compacted(Some(o), report) => (o, Some(report), None),
            Response::PurgeFailed { outcome, error } => (outcome, None, Some(error)),
            other => return Err(wrong_answer(asked, &other)),
        };
        Ok(Revoked {
            outcome,
            compacted,
            purge_failed,
        })
    }

    /// The revocation of a user, if the user is revoked.
    fn revocation(&mut self, user: &str) -> Result<Option<RevocationInfo>> {
        ask!(self, Request::IsRevoked { user: user.to_string() }, Response::Revocation(r) => r)
    }

    /// Every revoked user.
    fn revoked(&mut self) -> Result<Vec<RevocationInfo>> {
        ask!(self, Request::Revoked, Response::Revocations(l) => l)
    }

    /// Writes a backup file (an absolute path: the agent may run elsewhere).
    fn backup(&mut self, path: PathBuf) -> Result<BackupReport> {
        ask!(self, Request::Backup { path }, Response::Backup(r) => r)
    }

    /// Checks every record.
    fn check(&mut self) -> Result<CheckReport> {
        ask!(self, Request::Check, Response::Check(r) => r)
    }

    /// The audit log (only entries at or after `since`, Unix seconds).
    fn audit(&mut self, since: Option<u64>) -> Result<Vec<AuditEntry>> {
        ask!(self, Request::Audit { since }, Response::Audit(e) => e)
    }

    /// Rewrites the database so destroyed records leave the files.
    fn compact(&mut self) -> Result<CompactReport> {
        ask!(self, Request::Compact, Response::Compacted(_, r) => r)
    }

    /// Encrypts a message (Fernet, RSA-OAEP).
    fn encrypt(
        &mut self,
        user: &str,
        name: &str,
        plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<Used<Vec<u8>>> {
        ask!(self, Request::Encrypt {
            user: user.to_string(),
            name: name.to_string(),
            plaintext,
        }, Response::Produced(u) => u)
    }

    /// Decrypts a message (Fernet, RSA-OAEP): the version that opened it, and the
    /// message.
    fn decrypt(
        &mut self,
        user: &str,
        name: &str,
        ciphertext: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(u32, Zeroizing<Vec<u8>>)> {
        ask!(self, Request::Decrypt {
            user: user.to_string(),
            name: name.to_string(),
            ciphertext,
            ttl,
        }, Response::Plaintext { version, plaintext } => (version, plaintext))
    }

    /// The key of one AEAD envelope: a new one, or the one `header` names.
    fn envelope_key(
        &mut self,
        user: &str,
        name: &str,
        header: Option<Vec<u8>>,
    ) -> Result<EnvelopeKey> {
        ask!(self, Request::EnvelopeKey {
            user: user.to_string(),
            name: name.to_string(),
            header,
        }, Response::EnvelopeKey { header, key, warning } => EnvelopeKey { header, key, warning })
    }

    /// Signs a whole message.
    fn sign(
        &mut self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: Zeroizing<Vec<u8>>,
    ) -> Result<Used<Vec<u8>>> {
        ask!(self, Request::Sign {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            message,
        }, Response::Produced(u) => u)
    }

    /// Signs a message's SHA-256 digest (RSA keys).
    fn sign_digest(
        &mut self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: Vec<u8>,
    ) -> Result<Used<Vec<u8>>> {
        ask!(self, Request::SignDigest {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            digest,
        }, Response::Produced(u) => u)
    }

    /// Verifies a signature over a whole message: the version it verifies under, if any.
    fn verify(
        &mut self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: Zeroizing<Vec<u8>>,
        signature: Vec<u8>,
    ) -> Result<Option<u32>> {
        ask!(self, Request::Verify {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            message,
            signature,
        }, Response::Verified(v) => v)
    }

    /// Verifies a signature over the message whose SHA-256 digest is given (RSA keys).
    fn verify_digest(
        &mut self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<Option<u32>> {
        ask!(self, Request::VerifyDigest {
            user: user.to_string(),
            name: name.to_string(),
            scheme,
            digest,
            signature,
        }, Response::Verified(v) => v)
    }
}

/// A vault this process opened. `compact` and `revoke --purge` need the vault to
/// itself: they go through [`super::execute_owned`], not through this.
impl Operations for Vault {
    fn execute(&mut self, request: Request) -> Result<Response> {
        Vault::execute(self, request)
    }
}
