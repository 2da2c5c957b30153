//! The Fernet token reader: `fernet_token::decrypt` (and the TTL variant) with fixed
//! key versions.
//!
//! Each input is read three ways: as a token (refused without a panic: the fuzzer cannot
//! forge the HMAC), as the body of a token whose HMAC is made right under version 1 (so
//! the timestamp checks, AES-CBC decryption and padding check run on anything), and as a
//! plaintext that must come back from a token made under version 2.

#![no_main]

use keyvault::crypto::fernet_token::{decrypt, decrypt_with_ttl, encrypt};
use keyvault_fuzz::{FERNET_V1, FERNET_V2, fernet_token_from_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys: [(u32, &[u8]); 2] = [(2, &FERNET_V2), (1, &FERNET_V1)];

    let _ = decrypt(&keys, data);
    let _ = decrypt_with_ttl(&keys, data, 60);
    let _ = decrypt_with_ttl(&keys, data, u64::MAX);

    let forged = fernet_token_from_body(&FERNET_V1, data);
    if let Ok((version, _)) = decrypt(&keys, forged.as_bytes()) {
        assert_eq!(
            version, 1,
            "a token MACed under version 1 opened under another"
        );
    }
    let _ = decrypt_with_ttl(&keys, forged.as_bytes(), 0);
    let _ = decrypt_with_ttl(&keys, forged.as_bytes(), u64::MAX);

    let token = encrypt(&FERNET_V2, data).expect("encryption works");
    let (version, plain) = decrypt(&keys, token.as_bytes()).expect("a fresh token opens");
    assert_eq!((version, plain.as_slice()), (2, data));
    assert!(
        decrypt_with_ttl(&keys[1..], token.as_bytes(), 60).is_err(),
        "a version-2 token opened under version 1 alone"
    );
});
