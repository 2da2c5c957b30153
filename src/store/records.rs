//! The records a vault stores, and their encoding.
//!
//! Every record is encoded as one record-format version byte followed by its postcard
//! encoding (postcard has a frozen wire specification but no self-description, hence the
//! explicit version byte). Golden-byte tests below pin the v1 encoding of every kind, so
//! an accidental format change fails a test. Every record but the header is then sealed
//! (see `crypto::seal`) before it reaches the store.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::crypto::kdf::KdfParams;
use crate::error::{Error, RecordProblem, Result};
use crate::keytype::KeyType;

/// The record-format version byte of every v1 record.
pub const RECORD_V1: u8 = 1;

/// Database keys in the meta tree.
pub mod meta_keys {
    /// The vault format version, 4 bytes big-endian, unsealed (read before unlock).
    pub const FORMAT: &[u8] = b"format";
    /// The [`super::Header`], unsealed (it holds what unlocking needs).
    pub const HEADER: &[u8] = b"header";
    /// [`super::FailedUnlocks`], unsealed (written without the master key).
    pub const FAILED_UNLOCKS: &[u8] = b"failed-unlocks";
}

/// Wrong passphrases tried since the last successful unlock. Written without the
/// master key (so unsealed, holding only a count and times); the next successful unlock
/// turns it into an audit entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUnlocks {
    /// How many.
    pub count: u64,
    /// The first one (Unix seconds).
    pub first: u64,
    /// The last one (Unix seconds).
    pub last: u64,
}

/// What unlocking needs: KDF parameters, salt and the wrapped master key. Holds no
/// secret in the clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: Vec<u8>,
    /// The master key sealed under the KEK (nonce ‖ ciphertext ‖ tag).
    pub wrapped_master_key: Vec<u8>,
    /// When the vault was created (Unix seconds).
    pub created: u64,
}

/// The lifecycle state of one key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionState {
    /// The primary version: used for new encryptions and signatures.
    Primary,
    /// An older version: still decrypts and verifies.
    DecryptOnly,
}

/// One version of a key.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyVersionRecord {
    /// 1, 2, 3…
    pub version: u32,
    /// When this version was made (Unix seconds).
    pub created: u64,
    /// Its state.
    pub state: VersionState,
    /// The secret material (empty for a public-only key).
    pub secret: Zeroizing<Vec<u8>>,
    /// The public material (SPKI DER) of an asymmetric key.
    pub public: Option<Vec<u8>>,
    /// How many times this version was used (encryptions, signatures).
    pub uses: u64,
}

/// A key of a user with all of its versions, stored under one database key.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// A random identifier of the key.
    pub id: [u8; 16],
    /// The owner.
    pub user: String,
    /// The key name.
    pub name: String,
    /// Its type.
    pub key_type: KeyType,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// Its versions, oldest first.
    pub versions: Vec<KeyVersionRecord>,
}

/// A key destroyed by a revocation, as listed in the receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedKey {
    /// The key's id.
    pub id: [u8; 16],
    /// Its name.
    pub name: String,
    /// Its type.
    pub key_type: KeyType,
    /// The versions it had.
    pub versions: Vec<u32>,
    /// The fingerprint of its primary version.
    pub fingerprint: String,
}

/// A revoked user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedRecord {
    /// The user id.
    pub user: String,
    /// When (Unix seconds).
    pub revoked_at: u64,
    /// Why, as given.
    pub reason: Option<String>,
    /// The keys destroyed.
    pub destroyed: Vec<DestroyedKey>,
}

/// One entry of the audit log. Entries are chained: `mac` covers the entry's other
/// fields and `prev_mac`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (Unix seconds).
    pub time: u64,
    /// The operation (`gen`, `revoke`, …).
    pub operation: String,
    /// The user concerned, if any.
    pub user: Option<String>,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// `ok` or what failed.
    pub outcome: String,
    /// Details that are not secret (key type, version, counts).
    pub detail: Option<String>,
    /// The MAC of the previous entry (zeros for the first).
    pub prev_mac: [u8; 32],
    /// The MAC of this entry.
    pub mac: [u8; 32],
}

