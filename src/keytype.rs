//! The kinds of key a vault holds.

use serde::{Deserialize, Serialize};

/// A key type. The order of the variants is part of the record format (postcard encodes
/// the variant index): add new ones at the end, never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    /// A Fernet key (32 bytes: signing key ‖ encryption key).
    Fernet,
    /// A 256-bit AES-GCM key.
    Aes256Gcm,
    /// A 256-bit ChaCha20-Poly1305 key.
    ChaCha20Poly1305,
    /// An RSA key pair with a 2048-bit modulus.
    Rsa2048,
    /// An RSA key pair with a 3072-bit modulus.
    Rsa3072,
    /// An RSA key pair with a 4096-bit modulus.
    Rsa4096,
    /// An Ed25519 key pair (RFC 8032): signatures only.
    Ed25519,
}

/// What a key is asked to do, to check the key type can do it (see [`KeyType::check_use`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyUse {
    /// Encrypting a message (AEAD, Fernet and RSA-OAEP keys).
    Encrypt,
    /// Decrypting a message (the keys that encrypt).
    Decrypt,
    /// Signing a message (RSA and Ed25519 keys).
    Sign,
    /// Verifying a signature (the keys that sign, public-only ones too).
    Verify,
}

impl KeyUse {
    /// The verb, as the command is named.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Encrypt => "encrypt",
            KeyUse::Decrypt => "decrypt",
            KeyUse::Sign => "sign",
            KeyUse::Verify => "verify",
        }
    }
}

impl KeyType {
    /// Every key type, in the order `list` and help show them.
    pub const ALL: [KeyType; 7] = [
        KeyType::Fernet,
        KeyType::Aes256Gcm,
        KeyType::ChaCha20Poly1305,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::Ed25519,
    ];

    /// The name users type and see; also the default key name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Fernet => "fernet",
            KeyType::Aes256Gcm => "aes256-gcm",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Whether keys of this type have a public half (RSA and Ed25519).
    pub fn is_asymmetric(self) -> bool {
        self.is_rsa() || self == KeyType::Ed25519
    }

    /// Whether this is one of the RSA types.
    pub fn is_rsa(self) -> bool {
        self.rsa_bits().is_some()
    }

    /// Whether this is one of the AEAD envelope types (aes256-gcm, chacha20-poly1305).
    pub fn is_aead(self) -> bool {
        matches!(self, KeyType::Aes256Gcm | KeyType::ChaCha20Poly1305)
    }

    /// Whether keys of this type can do `what`: symmetric keys encrypt and decrypt, Ed25519
    /// keys sign and verify, RSA keys do all four (OAEP for encryption, of short inputs).
    pub fn supports(self, what: KeyUse) -> bool {
        match what {
            KeyUse::Encrypt | KeyUse::Decrypt => self != KeyType::Ed25519,
            KeyUse::Sign | KeyUse::Verify => self.is_asymmetric(),
        }
    }

    /// Checks keys of this type can do `what`; if not, a usage error (exit 2) saying what
    /// they do and which key type to use instead.
    pub fn check_use(self, what: KeyUse) -> crate::Result<()> {
        if self.supports(what) {
            return Ok(());
        }
        Err(crate::Error::UnsupportedUse {
            key_type: self,
            wanted: what,
        })
    }

    /// What keys of this type do, in words (for [`crate::Error::UnsupportedUse`]).
    pub(crate) fn uses_in_words(self) -> &'static str {
        if self.is_asymmetric() {
            "sign and verify"
        } else {
            "encrypt and decrypt"
        }
    }

    /// The size of a signature of this type in bytes (RSA: the modulus; Ed25519: 64),
    /// for the types that sign.
    pub fn signature_len(self) -> Option<usize> {
        match self {
            KeyType::Ed25519 => Some(64),
            kt => kt.rsa_bits().map(|b| b / 8),
        }
    }

    /// The modulus size of an RSA type.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyType::Rsa2048 => Some(2048),
            KeyType::Rsa3072 => Some(3072),
            KeyType::Rsa4096 => Some(4096),
            _ => None,
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = KeyType::ALL.iter().map(|t| t.as_str()).collect();
                crate::Error::Usage(format!(
                    "unknown key type {s:?}; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_indices_are_frozen() {
        // postcard encodes the variant index: these must never change.
        let idx: Vec<u8> = KeyType::ALL
            .iter()
            .map(|t| postcard::to_stdvec(t).unwrap()[0])
            .collect();
        assert_eq!(idx, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(KeyType::ALL[6], KeyType::Ed25519);
    }

    #[test]
    fn names_round_trip() {
        for t in KeyType::ALL {
            assert_eq!(t.as_str().parse::<KeyType>().unwrap(), t);
        }
        assert!(matches!(
            "ed448".parse::<KeyType>(),
            Err(crate::Error::Usage(_))
        ));
    }

    #[test]
    fn classes() {
        assert!(KeyType::Ed25519.is_asymmetric());
        assert!(!KeyType::Ed25519.is_rsa());
        assert_eq!(KeyType::Ed25519.rsa_bits(), None);
        assert!(KeyType::Rsa3072.is_rsa() && KeyType::Rsa3072.is_asymmetric());
        assert!(KeyType::Aes256Gcm.is_aead() && KeyType::ChaCha20Poly1305.is_aead());
        assert!(!KeyType::Fernet.is_aead() && !KeyType::Fernet.is_asymmetric());
    }

    #[test]
    fn wrong_use_is_usage_error_with_hint() {
        assert!(KeyType::Rsa2048.check_use(KeyUse::Sign).is_ok());
        assert!(KeyType::Rsa2048.check_use(KeyUse::Encrypt).is_ok());
        assert!(KeyType::Fernet.check_use(KeyUse::Decrypt).is_ok());
        assert!(KeyType::Ed25519.check_use(KeyUse::Verify).is_ok());
        match KeyType::Ed25519.check_use(KeyUse::Encrypt) {
            Err(e @ crate::Error::UnsupportedUse { .. }) => {
                let m = e.to_string();
                assert!(m.contains("ed25519 keys sign and verify"), "{m}");
                assert!(m.contains("use a fernet or aead"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match KeyType::Fernet.check_use(KeyUse::Sign) {
            Err(e @ crate::Error::UnsupportedUse { .. }) => {
                let m = e.to_string();
                assert!(m.contains("fernet keys encrypt and decrypt"), "{m}");
                assert!(m.contains("rsa or ed25519"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(KeyType::Aes256Gcm.check_use(KeyUse::Verify).is_err());
    }
}
