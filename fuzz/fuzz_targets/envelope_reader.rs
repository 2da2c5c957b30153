//! The AEAD envelope reader: `read_header` and `decrypt_stream` with a fixed key into a
//! sink.
//!
//! Each input is used twice: as an envelope (the reader must refuse it without a panic:
//! without the key the fuzzer cannot forge a tag), and as a case for a differential
//! check: the plaintext it carries is sealed under the fixed key with a small chunk size,
//! one change is made (a flipped bit, a truncation, an appended or removed byte), and the
//! reader must then return exactly the plaintext if nothing changed and an error if
//! anything did.

#![no_main]

use keyvault::crypto::envelope::{
    decrypt_stream, encrypt_with_message_key, message_key, read_header,
};
use keyvault_fuzz::{ENVELOPE_KEY, EnvelopeCase, Mutation};
use libfuzzer_sys::fuzz_target;

fn open(envelope: &[u8], sink: &mut impl std::io::Write) -> keyvault::Result<u64> {
    let mut reader = envelope;
    let header = read_header(&mut reader)?;
    decrypt_stream(&header, &ENVELOPE_KEY, &mut reader, sink)
}

fuzz_target!(|data: &[u8]| {
    let _ = open(data, &mut std::io::sink());

    let Some(case) = EnvelopeCase::parse(data) else {
        return;
    };
    let key = message_key(&case.header, &ENVELOPE_KEY);
    let mut sealed = Vec::new();
    let n = encrypt_with_message_key(&case.header, &key, &mut &case.plaintext[..], &mut sealed)
        .expect("encryption into memory works");
    assert_eq!(n, case.plaintext.len() as u64);
    let mutation = case.apply(&mut sealed);
    let mut out = Vec::new();
    let result = open(&sealed, &mut out);
    if mutation == Mutation::None {
        let n = result.expect("an untouched envelope opens");
        assert_eq!(n, case.plaintext.len() as u64);
        assert_eq!(out, case.plaintext);
    } else {
        assert!(
            result.is_err(),
            "a changed envelope was accepted: {mutation:?}, {} plaintext bytes, chunk size {}",
            case.plaintext.len(),
            case.header.chunk_size
        );
        // What was written before the failure is a prefix of the plaintext.
        assert!(case.plaintext.starts_with(&out));
    }
});
