//! Where the passphrase comes from: `--passphrase-file` / `KEYVAULT_PASSPHRASE_FILE`,
//! then `KEYVAULT_PASSPHRASE`, then the terminal (no echo). Never argv.
//!
//! On the terminal, echo is turned off before the prompt is shown, so that nothing typed
//! once the prompt is visible is ever echoed; the terminal's settings are put back
//! afterwards, also when the read fails or Ctrl-C ends it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use keyvault::{Error, Result};

/// The environment variable holding a passphrase (for automation; less safe).
pub(crate) const ENV_PASSPHRASE: &str = "KEYVAULT_PASSPHRASE";

/// How to get a passphrase.
pub(crate) struct PassphraseSource {
    /// A file named on the command line or in the environment.
    pub file: Option<PathBuf>,
    /// The name of the environment variable that may hold it.
    pub env_var: &'static str,
}

/// A passphrase, wiped from memory on drop.
pub(crate) type Passphrase = Zeroizing<Vec<u8>>;

/// The warnings given so far (also printed on stderr), for `--json` documents.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints a warning on stderr and keeps it for [`take_warnings`].
pub(crate) fn warn(message: String) {
    eprintln!("warning: {message}");
    WARNINGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(message);
}

/// The warnings given so far.
pub(crate) fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Warns when a new passphrase is easy to guess (it is never refused: scripts and tests
/// use short ones on purpose).
pub(crate) fn warn_if_weak(passphrase: &[u8]) {
    let s = keyvault::crypto::strength::estimate(passphrase);
    if s.is_weak() {
        warn(format!(
            "the new passphrase is weak: zxcvbn scores it {} of 4 (keyvault warns below {}), and estimates {} to guess it offline at 10,000 guesses a second; anyone with a copy of the vault or a backup can try; a few random words make a stronger one",
            s.score,
            keyvault::crypto::strength::WEAK_BELOW,
            s.offline_guess_time
        ));
    }
}

impl PassphraseSource {
    /// Gets the passphrase to unlock an existing vault.
    pub(crate) fn unlock(&self) -> Result<Passphrase> {
        self.obtain(false, "Passphrase: ")
    }

    /// Gets the passphrase of an existing vault, asking on the terminal with `prompt`.
    /// `None` when there is no file, no variable and no terminal.
    pub(crate) fn unlock_if_available(&self, prompt: &str) -> Result<Option<Passphrase>> {
        match self.obtain(false, prompt) {
            Ok(p) => Ok(Some(p)),
            Err(Error::NoPassphrase(_)) if self.file.is_none() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gets a new passphrase (asked twice on a terminal).
    pub(crate) fn new_passphrase(&self, prompt: &str) -> Result<Passphrase> {
        let p = self.obtain(true, prompt)?;
        if p.is_empty() {
            return Err(Error::Usage("the new passphrase is empty".into()));
        }
        Ok(p)
    }

    fn obtain(&self, confirm: bool, prompt: &str) -> Result<Passphrase> {
        if let Some(file) = &self.file {
            return read_file(file);
        }
        if let Some(value) = std::env::var_os(self.env_var) {
            use std::os::unix::ffi::OsStringExt;
            let bytes = Zeroizing::new(value.into_vec());
            return Ok(bytes);
        }
        let first = ask(prompt)?;
        if confirm {
            let again = ask("Repeat the passphrase: ")?;
            if first != again {
                return Err(Error::Usage("the two passphrases differ".into()));
            }
        }
        Ok(first)
    }
}

fn read_file(path: &Path) -> Result<Passphrase> {
    let read = keyvault::passphrase_file::read(path)?;
    if let Some(mode) = read.loose_mode {
        warn(format!(
            "the passphrase file {} can be read by other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(read.passphrase)
}

fn ask(prompt: &str) -> Result<Passphrase> {
    // The controlling terminal; with none, we say how else to pass a passphrase.
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Err(Error::NoPassphrase(
            "no passphrase is available: no passphrase file, no KEYVAULT_PASSPHRASE, and no terminal to ask on".into(),
        ));
    };
    let failed = |e: std::io::Error| Error::io("cannot read the passphrase from the terminal", e);
    let quiet = QuietTerminal::new(&tty).map_err(|e| failed(e.into()))?;
    // Echo is off from here on: only now is the prompt shown.
    (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| (&tty).flush())
        .map_err(failed)?;
    let mut line = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    loop {
        match (&tty).read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            // Ctrl-C reaches us as a character (signals are off while we read).
            Ok(_) if byte[0] == 0x03 => {
                drop(quiet);
                let _ = (&tty).write_all(b"\n");
                return Err(Error::Usage("interrupted at the passphrase prompt".into()));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    drop(quiet);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The terminal with echo and signal characters off (the newline still shows), as long
/// as this value lives; its settings are put back on drop.
struct QuietTerminal<'a> {
    tty: &'a std::fs::File,
    saved: rustix::termios::Termios,
}

impl<'a> QuietTerminal<'a> {
    fn new(tty: &'a std::fs::File) -> rustix::io::Result<Self> {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let saved = tcgetattr(tty)?;
        let mut quiet = saved.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ISIG);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(tty, OptionalActions::Now, &quiet)?;
        Ok(QuietTerminal { tty, saved })
    }
}

impl Drop for QuietTerminal<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}
