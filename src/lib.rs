//! keyvault: a local, offline, persistent key vault.
//!
//! Keys for named users are generated, stored, used, rotated and revoked; everything is
//! sealed at rest under a master key that an Argon2id-derived key unwraps.
//! [`Vault`] is the handle; the command line and the agent are thin layers over it.
//!
//! # Example
//!
//! ```
//! use keyvault::crypto::kdf::KdfParams;
//! use keyvault::{KeyType, Vault};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("vault");
//! // Fast, weak KDF parameters, for the example only: real vaults keep the default.
//! let kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
//! let vault = Vault::create(&path, b"correct horse battery staple", kdf, true)?;
//!
//! vault.generate("alice", None, KeyType::Fernet)?;
//! let token = vault.encrypt_message("alice", "fernet", b"hello")?.value;
//! let (version, plaintext) = vault.decrypt_message("alice", "fernet", &token, None)?;
//! assert_eq!(version, 1);
//! assert_eq!(plaintext.as_slice(), b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! Errors are one typed [`Error`]; [`Error::exit_code`] maps each to the exit status the
//! `keyvault` binary ends with. The library never names the binary's flags or commands:
//! the binary adds that advice itself.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod crypto;
pub mod error;
pub mod keytype;
pub mod ops;
pub mod passphrase_file;
pub mod ssh;
pub mod store;
pub mod vault;

pub use error::{Error, Result};
pub use keytype::KeyType;
pub use vault::backup;
pub use vault::{ExportOptions, Vault};
