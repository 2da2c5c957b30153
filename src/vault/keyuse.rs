//! Using keys without exporting them: encrypt, decrypt, sign, verify; rotation and
//! version deletion. Each use is counted (see `vault::uses`), and the answer carries a
//! [`NearLimit`] warning when an AEAD key version nears its limit.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::envelope::{self, AeadAlgorithm, EnvelopeHeader};
use crate::crypto::keys::{self, KeyMaterial};
use crate::crypto::sign::RsaScheme;
use crate::crypto::{fernet_token, oaep, sign};
use crate::error::{Error, Result};
use crate::keytype::{KeyType, KeyUse};
use crate::store::records::{KeyRecord, KeyVersionRecord, VersionState};
use crate::store::{Batch, Tree};

use super::types::{KeyInfo, Timestamp};
use super::{AuditEvent, Vault, key_info};

pub use super::uses::NearLimit;

/// The result of an encryption or signature, with a warning when a key version nears
/// its limit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Used<T> {
    /// The result: a ciphertext, a signature, or an envelope's key.
    pub value: T,
    /// The key version used (the primary one).
    pub version: u32,
    /// Set when the version used nears its limit of uses.
    pub warning: Option<NearLimit>,
}

impl<T> std::fmt::Debug for Used<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value may be an envelope's key: never printed.
        f.debug_struct("Used")
            .field("version", &self.version)
            .field("warning", &self.warning)
            .finish_non_exhaustive()
    }
}

fn material(v: &KeyVersionRecord) -> KeyMaterial {
    KeyMaterial {
        secret: v.secret.clone(),
        public: v.public.clone(),
    }
}

fn primary(record: &KeyRecord) -> Result<&KeyVersionRecord> {
    record
        .versions
        .iter()
        .find(|v| v.state == VersionState::Primary)
        .ok_or(Error::NoPrimaryVersion)
}

fn needs_private(record: &KeyRecord, v: &KeyVersionRecord, what: &str) -> Result<()> {
    if v.secret.is_empty() {
        return Err(Error::Usage(format!(
            "{}/{} is a public-only key: it cannot {what}; import its private key to do that",
            record.user, record.name
        )));
    }
    Ok(())
}

/// Newest version first, as MultiFernet tries its keys.
fn newest_first(record: &KeyRecord) -> impl Iterator<Item = &KeyVersionRecord> {
    record.versions.iter().rev()
}

