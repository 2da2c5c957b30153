//! Checks on what users type: user ids, key names, reasons.
//!
//! A user id is Unicode text, normalised to NFC before use, so that the two ways of
//! writing "José" (one precomposed letter, or a letter and a combining accent) are one
//! user. Ids that would print as something they are not are refused: empty, over 128
//! bytes, leading or trailing whitespace, control characters, line and paragraph
//! separators, bidirectional controls, and zero-width and other default-ignorable code
//! points. Vaults made before these rules may hold such ids; they stay reachable by the
//! exact id (see `Vault::resolve_user`) and `check` lists them.

use unicode_normalization::UnicodeNormalization as _;

use crate::error::{Error, Result, UserIdProblem};

/// The longest user id, in bytes.
pub(crate) const MAX_USER_ID_BYTES: usize = 128;
/// The longest key name, in characters.
pub(crate) const MAX_KEY_NAME_LEN: usize = 64;
/// The longest revocation reason, in bytes.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// The form of a stored id: 1 to 128 bytes of UTF-8 with no control character. Every
/// id a vault holds passes this, including ids stored before the rules of
/// [`new_user_id`]; it is what an id read from a record or a backup is held to.
pub fn user_id(user: &str) -> Result<()> {
    if user.is_empty() {
        return Err(Error::InvalidUserId(UserIdProblem::Empty));
    }
    if user.len() > MAX_USER_ID_BYTES {
        return Err(Error::InvalidUserId(UserIdProblem::TooLong {
            len: user.len(),
            max: MAX_USER_ID_BYTES,
        }));
    }
    if let Some(c) = user.chars().find(|c| c.is_control()) {
        return Err(Error::InvalidUserId(UserIdProblem::ControlCharacter(c)));
    }
    Ok(())
}

/// A user id as users type it: normalised to NFC, then held to every rule of the
/// module docs. Returns the normalised id, the one to use.
pub fn new_user_id(user: &str) -> Result<String> {
    let nfc: String = user.nfc().collect();
    user_id(&nfc)?;
    if let Some(c) = nfc.chars().next().filter(|c| c.is_whitespace()) {
        return Err(Error::InvalidUserId(UserIdProblem::LeadingWhitespace(c)));
    }
    if let Some(c) = nfc.chars().next_back().filter(|c| c.is_whitespace()) {
        return Err(Error::InvalidUserId(UserIdProblem::TrailingWhitespace(c)));
    }
    if let Some((c, what)) = nfc.chars().find_map(|c| refused(c).map(|w| (c, w))) {
        return Err(Error::InvalidUserId(UserIdProblem::Misleading {
            found: c,
            what: what.to_string(),
        }));
    }
    Ok(nfc)
}

/// Why a character is refused in a user id (besides controls), if it is.
pub fn refused(c: char) -> Option<&'static str> {
    if matches!(c, '\u{2028}' | '\u{2029}') {
        return Some("a line or paragraph separator");
    }
    if matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    {
        return Some("a bidirectional control");
    }
    if default_ignorable(c) {
        return Some("a zero-width or other invisible (default-ignorable) character");
    }
    None
}

/// Whether `c` has the Unicode property Default_Ignorable_Code_Point (DerivedCoreProperties,
/// Unicode 16): characters that render as nothing, such as U+200B ZERO WIDTH SPACE.
fn default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether an id a vault holds breaks the rules of [`new_user_id`] (an id stored before
/// them); the reason if so.
pub(crate) fn nonconforming(user: &str) -> Option<String> {
    match new_user_id(user) {
        Err(e) => Some(e.to_string()),
        Ok(nfc) if nfc != user => Some("the user id is not in Unicode NFC form".into()),
        Ok(_) => None,
    }
}

/// `U+XXXX`, as a code point is named in messages.
pub(crate) fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Text a user gave, made safe to print on one line: control characters and the
/// characters [`refused`] names become escapes (`\n`, `\t`, `\u{202e}`), so a reason or
/// an id cannot add lines to output or reorder what is printed around it.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| c.is_control() || refused(c).is_some();
    // Printable ASCII (most ids and every key name) never needs escaping.
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) || !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A key name matches `[A-Za-z0-9._-]{1,64}`.
pub fn key_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_KEY_NAME_LEN || !ok_chars {
        return Err(Error::InvalidKeyName {
            name: name.to_string(),
            max: MAX_KEY_NAME_LEN,
        });
    }
    Ok(())
}

/// A revocation reason is at most 1 KiB with no control character but newline and tab.
pub fn reason(reason: &str) -> Result<()> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(Error::ReasonTooLong {
            len: reason.len(),
            max: MAX_REASON_BYTES,
        });
    }
    if reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::ReasonControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(user_id("User123").is_ok());
        assert!(user_id("alice@example.com").is_ok());
        assert!(user_id("Ünïcode user").is_ok());
        assert!(user_id(&"x".repeat(128)).is_ok());
        for bad in ["", "a\nb", "a\u{7}", "tab\there", "\u{85}"] {
            assert!(user_id(bad).is_err(), "{bad:?}");
        }
        assert!(user_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn new_user_ids_are_nfc_and_refuse_look_alikes() {
        assert_eq!(new_user_id("Jose\u{301}").unwrap(), "Jos\u{e9}");
        assert_eq!(new_user_id("Jos\u{e9}").unwrap(), "Jos\u{e9}");
        assert_eq!(new_user_id("a b").unwrap(), "a b");
        for (bad, says) in [
            ("", "empty"),
            ("a\u{200B}b", "U+200B"),
            ("a\u{202E}b", "U+202E"),
            ("a\u{2028}", "U+2028"),
            ("a ", "ends with whitespace (U+0020)"),
            ("\u{3000}a", "starts with whitespace (U+3000)"),
            ("a\u{FEFF}", "U+FEFF"),
            ("a\u{2066}b", "bidirectional"),
            ("a\u{E0041}", "U+E0041"),
            ("a\nb", "U+000A"),
        ] {
            let e = new_user_id(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        // 64 two-byte letters are 128 bytes; the decomposed form is longer but
        // normalises to it.
        assert!(new_user_id(&"e\u{301}".repeat(64)).is_ok());
        assert!(new_user_id(&"\u{e9}".repeat(65)).is_err());
    }

    #[test]
    fn escaping_keeps_text_on_one_line() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("a\nUser999  2026"), "a\\nUser999  2026");
        assert_eq!(escape("x\u{202e}y\u{1b}[31m"), "x\\u{202e}y\\u{001b}[31m");
    }

    #[test]
    fn key_names() {
        for good in ["fernet", "rsa-2048", "a.b_c-D9", &"k".repeat(64)] {
            assert!(key_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ü", &"k".repeat(65)] {
            assert!(key_name(bad).is_err(), "{bad:?}");
        }
    }
}
