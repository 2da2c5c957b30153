//! `keys::import` of every key type, private and public-only: never a panic, and every
//! key that imports exports (in every format that applies) to text or bytes that import
//! again to the same key.

#![no_main]

use keyvault::KeyType;
use keyvault::crypto::keys::{self, ExportFormat, KeyMaterial};
use libfuzzer_sys::fuzz_target;

const FORMATS: [ExportFormat; 4] = [
    ExportFormat::Pem,
    ExportFormat::Der,
    ExportFormat::Base64,
    ExportFormat::Jwk,
];

/// A raw symmetric key (DER export) made only of printable ASCII is read as text, by
/// design (`keys::is_raw_symmetric`): a random key is all printable with a chance of
/// about 1 in 10^14, but fuzz input often is.
fn printable_raw_key(key_type: KeyType, format: ExportFormat, out: &[u8]) -> bool {
    !key_type.is_asymmetric()
        && format == ExportFormat::Der
        && out.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

fn round_trip(key_type: KeyType, material: &KeyMaterial) {
    for format in FORMATS {
        for public in [false, true] {
            let Ok(out) = keys::export(key_type, material, public, format) else {
                continue;
            };
            if printable_raw_key(key_type, format, &out) {
                continue;
            }
            let back = keys::import(key_type, &out, public).unwrap_or_else(|e| {
                panic!("{key_type} exported as {format:?} (public: {public}) does not import: {e}")
            });
            assert_eq!(back.public, material.public, "{key_type} {format:?}");
            if public {
                assert!(back.secret.is_empty());
            } else {
                assert_eq!(back.secret.as_slice(), material.secret.as_slice());
            }
            assert_eq!(
                keys::fingerprint(key_type, &back),
                keys::fingerprint(key_type, material)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for key_type in KeyType::ALL {
        for allow_public_only in [false, true] {
            if let Ok(material) = keys::import(key_type, data, allow_public_only) {
                if !allow_public_only {
                    assert!(
                        !material.secret.is_empty(),
                        "a private import without a secret"
                    );
                }
                assert_eq!(material.public.is_some(), key_type.is_asymmetric());
                if allow_public_only {
                    // The same key imports the same way either way.
                    round_trip(key_type, &material);
                }
            }
        }
    }
});