impl Vault {
    /// Adds a new primary version to a key; older versions keep decrypting and
    /// verifying.
    pub fn rotate(&self, user: &str, name: &str) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let (_, peek) = self.require_key(user, name)?;
        if peek.versions.iter().all(|v| v.secret.is_empty()) {
            return Err(Error::Usage(format!(
                "{user}/{name} is a public-only key: import the new public key under another name instead of rotating"
            )));
        }
        let fresh = keys::generate(peek.key_type)?;
        let head = self.lock_writer();
        let (db_key, mut record) = self.require_key(user, name)?;
        let next = record.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        for v in &mut record.versions {
            v.state = VersionState::DecryptOnly;
        }
        record.versions.push(KeyVersionRecord {
            version: next,
            created: Timestamp::now().0,
            state: VersionState::Primary,
            secret: fresh.secret,
            public: fresh.public,
            uses: 0,
        });
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, &db_key, &record)?;
        self.commit(
            head,
            batch,
            AuditEvent::new("rotate")
                .user(user)
                .key(name)
                .detail(format!("version {next} is primary")),
        )?;
        Ok(key_info(&record))
    }

    /// Destroys one older version of a key (never the only one, nor the primary).
    pub fn delete_version(&self, user: &str, name: &str, version: u32) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let head = self.lock_writer();
        let (db_key, mut record) = self.require_key(user, name)?;
        let Some(pos) = record.versions.iter().position(|v| v.version == version) else {
            return Err(Error::VersionNotFound {
                user: user.to_string(),
                name: name.to_string(),
                version,
            });
        };
        if record.versions.len() == 1 {
            return Err(Error::Usage(format!(
                "version {version} is the only version of {user}/{name}; delete the key instead"
            )));
        }
        if record.versions[pos].state == VersionState::Primary {
            // The primary is always the newest version; keeping it means a version
            // number is never given out twice.
            return Err(Error::Usage(format!(
                "version {version} is the primary version of {user}/{name}; rotate first, then delete it"
            )));
        }
        record.versions.remove(pos);
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Keys, &db_key, &record)?;
        self.commit_raising_epoch(
            head,
            batch,
            AuditEvent::new("delete-version")
                .user(user)
                .key(name)
                .detail(format!("version {version}")),
            None,
        )?;
        self.forget_uses(&db_key);
        Ok(key_info(&record))
    }

    /// Encrypts a message with a Fernet key (a standard token) or an RSA key (OAEP-SHA256)
    /// under the primary version. AEAD keys stream through [`Vault::envelope_key`]. The
    /// answer says which version encrypted, and warns when that version nears its limit
    /// of uses.
    ///
    /// ```
    /// use keyvault::{KeyType, Vault};
    /// use keyvault::crypto::kdf::KdfParams;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// // Fast, weak KDF parameters, for the example only: real vaults keep the default.
    /// let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// let vault = Vault::create(&dir.path().join("vault"), b"passphrase", kdf, true)?;
    /// vault.generate("bob", None, KeyType::Fernet)?;
    /// let used = vault.encrypt_message("bob", "fernet", b"attack at dawn")?;
    /// assert_eq!(used.version, 1);
    /// // A Fernet token is text, readable by Python's `cryptography.fernet`.
    /// assert!(used.value.starts_with(b"gAAAAA"));
    /// let (_, plaintext) = vault.decrypt_message("bob", "fernet", &used.value, None)?;
    /// assert_eq!(plaintext.as_slice(), b"attack at dawn");
    /// # Ok(())
    /// # }
    /// ```
    pub fn encrypt_message(
        &self,
        user: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Encrypt)?;
        if record.key_type.is_aead() {
            return Err(Error::Internal(
                "AEAD keys encrypt through envelope_key".into(),
            ));
        }
        let v = primary(&record)?;
        let value = match record.key_type {
            KeyType::Fernet => fernet_token::encrypt(&v.secret, plaintext)?.into_bytes(),
            _ => oaep::encrypt(record.key_type, &material(v), plaintext)?,
        };
        let warning = self.count_use(&db_key, &record, v.version, "encrypt")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Decrypts a Fernet token (newest version first, as MultiFernet; `ttl` refuses
    /// older tokens) or an RSA-OAEP ciphertext (each version, newest first).
    pub fn decrypt_message(
        &self,
        user: &str,
        name: &str,
        ciphertext: &[u8],
        ttl: Option<u64>,
    ) -> Result<(u32, Zeroizing<Vec<u8>>)> {
        let user = &self.resolve_user(user)?;
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Decrypt)?;
        if ttl.is_some() && record.key_type != KeyType::Fernet {
            return Err(Error::TtlNotApplicable {
                key_type: record.key_type,
            });
        }
        let result = match record.key_type {
            KeyType::Fernet => {
                let keys: Vec<(u32, &[u8])> = newest_first(&record)
                    .map(|v| (v.version, v.secret.as_slice()))
                    .collect();
                match ttl {
                    Some(t) => fernet_token::decrypt_with_ttl(&keys, ciphertext, t)?,
                    None => fernet_token::decrypt(&keys, ciphertext)?,
                }
            }
            kt if kt.is_aead() => {
                return Err(Error::Internal(
                    "AEAD keys decrypt through envelope_key".into(),
                ));
            }
            kt => {
                if ciphertext.is_empty() {
                    return Err(Error::Integrity(
                        "the input is empty: expected an RSA-OAEP ciphertext".into(),
                    ));
                }
                if record.versions.iter().all(|v| v.secret.is_empty()) {
                    needs_private(&record, primary(&record)?, "decrypt")?;
                }
                let mut last =
                    Error::Integrity("no version of the key opens the ciphertext".into());
                let mut opened = None;
                for v in newest_first(&record).filter(|v| !v.secret.is_empty()) {
                    match oaep::decrypt(kt, &material(v), ciphertext) {
                        Ok(p) => {
                            opened = Some((v.version, p));
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                match opened {
                    Some(o) => o,
                    None => return Err(last),
                }
            }
        };
        self.record_use(
            AuditEvent::new("decrypt")
                .user(user)
                .key(name)
                .detail(format!("version {}", result.0)),
        )?;
        Ok(result)
    }

    /// The key of one AEAD envelope. With no header: a fresh header under the primary
    /// version (counted as one encryption). With a header (from an envelope being
    /// decrypted): the key of the version it names. The key opens only that envelope.
    pub fn envelope_key(
        &self,
        user: &str,
        name: &str,
        header: Option<&EnvelopeHeader>,
    ) -> Result<Used<(EnvelopeHeader, Zeroizing<[u8; 32]>)>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        let what = if header.is_some() {
            KeyUse::Decrypt
        } else {
            KeyUse::Encrypt
        };
        record.key_type.check_use(what)?;
        let algorithm = AeadAlgorithm::for_key_type(record.key_type)?;
        let (header, v, warning) = match header {
            None => {
                let v = primary(&record)?;
                let warning = self.count_use(&db_key, &record, v.version, "encrypt")?;
                (envelope::new_header(algorithm, v.version)?, v, warning)
            }
            Some(h) => {
                h.check_key_type(record.key_type)?;
                let v = record
                    .versions
                    .iter()
                    .find(|v| v.version == h.key_version)
                    .ok_or_else(|| {
                        // Version numbers are given out in order and never again: one
                        // past the newest was never made, so the header was altered;
                        // one below it was deleted.
                        let newest = record.versions.iter().map(|v| v.version).max();
                        if h.key_version == 0 || newest.is_none_or(|n| h.key_version > n) {
                            Error::Integrity(format!(
                                "the envelope names version {} of {user:?}/{name}, which was never made: its header was altered",
                                h.key_version
                            ))
                        } else {
                            Error::VersionNotFound {
                                user: user.to_string(),
                                name: name.to_string(),
                                version: h.key_version,
                            }
                        }
                    })?;
                self.record_use(
                    AuditEvent::new("decrypt")
                        .user(user)
                        .key(name)
                        .detail(format!("version {}", v.version)),
                )?;
                (h.clone(), v, None)
            }
        };
        let key: [u8; 32] = v
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| Error::Integrity("a stored AEAD key is not 32 bytes".into()))?;
        let key = Zeroizing::new(key);
        let message_key = envelope::message_key(&header, &key);
        Ok(Used {
            value: (header, message_key),
            version: v.version,
            warning,
        })
    }

    /// Signs a message with the primary version (RSA: PSS-SHA256 by default, or
    /// PKCS#1 v1.5; Ed25519).
    pub fn sign_message(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Sign)?;
        let v = primary(&record)?;
        needs_private(&record, v, "sign")?;
        let value = sign::sign(record.key_type, &material(v), scheme, message)?;
        let warning = self.count_use(&db_key, &record, v.version, "sign")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Signs the SHA-256 `digest` of a message with the primary version (RSA keys only:
    /// the same signature as [`Vault::sign_message`] over the message). Counted and
    /// audited like it.
    pub fn sign_digest(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: &[u8],
    ) -> Result<Used<Vec<u8>>> {
        let (db_key, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Sign)?;
        let v = primary(&record)?;
        needs_private(&record, v, "sign")?;
        let value = sign::sign_digest(record.key_type, &material(v), scheme, digest)?;
        let warning = self.count_use(&db_key, &record, v.version, "sign")?;
        Ok(Used {
            value,
            version: v.version,
            warning,
        })
    }

    /// Verifies a signature over the message whose SHA-256 digest is `digest` (RSA keys
    /// only) against every version, newest first, as [`Vault::verify_message`] does.
    pub fn verify_digest(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<Option<u32>> {
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Verify)?;
        for v in newest_first(&record) {
            if sign::verify_digest(record.key_type, &material(v), scheme, digest, signature)? {
                return Ok(Some(v.version));
            }
        }
        Ok(None)
    }

    /// Verifies a signature against every version, newest first; returns the version
    /// it verifies under, or `None`.
    pub fn verify_message(
        &self,
        user: &str,
        name: &str,
        scheme: Option<RsaScheme>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<Option<u32>> {
        let user = &self.resolve_user(user)?;
        let (_, record) = self.require_key(user, name)?;
        record.key_type.check_use(KeyUse::Verify)?;
        for v in newest_first(&record) {
            if sign::verify(record.key_type, &material(v), scheme, message, signature)? {
                return Ok(Some(v.version));
            }
        }
        Ok(None)
    }
}
