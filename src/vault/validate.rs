//! Checks on what users type: user ids, key names, reasons.

use crate::error::{Error, Result};

/// The longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// The longest key name, in characters.
pub const MAX_KEY_NAME_LEN: usize = 64;
/// The longest revocation reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// A user id is 1 to 128 bytes of UTF-8 with no control character.
pub fn user_id(user: &str) -> Result<()> {
    if user.is_empty() {
        return Err(Error::Usage("the user id is empty".into()));
    }
    if user.len() > MAX_USER_ID_BYTES {
        return Err(Error::Usage(format!(
            "the user id is {} bytes long; at most {MAX_USER_ID_BYTES} are allowed",
            user.len()
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(Error::Usage(
            "the user id contains a control character (such as a newline); these are not allowed"
                .into(),
        ));
    }
    Ok(())
}

/// A key name matches `[A-Za-z0-9._-]{1,64}`.
pub fn key_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_KEY_NAME_LEN || !ok_chars {
        return Err(Error::Usage(format!(
            "invalid key name {name:?}: use 1 to {MAX_KEY_NAME_LEN} of the characters A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// A revocation reason is at most 1 KiB with no control character but newline and tab.
pub fn reason(reason: &str) -> Result<()> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(Error::Usage(format!(
            "the reason is {} bytes long; at most {MAX_REASON_BYTES} are allowed",
            reason.len()
        )));
    }
    if reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::Usage(
            "the reason contains a control character".into(),
        ));
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
    fn key_names() {
        for good in ["fernet", "rsa-2048", "a.b_c-D9", &"k".repeat(64)] {
            assert!(key_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ü", &"k".repeat(65)] {
            assert!(key_name(bad).is_err(), "{bad:?}");
        }
    }
}
