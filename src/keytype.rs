//! The kinds of key a vault holds (SPEC §3).

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
}

impl KeyType {
    /// Every key type, in the order `list` and help show them.
    pub const ALL: [KeyType; 6] = [
        KeyType::Fernet,
        KeyType::Aes256Gcm,
        KeyType::ChaCha20Poly1305,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
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
        }
    }

    /// Whether keys of this type have a public half.
    pub fn is_asymmetric(self) -> bool {
        self.rsa_bits().is_some()
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
