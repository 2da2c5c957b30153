//! Where the passphrase comes from: `--passphrase-file` / `KEYVAULT_PASSPHRASE_FILE`,
//! then `KEYVAULT_PASSPHRASE`, then the terminal (no echo). Never argv.

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use keyvault::{Error, Result};

/// The environment variable holding a passphrase (for automation; less safe).
pub const ENV_PASSPHRASE: &str = "KEYVAULT_PASSPHRASE";

/// The largest passphrase file we read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// How to get a passphrase.
pub struct PassphraseSource {
    /// A file named on the command line or in the environment.
    pub file: Option<PathBuf>,
    /// The name of the environment variable that may hold it.
    pub env_var: &'static str,
}

/// A passphrase, wiped from memory on drop.
pub type Passphrase = Zeroizing<Vec<u8>>;

impl PassphraseSource {
    /// Gets the passphrase to unlock an existing vault.
    pub fn unlock(&self) -> Result<Passphrase> {
        self.obtain(false, "Passphrase: ")
    }

    /// Gets the passphrase of an existing vault, asking on the terminal with `prompt`.
    /// `None` when there is no file, no variable and no terminal.
    pub fn unlock_if_available(&self, prompt: &str) -> Result<Option<Passphrase>> {
        match self.obtain(false, prompt) {
            Ok(p) => Ok(Some(p)),
            Err(Error::NoPassphrase(_)) if self.file.is_none() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gets a new passphrase (asked twice on a terminal).
    pub fn new_passphrase(&self, prompt: &str) -> Result<Passphrase> {
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
    let file = std::fs::File::open(path).map_err(|e| {
        Error::NoPassphrase(format!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
    })?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            Error::NoPassphrase(format!(
                "cannot read the passphrase file {}: {e}",
                path.display()
            ))
        })?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Usage(format!(
            "the passphrase file {} is larger than 64 KiB",
            path.display()
        )));
    }
    // The passphrase is the first line, without its line ending.
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let mut line = Zeroizing::new(buf[..end].to_vec());
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn ask(prompt: &str) -> Result<Passphrase> {
    // rpassword reads from the controlling terminal (/dev/tty) with echo off; with no
    // terminal it fails, and we say how else to pass a passphrase.
    match rpassword::prompt_password(prompt) {
        Ok(s) => Ok(Zeroizing::new(s.into_bytes())),
        Err(_) => Err(Error::NoPassphrase(
            "no passphrase is available: no passphrase file, no KEYVAULT_PASSPHRASE, and no terminal to ask on".into(),
        )),
    }
}
