//! The manual page: `keyvault man` renders roff from the clap definitions, and names
//! every subcommand that `--help` lists (and not the hidden `agent`).

use crate::util::{TestEnv, assert_success};

/// The subcommands `keyvault --help` lists (the `Commands:` section), without `help`.
fn listed_subcommands(env: &TestEnv) -> Vec<String> {
    let out = env.bare().arg("--help").output().expect("run --help");
    assert_success(&out, "keyvault --help");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn man_page_renders_and_names_every_subcommand() {
    let env = TestEnv::new();
    let subcommands = listed_subcommands(&env);
    assert!(
        subcommands.len() >= 20 && subcommands.iter().any(|s| s == "man"),
        "--help lists {subcommands:?}"
    );

    let out = env.bare().arg("man").output().expect("run man");
    assert_success(&out, "keyvault man");
    assert!(out.stderr.is_empty(), "man wrote on stderr");
    let page = String::from_utf8(out.stdout).expect("the page is UTF-8");
    for section in [
        ".TH keyvault 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(
            page.contains(section),
            "the page has no {section:?}:\n{page}"
        );
    }
    // roff escapes the hyphen of `keyvault-gen(1)`.
    let missing: Vec<&String> = subcommands
        .iter()
        .filter(|s| !page.contains(&format!("keyvault\\-{}", s.replace('-', "\\-"))))
        .collect();
    assert!(
        missing.is_empty(),
        "the page does not name {missing:?}:\n{page}"
    );
    assert!(
        !page.contains("keyvault\\-agent"),
        "the page names the hidden agent command"
    );
    // It needs no vault and no passphrase, and makes nothing.
    assert!(!env.vault().exists());
}
