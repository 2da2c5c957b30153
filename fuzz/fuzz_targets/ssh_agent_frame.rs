//! The SSH agent socket's message parser, as the agent runs it on what a client sends
//! (several frames in a row, as on one connection), and the OpenSSH key file readers
//! `import` runs on a user's file. Never a panic, never an allocation the input did not
//! pay for; a sign request that parses re-encodes to the same body; a key file that
//! imports exports to one that imports back to the same key.

#![no_main]

use keyvault::KeyType;
use keyvault::ssh::{format, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frames as the agent reads them: a length, then the body (bounded).
    let mut stream = data;
    for _ in 0..8 {
        let Some((len, rest)) = stream.split_first_chunk::<4>() else {
            break;
        };
        let n = u32::from_be_bytes(*len) as usize;
        if n > wire::MAX_MESSAGE || n > rest.len() {
            break;
        }
        let (body, rest) = rest.split_at(n);
        stream = rest;
        match wire::parse_request(body) {
            Ok(wire::Request::Sign {
                key_blob,
                data,
                flags,
            }) => {
                let mut again = vec![wire::SIGN_REQUEST];
                wire::put_string(&mut again, &key_blob);
                wire::put_string(&mut again, &data);
                again.extend_from_slice(&flags.to_be_bytes());
                assert_eq!(again, body, "a sign request re-encodes to its body");
            }
            Ok(wire::Request::Extension { name, contents }) if name == wire::SESSION_BIND => {
                let _ = wire::parse_session_bind(&contents);
            }
            _ => {}
        }
    }

    // The same bytes as an OpenSSH key file (private, or a public line).
    for key_type in [KeyType::Ed25519, KeyType::Rsa2048] {
        let _ = format::is_encrypted(data);
        for public_only in [false, true] {
            if let Ok(material) = format::import(key_type, data, public_only) {
                let public = material.secret.is_empty();
                let out = format::export(key_type, &material, public, "f/z")
                    .expect("an imported key exports");
                let back = format::import(key_type, &out, true).expect("an exported key imports");
                assert_eq!(back.public, material.public);
            }
        }
    }
});
