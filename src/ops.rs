//! Requests and responses: every operation a command can ask of an unlocked vault, as
//! data. The command line builds a [`Request`]; a local [`Vault`] or the agent executes
//! it; both give the same [`Response`], so output and exit codes cannot differ.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use std::path::PathBuf;

use crate::crypto::envelope;
use crate::crypto::kdf::KdfChange;
use crate::crypto::sign::RsaScheme;
use crate::error::Result;
use crate::keytype::KeyType;
use crate::vault::check::CheckReport;
use crate::vault::keyuse::Used;
use crate::vault::lifecycle::{AuditEntry, BackupReport, CompactReport};
use crate::vault::ssh::{SshKey, SshMarkOutcome};
use crate::vault::types::{KeyInfo, RevocationInfo, RevokeOutcome, VaultStatus};
use crate::vault::{ExportOptions, Vault};

mod operations;

pub use operations::{EnvelopeKey, Operations, Revoked};

/// One operation on an unlocked vault.
#[derive(Serialize, Deserialize)]
pub enum Request {
    /// Counts and facts.
    Status,
    /// Generate a key.
    Generate {
        /// Owner.
        user: String,
        /// Name (default: the type's name).
        name: Option<String>,
        /// Type.
        key_type: KeyType,
    },
    /// Store an existing key.
    Import {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// Type.
        key_type: KeyType,
        /// The encoded key (PEM, DER or base64).
        material: Zeroizing<Vec<u8>>,
        /// Accept a public key alone.
        public_only: bool,
    },
    /// Export key material.
    Export {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// What and how.
        options: ExportOptions,
    },
    /// List keys.
    List {
        /// Only this user's.
        user: Option<String>,
    },
    /// Destroy one key.
    Delete {
        /// Owner.
        user: String,
        /// Name.
        name: String,
    },
    /// Revoke a user.
    Revoke {
        /// The user.
        user: String,
        /// Why.
        reason: Option<String>,
        /// Compact afterwards, so the destroyed records leave the files.
        purge: bool,
    },
    /// Whether a user is revoked.
    IsRevoked {
        /// The user.
        user: String,
    },
    /// Every revoked user.
    Revoked,
    /// Write a backup file (an absolute path: the agent may run elsewhere).
    Backup {
        /// The file to create.
        path: PathBuf,
    },
    /// Check every record.
    Check,
    /// Change the passphrase.
    Passwd {
        /// The current passphrase.
        old: Zeroizing<Vec<u8>>,
        /// The new one.
        new: Zeroizing<Vec<u8>>,
        /// New KDF parameters (unset ones keep the vault's).
        kdf: KdfChange,
        /// Accept parameters below the floor.
        allow_weak_kdf: bool,
    },
    /// The audit log.
    Audit {
        /// Only entries at or after this time (Unix seconds).
        since: Option<u64>,
    },
    /// Rewrite the database so destroyed records leave the files.
    Compact,
    /// Describe one key.
    KeyInfo {
        /// Owner.
        user: String,
        /// Name.
        name: String,
    },
    /// Add a version.
    Rotate {
        /// Owner.
        user: String,
        /// Name.
        name: String,
    },
    /// Destroy one version.
    DeleteVersion {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// The version.
        version: u32,
    },
    /// Encrypt a message (Fernet, RSA-OAEP).
    Encrypt {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// The message.
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// Decrypt a message (Fernet, RSA-OAEP).
    Decrypt {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// The token or ciphertext.
        ciphertext: Vec<u8>,
        /// Refuse Fernet tokens older than this many seconds.
        ttl: Option<u64>,
    },
    /// The key of one AEAD envelope (a new one, or the one a header names).
    EnvelopeKey {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// The header of an envelope to decrypt; none to encrypt.
        header: Option<Vec<u8>>,
    },
    /// Sign a message.
    Sign {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// RSA scheme (default PSS).
        scheme: Option<RsaScheme>,
        /// The message.
        message: Zeroizing<Vec<u8>>,
    },
    /// Verify a signature.
    Verify {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// RSA scheme (default PSS).
        scheme: Option<RsaScheme>,
        /// The message.
        message: Zeroizing<Vec<u8>>,
        /// The signature.
        signature: Vec<u8>,
    },
    /// Sign the SHA-256 digest of a message (RSA keys: a client hashes a large message
    /// itself and sends only this).
    SignDigest {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// RSA scheme (default PSS).
        scheme: Option<RsaScheme>,
        /// The message's SHA-256 digest.
        digest: Vec<u8>,
    },
    /// Verify a signature over the message whose SHA-256 digest is given (RSA keys).
    VerifyDigest {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// RSA scheme (default PSS).
        scheme: Option<RsaScheme>,
        /// The message's SHA-256 digest.
        digest: Vec<u8>,
        /// The signature.
        signature: Vec<u8>,
    },
    /// Records that exported material could not be written where it was going.
    ExportFailed {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// What was exported.
        options: ExportOptions,
        /// Why the write failed (never the material).
        error: String,
    },
    /// Mark a key for SSH, or remove its mark.
    SshMark {
        /// Owner.
        user: String,
        /// Name.
        name: String,
        /// Serve it to `ssh` (true) or stop (false).
        enabled: bool,
    },
    /// The keys served to `ssh`.
    SshKeys,
}

impl Request {
    /// Whether the request needs the vault to itself (it reopens the database).
    pub fn needs_exclusive(&self) -> bool {
        matches!(self, Request::Compact | Request::Revoke { purge: true, .. })
    }

