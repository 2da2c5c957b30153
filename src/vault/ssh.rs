//! Which keys are served to `ssh`, and signing for it.
//!
//! A key is marked for SSH by its id in one sealed record of the `meta` tree
//! (`ssh-marks`), so no key record changes layout and vaults written before this
//! feature read as they are (no mark record: no key marked). A mark names the key's id
//! as well as its user and name: a key deleted and made again under the same name is a
//! new key, and is not served until it is marked itself. Marks of keys that are gone
//! (deleted, or destroyed by a revocation) are never served and are dropped at the next
//! change of the marks.
//!
//! Only the primary version of a marked Ed25519 or RSA key is offered. Every signature
//! counts as a use of that version and is audited with the key's SSH fingerprint, the
//! algorithm and, when the client said so, the host the connection is for; never the
//! data signed.

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::crypto::keys::KeyMaterial;
use crate::crypto::sign::{self, RsaScheme};
use crate::error::{Error, Result};
use crate::keytype::KeyType;
use crate::ssh::{format, wire};
use crate::store::records::{KeyRecord, KeyVersionRecord, VersionState};
use crate::store::{Batch, Tree};

use super::types::KeyTypeName;
use super::{AuditEvent, Vault};

/// The meta-tree key of the sealed SSH marks.
pub const SSH_MARKS_KEY: &[u8] = b"ssh-marks";

/// The keys marked for SSH.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SshMarks {
    keys: Vec<Mark>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    id: [u8; 16],
    user: String,
    name: String,
}

/// A key served to `ssh`, as `list` and `ssh list` show it (nothing secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    /// The owner.
    pub user: String,
    /// The key's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub key_type: KeyTypeName,
    /// The SSH fingerprint of its primary version, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// Its OpenSSH public key line, with `user/name` as the comment.
    pub public_key: String,
}

/// What `ssh enable` or `ssh disable` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshMarkOutcome {
    /// The key.
    pub user: String,
    /// Its name.
    pub name: String,
    /// Whether it is now served to `ssh`.
    pub enabled: bool,
    /// Whether this changed anything (false: it already was so).
    pub changed: bool,
    /// Its SSH fingerprint (none for a key type `ssh` cannot use).
    pub fingerprint: Option<String>,
}

/// A marked key with what signing needs.
struct Served {
    info: SshKey,
    blob: Vec<u8>,
    db_key: Vec<u8>,
    record: KeyRecord,
}

fn primary(record: &KeyRecord) -> Result<&KeyVersionRecord> {
    record
        .versions
        .iter()
        .find(|v| v.state == VersionState::Primary)
        .ok_or_else(|| Error::Integrity("a key record has no primary version".into()))
}

fn material(v: &KeyVersionRecord) -> KeyMaterial {
    KeyMaterial {
        secret: v.secret.clone(),
        public: v.public.clone(),
    }
}

impl Vault {
    fn ssh_marks(&self) -> Result<SshMarks> {
        match self.store.get(Tree::Meta, SSH_MARKS_KEY)? {
            Some(sealed) => self.open_record(Tree::Meta, SSH_MARKS_KEY, &sealed),
            None => Ok(SshMarks::default()),
        }
    }

    /// The key a mark names, if it still exists (same id) and its user is not revoked.
    fn marked_key(&self, mark: &Mark) -> Option<(Vec<u8>, KeyRecord)> {
        match self.load_key(&mark.user, &mark.name) {
            Ok(Some((db_key, record))) if record.id == mark.id => Some((db_key, record)),
            _ => None,
        }
    }

