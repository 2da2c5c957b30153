//! Passphrase → key encryption key (KEK) with Argon2id, and the parameter profiles.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Argon2id cost parameters, stored in the vault header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Argon2id passes over the memory (t).
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

/// A change of KDF parameters: a whole profile, single parameters, or both (the single
/// ones override the profile). What it leaves unset keeps the value it is applied to:
/// `passwd --kdf-iterations 5` changes the passes and nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfChange {
    /// A whole set of parameters to start from (a profile).
    pub base: Option<KdfParams>,
    /// Memory cost in KiB.
    pub memory_kib: Option<u32>,
    /// Argon2id passes over the memory (t), if given.
    pub iterations: Option<u32>,
    /// Argon2id lanes (p), if given.
    pub parallelism: Option<u32>,
}

impl KdfChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == KdfChange::default()
    }

    /// The parameters after the change, starting from `current`.
    pub fn applied_to(&self, current: KdfParams) -> KdfParams {
        let mut p = self.base.unwrap_or(current);
        if let Some(m) = self.memory_kib {
            p.memory_kib = m;
        }
        if let Some(t) = self.iterations {
            p.iterations = t;
        }
        if let Some(par) = self.parallelism {
            p.parallelism = par;
        }
        p
    }
}

/// The length of the random salt stored in the vault.
pub const SALT_LEN: usize = 16;

/// A named set of parameters (`--kdf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfProfile {
    /// OWASP's floor: m=19 MiB, t=2, p=1. For machines short of memory.
    Interactive,
    /// RFC 9106's second recommended setting: m=64 MiB, t=3, p=4. The default.
    Moderate,
    /// m=1 GiB, t=4, p=4, as libsodium's "sensitive" limit.
    Sensitive,
}

impl KdfProfile {
    /// The parameters of the profile.
    pub fn params(self) -> KdfParams {
        match self {
            KdfProfile::Interactive => KdfParams {
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1,
            },
            KdfProfile::Moderate => KdfParams {
                memory_kib: 64 * 1024,
                iterations: 3,
                parallelism: 4,
            },
            KdfProfile::Sensitive => KdfParams {
                memory_kib: 1024 * 1024,
                iterations: 4,
                parallelism: 4,
            },
        }
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfProfile::Moderate.params()
    }
}

/// OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1.
pub const FLOOR: KdfParams = KdfParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    parallelism: 1,
};

/// The largest memory cost we accept (4 GiB), so a forged header cannot make us
/// allocate without bound.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// The most passes we accept.
pub const MAX_ITERATIONS: u32 = 64;
/// The most lanes we accept.
pub const MAX_PARALLELISM: u32 = 64;

impl KdfParams {
    /// Whether the parameters are below OWASP's floor.
    pub fn is_weak(&self) -> bool {
        self.memory_kib < FLOOR.memory_kib
            || self.iterations < FLOOR.iterations
            || self.parallelism < FLOOR.parallelism
    }

    /// Checks the parameters are within what Argon2 and this tool accept, and, unless
    /// `allow_weak`, not below the floor.
    pub fn validate(&self, allow_weak: bool) -> Result<()> {
        self.check_bounds()?;
        if self.is_weak() && !allow_weak {
            return Err(Error::WeakKdf { params: *self });
        }
        Ok(())
    }

    fn check_bounds(&self) -> Result<()> {
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(Error::Usage(format!(
                "KDF parallelism must be between 1 and {MAX_PARALLELISM}"
            )));
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(Error::Usage(format!(
                "KDF iterations must be between 1 and {MAX_ITERATIONS}"
            )));
        }
        if self.memory_kib < 8 * self.parallelism || self.memory_kib > MAX_MEMORY_KIB {
            return Err(Error::Usage(format!(
                "KDF memory must be between {} KiB and {} MiB",
                8 * self.parallelism,
                MAX_MEMORY_KIB / 1024
            )));
        }
        Ok(())
    }

    /// Derives the 256-bit KEK from a passphrase and salt.
    pub fn derive_kek(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        // A header read from disk may carry anything: bound it before allocating.
        self.check_bounds().map_err(|e| {
            Error::Integrity(format!("vault header has invalid KDF parameters: {e}"))
        })?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::Usage(format!("invalid KDF parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut kek = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, kek.as_mut())
            .map_err(|e| Error::Internal(format!("key derivation failed: {e}")))?;
        Ok(kek)
    }
}

impl std::fmt::Display for KdfParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.memory_kib.is_multiple_of(1024) {
            write!(f, "m={} MiB", self.memory_kib / 1024)?;
        } else {
            write!(f, "m={} KiB", self.memory_kib)?;
        }
        write!(f, ", t={}, p={}", self.iterations, self.parallelism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_rfc9106_second_setting() {
        let p = KdfParams::default();
        assert_eq!((p.memory_kib, p.iterations, p.parallelism), (65536, 3, 4));
        assert!(!p.is_weak());
    }

    #[test]
    fn weak_params_refused_without_flag() {
        let weak = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(weak.validate(false), Err(Error::WeakKdf { .. })));
        assert!(weak.validate(true).is_ok());
    }

    #[test]
    fn same_input_same_kek_and_salt_matters() {
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = p.derive_kek(b"pw", b"0123456789abcdef").unwrap();
        let b = p.derive_kek(b"pw", b"0123456789abcdef").unwrap();
        let c = p.derive_kek(b"pw", b"0123456789abcdeX").unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
    }

    #[test]
    fn absurd_header_params_are_integrity_errors() {
        let p = KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(
            p.derive_kek(b"pw", b"0123456789abcdef"),
            Err(Error::Integrity(_))
        ));
    }
}