    /// The user the request names, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Request::Generate { user, .. }
            | Request::Import { user, .. }
            | Request::Export { user, .. }
            | Request::Delete { user, .. }
            | Request::Revoke { user, .. }
            | Request::IsRevoked { user }
            | Request::KeyInfo { user, .. }
            | Request::Rotate { user, .. }
            | Request::DeleteVersion { user, .. }
            | Request::Encrypt { user, .. }
            | Request::Decrypt { user, .. }
            | Request::EnvelopeKey { user, .. }
            | Request::Sign { user, .. }
            | Request::Verify { user, .. }
            | Request::SignDigest { user, .. }
            | Request::VerifyDigest { user, .. }
            | Request::ExportFailed { user, .. }
            | Request::SshMark { user, .. } => Some(user),
            Request::List { user } => user.as_deref(),
            Request::Status
            | Request::Revoked
            | Request::Backup { .. }
            | Request::Check
            | Request::Passwd { .. }
            | Request::Audit { .. }
            | Request::Compact
            | Request::SshKeys => None,
        }
    }
}

impl Request {
    /// The operation's name (never its contents).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "Status",
            Request::Generate { .. } => "Generate",
            Request::Import { .. } => "Import",
            Request::Export { .. } => "Export",
            Request::List { .. } => "List",
            Request::Delete { .. } => "Delete",
            Request::Revoke { .. } => "Revoke",
            Request::IsRevoked { .. } => "IsRevoked",
            Request::Revoked => "Revoked",
            Request::Backup { .. } => "Backup",
            Request::Check => "Check",
            Request::Passwd { .. } => "Passwd",
            Request::Audit { .. } => "Audit",
            Request::Compact => "Compact",
            Request::KeyInfo { .. } => "KeyInfo",
            Request::Rotate { .. } => "Rotate",
            Request::DeleteVersion { .. } => "DeleteVersion",
            Request::Encrypt { .. } => "Encrypt",
            Request::Decrypt { .. } => "Decrypt",
            Request::EnvelopeKey { .. } => "EnvelopeKey",
            Request::Sign { .. } => "Sign",
            Request::Verify { .. } => "Verify",
            Request::SignDigest { .. } => "SignDigest",
            Request::VerifyDigest { .. } => "VerifyDigest",
            Request::ExportFailed { .. } => "ExportFailed",
            Request::SshMark { .. } => "SshMark",
            Request::SshKeys => "SshKeys",
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: name the operation only.
        f.write_str(self.name())
    }
}

