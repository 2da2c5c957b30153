//! Reading a passphrase from a file, the same way for every front end (the command
//! line's `--passphrase-file` and `KEYVAULT_PASSPHRASE_FILE`, the Python package's
//! `passphrase_file=`): the first line, without its line ending, of a file of at most
//! 64 KiB.

use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The largest passphrase file read: a passphrase is one line, and a larger file is
/// more likely the wrong file than a passphrase.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A passphrase read from a file.
pub struct PassphraseFile {
    /// The file's first line, without `\n` or `\r\n`.
    pub passphrase: Zeroizing<Vec<u8>>,
    /// The file's permission bits when users other than its owner may read or write
    /// it, for the caller to warn about (`None` when it is private).
    pub loose_mode: Option<u32>,
}

/// Reads the passphrase in `path`. An unreadable file is [`Error::NoPassphrase`]; one
/// over [`MAX_FILE_BYTES`] a usage error.
pub fn read(path: &Path) -> Result<PassphraseFile> {
    let unreadable = |e: std::io::Error| {
        Error::NoPassphrase(format!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let loose_mode = file
        .metadata()
        .ok()
        .map(|meta| meta.permissions().mode() & 0o777)
        .filter(|mode| mode & 0o077 != 0);
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Usage(format!(
            "the passphrase file {} is larger than 64 KiB",
            path.display()
        )));
    }
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let mut passphrase = Zeroizing::new(buf[..end].to_vec());
    if passphrase.last() == Some(&b'\r') {
        passphrase.pop();
    }
    Ok(PassphraseFile {
        passphrase,
        loose_mode,
    })
}
