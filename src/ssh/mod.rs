//! OpenSSH interoperability: the key formats `ssh` and `ssh-keygen` read and write
//! ([`format`](mod@format)), and the messages of the OpenSSH agent protocol ([`wire`]).
//!
//! This module knows no vault, no socket and no command line: it turns key material
//! into OpenSSH encodings and back, and bytes of the agent protocol into typed
//! messages and back. Which keys may be served to `ssh` is the vault's business
//! (`vault::ssh`); serving them is the agent's (`agent::ssh`).

pub mod format;
pub mod wire;