    /// Marks a key for SSH (`enabled`) or removes its mark. Only Ed25519 and RSA keys
    /// with their private half can be marked.
    pub fn ssh_mark(&self, user: &str, name: &str, enabled: bool) -> Result<SshMarkOutcome> {
        let user = &self.resolve_user(user)?;
        let head = self.lock_writer();
        let (_, record) = self.require_key(user, name)?;
        let v = primary(&record)?;
        let fingerprint = if format::supports(record.key_type) {
            Some(format::fingerprint(record.key_type, &material(v))?)
        } else {
            None
        };
        if enabled {
            if !format::supports(record.key_type) {
                return Err(Error::Usage(format!(
                    "{user}/{name} is a {} key: only ed25519 and rsa keys can be used with ssh",
                    record.key_type
                )));
            }
            if v.secret.is_empty() {
                return Err(Error::Usage(format!(
                    "{user}/{name} is a public-only key: it cannot sign for ssh; import its private key to do that"
                )));
            }
        }
        let mut marks = self.ssh_marks()?;
        let was = marks.keys.iter().any(|m| m.id == record.id);
        let mut outcome = SshMarkOutcome {
            user: user.clone(),
            name: name.to_string(),
            enabled,
            changed: was != enabled,
            fingerprint,
        };
        if !outcome.changed {
            return Ok(outcome);
        }
        // Marks of keys that are gone go with this change.
        marks
            .keys
            .retain(|m| m.id != record.id && self.marked_key(m).is_some());
        if enabled {
            marks.keys.push(Mark {
                id: record.id,
                user: user.clone(),
                name: name.to_string(),
            });
        }
        let mut batch = Batch::new();
        self.stage(&mut batch, Tree::Meta, SSH_MARKS_KEY, &marks)?;
        let detail = outcome
            .fingerprint
            .clone()
            .unwrap_or_else(|| record.key_type.to_string());
        self.commit(
            head,
            batch,
            AuditEvent::new(if enabled { "ssh-enable" } else { "ssh-disable" })
                .user(user)
                .key(name)
                .detail(detail),
        )?;
        outcome.changed = true;
        Ok(outcome)
    }

    fn ssh_served(&self) -> Result<Vec<Served>> {
        let mut out = Vec::new();
        for mark in self.ssh_marks()?.keys {
            let Some((db_key, record)) = self.marked_key(&mark) else {
                continue;
            };
            let Ok(v) = primary(&record) else { continue };
            if v.secret.is_empty() {
                continue;
            }
            let m = material(v);
            let comment = format!("{}/{}", record.user, record.name);
            let Ok(public) = format::public_key(record.key_type, &m, &comment) else {
                continue;
            };
            let (Ok(blob), Ok(line)) = (public.to_bytes(), public.to_openssh()) else {
                continue;
            };
            out.push(Served {
                info: SshKey {
                    user: record.user.clone(),
                    name: record.name.clone(),
                    key_type: KeyTypeName(record.key_type),
                    fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
                    public_key: line,
                },
                blob,
                db_key,
                record,
            });
        }
        out.sort_by(|a, b| (&a.info.user, &a.info.name).cmp(&(&b.info.user, &b.info.name)));
        Ok(out)
    }

    /// The keys served to `ssh`, sorted by user and name.
    pub fn ssh_keys(&self) -> Result<Vec<SshKey>> {
        Ok(self.ssh_served()?.into_iter().map(|s| s.info).collect())
    }

    /// The keys served to `ssh` as the agent protocol lists them: each public key blob
    /// and its comment (`user/name`).
    pub fn ssh_identities(&self) -> Result<Vec<(Vec<u8>, String)>> {
        Ok(self
            .ssh_served()?
            .into_iter()
            .map(|s| {
                let comment = format!("{}/{}", s.info.user, s.info.name);
                (s.blob, comment)
            })
            .collect())
    }

