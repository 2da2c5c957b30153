//! The command line as a user meets it: bad input and its error lines, the I/O
//! contract (stdin, stdout, exit codes, terminals), import and export, encrypt/decrypt/
//! sign/verify, revocation, the default KDF, the README demo and the user story. The
//! help, usage and error-line cases that need no prepared vault are case files under
//! `tests/cmd/` (see `cmd.rs`).

#[path = "../util/mod.rs"]
mod util;

mod bad_input;
mod cmd;
mod default_kdf;
mod demo;
mod import_export;
mod io_contract;
mod keyuse;
mod keyuse_bad_input;
mod man;
mod revocation;
mod user_story;
