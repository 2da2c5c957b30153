//! The values the vault API returns: descriptions of keys, versions and revocations.
//! They hold no secret and serialize with stable field names (the CLI's `--json`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keytype::KeyType;
use crate::store::records::VersionState;

/// A point in time, in Unix seconds; serialized as RFC 3339 (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time, in whole seconds.
    pub fn now() -> Self {
        Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // RFC 3339 for people (JSON); plain seconds on the agent's binary protocol, where
        // formatting and parsing thousands of them would cost a listing dearly.
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return u64::deserialize(d).map(Timestamp);
        }
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)?;
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?
            .as_secs();
        Ok(Timestamp(secs))
    }
}

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Its number: versions count from 1, and rotation adds the next.
    pub version: u32,
    /// When it was made.
    pub created: Timestamp,
    /// `primary` (encrypts and signs) or `decrypt-only` (an older version).
    pub state: VersionStateName,
    /// Uses so far (encryptions, signatures).
    pub uses: u64,
    /// The version's fingerprint (SHA-256), which never reveals the key.
    pub fingerprint: String,
}

/// The state of a version, as shown to users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionStateName {
    /// Used for new encryptions and signatures.
    Primary,
    /// Still decrypts and verifies.
    DecryptOnly,
}

impl From<VersionState> for VersionStateName {
    fn from(s: VersionState) -> Self {
        match s {
            VersionState::Primary => VersionStateName::Primary,
            VersionState::DecryptOnly => VersionStateName::DecryptOnly,
        }
    }
}

/// A key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's id (hex).
    pub id: String,
    /// The user id the key belongs to.
    pub user: String,
    /// Its name, unique among the user's keys.
    pub name: String,
    /// Its type, as users write it (`fernet`, `rsa-2048`, …).
    #[serde(rename = "type")]
    pub key_type: KeyTypeName,
    /// When it was made.
    pub created: Timestamp,
    /// The primary version's number.
    pub primary_version: u32,
    /// The primary version's fingerprint.
    pub fingerprint: String,
    /// Whether only the public half is held.
    pub public_only: bool,
    /// Every version, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// A key type as a string in serialized output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyTypeName(pub KeyType);

impl Serialize for KeyTypeName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyTypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<KeyType>()
            .map(KeyTypeName)
            .map_err(serde::de::Error::custom)
    }
}

/// A key destroyed by a revocation or deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedKeyInfo {
    /// The key's id in the vault (hex), which outlives its name.
    pub id: String,
    /// The name it had.
    pub name: String,
    /// The type it had, as users write it.
    #[serde(rename = "type")]
    pub key_type: KeyTypeName,
    /// The versions it had.
    pub versions: Vec<u32>,
    /// Its primary version's fingerprint.
    pub fingerprint: String,
}

/// A revocation: who, when, why, and what was destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationInfo {
    /// The user id revoked.
    pub user: String,
    /// When the revocation was made.
    pub revoked_at: Timestamp,
    /// The reason given, if any (kept in the clear).
    pub reason: Option<String>,
    /// The keys the revocation destroyed.
    pub destroyed: Vec<DestroyedKeyInfo>,
}

/// The outcome of `revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeOutcome {
    /// True when the user had been revoked before; `receipt` is then the first one.
    pub already_revoked: bool,
    /// The revocation's receipt (the first one, for a user revoked before).
    pub receipt: RevocationInfo,
}

/// Counts and facts about a vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultStatus {
    /// The vault directory.
    pub path: String,
    /// The vault's format version (4 for this keyvault; older until migrated).
    pub format_version: u32,
    /// Users holding at least one key.
    pub users: u64,
    /// Keys (each with one or more versions).
    pub keys: u64,
    /// Users revoked, whose ids the vault keeps.
    pub revoked_users: u64,
    /// The KDF parameters the passphrase goes through (readable without it), to weigh
    /// a `passwd --kdf`; none for a vault of a format before 4 not yet migrated.
    #[serde(default)]
    pub kdf: Option<crate::crypto::kdf::KdfParams>,
}
