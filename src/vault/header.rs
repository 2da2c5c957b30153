//! The header file of a vault (format 4 on): what unlocking needs, the vault's id and
//! its format version, authenticated under a subkey of the master key.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! "KVHEADER"      8 bytes, magic
//! format          u32, the vault format version
//! body length n   u32 (at most 64 KiB)
//! body            n bytes: record-format byte ‖ postcard(vault id, KDF parameters,
//!                 salt, wrapped master key, creation time)
//! mac             32 bytes: HMAC-SHA256 under the header subkey, over a label and
//!                 every byte above
//! ```
//!
//! The format version and the KDF parameters must be readable before the passphrase is
//! known, so they are not encrypted; the MAC makes any change to them (a format
//! relabelled to make an older migration run, a vault id swapped) fail to open once the
//! master key is unwrapped. The KDF parameters and salt are also bound to the wrapped
//! master key as associated data, so changing them makes unwrapping fail outright. The
//! file is only ever replaced whole (written beside it, synced, renamed over it).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::kdf::KdfParams;
use crate::crypto::seal::Keyring;
use crate::error::{Error, HeaderProblem, Result};
use crate::store::records::{self, Header};
use crate::vault::migrate::CURRENT_FORMAT;

/// The magic bytes at the start of every header file.
pub(crate) const MAGIC: &[u8; 8] = b"KVHEADER";
const MAC_LABEL: &[u8] = b"keyvault header v4";
const MAX_BODY: u32 = 64 * 1024;

/// Length of a vault id.
pub(crate) const VAULT_ID_LEN: usize = 16;

/// The content of a header file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultHeader {
    /// The vault format version.
    pub format: u32,
    /// The vault's random id: the same for every copy of this vault's directory, new
    /// for a vault made by `restore`.
    pub vault_id: [u8; VAULT_ID_LEN],
    /// KDF parameters, salt, wrapped master key, creation time.
    pub unlock: Header,
}

#[derive(Serialize, Deserialize)]
struct Body {
    vault_id: [u8; VAULT_ID_LEN],
    kdf: KdfParams,
    salt: Vec<u8>,
    wrapped_master_key: Vec<u8>,
    created: u64,
}

/// A header file as read, before its MAC is checked.
pub struct HeaderFile {
    /// What it says (not yet authenticated).
    pub header: VaultHeader,
    signed_len: usize,
    bytes: Vec<u8>,
}

fn damaged(problem: HeaderProblem) -> Error {
    Error::BadHeaderFile(problem)
}

