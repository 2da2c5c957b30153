//! Test vectors made by Python's `cryptography` (testdata/python_cryptography_48.txt), so
//! the unit tests check interoperability with a client nobody here wrote.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const TEXT: &str = include_str!("testdata/python_cryptography_48.txt");

/// The message every signature in the file signs.
pub const MESSAGE: &[u8] = b"signed by python";

/// The n-th PEM block of the file (0: the RSA key, 1: the Ed25519 key).
pub fn pem(n: usize) -> String {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in TEXT.lines() {
        if line.starts_with("-----BEGIN") {
            current = Some(String::new());
        }
        if let Some(c) = current.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
        if line.starts_with("-----END") {
            blocks.extend(current.take());
        }
    }
    blocks.swap_remove(n)
}

/// The value of a `NAME value` line, as text.
pub fn text(name: &str) -> String {
    TEXT.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the test vectors"))
        .to_string()
}

/// The value of a `NAME base64` line, decoded.
pub fn bytes(name: &str) -> Vec<u8> {
    STANDARD.decode(text(name)).unwrap()
}
