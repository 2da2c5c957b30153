//! Requests and responses: every operation a command can ask of an unlocked vault, as
//! data. The command line builds a [`Request`]; a local [`Vault`] or the agent executes
//! it; both give the same [`Response`], so output and exit codes cannot differ.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Result;
use crate::keytype::KeyType;
use crate::vault::types::{KeyInfo, RevocationInfo, RevokeOutcome, VaultStatus};
use crate::vault::{ExportOptions, Vault};

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
    },
    /// Whether a user is revoked.
    IsRevoked {
        /// The user.
        user: String,
    },
    /// Every revoked user.
    Revoked,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: name the operation only.
        let name = match self {
            Request::Status => "Status",
            Request::Generate { .. } => "Generate",
            Request::Import { .. } => "Import",
            Request::Export { .. } => "Export",
            Request::List { .. } => "List",
            Request::Delete { .. } => "Delete",
            Request::Revoke { .. } => "Revoke",
            Request::IsRevoked { .. } => "IsRevoked",
            Request::Revoked => "Revoked",
        };
        f.write_str(name)
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
            Request::Revoke { user, reason } => {
                Response::Revoke(self.revoke(&user, reason.as_deref())?)
            }
            Request::IsRevoked { user } => Response::Revocation(self.revocation(&user)?),
            Request::Revoked => Response::Revocations(self.revoked_users()?),
        })
    }
}