/// The result of a [`Request`].
#[derive(Serialize, Deserialize)]
pub enum Response {
    /// For `Status`.
    Status(VaultStatus),
    /// For `Generate`, `Import`.
    Key(KeyInfo),
    /// For `Delete`: the key destroyed.
    Deleted(KeyInfo),
    /// For `List`.
    Keys(Vec<KeyInfo>),
    /// For `Export`: the encoded material.
    Material(Zeroizing<Vec<u8>>),
    /// For `Revoke`.
    Revoke(RevokeOutcome),
    /// For `IsRevoked`.
    Revocation(Option<RevocationInfo>),
    /// For `Revoked`.
    Revocations(Vec<RevocationInfo>),
    /// For `Backup`.
    Backup(BackupReport),
    /// For `Check`.
    Check(CheckReport),
    /// For `Passwd`.
    Done,
    /// For `Audit`.
    Audit(Vec<AuditEntry>),
    /// For `Compact`, and `Revoke` with `purge` (with its outcome).
    Compacted(Option<RevokeOutcome>, CompactReport),
    /// For `Revoke` with `purge` when the revocation was committed but the compaction
    /// then failed: the revocation stands.
    PurgeFailed {
        /// The revocation.
        outcome: RevokeOutcome,
        /// Why the compaction failed.
        error: String,
    },
    /// For `Encrypt` (the token or ciphertext), `Sign` and `SignDigest` (the signature).
    Produced(Used<Vec<u8>>),
    /// For `Decrypt`.
    Plaintext {
        /// The version that opened it.
        version: u32,
        /// The message.
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// For `EnvelopeKey`.
    EnvelopeKey {
        /// The envelope header (new, or the one given).
        header: Vec<u8>,
        /// The envelope's key (opens that envelope only).
        key: Zeroizing<Vec<u8>>,
        /// A warning for the user.
        warning: Option<String>,
    },
    /// For `Verify` and `VerifyDigest`: the version the signature verifies under, if any.
    Verified(Option<u32>),
    /// For `SshMark`.
    SshMark(SshMarkOutcome),
    /// For `SshKeys`.
    SshKeys(Vec<SshKey>),
}

impl Vault {
    /// Executes one request.
    pub fn execute(&self, request: Request) -> Result<Response> {
        Ok(match request {
            Request::Status => Response::Status(self.status()?),
            Request::Generate {
                user,
                name,
                key_type,
            } => Response::Key(self.generate(&user, name.as_deref(), key_type)?),
            Request::Import {
                user,
                name,
                key_type,
                material,
                public_only,
            } => Response::Key(self.import(&user, &name, key_type, &material, public_only)?),
            Request::Export {
                user,
                name,
                options,
            } => Response::Material(self.export(&user, &name, &options)?),
            Request::List { user } => Response::Keys(self.list(user.as_deref())?),
            Request::Delete { user, name } => Response::Deleted(self.delete(&user, &name)?),
            Request::Revoke { user, reason, .. } => {
                Response::Revoke(self.revoke(&user, reason.as_deref())?)
            }
            Request::IsRevoked { user } => Response::Revocation(self.revocation(&user)?),
            Request::Revoked => Response::Revocations(self.revoked_users()?),
            Request::Backup { path } => Response::Backup(self.backup(&path, &mut |_, _| {})?),
            Request::Check => Response::Check(self.check()?),
            Request::Passwd {
                old,
                new,
                kdf,
                allow_weak_kdf,
            } => {
                self.change_passphrase(&old, &new, kdf, allow_weak_kdf)?;
                Response::Done
            }
            Request::Audit { since } => Response::Audit(self.audit_entries(since)?),
            Request::Compact => {
                return Err(crate::Error::Internal(
                    "compaction needs the vault to itself".into(),
                ));
            }
            Request::KeyInfo { user, name } => Response::Key(self.key_info(&user, &name)?),
            Request::Rotate { user, name } => Response::Key(self.rotate(&user, &name)?),
            Request::DeleteVersion {
                user,
                name,
                version,
            } => Response::Deleted(self.delete_version(&user, &name, version)?),
            Request::Encrypt {
                user,
                name,
                plaintext,
            } => Response::Produced(self.encrypt_message(&user, &name, &plaintext)?),
            Request::Decrypt {
                user,
                name,
                ciphertext,
                ttl,
            } => {
                let (version, plaintext) = self.decrypt_message(&user, &name, &ciphertext, ttl)?;
                Response::Plaintext { version, plaintext }
            }
            Request::EnvelopeKey { user, name, header } => {
                let parsed = match header {
                    Some(bytes) => {
                        let arr: [u8; envelope::HEADER_LEN] =
                            bytes.as_slice().try_into().map_err(|_| {
                                crate::Error::Integrity("the envelope header is malformed".into())
                            })?;
                        Some(envelope::EnvelopeHeader::from_bytes(&arr)?)
                    }
                    None => None,
                };
                let used = self.envelope_key(&user, &name, parsed.as_ref())?;
                let (header, key) = used.value;
                Response::EnvelopeKey {
                    header: header.to_bytes().to_vec(),
                    key: Zeroizing::new(key.to_vec()),
                    warning: used.warning,
                }
            }
            Request::Sign {
                user,
                name,
                scheme,
                message,
            } => Response::Produced(self.sign_message(&user, &name, scheme, &message)?),
            Request::Verify {
                user,
                name,
                scheme,
                message,
                signature,
            } => {
                Response::Verified(self.verify_message(&user, &name, scheme, &message, &signature)?)
            }
            Request::SignDigest {
                user,
                name,
                scheme,
                digest,
            } => Response::Produced(self.sign_digest(&user, &name, scheme, &digest)?),
            Request::VerifyDigest {
                user,
                name,
                scheme,
                digest,
                signature,
            } => Response::Verified(self.verify_digest(&user, &name, scheme, &digest, &signature)?),
            Request::ExportFailed {
                user,
                name,
                options,
                error,
            } => {
                self.record_export_failure(&user, &name, &options, &error)?;
                Response::Done
            }
            Request::SshMark {
                user,
                name,
                enabled,
            } => Response::SshMark(self.ssh_mark(&user, &name, enabled)?),
            Request::SshKeys => Response::SshKeys(self.ssh_keys()?),
        })
    }
}

/// Executes a request that may need the vault to itself (see
/// [`Request::needs_exclusive`]). Gives the vault back, unless reopening it failed.
///
/// `revoke --purge` checks first that a compaction can run (the vault is writable, its
/// filesystem has room), so that a purge that cannot happen changes nothing. If the
/// compaction still fails after the revocation was committed, the answer is
/// [`Response::PurgeFailed`]: the revocation stands, with its receipt.
pub fn execute_owned(vault: Vault, request: Request) -> (Option<Vault>, Result<Response>) {
    if !request.needs_exclusive() {
        let result = vault.execute(request);
        return (Some(vault), result);
    }
    let outcome = match request {
        Request::Revoke { user, reason, .. } => {
            if let Err(e) = vault.compaction_preflight() {
                return (Some(vault), Err(e));
            }
            match vault.revoke(&user, reason.as_deref()) {
                Ok(o) => Some(o),
                Err(e) => return (Some(vault), Err(e)),
            }
        }
        _ => None,
    };
    match (vault.try_compact(), outcome) {
        ((back, Ok(report)), outcome) => (back, Ok(Response::Compacted(outcome, report))),
        ((back, Err(e)), Some(outcome)) => (
            back,
            Ok(Response::PurgeFailed {
                outcome,
                error: e.to_string(),
            }),
        ),
        ((back, Err(e)), None) => (back, Err(e)),
    }
}
