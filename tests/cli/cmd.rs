//! The command lines refused while they are parsed (usage errors, unknown values) and a
//! little help, as case files: `tests/cmd/*.toml`, one command line each, with its exit
//! status, its stdout (empty, or the `--json` error document) and its whole stderr, run
//! by trycmd. They run against a populated vault in a private environment, like the
//! tables of `bad_input.rs`, and must change nothing: afterwards the vault reports the
//! same keys, revocations and status, and no file has appeared next to it.
//!
//! After an intended change of wording, `TRYCMD=overwrite cargo test --test cli cmd::`
//! rewrites the expected output in the files; `[..]` in them matches any text within a
//! line, `...` any lines, and `[TESTDIR]` the test's temp dir.

use std::path::Path;

use crate::bad_input::{entries, populated};

#[test]
fn case_files_fail_as_they_say_and_change_nothing() {
    let env = populated();
    let passphrase_file = env.passphrase_file();
    let before = env.snapshot();
    let files_before = entries(env.root());

    let cases = trycmd::TestCases::new();
    cases.register_bin("keyvault", Path::new(env!("CARGO_BIN_EXE_keyvault")));
    for (var, value) in env.vars() {
        cases.env(var, value.to_string_lossy());
    }
    cases.env(
        "KEYVAULT_PASSPHRASE_FILE",
        passphrase_file.to_string_lossy(),
    );
    cases
        .insert_var("[TESTDIR]", env.root().to_string_lossy().into_owned())
        .expect("a valid trycmd variable");
    cases.case("tests/cmd/*.toml");
    cases.run();

    assert!(env.snapshot() == before, "a case file changed the vault");
    assert_eq!(
        entries(env.root()),
        files_before,
        "a case file made or removed a file next to the vault"
    );
}