impl VaultHeader {
    /// The header file's bytes, MACed under `keyring`'s header subkey.
    pub fn encode(&self, keyring: &Keyring) -> Result<Vec<u8>> {
        let body = records::encode(&Body {
            vault_id: self.vault_id,
            kdf: self.unlock.kdf,
            salt: self.unlock.salt.clone(),
            wrapped_master_key: self.unlock.wrapped_master_key.clone(),
            created: self.unlock.created,
        })?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|n| *n <= MAX_BODY)
            .ok_or_else(|| Error::Internal("the header is too large".into()))?;
        let mut out = Vec::with_capacity(16 + body.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.format.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        let tag = keyring.header.mac(&[MAC_LABEL, &out]);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The vault id in hex.
    pub(crate) fn id_hex(&self) -> String {
        super::hex(&self.vault_id)
    }
}

impl HeaderFile {
    /// Parses a header file. A format newer than this binary's is refused (exit 8); one
    /// older than 4 cannot be in a header file, so it was relabelled (exit 7).
    pub fn parse(bytes: Vec<u8>) -> Result<HeaderFile> {
        if bytes.len() < 16 + 32 || &bytes[..8] != MAGIC {
            return Err(damaged(HeaderProblem::NotAHeader));
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let format = word(8);
        let len = word(12);
        if format > CURRENT_FORMAT {
            return Err(Error::NewerFormat {
                path: std::path::PathBuf::from("(header)"),
                found: format,
                supported: CURRENT_FORMAT,
            });
        }
        if format < 4 {
            return Err(damaged(HeaderProblem::FormatWithoutHeaderFile(format)));
        }
        if len > MAX_BODY || bytes.len() != 16 + len as usize + 32 {
            return Err(damaged(HeaderProblem::WrongLength));
        }
        let body: Body = records::decode(&bytes[16..16 + len as usize], "header")
            .map_err(|_| damaged(HeaderProblem::BodyDoesNotDecode))?;
        Ok(HeaderFile {
            header: VaultHeader {
                format,
                vault_id: body.vault_id,
                unlock: Header {
                    kdf: body.kdf,
                    salt: body.salt,
                    wrapped_master_key: body.wrapped_master_key,
                    created: body.created,
                },
            },
            signed_len: 16 + len as usize,
            bytes,
        })
    }

    /// Checks the MAC with the unlocked vault's keys: a header whose format, id or any
    /// other byte was changed fails here (exit 7).
    pub fn verify(&self, keyring: &Keyring) -> Result<()> {
        let (signed, tag) = self.bytes.split_at(self.signed_len);
        let expected = keyring.header.mac(&[MAC_LABEL, signed]);
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(damaged(HeaderProblem::FailsToAuthenticate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::MasterKey;
    use zeroize::Zeroizing;

    fn sample() -> (VaultHeader, Keyring) {
        let master = MasterKey::from_bytes(Zeroizing::new([7u8; 32]));
        let header = VaultHeader {
            format: 4,
            vault_id: [0xAB; 16],
            unlock: Header {
                kdf: KdfParams {
                    memory_kib: 1024,
                    iterations: 1,
                    parallelism: 1,
                },
                salt: vec![1; 16],
                wrapped_master_key: vec![2; 72],
                created: 1_700_000_000,
            },
        };
        (header, master.keyring())
    }

    #[test]
    fn golden_bytes_of_a_header_file() {
        let (header, keyring) = sample();
        let bytes = header.encode(&keyring).unwrap();
        let mut expected = b"KVHEADER".to_vec();
        expected.extend_from_slice(&4u32.to_be_bytes());
        let body_len = bytes.len() - 16 - 32;
        expected.extend_from_slice(&(body_len as u32).to_be_bytes());
        // Record-format byte, the id (16 raw bytes), KDF parameters as varints
        // (1024 = 0x80 0x08), the salt and wrapped key with varint lengths, the time.
        expected.push(1);
        expected.extend_from_slice(&[0xAB; 16]);
        expected.extend_from_slice(&[0x80, 0x08, 0x01, 0x01]);
        expected.push(16);
        expected.extend_from_slice(&[1; 16]);
        expected.push(72);
        expected.extend_from_slice(&[2; 72]);
        expected.extend_from_slice(&[0x80, 0xE2, 0xCF, 0xAA, 0x06]);
        assert_eq!(&bytes[..bytes.len() - 32], &expected[..]);
        assert_eq!(body_len, expected.len() - 16);
        let parsed = HeaderFile::parse(bytes).unwrap();
        assert_eq!(parsed.header, header);
        parsed.verify(&keyring).unwrap();
    }

    #[test]
    fn every_changed_byte_fails_to_parse_or_to_authenticate() {
        let (header, keyring) = sample();
        let bytes = header.encode(&keyring).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            match HeaderFile::parse(bad) {
                Err(_) => {}
                Ok(parsed) => assert!(parsed.verify(&keyring).is_err(), "byte {i}"),
            }
        }
    }

    #[test]
    fn a_relabelled_older_format_is_an_integrity_failure_and_a_newer_one_is_refused() {
        let (header, keyring) = sample();
        let mut bytes = header.encode(&keyring).unwrap();
        bytes[11] = 3;
        assert!(matches!(
            HeaderFile::parse(bytes.clone()),
            Err(Error::BadHeaderFile(_))
        ));
        bytes[11] = 5;
        assert!(matches!(
            HeaderFile::parse(bytes),
            Err(Error::NewerFormat { found: 5, .. })
        ));
    }
}
