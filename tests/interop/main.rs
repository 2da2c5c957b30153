//! Interoperability with other implementations, through Python's `cryptography` and
//! `jwcrypto` (`util::python` provisions them): Fernet tokens, RSA keys, OAEP and
//! signatures, Ed25519 keys and JWKs, both ways.

#[path = "../util/mod.rs"]
mod util;

mod ed25519_jwk;
mod fernet_tokens;
mod rsa_keys;
