//! The `keyvault` binary: parse, dispatch, map errors to exit codes — nothing else.

mod cli;

use std::process::ExitCode;

use keyvault::vault::validate::escape;

fn main() -> ExitCode {
    // Every file this process creates (sled's files, exports) is private to the user.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // clap's derive (`Cli::try_parse`) builds the command tree, parses, then frees the
    // tree: hundreds of allocations freed one by one just before the process ends
    // anyway. The tree is built and used the same way here, and left to the exit.
    let mut command = <cli::args::Cli as clap::CommandFactory>::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| {
            <cli::args::Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut m)
                .map_err(|e| e.format(&mut command))
        });
    std::mem::forget(command);
    let parsed = match parsed {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::MissingSubcommand => {
            // clap's own message lists every subcommand, the hidden `agent` too.
            eprintln!("error: keyvault needs a subcommand, such as `keyvault list`");
            eprintln!("hint: run `keyvault --help` to see the commands");
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap prints `error: …` and a usage hint; --help and --version exit 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let json = parsed.json;
    keyvault::store::on_first_open(start_stall_watchdog);
    // No panic may reach the user as a backtrace: the storage engine can panic on
    // damaged files, and a bug must still end in one `error:` line and an exit code.
    // The hook notes only where the panic happened (never its message, which could
    // quote data); the error line names that place.
    std::panic::set_hook(Box::new(keyvault::error::note_panic));
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli::run(parsed)))
    {
        Ok(outcome) => outcome,
        Err(_) => {
            let at = keyvault::error::take_panic_location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            eprintln!(
                "error: internal error: keyvault stopped on an unexpected condition{at} (damaged vault files, or a bug)"
            );
            eprintln!(
                "hint: run `keyvault check`; if the files are damaged, restore from a backup"
            );
            return ExitCode::from(8);
        }
    };
    match outcome {
        Ok(code) => {
            if cli::OPENED_READ_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "note: the vault's filesystem takes no writes (read-only or full): it was opened read-only, and uses of keys were not recorded in the audit log"
                );
            }
            ExitCode::from(u8::try_from(code).unwrap_or(8))
        }
        Err(cli::RunError::Stdout(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        // Output written through the library (encrypt, decrypt, sign) to a reader that
        // went away: the same quiet end as for text. Only our own output (a typed
        // error): a broken pipe to the agent is an error like any other.
        Err(cli::RunError::Vault(e)) if e.is_broken_output_pipe() => ExitCode::SUCCESS,
        Err(cli::RunError::Stdout(e)) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(8)
        }
        Err(cli::RunError::Reported(e)) => {
            eprintln!("error: {}", escape(&cli::advice::message(&e)));
            if let Some(hint) = cli::advice::hint(&e) {
                eprintln!("hint: {}", escape(&hint));
            }
            ExitCode::from(e.exit_code().code())
        }
        Err(cli::RunError::Vault(e)) => {
            let code = e.exit_code().code();
            let message = cli::advice::message(&e);
            eprintln!("error: {}", escape(&message));
            if let Some(hint) = cli::advice::hint(&e) {
                eprintln!("hint: {}", escape(&hint));
            }
            if json {
                let doc = serde_json::json!({
                    "error": { "code": code, "message": message }
                });
                println!("{doc}");
            }
            ExitCode::from(code)
        }
    }
}

/// Ends the process with an integrity error if the storage engine makes no progress for
/// `STALL_LIMIT` (sled can spin on some damaged files instead of failing). A stuck call is
/// a read or an atomic write, so ending the process loses nothing.
fn start_stall_watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if keyvault::vault::storage_stalled() {
                eprintln!(
                    "error: integrity failure: the storage engine stopped making progress reading the vault's files (damaged?)"
                );
                eprintln!(
                    "hint: run `keyvault check`; if the files are damaged, restore from a backup"
                );
                std::process::exit(7);
            }
        }
    });
}
