//! How hard a passphrase is to guess, estimated with zxcvbn (Dropbox's estimator):
//! for warnings when a vault gets a new passphrase. Nothing is ever refused on it.

/// The score (0 to 4) below which a new passphrase is called weak.
pub const WEAK_BELOW: u8 = 3;

/// zxcvbn's estimate of a passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strength {
    /// 0 (guessable in a few tries) to 4 (very unlikely to be guessed).
    pub score: u8,
    /// zxcvbn's time to guess it at 10,000 guesses a second (an offline attack on a
    /// slow hash), e.g. "3 hours".
    pub offline_guess_time: String,
}

impl Strength {
    /// Whether the score is below [`WEAK_BELOW`].
    pub fn is_weak(&self) -> bool {
        self.score < WEAK_BELOW
    }
}

/// Estimates `passphrase` (bytes that are not UTF-8 are read as replacement characters,
/// which only lowers the estimate).
pub fn estimate(passphrase: &[u8]) -> Strength {
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(passphrase).into_owned());
    let entropy = zxcvbn::zxcvbn(&text, &["keyvault", "vault", "passphrase"]);
    Strength {
        score: u8::from(entropy.score()),
        offline_guess_time: entropy
            .crack_times()
            .offline_slow_hashing_1e4_per_second()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_common_passphrases_are_weak_long_random_ones_are_not() {
        for weak in ["abc", "password", "keyvault1", "qwerty123"] {
            assert!(estimate(weak.as_bytes()).is_weak(), "{weak}");
        }
        let strong = estimate(b"plinth-marsupial-ocelot-gravy-tundra-47");
        assert!(!strong.is_weak(), "{strong:?}");
        assert!(!strong.offline_guess_time.is_empty());
    }
}