    /// Signs `data` for `ssh` with the served key whose public blob is `key_blob`,
    /// giving the SSH signature blob. RSA keys sign `rsa-sha2-512` or `rsa-sha2-256`
    /// as `flags` ask (PKCS#1 v1.5); SHA-1 (`ssh-rsa`) is refused. `host` is the
    /// fingerprint of the host key the client bound the connection to, if any.
    pub fn ssh_sign(
        &self,
        key_blob: &[u8],
        data: &[u8],
        flags: u32,
        host: Option<&str>,
    ) -> Result<Vec<u8>> {
        let served = self
            .ssh_served()?
            .into_iter()
            .find(|s| s.blob == key_blob)
            .ok_or_else(|| Error::Usage("no key served to ssh has that public key".into()))?;
        let record = &served.record;
        let v = primary(record)?;
        let m = material(v);
        let (algorithm, signature) = match record.key_type {
            KeyType::Ed25519 => ("ssh-ed25519", sign::sign(KeyType::Ed25519, &m, None, data)?),
            kt if flags & wire::RSA_SHA2_512 != 0 => {
                let key = sign::rsa_private(kt, &m)?;
                let digest = sha2::Sha512::digest(data);
                let sig = key
                    .pkcs1v15_sign_prehash::<sha2::Sha512>(&digest)
                    .map_err(|e| Error::Internal(format!("RSA signing failed: {e}")))?;
                ("rsa-sha2-512", sig)
            }
            kt if flags & wire::RSA_SHA2_256 != 0 => (
                "rsa-sha2-256",
                sign::sign(kt, &m, Some(RsaScheme::Pkcs1v15), data)?,
            ),
            _ => {
                return Err(Error::Usage(
                    "ssh-rsa signatures (SHA-1) are refused: ask for rsa-sha2-256 or rsa-sha2-512"
                        .into(),
                ));
            }
        };
        self.count_use(&served.db_key, record, v.version, "ssh-sign")?;
        let host = host.map(|h| format!(", for host {h}")).unwrap_or_default();
        self.record_use(
            AuditEvent::new("ssh-sign")
                .user(&record.user)
                .key(&record.name)
                .detail(format!(
                    "version {}, {}, {algorithm}{host}",
                    v.version, served.info.fingerprint
                )),
        )?;
        Ok(wire::signature_blob(algorithm, &signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kdf::KdfParams;

    fn vault(dir: &std::path::Path) -> Vault {
        let fast = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Vault::create(&dir.join("v"), b"pw", fast, true).unwrap()
    }

    #[test]
    fn only_marked_keys_are_served_and_a_recreated_key_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("u", Some("a"), KeyType::Ed25519).unwrap();
        v.generate("u", Some("b"), KeyType::Ed25519).unwrap();
        v.generate("u", Some("f"), KeyType::Fernet).unwrap();
        assert!(v.ssh_keys().unwrap().is_empty());
        assert!(v.ssh_mark("u", "a", true).unwrap().changed);
        assert!(!v.ssh_mark("u", "a", true).unwrap().changed);
        assert!(matches!(v.ssh_mark("u", "f", true), Err(Error::Usage(_))));
        let keys = v.ssh_keys().unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].public_key.ends_with(" u/a"));
        v.delete("u", "a").unwrap();
        v.generate("u", Some("a"), KeyType::Ed25519).unwrap();
        assert!(v.ssh_keys().unwrap().is_empty());
    }

    #[test]
    fn signatures_are_counted_and_sha1_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("u", Some("r"), KeyType::Rsa2048).unwrap();
        v.ssh_mark("u", "r", true).unwrap();
        let (blob, _) = v.ssh_identities().unwrap().remove(0);
        assert!(v.ssh_sign(&blob, b"data", 0, None).is_err());
        let sig = v
            .ssh_sign(&blob, b"data", wire::RSA_SHA2_512, None)
            .unwrap();
        assert!(sig.starts_with(b"\0\0\0\x0crsa-sha2-512"));
        v.ssh_sign(&blob, b"data", wire::RSA_SHA2_256, None)
            .unwrap();
        assert_eq!(v.key_info("u", "r").unwrap().versions[0].uses, 2);
        assert!(v.ssh_sign(b"other", b"data", 0, None).is_err());
    }
}
