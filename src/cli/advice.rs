//! What the binary adds to the library's errors: the advice that names our flags and
//! commands ("pass --public", "run `keyvault rotate`").
//!
//! The library reports what happened as typed variants with their facts; only the
//! binary knows its command line, so only this module writes the error line and the
//! hint line a user reads. It changes no exit code: those stay with
//! [`Error::exit_code`].

use keyvault::Error;
use keyvault::error::{KeyFamily, PublicKeyForm};
use keyvault::vault::keyuse::NearLimit;

/// The `error:` line for `e`: the library's message, with the flag or command that
/// helps where there is one.
pub(crate) fn message(e: &Error) -> String {
    match e {
        Error::UnreadableKey { family, .. } => {
            let expected = match family {
                KeyFamily::Rsa => {
                    "a PEM (PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\", or \"PUBLIC KEY\" with --public), DER, base64 of DER, or a JWK"
                }
                KeyFamily::Ed25519 => {
                    "a PEM (PKCS#8 \"PRIVATE KEY\", or \"PUBLIC KEY\" with --public), DER, base64 of DER, or a JWK"
                }
            };
            format!("{e}; expected {expected}")
        }
        Error::PublicKeyGiven {
            form: PublicKeyForm::RawEd25519,
            ..
        } => "the input is 32 raw bytes (hex or base64): pass --public to import them as an Ed25519 public key; a private key must come as PKCS#8".to_string(),
        Error::PublicKeyGiven {
            form: PublicKeyForm::RsaPss,
            ..
        } => format!("{e}; pass --public to import it (it then verifies PSS signatures only)"),
        Error::PublicKeyGiven { .. } => format!("{e}; pass --public to import a public-only key"),
        Error::NoPrivatePart => format!("{e}; use --public"),
        Error::RsaSizeMismatch { found, .. } => format!("{e}; use --type rsa-{found}"),
        Error::SchemeNotApplicable { scheme, key_type } => format!(
            "--scheme {} applies to RSA keys; {key_type} keys have one signature scheme",
            scheme.as_str()
        ),
        Error::TtlNotApplicable { .. } => "--ttl applies to fernet keys only".to_string(),
        Error::WeakKdf { .. } => format!("{e}; pass --allow-weak-kdf to use them anyway"),
        Error::KeyExists { .. } => format!("{e}; pick another --name, or rotate or delete it"),
        Error::NonceLimit { user, name, .. } => format!("{e}; run `keyvault rotate {user} {name}`"),
        _ => e.to_string(),
    }
}

/// The `hint:` line for `e`, where one helps.
pub(crate) fn hint(e: &Error) -> Option<String> {
    let fixed = match e {
        Error::ProtocolMismatch { .. } => {
            "run `keyvault lock`, then `keyvault unlock` to start an agent of this version"
        }
        Error::NoPassphrase(_) => {
            "pass one with --passphrase-file FILE, KEYVAULT_PASSPHRASE_FILE or KEYVAULT_PASSPHRASE, or run from a terminal"
        }
        Error::VaultNotFound(_) => {
            "create one with `keyvault init`, or point --vault / KEYVAULT_PATH at it"
        }
        Error::Locked(_) => "run `keyvault unlock` first",
        Error::VaultInUse(_) => {
            "wait for the other keyvault process to finish, or use the running agent"
        }
        Error::WrongPassphrase(_) => "check the passphrase and try again",
        Error::AgentDir { .. } => {
            "remove that directory, or set XDG_RUNTIME_DIR to a private directory of yours; commands still work without an agent"
        }
        Error::AgentStopped { .. } => {
            "run the command again: without the agent it opens the vault itself; `keyvault unlock` starts an agent for the vault now there"
        }
        Error::PurgeFailed(_) => {
            "run `keyvault compact` once the cause is fixed, so that the destroyed keys' sealed records leave the vault's files"
        }
        Error::Rollback { .. } => {
            "if you put this copy back on purpose, run one command with --accept-rollback (it is recorded in the audit log)"
        }
        Error::Remote { hint, .. } => return hint.clone(),
        Error::UserNotFound { similar, .. } if !similar.is_empty() => {
            let ids: Vec<String> = similar.iter().map(|id| format!("{id:?}")).collect();
            return Some(format!("the vault holds {}", ids.join(", ")));
        }
        _ => return None,
    };
    Some(fixed.to_string())
}

/// The `warning:` line for a key version near its limit of uses.
pub(crate) fn near_limit(w: &NearLimit) -> String {
    format!("{w}; run `keyvault rotate {} {}` soon", w.user, w.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyvault::KeyType;

    #[test]
    fn flag_advice_reads_as_before() {
        let e = Error::PublicKeyGiven {
            key_type: KeyType::Rsa2048,
            form: PublicKeyForm::Encoded,
        };
        assert_eq!(
            message(&e),
            "expected a private key for type rsa-2048 (PKCS#8 or PKCS#1), found a public key; pass --public to import a public-only key"
        );
        let e = Error::RsaSizeMismatch {
            key_type: KeyType::Rsa2048,
            expected: 2048,
            found: 3072,
        };
        assert_eq!(
            message(&e),
            "the RSA key has a 3072-bit modulus but type rsa-2048 expects 2048 bits; use --type rsa-3072"
        );
        assert_eq!(
            message(&Error::NoPrivatePart),
            "this key is public-only: it has no private part to export; use --public"
        );
    }

    #[test]
    fn the_library_messages_name_no_flag() {
        let errors = [
            Error::NoPrivatePart,
            Error::TtlNotApplicable {
                key_type: KeyType::Aes256Gcm,
            },
            Error::KeyExists {
                user: "u".into(),
                name: "k".into(),
            },
            Error::PublicKeyGiven {
                key_type: KeyType::Ed25519,
                form: PublicKeyForm::RawEd25519,
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains("--"), "{text}");
            assert!(!text.contains("keyvault "), "{text}");
        }
    }
}