/// Encodes a record: version byte ‖ postcard.
pub fn encode<T: Serialize>(record: &T) -> Result<Zeroizing<Vec<u8>>> {
    let body = Zeroizing::new(
        postcard::to_stdvec(record)
            .map_err(|e| Error::Internal(format!("record encoding failed: {e}")))?,
    );
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 1));
    out.push(RECORD_V1);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record written by [`encode`]. Anything else is an integrity error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let bad = |problem| Error::BadRecord {
        record: what.to_string(),
        problem,
    };
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => {
            let (value, rest) =
                postcard::take_from_bytes(body).map_err(|_| bad(RecordProblem::DoesNotDecode))?;
            if !rest.is_empty() {
                return Err(bad(RecordProblem::TrailingBytes));
            }
            Ok(value)
        }
        Some((&v, _)) => Err(bad(RecordProblem::UnknownVersion(v))),
        None => Err(bad(RecordProblem::Empty)),
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: these pin the v1 encoding. If one fails, the on-disk format
    //! changed: add a migration instead of editing the expected bytes.
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn golden_header() {
        let h = Header {
            kdf: KdfParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: 4,
            },
            salt: vec![0xAA; 2],
            wrapped_master_key: vec![1, 2, 3],
            created: 1_700_000_000,
        };
        let bytes = encode(&h).unwrap();
        assert_eq!(hex(&bytes), "01808004030402aaaa0301020380e2cfaa06");
        assert_eq!(decode::<Header>(&bytes, "header").unwrap(), h);
    }

    #[test]
    fn golden_key_record() {
        let r = KeyRecord {
            id: [0x11; 16],
            user: "U".into(),
            name: "n".into(),
            key_type: KeyType::Rsa2048,
            created: 5,
            versions: vec![KeyVersionRecord {
                version: 1,
                created: 6,
                state: VersionState::Primary,
                secret: Zeroizing::new(vec![9, 9]),
                public: Some(vec![8]),
                uses: 2,
            }],
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(
            hex(&bytes),
            "011111111111111111111111111111111101550\
16e0305010106000209090101080\
2"
            .replace(' ', "")
        );
        let back: KeyRecord = decode(&bytes, "key").unwrap();
        assert_eq!(back.user, "U");
        assert_eq!(back.versions[0].secret.as_slice(), &[9, 9]);
    }

    #[test]
    fn golden_revoked_record() {
        let r = RevokedRecord {
            user: "U".into(),
            revoked_at: 7,
            reason: Some("r".into()),
            destroyed: vec![DestroyedKey {
                id: [0x22; 16],
                name: "n".into(),
                key_type: KeyType::Fernet,
                versions: vec![1],
                fingerprint: "f".into(),
            }],
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(
            hex(&bytes),
            format!("0101550701017201{}016e0001010166", "22".repeat(16))
        );
        assert_eq!(decode::<RevokedRecord>(&bytes, "revoked").unwrap(), r);
    }

    #[test]
    fn golden_audit_record() {
        let r = AuditRecord {
            seq: 1,
            time: 2,
            operation: "gen".into(),
            user: Some("U".into()),
            key: None,
            outcome: "ok".into(),
            detail: None,
            prev_mac: [0; 32],
            mac: [0xFF; 32],
        };
        let bytes = encode(&r).unwrap();
        let mut expected = String::from("0101020367656e01015500026f6b00");
        expected.push_str(&"00".repeat(32));
        expected.push_str(&"ff".repeat(32));
        assert_eq!(hex(&bytes), expected);
        assert_eq!(decode::<AuditRecord>(&bytes, "audit").unwrap(), r);
    }

    #[test]
    fn golden_failed_unlocks() {
        let f = FailedUnlocks {
            count: 3,
            first: 1,
            last: 2,
        };
        let bytes = encode(&f).unwrap();
        assert_eq!(hex(&bytes), "01030102");
        assert_eq!(decode::<FailedUnlocks>(&bytes, "failed").unwrap(), f);
    }

    #[test]
    fn bad_records_are_integrity_errors() {
        assert!(matches!(
            decode::<Header>(&[], "header"),
            Err(Error::BadRecord { .. })
        ));
        assert!(matches!(
            decode::<Header>(&[2, 0], "header"),
            Err(Error::BadRecord { .. })
        ));
        assert!(matches!(
            decode::<Header>(&[1, 0xff], "header"),
            Err(Error::BadRecord { .. })
        ));
        let mut ok = encode(&RevokedRecord {
            user: "u".into(),
            revoked_at: 1,
            reason: None,
            destroyed: vec![],
        })
        .unwrap()
        .to_vec();
        ok.push(0);
        assert!(matches!(
            decode::<RevokedRecord>(&ok, "revoked"),
            Err(Error::BadRecord { .. })
        ));
    }
}
