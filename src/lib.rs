//! keyvault: a local, offline, persistent key vault.
//!
//! Keys for named users are generated, stored, used, rotated and revoked; everything is
//! sealed at rest under a master key that an Argon2id-derived key unwraps.
//! [`Vault`] is the handle; the command line and the agent are thin layers over it.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod backup;
pub mod crypto;
pub mod error;
pub mod keytype;
pub mod ops;
pub mod ssh;
pub mod store;
pub mod vault;

pub use error::{Error, Result};
pub use keytype::KeyType;
pub use vault::{ExportOptions, Vault};
